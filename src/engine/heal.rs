//! One `heal` round of a `provider: hosts` stack: render and observe every host, reconfigure
//! the reachable hosts that differ from the stack (the engine's hosts plan and apply), then, for
//! each redis service, read every instance's replication state and make every live instance
//! follow its port's one primary (`services::redis::decide`: promotions first).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;

use crate::engine::{self, Mode};
use crate::plan::HostFailure;
use crate::provider::hosts::{self as hp, HostReport};
use crate::services::redis::{self, Fix, Instance, State, Verdict};
use crate::services::Service;
use crate::stack::model::ServiceKind;
use crate::stack::Stack;
use crate::vault::Secrets;

#[derive(Debug, Serialize)]
pub struct PortReport {
    pub service: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Fixes that were made (empty with `--dry-run`).
    pub applied: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// A service of the stack and the failover its timings predict.
#[derive(Debug, Serialize)]
pub struct ServiceReport {
    pub name: String,
    pub predicted_failover_ms: u128,
    pub prediction: String,
}

/// What one round found and did.
#[derive(Debug, Serialize)]
pub struct Round {
    pub stack: String,
    pub round: u32,
    pub elapsed_ms: u128,
    /// Hosts that could not be reached.
    pub down: Vec<HostFailure>,
    /// Hosts reconfigured because they differed from the stack (with `--dry-run`: would be).
    pub reconfigured: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apply: Vec<HostReport>,
    pub ports: Vec<PortReport>,
    pub services: Vec<ServiceReport>,
    /// Everything reachable matches the stack and every port has one primary that every live
    /// instance follows.
    pub converged: bool,
    /// How the wait for the stack to serve ended (a single converged round only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<crate::cli::Serving>,
}

pub async fn round(
    stack: &Stack,
    secrets: &Secrets,
    n: u32,
    dry_run: bool,
) -> miette::Result<Round> {
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
                    Ok(out) => match redis::fix_outcome(&out) {
                        Ok(()) => applied.push(f.describe()),
                        Err(why) => failed.push(format!("{}: {why}", f.describe())),
                    },
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
