//! Whether the balancer would send traffic to the stack's instances: the target group's
//! per-target health (ELBv2 `DescribeTargetHealth`). `up` waits on it (`cli/wait.rs`) so that
//! it returns only once the load balancer serves.
//!
//! A target is ready in state `healthy` only. `initial` (first checks still running),
//! `unhealthy`, `unused` (not in an enabled zone, or the instance is stopped), `draining` and
//! `unavailable` are reported with the reason code and description AWS gives
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html#target-health-states>).

use serde::Serialize;

use super::client::Clients;
use super::{sdk_message, AwsError};

/// One registered target as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetHealth {
    /// The instance id.
    pub id: String,
    /// `healthy`, `initial`, `unhealthy`, `unused`, `draining` or `unavailable`.
    pub state: String,
    /// AWS's reason code (`Target.ResponseCodeMismatch`, …) and description, when not healthy.
    pub reason: Option<String>,
}

impl TargetHealth {
    pub fn healthy(&self) -> bool {
        self.state == "healthy"
    }
}

/// Every target registered in the target group `arn`, with its health.
pub async fn targets(c: &Clients, arn: &str) -> Result<Vec<TargetHealth>, AwsError> {
    let out = c
        .elb
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            op: "DescribeTargetHealth",
            addr: super::desired::TG.into(),
            message: sdk_message(&e),
        })?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let id = d.target()?.id()?.to_string();
            let h = d.target_health();
            let state = h
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "unknown".into());
            let reason = h.and_then(|h| {
                let code = h.reason().map(|r| r.as_str().to_string());
                match (code, h.description()) {
                    (Some(c), Some(d)) => Some(format!("{c}: {d}")),
                    (Some(c), None) => Some(c),
                    (None, Some(d)) => Some(d.to_string()),
                    (None, None) => None,
                }
            });
            Some(TargetHealth { id, state, reason })
        })
        .collect())
}
