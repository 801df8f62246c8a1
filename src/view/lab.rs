//! `hactl lab up/status/down` as people read them.

use std::fmt::Write as _;

use crate::lab::{DownReport, StatusReport, UpReport};

/// `lab down`'s one line.
pub fn human_down(report: &DownReport) -> String {
    format!(
        "lab down: removed {} host(s), {} process(es), the bridge and the safety route in {:.2} s\n",
        report.hosts.len(),
        report.processes_killed,
        report.elapsed_ms as f64 / 1000.0
    )
}

pub fn human_up(r: &UpReport) -> String {
    let started = r.hosts.iter().filter(|h| h.started).count();
    let mut s = format!(
        "lab up: {} host(s) on {} {} ({} started, {} already running) in {:.2} s\n",
        r.hosts.len(),
        r.bridge,
        r.gateway,
        started,
        r.hosts.len() - started,
        r.elapsed_ms as f64 / 1000.0
    );
    for h in &r.hosts {
        let _ = writeln!(
            s,
            "  {:<7} {:<13} pid {:<8} {}",
            h.name,
            h.address,
            h.pid,
            if h.started { "started" } else { "running" }
        );
    }
    let _ = writeln!(s, "known_hosts  {}", r.known_hosts.display());
    let _ = writeln!(s, "client key   {}", r.identity_file.display());
    let _ = writeln!(
        s,
        "ssh config   {}  (ssh -F {} host1 hostname)",
        r.ssh_config.display(),
        r.ssh_config.display()
    );
    s
}

pub fn human_status(r: &StatusReport) -> String {
    let mut s = format!(
        "bridge: {}\nsafety route unreachable {}: {}\n",
        r.bridge.as_deref().unwrap_or("absent"),
        crate::lab::net::LAB_RANGE,
        if r.safety_route { "present" } else { "absent" }
    );
    if r.hosts.is_empty() {
        s.push_str("no lab hosts\n");
    }
    for h in &r.hosts {
        let _ = writeln!(
            s,
            "  {:<7} {:<13} pid1 {:<8} processes {:<4} sshd {}",
            h.name,
            h.address,
            h.pid.map_or("-".to_string(), |p| p.to_string()),
            h.processes,
            if h.sshd { "reachable" } else { "unreachable" }
        );
    }
    s
}
