//! The network guard (`HACTL_NETWORK_GUARD=lab`, set for every test run by
//! `.cargo/config.toml`): a stack whose hosts are outside loopback and the lab is refused
//! before any packet is sent, naming the address — the slip of running `up` on a moto fixture
//! whose instances have made-up public addresses.

use std::time::{Duration, Instant};

use crate::support::{hactl, stdout};

#[test]
fn ssh_to_an_address_outside_the_lab_is_refused_before_connecting() {
    // Seed 001's hosts are in 198.51.100.0/24 (TEST-NET-2): routable here, not the lab's.
    let t = Instant::now();
    let out = hactl()
        .env("HACTL_NETWORK_GUARD", "lab")
        .args(["plan", "-f", "stacks/seed-001-haproxy-vip.yaml"])
        .output()
        .expect("hactl runs");
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    for (host, addr) in [
        ("lb1", "198.51.100.199"),
        ("lb2", "198.51.100.200"),
        ("web1", "198.51.100.211"),
        ("web2", "198.51.100.212"),
    ] {
        assert!(
            text.contains(&format!(
                "{host}: cannot connect to `{addr}`: HACTL_NETWORK_GUARD=lab: `{addr}` resolves to {addr}, outside loopback"
            )),
            "{host} not refused by the guard:\n{text}"
        );
    }
    // Refused, not timed out: the stack's connect_timeout is 5 s.
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn an_ssh_config_that_sends_a_lab_address_elsewhere_is_refused() {
    // The guard reads ssh_config itself and skips `ssh -G` for names no block redirects: a
    // `HostName` or `ProxyJump` that sends a lab address outside the lab must still be caught,
    // through a wildcard pattern and an Include as well as a plain `Host` line.
    let dir = tempfile::tempdir().expect("tempdir");
    let seed =
        std::fs::read_to_string(crate::support::root().join("stacks/seed-001-haproxy-vip.yaml"))
            .expect("seed 001");
    // SSH goes to each host's ssh_host: for lb1 and lb2 lab addresses the config sends
    // outside, for web1 and web2 loopback addresses it leaves alone (loopback, not the lab:
    // with no lab up, a lab address routes through the machine's default gateway, and nothing
    // may be sent there)
    let mut stack = seed.replace("  port: 22\n", "  port: 22\n  config_file: ssh_config\n");
    for (addr, target) in [
        ("198.51.100.199", "198.18.0.199"),
        ("198.51.100.200", "198.18.0.200"),
        ("198.51.100.211", "127.0.0.211"),
        ("198.51.100.212", "127.0.0.212"),
    ] {
        let line = format!("    address: {addr}\n");
        assert!(stack.contains(&line), "seed 001 changed: {line}");
        stack = stack.replace(&line, &format!("{line}    ssh_host: {target}\n"));
    }
    std::fs::write(dir.path().join("stack.yaml"), stack).expect("write stack");
    // an absolute Include: ssh places a relative one under the passwd entry's ~/.ssh, which a
    // test must not touch
    let extra = dir.path().join("extra.conf");
    std::fs::write(&extra, "ProxyJump 198.51.100.9\n").expect("write extra");
    std::fs::write(
        dir.path().join("ssh_config"),
        format!(
            "Host 198.18.0.199\n  HostName 198.51.100.7\nHost 198.18.0.20?\n  Include {}\n",
            extra.display()
        ),
    )
    .expect("write ssh_config");
    let out = hactl()
        .env("HACTL_NETWORK_GUARD", "lab")
        .args(["plan", "-f"])
        .arg(dir.path().join("stack.yaml"))
        .output()
        .expect("hactl runs");
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    for (host, addr, bad) in [
        ("lb1", "198.18.0.199", "198.51.100.7"),
        ("lb2", "198.18.0.200", "198.51.100.9"),
    ] {
        assert!(
            text.contains(&format!(
                "{host}: cannot connect to `{addr}`: HACTL_NETWORK_GUARD=lab: `{addr}` resolves to {bad}, outside loopback"
            )),
            "{host} not refused by the guard:\n{text}"
        );
    }
    // the others stay on loopback: not refused by the guard (they fail to connect instead)
    for addr in ["127.0.0.211", "127.0.0.212"] {
        assert!(
            !text.contains(&format!("`{addr}` resolves to")),
            "{addr} refused although its ssh_config leaves it alone:\n{text}"
        );
    }
}
