//! `hactl explain -f STACK vip [--json]`: keepalived's priority arithmetic and the VRRP state
//! machine for the stack, from the stack alone (no host is contacted). One table row per case
//! — all healthy, every check failing, each host's checks failing, each host down, plus
//! `--case` rows the user asks for — with every host's effective priority and every resulting
//! VIP holder (one per election group: more than one where members do not hear each other),
//! then the warnings (the same risks `validate`, `plan` and `up` print, plus notes).
//!
//! A stack that `validate` refuses only for its hearing graph (`ha::hearing::CODES`) is still
//! explained, with those problems listed first: showing the split is the point.

use clap::{Args, ValueEnum};

use super::StackArgs;
use crate::ha::cases::{case_label, parse_case, ExplainError};
use crate::ha::hearing;
use crate::ha::priority::{self, Explanation, Model};
use crate::stack::{self, diag::JsonDiagnostic};
use crate::{view, ExitStatus};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Topic {
    /// The VIP election: priorities, weights and who holds the VIP in each failure case.
    Vip,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// What to explain.
    pub topic: Topic,
    /// An extra case: `HOST[,HOST…]` whose checks fail, `HOST:CHECK` for one check,
    /// `down:HOST` for a host that is down, or `cut:HOST` for a host cut off the network while
    /// keepalived runs on (it hears nobody: a partition); parts joined with `+`
    /// (e.g. `host1+host3`, `down:host2+host3:nginx`, `cut:host1`). Repeatable.
    #[arg(long = "case", value_name = "CASE")]
    pub cases: Vec<String>,
}

/// What `explain --json` prints: the explanation, plus the hearing-graph problems `validate`
/// refuses the stack for (empty for a valid stack).
#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    explanation: &'a Explanation,
    refused: Vec<JsonDiagnostic>,
}

pub fn run(args: ExplainArgs) -> miette::Result<ExitStatus> {
    let (stack, refused) = stack::load_tolerating(&args.stack.file, hearing::CODES)?;
    let Topic::Vip = args.topic;
    let model = Model::from_stack(&stack).ok_or(ExplainError::NoVip)?;
    let mut extra = Vec::new();
    for c in &args.cases {
        let f = parse_case(&model, c)?;
        extra.push((case_label(&f), f));
    }
    let mut e = priority::explain(&model, extra);
    // The services' timing and the always-passing checks are part of the one list (see
    // ha::risks).
    e.warnings.extend(crate::ha::timing::service_risks(&stack));
    e.warnings.extend(crate::ha::check_risks(&stack));
    if args.stack.json {
        let file = args.stack.file.display().to_string();
        view::print_json(&Report {
            explanation: &e,
            refused: refused
                .iter()
                .map(|p| JsonDiagnostic::of(&file, p))
                .collect(),
        })?;
    } else {
        let file = args.stack.file.display().to_string();
        view::print_out(&view::explain::refused(&file, &refused));
        view::print_out(&view::explain::render(&e));
    }
    Ok(ExitStatus::Success)
}
