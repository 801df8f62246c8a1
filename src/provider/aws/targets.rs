//! A rolling deploy's side of the target group (ALB or NLB, the calls are the same): take a
//! batch's instances out (`DeregisterTargets`), wait until the balancer has drained them, put
//! them back (`RegisterTargets`) and wait until its own health checks pass.
//!
//! How ELBv2 reports it (`DescribeTargetHealth` without `Targets` lists every target that is
//! registered or still deregistering):
//! - after `DeregisterTargets` a target is `draining` (`Target.DeregistrationInProgress`): the
//!   balancer sends it no new requests and lets the ones in flight finish, for at most the
//!   target group's `deregistration_delay.timeout_seconds`; then it is no longer listed (asked
//!   by id, it is `unused` with `Target.NotRegistered`). AWS keeps showing `draining` for the
//!   whole delay even when the target had nothing in flight, so a batch costs the delay:
//!   <https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay>.
//! - after `RegisterTargets` a target is `initial` until `healthy_threshold` checks in a row
//!   pass, then `healthy`; `unhealthy` when they fail
//!   (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html#target-health-states>).
//!
//! The decisions ([`drained`], [`all_healthy`]) are pure and tested here; the waits poll them.

use std::time::{Duration, Instant};

use super::client::Clients;
use super::health::{targets, TargetHealth};
use super::{sdk_message, AwsError};

/// The first pause between two `DescribeTargetHealth` calls while waiting; each pause is
/// [`BACKOFF`] times the one before, up to [`POLL_MAX`], so a short lab drain is seen within
/// a quarter second and a long AWS one (minutes) costs a call every few seconds, not four a
/// second (ELBv2's API rate limits are per account and region).
pub const POLL: Duration = Duration::from_millis(250);

/// The longest pause between two polls.
pub const POLL_MAX: Duration = Duration::from_secs(4);

/// Growth of the pause from one poll to the next.
pub const BACKOFF: f64 = 1.5;

/// Slack beyond what the stack's settings predict, for the drain and the health wait alike.
/// It only bounds a failure (a wait that never ends), so it is generous: AWS documents that
/// registering and deregistering "can take a few minutes" on top of the health checks and the
/// deregistration delay, NLBs most of all
/// (<https://docs.aws.amazon.com/cli/latest/reference/elbv2/register-targets.html>,
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-register-targets.html>).
pub const SLACK: Duration = Duration::from_secs(5 * 60);

/// The pause after `pause`: [`BACKOFF`] times longer, at most [`POLL_MAX`].
pub fn next_pause(pause: Duration) -> Duration {
    pause.mul_f64(BACKOFF).min(POLL_MAX)
}

/// The reason code AWS gives a target that is not registered (any more).
const NOT_REGISTERED: &str = "Target.NotRegistered";

/// Still held by the balancer: listed, and not reported as not registered.
fn listed<'a>(list: &'a [TargetHealth], id: &str) -> Option<&'a TargetHealth> {
    list.iter().find(|t| {
        t.id == id
            && !(t.state == "unused"
                && t.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(NOT_REGISTERED)))
    })
}

/// Every one of `ids` has left the target group (its drain is over).
pub fn drained(list: &[TargetHealth], ids: &[String]) -> bool {
    ids.iter().all(|id| listed(list, id).is_none())
}

/// Every one of `ids` is registered and `healthy`.
pub fn all_healthy(list: &[TargetHealth], ids: &[String]) -> bool {
    ids.iter()
        .all(|id| listed(list, id).is_some_and(TargetHealth::healthy))
}

/// What the ids look like now, for progress and timeouts: `i-1 draining, i-2 gone`.
pub fn describe(list: &[TargetHealth], ids: &[String]) -> String {
    ids.iter()
        .map(|id| match listed(list, id) {
            Some(t) => match &t.reason {
                Some(r) if !t.healthy() => format!("{id} {} ({r})", t.state),
                _ => format!("{id} {}", t.state),
            },
            None => format!("{id} not registered"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long the drain may take: the group's deregistration delay plus [`SLACK`] (the
/// balancer's own propagation, minutes on an NLB).
pub fn drain_bound(deregistration_delay: Duration) -> Duration {
    deregistration_delay + SLACK
}

/// How long a registered target may take to turn `healthy`: `healthy_threshold` checks
/// `interval` apart, plus one more interval for the first check to start, one check's
/// timeout, and [`SLACK`] for the registration itself to take effect.
pub fn healthy_bound(interval: Duration, timeout: Duration, healthy_threshold: u32) -> Duration {
    interval * (healthy_threshold + 1) + timeout + SLACK
}

/// `DeregisterTargets` for `ids` in the group `arn`.
pub async fn deregister(c: &Clients, arn: &str, ids: &[String]) -> Result<(), AwsError> {
    let mut call = c.elb.deregister_targets().target_group_arn(arn);
    for id in ids {
        call = call.targets(target(id));
    }
    call.send().await.map_err(|e| AwsError::Api {
        op: "DeregisterTargets",
        addr: super::desired::TG.into(),
        message: sdk_message(&e),
    })?;
    Ok(())
}

/// `RegisterTargets` for `ids` (on the group's own port).
pub async fn register(c: &Clients, arn: &str, ids: &[String]) -> Result<(), AwsError> {
    let mut call = c.elb.register_targets().target_group_arn(arn);
    for id in ids {
        call = call.targets(target(id));
    }
    call.send().await.map_err(|e| AwsError::Api {
        op: "RegisterTargets",
        addr: super::desired::TG.into(),
        message: sdk_message(&e),
    })?;
    Ok(())
}

fn target(id: &str) -> aws_sdk_elasticloadbalancingv2::types::TargetDescription {
    aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
        .id(id)
        .build()
}

/// Polls `DescribeTargetHealth` (pauses from [`POLL`] growing to [`POLL_MAX`]) until `done`
/// holds for `ids`, or `within` passes (a [`AwsError::Timeout`] naming what each id looked
/// like last). The last pause is cut short so the bound is kept.
async fn wait_until(
    c: &Clients,
    arn: &str,
    ids: &[String],
    within: Duration,
    what: &'static str,
    done: fn(&[TargetHealth], &[String]) -> bool,
) -> Result<(), AwsError> {
    let t0 = Instant::now();
    let mut pause = POLL;
    loop {
        let list = targets(c, arn).await?;
        if done(&list, ids) {
            return Ok(());
        }
        if t0.elapsed() >= within {
            return Err(AwsError::Timeout {
                addr: super::desired::TG.into(),
                what,
                after: format!("{:.1} s", within.as_secs_f64()),
                last: describe(&list, ids),
            });
        }
        tokio::time::sleep(pause.min(within.saturating_sub(t0.elapsed()))).await;
        pause = next_pause(pause);
    }
}

/// Waits until the balancer has drained `ids` (no longer listed), at most `within`.
pub async fn wait_drained(
    c: &Clients,
    arn: &str,
    ids: &[String],
    within: Duration,
) -> Result<(), AwsError> {
    wait_until(c, arn, ids, within, "drained", drained).await
}

/// Waits until every one of `ids` is `healthy`, at most `within`.
pub async fn wait_healthy(
    c: &Clients,
    arn: &str,
    ids: &[String],
    within: Duration,
) -> Result<(), AwsError> {
    wait_until(c, arn, ids, within, "healthy", all_healthy).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, state: &str, reason: Option<&str>) -> TargetHealth {
        TargetHealth {
            id: id.into(),
            state: state.into(),
            reason: reason.map(str::to_string),
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_draining_target_is_not_drained_until_it_is_gone() {
        let batch = ids(&["i-1"]);
        let draining = vec![
            t(
                "i-1",
                "draining",
                Some("Target.DeregistrationInProgress: Target deregistration is in progress"),
            ),
            t("i-2", "healthy", None),
        ];
        assert!(!drained(&draining, &batch));
        assert!(
            drained(&[t("i-2", "healthy", None)], &batch),
            "no longer listed"
        );
        // asked by id, AWS answers `unused` / `Target.NotRegistered` once the drain is over
        let asked = vec![t(
            "i-1",
            "unused",
            Some("Target.NotRegistered: Target is not registered to the target group"),
        )];
        assert!(drained(&asked, &batch));
        // `unused` for another reason (a stopped instance) is still registered
        let stopped = vec![t("i-1", "unused", Some("Target.InvalidState: stopped"))];
        assert!(!drained(&stopped, &batch));
        assert_eq!(
            describe(&draining, &ids(&["i-1", "i-3"])),
            "i-1 draining (Target.DeregistrationInProgress: Target deregistration is in progress), i-3 not registered"
        );
    }

    #[test]
    fn registered_targets_gate_on_healthy_only() {
        let batch = ids(&["i-1", "i-2"]);
        let initial = vec![
            t("i-1", "healthy", None),
            t("i-2", "initial", Some("Elb.RegistrationInProgress")),
        ];
        assert!(!all_healthy(&initial, &batch));
        assert!(
            !all_healthy(&[t("i-1", "healthy", None)], &batch),
            "i-2 missing"
        );
        let both = vec![t("i-1", "healthy", None), t("i-2", "healthy", None)];
        assert!(all_healthy(&both, &batch));
        let sick = vec![
            t("i-1", "healthy", None),
            t("i-2", "unhealthy", Some("Target.ResponseCodeMismatch")),
        ];
        assert!(!all_healthy(&sick, &batch));
    }

    /// The waits only bound a failure, so they leave AWS minutes beyond the stack's settings
    /// (NLB registration "can take a few minutes").
    #[test]
    fn wait_bounds_leave_aws_minutes() {
        // seed 003: deregistration_delay 30 s; checks every 10 s, 5 s timeout, 2 in a row
        assert_eq!(
            drain_bound(Duration::from_secs(30)),
            Duration::from_secs(30 + 300)
        );
        assert_eq!(
            healthy_bound(Duration::from_secs(10), Duration::from_secs(5), 2),
            Duration::from_secs(35 + 300)
        );
    }

    /// Polls start at 250 ms and back off to 4 s: a 10-minute wait asks at most ~160 times
    /// (4 a second would be 2,400), and a drain the lab ends in 1 s is seen within 0.6 s.
    #[test]
    fn target_health_polls_back_off() {
        let mut pauses = vec![POLL];
        while pauses.len() < 10 {
            pauses.push(next_pause(*pauses.last().unwrap()));
        }
        let ms: Vec<u128> = pauses.iter().map(|p| p.as_millis()).collect();
        assert_eq!(ms, [250, 375, 562, 843, 1265, 1898, 2847, 4000, 4000, 4000]);
        // calls within 10 minutes
        let (mut t, mut calls, mut p) = (Duration::ZERO, 1u32, POLL);
        while t < Duration::from_secs(600) {
            t += p;
            calls += 1;
            p = next_pause(p);
        }
        assert!(calls <= 160, "{calls}");
        // a drain over at 1 s: polled at 0.25, 0.625, 1.1875 s
        assert!(pauses[..3].iter().sum::<Duration>() < Duration::from_millis(1200));
    }
}
