//! `hactl deploy` on real lab hosts (issue 4): three hosts behind the VIP and haproxy, the app
//! run by podman-compose on each, the demo image loaded from archives made by
//! `hactl lab demo-image`. Every test holds the lab guard, brings the lab up with 3 hosts,
//! `hactl up`s the stack at v1, and takes the lab down at the end.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, assert_lab_route, lab_guard, ok, run, stderr, stdout};

const STACK: &str = "stacks/lab-app.yaml";
const HOSTS: [(&str, &str); 3] = [
    ("host1", "198.18.0.11"),
    ("host2", "198.18.0.12"),
    ("host3", "198.18.0.13"),
];

/// The demo archives, built once per test run where the stack expects them.
fn images() -> PathBuf {
    let dir = support::root().join("target/lab-app");
    std::fs::create_dir_all(&dir).expect("target/lab-app is writable");
    for (v, broken, file) in [
        ("v1", false, "demo-v1.tar"),
        ("v2", false, "demo-v2.tar"),
        ("v3", false, "demo-v3.tar"),
        ("v9", true, "demo-broken.tar"),
    ] {
        let out = dir.join(file);
        let mut args = vec!["lab", "demo-image", "--version", v, "-o"];
        let out_s = out.to_string_lossy().into_owned();
        args.push(&out_s);
        if broken {
            args.push("--broken");
        }
        ok(&args);
    }
    dir
}

fn archive(name: &str) -> String {
    images().join(name).to_string_lossy().into_owned()
}

/// What a host's nginx serves at `/`: `VERSION HOST`.
fn serving(addr: &str) -> String {
    assert_lab_route(addr.split(':').next().unwrap_or(addr));
    let o = Command::new("curl")
        .args(["-sS", "-m", "3", &format!("http://{addr}/")])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn versions() -> Vec<String> {
    HOSTS
        .iter()
        .map(|(_, a)| {
            serving(a)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Containers of the app running on a host (one per slot that runs).
fn app_containers(host: &str) -> Vec<String> {
    let out = ok(&[
        "lab",
        "exec",
        host,
        "--",
        "podman",
        "ps",
        "--filter",
        "label=io.podman.compose.service=app-1",
        "--format",
        "{{.Names}}",
    ]);
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if v.is_empty() {
        // podman-compose 1.0 labels with the docker key only
        let out = ok(&[
            "lab",
            "exec",
            host,
            "--",
            "podman",
            "ps",
            "--filter",
            "label=com.docker.compose.service=app-1",
            "--format",
            "{{.Names}}",
        ]);
        v = out
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
    }
    v
}

/// Servers haproxy on host1 has in drain or maintenance.
fn not_ready_servers() -> String {
    ok(&[
        "lab",
        "exec",
        "host1",
        "--",
        "sh",
        "-c",
        "printf 'show stat\\n' | python3 -c 'import socket,sys\ns=socket.socket(socket.AF_UNIX); s.connect(\"/run/haproxy/admin.sock\"); s.sendall(sys.stdin.buffer.read())\nb=b\"\"\nwhile True:\n    d=s.recv(65536)\n    if not d: break\n    b+=d\nsys.stdout.write(b.decode())' | awk -F, '$1==\"hactl_web\" && $2 ~ /^host/ && $18 !~ /^UP/ {print $2\" \"$18}'",
    ])
}

/// Lab up with 3 hosts, the stack up at v1 everywhere.
fn setup() {
    setup_stack(STACK);
}

/// As [`setup`], for `stack` (a variant of the lab-app stack).
fn setup_stack(stack: &str) {
    let _ = run(&["lab", "down"]);
    ok(&["lab", "up", "--hosts", "3"]);
    images();
    // `up` returns once the stack serves: the app healthy behind nginx on every host and the
    // VIP held, so both answer at once.
    ok(&["up", "-f", stack, "--auto-approve"]);
    assert_eq!(
        versions(),
        ["v1", "v1", "v1"],
        "after `hactl up` every host should serve v1"
    );
    assert_lab_route("198.18.0.100");
    assert_eq!(
        serving("198.18.0.100:8080").split_whitespace().next(),
        Some("v1"),
        "the VIP does not serve v1 through haproxy right after `up`"
    );
}

fn teardown() {
    ok(&["lab", "down"]);
}

fn deploy_json(args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut all = vec!["deploy", "-f", STACK, "--auto-approve", "--json"];
    all.extend_from_slice(args);
    let o = run(&all);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "deploy --json is not JSON ({e}):\n{}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o.status.success(), v, stderr(&o))
}

fn assert_zero_failed_rollout(batch: &str) {
    let (okk, v, err) = deploy_json(&[
        "--archive",
        &archive("demo-v2.tar"),
        "--batch",
        batch,
        "--probe",
        "--probe-rate",
        "50",
        "--probe-budget",
        "0",
        "--probe-soak",
        "25s",
    ]);
    assert!(okk, "deploy failed: {v:#}\n{err}");
    assert_eq!(v["outcome"], "deployed", "{v:#}");
    assert_eq!(v["version"], "v2");
    assert_eq!(versions(), ["v2", "v2", "v2"], "every host serves v2");
    let p = &v["probe"];
    let requests = p["requests"].as_u64().unwrap();
    assert!(
        requests >= 1500,
        "the probe saw only {requests} requests: {p:#}"
    );
    assert_eq!(p["failed"], 0, "no request may fail: {p:#}\n{err}");
    assert!(p["p99_ms"].as_f64().unwrap() > 0.0);
    for (h, _) in HOSTS {
        assert_eq!(app_containers(h).len(), 1, "{h} runs exactly one app slot");
    }
    assert_eq!(not_ready_servers(), "", "no server left drained");
    eprintln!(
        "batch {batch}: {} s, probe {} requests, p50 {} ms, p99 {} ms",
        v["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
        requests,
        p["p50_ms"],
        p["p99_ms"]
    );
}

#[test]
fn deploy_v2_under_load_has_zero_failed_requests_batch_1() {
    let _g = lab_guard();
    setup();
    assert_zero_failed_rollout("1");
    // the history on the hosts has the run, and rollback returns to v1
    let h = ok(&["deploy", "history", "-f", STACK, "--json"]);
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["version"].as_str(), last["outcome"].as_str()),
        (Some("v2"), Some("deployed"))
    );
    let out = ok(&["rollback", "-f", STACK, "--auto-approve", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["op"].as_str(), r["version"].as_str()),
        (Some("rollback"), Some("v1"))
    );
    assert_eq!(versions(), ["v1", "v1", "v1"]);
    teardown();
}

#[test]
fn deploy_v2_under_load_has_zero_failed_requests_batch_2() {
    let _g = lab_guard();
    setup();
    assert_zero_failed_rollout("2");
    teardown();
}

#[test]
fn broken_version_fails_the_canary_and_rolls_back_with_zero_failed_requests() {
    let _g = lab_guard();
    setup();
    let (okk, v, err) = deploy_json(&[
        "--archive",
        &archive("demo-broken.tar"),
        "--probe",
        "--probe-rate",
        "50",
        "--probe-budget",
        "0",
    ]);
    assert!(!okk, "a broken version must exit non-zero: {v:#}");
    assert_eq!(v["outcome"], "rolled_back", "{v:#}\n{err}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("canary") && reason.contains("health gate"),
        "clear reason: {reason}"
    );
    let failed: Vec<&serde_json::Value> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["result"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "only the canary was tried: {v:#}");
    assert!(failed[0]["error"].as_str().unwrap().contains("health gate"));
    assert_eq!(versions(), ["v1", "v1", "v1"], "every host still serves v1");
    assert_eq!(v["probe"]["failed"], 0, "{:#}", v["probe"]);
    assert_eq!(not_ready_servers(), "");
    for (h, _) in HOSTS {
        assert_eq!(
            app_containers(h).len(),
            1,
            "{h}: the broken slot was stopped"
        );
    }
    teardown();
}

#[test]
fn sigkill_mid_deploy_then_deploy_again_converges() {
    let _g = lab_guard();
    setup();
    let mut child = support::hactl()
        .args([
            "deploy",
            "-f",
            STACK,
            "--auto-approve",
            "--archive",
            &archive("demo-v2.tar"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hactl starts");
    // wait until a host is in the middle of its blue/green (its new slot starting), then kill -9
    let err = child.stderr.take().expect("stderr is piped");
    let t0 = Instant::now();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(err));
    loop {
        let line = lines
            .next()
            .expect("hactl deploy printed its progress")
            .unwrap_or_default();
        if line.contains("starting v2") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no host started: {line}"
        );
    }
    std::thread::sleep(Duration::from_millis(1200));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let (okk, v, err) = deploy_json(&["--archive", &archive("demo-v2.tar")]);
    assert!(okk, "the second deploy converges: {v:#}\n{err}");
    assert!(
        err.contains("stale deploy lock"),
        "the killed run's lock was broken: {err}"
    );
    assert_eq!(versions(), ["v2", "v2", "v2"]);
    assert_eq!(not_ready_servers(), "", "no host left drained");
    for (h, _) in HOSTS {
        assert_eq!(app_containers(h).len(), 1, "{h}: one app version running");
    }
    teardown();
}

#[test]
fn two_deploys_at_once_second_fails_naming_the_holder_or_waits() {
    let _g = lab_guard();
    setup();
    let first = support::hactl()
        .args([
            "deploy",
            "-f",
            STACK,
            "--auto-approve",
            "--archive",
            &archive("demo-v3.tar"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hactl starts");
    let pid = first.id();
    std::thread::sleep(Duration::from_millis(2000));
    let o = run(&[
        "deploy",
        "-f",
        STACK,
        "--auto-approve",
        "--archive",
        &archive("demo-v2.tar"),
    ]);
    assert!(
        !o.status.success(),
        "the second deploy must not run alongside"
    );
    let e = stderr(&o);
    // The stack's lock (taken first) or the deploy lock on the first app host names it.
    assert!(
        (e.contains("held by") || e.contains("locked by")) && e.contains(&format!("pid {pid}")),
        "names the holder: {e}"
    );
    // with --lock-wait it waits for the first and then runs
    let (okk, v, err) = deploy_json(&["--archive", &archive("demo-v2.tar"), "--lock-wait", "2m"]);
    assert!(okk, "{v:#}\n{err}");
    // With --json the wait is one of the document's warnings (docs/json.md), not a stderr line.
    let waited = v["warnings"].as_array().is_some_and(|w| {
        w.iter().filter_map(|m| m.as_str()).any(|m| {
            m.contains("waiting for the stack lock") || m.contains("waiting for the deploy lock")
        })
    });
    assert!(waited, "{v:#}\n{err}");
    let mut first = first;
    assert!(
        first.wait().unwrap().success(),
        "the first deploy finished fine"
    );
    assert_eq!(versions(), ["v2", "v2", "v2"]);
    teardown();
}

/// Containers of a compose project running on a host under docker.
fn docker_containers(host: &str, project: &str) -> Vec<String> {
    let out = ok(&[
        "lab",
        "exec",
        host,
        "--",
        "docker",
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    out.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Issue 16 §5: `app.runtime: docker` (the default, and seed 003's) end to end, with Debian's
/// docker.io and docker-compose inside lab hosts: `up` starts dockerd on demand and the app
/// at v1, a deploy under load swaps every host to v2 with no failed request, and the
/// machine's own podman/docker config and network are untouched.
#[test]
fn docker_runtime_up_and_deploy_under_load_have_zero_failed_requests() {
    let _g = lab_guard();
    for tool in ["/usr/sbin/dockerd", "/usr/bin/docker-compose"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "this test needs Debian's docker.io and docker-compose: bash scripts/deps.sh"
        );
    }
    let before = support::machine_state();
    let _ = run(&["lab", "down"]);
    ok(&["lab", "up", "--hosts", "3"]);
    let dir = images();
    let text = std::fs::read_to_string(support::root().join(STACK)).expect("lab-app.yaml");
    let text = text
        .replace("name: lab-app\n", "name: lab-docker\n")
        .replace("runtime: podman", "runtime: docker")
        .replace("../target/lab-app/demo-v1.tar", "demo-v1.tar");
    assert!(text.contains("runtime: docker") && text.contains("name: lab-docker"));
    let stack = dir.join("lab-docker.yaml");
    std::fs::write(&stack, text).expect("the stack is written");
    let stack = stack.to_string_lossy().into_owned();

    ok(&["up", "-f", &stack, "--auto-approve"]);
    let t0 = Instant::now();
    while versions() != ["v1", "v1", "v1"] {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "after `hactl up` every host should serve v1 from docker, got {:?}",
            versions()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (h, _) in HOSTS {
        assert_eq!(
            docker_containers(h, "hactl-lab-docker-blue").len(),
            1,
            "{h} runs the app under docker"
        );
        assert!(
            app_containers(h).is_empty(),
            "{h}: nothing runs under podman"
        );
    }
    assert_lab_route("198.18.0.100");
    while serving("198.18.0.100:8080").split_whitespace().next() != Some("v1") {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "the VIP does not serve v1 through haproxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let o = run(&[
        "deploy",
        "-f",
        &stack,
        "--auto-approve",
        "--json",
        "--archive",
        &dir.join("demo-v2.tar").to_string_lossy(),
        "--probe",
        "--probe-rate",
        "50",
        "--probe-budget",
        "0",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("deploy --json is not JSON ({e}): {}", stderr(&o)));
    assert!(o.status.success(), "deploy failed: {v:#}\n{}", stderr(&o));
    assert_eq!(v["outcome"], "deployed", "{v:#}");
    assert_eq!(versions(), ["v2", "v2", "v2"], "every host serves v2");
    let p = &v["probe"];
    assert!(p["requests"].as_u64().unwrap_or(0) >= 200, "{p:#}");
    assert_eq!(p["failed"], 0, "no request may fail: {p:#}");
    for (h, _) in HOSTS {
        assert_eq!(
            docker_containers(h, "hactl-lab-docker-green").len(),
            1,
            "{h} runs v2 in the green slot"
        );
        assert!(
            docker_containers(h, "hactl-lab-docker-blue").is_empty(),
            "{h}: the old slot is stopped"
        );
    }
    teardown();
    assert_eq!(
        before,
        support::machine_state(),
        "docker in the lab changed the machine's config or network"
    );
}

/// Issue 14 §3: the balancers' default health check (haproxy's `check_path` = nginx's
/// `health_path` = `/healthz`) must test the app, not nginx's own fixed 200. With the app on
/// host2 stopped and nginx still running, haproxy takes host2 out of rotation within its
/// fall × check_interval (2 × 1 s in lab-app.yaml), plus one interval for the phase of the
/// check timer and the poll. Before, nginx answered 200 and host2 stayed in rotation.
#[test]
fn default_health_check_takes_a_host_whose_app_is_stopped_out_of_rotation() {
    let _g = lab_guard();
    setup();
    assert_eq!(not_ready_servers().trim(), "", "every server starts UP");
    let names = app_containers("host2");
    assert!(!names.is_empty(), "no app container on host2");
    let t0 = Instant::now();
    let mut args = vec!["lab", "exec", "host2", "--", "podman", "stop", "-t", "0"];
    args.extend(names.iter().map(String::as_str));
    ok(&args);
    let stopped = t0.elapsed();
    let out = loop {
        let out = not_ready_servers();
        if out.contains("host2") || t0.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = t0.elapsed();
    assert!(out.contains("host2"), "host2 stayed in rotation: {out:?}");
    // nginx itself still runs on host2: only the app is gone.
    let active = support::lab_exec("host2", &["systemctl", "is-active", "nginx"]);
    assert_eq!(active.trim(), "active");
    eprintln!(
        "app stopped on host2 (stop took {} ms): out of rotation after {} ms",
        stopped.as_millis(),
        took.as_millis()
    );
    assert!(
        took <= stopped + Duration::from_millis(3000),
        "host2 left rotation after {} ms, more than fall × interval (2 × 1 s) + 1 s",
        took.as_millis()
    );
    teardown();
}

/// Inside a lab host: stop both app replicas, let nginx see them fail, start them again and
/// print `both=MS nginx=MS`: when both replicas answer again and when nginx first answers 200,
/// in ms since the start. Polls every 20 ms for at most 30 s.
const BLIP: &str = r#"
set -u
now() { date +%s%3N; }
names=$(podman ps --format '{{.Names}}' --filter label=io.podman.compose.service=app-1)
[ -n "$names" ] || names=$(podman ps --format '{{.Names}}' --filter label=com.docker.compose.service=app-1)
names="$names $(podman ps --format '{{.Names}}' --filter label=io.podman.compose.service=app-2)"
names="$names $(podman ps --format '{{.Names}}' --filter label=com.docker.compose.service=app-2)"
podman stop -t 0 $names >/dev/null
for i in 1 2 3 4; do curl -s -o /dev/null -m 1 http://127.0.0.1:80/; done
code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:80/)
[ "$code" = 502 ] || { echo "nginx answered $code with both replicas stopped"; exit 1; }
t0=$(now)
podman start $names >/dev/null &
both='' ngx=''
while [ $(( $(now) - t0 )) -lt 30000 ]; do
    if [ -z "$both" ] \
        && curl -sf -o /dev/null -m 1 http://127.0.0.1:8000/ \
        && curl -sf -o /dev/null -m 1 http://127.0.0.1:8001/; then
        both=$(( $(now) - t0 ))
    fi
    if [ -z "$ngx" ] && curl -sf -o /dev/null -m 1 http://127.0.0.1:80/; then
        ngx=$(( $(now) - t0 ))
    fi
    [ -n "$both" ] && [ -n "$ngx" ] && break
    sleep 0.02
done
wait
echo "both=${both:-never} nginx=${ngx:-never}"
"#;

/// Runs [`BLIP`] on host1 and returns (both replicas back, nginx back) in ms.
fn blip() -> (u64, u64) {
    let out = support::lab_exec("host1", &["sh", "-c", BLIP]);
    let get = |k: &str| {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {k} in {out:?}"))
    };
    (get("both="), get("nginx="))
}

/// Issue 14 §3: nginx in front of two loopback replicas. Both replicas blip (stopped, nginx
/// answers 502, started again): nginx answers again within a second of them. The control
/// half puts nginx's default `max_fails` back on the same host and prints what the same blip
/// then costs (on the branch that wrote it: nginx's `fail_timeout`, 10 s of "no live
/// upstreams"; see the note at the end).
#[test]
fn both_replicas_blip_and_nginx_recovers_within_a_second() {
    let _g = lab_guard();
    let dir = support::root().join("target/lab-app-replicas");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text = std::fs::read_to_string(support::root().join(STACK)).expect("lab-app.yaml");
    let edited = text.replace("  replicas: 1\n", "  replicas: 2\n").replace(
        "archive: ../target/lab-app/demo-v1.tar",
        &format!("archive: {}", archive("demo-v1.tar")),
    );
    assert_ne!(edited, text);
    let stack = dir.join("lab-app.yaml");
    std::fs::write(&stack, edited).expect("write the stack copy");
    let stack = stack.to_string_lossy().into_owned();
    setup_stack(&stack);
    let (both, nginx) = blip();
    eprintln!("replicas blip: both back after {both} ms, nginx after {nginx} ms");
    assert!(
        nginx <= both + 1000,
        "nginx answered {nginx} ms after the start, {} ms after both replicas ({both} ms)",
        nginx.saturating_sub(both)
    );
    // Control: nginx's defaults (max_fails=1 fail_timeout=10s) on the same host.
    support::lab_exec(
        "host1",
        &[
            "sh",
            "-c",
            "sed -i 's/ max_fails=0;/;/' /etc/nginx/nginx.conf && nginx -t -q && nginx -s reload && sleep 1",
        ],
    );
    let (both_d, nginx_d) = blip();
    eprintln!(
        "with nginx's default max_fails: both back after {both_d} ms, nginx after {nginx_d} ms"
    );
    // Not asserted: on the vrrp branch the control took 10.7 s (nginx's fail_timeout), but on
    // the merged tree it recovered as fast as the rendered setting in two runs out of two
    // (408 and 353 ms) and the cause is not found yet; the numbers are printed above so a run
    // shows whether the control still demonstrates the difference.
    let _ = (both_d, nginx_d);
    teardown();
}
