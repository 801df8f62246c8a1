//! The failover drill behind `hactl drill`: a drill that measures itself.
//!
//! It finds the VIP holder, starts a bounded HTTP probe against the VIP (at most `--rate`
//! requests a second for at most `--max-time`; only loopback or lab addresses that route via
//! the lab bridge), injects the fault on the holder, measures the outage and the time until
//! another host answers, restores, measures the failback, and ends by asking every host
//! whether it holds the VIP: exactly one must. The figures are compared with what VRRP
//! promises for the stack's advert_int, check interval/fall and priorities
//! ([`crate::ha::timing`]).
//!
//! `keepalived-kill` is the case that must not be passed over: keepalived dies by SIGKILL and
//! leaves the address on the host, the backup takes over after Master_Down_Interval, and two
//! hosts hold the VIP. The drill reports that split brain, leaves it for `hactl up` to repair
//! (which starts keepalived again, so the old master rejoins the election and the loser
//! releases the address), and exits non-zero.
//!
//! The command (`cli/drill.rs`) turns its arguments into [`Settings`]; the report it gets back
//! is printed by `view::drill`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ha::priority::Model;
use crate::ha::probe::{self, Sample};
use crate::ha::timing::{self, Scenario};
use crate::lab::Lab;
use crate::onhost::record::{self as script_record, Record};
use crate::provider::hosts::script;
use crate::provider::hosts::{self as hp, Connection};
use crate::stack::{self, Host, Stack};

/// What the drill does, from `hactl drill`'s arguments.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stack file (re-applied with `hactl up` after a `host-down`).
    pub file: std::path::PathBuf,
    /// The fault to inject on the current VIP holder.
    pub scenario: Scenario,
    /// service-stop: the service to stop (default: nginx, else haproxy).
    pub service: Option<String>,
    /// Probe requests per second (1–50).
    pub rate: u32,
    /// Longest the probe runs, in seconds (1–30).
    pub max_time: u64,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DrillError {
    #[error("the stack has no `vip`: there is nothing to fail over")]
    #[diagnostic(code(hactl::drill::no_vip))]
    NoVip,
    #[error("the VIP {0} is not a loopback or lab address: drills only send traffic to the lab")]
    #[diagnostic(
        code(hactl::drill::not_lab),
        help("run drills against the lab (`hactl lab up`, stacks/lab.yaml); production drills are not supported")
    )]
    NotLab(IpAddr),
    #[error("the stack has neither `nginx` nor `haproxy`: there is nothing to probe on the VIP")]
    #[diagnostic(code(hactl::drill::no_port))]
    NoPort,
    #[error("before the drill the VIP must have exactly one holder; it has {0}")]
    #[diagnostic(
        code(hactl::drill::holders),
        help("see `hactl status -f STACK`; `hactl up -f STACK` repairs a stopped keepalived")
    )]
    Holders(String),
    #[error("`{scenario}` needs a lab host, and `{host}` is not one")]
    #[diagnostic(
        code(hactl::drill::lab_only),
        help("host-down and link-down act on the lab's namespaces and links")
    )]
    LabOnly { scenario: String, host: String },
    #[error("{0}")]
    #[diagnostic(code(hactl::drill::inject))]
    Inject(String),
}

/// The evidence, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub vip: String,
    pub port: u16,
    pub old_holder: String,
    /// The host that answered on the VIP after the fault (first success from another host).
    pub new_holder: Option<String>,
    /// Who VRRP should elect (from the stack's priorities).
    pub expected_holder: Option<String>,
    /// First failed request → first success after the last failure, between fault and restore.
    pub outage_ms: Option<u64>,
    /// Upper bound from the stack's timers.
    pub expected_ms: Option<u64>,
    pub expected_basis: String,
    /// outage ≤ expected + one probe interval + 250 ms (ARP and scheduling).
    pub within_expectation: Option<bool>,
    pub failed_requests: usize,
    pub total_requests: usize,
    /// Fault → first answer from another host (client view).
    pub time_to_new_holder_ms: Option<u64>,
    /// Holders (by `ip addr` on each host) once the failover settled, before the restore.
    pub holders_during: Vec<String>,
    pub restored: bool,
    /// Restore → the old holder holds the VIP alone again (with preemption).
    pub failback_ms: Option<u64>,
    pub failback_outage_ms: Option<u64>,
    pub failback_failed_requests: usize,
    pub holders_after: Vec<String>,
    pub split_brain: bool,
    pub unreachable_after: Vec<String>,
    pub notes: Vec<String>,
}

/// Open connections to the VIP hosts, reopened when a host comes back.
struct Conns<'a> {
    stack: &'a Stack,
    hosts: Vec<&'a Host>,
    open: BTreeMap<String, Connection>,
}

impl<'a> Conns<'a> {
    async fn new(stack: &'a Stack) -> Conns<'a> {
        let hosts: Vec<&Host> = stack.hosts.iter().filter(|h| h.has_role("vip")).collect();
        let mut c = Conns {
            stack,
            hosts,
            open: BTreeMap::new(),
        };
        c.reconnect().await;
        c
    }

    async fn reconnect(&mut self) {
        let missing: Vec<&Host> = self
            .hosts
            .iter()
            .copied()
            .filter(|h| !self.open.contains_key(&h.name))
            .collect();
        for (name, c) in hp::connect_all(self.stack, &missing).await {
            if let Ok(c) = c {
                self.open.insert(name, c);
            }
        }
    }

    async fn run(&self, host: &str, text: &str) -> Result<String, String> {
        let c = self
            .open
            .get(host)
            .ok_or_else(|| format!("{host}: not connected"))?;
        // A host cut off mid-drill would hold the query until SSH's keepalive gives up.
        let out = tokio::time::timeout(Duration::from_secs(3), c.run_script(text))
            .await
            .map_err(|_| format!("{host}: no answer within 3 s"))?
            .map_err(|e| e.to_string())?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(format!("{host}: {}", out.stderr.trim()))
        }
    }

    /// Who holds the VIP (by `ip addr`), and who could not be asked.
    async fn holders(&mut self, vip: &str) -> (Vec<String>, Vec<String>) {
        let text = script::status_script(Some(vip), "", &[], &[]);
        let names: Vec<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        let this = &*self;
        let futs = names.iter().map(|n| {
            let text = &text;
            async move { (n.clone(), this.run(n, text).await) }
        });
        let results = futures::future::join_all(futs).await;
        let (mut holders, mut unreachable) = (Vec::new(), Vec::new());
        let mut dead = Vec::new();
        for (name, r) in results {
            match r {
                Ok(out) => {
                    if script_record::parse(&out).contains(&Record::Vip(true)) {
                        holders.push(name);
                    }
                }
                Err(_) => {
                    unreachable.push(name.clone());
                    dead.push(name);
                }
            }
        }
        for d in dead {
            if let Some(c) = self.open.remove(&d) {
                c.close().await;
            }
        }
        (holders, unreachable)
    }

    async fn close(self) {
        for (_, c) in self.open {
            c.close().await;
        }
    }
}

/// The probe: one GET every `1/rate` s until stopped or `max` elapsed.
struct Probe {
    t0: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// One `GET /` to the VIP with the deploy probe's client (`crate::deploy::probe`): its own
/// connection each time, 500 ms in all. `(answered 2xx, who)`: who is the
/// body's last word (the host that answered), or why it failed.
async fn get(client: &crate::deploy::probe::HttpClient, url: &url::Url) -> (bool, String) {
    match crate::deploy::probe::get(client, url, true, Duration::from_millis(500)).await {
        Ok(body) => (
            true,
            body.split_whitespace().last().unwrap_or("").to_string(),
        ),
        Err(e) => (false, e.chars().take(60).collect()),
    }
}

impl Probe {
    fn start(addr: SocketAddr, rate: u32, max: Duration) -> miette::Result<Probe> {
        let url = url::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| miette::miette!("cannot probe {addr}: {e}"))?;
        let client = crate::deploy::probe::client(Duration::from_millis(500), false, None, &[])
            .map_err(|e| miette::miette!("cannot build the probe's HTTP client: {e}"))?;
        let t0 = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (samples.clone(), stop.clone());
        let every = Duration::from_millis(1000 / u64::from(rate.max(1)));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut inflight = Vec::new();
            while !st2.load(Ordering::Relaxed) && t0.elapsed() < max {
                tick.tick().await;
                let sent_ms = t0.elapsed().as_millis() as u64;
                let s3 = s2.clone();
                let (client, url) = (client.clone(), url.clone());
                inflight.push(tokio::spawn(async move {
                    let (ok, who) = get(&client, &url).await;
                    if let Ok(mut v) = s3.lock() {
                        v.push(Sample { sent_ms, ok, who });
                    }
                }));
            }
            for h in inflight {
                let _ = h.await;
            }
        });
        Ok(Probe {
            t0,
            samples,
            stop,
            task,
        })
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Samples so far, in send order (answers arrive out of order).
    fn snapshot(&self) -> Vec<Sample> {
        let mut v = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by_key(|s| s.sent_ms);
        v
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let mut v = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by_key(|s| s.sent_ms);
        v
    }
}

/// Refuses any VIP but loopback or a lab address routed via the lab bridge.
async fn check_target(vip: IpAddr) -> miette::Result<()> {
    if vip.is_loopback() {
        return Ok(());
    }
    match vip {
        IpAddr::V4(v4) => {
            crate::lab::ensure_lab_route(v4)
                .await
                .map_err(|_| DrillError::NotLab(vip))?;
            Ok(())
        }
        IpAddr::V6(_) => Err(DrillError::NotLab(vip).into()),
    }
}

/// The lab side of a host: its veth and PID 1, if the host is a lab host at its lab address.
fn lab_host(host: &Host) -> Option<(Lab, String)> {
    let lab = Lab::open(Lab::default_dir()).ok()?;
    let addr = lab.host(&host.name).ok()?;
    (IpAddr::V4(addr.address) == host.address).then_some((lab, addr.veth))
}

async fn ip_link(veth: &str, state: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(["link", "set", veth, state])
        .output()
        .await
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip link set {veth} {state}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The checks that fail when `service` stops.
fn guarding_checks(stack: &Stack, service: &str) -> Vec<String> {
    let Some(vip) = &stack.file.vip else {
        return Vec::new();
    };
    let nginx_port = stack.file.nginx.as_ref().map(|n| n.listen.value);
    let haproxy_port = stack.file.haproxy.as_ref().map(|h| h.listen.value);
    vip.checks
        .iter()
        .filter(|c| {
            if let Some(s) = &c.service {
                return s.value == service;
            }
            if let Some(url) = &c.http {
                let port = url
                    .value
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .and_then(|hp| hp.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse::<i64>().ok())
                    .unwrap_or(80);
                return match service {
                    "nginx" => Some(port) == nginx_port,
                    "haproxy" => Some(port) == haproxy_port,
                    _ => false,
                };
            }
            c.script.as_ref().is_some_and(|s| s.value.contains(service))
        })
        .map(|c| c.name.value.clone())
        .collect()
}

/// The inject and restore scripts run on the holder over SSH.
fn remote_fault(scenario: Scenario, service: &str) -> Option<(String, String)> {
    let svc = crate::onhost::sh::q(service).into_owned();
    match scenario {
        Scenario::ServiceStop => Some((
            format!("systemctl stop {svc}\n"),
            format!("systemctl start {svc}\n"),
        )),
        Scenario::KeepalivedStop => Some((
            "systemctl stop keepalived\n".into(),
            "systemctl start keepalived\n".into(),
        )),
        // keepalived and its children (VRRP, checker) in one kill(1), children first: the
        // parent's death makes the kernel SIGTERM the children, and a VRRP child that gets
        // that SIGTERM first releases the VIP cleanly (no split brain to see). The children
        // are found from the parent (`pgrep -P`), not from their pid files, which can be stale.
        Scenario::KeepalivedKill => Some((
            "p=$(head -n1 /run/keepalived.pid 2>/dev/null); [ -n \"$p\" ] && kill -9 $(pgrep -P \"$p\") \"$p\" 2>/dev/null; exit 0\n".into(),
            "systemctl start keepalived\n".into(),
        )),
        Scenario::HostDown | Scenario::LinkDown => None,
    }
}

/// Waits until `f` holds, polling every 50 ms, for at most `limit`.
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Runs the drill on the stack at `args.file` and returns its evidence.
pub async fn run(args: &Settings) -> miette::Result<Report> {
    let stack = stack::load(&args.file)?;
    let model = Model::from_stack(&stack).ok_or(DrillError::NoVip)?;
    let vip = stack.vip.as_ref().ok_or(DrillError::NoVip)?;
    let vip_addr = vip.address;
    check_target(vip_addr).await?;
    let port = stack
        .file
        .nginx
        .as_ref()
        .map(|n| n.listen.value)
        .or_else(|| stack.file.haproxy.as_ref().map(|h| h.listen.value))
        .ok_or(DrillError::NoPort)?;
    let port = u16::try_from(port).map_err(|_| DrillError::NoPort)?;
    let service = args.service.clone().unwrap_or_else(|| {
        if stack.file.nginx.is_some() {
            "nginx".into()
        } else {
            "haproxy".into()
        }
    });
    let vip_s = vip_addr.to_string();
    let mut conns = Conns::new(&stack).await;
    let (holders, unreachable) = conns.holders(&vip_s).await;
    if holders.len() != 1 || !unreachable.is_empty() {
        let mut what = if holders.is_empty() {
            "none".to_string()
        } else {
            holders.join(", ")
        };
        if !unreachable.is_empty() {
            what.push_str(&format!(" (unreachable: {})", unreachable.join(", ")));
        }
        conns.close().await;
        return Err(DrillError::Holders(what).into());
    }
    let old = holders[0].clone();
    let old_host = stack
        .host(&old)
        .ok_or_else(|| DrillError::Holders(old.clone()))?
        .clone();
    let lab = match args.scenario {
        Scenario::HostDown | Scenario::LinkDown => {
            Some(lab_host(&old_host).ok_or_else(|| DrillError::LabOnly {
                scenario: args.scenario.name().into(),
                host: old.clone(),
            })?)
        }
        _ => None,
    };
    let failing = guarding_checks(&stack, &service);
    let expect = timing::expect(&model, args.scenario, &old, &failing);
    let mut notes = Vec::new();
    if args.scenario == Scenario::ServiceStop && failing.is_empty() {
        notes.push(format!(
            "no VRRP check guards `{service}`: stopping it cannot move the VIP"
        ));
    }

    let addr = SocketAddr::new(vip_addr, port);
    let rate = args.rate;
    let every_ms = 1000 / u64::from(rate);
    let probe = Probe::start(addr, rate, Duration::from_secs(args.max_time))?;
    let max_ms = args.max_time * 1000;

    // Baseline: the holder answers.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = probe
        .snapshot()
        .iter()
        .rev()
        .find(|s| s.ok)
        .map(|s| s.who.clone())
        .unwrap_or_else(|| old.clone());
    if before != old {
        notes.push(format!(
            "before the fault the VIP answered as `{before}`, not the holder's name `{old}`"
        ));
    }

    // Inject.
    let t_fault = probe.now_ms();
    let inject = match (args.scenario, &lab) {
        (Scenario::LinkDown, Some((_, veth))) => ip_link(veth, "down").await,
        (Scenario::HostDown, Some((lab, veth))) => match lab.host_pid(&old) {
            Ok(pid) => {
                // The host's NIC dies with it: without this the namespace (which outlives
                // its PID 1) would keep answering ARP for the VIP.
                let r = ip_link(veth, "down").await;
                if let Ok(pid) = i32::try_from(pid) {
                    // SAFETY: plain kill(2) of the lab host's PID 1, which the lab started.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                r
            }
            Err(e) => Err(e.to_string()),
        },
        _ => match remote_fault(args.scenario, &service) {
            Some((inject, _)) => conns.run(&old, &inject).await.map(|_| ()),
            None => Err("no way to inject this fault".into()),
        },
    };
    if let Err(e) = inject {
        let _ = probe.finish().await;
        conns.close().await;
        return Err(DrillError::Inject(format!("injecting {}: {e}", args.scenario.name())).into());
    }

    // Wait for another host to answer (or the bound).
    let limit_ms = expect
        .expected_ms
        .map(|e| e * 2 + 3000)
        .unwrap_or(4000)
        .min(max_ms.saturating_sub(t_fault + 500));
    let switched = wait_until(Duration::from_millis(limit_ms), || {
        let s = probe.snapshot();
        probe::window(&s, t_fault, u64::MAX, &before)
            .switch_ms
            .is_some()
    })
    .await;
    // Let stragglers (timeouts) land and VRRP settle before asking the hosts.
    let settle = Duration::from_millis(((model.advert_int_s * 2000.0) as u64).clamp(600, 2500));
    tokio::time::sleep(settle).await;
    let (holders_during, _) = conns.holders(&vip_s).await;
    if !switched {
        notes.push(format!(
            "no other host answered on the VIP within {limit_ms} ms of the fault"
        ));
    }

    // Restore (never for keepalived-kill: the split brain is left for `hactl up`).
    let t_restore = probe.now_ms();
    let mut restored = false;
    if args.scenario == Scenario::KeepalivedKill {
        notes.push(
            "keepalived was SIGKILLed and not restarted: run `hactl up -f STACK` to repair".into(),
        );
    } else {
        let r = match (args.scenario, &lab) {
            (Scenario::LinkDown, Some((_, veth))) => ip_link(veth, "up").await,
            (Scenario::HostDown, Some((lab, veth))) => restore_host(args, lab, veth).await,
            _ => match remote_fault(args.scenario, &service) {
                Some((_, restore)) => conns.run(&old, &restore).await.map(|_| ()),
                None => Err("no way to restore this fault".into()),
            },
        };
        match r {
            Ok(()) => restored = true,
            Err(e) => notes.push(format!("restore failed: {e}")),
        }
    }

    // Failback: with preemption the old holder takes the VIP back.
    let mut failback_ms = None;
    let mut holders_after;
    let mut unreachable_after;
    let deadline = Instant::now() + Duration::from_secs(15);
    let want_back = restored && model.preempt && expect.new_holder.as_deref() != Some(&old);
    loop {
        // A host that was cut off (link-down, host-down) lost its SSH connection: reopen it.
        conns.reconnect().await;
        let (h, u) = conns.holders(&vip_s).await;
        holders_after = h;
        unreachable_after = u;
        let done = if want_back {
            holders_after == [old.clone()]
        } else {
            holders_after.len() == 1 || args.scenario == Scenario::KeepalivedKill
        };
        if done {
            if want_back {
                failback_ms = Some(probe.now_ms().saturating_sub(t_restore));
            }
            break;
        }
        if Instant::now() >= deadline {
            notes.push("the VIP did not settle on one holder within 15 s of the restore".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the probe see a few answers after the failback, then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = probe.finish().await;
    conns.close().await;

    let fail = probe::window(&samples, t_fault, t_restore, &before);
    let back_from = fail.switched_to.clone().unwrap_or_else(|| before.clone());
    let back = probe::window(&samples, t_restore, u64::MAX, &back_from);
    let within = match (fail.outage_ms, expect.expected_ms) {
        (Some(o), Some(e)) => Some(o <= e + every_ms + 250),
        _ => None,
    };
    if t_restore + 500 >= max_ms {
        notes.push(format!(
            "the probe hit its {} s bound before the failback was seen",
            args.max_time
        ));
    }
    let split_brain = holders_during.len() > 1 || holders_after.len() > 1;
    let report = Report {
        scenario: args.scenario.name(),
        vip: vip_s,
        port,
        old_holder: old,
        new_holder: fail.switched_to.clone(),
        expected_holder: expect.new_holder.clone(),
        outage_ms: fail.outage_ms,
        expected_ms: expect.expected_ms,
        expected_basis: expect.basis.clone(),
        within_expectation: within,
        failed_requests: fail.failed,
        total_requests: samples.len(),
        time_to_new_holder_ms: fail.switch_ms,
        holders_during,
        restored,
        failback_ms,
        failback_outage_ms: back.outage_ms,
        failback_failed_requests: back.failed,
        holders_after,
        split_brain,
        unreachable_after,
        notes,
    };
    Ok(report)
}

/// host-down's restore: link up, the lab restarts the host, `hactl up` configures it again.
async fn restore_host(args: &Settings, lab: &Lab, veth: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find hactl itself: {e}"))?;
    let count = crate::lab::net::lab_netns().into_iter().max().unwrap_or(1);
    lab.up(count, &exe).await.map_err(|e| e.to_string())?;
    let _ = ip_link(veth, "up").await;
    let out = tokio::process::Command::new(&exe)
        .arg("up")
        .arg("-f")
        .arg(&args.file)
        .arg("--auto-approve")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run hactl up: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "hactl up failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ))
    }
}
