//! What `hactl deploy` and `hactl rollback` decide before and around a rollout, from their
//! settings: which stack file, whether the stack can be deployed, the probe's target and
//! limits, and the version a rollback returns to. The command (`cli/deploy.rs`) keeps the
//! arguments, the lock, the confirmation and the printing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::balancer::TargetGroup;
use super::exec::{Options, Session, Target};
use super::probe::{self, ProbeConfig};
use super::{rollout, DeployError};
use crate::stack::Stack;

/// The stack file: `-f`/`HACTL_STACK`, else an error saying how to give it.
pub fn stack_file(file: Option<&Path>) -> miette::Result<PathBuf> {
    file.map(Path::to_path_buf).ok_or_else(|| {
        miette::miette!(
            code = "hactl::deploy::no_stack",
            help = "pass `-f STACK` or set `HACTL_STACK`",
            "which stack? no stack file given"
        )
    })
}

/// What `deploy` rolls out: the registry reference `image`, else the image `archive`
/// (docker-archive, read for its name), else the stack's own app image.
pub fn target(
    stack: &Stack,
    image: Option<&str>,
    archive: Option<&Path>,
) -> Result<Target, DeployError> {
    match (image, archive) {
        (Some(i), _) => Ok(Target {
            image: i.to_string(),
            archive: None,
        }),
        (None, Some(p)) => super::exec::read_archive(p),
        (None, None) => super::exec::stack_target(stack),
    }
}

/// A stack deploys when it has an app (on hosts, or on the AWS instances `hactl up` made).
pub fn check_stack(stack: &Stack) -> Result<(), DeployError> {
    if stack.file.app.is_none() {
        return Err(DeployError::NoApp(stack.name().into()));
    }
    Ok(())
}

/// `--probe [URL]`, `--probe-rate`, `--probe-max` and how the probe reaches its endpoint.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// None: no probe; `Some("")`: the stack's public endpoint (`balancer::prepare`: the VIP
    /// on haproxy's or nginx's port, or an AWS stack's load balancer).
    pub url: Option<String>,
    /// Requests per second, in (0, 1000] (the CLI refuses others; `ProbeConfig::new` clamps).
    pub rate: f64,
    /// Hard limit on the probe's duration (its request count follows from the rate).
    pub max: Duration,
    /// Reuse connections (`--probe-keep-alive`).
    pub keep_alive: bool,
    /// `NAME=ADDR[:PORT]` answers instead of DNS (`--probe-resolve`).
    pub resolve: Vec<String>,
    /// A PEM bundle trusted instead of the system's roots (`--probe-ca`).
    pub ca: Option<PathBuf>,
}

/// The settings of a rollout (`deploy`, `rollback`), from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hosts updated at once (at least 1); the first batch is the canary.
    pub batch: usize,
    pub max_failed_hosts: usize,
    pub lock_wait: Duration,
    pub probe: ProbeSettings,
    pub probe_budget: Option<u64>,
    /// Probing after the last batch (only with a probe).
    pub probe_soak: Duration,
    /// Stop the running version before starting the new one (`--stop-first`).
    pub stop_first: bool,
}

impl Settings {
    /// The rollout's options for `op` (`deploy` or `rollback`) on `stack`; `endpoint` is the
    /// stack's public URL and `balancer` an AWS stack's target group (`balancer::prepare`).
    /// `--stop-first` is refused without a target group: on a hosts stack the app's health is
    /// what the VRRP checks (and haproxy's) watch, so stopping it on the VIP holder moves the
    /// VIP and resets the connections it holds (seen in the lab: 1 request reset at the
    /// holder's batch, the rollout rolled back).
    pub fn options(
        &self,
        op: &'static str,
        stack: &Stack,
        endpoint: Option<String>,
        balancer: Option<TargetGroup>,
    ) -> Result<Options, DeployError> {
        if self.stop_first && balancer.is_none() {
            return Err(DeployError::StopFirst(stack.name().into()));
        }
        let probe = probe(&self.probe, endpoint)?;
        Ok(Options {
            batch: self.batch.max(1),
            max_failed_hosts: self.max_failed_hosts,
            lock_wait: self.lock_wait,
            probe_soak: if probe.is_some() {
                self.probe_soak
            } else {
                Duration::ZERO
            },
            probe,
            probe_budget: self.probe_budget,
            op,
            balancer,
            stop_first: self.stop_first,
        })
    }
}

/// The probe to run beside the rollout, and the URL it reads (None: no probe).
pub fn probe(
    s: &ProbeSettings,
    endpoint: Option<String>,
) -> Result<Option<(ProbeConfig, String)>, DeployError> {
    let Some(u) = &s.url else {
        return Ok(None);
    };
    probe::config(
        u,
        endpoint,
        (s.rate, s.max),
        s.keep_alive,
        &s.resolve,
        s.ca.as_deref(),
    )
    .map(Some)
}

/// The target `deploy` was given, or (`rollback`, None) [`rollback_target`].
pub async fn target_or_rollback(
    session: &Session<'_>,
    given: Option<Target>,
) -> miette::Result<Target> {
    match given {
        Some(t) => Ok(t),
        None => rollback_target(session).await,
    }
}

/// What `hactl rollback` deploys: the last good version in the hosts' history before the one
/// most hosts run now.
pub async fn rollback_target(session: &Session<'_>) -> miette::Result<Target> {
    let history = session.history().await?;
    let apps = session.inspect("").await?;
    let mut counts = BTreeMap::<String, usize>::new();
    for a in apps.values() {
        if let Some(i) = &a.image {
            *counts.entry(i.clone()).or_default() += 1;
        }
    }
    let current = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(i, _)| i)
        .unwrap_or_default();
    let prev = rollout::previous_good(&history, &current)
        .ok_or_else(|| DeployError::NoPrevious(rollout::version_of(&current)))?;
    Ok(Target {
        image: prev,
        archive: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/lab-app.yaml");
        crate::stack::load(&path).expect("stacks/lab-app.yaml loads")
    }

    #[test]
    fn probe_defaults_to_the_vip_and_bounds_rate_and_count() {
        let stack = lab();
        let endpoint = || Some("http://198.18.0.100:8080/".to_string());
        let s = ProbeSettings {
            url: Some(String::new()),
            rate: 5000.0,
            max: Duration::from_secs(2),
            keep_alive: false,
            resolve: Vec::new(),
            ca: None,
        };
        let (cfg, url) = probe(&s, endpoint()).unwrap().expect("a probe");
        assert_eq!(url, "http://198.18.0.100:8080/");
        assert_eq!(cfg.rate, 1000.0);
        assert_eq!(cfg.max_requests, 2000);
        // no endpoint (no VIP, no balancer) and no URL given: a clear error, nothing sent
        let e = probe(&s, None).expect_err("no URL to probe");
        assert!(e.to_string().contains("--probe URL"), "{e}");
        let none = ProbeSettings { url: None, ..s };
        assert!(probe(&none, endpoint()).unwrap().is_none());
        assert!(check_stack(&stack).is_ok());
    }

    /// `--stop-first` needs a target group: on a hosts stack (haproxy or not) it is refused
    /// before anything is connected, naming the stack; without it the same stack is fine.
    /// (Allowed on AWS: `deploy_alb`'s `--stop-first` run.)
    #[test]
    fn stop_first_only_through_a_target_group() {
        let settings = |stop_first| Settings {
            batch: 1,
            max_failed_hosts: 0,
            lock_wait: Duration::ZERO,
            probe: ProbeSettings {
                url: None,
                rate: 1.0,
                max: Duration::from_secs(1),
                keep_alive: false,
                resolve: Vec::new(),
                ca: None,
            },
            probe_budget: None,
            probe_soak: Duration::ZERO,
            stop_first,
        };
        let behind_haproxy = lab();
        assert!(behind_haproxy.file.haproxy.is_some());
        assert!(settings(false)
            .options("deploy", &behind_haproxy, None, None)
            .is_ok());
        let err = settings(true)
            .options("deploy", &behind_haproxy, None, None)
            .err()
            .unwrap();
        assert!(
            matches!(err, DeployError::StopFirst(ref s) if s == "lab-app"),
            "{err}"
        );
    }
}
