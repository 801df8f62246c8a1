//! The spine end to end on real lab hosts: `lab up` → `up` → HTTP through the VIP → no-op plan
//! → failover on nginx stop and back → `down` restores the hosts → `lab down` leaves nothing.
//! Plus: a changed template value touches exactly one file and one service per host, an
//! unreachable host is reported while the others converge, and a wrong host key is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{
    self, assert_lab_route, lab_exec, lab_guard, ok, run, status_json, stderr, stdout, vip_holders,
};

const VIP: &str = "198.18.0.100";
const STACK: &str = "stacks/lab.yaml";

/// One bounded HTTP/1.0 GET; returns (status, body) or None on any failure.
fn get(addr: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let sa: SocketAddr = format!("{addr}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: vip\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Some((status, body))
}

/// Polls the VIP until it answers 200 with `want` as body; returns the time it took.
fn wait_for_body(want: &str, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some((200, body)) = get(VIP, 80, "/") {
            if body == want {
                return Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn lab_up(n: usize) {
    ok(&["lab", "up", "--hosts", &n.to_string()]);
}

/// A lab as `lab up` makes it: whatever an earlier test or person left on the hosts is gone
/// (hosts restart with empty overlays).
fn fresh_lab(n: usize) {
    ok(&["lab", "down"]);
    lab_up(n);
}

fn lab_down() {
    ok(&["lab", "down"]);
}

/// The pids of a service inside a host (master first when it has one).
fn pids(host: &str, process: &str) -> Vec<u32> {
    let out = lab_exec(host, &["sh", "-c", &format!("pgrep -x {process} || true")]);
    out.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn spine_end_to_end_on_three_lab_hosts() {
    let _g = lab_guard();
    fresh_lab(3);
    let out = ok(&["up", "-f", STACK, "--auto-approve", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("up --json is JSON");
    assert_eq!(v["outcome"], "applied", "{out}");

    // `up` returned once the stack serves: the VIP answers at once, from the priority winner.
    assert_eq!(v["serving"]["vip_holder"], "host1", "{out}");
    assert_lab_route(VIP);
    assert_eq!(
        get(VIP, 80, "/").map(|r| r.1),
        Some("host1".to_string()),
        "the VIP does not answer with host1 (the priority winner) right after `up`"
    );
    assert_eq!(get(VIP, 80, "/healthz").map(|r| r.0), Some(200));

    // Converged: a second plan has nothing to do.
    let o = run(&["plan", "-f", STACK, "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "plan after up is not empty:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    let s = status_json(STACK);
    assert_eq!(vip_holders(&s), vec!["host1".to_string()], "{s:#}");

    // Failover: nginx stops on the master → the VIP moves within 2 s.
    lab_exec("host1", &["systemctl", "stop", "nginx"]);
    let moved = wait_for_body("host2", Duration::from_secs(5));
    let moved = moved.expect("the VIP did not move to host2 after nginx stopped on host1");
    assert!(
        moved <= Duration::from_secs(2),
        "failover took {moved:?}, more than 2 s"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(vip_holders(&status_json(STACK)), vec!["host2".to_string()]);

    // And back when nginx returns (preemption by the higher priority).
    lab_exec("host1", &["systemctl", "start", "nginx"]);
    assert!(
        wait_for_body("host1", Duration::from_secs(6)).is_some(),
        "the VIP did not come back to host1"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(vip_holders(&status_json(STACK)), vec!["host1".to_string()]);

    // down: hactl's services stop, its files go, replaced originals come back.
    ok(&["down", "-f", STACK, "--auto-approve"]);
    for h in ["host1", "host2", "host3"] {
        let conf = lab_exec(h, &["cat", "/etc/nginx/nginx.conf"]);
        let orig = std::fs::read_to_string("/etc/nginx/nginx.conf").expect("root nginx.conf");
        assert_eq!(conf, orig, "{h}: nginx.conf was not restored");
        let left = lab_exec(
            h,
            &[
                "sh",
                "-c",
                "ls /etc/keepalived/keepalived.conf /var/lib/hactl/lab 2>/dev/null; pgrep -x keepalived; pgrep -x nginx; pgrep -x haproxy; true",
            ],
        );
        assert_eq!(left.trim(), "", "{h}: left behind after down: {left}");
    }
    // A plan after down wants everything again.
    let o = run(&["plan", "-f", STACK, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));

    lab_down();
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains("host"),
        "namespaces left"
    );
    let link = std::process::Command::new("ip")
        .args(["link", "show", "hactl0"])
        .output()
        .expect("ip runs");
    assert!(!link.status.success(), "hactl0 left behind");
    let routes = std::process::Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .expect("ip runs");
    assert!(
        !String::from_utf8_lossy(&routes.stdout).contains("198.18."),
        "routes left behind"
    );
}

/// A copy of the lab stack in a temp dir with `edit` applied to its text. The copy sits in a
/// `stacks/` folder beside a link to the repo's `secrets/` and a copy of its stack templates, as in the repo,
/// so its vault and `files:` templates resolve the same way.
fn stack_copy(dir: &Path, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(support::root().join(STACK)).expect("lab.yaml");
    let stacks = dir.join("stacks");
    std::fs::create_dir_all(&stacks).expect("mkdir stacks");
    let link = |from: &Path, to: &Path| {
        if !to.exists() {
            std::os::unix::fs::symlink(from, to).expect("symlink");
        }
    };
    link(&support::root().join("secrets"), &dir.join("secrets"));
    support::copy_stack_templates(&stacks.join("templates"));
    let path = stacks.join("lab.yaml");
    std::fs::write(&path, edit(text)).expect("write stack copy");
    path.display().to_string()
}

/// A no-op costs three processes per host (issue 16: pid files instead of `systemctl`, the
/// manifest read by the shell, no probe before the observe through a reused SSH master);
/// it must still see every kind of drift. And a reused master whose host was rebuilt within
/// its minute (a dead connection) costs a reconnect, never a failure.
#[test]
fn noop_up_still_sees_a_hand_edited_file_a_changed_mode_and_a_stopped_service() {
    let _g = lab_guard();
    fresh_lab(3);
    ok(&["up", "-f", STACK, "--auto-approve"]);
    let plan = |want: i32| {
        let o = run(&["plan", "-f", STACK, "--detailed-exitcode"]);
        assert_eq!(o.status.code(), Some(want), "{}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    plan(0);
    // By hand: a line added to haproxy.cfg on host2, keepalived.conf made 0644 on host3,
    // nginx stopped on host1 and keepalived stopped on host2.
    lab_exec(
        "host2",
        &["sh", "-c", "echo '# by hand' >> /etc/haproxy/haproxy.cfg"],
    );
    lab_exec(
        "host3",
        &["chmod", "644", "/etc/keepalived/keepalived.conf"],
    );
    lab_exec("host1", &["systemctl", "stop", "nginx"]);
    lab_exec("host2", &["systemctl", "stop", "keepalived"]);
    let out = plan(2);
    // The plan lists each host's changes under a `hostN:` line.
    let under = |host: &str, what: &str| {
        let mut current = "";
        out.lines().any(|l| {
            if !l.starts_with(' ') {
                current = l.split(':').next().unwrap_or_default();
            }
            current == host && l.starts_with(' ') && l.contains(what)
        })
    };
    for (what, host) in [
        ("/etc/haproxy/haproxy.cfg", "host2"),
        (
            "/etc/keepalived/keepalived.conf  (mode 0644 → 0600)",
            "host3",
        ),
        ("service nginx  (not running)", "host1"),
        ("service keepalived  (not running)", "host2"),
    ] {
        assert!(
            under(host, what),
            "the plan misses {what} on {host}:\n{out}"
        );
    }
    ok(&["up", "-f", STACK, "--auto-approve"]);
    plan(0);
    let mode = lab_exec(
        "host3",
        &["stat", "-c", "%a", "/etc/keepalived/keepalived.conf"],
    );
    assert_eq!(mode.trim(), "600");

    // The hosts rebuilt within the masters' minute: the reused masters hold dead
    // connections. The observe goes through them under a deadline, then through new ones.
    ok(&["down", "-f", STACK, "--auto-approve"]);
    fresh_lab(3);
    let t0 = Instant::now();
    plan(2);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "plan through stale masters took {:?}",
        t0.elapsed()
    );
    lab_down();
}

#[test]
fn one_changed_value_touches_one_file_and_reloads_one_service() {
    let _g = lab_guard();
    fresh_lab(3);
    ok(&["up", "-f", STACK, "--auto-approve"]);
    let before_ka = pids("host2", "keepalived");
    let before_ha = pids("host2", "haproxy");
    let before_ng = pids("host2", "nginx");
    assert!(!before_ka.is_empty() && !before_ha.is_empty() && !before_ng.is_empty());

    let dir = tempfile::tempdir().expect("tempdir");
    let stack = stack_copy(dir.path(), |t| {
        t.replace(
            "  health_path: /healthz\n",
            "  health_path: /healthz\n  worker_connections: 2048\n",
        )
    });
    let out = ok(&["up", "-f", &stack, "--auto-approve", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let hosts = v["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "{out}");
    for h in hosts {
        assert_eq!(h["ok"], true, "{h}");
        assert_eq!(
            h["files"],
            serde_json::json!(["/etc/nginx/nginx.conf"]),
            "{h}"
        );
        assert_eq!(h["services"], serde_json::json!(["reload nginx"]), "{h}");
    }
    // Only nginx reloaded: keepalived and haproxy kept their processes, nginx its master but
    // with new workers.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pids("host2", "keepalived"), before_ka);
    assert_eq!(pids("host2", "haproxy"), before_ha);
    let after_ng = pids("host2", "nginx");
    assert!(
        after_ng.contains(&before_ng[0]),
        "nginx master changed: restarted, not reloaded"
    );
    assert_ne!(after_ng, before_ng, "nginx workers unchanged: not reloaded");
    let conf = lab_exec(
        "host2",
        &["grep", "worker_connections", "/etc/nginx/nginx.conf"],
    );
    assert!(conf.contains("2048"), "{conf}");

    // Back to the stack as committed, then clean up.
    ok(&["up", "-f", STACK, "--auto-approve"]);
    ok(&["down", "-f", STACK, "--auto-approve"]);
    lab_down();
}

#[test]
fn unreachable_host_is_reported_and_the_others_converge() {
    let _g = lab_guard();
    fresh_lab(3);
    // Kill host3's sshd: it is the host's PID 1, so the whole host goes down.
    let pid = std::fs::read_to_string(support::lab_dir().join("hosts/host3/init.pid"))
        .expect("host3 init.pid");
    let pid: i32 = pid.trim().parse().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    let o = run(&["up", "-f", STACK, "--auto-approve", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "up hung on the dead host"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["outcome"], "failed");
    let failed = &v["plan"]["failed_hosts"];
    assert_eq!(failed.as_array().map(|a| a.len()), Some(1), "{v:#}");
    assert_eq!(failed[0]["host"], "host3");
    let ok_hosts: Vec<_> = v["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter(|h| h["ok"] == true)
        .map(|h| h["host"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ok_hosts, vec!["host1", "host2"]);

    // Human output names the host and the reason.
    let o = run(&["plan", "-f", STACK]);
    let text = stdout(&o);
    assert!(text.contains("host3: unreachable"), "{text}");

    // The lab brings host3 back; a wrong host key is refused.
    lab_up(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = std::fs::read_to_string(support::lab_dir().join("known_hosts")).expect("known_hosts");
    let lines: Vec<&str> = kh.lines().collect();
    let key_of = |i: usize| {
        lines[i]
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    // host1's line with host2's key.
    let name1 = lines[0].split_whitespace().next().expect("names");
    let wrong = format!("{name1} {}\n{}\n", key_of(1), lines[1..].join("\n"));
    std::fs::write(dir.path().join("known_hosts"), wrong).expect("write");
    let kh_path = dir.path().join("known_hosts").display().to_string();
    let stack = stack_copy(dir.path(), |t| {
        t.replace("/srv/hactl-lab/known_hosts", &kh_path)
    });
    let o = run(&["plan", "-f", &stack, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let f = &v["failed_hosts"];
    assert_eq!(f[0]["host"], "host1", "{v:#}");
    assert!(
        f[0]["error"].as_str().unwrap_or("").contains("host key"),
        "{v:#}"
    );
    ok(&["down", "-f", STACK, "--auto-approve"]);
    lab_down();
}
