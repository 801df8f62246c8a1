//! Human rendering of a `heal` round of a `provider: hosts` stack.

use crate::engine::graph::Walked;
use crate::engine::heal::Round;
use crate::plan::{Addr, Change};

/// A redis repair as its plan line (`~ host2:redis/cache:6379  (…)  before → after`) and what
/// the walk did with it: fixed, failed (why), skipped, or only planned (`--dry-run`).
fn repair_line(c: &Change, walked: &Walked) -> String {
    let label = c.addr.to_string();
    let outcome = if walked.done.contains(&label) {
        "fixed".to_string()
    } else if let Some((_, why)) = walked.failed.iter().find(|(l, _)| *l == label) {
        format!("FAILED: {why}")
    } else if walked.skipped.contains(&label) {
        "skipped: the repair it waits for failed".to_string()
    } else {
        "to fix".to_string()
    };
    format!(
        "  {} {}  ({})  {} → {}: {outcome}\n",
        c.action.symbol(),
        label,
        c.reason,
        c.before.as_deref().unwrap_or("down"),
        c.after.as_deref().unwrap_or("?"),
    )
}

/// The round as a person reads it: converged or not, hosts down, hosts reconfigured, each
/// redis port's primary and its fixes.
pub fn render(r: &Round) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heal round {} of `{}` ({} ms): {}",
        r.round,
        r.stack,
        r.elapsed_ms,
        if r.converged && r.down.is_empty() {
            "converged"
        } else if r.converged {
            "converged (except unreachable hosts)"
        } else {
            "NOT converged"
        }
    );
    for d in &r.down {
        let _ = writeln!(out, "  down: {}: {}", d.host, d.error);
    }
    for h in &r.reconfigured {
        let outcome = match r.apply.iter().find(|a| &a.host == h) {
            Some(a) if a.ok => format!("reconfigured ({})", a.services.join(", ")),
            Some(a) => format!("FAILED: {}", a.error.as_deref().unwrap_or("unknown error")),
            None => "differs from the stack (dry run: not changed)".into(),
        };
        let _ = writeln!(out, "  {h}: {outcome}");
    }
    for p in &r.ports {
        let _ = writeln!(
            out,
            "  {}:{} primary {}",
            p.service,
            p.port,
            p.primary.as_deref().unwrap_or("NONE")
        );
        for c in r.repairs.changes.iter().filter(|c| {
            matches!(&c.addr, Addr::Redis { service, port, .. } if *service == p.service && *port == p.port)
        }) {
            out.push_str("  ");
            out.push_str(&repair_line(c, &r.repaired));
        }
        for note in &p.notes {
            let _ = writeln!(out, "    note: {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::heal::tests::promote_and_follow;
    use crate::plan::Plan;

    #[test]
    fn redis_repair_plan_rendering() {
        let plan = Plan::new("t", promote_and_follow(), 0, Vec::new());
        let order = ["host1", "host2", "host3"].map(String::from);
        insta::assert_snapshot!(crate::view::plan::render_plan(&plan, &order));
    }

    #[test]
    fn heal_round_with_redis_repairs() {
        let repairs = Plan::new("t", promote_and_follow(), 0, Vec::new());
        let r = Round {
            stack: "t".into(),
            round: 1,
            elapsed_ms: 12,
            down: vec![crate::plan::HostFailure {
                host: "host1".into(),
                error: "connection refused".into(),
            }],
            reconfigured: Vec::new(),
            apply: Vec::new(),
            ports: vec![crate::engine::heal::PortReport {
                service: "cache".into(),
                port: 6379,
                primary: Some("host2".into()),
                notes: Vec::new(),
            }],
            repairs,
            repaired: Walked {
                done: vec!["host2:redis/cache:6379".into()],
                failed: vec![("host3:redis/cache:6379".into(), "READONLY".into())],
                skipped: Vec::new(),
            },
            services: Vec::new(),
            converged: false,
            serving: None,
        };
        insta::assert_snapshot!(render(&r));
    }
}
