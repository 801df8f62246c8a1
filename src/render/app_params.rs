//! The app's control-script parameters resolved from the stack. `AppParams` and the script
//! are on-host vocabulary (`crate::onhost::app_ctl`, which knows nothing of the stack); this
//! is where a stack becomes them, for `render` (which writes `app-ctl` onto the hosts) and for
//! `deploy` (which calls its verbs).

use crate::onhost::app_ctl::AppParams;
use crate::stack::Stack;

impl AppParams {
    /// The app's parameters, or none when the stack has no `app`.
    pub fn from_stack(stack: &Stack) -> Option<AppParams> {
        let a = stack.file.app.as_ref()?;
        Some(AppParams {
            stack: stack.name().to_string(),
            runtime: a.runtime.value,
            host_port: u16::try_from(a.host_port.value).unwrap_or(8000),
            replicas: u16::try_from(a.replicas.value.max(1)).unwrap_or(1),
            health_path: a.health.path.clone(),
            health_interval_s: a.health.interval.value.as_secs_f64().max(0.05),
            health_timeout_s: a.health.timeout.value.as_secs_f64().max(0.1),
            healthy_threshold: u32::try_from(a.health.healthy_threshold.value.max(1)).unwrap_or(1),
            health_deadline_s: a.health.deadline.value.as_secs_f64().ceil().max(1.0) as u64,
            stop_grace_s: a.stop_grace_period.value.as_secs_f64().ceil() as u64,
            nginx: stack.file.nginx.is_some(),
        })
    }
}
