//! `hactl deploy` on seed 003 through its target group: moto behind the AWS-like layer (with
//! targets that drain for the deregistration delay and start `initial`), the instances mapped
//! to lab hosts (as `aws.rs` maps them), and `hactl lab balancer` standing in for the ALB. The
//! probe targets the stack's default endpoint, the balancer's DNS name, which
//! `--probe-resolve` maps to the stand-in on loopback: no DNS is asked, nothing leaves the
//! machine.
//!
//! What is read back: the deploy's JSON (per batch: deregistered, drained, swapped,
//! registered, healthy, requests and failures in the window) and the stand-in's own log, one
//! line per change of the backend set as `DescribeTargetHealth` showed it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::aws::{lab_workdir, Workdir, SEED};
use crate::aws_like::AwsLike;
use crate::support::{stderr, stdout};

/// `hactl lab balancer` running; its log lines collected as they come.
struct StandIn {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl StandIn {
    fn start(w: &Workdir, layer: &AwsLike, tg: &str, backends: &[(String, String)]) -> StandIn {
        let mut c = w.base();
        c.envs(layer.env());
        c.args(["lab", "balancer", "--target-group", tg, "--max-time", "10m"]);
        for (id, addr) in backends {
            c.args(["--backend", &format!("{id}={addr}")]);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hactl lab balancer starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in out.lines().map_while(Result::ok) {
                    let v: Value = serde_json::from_str(&l).expect("one JSON event per line");
                    if v["event"] == "listening" {
                        let _ = tx.send(v["addr"].as_str().unwrap().to_string());
                    }
                    lines.lock().unwrap().push(v);
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the stand-in says where it listens");
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        StandIn { child, port, lines }
    }

    fn events(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The log lines stamped within `(from, to)` (unix ms), with the last one before it (the
    /// set in force when the span began).
    fn events_within(&self, (from, to): (u64, u64)) -> Vec<Value> {
        let all: Vec<Value> = self
            .events()
            .into_iter()
            .filter(|e| e["event"] == "backends")
            .collect();
        let first = all
            .iter()
            .rposition(|e| e["t"].as_u64().unwrap() < from)
            .unwrap_or(0);
        all[first..]
            .iter()
            .filter(|e| e["t"].as_u64().unwrap() <= to)
            .cloned()
            .collect()
    }

    /// Waits until the stand-in routes to every id in `ids`.
    fn wait_active(&self, ids: &[String]) {
        let t0 = Instant::now();
        loop {
            let last = self
                .events()
                .into_iter()
                .rev()
                .find(|e| e["event"] == "backends");
            if let Some(e) = last {
                let active: Vec<String> = serde_json::from_value(e["active"].clone()).unwrap();
                if ids.iter().all(|i| active.contains(i)) {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the stand-in never routed to {ids:?}: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ids_of(e: &Value, key: &str) -> Vec<String> {
    serde_json::from_value(e[key].clone()).unwrap_or_default()
}

/// SSH masters exit after this many idle seconds (60 outside tests): shorter than one batch
/// (~7 s), so every host's master expires while the other host's batch runs, and the deploy
/// must replace it (`ssh::Connection::revive_if_idle`). With 60 s, a 10-host deploy lost a
/// host this way (`cannot start a remote shell: the connection was terminated`).
const SSH_PERSIST: &str = "4";

/// One deploy under the probe at 200 req/s through the stand-in; its JSON report.
fn deploy(
    w: &Workdir,
    layer: &AwsLike,
    dns: &str,
    port: u16,
    archive: &str,
    extra: &[&str],
) -> (bool, Value, String, (u64, u64)) {
    let mut c = w.base();
    c.envs(layer.env());
    c.env("HACTL_SSH_PERSIST", SSH_PERSIST);
    c.args([
        "deploy",
        "-f",
        SEED,
        "--archive",
        archive,
        "--auto-approve",
        "--json",
    ]);
    c.args([
        "--probe",
        "--probe-rate",
        "200",
        "--probe-max",
        "2m",
        "--no-wait",
    ]);
    c.args(["--probe-resolve", &format!("{dns}=127.0.0.1:{port}")]);
    c.args(extra);
    let from = unix_ms();
    let o = c.output().expect("hactl runs");
    let to = unix_ms();
    let out = stdout(&o);
    let err = stderr(&o);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("deploy --json: {e}\nstdout:\n{out}\nstderr:\n{err}"));
    (o.status.success(), v, err, (from, to))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Each batch of a deploy through the target group, against the stand-in's log of that
/// deploy: hactl deregistered, saw the drain end (DescribeTargetHealth no longer listed the
/// host) and only then swapped, registered and saw it healthy; the drain lasted the 3 s
/// delay; the stand-in saw the host draining before hactl saw it drained, then saw it gone,
/// and sent it no new connection from the moment it was draining until after it was
/// registered again; no request of the batch's window failed.
fn assert_drained_before_each_swap(r: &Value, events: &[Value], id_of: &dyn Fn(&str) -> String) {
    let batches = r["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "{r:#}");
    for b in batches {
        let host = b["hosts"][0].as_str().unwrap();
        let id = id_of(host);
        let at = |k: &str| b[k].as_u64().unwrap_or_else(|| panic!("{k}: {b:#}"));
        let (dereg, drained, swapped, registered, healthy) = (
            at("deregistered_at"),
            at("drained_at"),
            at("swapped_at"),
            at("registered_at"),
            at("healthy_at"),
        );
        assert!(
            dereg <= drained
                && drained <= swapped
                && swapped <= registered
                && registered <= healthy,
            "{b:#}"
        );
        assert!(
            drained - dereg >= 2500,
            "the drain lasts the 3 s delay: {b:#}"
        );
        assert_eq!(b["failed"], 0, "{b:#}");
        assert!(b["requests"].as_u64().unwrap() > 0, "{b:#}");

        let backends: Vec<&Value> = events.iter().filter(|e| e["event"] == "backends").collect();
        let i = backends
            .iter()
            .position(|e| ids_of(e, "draining").contains(&id))
            .unwrap_or_else(|| panic!("{host} never seen draining: {events:#?}"));
        let t_draining = backends[i]["t"].as_u64().unwrap();
        assert!(
            i > 0 && ids_of(backends[i - 1], "active").contains(&id),
            "{host} was in rotation until it drained: {events:#?}"
        );
        assert!(
            t_draining <= drained,
            "{host}: draining at the stand-in at {t_draining}, drained for hactl at {drained}"
        );
        let j = (i..backends.len())
            .find(|&j| {
                !ids_of(backends[j], "draining").contains(&id)
                    && !ids_of(backends[j], "active").contains(&id)
            })
            .unwrap_or_else(|| panic!("{host} never gone from the backends: {events:#?}"));
        let t_gone = backends[j]["t"].as_u64().unwrap();
        assert!(t_gone < registered, "{host} gone at {t_gone}: {b:#}");
        let k = (j..backends.len())
            .find(|&k| ids_of(backends[k], "active").contains(&id))
            .unwrap_or_else(|| panic!("{host} never back in rotation: {events:#?}"));
        let t_back = backends[k]["t"].as_u64().unwrap();
        assert!(
            t_back >= registered,
            "{host} routed to at {t_back}, before its registration at {registered}: {events:#?}"
        );
        for e in &backends[i..k] {
            assert!(
                !ids_of(e, "active").contains(&id),
                "{host} routed while out: {e:#}"
            );
        }
    }
}

/// The acceptance run of issue 13: a good version with 0 failed requests of >= 5,000, each
/// host seen draining then gone at the stand-in before its swap and never routed to until it
/// is registered again; a broken version rolls back with 0 failed; `--stop-first` (the app
/// down during the swap) loses nothing either, because of the drain; the same `--stop-first`
/// deploy with the deregistration switched off loses requests. SSH masters expire between
/// batches all along (`SSH_PERSIST`).
#[test]
fn aws_deploy_drains_each_batch_at_the_target_group_under_load() {
    let _guard = crate::support::lab_guard();
    let _ = crate::support::run(&["lab", "down"]);
    crate::support::ok(&["lab", "up", "--hosts", "2"]);
    let layer = AwsLike::start(json!({"target_draining": true, "target_initial_secs": 1}));
    let w = lab_workdir();
    w.rewrite("deregistration_delay: 30s", "deregistration_delay: 3s");
    for (v, broken) in [("v2", false), ("v3", true)] {
        let path = w.dir.path().join(format!("demo-{v}.tar"));
        let mut args = vec!["lab", "demo-image", "--version", v, "-o"];
        args.push(path.to_str().unwrap());
        if broken {
            args.push("--broken");
        }
        crate::support::ok(&args);
    }
    let archive = |v: &str| {
        w.dir
            .path()
            .join(format!("demo-{v}.tar"))
            .to_string_lossy()
            .into_owned()
    };

    let mut up = w.base();
    up.envs(layer.env());
    up.env("HACTL_SSH_PERSIST", SSH_PERSIST);
    up.args(["up", "--auto-approve", "-f", SEED]);
    let o = up.output().unwrap();
    assert!(o.status.success(), "up: {}\n{}", stdout(&o), stderr(&o));

    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    let tg = st["resources"]["aws_lb_target_group.web"]["id"]
        .as_str()
        .expect("the target group in the state")
        .to_string();
    let dns = st["outputs"]["balancer"]["dns_name"]
        .as_str()
        .unwrap()
        .to_string();
    let hosts: Vec<(String, String)> = st["outputs"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["instance_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let lab_addr = |name: &str| match name {
        "web-0" => "198.18.0.11:80",
        "web-1" => "198.18.0.12:80",
        other => panic!("no lab host for {other}"),
    };
    let backends: Vec<(String, String)> = hosts
        .iter()
        .map(|(n, id)| (id.clone(), lab_addr(n).to_string()))
        .collect();
    let ids: Vec<String> = hosts.iter().map(|(_, id)| id.clone()).collect();
    let id_of = |name: &str| hosts.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let stand_in = StandIn::start(&w, &layer, &tg, &backends);
    stand_in.wait_active(&ids);

    // 1. v2 under 200 req/s, the new slot started beside the old one: 0 failed of >= 5,000;
    //    each host drained at the stand-in before its swap.
    let (ok, r, err, span) = deploy(
        &w,
        &layer,
        &dns,
        stand_in.port,
        &archive("v2"),
        &["--probe-budget", "0", "--probe-soak", "12s"],
    );
    assert!(ok, "deploy v2: {r:#}\n{err}");
    assert_eq!(r["outcome"], "deployed", "{r:#}");
    let p = &r["probe"];
    assert_eq!(p["failed"], 0, "{p:#}\n{err}");
    assert!(p["requests"].as_u64().unwrap() >= 5000, "{p:#}");
    assert_eq!(
        p["versions"]["v2"].as_u64().map(|n| n > 0),
        Some(true),
        "{p:#}"
    );
    let events = stand_in.events_within(span);
    assert_drained_before_each_swap(&r, &events, &id_of);
    eprintln!(
        "v2: {} of {} requests failed; batches (ms): {}",
        p["failed"],
        p["requests"],
        r["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!(
                "{} drain {} swap {} healthy {} overhead {}",
                b["hosts"][0], b["drain_ms"], b["host_ms"], b["register_ms"], b["overhead_ms"]
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );

    // 2. A broken version: the canary fails its health gate (its old version kept serving
    //    beside it), goes back in the target group, 0 failed requests.
    let (ok, r, err, _) = deploy(
        &w,
        &layer,
        &dns,
        stand_in.port,
        &archive("v3"),
        &["--probe-budget", "0", "--probe-soak", "2s"],
    );
    assert!(!ok, "a broken version fails: {r:#}");
    assert_eq!(r["outcome"], "rolled_back", "{r:#}\n{err}");
    assert_eq!(r["probe"]["failed"], 0, "{r:#}\n{err}");
    assert!(r["probe"]["versions"].get("v3").is_none(), "{r:#}");
    eprintln!(
        "v3 (broken): {}, {} of {} requests failed",
        r["outcome"], r["probe"]["failed"], r["probe"]["requests"]
    );
    stand_in.wait_active(&ids);

    // 3. `--stop-first`: the app is down on each host during its swap, and the drain is what
    //    keeps that from users: 0 failed.
    let (ok, r, err, span) = deploy(
        &w,
        &layer,
        &dns,
        stand_in.port,
        &archive("v1"),
        &["--stop-first", "--probe-budget", "0", "--probe-soak", "2s"],
    );
    assert!(ok, "deploy v1 --stop-first: {r:#}\n{err}");
    assert_eq!(r["probe"]["failed"], 0, "{:#}\n{err}", r["probe"]);
    assert!(err.contains("stopping the running version"), "{err}");
    assert_drained_before_each_swap(&r, &stand_in.events_within(span), &id_of);
    eprintln!(
        "v1 --stop-first: {} of {} requests failed",
        r["probe"]["failed"], r["probe"]["requests"]
    );
    stand_in.wait_active(&ids);

    // 4. The same swap with the deregistration switched off loses requests: the stand-in keeps
    //    sending to a host whose app is down, so it would catch a deploy that skips the drain.
    let (_, r, err, span) = deploy(
        &w,
        &layer,
        &dns,
        stand_in.port,
        &archive("v2"),
        &["--no-deregister", "--stop-first", "--probe-soak", "2s"],
    );
    assert!(
        r["probe"]["failed"].as_u64().unwrap() > 0,
        "a deploy that skips the drain must lose requests: {r:#}\n{err}"
    );
    for b in r["batches"].as_array().unwrap() {
        assert!(b.get("deregistered_at").is_none(), "{b:#}");
    }
    for e in stand_in.events_within(span) {
        assert!(ids_of(&e, "draining").is_empty(), "nothing drained: {e:#}");
    }
    eprintln!(
        "no-deregister --stop-first: {} of {} requests failed",
        r["probe"]["failed"], r["probe"]["requests"]
    );

    // 5. The balancer refuses to take the second batch out (its DeregisterTargets fails, as a
    //    drain that never ends would): the batch is put back unchanged, the canary already on
    //    the new version is rolled back, the outcome says why and is in the hosts' history.
    let versions: Vec<&str> = r["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_str().unwrap())
        .collect();
    assert!(versions.iter().all(|v| *v == versions[0]), "{r:#}");
    let (from, to) = if versions[0] == "v1" {
        ("v1", "v2")
    } else {
        ("v2", "v1")
    };
    assert_eq!(versions[0], from, "{r:#}");
    layer.configure(json!({"fail_calls": {"DeregisterTargets": [2]}}));
    let (ok, r, err, _) = deploy(
        &w,
        &layer,
        &dns,
        stand_in.port,
        &archive(to),
        &["--probe-soak", "2s"],
    );
    layer.configure(json!({"fail_calls": {}}));
    assert!(!ok, "{r:#}\n{err}");
    assert_eq!(layer.stats()["failed_calls"], 1, "the fault happened once");
    assert_eq!(r["outcome"], "rolled_back", "{r:#}\n{err}");
    let second = r["batches"][1]["hosts"][0].as_str().unwrap().to_string();
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("did not take") && reason.contains(&second),
        "{reason}"
    );
    for h in r["hosts"].as_array().unwrap() {
        assert_eq!(h["version"], from, "every host back on {from}: {h:#}");
        let want = if h["host"] == second {
            "failed"
        } else {
            "rolled_back"
        };
        assert_eq!(h["result"], want, "{h:#}");
    }
    assert_eq!(r["probe"]["failed"], 0, "{:#}\n{err}", r["probe"]);
    let mut hist = w.base();
    hist.envs(layer.env());
    hist.args(["deploy", "history", "-f", SEED, "--json"]);
    let o = hist.output().unwrap();
    let h: Value = serde_json::from_str(&stdout(&o)).expect("history --json");
    let last = h["history"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (last["outcome"].as_str(), last["version"].as_str()),
        (Some("rolled_back"), Some(to)),
        "recorded in the hosts' history: {h:#}"
    );
    eprintln!("not drained: {reason}");
    stand_in.wait_active(&ids);

    drop(stand_in);
    let mut down = w.base();
    down.envs(layer.env());
    down.args(["down", "--auto-approve", "-f", SEED]);
    let _ = down.output();
    crate::support::ok(&["lab", "down"]);
}

/// `hactl lab balancer` refuses a backend outside loopback and the lab before it listens.
#[test]
fn stand_in_balancer_refuses_a_backend_outside_the_lab() {
    let o = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args([
            "lab",
            "balancer",
            "--target-group",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1",
            "--backend",
            "i-1=198.19.200.7:80",
            "--max-time",
            "1s",
        ])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("198.19.200.7"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("listening"), "{}", stdout(&o));
}
