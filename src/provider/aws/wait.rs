//! Waiting on AWS as it behaves: eventual consistency, throttling, per-kind time limits, and
//! failure states that end a wait at once.
//!
//! - A new id can be NotFound for seconds after its create, on AWS (not on moto): every call
//!   that names a resource made in this run goes through [`settle`], which retries the
//!   service's NotFound codes for [`Timeouts::propagation`] (terraform-provider-aws retries
//!   them for 2 minutes, `internal/service/ec2/wait.go`, `ec2PropagationTimeout`).
//! - Throttling that outlasts the SDK's own retries inside a wait is one more pending poll,
//!   never the end of the wait (the SDK waiters do the same).
//! - Each kind has its own limit ([`Timeouts`], defaults from terraform-provider-aws:
//!   instances 10 min, load balancers 10 min, EFS 10 min, RDS 40 min — Multi-AZ creates take
//!   that long), settable in the stack under `aws.timeouts`.
//! - A state AWS never leaves (RDS `failed`, `incompatible-*`; an instance `terminated` while
//!   we wait for `running`; a load balancer `failed`) ends the wait with that status
//!   ([`AwsError::Failed`]): the SDK waiters' failure states (`db_instance_available`,
//!   `instance_running`), not a 40-minute timeout.
//!
//! The decisions (which code is which, which state is final) are pure functions tested here;
//! the loops take the clock and the calls as arguments.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{sdk_code, sdk_message, AwsError};

/// What one poll of a resource found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Ready,
    /// Not yet; the status AWS reports (shown when the wait times out).
    Pending(String),
    /// A state it will not leave: the wait ends with this status.
    Failed(String),
}

/// An SDK call that failed, with the service's error code kept for the decision.
#[derive(Debug)]
pub struct CallError {
    pub code: Option<String>,
    pub error: AwsError,
}

/// Maps an SDK error to a [`CallError`] for `op` on `addr`.
pub fn call_err<E, R>(
    op: &'static str,
    addr: &str,
) -> impl Fn(aws_sdk_ec2::error::SdkError<E, R>) -> CallError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let addr = addr.to_string();
    move |e| CallError {
        code: sdk_code(&e),
        error: AwsError::Api {
            op,
            addr: addr.clone(),
            message: sdk_message(&e),
        },
    }
}

/// The throttling codes of EC2, ELBv2, RDS and EFS (the SDK's own list of throttling errors,
/// `aws-smithy-runtime` `THROTTLING_ERRORS`).
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

/// The codes a resource that exists but has not propagated yet is answered with: EC2's
/// `Invalid*ID.NotFound` / `InvalidGroup.NotFound`, ELBv2's `TargetGroupNotFound`, RDS's
/// `DBInstanceNotFound` / `DBSubnetGroupNotFoundFault`, EFS's `MountTargetNotFound`; and
/// ELBv2's `InvalidTarget` for an instance that is not yet registrable.
pub fn is_not_found(code: &str) -> bool {
    code.ends_with(".NotFound")
        || code.ends_with("NotFound")
        || code.ends_with("NotFoundFault")
        || code == "InvalidTarget"
}

/// How long each kind may take (Terraform's defaults), and how long a new id may stay unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub instance: Duration,
    pub load_balancer: Duration,
    pub file_system: Duration,
    pub database: Duration,
    /// How long NotFound for a resource this run made (or names) is retried.
    pub propagation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            instance: Duration::from_secs(10 * 60),
            load_balancer: Duration::from_secs(10 * 60),
            file_system: Duration::from_secs(10 * 60),
            database: Duration::from_secs(40 * 60),
            propagation: Duration::from_secs(2 * 60),
        }
    }
}

impl Timeouts {
    /// The defaults, with what the stack's `aws.timeouts` sets.
    pub fn from_spec(spec: &crate::stack::model::AwsTimeoutsSpec) -> Timeouts {
        let d = Timeouts::default();
        let or =
            |v: &Option<crate::stack::model::Spanned<crate::stack::duration::Dur>>,
             default: Duration| v.as_ref().map(|v| v.value.0).unwrap_or(default);
        Timeouts {
            instance: or(&spec.instance, d.instance),
            load_balancer: or(&spec.load_balancer, d.load_balancer),
            file_system: or(&spec.file_system, d.file_system),
            database: or(&spec.database, d.database),
            propagation: or(&spec.propagation, d.propagation),
        }
    }
}

/// An EC2 instance waited on to be `running`: `shutting-down`, `terminated`, `stopping`,
/// `stopped` are failures (the SDK's `instance_running` waiter fails on them).
pub fn instance_running(state: &str) -> Poll {
    match state {
        "running" => Poll::Ready,
        "shutting-down" | "terminated" | "stopping" | "stopped" => Poll::Failed(state.into()),
        other => Poll::Pending(other.into()),
    }
}

/// An ELBv2 load balancer waited on to be `active` (`failed` is final; `active_impaired`
/// serves traffic, as the SDK's `load_balancer_available` waiter only waits on
/// `provisioning`).
pub fn load_balancer_active(code: &str) -> Poll {
    match code {
        "active" | "active_impaired" => Poll::Ready,
        "failed" => Poll::Failed(code.into()),
        other => Poll::Pending(other.into()),
    }
}

/// An EFS file system or mount target waited on to be `available` (`error` is final).
pub fn efs_available(state: &str) -> Poll {
    match state {
        "available" => Poll::Ready,
        "error" | "deleting" | "deleted" => Poll::Failed(state.into()),
        other => Poll::Pending(other.into()),
    }
}

/// An RDS instance waited on to be `available`: the SDK `db_instance_available` waiter's
/// failure states (`deleted`, `deleting`, `failed`, `incompatible-restore`,
/// `incompatible-parameters`) plus the other `incompatible-*`, `storage-full`,
/// `inaccessible-encryption-credentials` and `restore-error` states of the RDS user guide's
/// "Viewing DB instance status" table that need a person.
pub fn db_available(status: &str) -> Poll {
    match status {
        "available" => Poll::Ready,
        "failed"
        | "deleted"
        | "deleting"
        | "storage-full"
        | "restore-error"
        | "inaccessible-encryption-credentials" => Poll::Failed(status.into()),
        s if s.starts_with("incompatible-") => Poll::Failed(s.into()),
        other => Poll::Pending(other.into()),
    }
}

/// A target registered for a create-before-destroy replacement, waited on to be `healthy`
/// (ELBv2 target health states: `initial` while the first checks run, `unhealthy`,
/// `unavailable` while its zone or group is not ready yet are pending; a target that is gone
/// again — `draining`, `unused`, not listed — was deregistered by someone else: failed).
pub fn target_healthy(state: Option<&str>) -> Poll {
    match state {
        Some("healthy") => Poll::Ready,
        Some(s @ ("draining" | "unused")) => Poll::Failed(s.into()),
        None => Poll::Failed("not registered".into()),
        Some(other) => Poll::Pending(other.into()),
    }
}

/// A target deregistered for a create-before-destroy replacement, waited on until its
/// connections have drained (`draining` lasts the group's deregistration delay; it is done when
/// AWS no longer lists it, or lists it `unused`).
pub fn target_drained(state: Option<&str>) -> Poll {
    match state {
        None | Some("unused") => Poll::Ready,
        Some(other) => Poll::Pending(other.into()),
    }
}

/// Polls `check` until it is ready, failed, or `timeout` has passed. The pause between polls
/// is a fortieth of the time waited so far (at least the first pause, at most 10 s): a
/// resource is seen ready at most 2.5% (or 10 s) after it became so, and a 40-minute wait
/// costs about 400 describes. A throttling error is a pending poll; a NotFound error is one while
/// `propagation` has not passed since the wait began (the id may not have propagated yet).
pub async fn until<F, Fut>(
    addr: &str,
    what: &'static str,
    timeout: Duration,
    propagation: Duration,
    check: F,
) -> Result<(), AwsError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Poll, CallError>>,
{
    until_from(
        Duration::from_millis(250),
        addr,
        what,
        timeout,
        propagation,
        check,
    )
    .await
}

/// [`until`] with the first pause between polls given (the tests' is short).
async fn until_from<F, Fut>(
    first_delay: Duration,
    addr: &str,
    what: &'static str,
    timeout: Duration,
    propagation: Duration,
    check: F,
) -> Result<(), AwsError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Poll, CallError>>,
{
    let t0 = Instant::now();
    let mut delay = first_delay;
    let mut last: String;
    loop {
        match check().await {
            Ok(Poll::Ready) => return Ok(()),
            Ok(Poll::Failed(status)) => {
                return Err(AwsError::Failed {
                    addr: addr.to_string(),
                    what,
                    status,
                })
            }
            Ok(Poll::Pending(status)) => last = status,
            Err(e) => {
                let code = e.code.clone().unwrap_or_default();
                let propagating = is_not_found(&code) && t0.elapsed() < propagation;
                if !(is_throttling(&code) || propagating) {
                    return Err(e.error);
                }
                last = code;
            }
        }
        if t0.elapsed() >= timeout {
            return Err(AwsError::Timeout {
                addr: addr.to_string(),
                what,
                after: crate::stack::duration::Dur(timeout).to_string(),
                last,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (t0.elapsed() / 40).clamp(first_delay, Duration::from_secs(10));
    }
}

/// Runs `f` (one SDK call) again while it answers NotFound, for `propagation` at most: the
/// call names a resource this run made or refers to, which AWS may not know everywhere yet.
/// Throttling the SDK's retries did not absorb is retried the same way. Any other error, or
/// NotFound after `propagation`, is returned.
pub async fn settle<T, E, R, F, Fut>(
    propagation: Duration,
    op: &'static str,
    addr: &str,
    f: F,
) -> Result<T, AwsError>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
{
    let t0 = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let code = sdk_code(&e).unwrap_or_default();
                let transient = is_not_found(&code) || is_throttling(&code);
                if !transient || t0.elapsed() >= propagation {
                    return Err(call_err(op, addr)(e).error);
                }
            }
        }
        // A short, even pause: a new id usually propagates within seconds, and every run's
        // longest chain pays the overshoot once per link.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MS: Duration = Duration::from_millis(1);

    fn err(code: &str) -> CallError {
        CallError {
            code: Some(code.into()),
            error: AwsError::Api {
                op: "Describe",
                addr: "a".into(),
                message: code.into(),
            },
        }
    }

    #[test]
    fn rds_failure_states_end_the_wait() {
        for s in [
            "failed",
            "incompatible-parameters",
            "incompatible-network",
            "incompatible-restore",
            "storage-full",
            "deleting",
        ] {
            assert_eq!(db_available(s), Poll::Failed(s.into()), "{s}");
        }
        for s in [
            "creating",
            "backing-up",
            "modifying",
            "configuring-enhanced-monitoring",
        ] {
            assert_eq!(db_available(s), Poll::Pending(s.into()), "{s}");
        }
        assert_eq!(db_available("available"), Poll::Ready);
    }

    #[test]
    fn terminated_ends_an_instance_wait() {
        assert_eq!(
            instance_running("terminated"),
            Poll::Failed("terminated".into())
        );
        assert_eq!(
            instance_running("shutting-down"),
            Poll::Failed("shutting-down".into())
        );
        assert_eq!(instance_running("pending"), Poll::Pending("pending".into()));
        assert_eq!(instance_running("running"), Poll::Ready);
    }

    #[test]
    fn load_balancer_and_efs_states() {
        assert_eq!(
            load_balancer_active("provisioning"),
            Poll::Pending("provisioning".into())
        );
        assert_eq!(
            load_balancer_active("failed"),
            Poll::Failed("failed".into())
        );
        assert_eq!(load_balancer_active("active"), Poll::Ready);
        assert_eq!(efs_available("creating"), Poll::Pending("creating".into()));
        assert_eq!(efs_available("error"), Poll::Failed("error".into()));
    }

    #[test]
    fn codes_that_mean_not_yet() {
        for c in [
            "InvalidInstanceID.NotFound",
            "InvalidGroup.NotFound",
            "InvalidRouteTableID.NotFound",
            "TargetGroupNotFound",
            "DBInstanceNotFound",
            "DBSubnetGroupNotFoundFault",
            "MountTargetNotFound",
            "InvalidTarget",
        ] {
            assert!(is_not_found(c), "{c}");
        }
        for c in ["RequestLimitExceeded", "Throttling", "ThrottlingException"] {
            assert!(is_throttling(c), "{c}");
            assert!(!is_not_found(c), "{c}");
        }
        assert!(!is_not_found("DependencyViolation"));
        assert!(!is_throttling("InvalidParameterValue"));
    }

    #[tokio::test]
    async fn throttling_inside_a_wait_is_pending() {
        let n = AtomicUsize::new(0);
        let r = until_from(
            MS,
            "aws_lb.web",
            "active",
            Duration::from_secs(600),
            Duration::ZERO,
            || async {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0..=4 => Err(err("Throttling")),
                    5 => Ok(Poll::Pending("provisioning".into())),
                    _ => Ok(Poll::Ready),
                }
            },
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(n.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn not_found_is_pending_only_while_the_id_propagates() {
        let r = until_from(
            MS,
            "aws_instance.web[0]",
            "running",
            Duration::from_secs(600),
            Duration::from_millis(50),
            || async { Err(err("InvalidInstanceID.NotFound")) },
        )
        .await;
        match r {
            Err(AwsError::Api { message, .. }) => {
                assert_eq!(message, "InvalidInstanceID.NotFound")
            }
            other => panic!("want the NotFound after 50 ms, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failure_state_ends_the_wait_with_the_status() {
        let t0 = Instant::now();
        let n = AtomicUsize::new(0);
        let r = until_from(
            MS,
            "aws_db_instance.main",
            "available",
            Duration::from_secs(2400),
            Duration::ZERO,
            || async {
                Ok(match n.fetch_add(1, Ordering::SeqCst) {
                    0 => Poll::Pending("creating".into()),
                    _ => db_available("incompatible-parameters"),
                })
            },
        )
        .await;
        match r {
            Err(AwsError::Failed { status, .. }) => assert_eq!(status, "incompatible-parameters"),
            other => panic!("want Failed, got {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_wait_times_out_with_the_last_status() {
        let r = until_from(
            MS,
            "aws_db_instance.main",
            "available",
            Duration::from_millis(30),
            Duration::ZERO,
            || async { Ok(Poll::Pending("backing-up".into())) },
        )
        .await;
        match r {
            Err(AwsError::Timeout { last, after, .. }) => {
                assert_eq!((last.as_str(), after.as_str()), ("backing-up", "30ms"))
            }
            other => panic!("want Timeout, got {other:?}"),
        }
    }
}
