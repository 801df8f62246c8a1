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
