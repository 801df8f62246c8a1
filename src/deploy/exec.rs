//! Drives a deploy over SSH, in the order [`rollout`](super::rollout) decides. This is the only
//! part of `deploy` that does I/O.
//!
//! A run: connect to every app host and every haproxy host (nothing changes unless all
//! answer) → take the deploy lock on the first app host → inspect each host's slots → put
//! back any server a killed deploy left drained → load the image where it is missing → start
//! the probe → per batch: drain the batch's servers at every haproxy and wait for their
//! sessions to reach 0, run `app-ctl deploy` on each host of the batch in parallel, put the
//! servers back, decide (canary, failure budget, probe budget) → on a stop, roll every
//! updated host back the same way → record the history on every app host → release the lock.
//! The lock is released on every path that returns; a killed hactl leaves a lock that the next
//! run on the same machine recognises as stale (its pid is gone) and breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::balancer::{TargetGroup, Window};
use super::probe::{Probe, ProbeConfig, ProbeReport};
use super::remote;
use super::rollout::{self, Budget, HistoryEntry, HostApp, HostStep, LockHolder, Outcome, Slot};
use super::DeployError;
use crate::onhost::app_ctl::{self, AppParams};
use crate::provider::hosts::{connect_all, Connection};
use crate::stack::model::Runtime;
use crate::stack::Stack;

/// One `HACTL\t…` record, split on tabs.
type Rec = Vec<String>;

fn records(stdout: &str) -> Vec<Rec> {
    crate::onhost::record::fields(stdout)
        .map(|f| f.into_iter().map(str::to_string).collect())
        .collect()
}

/// The image to deploy.
#[derive(Debug, Clone)]
pub struct Target {
    /// The reference compose runs.
    pub image: String,
    /// The archive to load where the image is missing (`archive:` / `--archive`).
    pub archive: Option<Vec<u8>>,
}

/// Reads a docker-archive: its first name (`RepoTags[0]`) and its bytes.
pub fn read_archive(path: &Path) -> Result<Target, DeployError> {
    let err = |message: String| DeployError::Archive {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut ar = tar::Archive::new(bytes.as_slice());
    let entries = ar.entries().map_err(|e| err(e.to_string()))?;
    for e in entries {
        let mut e = e.map_err(|e| err(e.to_string()))?;
        let is_manifest = e
            .path()
            .map(|p| p.as_os_str() == "manifest.json")
            .unwrap_or(false);
        if !is_manifest {
            continue;
        }
        let mut text = String::new();
        e.read_to_string(&mut text)
            .map_err(|e| err(format!("manifest.json: {e}")))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("manifest.json: {e}")))?;
        let name = v[0]["RepoTags"][0]
            .as_str()
            .ok_or_else(|| err("manifest.json names no image (RepoTags is empty)".into()))?;
        return Ok(Target {
            image: name.to_string(),
            archive: Some(bytes.clone()),
        });
    }
    Err(err("no manifest.json: not a docker-archive".into()))
}

/// The target the stack itself names (`app.image` or `app.archive`).
pub fn stack_target(stack: &Stack) -> Result<Target, DeployError> {
    let app = stack
        .file
        .app
        .as_ref()
        .ok_or_else(|| DeployError::NoApp(stack.name().into()))?;
    if let Some(a) = &app.archive {
        return read_archive(&stack.resolve_path(&a.value));
    }
    let image = app
        .image
        .as_ref()
        .map(|i| i.value.clone())
        .ok_or_else(|| DeployError::NoApp(stack.name().into()))?;
    Ok(Target {
        image,
        archive: None,
    })
}

/// Settings of one deploy run.
#[derive(Debug, Clone)]
pub struct Options {
    pub batch: usize,
    pub max_failed_hosts: usize,
    pub lock_wait: Duration,
    pub probe: Option<(ProbeConfig, String)>,
    pub probe_budget: Option<u64>,
    /// Keep probing this long after the last batch (late failures count too).
    pub probe_soak: Duration,
    /// `deploy` or `rollback`.
    pub op: &'static str,
    /// On a `provider: aws` stack: the target group batches leave and rejoin (instead of
    /// haproxy's drain).
    pub balancer: Option<TargetGroup>,
    /// Stop a host's running version before starting the new one (`--stop-first`), instead
    /// of starting the new slot beside it. Refused where batches do not leave rotation.
    pub stop_first: bool,
}

/// Where a rollout's steps go: (the host, or empty for the whole run; the message; the time
/// since the rollout started). The command passes its hooks' `step` (the view shows them on
/// stderr: on a terminal with the elapsed time, else plain lines); deploy never prints.
pub type StepSink = Box<dyn Fn(&str, &str, Duration) + Send + Sync>;

/// The rollout's steps, reported through a [`StepSink`].
pub struct Progress {
    sink: StepSink,
    start: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool, sink: StepSink) -> Progress {
        Progress {
            sink,
            start: Instant::now(),
            quiet,
        }
    }
    fn say(&self, host: &str, msg: &str) {
        if !self.quiet {
            (self.sink)(host, msg, self.start.elapsed());
        }
    }
}

/// One host's swap: it went through, its on-host timings, its log lines, why it failed.
type Swapped = (bool, HostTimings, Vec<String>, Option<String>);

/// Timings reported by `app-ctl deploy` on the host (ms since it started).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostTimings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<u64>,
    /// When the health gate gave up (a failed host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drained: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<u64>,
}

/// What happened on one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    /// `updated`, `skipped`, `failed`, `rolled_back`, `rollback_failed`, `not_reached`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub timings: HostTimings,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

/// One batch's timing: wall time, the drain, the slowest host's on-host time, the wait for the
/// balancer's health checks, and what is left: hactl's own overhead (SSH and API round trips,
/// orchestration). On an AWS stack, when the batch left the target group, had drained and
/// was `healthy` again (unix ms); with a probe, the requests answered in the batch's window
/// and how many of them failed.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub hosts: Vec<String>,
    pub elapsed_ms: u64,
    pub drain_ms: u64,
    pub host_ms: u64,
    /// From the batch's registration to `healthy` (AWS stacks; 0 elsewhere).
    pub register_ms: u64,
    pub overhead_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drained_at: Option<u64>,
    /// When the swap's first command went to the hosts (AWS stacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swapped_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
}

/// A batch's window of the probe: `(requests, failed)` between two [`Probe::counts`] readings
/// (None without a probe).
fn probe_window(
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
) -> (Option<u64>, Option<u64>) {
    match (before, after) {
        (Some((r0, f0)), Some((r1, f1))) => (Some(r1 - r0), Some(f1 - f0)),
        _ => (None, None),
    }
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub stack: String,
    pub op: String,
    pub outcome: Outcome,
    pub version: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub hosts: Vec<HostResult>,
    pub batches: Vec<BatchReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    pub elapsed_ms: u64,
    /// The waits the stack configures for one host (health gate minimum), for benchmarks.
    pub configured_wait_ms: u64,
}

/// Open connections to every app and haproxy host of a stack.
pub struct Session<'a> {
    pub stack: &'a Stack,
    pub params: AppParams,
    conns: BTreeMap<String, Connection>,
    /// App hosts, file order.
    pub app_hosts: Vec<String>,
    /// Hosts running haproxy (the VIP hosts when the stack has `haproxy`).
    pub lb_hosts: Vec<String>,
    socket: String,
    drain_timeout: Duration,
}

/// Output of one script: success, records, stderr.
struct Ran {
    ok: bool,
    recs: Vec<Rec>,
    stderr: String,
}

impl<'a> Session<'a> {
    /// Connects to every host the deploy touches; fails (changing nothing) if one is missing.
    pub async fn open(stack: &'a Stack) -> Result<Session<'a>, DeployError> {
        let params =
            AppParams::from_stack(stack).ok_or_else(|| DeployError::NoApp(stack.name().into()))?;
        let app_hosts: Vec<String> = stack
            .hosts
            .iter()
            .filter(|h| h.has_role("app"))
            .map(|h| h.name.clone())
            .collect();
        let lb_hosts: Vec<String> = match &stack.file.haproxy {
            Some(_) => stack
                .hosts
                .iter()
                .filter(|h| h.has_role("vip"))
                .map(|h| h.name.clone())
                .collect(),
            None => Vec::new(),
        };
        let wanted: BTreeSet<&String> = app_hosts.iter().chain(&lb_hosts).collect();
        let hosts: Vec<_> = stack
            .hosts
            .iter()
            .filter(|h| wanted.contains(&h.name))
            .collect();
        let mut conns = BTreeMap::new();
        let mut first_err = None;
        for (name, c) in connect_all(stack, &hosts).await {
            match c {
                Ok(c) => {
                    conns.insert(name, c);
                }
                Err(e) => {
                    first_err.get_or_insert(DeployError::Connect {
                        host: name,
                        message: e.to_string(),
                    });
                }
            }
        }
        if let Some(e) = first_err {
            for (_, c) in conns {
                c.close().await;
            }
            return Err(e);
        }
        let (socket, drain_timeout) = match &stack.file.haproxy {
            Some(h) => (h.admin_socket.clone(), h.drain_timeout.value.0),
            None => (String::new(), Duration::ZERO),
        };
        Ok(Session {
            stack,
            params,
            conns,
            app_hosts,
            lb_hosts,
            socket,
            drain_timeout,
        })
    }

    pub async fn close(self) {
        for (_, c) in self.conns {
            c.close().await;
        }
    }

    async fn run(&self, host: &str, script: &str) -> Result<Ran, DeployError> {
        let conn = self.conns.get(host).ok_or_else(|| DeployError::Remote {
            host: host.into(),
            message: "no connection".into(),
        })?;
        let out = conn
            .run_script(script)
            .await
            .map_err(|e| DeployError::Remote {
                host: host.into(),
                message: e.to_string(),
            })?;
        Ok(Ran {
            ok: out.success,
            recs: records(&out.stdout),
            stderr: out.stderr,
        })
    }

    fn lock_host(&self) -> &str {
        self.app_hosts.first().map(String::as_str).unwrap_or("")
    }

    /// Takes the deploy lock, waiting up to `wait` for a live holder; breaks a stale one.
    pub async fn lock(
        &self,
        op: &str,
        wait: Duration,
        progress: &Progress,
    ) -> Result<String, DeployError> {
        let host = self.lock_host().to_string();
        let machine = local_machine();
        let me = LockHolder {
            who: format!(
                "{}@{machine}",
                std::env::var("USER").unwrap_or_else(|_| "root".into())
            ),
            machine: machine.clone(),
            pid: std::process::id(),
            op: op.to_string(),
            since: unix_now(),
            token: format!("{:016x}", rand::random::<u64>()),
        };
        let json = serde_json::to_vec(&me).unwrap_or_default();
        let deadline = Instant::now() + wait;
        let mut said = false;
        loop {
            let ran = self
                .run(&host, &remote::lock_script(self.stack.name(), &json))
                .await?;
            let mut holder: Option<LockHolder> = None;
            let mut acquired = false;
            for r in &ran.recs {
                match r.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["lock", "acquired"] => acquired = true,
                    ["lock", "held", b64] => {
                        use base64::Engine as _;
                        holder = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok());
                    }
                    _ => {}
                }
            }
            if acquired {
                return Ok(me.token);
            }
            if !ran.ok {
                return Err(DeployError::Remote {
                    host,
                    message: format!("cannot take the deploy lock: {}", ran.stderr.trim()),
                });
            }
            if let Some(h) = &holder {
                if h.is_stale(&machine, pid_alive) {
                    progress.say(
                        &host,
                        &format!("breaking a stale deploy lock of {h} (that process is gone)"),
                    );
                    self.run(&host, &remote::unlock_script(self.stack.name(), &h.token))
                        .await?;
                    continue;
                }
            }
            let holder_text = holder
                .map(|h| h.to_string())
                .unwrap_or_else(|| "another hactl (holder still being written)".into());
            if Instant::now() >= deadline {
                return Err(DeployError::Locked {
                    stack: self.stack.name().into(),
                    holder: holder_text,
                    host,
                    lock: crate::onhost::paths::lock_dir(self.stack.name()),
                });
            }
            if !said {
                progress.say(
                    &host,
                    &format!("waiting for the deploy lock held by {holder_text}"),
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn unlock(&self, token: &str) {
        let host = self.lock_host().to_string();
        let _ = self
            .run(&host, &remote::unlock_script(self.stack.name(), token))
            .await;
    }

    /// Each app host's slots, image and health.
    pub async fn inspect(&self, target: &str) -> Result<BTreeMap<String, HostApp>, DeployError> {
        let script = app_ctl::ctl_call(self.stack.name(), &["inspect", target]);
        let runs = futures::future::join_all(
            self.app_hosts
                .iter()
                .map(|h| async { (h.clone(), self.run(h, &script).await) }),
        )
        .await;
        let mut out = BTreeMap::new();
        let mut not_up = Vec::new();
        for (host, ran) in runs {
            let ran = ran?;
            let mut app = HostApp {
                host: host.clone(),
                ..Default::default()
            };
            for r in &ran.recs {
                match r.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["fail", "no-ctl", ..] => not_up.push(host.clone()),
                    ["app", "active", s] => app.active = Slot::parse(s),
                    ["app", "image", i] if !i.is_empty() => app.image = Some(i.to_string()),
                    ["app", "running", s] => app.running.extend(Slot::parse(s)),
                    ["app", "healthy", v] => app.healthy = *v == "yes",
                    ["app", "has-image", v] => app.has_target_image = *v == "yes",
                    _ => {}
                }
            }
            out.insert(host, app);
        }
        if !not_up.is_empty() {
            return Err(DeployError::NotUp {
                hosts: not_up.join(", "),
            });
        }
        Ok(out)
    }

    /// Loads the target's archive on the hosts that lack the image, in parallel.
    pub async fn ensure_image(
        &self,
        hosts: &[String],
        target: &Target,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let Some(archive) = &target.archive else {
            return Ok(());
        };
        let script = remote::load_image_script(self.params.runtime, archive, &target.image);
        let runs = futures::future::join_all(hosts.iter().map(|h| {
            let script = &script;
            async move {
                progress.say(
                    h,
                    &format!("loading {} ({} bytes)", target.image, archive.len()),
                );
                (h.clone(), self.run(h, script).await)
            }
        }))
        .await;
        for (host, ran) in runs {
            let ran = ran?;
            if !ran.ok {
                let log: Vec<String> = ran
                    .recs
                    .iter()
                    .filter(|r| r.first().map(String::as_str) == Some("log"))
                    .map(|r| r[1..].join(" "))
                    .collect();
                return Err(DeployError::Remote {
                    host,
                    message: format!(
                        "loading the image failed: {}",
                        if log.is_empty() {
                            ran.stderr.trim().to_string()
                        } else {
                            log.join("; ")
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    async fn on_lbs(&self, script: &str) -> Result<Vec<(String, Ran)>, DeployError> {
        let runs = futures::future::join_all(
            self.lb_hosts
                .iter()
                .map(|h| async move { (h.clone(), self.run(h, script).await) }),
        )
        .await;
        let mut out = Vec::new();
        for (h, r) in runs {
            let r = r?;
            if !r.ok {
                let why = r
                    .recs
                    .iter()
                    .find(|x| x.first().map(String::as_str) == Some("fail"))
                    .map(|x| x.join(" "))
                    .unwrap_or_else(|| r.stderr.trim().to_string());
                return Err(DeployError::Remote {
                    host: h,
                    message: format!("haproxy runtime API: {why}"),
                });
            }
            out.push((h, r));
        }
        Ok(out)
    }

    /// Drains servers at every haproxy and waits for their sessions to reach 0.
    async fn drain(&self, servers: &[String]) -> Result<(), DeployError> {
        if self.lb_hosts.is_empty() || servers.is_empty() {
            return Ok(());
        }
        let script = remote::drain_script(&self.socket, servers, self.drain_timeout.as_secs_f64());
        self.on_lbs(&script).await.map(|_| ())
    }

    async fn ready(&self, servers: &[String]) -> Result<(), DeployError> {
        if self.lb_hosts.is_empty() || servers.is_empty() {
            return Ok(());
        }
        self.on_lbs(&remote::ready_script(&self.socket, servers))
            .await
            .map(|_| ())
    }

    /// Servers some haproxy has in drain (left by a killed deploy).
    async fn drained(&self) -> Result<BTreeSet<String>, DeployError> {
        let mut out = BTreeSet::new();
        if self.lb_hosts.is_empty() {
            return Ok(out);
        }
        for (_, r) in self.on_lbs(&remote::drained_script(&self.socket)).await? {
            for rec in r.recs {
                if rec.first().map(String::as_str) == Some("drained") {
                    out.extend(rec.get(1).cloned());
                }
            }
        }
        Ok(out)
    }

    /// Swaps each `(host, slot, image)` in parallel. By default `app-ctl deploy` starts
    /// `image` in `slot` beside the running version, gates it on health, points nginx at it
    /// and stops the old slot; a failed gate leaves the old version serving. With
    /// `stop_first`, `app-ctl stop` first takes both slots down (the host is out of rotation),
    /// and a host whose new slot then fails gets its recorded version back (`app-ctl start`).
    /// Returns each host's result, in order, and how long the stops took (ms).
    async fn swap(
        &self,
        swaps: &[(String, Slot, String)],
        stop_first: bool,
        verb: &str,
        progress: &Progress,
    ) -> (Vec<Swapped>, u64) {
        let hosts: Vec<String> = swaps.iter().map(|(h, _, _)| h.clone()).collect();
        let st = Instant::now();
        let stop_failed = if stop_first {
            progress.say(
                "",
                &format!("stopping the running version on {}", hosts.join(", ")),
            );
            self.ctl_each(&hosts, "stop").await
        } else {
            Vec::new()
        };
        let stop_ms = if stop_first {
            st.elapsed().as_millis() as u64
        } else {
            0
        };
        let runs: Vec<Swapped> = futures::future::join_all(swaps.iter().map(|(h, to, image)| {
            let stopped_badly = stop_failed.iter().find(|(x, _)| x == h).cloned();
            async move {
                if let Some((_, why)) = stopped_badly {
                    return (false, HostTimings::default(), Vec::new(), Some(why));
                }
                let v = rollout::version_of(image);
                progress.say(h, &format!("{verb} {v} in slot {}", to.name()));
                self.deploy_host(h, *to, image).await
            }
        }))
        .await;
        if stop_first {
            // A host whose new slot failed runs nothing: its recorded version goes back up.
            let down: Vec<String> = hosts
                .iter()
                .zip(&runs)
                .filter(|(_, r)| !r.0)
                .map(|(h, _)| h.clone())
                .collect();
            for (h, why) in self.ctl_each(&down, "start").await {
                progress.say(&h, &format!("restarting the old version failed: {why}"));
            }
        }
        (runs, stop_ms)
    }

    /// `app-ctl deploy SLOT IMAGE` on one host.
    async fn deploy_host(&self, host: &str, to: Slot, image: &str) -> Swapped {
        let script = app_ctl::ctl_call(self.stack.name(), &["deploy", to.name(), image]);
        let ran = match self.run(host, &script).await {
            Ok(r) => r,
            Err(e) => {
                return (
                    false,
                    HostTimings::default(),
                    Vec::new(),
                    Some(e.to_string()),
                )
            }
        };
        let mut t = HostTimings::default();
        let mut log = Vec::new();
        let mut fail = None;
        let mut ok = false;
        for r in &ran.recs {
            match r.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["step", name, ms] => {
                    let ms = ms.parse().ok();
                    match *name {
                        "started" => t.started = ms,
                        "healthy" => t.healthy = ms,
                        "unhealthy" => t.unhealthy = ms,
                        "switched" => t.switched = ms,
                        "drained" => t.drained = ms,
                        "stopped" => t.stopped = ms,
                        _ => {}
                    }
                }
                ["ok", "deploy", ..] => ok = true,
                ["fail", what, rest @ ..] => {
                    fail = Some(match *what {
                        "health" => format!(
                            "slot {} did not pass its health gate ({} within {} s)",
                            rest.join(" "),
                            self.params.health_path,
                            self.params.health_deadline_s
                        ),
                        "start" => format!("compose could not start slot {}", rest.join(" ")),
                        "switch" => "nginx refused the switch (nginx -t failed)".to_string(),
                        other => format!("{other} {}", rest.join(" ")),
                    })
                }
                ["log", rest @ ..] => log.push(rest.join("\t")),
                _ => {}
            }
        }
        if !ok && fail.is_none() {
            fail = Some(format!(
                "app-ctl failed: {}",
                ran.stderr.trim().lines().last().unwrap_or("no output")
            ));
        }
        (ok, t, log, fail)
    }

    /// `app-ctl VERB` on each of `hosts` in parallel (`stop`: both slots down; `start`: the
    /// recorded version back up in the active slot, gated on health). Returns the hosts where
    /// it failed, with why.
    async fn ctl_each(&self, hosts: &[String], verb: &str) -> Vec<(String, String)> {
        let script = app_ctl::ctl_call(self.stack.name(), &[verb]);
        let runs = futures::future::join_all(
            hosts
                .iter()
                .map(|h| async { (h.clone(), self.run(h, &script).await) }),
        )
        .await;
        runs.into_iter()
            .filter_map(|(h, r)| match r {
                Ok(r) if r.ok => None,
                Ok(r) => Some((
                    h,
                    format!(
                        "app-ctl {verb} failed: {}",
                        r.stderr.trim().lines().last().unwrap_or("no output")
                    ),
                )),
                Err(e) => Some((h, e.to_string())),
            })
            .collect()
    }

    /// Stops a leftover slot.
    async fn stop_stray(&self, host: &str, slot: Slot) -> Result<(), DeployError> {
        let r = self
            .run(
                host,
                &app_ctl::ctl_call(self.stack.name(), &["down", slot.name()]),
            )
            .await?;
        if r.ok {
            Ok(())
        } else {
            Err(DeployError::Remote {
                host: host.into(),
                message: format!("stopping leftover slot {} failed", slot.name()),
            })
        }
    }

    /// Every app host's history, merged.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>, DeployError> {
        let script = remote::history_read_script(self.stack.name());
        let mut per_host = Vec::new();
        for h in &self.app_hosts {
            let conn = self.conns.get(h).ok_or_else(|| DeployError::Remote {
                host: h.clone(),
                message: "no connection".into(),
            })?;
            let out = conn
                .run_script(&script)
                .await
                .map_err(|e| DeployError::Remote {
                    host: h.clone(),
                    message: e.to_string(),
                })?;
            per_host.push(rollout::parse_history(&out.stdout));
        }
        Ok(rollout::merge_history(per_host))
    }

    async fn record(&self, entry: &HistoryEntry) {
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let script = remote::history_append_script(self.stack.name(), &line);
        futures::future::join_all(self.app_hosts.iter().map(|h| self.run(h, &script))).await;
    }
}

fn local_machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn who() -> String {
    format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "root".into()),
        local_machine()
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The configured minimum wait of one host's blue/green: the health gate's passes.
fn configured_wait_ms(p: &AppParams) -> u64 {
    ((p.healthy_threshold.saturating_sub(1)) as f64 * p.health_interval_s * 1000.0) as u64
}

/// Runs a whole deploy (or rollback) to `target`.
pub async fn deploy(
    session: &Session<'_>,
    target: &Target,
    opts: &Options,
    progress: &Progress,
) -> Result<DeployReport, DeployError> {
    let token = session.lock(opts.op, opts.lock_wait, progress).await?;
    let result = deploy_locked(session, target, opts, progress).await;
    session.unlock(&token).await;
    result
}

async fn deploy_locked(
    s: &Session<'_>,
    target: &Target,
    opts: &Options,
    progress: &Progress,
) -> Result<DeployReport, DeployError> {
    let t0 = Instant::now();
    let version = rollout::version_of(&target.image);
    progress.say("", &format!("{} {} ({})", opts.op, version, target.image));
    let apps = s.inspect(&target.image).await?;

    // A killed deploy can leave servers drained: every host still serves from its active
    // slot (app-ctl switches atomically), so they go back in rotation first.
    let drained = s.drained().await?;
    if !drained.is_empty() {
        let back: Vec<String> = drained.into_iter().collect();
        progress.say(
            "",
            &format!(
                "back in rotation after an interrupted run: {}",
                back.join(", ")
            ),
        );
        s.ready(&back).await?;
    }
    // The same on an AWS stack: a healthy host left out of the target group rejoins it.
    if let Some(tg) = &opts.balancer {
        let back: Vec<String> = tg
            .missing()
            .await?
            .into_iter()
            .filter(|h| apps.get(h).is_some_and(|a| a.healthy))
            .collect();
        if !back.is_empty() {
            progress.say(
                "",
                &format!(
                    "back in the target group after an interrupted run: {}",
                    back.join(", ")
                ),
            );
            tg.put_back(&back, &mut Window::default()).await?;
        }
    }
    // The probe covers the whole deploy, image loading included.
    let probe = match &opts.probe {
        Some((cfg, url)) => {
            progress.say("", &format!("probe: {url} at {} req/s", cfg.rate));
            Some((
                Probe::start(cfg.clone(), Duration::from_secs(20)).await?,
                url.clone(),
            ))
        }
        None => None,
    };

    let missing: Vec<String> = apps
        .values()
        .filter(|a| !a.has_target_image)
        .map(|a| a.host.clone())
        .collect();
    s.ensure_image(&missing, target, progress).await?;

    let prio: Vec<(String, u8)> = s
        .app_hosts
        .iter()
        .map(|h| {
            (
                h.clone(),
                s.stack.host(h).map(|x| x.priority).unwrap_or(100),
            )
        })
        .collect();
    let order = rollout::order_hosts(&prio);
    let batches = rollout::batches(&order, opts.batch);
    let budget = Budget {
        max_failed_hosts: opts.max_failed_hosts,
        probe_failures: opts.probe_budget,
    };
    let mut results: BTreeMap<String, HostResult> = BTreeMap::new();
    let mut batch_reports = Vec::new();
    let mut failed_total = 0usize;
    let mut stop: Option<rollout::StopReason> = None;
    // hosts this run switched: (host, previous image, slot now active)
    let mut updated: Vec<(String, Option<String>, Slot)> = Vec::new();

    for (bi, batch) in batches.iter().enumerate() {
        let bt = Instant::now();
        let label = if bi == 0 { "canary" } else { "batch" };
        let mut work = Vec::new();
        for h in batch {
            let app = apps.get(h).cloned().unwrap_or_default();
            match rollout::host_step(&app, &target.image) {
                HostStep::Skip => {
                    progress.say(h, &format!("already on {version}"));
                    results.insert(h.clone(), result(h, "skipped", &app, &version, None));
                }
                HostStep::StopStray { slot } => {
                    progress.say(
                        h,
                        &format!(
                            "already on {version}; stopping leftover slot {}",
                            slot.name()
                        ),
                    );
                    let r = s.stop_stray(h, slot).await;
                    let mut res = result(h, "skipped", &app, &version, None);
                    if let Err(e) = r {
                        res.error = Some(e.to_string());
                    }
                    results.insert(h.clone(), res);
                }
                HostStep::BlueGreen { to, .. } => work.push((h.clone(), app, to)),
            }
        }
        let servers: Vec<String> = work.iter().map(|(h, _, _)| h.clone()).collect();
        let mut drain_ms = 0;
        let mut host_ms = 0;
        let mut register_ms = 0;
        let mut failed_in_batch = Vec::new();
        let mut window = Window::default();
        let before = probe.as_ref().map(|(p, _)| p.counts());
        if !servers.is_empty() {
            progress.say(
                "",
                &format!(
                    "{label} {}/{}: {}",
                    bi + 1,
                    batches.len(),
                    servers.join(", ")
                ),
            );
            let dt = Instant::now();
            // Out of rotation: at the target group (AWS) or at every haproxy (hosts).
            match &opts.balancer {
                Some(tg) => {
                    if tg.deregister {
                        progress.say(
                            "",
                            &format!("deregistering {} from the target group", servers.join(", ")),
                        );
                    }
                    if let Err(e) = tg.take_out(&servers, &mut window).await {
                        // Nothing of this batch changed: put it back, and stop as a failed
                        // gate does, so the batches already on the new version are rolled
                        // back and the outcome is recorded in the hosts' history.
                        let _ = tg.put_back(&servers, &mut window).await;
                        let error = e.to_string();
                        progress.say("", &format!("FAILED: {error}"));
                        for (h, app, _) in &work {
                            let mut res = result(h, "failed", app, &version, None);
                            res.version = app
                                .image
                                .as_deref()
                                .map(rollout::version_of)
                                .unwrap_or_default();
                            res.error = Some(error.clone());
                            results.insert(h.clone(), res);
                        }
                        failed_total += servers.len();
                        let elapsed_ms = bt.elapsed().as_millis() as u64;
                        let (requests, failed) =
                            probe_window(before, probe.as_ref().map(|(p, _)| p.counts()));
                        batch_reports.push(BatchReport {
                            hosts: batch.clone(),
                            elapsed_ms,
                            drain_ms: dt.elapsed().as_millis() as u64,
                            host_ms: 0,
                            register_ms: 0,
                            overhead_ms: 0,
                            deregistered_at: window.deregistered_at,
                            drained_at: None,
                            swapped_at: None,
                            registered_at: window.registered_at,
                            healthy_at: window.healthy_at,
                            requests,
                            failed,
                        });
                        stop = Some(rollout::StopReason::NotDrained {
                            hosts: servers.clone(),
                            error,
                        });
                        break;
                    }
                    if window.drained_at.is_some() {
                        progress.say("", &format!("{} drained", servers.join(", ")));
                    }
                }
                None => {
                    if !s.lb_hosts.is_empty() {
                        progress.say("", &format!("draining {} at haproxy", servers.join(", ")));
                    }
                    s.drain(&servers).await?;
                }
            }
            drain_ms = dt.elapsed().as_millis() as u64;
            window.swapped_at = Some(super::balancer::unix_ms());
            let swaps: Vec<(String, Slot, String)> = work
                .iter()
                .map(|(h, _, to)| (h.clone(), *to, target.image.clone()))
                .collect();
            let (runs, stop_ms) = s.swap(&swaps, opts.stop_first, "starting", progress).await;
            drain_ms += stop_ms;
            // Back in rotation whatever happened: a host whose swap failed still serves its
            // old version. A batch the balancer does not take back (not `healthy` in time)
            // fails its hosts; those already on the new version are rolled back like any
            // updated host.
            let mut reg_err: Option<String> = None;
            match &opts.balancer {
                Some(tg) => {
                    let rt = Instant::now();
                    progress.say(
                        "",
                        &format!(
                            "registering {} and waiting until healthy",
                            servers.join(", ")
                        ),
                    );
                    if let Err(e) = tg.put_back(&servers, &mut window).await {
                        reg_err = Some(e.to_string());
                    }
                    register_ms = rt.elapsed().as_millis() as u64;
                }
                None => s.ready(&servers).await?,
            }
            for ((h, app, to), (ok, timings, log, fail)) in work.iter().zip(runs) {
                host_ms = host_ms.max(timings.stopped.or(timings.healthy).unwrap_or(0));
                let mut res = result(
                    h,
                    if ok { "updated" } else { "failed" },
                    app,
                    &version,
                    Some(*to),
                );
                res.timings = timings;
                res.log = log;
                if ok {
                    updated.push((h.clone(), app.image.clone(), *to));
                }
                let fail = match (&reg_err, ok) {
                    (Some(e), true) => Some(e.clone()),
                    _ => fail,
                };
                let ok = ok && reg_err.is_none();
                if !ok {
                    res.result = "failed".into();
                }
                res.error = fail.clone();
                if ok {
                    progress.say(
                        h,
                        &format!("on {version} (slot {}), back in rotation", to.name()),
                    );
                } else {
                    progress.say(h, &format!("FAILED: {}", fail.unwrap_or_default()));
                    failed_in_batch.push(h.clone());
                }
                results.insert(h.clone(), res);
            }
        }
        failed_total += failed_in_batch.len();
        let elapsed_ms = bt.elapsed().as_millis() as u64;
        let (requests, failed) = probe_window(before, probe.as_ref().map(|(p, _)| p.counts()));
        batch_reports.push(BatchReport {
            hosts: batch.clone(),
            elapsed_ms,
            drain_ms,
            host_ms,
            register_ms,
            overhead_ms: elapsed_ms.saturating_sub(drain_ms + host_ms + register_ms),
            deregistered_at: window.deregistered_at,
            drained_at: window.drained_at,
            swapped_at: window.swapped_at.filter(|_| opts.balancer.is_some()),
            registered_at: window.registered_at,
            healthy_at: window.healthy_at,
            requests,
            failed,
        });
        let probe_failed = probe.as_ref().map(|(p, _)| p.failed()).unwrap_or(0);
        stop = rollout::after_batch(bi, &failed_in_batch, failed_total, probe_failed, budget);
        if stop.is_some() {
            break;
        }
    }

    // Failures within the budget still end as `deployed`; each failed host says why.
    let mut outcome = Outcome::Deployed;
    if let Some(reason) = &stop {
        progress.say("", &format!("stopping: {reason}; rolling back"));
        outcome = Outcome::RolledBack;
        for chunk in updated.chunks(opts.batch.max(1)) {
            let servers: Vec<String> = chunk.iter().map(|(h, _, _)| h.clone()).collect();
            let mut window = Window::default();
            match &opts.balancer {
                Some(tg) => {
                    // A chunk the balancer does not take out stays on the new version (the
                    // rollback goes on with the next chunk and the outcome is recorded).
                    if let Err(e) = tg.take_out(&servers, &mut window).await {
                        let _ = tg.put_back(&servers, &mut window).await;
                        progress.say("", &format!("FAILED: {e}"));
                        for h in &servers {
                            if let Some(r) = results.get_mut(h) {
                                r.result = "rollback_failed".into();
                                r.error = Some(e.to_string());
                            }
                        }
                        outcome = Outcome::Failed;
                        continue;
                    }
                }
                None => s.drain(&servers).await?,
            }
            // Hosts with a previous version swap back to it; the others fail at once.
            let swaps: Vec<(String, Slot, String)> = chunk
                .iter()
                .filter_map(|(h, prev, now)| Some((h.clone(), now.other(), prev.clone()?)))
                .collect();
            let (mut swapped, _) = s
                .swap(&swaps, opts.stop_first, "rolling back to", progress)
                .await;
            let runs: Vec<Swapped> = chunk
                .iter()
                .map(
                    |(h, _, _)| match swaps.iter().position(|(x, _, _)| x == h) {
                        Some(i) => std::mem::take(&mut swapped[i]),
                        None => (
                            false,
                            HostTimings::default(),
                            Vec::new(),
                            Some("no previous version to roll back to".into()),
                        ),
                    },
                )
                .collect();
            match &opts.balancer {
                Some(tg) => {
                    if let Err(e) = tg.put_back(&servers, &mut window).await {
                        progress.say("", &e.to_string());
                        outcome = Outcome::Failed;
                    }
                }
                None => s.ready(&servers).await?,
            }
            for ((h, prev, _), (ok, _, _, fail)) in chunk.iter().zip(runs) {
                if let Some(r) = results.get_mut(h) {
                    r.result = if ok { "rolled_back" } else { "rollback_failed" }.into();
                    if ok {
                        r.version = prev.as_deref().map(rollout::version_of).unwrap_or_default();
                    } else {
                        r.error = fail;
                        outcome = Outcome::Failed;
                    }
                }
            }
        }
    }

    let probe_report = match probe {
        Some((p, url)) => {
            let left = opts.probe_soak;
            if !left.is_zero() {
                progress.say(
                    "",
                    &format!("probe: soaking {:.1} s more", left.as_secs_f64()),
                );
                tokio::time::sleep(left).await;
            }
            let r = p.finish(&url).await;
            progress.say(
                "",
                &format!(
                    "probe: {} requests, {} failed, p50 {:.1} ms, p99 {:.1} ms",
                    r.stats.requests, r.stats.failed, r.stats.p50_ms, r.stats.p99_ms
                ),
            );
            Some(r)
        }
        None => None,
    };
    // A probe failure after the last batch still fails the deploy when it gates it.
    if outcome == Outcome::Deployed && stop.is_none() {
        if let (Some(b), Some(r)) = (opts.probe_budget, &probe_report) {
            if r.stats.failed > b {
                stop = Some(rollout::StopReason::ProbeFailures {
                    failed: r.stats.failed,
                    budget: b,
                });
                outcome = Outcome::Failed;
            }
        }
    }
    let reason = stop.as_ref().map(|r| r.to_string()).or_else(|| {
        (failed_total > 0).then(|| {
            format!(
                "{failed_total} host(s) failed within `--max-failed-hosts {}`",
                opts.max_failed_hosts
            )
        })
    });
    let entry = HistoryEntry {
        time: unix_now(),
        version: version.clone(),
        image: target.image.clone(),
        who: format!(
            "{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
            local_machine()
        ),
        outcome,
        op: opts.op.to_string(),
        id: format!("{:016x}", rand::random::<u64>()),
    };
    s.record(&entry).await;
    let hosts = s
        .app_hosts
        .iter()
        .map(|h| {
            results.remove(h).unwrap_or_else(|| HostResult {
                host: h.clone(),
                result: "not_reached".into(),
                from: apps
                    .get(h)
                    .and_then(|a| a.image.as_deref().map(rollout::version_of)),
                version: apps
                    .get(h)
                    .and_then(|a| a.image.as_deref().map(rollout::version_of))
                    .unwrap_or_default(),
                slot: apps.get(h).and_then(|a| a.active),
                error: None,
                timings: HostTimings::default(),
                log: Vec::new(),
            })
        })
        .collect();
    Ok(DeployReport {
        stack: s.stack.name().into(),
        op: opts.op.into(),
        outcome,
        version,
        image: target.image.clone(),
        reason,
        hosts,
        batches: batch_reports,
        probe: probe_report,
        elapsed_ms: t0.elapsed().as_millis() as u64,
        configured_wait_ms: configured_wait_ms(&s.params),
    })
}

fn result(host: &str, what: &str, app: &HostApp, version: &str, slot: Option<Slot>) -> HostResult {
    HostResult {
        host: host.into(),
        result: what.into(),
        from: app.image.as_deref().map(rollout::version_of),
        version: version.into(),
        slot: slot.or(app.active),
        error: None,
        timings: HostTimings::default(),
        log: Vec::new(),
    }
}

/// For `hactl up`: before `app-ctl start` runs on a host, make sure the image it will run is
/// there (loading the stack's archive if needed) and recorded. Returns an error message.
pub async fn prepare_up(stack: &Stack, conn: &Connection) -> Result<(), String> {
    let target = stack_target(stack).map_err(|e| e.to_string())?;
    let runtime = stack
        .file
        .app
        .as_ref()
        .map(|a| a.runtime.value)
        .unwrap_or(Runtime::Podman);
    let entry = HistoryEntry {
        time: unix_now(),
        version: rollout::version_of(&target.image),
        image: target.image.clone(),
        who: who(),
        outcome: Outcome::Deployed,
        op: "up".into(),
        // the same on every host: the history shows one `up`, not one per host
        id: format!("up-{}", target.image),
    };
    let mut line = serde_json::to_vec(&entry).unwrap_or_default();
    line.push(b'\n');
    let seed = remote::seed_image_script(stack.name(), &target.image, &line);
    let out = conn.run_script(&seed).await.map_err(|e| e.to_string())?;
    if !out.success {
        return Err(format!(
            "cannot record the app image: {}",
            out.stderr.trim()
        ));
    }
    // the recorded image may be a deployed version, not the stack's: load what is recorded
    let recorded = conn
        .run_script(&format!(
            "cat {}/image 2>/dev/null; exit 0\n",
            crate::onhost::paths::app_dir(stack.name())
        ))
        .await
        .map_err(|e| e.to_string())?
        .stdout
        .trim()
        .to_string();
    if recorded != target.image {
        return Ok(());
    }
    if let Some(archive) = &target.archive {
        let cli = match runtime {
            Runtime::Podman => "podman",
            Runtime::Docker => "docker",
        };
        let have = conn
            .run_script(&format!(
                "{cli} image inspect {} >/dev/null 2>&1\n",
                crate::onhost::sh::q(&target.image)
            ))
            .await
            .map_err(|e| e.to_string())?;
        if !have.success {
            let out = conn
                .run_script(&remote::load_image_script(runtime, archive, &target.image))
                .await
                .map_err(|e| e.to_string())?;
            if !out.success {
                return Err(format!(
                    "loading {} failed: {}",
                    target.image,
                    records(&out.stdout)
                        .iter()
                        .map(|r| r.join(" "))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    Ok(())
}
