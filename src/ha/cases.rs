//! The failure cases `hactl explain --case` accepts (`host1 down`, `host2 checks-fail`,
//! `all checks-fail`, combined with `,`): parsed against the stack's VRRP model, and labelled
//! for the explanation's table.

use super::priority::{Failure, Model};

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
pub fn parse_case(model: &Model, text: &str) -> Result<Failure, ExplainError> {
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

pub fn case_label(f: &Failure) -> String {
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
