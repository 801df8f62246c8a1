//! AWS SDK clients: the standard credential chain (`AWS_PROFILE`, environment, files,
//! instance role), `AWS_ENDPOINT_URL` (tests reach moto through it), and always the stack's
//! region, all over rustls. `AWS_REGION` / `AWS_DEFAULT_REGION` never override `aws.region`:
//! when they did, a shell left in another region built a second, partial stack there (the
//! stack's state and tags say nothing about regions). A conflicting variable is reported as
//! a warning by `preflight::region_warnings`.
//!
//! Retries: AWS throttles (`Throttling`, `RequestLimitExceeded`) under load and inside long
//! waits, so every client uses the SDK's standard retry mode (exponential backoff with jitter,
//! a retry quota) with [`MAX_ATTEMPTS`] attempts, where the SDK's default is 3
//! (terraform-provider-aws retries each call up to 25 times). Not the adaptive mode: its
//! client-side rate limiter, fed by hactl's low call rate, throttles hactl itself — measured
//! on moto behind `tests/aws_like` with 10% of calls throttled (11 throttles in 83 calls),
//! `up` took 122.9 s in adaptive mode and 9.4 s in standard mode with 10 attempts.
//! `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` in the environment still choose otherwise.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};

/// Attempts per call (the first one included) before a retryable error is returned.
pub const MAX_ATTEMPTS: u32 = 10;

/// The first retry's backoff ceiling (the SDK's default is 1 s; each retry doubles it, up to
/// 20 s, with full jitter): the nine retries' ceilings still add up to about 65 s, and a
/// throttled call on a run's longest chain costs about 100 ms instead of 500 ms
/// (`bench/aws-like.sh`: `up` 34.6 s → 33.6 s against a 32 s critical path).
pub const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// Standard retries with [`MAX_ATTEMPTS`], unless the environment names a mode or a count.
fn retry_config() -> Option<RetryConfig> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("AWS_RETRY_MODE") || set("AWS_MAX_ATTEMPTS") {
        return None; // aws-config reads them
    }
    Some(
        RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(INITIAL_BACKOFF),
    )
}

/// The shared SDK configuration for `region` (the stack's, whatever the environment says).
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string()));
    if let Some(r) = retry_config() {
        loader = loader.retry_config(r);
    }
    loader.load().await
}

/// One client per service, cheap to clone (they share one connection pool each).
#[derive(Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub efs: aws_sdk_efs::Client,
    pub rds: aws_sdk_rds::Client,
    pub region: String,
}

impl Clients {
    pub async fn new(region: &str) -> Clients {
        let conf = sdk_config(region).await;
        Clients {
            ec2: aws_sdk_ec2::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            efs: aws_sdk_efs::Client::new(&conf),
            rds: aws_sdk_rds::Client::new(&conf),
            region: conf
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| region.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::retry::RetryMode;

    #[tokio::test]
    async fn clients_retry_with_ten_attempts() {
        if std::env::var_os("AWS_RETRY_MODE").is_some()
            || std::env::var_os("AWS_MAX_ATTEMPTS").is_some()
        {
            panic!("unset AWS_RETRY_MODE / AWS_MAX_ATTEMPTS to run this test");
        }
        let c = Clients::new("us-east-1").await;
        for r in [
            c.ec2.config().retry_config(),
            c.elb.config().retry_config(),
            c.efs.config().retry_config(),
            c.rds.config().retry_config(),
        ] {
            let r = r.expect("a retry config");
            assert_eq!(r.mode(), RetryMode::Standard);
            assert_eq!(r.max_attempts(), MAX_ATTEMPTS);
            assert_eq!(r.initial_backoff(), INITIAL_BACKOFF);
        }
    }
}
