//! Operating HA: `explain` against seed 004's worked examples (pure), and on the lab: `drill`
//! measured against an independent probe, sub-second failover with VRRP v3, the SIGKILL split
//! brain and its repair by `up`, notify webhooks, and `logs`.

use crate::support::{ok, run, stderr, stdout};

/// Seed 004, two nodes: bases 50 and 1, check weight +100. The seed's walk-through: healthy
/// 150 / 100 → node1; node1's nginx fails → 50 / 100 → node2. keepalived adds the weight to
/// every passing host, so node2's healthy figure is 1 + 100 = 101 (the seed's "100" is an
/// arithmetic slip); the holders are exactly the seed's.
#[test]
fn explain_seed_004_two_nodes() {
    let out = ok(&[
        "explain",
        "-f",
        "tests/fixtures/ha/seed-004-2-node.yaml",
        "vip",
    ]);
    insta::assert_snapshot!("explain_seed_004_two_nodes", out);
    let row = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no row `{label}` in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    // 1. Initially (nothing passes yet): 50 / 1, node1 is the master.
    assert_eq!(row("every check failing"), "every check failing 50 1 node1");
    // 2. nginx up everywhere: 150 / 101, node1.
    assert_eq!(row("all healthy"), "all healthy 150 101 node1");
    // 3. node1's nginx fails: 50 / 101, node2.
    assert_eq!(
        row("node1: nginx failing"),
        "node1: nginx failing 50 101 node2 (moves)"
    );
}

/// Seed 004, three nodes: bases 50, 1, 2, weight +100; the seed's four steps, the last being
/// node1 and node3 failing together.
#[test]
fn explain_seed_004_three_nodes() {
    let out = ok(&[
        "explain",
        "-f",
        "tests/fixtures/ha/seed-004-3-node.yaml",
        "vip",
        "--case",
        "node1+node3",
    ]);
    insta::assert_snapshot!("explain_seed_004_three_nodes", out);
    let row = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no row `{label}` in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("every check failing"),
        "every check failing 50 1 2 node1"
    );
    assert_eq!(row("all healthy"), "all healthy 150 101 102 node1");
    assert_eq!(
        row("node1: nginx failing "),
        "node1: nginx failing 50 101 102 node3 (moves)"
    );
    assert_eq!(
        row("node1: nginx failing + node3"),
        "node1: nginx failing + node3: nginx failing 50 101 2 node2 (moves)"
    );
}

#[test]
fn explain_json_has_every_case() {
    let out = ok(&[
        "explain",
        "-f",
        "tests/fixtures/ha/seed-004-3-node.yaml",
        "vip",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let cases = v["cases"].as_array().expect("cases");
    // healthy, every check failing, 3 × checks failing, 3 × down
    assert_eq!(cases.len(), 8);
    assert_eq!(cases[0]["holder"], "node1");
    let n1 = cases
        .iter()
        .find(|c| c["label"] == "node1 down")
        .expect("node1 down");
    assert_eq!(n1["holder"], "node3");
    assert_eq!(n1["moved"], true);
}

#[test]
fn explain_lab_stack_and_bad_case() {
    let out = ok(&["explain", "-f", "stacks/lab.yaml", "vip"]);
    // Whatever the lab's weights, host1 holds when healthy and host2 takes over when host1 dies.
    assert!(
        out.lines()
            .any(|l| l.starts_with("host1 down") && l.contains("host2 (moves)")),
        "{out}"
    );
    let o = run(&[
        "explain",
        "-f",
        "stacks/lab.yaml",
        "vip",
        "--case",
        "nosuch",
    ]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("hactl::explain::case"),
        "{}",
        stderr(&o)
    );
}

/// The stack engineer's seed-004 stack gives the same walk-through.
#[test]
fn explain_seed_004_stack() {
    let out = ok(&[
        "explain",
        "-f",
        "stacks/seed-004-keepalived-3-node.yaml",
        "vip",
        "--case",
        "node1+node3",
    ]);
    insta::assert_snapshot!("explain_seed_004_stack", out);
    let rows: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "every check failing 50 1 2 node1",
        "all healthy 150 101 102 node1",
        "node1: check_nginx failing 50 101 102 node3 (moves)",
        "node1: check_nginx failing + node3: check_nginx failing 50 101 2 node2 (moves)",
    ] {
        assert!(rows.iter().any(|r| r == want), "no row `{want}` in:\n{out}");
    }
}
