//! What `hactl deploy` and `hactl rollback` decide before and around a rollout, from their
//! settings: which stack file, whether the stack can be deployed, the probe's target and
//! limits, and the version a rollback returns to. The command (`cli/deploy.rs`) keeps the
//! arguments, the lock, the confirmation and the printing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::balancer::{self, Prepared};
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

/// A stack deploys when it has an app (on hosts, or on AWS instances `hactl up` made).
pub fn check_stack(stack: &Stack) -> Result<(), DeployError> {
    if stack.file.app.is_none() {
        return Err(DeployError::NoApp(stack.name().into()));
    }
    Ok(())
}

/// The stack as a rollout drives it ([`check_stack`], then [`balancer::prepare`]): on AWS its
/// instances as the hosts, its target group and its balancer's DNS name; on hosts the VIP.
/// `deregister: false` is the test-only `--no-deregister`.
pub async fn deployable(stack: Stack, deregister: bool) -> Result<Prepared, DeployError> {
    check_stack(&stack)?;
    balancer::prepare(stack, deregister).await
}

/// The default probe URL on a hosts stack: the VIP on haproxy's port (or nginx's).
pub fn default_probe_url(stack: &Stack) -> Option<String> {
    let vip = stack.vip.as_ref()?;
    let port = match (&stack.file.haproxy, &stack.file.nginx) {
        (Some(h), _) => h.listen.value,
        (None, Some(n)) => n.listen.value,
        _ => 80,
    };
    Some(match vip.address {
        std::net::IpAddr::V4(a) => format!("http://{a}:{port}/"),
        std::net::IpAddr::V6(a) => format!("http://[{a}]:{port}/"),
    })
}

/// `--probe [URL]`, `--probe-rate`, `--probe-max`, `--probe-keep-alive`, `--probe-resolve`,
/// `--probe-ca`.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// None: no probe; `Some("")`: the stack's endpoint (`Prepared::endpoint`: the
    /// balancer's DNS name on AWS, [`default_probe_url`] on hosts).
    pub url: Option<String>,
    /// Requests per second, held to 0.1–1000.
    pub rate: f64,
    /// Hard limit on the probe's duration (its request count follows from the rate).
    pub max: Duration,
    /// Reuse connections (off: one connection per request).
    pub keep_alive: bool,
    /// `NAME=ADDR[:PORT]` mappings answered without DNS.
    pub resolve: Vec<String>,
    /// A PEM bundle HTTPS trusts instead of the system's roots.
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
    /// Stop a host's running version before starting the new one (`--stop-first`).
    pub stop_first: bool,
}

impl Settings {
    /// The rollout's options for `op` (`deploy` or `rollback`) on the prepared stack `p`.
    /// `--stop-first` is refused where batches never leave rotation (no target group, no
    /// haproxy): there the app would be down while users are sent to it.
    pub fn options(&self, p: &Prepared, op: &'static str) -> Result<Options, DeployError> {
        if self.stop_first && p.target_group.is_none() && p.stack.file.haproxy.is_none() {
            return Err(DeployError::StopFirst(p.stack.name().into()));
        }
        let probe = probe(&self.probe, p.endpoint.clone())?;
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
            balancer: p.target_group.clone(),
            stop_first: self.stop_first,
        })
    }
}

/// The probe to run beside the rollout, and the URL it reads (None: no probe); `endpoint`
/// is the stack's public endpoint, the default URL.
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
        let s = ProbeSettings {
            url: Some(String::new()),
            rate: 5000.0,
            max: Duration::from_secs(2),
            keep_alive: false,
            resolve: Vec::new(),
            ca: None,
        };
        let (cfg, url) = probe(&s, default_probe_url(&stack))
            .unwrap()
            .expect("a probe");
        assert_eq!(Some(url), default_probe_url(&stack));
        assert_eq!(cfg.rate, 1000.0);
        assert_eq!(cfg.max_requests, 2000);
        assert!(!cfg.keep_alive, "one connection per request unless asked");
        let err = probe(&s, None).unwrap_err();
        assert!(err.to_string().contains("--probe URL"), "{err}");
        let none = ProbeSettings { url: None, ..s };
        assert!(probe(&none, None).unwrap().is_none());
    }

    /// `--stop-first` needs a drain before the swap: behind haproxy it is allowed, on a
    /// stack whose hosts never leave rotation it is refused, naming the stack.
    #[test]
    fn stop_first_only_where_batches_leave_rotation() {
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
        let behind_haproxy = Prepared {
            stack: lab(),
            target_group: None,
            endpoint: None,
        };
        assert!(settings(true).options(&behind_haproxy, "deploy").is_ok());
        let mut bare = lab();
        bare.file.haproxy = None;
        let bare = Prepared {
            stack: bare,
            target_group: None,
            endpoint: None,
        };
        assert!(settings(false).options(&bare, "deploy").is_ok());
        let err = settings(true).options(&bare, "deploy").err().unwrap();
        assert!(
            matches!(err, DeployError::StopFirst(ref s) if s == "lab-app"),
            "{err}"
        );
    }
}
