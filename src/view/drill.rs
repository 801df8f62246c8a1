//! `hactl drill`'s report as people read it: the fault, the outage against what VRRP
//! promises, the failback, and who holds the VIP after.

use crate::engine::drill::Report;

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into())
}

pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "drill {} on {} (VIP {}:{})",
        r.scenario, r.old_holder, r.vip, r.port
    );
    let _ = writeln!(
        o,
        "  new holder     {} (expected {})",
        r.new_holder.as_deref().unwrap_or("none"),
        r.expected_holder.as_deref().unwrap_or("none")
    );
    let verdict = match r.within_expectation {
        Some(true) => "within",
        Some(false) => "ABOVE",
        None => "n/a",
    };
    let _ = writeln!(
        o,
        "  outage         {} ({verdict} expected ≤ {}: {})",
        ms(r.outage_ms),
        ms(r.expected_ms),
        r.expected_basis
    );
    let _ = writeln!(
        o,
        "  requests       {} failed of {}",
        r.failed_requests, r.total_requests
    );
    let _ = writeln!(o, "  to new holder  {}", ms(r.time_to_new_holder_ms));
    let _ = writeln!(
        o,
        "  failback       {} (outage {}, {} failed)",
        ms(r.failback_ms),
        ms(r.failback_outage_ms),
        r.failback_failed_requests
    );
    let _ = writeln!(
        o,
        "  holders after  {}",
        if r.holders_after.is_empty() {
            "NONE".into()
        } else {
            r.holders_after.join(", ")
        }
    );
    if r.split_brain {
        let who = if r.holders_after.len() > 1 {
            &r.holders_after
        } else {
            &r.holders_during
        };
        let _ = writeln!(o, "  SPLIT BRAIN: the VIP is held by {}", who.join(" and "));
    }
    for n in &r.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o
}
