//! `hactl status` as people read it: one block per host (reachable, VRRP state, priorities,
//! checks, services, roles), then the VIP and its holders.

use crate::engine::status::Status;

pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<16} {:<9} {:>4} {:>4}  {:<28} SERVICES",
        "HOST", "ADDRESS", "VRRP", "BASE", "EFF", "CHECKS"
    );
    for h in &s.hosts {
        if !h.reachable {
            let _ = writeln!(
                out,
                "{:<12} {:<16} unreachable: {}",
                h.name,
                h.address,
                h.error.as_deref().unwrap_or("")
            );
            continue;
        }
        let checks = h
            .checks
            .iter()
            .map(|c| format!("{}={}", c.name, if c.ok { "ok" } else { "FAIL" }))
            .collect::<Vec<_>>()
            .join(",");
        let mut services = h
            .services
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(ok) = h.app_via_nginx {
            services.push_str(if ok {
                " app(via nginx)=healthy"
            } else {
                " app(via nginx)=UNHEALTHY"
            });
        }
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:<9} {:>4} {:>4}  {:<28} {}{}",
            h.name,
            h.address,
            h.vrrp_state.as_deref().unwrap_or("-"),
            h.base_priority,
            h.effective_priority
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            if checks.is_empty() {
                "-".into()
            } else {
                checks
            },
            services,
            if h.holds_vip { "  ← VIP" } else { "" }
        );
        if !h.roles.is_empty() {
            let roles = h
                .roles
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(out, "{:<12} roles: {roles}", "");
        }
        if !h.ha_pending.is_empty() {
            let _ = writeln!(out, "{:<12} not armed: {}", "", h.ha_pending.join("; "));
        }
    }
    // The notify script records `STATE UNIX-TIME` on every transition.
    let transitions: Vec<String> = s
        .hosts
        .iter()
        .filter_map(|h| {
            let t = h.last_transition.as_deref()?;
            let (state, secs) = t.split_once(' ')?;
            let secs: i64 = secs.trim().parse().ok()?;
            Some(format!(
                "{} {state} since {}",
                h.name,
                crate::ha::logs::format_ms(secs * 1000)
            ))
        })
        .collect();
    if !transitions.is_empty() {
        let _ = writeln!(out, "\nlast transition: {}", transitions.join("; "));
    }
    if let Some(v) = &s.vip {
        match v.holders.len() {
            0 => {
                let _ = writeln!(out, "\nVIP {}: NO HOLDER", v.address);
            }
            1 => {
                let _ = writeln!(out, "\nVIP {} held by {}", v.address, v.holders[0]);
            }
            _ => {
                let _ = writeln!(
                    out,
                    "\nVIP {}: SPLIT BRAIN — held by {}",
                    v.address,
                    v.holders.join(", ")
                );
                let _ = match v.groups.as_slice() {
                    [one] => writeln!(
                        out,
                        "the holders are in one election group [{}]: they should hear each \
                         other's adverts, so something between them drops VRRP (a partition, a \
                         firewall without IP protocol 112) or a keepalived was killed while MASTER",
                        one.join(", ")
                    ),
                    many => writeln!(
                        out,
                        "the stack's hearing graph keeps them apart: election groups {}",
                        many.iter()
                            .map(|g| format!("[{}]", g.join(", ")))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                };
            }
        }
    }
    out
}
