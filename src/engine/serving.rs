//! Waiting until a stack serves (what `--wait-timeout` bounds): `up`, `heal` and `deploy` return only once the stack does what
//! it was applied for, so `hactl up && hactl drill …` or `hactl up && curl $VIP` works with no
//! sleep in between.
//!
//! "Serves" is read by `hactl status`'s own reader ([`super::status::collect`]), never a second
//! one, and means, all at once:
//! - every host is reachable and every service hactl runs on it is active;
//! - every VIP check passes on every VIP host (keepalived's `vrrp_script`s, run as `status`
//!   runs them);
//! - on every `app` host, the app's health path answers 2xx through nginx;
//! - no HA service role is `down` (a redis port, a syslog pair), and every redis replica's link
//!   to its primary is up (`master_link_status:up`: its first full sync is done), so the data
//!   is on two hosts before the command returns (what a failover then loses is bounded by the
//!   asynchronous replication's lag, not by a replica still waiting for its first sync); and
//!   every sentinel knows exactly the stack's other sentinels (a majority can form);
//! - the VIP has exactly one holder, and, with preemption on (keepalived's default), it is the
//!   member with the highest effective priority (ties: the higher address, RFC 5798 §6.4.3), so
//!   the election has settled and a preemption is not still pending;
//! - on AWS, every target registered in the target group is `healthy` ([`TargetWait`]).
//!
//! The wait is bounded (`--wait-timeout`, default 2 min): the stack is asked every 250 ms and
//! each change of what is not ready is reported on stderr. At the deadline the command fails
//! with [`NotServing`] naming everything still not ready, and exits with
//! `ExitStatus::NotServing` (3), so a pipeline can tell "applied but not serving" from a
//! failed apply (1). `--no-wait` returns as soon as the changes are applied.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::hooks::Hooks;
use super::status::{self, Status};
use crate::stack::duration::Dur;
use crate::stack::Stack;

/// The AWS part of the wait: the target group whose targets must be healthy.
pub(crate) struct TargetWait {
    pub clients: crate::provider::aws::client::Clients,
    pub arn: String,
}

impl TargetWait {
    /// The wait on the stack's target group `arn`, with clients for the stack's region.
    pub(crate) async fn of(stack: &Stack, arn: String) -> TargetWait {
        let region = super::cloud::region(stack);
        TargetWait {
            clients: crate::provider::aws::client::Clients::new(&region).await,
            arn,
        }
    }
}

/// How the wait ended, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Serving {
    pub serving: bool,
    pub elapsed_ms: u64,
    /// The VIP holder once serving (`None` when the stack has no VIP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip_holder: Option<String>,
    /// What was still not ready at the deadline (empty when serving).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<String>,
}

/// The stack did not serve within the wait.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`{stack}` applied, but it does not serve after {waited}: {}", .what.join("; "))]
#[diagnostic(
    code(hactl::wait::not_serving),
    help("`hactl status -f STACK` shows every host; give it longer with `--wait-timeout`, or return at once with `--no-wait`")
)]
pub(crate) struct NotServing {
    pub stack: String,
    pub waited: Dur,
    pub what: Vec<String>,
}

/// Everything that keeps the stack from serving, in the order an operator reads it: per host
/// (stack order), then the VIP. Empty when it serves. Pure: the judgement the wait makes on
/// each reading of `status`.
pub(crate) fn not_ready(stack: &Stack, s: &Status) -> Vec<String> {
    let mut why = Vec::new();
    for h in &s.hosts {
        if !h.reachable {
            why.push(format!(
                "{}: unreachable ({})",
                h.name,
                h.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        }
        for (svc, state) in &h.services {
            if state != "active" {
                why.push(format!("{}: `{svc}` is {state}", h.name));
            }
        }
        for c in h.checks.iter().filter(|c| !c.ok) {
            why.push(format!("{}: check `{}` fails", h.name, c.name));
        }
        if h.app_via_nginx == Some(false) {
            let path = stack
                .file
                .app
                .as_ref()
                .map(|a| a.health.path.as_str())
                .unwrap_or("/");
            why.push(format!(
                "{}: the app's `{path}` does not answer 2xx through nginx",
                h.name
            ));
        }
        for (role, state) in &h.roles {
            if state == "down" {
                why.push(format!("{}: {role} is down", h.name));
            }
        }
        for p in &h.ha_pending {
            why.push(format!("{}: {p}", h.name));
        }
    }
    if let Some(v) = &s.vip {
        match v.holders.as_slice() {
            [] => why.push(format!("VIP {}: no holder", v.address)),
            [holder] => {
                let preempt = stack.file.vip.as_ref().is_some_and(|v| v.preempt);
                if let Some(best) = preempt.then(|| elected(s)).flatten() {
                    if &best != holder {
                        why.push(format!(
                            "VIP {}: held by {holder}, but {best} has the higher effective \
                             priority (preemption pending)",
                            v.address
                        ));
                    }
                }
            }
            many => why.push(format!(
                "VIP {}: {} holders ({})",
                v.address,
                many.len(),
                many.join(", ")
            )),
        }
    }
    why
}

/// The member keepalived elects once settled: among VIP members that run keepalived and are
/// not in FAULT, the highest effective priority, a tie going to the higher primary address
/// (RFC 5798 §6.4.3).
fn elected(s: &Status) -> Option<String> {
    s.hosts
        .iter()
        .filter(|h| matches!(h.vrrp_state.as_deref(), Some("MASTER" | "BACKUP")))
        .filter_map(|h| {
            let addr: IpAddr = h.address.parse().ok()?;
            Some((h.effective_priority?, addr, &h.name))
        })
        .max()
        .map(|(_, _, name)| name.clone())
}

/// How often the stack is asked while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Asks the stack (and the target group) every [`POLL`] until it serves or `timeout` passes,
/// reporting the start, each change of what is not ready and the end through `hooks`.
pub(crate) async fn until_serving(
    stack: &Stack,
    timeout: Duration,
    targets: Option<&TargetWait>,
    hooks: &dyn Hooks,
) -> Serving {
    let t0 = Instant::now();
    hooks.wait_started(stack.name(), timeout);
    let mut last: Vec<String> = Vec::new();
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        // A host that stops answering mid-round must not hold the wait past its deadline.
        let reading = tokio::time::timeout(left.max(POLL), read(stack, targets)).await;
        let (why, holder) = match reading {
            Ok(r) => r,
            Err(_) => (last.clone(), None),
        };
        let elapsed = t0.elapsed();
        if why.is_empty() {
            let s = Serving {
                serving: true,
                elapsed_ms: elapsed.as_millis() as u64,
                vip_holder: holder,
                not_ready: Vec::new(),
            };
            hooks.served(&s);
            return s;
        }
        if why != last {
            hooks.wait_progress(elapsed, &why);
            last = why;
        }
        if elapsed >= timeout {
            return Serving {
                serving: false,
                elapsed_ms: elapsed.as_millis() as u64,
                vip_holder: None,
                not_ready: last,
            };
        }
        tokio::time::sleep(POLL.min(timeout.saturating_sub(elapsed))).await;
    }
}

/// One reading: what is not ready, and the VIP holder when there is exactly one.
async fn read(stack: &Stack, targets: Option<&TargetWait>) -> (Vec<String>, Option<String>) {
    let (s, tg) = tokio::join!(status::collect(stack), async {
        match targets {
            Some(t) => Some(crate::provider::aws::health::targets(&t.clients, &t.arn).await),
            None => None,
        }
    });
    let mut why = not_ready(stack, &s);
    match tg {
        None => {}
        Some(Err(e)) => why.push(format!("target group: {e}")),
        Some(Ok(list)) => why.extend(targets_not_ready(&list)),
    }
    let holder = match s.vip.as_ref().map(|v| v.holders.as_slice()) {
        Some([one]) => Some(one.clone()),
        _ => None,
    };
    (why, holder)
}

/// What keeps the balancer from serving: no target registered, or each target not `healthy`
/// with AWS's reason.
fn targets_not_ready(list: &[crate::provider::aws::health::TargetHealth]) -> Vec<String> {
    if list.is_empty() {
        return vec!["target group: no target registered".into()];
    }
    list.iter()
        .filter(|t| !t.healthy())
        .map(|t| {
            format!(
                "target {}: {}{}",
                t.id,
                t.state,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// The diagnostic of a wait that ended before the stack served (None: it serves). The
/// command prints it beside its own outcome (already printed, still valid) and exits with
/// `ExitStatus::NotServing`.
pub(crate) fn not_serving(stack: &Stack, timeout: Duration, s: &Serving) -> Option<NotServing> {
    (!s.serving).then(|| NotServing {
        stack: stack.name().to_string(),
        waited: Dur(timeout),
        what: s.not_ready.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::status::{CheckResult, HostStatus, VipStatus};

    fn lab() -> Stack {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/lab-app.yaml");
        crate::stack::load(&path).expect("stacks/lab-app.yaml loads")
    }

    fn host(name: &str, addr: &str, vrrp: &str, eff: i64, holds: bool) -> HostStatus {
        HostStatus {
            name: name.into(),
            address: addr.into(),
            reachable: true,
            error: None,
            vrrp_state: Some(vrrp.into()),
            holds_vip: holds,
            base_priority: eff as u8,
            effective_priority: Some(eff),
            last_transition: None,
            checks: vec![CheckResult {
                name: "nginx".into(),
                ok: true,
                weight: 0,
            }],
            services: [("keepalived", "active"), ("nginx", "active")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            roles: Default::default(),
            ha_pending: Vec::new(),
            app_via_nginx: Some(true),
        }
    }

    fn status(hosts: Vec<HostStatus>) -> Status {
        let holders: Vec<String> = hosts
            .iter()
            .filter(|h| h.holds_vip)
            .map(|h| h.name.clone())
            .collect();
        Status {
            stack: "lab-app".into(),
            vip: Some(VipStatus {
                address: "198.18.0.100".into(),
                holders: holders.clone(),
                groups: Vec::new(),
            }),
            split_brain: holders.len() > 1,
            hosts,
        }
    }

    fn settled() -> Vec<HostStatus> {
        vec![
            host("host1", "198.18.0.11", "MASTER", 150, true),
            host("host2", "198.18.0.12", "BACKUP", 100, false),
            host("host3", "198.18.0.13", "BACKUP", 99, false),
        ]
    }

    #[test]
    fn a_settled_stack_serves() {
        assert_eq!(not_ready(&lab(), &status(settled())), Vec::<String>::new());
    }

    #[test]
    fn no_vip_holder_is_not_serving() {
        let mut h = settled();
        h[0].holds_vip = false;
        h[0].vrrp_state = Some("BACKUP".into());
        assert_eq!(
            not_ready(&lab(), &status(h)),
            ["VIP 198.18.0.100: no holder"]
        );
    }

    #[test]
    fn two_holders_are_not_serving() {
        let mut h = settled();
        h[1].holds_vip = true;
        assert_eq!(
            not_ready(&lab(), &status(h)),
            ["VIP 198.18.0.100: 2 holders (host1, host2)"]
        );
    }

    /// keepalived's first master is whoever's timer ran out first; with preemption the higher
    /// priority takes over a few adverts later. A wait that stopped at "one holder" would hand
    /// `drill` a VIP about to move.
    #[test]
    fn a_pending_preemption_is_not_serving() {
        let mut h = settled();
        h[0].holds_vip = false;
        h[0].vrrp_state = Some("BACKUP".into());
        h[1].holds_vip = true;
        h[1].vrrp_state = Some("MASTER".into());
        assert_eq!(
            not_ready(&lab(), &status(h)),
            ["VIP 198.18.0.100: held by host2, but host1 has the higher effective priority (preemption pending)"]
        );
    }

    #[test]
    fn a_faulted_top_priority_does_not_block_the_election() {
        let mut h = settled();
        h[0].holds_vip = false;
        h[0].vrrp_state = Some("FAULT".into());
        h[0].checks[0].ok = false;
        h[1].holds_vip = true;
        h[1].vrrp_state = Some("MASTER".into());
        // the failing check is reported, the election itself is settled on host2
        assert_eq!(
            not_ready(&lab(), &status(h)),
            ["host1: check `nginx` fails"]
        );
    }

    #[test]
    fn every_unready_part_is_named() {
        let mut h = settled();
        h[1].services.insert("nginx".into(), "inactive".into());
        h[2].app_via_nginx = Some(false);
        h[2].reachable = true;
        let mut s = status(h);
        s.hosts.push(HostStatus {
            reachable: false,
            error: Some("connection refused".into()),
            ..host("host4", "198.18.0.14", "BACKUP", 1, false)
        });
        assert_eq!(
            not_ready(&lab(), &s),
            [
                "host2: `nginx` is inactive",
                "host3: the app's `/healthz` does not answer 2xx through nginx",
                "host4: unreachable (connection refused)",
            ]
        );
    }

    /// Right after `up` a replica waits for the primary's RDB (redis 7 batches replicas for
    /// `repl-diskless-sync-delay`, 5 s by default): a primary lost then takes every write
    /// the replica never got with it.
    #[test]
    fn ha_services_not_armed_yet_are_not_serving() {
        let mut h = settled();
        h[1].roles.insert(
            "redis:9001".into(),
            "replica of 198.18.0.11 (link down)".into(),
        );
        h[1].ha_pending
            .push("redis:9001: the replica is not in sync with its primary (198.18.0.11) yet (`hactl heal` repoints a replica whose primary is gone)".into());
        h[2].ha_pending
            .push("redis:9001: its sentinel knows 0 of the 2 other sentinels".into());
        assert_eq!(
            not_ready(&lab(), &status(h)),
            [
                "host2: redis:9001: the replica is not in sync with its primary (198.18.0.11) yet (`hactl heal` repoints a replica whose primary is gone)",
                "host3: redis:9001: its sentinel knows 0 of the 2 other sentinels",
            ]
        );
    }

    #[test]
    fn unhealthy_targets_are_named_with_the_aws_reason() {
        use crate::provider::aws::health::TargetHealth;
        let t = |id: &str, state: &str, reason: Option<&str>| TargetHealth {
            id: id.into(),
            state: state.into(),
            reason: reason.map(str::to_string),
        };
        assert_eq!(
            targets_not_ready(&[]),
            ["target group: no target registered"]
        );
        assert_eq!(
            targets_not_ready(&[
                t("i-1", "healthy", None),
                t(
                    "i-2",
                    "unhealthy",
                    Some("Target.ResponseCodeMismatch: Health checks failed with these codes: [502]")
                ),
                t("i-3", "initial", Some("Elb.RegistrationInProgress")),
            ]),
            [
                "target i-2: unhealthy (Target.ResponseCodeMismatch: Health checks failed with these codes: [502])",
                "target i-3: initial (Elb.RegistrationInProgress)",
            ]
        );
    }

    #[test]
    fn not_serving_diagnostic() {
        let e = NotServing {
            stack: "lab".into(),
            waited: Dur::from_secs(120),
            what: vec![
                "VIP 198.18.0.100: no holder".into(),
                "host2: check `nginx` fails".into(),
            ],
        };
        insta::assert_snapshot!(crate::view::format_report(&miette::Report::new(e), false));
    }
}
