//! One `heal` round of a `provider: hosts` stack: render and observe every host, reconfigure
//! the reachable hosts that differ from the stack (the engine's hosts plan, walked), then, for
//! each redis service, read every instance's replication state, decide each port's one primary
//! (`services::redis::decide`) and make every live instance follow it.
//!
//! The redis repairs are plan changes like any other (`Addr::Redis`, action `~`, a typed
//! [`Reason`], before/after the instance's role), walked by `engine::graph` with
//! [`RedisRepairs`] as their provider, so they are shown, reported through the hooks and
//! counted the way files and services are. They are planned after the hosts' own changes are
//! applied, not with them: a host that was just reconfigured (typically one that came back
//! empty) starts its redis in that apply, and only what it says afterwards decides whether it
//! must follow the primary — a verdict made before would not see it and leave a second
//! primary until the next round. Promotions come first: every `Follow` of a port depends on
//! that port's `Promote`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use futures::future::LocalBoxFuture;
use serde::Serialize;

use super::graph::{self, Provider, Task, Walked};
use super::hooks::Hooks;
use super::layers::{self, HostLayer};
use super::{Mode, Observed};
use crate::plan::{Action, Addr, Change, HostFailure, Payload, Plan, Reason};
use crate::provider::hosts::{self as hp, HostReport};
use crate::services::redis::{self, Fix, Instance, State, Verdict};
use crate::services::Service;
use crate::stack::model::ServiceKind;
use crate::stack::Stack;
use crate::vault::Secrets;

/// One redis port's verdict: its primary and why nothing could be decided (the repairs it
/// needs are changes of the round's `repairs` plan).
#[derive(Debug, Serialize)]
pub struct PortReport {
    pub service: String,
    pub port: u16,
    /// The host that is (or will be, after the repairs) the primary.
    pub primary: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    /// The redis repairs, as plan changes (`HOST:redis/SERVICE:PORT`).
    pub repairs: Plan,
    /// What the walk of the repairs did (empty with `--dry-run`).
    pub repaired: Walked,
    pub services: Vec<ServiceReport>,
    /// Everything reachable matches the stack and every port has one primary that every live
    /// instance follows.
    pub converged: bool,
    /// How the wait for the stack to serve ended (a single converged round only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<super::serving::Serving>,
}

pub async fn round(
    stack: &Stack,
    secrets: &Secrets,
    n: u32,
    dry_run: bool,
    hooks: &dyn Hooks,
) -> miette::Result<Round> {
    let t0 = Instant::now();
    let layer = HostLayer::of_hosts(stack, secrets).await?;
    let mut plan = layer.plan(Mode::Up);
    graph::assign_waves(&mut plan);
    let mut reconfigured: Vec<String> = stack
        .hosts
        .iter()
        .filter(|h| plan.for_host(&h.name).next().is_some())
        .map(|h| h.name.clone())
        .collect();
    reconfigured.dedup();
    let mut apply = Vec::new();
    let mut hosts_walked = Walked::default();
    if !dry_run && plan.has_changes() {
        hooks.planned(&plan);
        (hosts_walked, apply) = layers::walk_hosts(
            &layer,
            &plan,
            Mode::Up,
            secrets,
            stack.file.ssh.parallelism,
            hooks,
        )
        .await;
    }
    let mut ports = Vec::new();
    let mut services = Vec::new();
    let mut changes = Vec::new();
    let mut passwords = BTreeMap::new();
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
        let pass = password(&svc, secrets);
        for (instances, verdict) in probe_redis(&svc, &layer.observed, pass.as_deref()).await {
            changes.extend(repairs(&svc.name, &instances, &verdict));
            ports.push(PortReport {
                service: svc.name.clone(),
                port: verdict.port,
                primary: verdict.primary,
                notes: verdict.notes,
            });
        }
        passwords.insert(svc.name.clone(), pass);
    }
    let mut repairs = Plan::new(stack.name(), changes, 0, Vec::new());
    graph::assign_waves(&mut repairs);
    let mut repaired = Walked::default();
    if !dry_run && repairs.has_changes() {
        hooks.planned(&repairs);
        let provider = RedisRepairs {
            observed: &layer.observed,
            passwords: &passwords,
            secrets,
        };
        repaired = graph::walk(&repairs, &provider, repairs.changes.len(), hooks).await;
    }
    let hosts_ok = if dry_run {
        reconfigured.is_empty()
    } else {
        hosts_walked.ok() && apply.iter().all(|r| r.ok)
    };
    let repaired_all = repairs.changes.is_empty()
        || (!dry_run && repaired.ok() && repaired.done.len() == repairs.changes.len());
    let converged = hosts_ok && repaired_all && ports.iter().all(|p| p.primary.is_some());
    let down = layer.observed.failures.clone();
    layer.close().await;
    Ok(Round {
        stack: stack.name().to_string(),
        round: n,
        elapsed_ms: t0.elapsed().as_millis(),
        down,
        reconfigured,
        apply,
        ports,
        repairs,
        repaired,
        services,
        converged,
        serving: None,
    })
}

/// The service's redis password: its vault secret, or the plain value the stack gives.
fn password(svc: &Service<'_>, secrets: &Secrets) -> Option<String> {
    match svc.password_secret() {
        Some(name) => secrets.get(name).map(|s| s.expose().to_string()),
        None => match svc.spec.password.as_ref().map(|p| &p.value) {
            Some(crate::stack::model::Value::Plain(p)) => Some(p.clone()),
            _ => None,
        },
    }
}

/// Each port's instances (in stack order, as their hosts answered the probe) and the verdict.
async fn probe_redis(
    svc: &Service<'_>,
    obs: &Observed,
    pass: Option<&str>,
) -> Vec<(Vec<Instance>, Verdict)> {
    let script = redis::probe_script(svc, pass, false);
    // Each reachable host of the service, probed in turn (a handful of hosts, one round trip).
    let mut probed: BTreeMap<String, redis::Probed> = BTreeMap::new();
    for h in &svc.hosts {
        if let Some(conn) = obs.conns.get(&h.name) {
            if let Ok(out) = hp::query(conn, &script).await {
                probed.insert(h.name.clone(), redis::parse_probe(&out));
            }
        }
    }
    svc.ports
        .iter()
        .map(|&port| {
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
            (instances, verdict)
        })
        .collect()
}

/// One port's repairs as plan changes: the instance's role before and after, the [`Fix`] as
/// the payload, and each `Follow` depending on the port's `Promote` (promotions first, so the
/// followers find their new primary ready).
pub fn repairs(service: &str, instances: &[Instance], verdict: &Verdict) -> Vec<Change> {
    let addr = |host: &str, port: u16| Addr::Redis {
        host: host.to_string(),
        service: service.to_string(),
        port,
    };
    let before = |host: &str| {
        instances
            .iter()
            .find(|i| i.host == host)
            .map(|i| i.state.describe())
    };
    let promoted: Vec<Addr> = verdict
        .fixes
        .iter()
        .filter_map(|f| match f {
            Fix::Promote { host, port } => Some(addr(host, *port)),
            Fix::Follow { .. } => None,
        })
        .collect();
    verdict
        .fixes
        .iter()
        .map(|f| {
            let (reason, after, depends_on) = match f {
                Fix::Promote { .. } => (Reason::NoLivePrimary, "primary".to_string(), Vec::new()),
                Fix::Follow { primary, .. } => (
                    Reason::NotFollowingPrimary {
                        primary: verdict.primary.clone().unwrap_or_default(),
                        address: primary.to_string(),
                    },
                    format!("replica of {primary}"),
                    promoted.clone(),
                ),
            };
            let port = match f {
                Fix::Promote { port, .. } | Fix::Follow { port, .. } => *port,
            };
            Change {
                before: before(f.host()),
                after: Some(after),
                depends_on,
                payload: Payload::provider(f.clone()),
                ..Change::new(addr(f.host(), port), Action::Update, reason)
            }
        })
        .collect()
}

/// The redis repairs' provider: each task is one instance's [`Fix`] (`REPLICAOF`), run over
/// the round's connection to its host. A failure quotes remote output: never a secret value.
pub struct RedisRepairs<'a> {
    pub observed: &'a Observed,
    /// Each redis service's password, by service name.
    pub passwords: &'a BTreeMap<String, Option<String>>,
    pub secrets: &'a Secrets,
}

impl Provider for RedisRepairs<'_> {
    fn run<'a>(
        &'a self,
        task: &'a Task<'a>,
        _hooks: &'a dyn Hooks,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            for c in &task.changes {
                let (Addr::Redis { host, service, .. }, Some(fix)) =
                    (&c.addr, c.payload.get::<Fix>())
                else {
                    return Err(format!("{}: not a redis repair", c.addr));
                };
                let Some(conn) = self.observed.conns.get(host) else {
                    return Err("host not connected".into());
                };
                let pass = self.passwords.get(service).and_then(|p| p.as_deref());
                let out = hp::query(conn, &redis::fix_script(&[fix], pass))
                    .await
                    .map_err(|e| self.secrets.redact(&e.to_string()))?;
                redis::fix_outcome(&out).map_err(|why| self.secrets.redact(&why))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::graph::tests::Fake;
    use crate::engine::hooks::Silent;

    fn instance(host: &str, last: u8, state: State) -> Instance {
        Instance {
            host: host.into(),
            addr: IpAddr::from([198, 18, 0, last]),
            port: 6379,
            state,
        }
    }

    /// Two hosts, no primary left (`promotion: hactl`), a third instance following a dead
    /// primary: one promotion, one follow that waits for it.
    pub(crate) fn promote_and_follow() -> Vec<Change> {
        let replica = |m: u8, offset| State::Replica {
            master: Some(IpAddr::from([198, 18, 0, m])),
            master_port: Some(6379),
            link_up: false,
            offset,
        };
        let instances = vec![
            instance("host1", 11, State::Down),
            instance("host2", 12, replica(11, 900)),
            instance("host3", 13, replica(11, 800)),
        ];
        let v = redis::decide(
            6379,
            &instances,
            None,
            crate::stack::model::Promotion::Hactl,
        );
        repairs("cache", &instances, &v)
    }

    #[test]
    fn redis_repairs_are_changes_and_follows_wait_for_the_promotion() {
        let c = promote_and_follow();
        let shown: Vec<String> = c
            .iter()
            .map(|c| {
                format!(
                    "{} {} ({}) {:?} -> {:?} after {:?}",
                    c.action.symbol(),
                    c.addr,
                    c.reason,
                    c.before,
                    c.after,
                    c.depends_on
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "~ host2:redis/cache:6379 (no live primary: promoted, the replica with the most data) Some(\"replica of 198.18.0.11 (link down)\") -> Some(\"primary\") after []",
                "~ host3:redis/cache:6379 (not a replica of the primary host2 (198.18.0.12)) Some(\"replica of 198.18.0.11 (link down)\") -> Some(\"replica of 198.18.0.12\") after [\"host2:redis/cache:6379\"]",
            ]
        );
        assert!(c.iter().all(|c| c.payload.get::<Fix>().is_some()));
    }

    #[tokio::test]
    async fn redis_repairs_walk_promotion_first_and_a_failed_promotion_skips_the_follows() {
        let mut plan = Plan::new("t", promote_and_follow(), 0, Vec::new());
        graph::assign_waves(&mut plan);
        assert_eq!(
            plan.changes.iter().map(|c| c.wave).collect::<Vec<_>>(),
            [0, 1]
        );
        let fake = Fake::default();
        let w = graph::walk(&plan, &fake, 4, &Silent).await;
        assert_eq!(w.done, ["host2:redis/cache:6379", "host3:redis/cache:6379"]);
        let fake = Fake {
            fail: vec!["host2:redis/cache:6379".into()],
            ..Fake::default()
        };
        let w = graph::walk(&plan, &fake, 4, &Silent).await;
        assert_eq!(w.skipped, ["host3:redis/cache:6379"]);
    }
}
