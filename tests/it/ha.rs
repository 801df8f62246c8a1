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
    // A partition on a valid stack: host1 cut off keeps the VIP, host2 takes it too.
    let out = ok(&[
        "explain",
        "-f",
        "stacks/lab.yaml",
        "vip",
        "--case",
        "cut:host1",
    ]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("host1 cut off") && l.contains("host1 + host2 (SPLIT)")),
        "{out}"
    );
    assert!(
        out.contains("groups in `host1 cut off`: [host1] → host1; [host2, host3] → host2"),
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

/// RFC 5798 §6.4.2: a backup never takes over from a master with the same effective priority.
/// n1 holds going in; with n1 and n2 failing, n1 and n3 are both at 90 and n3 has the higher
/// address, yet n1 keeps the VIP (the old explain said n3). The JSON names the state going in.
#[test]
fn explain_tie_with_the_current_master_keeps_the_master() {
    let args = [
        "explain",
        "-f",
        "tests/fixtures/ha/tie-with-master.yaml",
        "vip",
        "--case",
        "n1+n2",
    ];
    let out = ok(&args);
    insta::assert_snapshot!("explain_tie_with_the_current_master", out);
    let row = out
        .lines()
        .find(|l| l.starts_with("n1: nginx failing + n2"))
        .unwrap_or_else(|| panic!("no case row in:\n{out}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        words[..12],
        [
            "n1:", "nginx", "failing", "+", "n2:", "nginx", "failing", "90", "40", "90", "n1",
            "[n1"
        ],
        "{row}"
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&ok(&json_args)).expect("json");
    let case = v["cases"]
        .as_array()
        .and_then(|c| c.last())
        .expect("the --case row")
        .clone();
    insta::assert_json_snapshot!("explain_tie_with_the_current_master_json", case);
    assert_eq!(case["before"], serde_json::json!(["n1"]));
    assert_eq!(case["holders"], serde_json::json!(["n1"]));
    assert_eq!(case["groups"][0]["holders"], serde_json::json!(["n1"]));
    assert_eq!(case["moved"], false);
}

/// The chain (node1: [node2], node2: [node1, node3], node3: [node2]): `validate`
/// refuses it, `explain` still explains it and shows both ends holding the VIP, never one.
#[test]
fn explain_split_graph_prints_every_holder() {
    let f = "tests/fixtures/invalid/peers-chain.yaml";
    let out = ok(&["explain", "-f", f, "vip"]);
    insta::assert_snapshot!("explain_split_graph", out);
    assert!(out.contains("peers-chain.yaml:9:5"), "{out}");
    let healthy = out
        .lines()
        .find(|l| l.starts_with("all healthy"))
        .expect("healthy row");
    assert!(healthy.contains("node1 + node3 (SPLIT)"), "{healthy}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["explain", "-f", f, "vip", "--json"])).expect("json");
    insta::assert_json_snapshot!(
        "explain_split_graph_json",
        serde_json::json!({
            "refused": v["refused"],
            "cases": v["cases"],
        })
    );
    assert_eq!(
        v["cases"][0]["holders"],
        serde_json::json!(["node1", "node3"])
    );
    assert_eq!(v["cases"][0]["holder"], serde_json::Value::Null);
    let down = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["label"] == "node2 down")
        .expect("node2 down");
    assert_eq!(down["groups"].as_array().map(Vec::len), Some(2), "{down}");
    let codes: Vec<&str> = v["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert_eq!(codes, ["hactl::stack::peers_incomplete"]);
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(warnings.contains(&"hactl::vrrp::split"), "{warnings:?}");
}

// ---------------------------------------------------------------------------------------------
// Lab tests: they hold the lab guard, bring the lab up themselves and leave it down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{self, assert_lab_route, lab_guard};

const LAB_STACK: &str = "stacks/lab.yaml";
const VIP: &str = "198.18.0.100";

/// hactl with the lab demo vault's key (the demo stack's vault opens with it).
fn hactl(args: &[&str]) -> Output {
    support::hactl()
        .env("HACTL_AGE_KEY_FILE", "secrets/lab.demo-key")
        .args(args)
        .output()
        .expect("the hactl binary runs")
}

fn must(args: &[&str]) -> String {
    support::succeeded(args, &hactl(args))
}

/// Takes the lab down when the test ends, passed or not.
struct LabDown;
impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = hactl(&["lab", "down"]);
    }
}

fn holders(stack: &str) -> Vec<String> {
    let o = hactl(&["status", "-f", stack, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v["vip"]["holders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_holders(stack: &str, want: &[&str], limit: Duration) -> Vec<String> {
    let t = Instant::now();
    loop {
        let h = holders(stack);
        if h == want || t.elapsed() > limit {
            return h;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lab up with 3 hosts, the stack applied, host1 holding the VIP.
fn lab_ready(stack: &str) -> LabDown {
    must(&["lab", "up", "--hosts", "3"]);
    let guard = LabDown;
    // `up` returns once the stack serves: the election has settled on host1.
    must(&["up", "-f", stack, "--auto-approve"]);
    assert_lab_route(VIP);
    assert_eq!(
        holders(stack),
        vec!["host1".to_string()],
        "host1 does not hold the VIP after up"
    );
    guard
}

/// A copy of the lab stack in a temp dir with `edit` applied to its text. The copy sits in a
/// `stacks/` folder beside a link to the repo's `secrets/` and a copy of its stack templates, as in the repo,
/// so its vault and `files:` templates resolve the same way.
fn stack_copy(dir: &Path, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(support::root().join(LAB_STACK)).expect("lab.yaml");
    let stacks = dir.join("stacks");
    std::fs::create_dir_all(&stacks).expect("mkdir stacks");
    let link = |from: &Path, to: &Path| {
        if from.exists() && !to.exists() {
            std::os::unix::fs::symlink(from, to).expect("symlink");
        }
    };
    link(&support::root().join("secrets"), &dir.join("secrets"));
    support::copy_stack_templates(&stacks.join("templates"));
    let path = stacks.join("lab.yaml");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&path, edited).expect("write stack copy");
    path.display().to_string()
}

/// An independent probe: a GET every 20 ms against the VIP from its own threads, bounded.
struct IndependentProbe {
    t0: Instant,
    results: Arc<Mutex<Vec<(u64, bool, String)>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn get(addr: SocketAddr) -> (bool, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return (false, "connect".into());
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n").is_err() {
        return (false, "write".into());
    }
    let mut buf = String::new();
    if s.read_to_string(&mut buf).is_err() {
        return (false, "read".into());
    }
    let ok = buf.starts_with("HTTP/1.1 200");
    let body = buf
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    (ok, body)
}

impl IndependentProbe {
    fn start(limit: Duration) -> IndependentProbe {
        assert_lab_route(VIP);
        let addr: SocketAddr = format!("{VIP}:80").parse().expect("addr");
        let t0 = Instant::now();
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (results.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut handles = Vec::new();
            let mut i = 0u64;
            while !s2.load(Ordering::Relaxed) && t0.elapsed() < limit {
                let target = Duration::from_millis(i * 20);
                if let Some(d) = target.checked_sub(t0.elapsed()) {
                    std::thread::sleep(d);
                }
                let sent = t0.elapsed().as_millis() as u64;
                let r3 = r2.clone();
                handles.push(std::thread::spawn(move || {
                    let (ok, who) = get(addr);
                    r3.lock().expect("lock").push((sent, ok, who));
                }));
                i += 1;
            }
            for h in handles {
                let _ = h.join();
            }
        });
        IndependentProbe {
            t0,
            results,
            stop,
            thread,
        }
    }

    /// (outage of the first failure burst in ms, its failed requests, total requests).
    fn finish(self) -> (Option<u64>, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let _ = self.t0;
        let mut r = self.results.lock().expect("lock").clone();
        r.sort_by_key(|x| x.0);
        let total = r.len();
        let Some(first) = r.iter().position(|x| !x.1) else {
            return (Some(0), 0, total);
        };
        // The burst ends at the first success after which 1 s passes without a failure.
        let mut i = first;
        let mut failed = 0;
        let mut recovered = None;
        while i < r.len() {
            if !r[i].1 {
                failed += 1;
                i += 1;
                continue;
            }
            let t = r[i].0;
            let next_fail = r[i..].iter().find(|x| !x.1).map(|x| x.0);
            match next_fail {
                Some(nf) if nf < t + 1000 => i += 1,
                _ => {
                    recovered = Some(t);
                    break;
                }
            }
        }
        (recovered.map(|t| t - r[first].0), failed, total)
    }
}

fn drill_json(stack: &str, scenario: &str) -> (Output, serde_json::Value) {
    let o = hactl(&["drill", "-f", stack, "--scenario", scenario, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "drill --json is not JSON ({e}):\n{}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o, v)
}

#[test]
fn drill_service_stop_agrees_with_an_independent_probe() {
    let _g = lab_guard();
    let _down = lab_ready(LAB_STACK);
    let probe = IndependentProbe::start(Duration::from_secs(25));
    let (o, v) = drill_json(LAB_STACK, "service-stop");
    let (outage, failed, _total) = probe.finish();
    assert!(o.status.success(), "{v:#}\n{}", stderr(&o));
    for key in [
        "scenario",
        "old_holder",
        "new_holder",
        "outage_ms",
        "expected_ms",
        "failed_requests",
        "total_requests",
        "failback_ms",
        "holders_after",
        "split_brain",
    ] {
        assert!(v.get(key).is_some(), "no `{key}` in {v:#}");
    }
    assert_eq!(v["scenario"], "service-stop");
    assert_eq!(v["old_holder"], "host1");
    assert_eq!(v["new_holder"], "host2", "{v:#}");
    assert_eq!(v["holders_after"], serde_json::json!(["host1"]), "{v:#}");
    assert_eq!(v["split_brain"], false);
    let drill_outage = v["outage_ms"].as_u64().expect("outage_ms");
    let drill_failed = v["failed_requests"].as_u64().expect("failed") as usize;
    assert!(drill_outage > 0 && drill_failed > 0, "{v:#}");
    let outage = outage.expect("the independent probe saw no recovery");
    // Both probe every 20 ms; they start at different phases and the failure edges are a
    // few ms wide, so they agree within 150 ms, and so do the failed counts (±8 requests).
    let diff = drill_outage.abs_diff(outage);
    assert!(
        diff <= 150,
        "drill says {drill_outage} ms, the independent probe {outage} ms\n{v:#}"
    );
    assert!(
        drill_failed.abs_diff(failed) <= 8,
        "drill counted {drill_failed} failed requests, the independent probe {failed}\n{v:#}"
    );
    assert!(
        v["within_expectation"] == true,
        "outage above the VRRP bound: {v:#}"
    );
    // logs: the transitions of the drill from every host involved, in time order.
    let logs = must(&[
        "logs",
        "-f",
        LAB_STACK,
        "--service",
        "keepalived",
        "--since",
        "2m",
    ]);
    for (host, what) in [
        ("host1", "Entering FAULT STATE"),
        ("host2", "Entering MASTER STATE"),
        ("host2", "Entering BACKUP STATE"),
        ("host1", "Entering MASTER STATE"),
        ("host3", "Entering BACKUP STATE"),
    ] {
        assert!(
            logs.lines()
                .any(|l| l.starts_with(host) && l.contains(what)),
            "no `{what}` from {host} in:\n{logs}"
        );
    }
    let times: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "logs are not in time order:\n{logs}");
}

/// advert_int 100 ms (VRRP v3) with the nginx check every 100 ms: keepalived's own
/// `vrrp_script` cannot run more than once a second (a fault right after a run took 1 s to
/// notice: medians of 1020 ms), so the check runs as hactl's loop behind a `track_file`.
#[test]
fn vrrp_v3_sub_second_failover_median_below_one_second() {
    let _g = lab_guard();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = stack_copy(dir.path(), |t| {
        // VRRP v3 has no authentication: drop `auth_pass`, whatever its value.
        t.replace("  advert_int: 1s\n", "  advert_int: 100ms\n")
            .replace("      interval: 1s\n", "      interval: 100ms\n")
            .replace("      timeout: 1s\n", "      timeout: 100ms\n")
            .lines()
            .filter(|l| !l.starts_with("  auth_pass:"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let text = std::fs::read_to_string(&stack).expect("stack copy");
    assert!(text.contains("      interval: 100ms\n"), "{text}");
    let _down = lab_ready(&stack);
    let mut outages = Vec::new();
    for i in 0..5 {
        let (o, v) = drill_json(&stack, "service-stop");
        assert!(o.status.success(), "drill {i}: {v:#}\n{}", stderr(&o));
        assert_eq!(v["split_brain"], false, "{v:#}");
        // check 100 ms × fall 1 + Skew_Time: the figure the drill holds the outage against.
        assert!(
            v["expected_ms"].as_u64().expect("expected_ms") < 300,
            "{v:#}"
        );
        outages.push(v["outage_ms"].as_u64().expect("outage_ms"));
        wait_holders(&stack, &["host1"], Duration::from_secs(5));
    }
    outages.sort_unstable();
    let median = outages[2];
    assert!(
        median < 1000,
        "median outage {median} ms over 5 drills (all: {outages:?})"
    );
}

#[test]
fn vip_two_holders_after_sigkill_then_up_repairs() {
    let _g = lab_guard();
    let _down = lab_ready(LAB_STACK);
    let (o, v) = drill_json(LAB_STACK, "keepalived-kill");
    assert!(
        !o.status.success(),
        "a split brain must exit non-zero: {v:#}"
    );
    assert_eq!(v["split_brain"], true, "{v:#}");
    let during: Vec<String> = serde_json::from_value(v["holders_during"].clone()).expect("list");
    assert_eq!(
        during,
        vec!["host1".to_string(), "host2".to_string()],
        "{v:#}"
    );
    let after: Vec<String> = serde_json::from_value(v["holders_after"].clone()).expect("list");
    assert_eq!(after.len(), 2, "{v:#}");
    // status agrees and exits non-zero too.
    let s = hactl(&["status", "-f", LAB_STACK]);
    assert!(!s.status.success(), "{}", stdout(&s));
    assert!(stdout(&s).contains("SPLIT BRAIN"), "{}", stdout(&s));
    // It names the election group from the stack's hearing graph: one group, so the holders
    // should hear each other and the cause is outside the stack (here the killed keepalived).
    assert!(
        stdout(&s).contains("the holders are in one election group [host1, host2, host3]"),
        "{}",
        stdout(&s)
    );
    let j = hactl(&["status", "-f", LAB_STACK, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&j.stdout).expect("status json");
    assert_eq!(
        j["vip"]["groups"],
        serde_json::json!([["host1", "host2", "host3"]]),
        "{j:#}"
    );
    // `up` starts keepalived again: host1 rejoins with the higher priority, host2 releases.
    // and returns only once that has happened.
    must(&["up", "-f", LAB_STACK, "--auto-approve"]);
    assert_eq!(
        holders(LAB_STACK),
        vec!["host1".to_string()],
        "up did not repair the split brain"
    );
}

/// A webhook receiver on the lab bridge address: one POST per VRRP transition, each with the
/// host, the instance and the new state, matching keepalived's own log of its transitions.
#[test]
fn webhook_gets_one_post_per_transition() {
    use std::net::TcpListener;
    let _g = lab_guard();
    must(&["lab", "up", "--hosts", "3"]);
    let _down = LabDown;
    // The bridge address exists once the lab is up; the hosts reach it over hactl0.
    let listener = TcpListener::bind("198.18.0.1:0").expect("bind on the lab bridge");
    let port = listener.local_addr().expect("addr").port();
    let posts: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let p2 = posts.clone();
    listener.set_nonblocking(false).expect("blocking");
    let raw: Arc<Mutex<Vec<String>>> = Arc::default();
    let raw2 = raw.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let (p3, raw3) = (p2.clone(), raw2.clone());
            // One thread per connection: the hosts' hooks arrive at the same moment.
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                loop {
                    let n = match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    raw3.lock().expect("lock").push(text.clone());
                    if head.starts_with("POST /hook ") {
                        if let Ok(v) = serde_json::from_str(&body[..len]) {
                            p3.lock().expect("lock").push(v);
                        }
                    }
                    break;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://198.18.0.1:{port}/hook");
    let stack = stack_copy(dir.path(), |t| {
        let hooks = ["master", "backup", "fault", "stop"]
            .iter()
            .map(|s| format!("    {s}:\n      - webhook: {url}\n"))
            .collect::<String>();
        t.replace("  checks:\n", &format!("  notify:\n{hooks}  checks:\n"))
    });
    must(&["up", "-f", &stack, "--auto-approve"]);
    assert_lab_route(VIP);
    assert_eq!(holders(&stack), vec!["host1".to_string()]);
    // A failover and a failback.
    must(&["lab", "exec", "host1", "--", "systemctl", "stop", "nginx"]);
    assert_eq!(
        wait_holders(&stack, &["host2"], Duration::from_secs(6)),
        vec!["host2".to_string()]
    );
    must(&["lab", "exec", "host1", "--", "systemctl", "start", "nginx"]);
    assert_eq!(
        wait_holders(&stack, &["host1"], Duration::from_secs(8)),
        vec!["host1".to_string()]
    );
    std::thread::sleep(Duration::from_secs(2));

    // keepalived's own record of the transitions, per host.
    let logs = must(&["logs", "-f", &stack, "--service", "keepalived"]);
    let mut want: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in logs.lines() {
        let Some(host) = l.split_whitespace().next() else {
            continue;
        };
        if let Some(rest) = l.split("(VI_1) Entering ").nth(1) {
            let state = rest.split_whitespace().next().unwrap_or("").to_string();
            want.entry(host.to_string()).or_default().push(state);
        }
    }
    let posts = posts.lock().expect("lock").clone();
    let mut got: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in &posts {
        assert_eq!(p["instance"], "VI_1", "{p}");
        assert!(p["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{p}");
        got.entry(p["host"].as_str().expect("host").to_string())
            .or_default()
            .push(p["state"].as_str().expect("state").to_string());
    }
    assert_eq!(
        got, want,
        "webhook POSTs per host differ from keepalived's transitions\nposts: {posts:#?}\nraw: {:#?}\nlogs:\n{logs}",
        raw.lock().expect("lock")
    );
    assert_eq!(
        got.get("host1").map(Vec::as_slice),
        Some(
            &[
                "BACKUP".to_string(),
                "MASTER".into(),
                "FAULT".into(),
                "BACKUP".into(),
                "MASTER".into()
            ][..]
        ),
        "{posts:#?}"
    );
    // status shows the last transition the notify script recorded.
    let o = hactl(&["status", "-f", &stack, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    let t = v["hosts"][0]["last_transition"].as_str().unwrap_or("");
    assert!(t.starts_with("MASTER"), "{v:#}");
}

/// Issue 14 §3: a non-root `script_user` (seed 004's setup; here `nobody`) with a sub-second
/// check. hactl's check loop and notify script run as root (`user root`, `notify … root`), the
/// user's own commands as `nobody`: the VIP is held, a service stop fails over, the notify
/// script records the transition for `status`, and a `command:` hook really runs as `nobody`.
/// Before, every host went FAULT (the root-only loop could not run as `nobody`).
#[test]
fn non_root_script_user_holds_the_vip_fails_over_and_records_transitions() {
    let _g = lab_guard();
    let dir = tempfile::tempdir().expect("tempdir");
    // A file name of this run only: a leftover from an earlier run proves nothing.
    let mark = format!(
        "/tmp/hactl-notify-user-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let stack = stack_copy(dir.path(), |t| {
        t.replace(
            "  checks:\n",
            &format!("  script_user: nobody\n  notify:\n    master:\n      - command: id -un > {mark}\n  checks:\n"),
        )
        .replace("      interval: 1s\n      timeout: 1s\n", "      interval: 100ms\n")
    });
    let text = std::fs::read_to_string(&stack).expect("stack copy");
    assert!(text.contains("interval: 100ms"), "{text}");
    must(&["lab", "up", "--hosts", "3"]);
    let _down = LabDown;
    must(&["up", "-f", &stack, "--auto-approve"]);
    assert_lab_route(VIP);
    let h = wait_holders(&stack, &["host1"], Duration::from_secs(10));
    assert_eq!(
        h,
        vec!["host1".to_string()],
        "nobody holds the VIP under script_user nobody"
    );
    // Every host runs its checks: nobody is in FAULT.
    let o = hactl(&["status", "-f", &stack, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    for h in v["hosts"].as_array().expect("hosts") {
        assert_ne!(h["vrrp_state"], "FAULT", "{v:#}");
    }
    // The notify script ran as root (it recorded the state) and the hook as `nobody`.
    let who = must(&["lab", "exec", "host1", "--", "cat", &mark]);
    assert_eq!(who.trim(), "nobody");
    let t = v["hosts"][0]["last_transition"].as_str().unwrap_or("");
    assert!(t.starts_with("MASTER"), "{v:#}");
    // Failover on a service stop, recorded on the new holder.
    let t0 = Instant::now();
    must(&["lab", "exec", "host1", "--", "systemctl", "stop", "nginx"]);
    assert_eq!(
        wait_holders(&stack, &["host2"], Duration::from_secs(6)),
        vec!["host2".to_string()]
    );
    let took = t0.elapsed();
    let o = hactl(&["status", "-f", &stack, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    let t = v["hosts"][1]["last_transition"].as_str().unwrap_or("");
    assert!(t.starts_with("MASTER"), "{v:#}");
    assert!(
        v["hosts"][0]["last_transition"]
            .as_str()
            .unwrap_or("")
            .starts_with("FAULT"),
        "{v:#}"
    );
    let who = must(&["lab", "exec", "host2", "--", "cat", &mark]);
    assert_eq!(who.trim(), "nobody");
    eprintln!(
        "script_user nobody: host1 → host2 in {} ms",
        took.as_millis()
    );
}

/// Seed 001's hard-coded VRRP source address is a parameter: `hosts[].source_ip` becomes
/// `unicast_src_ip` (and `mcast_src_ip` in multicast mode); without it, the host's address.
#[test]
fn vrrp_source_ip_is_a_parameter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string("tests/fixtures/ha/seed-004-2-node.yaml")
        .or_else(|_| {
            std::fs::read_to_string(support::root().join("tests/fixtures/ha/seed-004-2-node.yaml"))
        })
        .expect("fixture");
    let edited = text.replace(
        "    address: 192.168.200.20\n",
        "    address: 192.168.200.20\n    source_ip: 192.168.200.21\n",
    );
    assert_ne!(edited, text);
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, &edited).expect("write");
    let out_dir = dir.path().join("out");
    let p = path.display().to_string();
    let o = out_dir.display().to_string();
    ok(&["render", "-f", &p, "--out", &o]);
    let conf = |h: &str| {
        std::fs::read_to_string(out_dir.join(h).join("etc/keepalived/keepalived.conf"))
            .expect("keepalived.conf rendered")
    };
    assert!(
        conf("node1").contains("    unicast_src_ip 192.168.200.21\n"),
        "{}",
        conf("node1")
    );
    assert!(
        conf("node2").contains("    unicast_src_ip 192.168.200.52\n"),
        "{}",
        conf("node2")
    );
    let multi = edited.replace("  mode: unicast\n", "  mode: multicast\n");
    std::fs::write(&path, &multi).expect("write");
    std::fs::remove_dir_all(&out_dir).expect("clean");
    ok(&["render", "-f", &p, "--out", &o]);
    assert!(
        conf("node1").contains("    mcast_src_ip 192.168.200.21\n"),
        "{}",
        conf("node1")
    );
    assert!(!conf("node2").contains("mcast_src_ip"), "{}", conf("node2"));
}
