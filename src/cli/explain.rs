//! `hactl explain -f STACK vip [--json]`: keepalived's priority arithmetic and the VRRP state
//! machine for the stack, from the stack alone (no host is contacted). One table row per case
//! — all healthy, every check failing, each host's checks failing, each host down, plus
//! `--case` rows the user asks for — with every host's effective priority and every resulting
//! VIP holder (one per election group: more than one where members do not hear each other),
//! then the warnings (the same risks `validate`, `plan` and `up` print, plus notes).
//!
//! A stack that `validate` refuses only for its hearing graph (`ha::hearing::CODES`) is still
//! explained, with those problems listed first: showing the split is the point.

use std::fmt::Write as _;

use clap::{Args, ValueEnum};

use super::StackArgs;
use crate::ha::hearing;
use crate::ha::priority::{self, Explanation, Failure, Level, Model, Standing};
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

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExplainError {
    #[error("the stack has no `vip`: there is no election to explain")]
    #[diagnostic(
        code(hactl::explain::no_vip),
        help("add a `vip:` section (see stacks/lab.yaml)")
    )]
    NoVip,
    #[error("`--case {case}`: {reason}")]
    #[diagnostic(
        code(hactl::explain::case),
        help("write `HOST` (all its checks fail), `HOST:CHECK`, `down:HOST` or `cut:HOST`, joined with `+`")
    )]
    BadCase { case: String, reason: String },
}

/// Parses one `--case` value against the model.
fn parse_case(model: &Model, text: &str) -> Result<Failure, ExplainError> {
    let bad = |reason: String| ExplainError::BadCase {
        case: text.to_string(),
        reason,
    };
    let known = |h: &str| model.members.iter().any(|m| m.name == h);
    let mut f = Failure::default();
    for part in text
        .split(['+', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Some(h) = part.strip_prefix("down:") {
            if !known(h) {
                return Err(bad(format!("`{h}` is not a VRRP member of this stack")));
            }
            f.down.insert(h.to_string());
        } else if let Some(h) = part.strip_prefix("cut:") {
            if !known(h) {
                return Err(bad(format!("`{h}` is not a VRRP member of this stack")));
            }
            f.cut.insert(h.to_string());
        } else if let Some((h, c)) = part.split_once(':') {
            if !known(h) {
                return Err(bad(format!("`{h}` is not a VRRP member of this stack")));
            }
            if !model.checks.iter().any(|k| k.name == c) {
                return Err(bad(format!("`{c}` is not a check of this stack")));
            }
            f.failing.insert((h.to_string(), c.to_string()));
        } else {
            if !known(part) {
                return Err(bad(format!("`{part}` is not a VRRP member of this stack")));
            }
            let one = Failure::checks_of(model, &[part.to_string()]);
            f.failing.extend(one.failing);
        }
    }
    if f == Failure::default() {
        return Err(bad("it names nothing".into()));
    }
    Ok(f)
}

fn case_label(f: &Failure) -> String {
    let mut parts: Vec<String> = f.down.iter().map(|h| format!("{h} down")).collect();
    parts.extend(f.cut.iter().map(|h| format!("{h} cut off")));
    let mut hosts: Vec<&String> = f.failing.iter().map(|(h, _)| h).collect();
    hosts.dedup();
    for h in hosts {
        let checks: Vec<&str> = f
            .failing
            .iter()
            .filter(|(x, _)| x == h)
            .map(|(_, c)| c.as_str())
            .collect();
        parts.push(format!("{h}: {} failing", checks.join(", ")));
    }
    parts.join(" + ")
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
        if !refused.is_empty() {
            let mut head = String::from(
                "`hactl validate` refuses this stack (explained anyway, to show the split):\n",
            );
            for p in &refused {
                let _ = writeln!(
                    head,
                    "  {}:{}:{}: {}",
                    args.stack.file.display(),
                    p.line.unwrap_or(0),
                    p.column.unwrap_or(0),
                    p.message
                );
            }
            head.push('\n');
            view::print_out(&head);
        }
        view::print_out(&render(&e));
    }
    Ok(ExitStatus::Success)
}

fn standing(s: &Standing) -> String {
    match s {
        Standing::Up(p) => p.to_string(),
        Standing::Fault => "FAULT".into(),
        Standing::Down => "down".into(),
    }
}

/// The human table.
pub fn render(e: &Explanation) -> String {
    let m = &e.model;
    let mut out = String::new();
    let preempt = if !m.preempt {
        "nopreempt".to_string()
    } else if let Some(d) = m.preempt_delay_s {
        format!("preempt after {}", priority::secs(d))
    } else {
        "preempt".to_string()
    };
    let _ = writeln!(
        out,
        "VIP {} — instance {}, VRRP v{}, advert {}, {}",
        m.vip,
        m.instance,
        m.vrrp_version,
        priority::secs(m.advert_int_s),
        preempt
    );
    let _ = writeln!(out, "hearing: {}", m.hearing.describe());
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<12} {:<16} {:>4}", "HOST", "ADDRESS", "BASE");
    for h in &m.members {
        let _ = writeln!(out, "{:<12} {:<16} {:>4}", h.name, h.address, h.base);
    }
    if m.checks.is_empty() {
        let _ = writeln!(out, "\nno checks: priorities never change");
    } else {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<12} {:>6}  {:<40} WHEN",
            "CHECK", "WEIGHT", "EFFECT"
        );
        for c in &m.checks {
            let effect = match c.weight {
                0 => "failing: FAULT (out of the election)".to_string(),
                w if w > 0 => format!("passing: +{w}"),
                w => format!("failing: {w}"),
            };
            let _ = writeln!(
                out,
                "{:<12} {:>6}  {:<40} fails after {} × {}, recovers after {} × {}",
                c.name,
                c.weight,
                effect,
                c.fall,
                priority::secs(c.interval_s),
                c.rise,
                priority::secs(c.interval_s)
            );
        }
    }
    let _ = writeln!(out);
    let going_in = e
        .cases
        .first()
        .map(|c| holders(&c.holders))
        .unwrap_or_else(|| "NONE".into());
    let _ = writeln!(
        out,
        "going in: `all healthy` starts from keepalived starting (every host BACKUP); every other \
         case starts from {going_in} holding the VIP"
    );
    let _ = writeln!(out);
    let label_w = e
        .cases
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let col_w: Vec<usize> = m.members.iter().map(|h| h.name.len().max(5)).collect();
    let _ = write!(out, "{:<label_w$}", "CASE");
    for (h, w) in m.members.iter().zip(&col_w) {
        let _ = write!(out, "  {:>w$}", h.name);
    }
    let _ = writeln!(out, "  HOLDER");
    for c in &e.cases {
        let _ = write!(out, "{:<label_w$}", c.label);
        for ((_, s), w) in c.standings.iter().zip(&col_w) {
            let _ = write!(out, "  {:>w$}", standing(s));
        }
        let mut tail = holders(&c.holders);
        if c.holders.len() > 1 {
            tail.push_str(" (SPLIT)");
        }
        if c.moved {
            tail.push_str(" (moves)");
        }
        if let Some(n) = &c.note {
            tail.push_str(&format!("  [{n}]"));
        }
        let _ = writeln!(out, "  {tail}");
    }
    // Per case with more than one election group: who holds what in each.
    for c in e.cases.iter().filter(|c| c.groups.len() > 1) {
        let groups: Vec<String> = c
            .groups
            .iter()
            .map(|g| format!("[{}] → {}", g.members.join(", "), holders(&g.holders)))
            .collect();
        let _ = writeln!(out, "groups in `{}`: {}", c.label, groups.join("; "));
    }
    if !e.warnings.is_empty() {
        let _ = writeln!(out);
        for w in &e.warnings {
            let level = match w.level {
                Level::Risk => "warning",
                Level::Note => "note",
            };
            let _ = writeln!(out, "{level}: {}", w.message);
        }
    }
    out
}

/// Holders as the table shows them: `NONE`, `host1`, `host1 + host3`.
fn holders(h: &[String]) -> String {
    if h.is_empty() {
        "NONE".into()
    } else {
        h.join(" + ")
    }
}
