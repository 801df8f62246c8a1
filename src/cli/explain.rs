//! `hactl explain -f STACK vip [--json]`: keepalived's priority arithmetic for the stack, from
//! the stack alone (no host is contacted). One table row per case — all healthy, every check
//! failing, each host's checks failing, each host down, plus `--case` rows the user asks for —
//! with every host's effective priority and the resulting VIP holder, then the warnings.

use std::fmt::Write as _;

use clap::{Args, ValueEnum};

use super::StackArgs;
use crate::ha::priority::{self, Explanation, Failure, Model, Standing};
use crate::stack;
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
    /// An extra case: `HOST[,HOST…]` whose checks fail, `HOST:CHECK` for one check, or
    /// `down:HOST` for a host that is down; parts joined with `+`
    /// (e.g. `host1+host3`, `down:host2+host3:nginx`). Repeatable.
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
        help("write `HOST` (all its checks fail), `HOST:CHECK`, or `down:HOST`, joined with `+`")
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

pub fn run(args: ExplainArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&args.stack.file)?;
    let Topic::Vip = args.topic;
    let model = Model::from_stack(&stack).ok_or(ExplainError::NoVip)?;
    let mut extra = Vec::new();
    for c in &args.cases {
        let f = parse_case(&model, c)?;
        extra.push((case_label(&f), f));
    }
    let e = priority::explain(&model, extra);
    if args.stack.json {
        view::print_json(&e)?;
    } else {
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
        let holder = c.holder.as_deref().unwrap_or("NONE");
        let mut tail = holder.to_string();
        if c.moved {
            tail.push_str(" (moves)");
        }
        if let Some(n) = &c.note {
            tail.push_str(&format!("  [{n}]"));
        }
        let _ = writeln!(out, "  {tail}");
    }
    if !e.warnings.is_empty() {
        let _ = writeln!(out);
        for w in &e.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
    }
    out
}
