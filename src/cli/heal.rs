//! `hactl heal -f STACK [--watch --interval D]`: find what is down and converge.
//!
//! One round, on `provider: hosts`: render and observe every host (as `plan` does); a host that
//! cannot be reached is reported as down and left alone; a reachable host whose files or
//! services differ from the stack (typically one that came back, rebuilt or rebooted) is
//! reconfigured exactly as `up` would. Then, for each redis service, every instance's
//! replication state is read and `services::redis::decide` says which instance is the primary
//! of each port; every other live instance that does not follow it is made to (`REPLICAOF`):
//! an old primary rejoins as a replica, never as a second primary. hactl promotes a replica
//! itself only with `promotion: hactl`; with sentinels it leaves promotion to them.
//!
//! On `provider: aws` a round is `up` restricted to repairs (`cli/aws.rs`): an instance of the
//! stack that is terminated, shutting down, gone, stopped or impaired is replaced in its zone
//! with the stack's image, type and tags, the target group registers the new one and drops the
//! dead one, the state records what exists, then every instance is configured over SSH as `up`
//! does (`--provision-only` skips that). Other differences are reported, not applied.
//!
//! `--watch` repeats the round every `--interval` until interrupted (or `--rounds` rounds). A
//! round of an AWS stack that fails (AWS error, state locked by another run) is reported and
//! the watch goes on: the next round starts again from what exists.
//!
//! Without `--watch` (and without `--dry-run`), a round that converged waits until the stack
//! serves, as `up` does (`cli/wait.rs`; `--no-wait` skips it). A watch does not wait: its next
//! round looks again anyway.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::StackArgs;
use crate::engine::{self, Mode};
use crate::plan::HostFailure;
use crate::provider::hosts::{self as hp, HostReport};
use crate::services::redis::{self, Fix, Instance, State, Verdict};
use crate::services::Service;
use crate::stack::model::ServiceKind;
use crate::stack::Stack;
use crate::vault::Secrets;
use crate::{stack, vault, view, ExitStatus};

#[derive(Debug, Args)]
pub struct HealArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Keep healing: one round every `--interval` until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Time between two rounds with `--watch`: `5s`, `500ms`, `1m`.
    #[arg(long, default_value = "5s", value_parser = crate::stack::duration::arg)]
    pub interval: Duration,
    /// With `--watch`: stop after this many rounds.
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: super::aws::RunArgs,
    /// `provider: aws`: replace and register instances only, without configuring them over SSH.
    #[arg(long)]
    pub provision_only: bool,
    #[command(flatten)]
    pub wait: super::wait::WaitArgs,
}

impl HealArgs {
    /// The wait after the round: only for a single round that changes things.
    fn wait(&self) -> Option<Duration> {
        self.wait.wait().filter(|_| !self.watch && !self.dry_run)
    }
}

/// One service port's outcome in a round.
#[derive(Debug, Serialize)]
struct PortReport {
    service: String,
    #[serde(flatten)]
    verdict: Verdict,
    /// Fixes that were made (empty with `--dry-run`).
    applied: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<String>,
}

/// A service of the stack and the failover its timings predict.
#[derive(Debug, Serialize)]
struct ServiceReport {
    name: String,
    predicted_failover_ms: u128,
    prediction: String,
}

/// What one round found and did.
#[derive(Debug, Serialize)]
struct Round {
    stack: String,
    round: u32,
    elapsed_ms: u128,
    /// Hosts that could not be reached.
    down: Vec<HostFailure>,
    /// Hosts reconfigured because they differed from the stack (with `--dry-run`: would be).
    reconfigured: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    apply: Vec<HostReport>,
    ports: Vec<PortReport>,
    services: Vec<ServiceReport>,
    /// Everything reachable matches the stack and every port has one primary that every live
    /// instance follows.
    converged: bool,
    /// How the wait for the stack to serve ended (a single converged round only).
    #[serde(skip_serializing_if = "Option::is_none")]
    serving: Option<super::wait::Serving>,
}

pub async fn run(a: HealArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    if super::aws::is_aws(&stack) {
        return run_aws(&a, &stack).await;
    }
    let secrets = vault::open(&stack)?;
    let mut n = 0u32;
    loop {
        n += 1;
        // The stack's lock for each round (not the whole `--watch`, so an `up` can run
        // between two rounds); with `--watch`, a round that finds it busy (a deploy or an
        // `up` running) is skipped, not the end of the watch.
        let guard = match super::plan::lock(&stack, "heal", a.run.lock_wait).await {
            Ok(g) => g,
            Err(e) if a.watch && a.rounds.is_none_or(|max| n < max) => {
                view::print_error(&e);
                tokio::time::sleep(a.interval).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        // `--watch`: one object per round in the document's `rounds`.
        let _round = a.watch.then(|| view::json::item("rounds"));
        let r = round(&stack, &secrets, n, a.dry_run).await;
        guard.release().await;
        let mut r = r?;
        let healthy = r.converged && r.down.is_empty();
        let wait = a.wait().filter(|_| healthy);
        if !a.stack.json {
            view::print_out(&render(&r));
        }
        if let Some(t) = wait {
            r.serving = Some(super::wait::until_serving(&stack, t, None).await);
        }
        if a.stack.json {
            view::print_json(&r)?;
        }
        let done = !a.watch || a.rounds.is_some_and(|max| n >= max);
        if done {
            return Ok(match (healthy, wait.zip(r.serving.as_ref())) {
                (false, _) => ExitStatus::Failure,
                (true, Some((t, s))) => super::wait::finish(&stack, t, s),
                (true, None) => ExitStatus::Success,
            });
        }
        tokio::time::sleep(a.interval).await;
    }
}

/// The rounds of an AWS stack; each prints its own plan, progress and outcome (`cli/aws.rs`).
async fn run_aws(a: &HealArgs, stack: &Stack) -> miette::Result<ExitStatus> {
    let mut n = 0u32;
    loop {
        n += 1;
        let last = !a.watch || a.rounds.is_some_and(|max| n >= max);
        if a.watch && !a.stack.json {
            view::print_out(&format!("heal round {n} of `{}`:\n", stack.name()));
        }
        let _round = a.watch.then(|| view::json::item("rounds"));
        let r = super::aws::heal(
            stack,
            &a.stack,
            &a.run,
            a.dry_run,
            a.provision_only,
            a.wait(),
        )
        .await;
        let status = match r {
            Ok(s) => s,
            Err(e) if !last => {
                view::print_error(&e);
                ExitStatus::Failure
            }
            Err(e) => return Err(e),
        };
        if last {
            return Ok(status);
        }
        tokio::time::sleep(a.interval).await;
    }
}

async fn round(stack: &Stack, secrets: &Secrets, n: u32, dry_run: bool) -> miette::Result<Round> {
    let t0 = Instant::now();
    let configs = engine::render_all(stack, secrets)?;
    let obs = engine::observe(stack, configs).await;
    let plan = engine::plan_up(stack, &obs);
    let mut reconfigured: Vec<String> = stack
        .hosts
        .iter()
        .filter(|h| plan.for_host(&h.name).next().is_some())
        .map(|h| h.name.clone())
        .collect();
    reconfigured.dedup();
    let mut apply = Vec::new();
    if !dry_run && plan.has_changes() {
        apply = engine::apply(stack, &obs, &plan, Mode::Up).await;
        for r in &mut apply {
            r.redact(secrets);
        }
    }
    let mut ports = Vec::new();
    let mut services = Vec::new();
    for svc in Service::all(stack) {
        let p = svc.predicted_failover(stack);
        services.push(ServiceReport {
            name: svc.name.clone(),
            predicted_failover_ms: p.total.as_millis(),
            prediction: p.note,
        });
        if svc.kind != ServiceKind::Redis {
            continue;
        }
        ports.extend(heal_redis(&svc, &obs, secrets, dry_run).await);
    }
    // remote output quoted in failures: never a secret value
    for p in &mut ports {
        for f in &mut p.failed {
            *f = secrets.redact(f);
        }
    }
    let hosts_ok = if dry_run {
        reconfigured.is_empty()
    } else {
        apply.iter().all(|r| r.ok)
    };
    let ports_ok = ports.iter().all(|p| {
        p.verdict.primary.is_some()
            && p.failed.is_empty()
            && (p.verdict.fixes.is_empty()
                || (!dry_run && p.applied.len() == p.verdict.fixes.len()))
    });
    let converged = hosts_ok && ports_ok;
    let down = obs.failures.clone();
    obs.close().await;
    Ok(Round {
        stack: stack.name().to_string(),
        round: n,
        elapsed_ms: t0.elapsed().as_millis(),
        down,
        reconfigured,
        apply,
        ports,
        services,
        converged,
        serving: None,
    })
}

fn password<'a>(
    svc: &Service<'_>,
    secrets: &'a Secrets,
    plain: &'a Option<String>,
) -> Option<&'a str> {
    match svc.password_secret() {
        Some(name) => secrets.get(name).map(|s| s.expose()),
        None => plain.as_deref(),
    }
}

async fn heal_redis(
    svc: &Service<'_>,
    obs: &engine::Observed,
    secrets: &Secrets,
    dry_run: bool,
) -> Vec<PortReport> {
    let plain = match svc.spec.password.as_ref().map(|p| &p.value) {
        Some(crate::stack::model::Value::Plain(p)) => Some(p.clone()),
        _ => None,
    };
    let pass = password(svc, secrets, &plain);
    let script = redis::probe_script(svc, pass);
    // Each reachable host of the service, probed in turn (a handful of hosts, one round trip).
    let mut probed: BTreeMap<String, redis::Probed> = BTreeMap::new();
    for h in &svc.hosts {
        if let Some(conn) = obs.conns.get(&h.name) {
            if let Ok(out) = hp::query(conn, &script).await {
                probed.insert(h.name.clone(), redis::parse_probe(&out));
            }
        }
    }
    let mut reports = Vec::new();
    for &port in &svc.ports {
        let instances: Vec<Instance> = svc
            .hosts
            .iter()
            .map(|h| Instance {
                host: h.name.clone(),
                addr: h.address,
                port,
                state: probed
                    .get(&h.name)
                    .and_then(|p| p.states.get(&port).cloned())
                    .unwrap_or(State::Down),
            })
            .collect();
        let sentinel_view: Option<IpAddr> = if svc.sentinel() {
            redis::sentinel_majority(probed.values().filter_map(|p| p.sentinel.get(&port)))
        } else {
            None
        };
        let verdict = redis::decide(port, &instances, sentinel_view, svc.promotion);
        let mut applied = Vec::new();
        let mut failed = Vec::new();
        if !dry_run && !verdict.fixes.is_empty() {
            // promotions first, so followers find their new primary ready
            let mut order: Vec<&Fix> = verdict.fixes.iter().collect();
            order.sort_by_key(|f| !matches!(f, Fix::Promote { .. }));
            for f in order {
                let Some(conn) = obs.conns.get(f.host()) else {
                    failed.push(format!("{}: host not connected", f.describe()));
                    continue;
                };
                match hp::query(conn, &redis::fix_script(&[f], pass)).await {
                    Ok(out) if out.contains("HACTL\tok\tfix") => applied.push(f.describe()),
                    Ok(out) => failed.push(format!(
                        "{}: {}",
                        f.describe(),
                        out.lines()
                            .find_map(|l| l.strip_prefix("HACTL\tfail\tfix\t"))
                            .unwrap_or("failed")
                    )),
                    Err(e) => failed.push(format!("{}: {e}", f.describe())),
                }
            }
        }
        reports.push(PortReport {
            service: svc.name.clone(),
            verdict,
            applied,
            failed,
        });
    }
    reports
}

fn render(r: &Round) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heal round {} of `{}` ({} ms): {}",
        r.round,
        r.stack,
        r.elapsed_ms,
        if r.converged && r.down.is_empty() {
            "converged"
        } else if r.converged {
            "converged (except unreachable hosts)"
        } else {
            "NOT converged"
        }
    );
    for d in &r.down {
        let _ = writeln!(out, "  down: {}: {}", d.host, d.error);
    }
    for h in &r.reconfigured {
        let outcome = match r.apply.iter().find(|a| &a.host == h) {
            Some(a) if a.ok => format!("reconfigured ({})", a.services.join(", ")),
            Some(a) => format!("FAILED: {}", a.error.as_deref().unwrap_or("unknown error")),
            None => "differs from the stack (dry run: not changed)".into(),
        };
        let _ = writeln!(out, "  {h}: {outcome}");
    }
    for p in &r.ports {
        let _ = writeln!(
            out,
            "  {}:{} primary {}",
            p.service,
            p.verdict.port,
            p.verdict.primary.as_deref().unwrap_or("NONE")
        );
        for f in &p.applied {
            let _ = writeln!(out, "    fixed: {f}");
        }
        for f in p
            .verdict
            .fixes
            .iter()
            .filter(|f| !p.applied.contains(&f.describe()))
        {
            if p.failed.iter().all(|x| !x.starts_with(&f.describe())) {
                let _ = writeln!(out, "    to fix: {}", f.describe());
            }
        }
        for f in &p.failed {
            let _ = writeln!(out, "    FAILED: {f}");
        }
        for note in &p.verdict.notes {
            let _ = writeln!(out, "    note: {note}");
        }
    }
    out
}
