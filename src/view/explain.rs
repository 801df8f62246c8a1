//! `hactl explain` as people read it: one table row per failure case with every host's
//! effective priority and the resulting VIP holder(s), then the warnings.

use std::fmt::Write as _;

use crate::ha::priority::{Explanation, Level, Standing};

/// The lines that say `validate` refuses the stack, before the table.
pub fn refused(file: &str, refused: &[crate::stack::diag::Problem]) -> String {
    if refused.is_empty() {
        return String::new();
    }
    let mut head = String::from(
        "`hactl validate` refuses this stack (explained anyway, to show the split):\n",
    );
    for p in refused {
        let _ = writeln!(
            head,
            "  {}:{}:{}: {}",
            file,
            p.line.unwrap_or(0),
            p.column.unwrap_or(0),
            p.message
        );
    }
    head.push('\n');
    head
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
        format!("preempt after {}", crate::ha::priority::secs(d))
    } else {
        "preempt".to_string()
    };
    let _ = writeln!(
        out,
        "VIP {} — instance {}, VRRP v{}, advert {}, {}",
        m.vip,
        m.instance,
        m.vrrp_version,
        crate::ha::priority::secs(m.advert_int_s),
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
                crate::ha::priority::secs(c.interval_s),
                c.rise,
                crate::ha::priority::secs(c.interval_s)
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
