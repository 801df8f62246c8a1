//! The engine: `plan(stack, observed) -> Plan` and `apply(plan)`.
//!
//! For the hosts provider a run is: render every host's files, connect to every host in
//! parallel, observe them in one round trip each, diff (pure, in `plan::hosts`), and — for
//! `up`/`down` — turn each host's share of the plan into one apply script. Hosts that cannot
//! be reached are reported and do not stop the others. Connections opened for the plan are
//! reused for the apply.

pub mod cloud;
pub mod drill;
pub mod graph;
pub mod heal;
pub mod hooks;
pub mod journal;
pub mod layers;
pub mod logs;
pub mod run;
pub mod saved;
pub mod serving;
pub mod status;
pub mod target;

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::plan::hosts::{self, Manifest, ManifestFile, ObservedHost};
use crate::plan::{sha256_hex, Action, Addr, DigestKey, HostFailure, Plan};
use crate::provider::hosts::script::{ApplySteps, ManifestOp, Probe, RemoveFile, WriteFile};
use crate::provider::hosts::{self as hp, Connection, HostReport};
use crate::render::{self, HostConfig};
use crate::stack::Stack;
use crate::vault::Secrets;

/// Everything known about the hosts before planning.
pub struct Observed {
    pub configs: BTreeMap<String, HostConfig>,
    pub conns: BTreeMap<String, Connection>,
    pub hosts: BTreeMap<String, ObservedHost>,
    pub failures: Vec<HostFailure>,
    /// Keys the digests of files other users may not read (see [`DigestKey`]).
    pub digest_key: DigestKey,
}

impl Observed {
    pub async fn close(self) {
        for (_, c) in self.conns {
            c.close().await;
        }
    }
}

/// Renders every host's configuration.
pub fn render_all(
    stack: &Stack,
    secrets: &Secrets,
) -> Result<BTreeMap<String, HostConfig>, render::RenderError> {
    render_all_with_outputs(stack, secrets, &serde_json::Value::Null)
}

/// [`render_all`] with a provider's outputs (an AWS stack's hosts, after provisioning).
pub fn render_all_with_outputs(
    stack: &Stack,
    secrets: &Secrets,
    outputs: &serde_json::Value,
) -> Result<BTreeMap<String, HostConfig>, render::RenderError> {
    let prepared = render::Prepared::new(stack, secrets, outputs)?;
    stack
        .hosts
        .iter()
        .map(|h| Ok((h.name.clone(), prepared.host(h)?)))
        .collect()
}

/// Renders every host's configuration while connecting to them, then observes. A cold SSH
/// handshake is mostly waiting (on the host's sshd and the network) and rendering is CPU here,
/// so they overlap: the connections are started first, rendered meanwhile. A render error
/// returns at once (dropping the connects: a master that completes anyway idles out).
pub async fn render_and_observe(
    stack: &Stack,
    secrets: &Secrets,
) -> Result<Observed, render::RenderError> {
    let hosts: Vec<_> = stack.hosts.iter().collect();
    let mut connect = Box::pin(hp::connect_all(stack, &hosts));
    // One poll starts every connection (each gets as far as spawning its ssh).
    let started = futures::poll!(&mut connect);
    let configs = render_all(stack, secrets)?;
    let conns = match started {
        std::task::Poll::Ready(c) => c,
        std::task::Poll::Pending => connect.await,
    };
    Ok(observe_connected(stack, configs, conns).await)
}

/// Connects to every host and observes what the rendered configuration touches.
pub async fn observe(stack: &Stack, configs: BTreeMap<String, HostConfig>) -> Observed {
    let hosts: Vec<_> = stack.hosts.iter().collect();
    let conns = hp::connect_all(stack, &hosts).await;
    observe_connected(stack, configs, conns).await
}

async fn observe_connected(
    stack: &Stack,
    configs: BTreeMap<String, HostConfig>,
    mut conns: BTreeMap<String, Result<hp::Connection, hp::HostError>>,
) -> Observed {
    let hosts: Vec<_> = stack.hosts.iter().collect();
    let mut failures = Vec::new();
    let mut live = BTreeMap::new();
    for h in &hosts {
        match conns.remove(&h.name) {
            Some(Ok(c)) => {
                live.insert(h.name.clone(), c);
            }
            Some(Err(e)) => failures.push(HostFailure::new(&h.name, e)),
            None => {}
        }
    }
    let name = stack.name();
    let parallelism = stack.file.ssh.parallelism.max(1);
    let results: Vec<_> = futures::stream::iter(live.iter().map(|(host, conn)| {
        let cfg = configs.get(host);
        async move {
            let probes: Vec<Probe> = cfg
                .map(|c| {
                    c.files
                        .iter()
                        .map(|f| Probe {
                            path: f.path.clone(),
                            want_sha256: Some(sha256_hex(&f.content)),
                            sensitive: f.sensitive,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut services: Vec<String> = cfg.map(|c| c.services.clone()).unwrap_or_default();
            // Services hactl may have started earlier are observed too, for `down`.
            for s in ["app", "nginx", "haproxy", "keepalived"] {
                if !services.iter().any(|x| x == s) && crate::onhost::paths::pid_file(s).is_some() {
                    services.push(s.to_string());
                }
            }
            (
                host.clone(),
                hp::observe(conn, name, &probes, &services).await,
            )
        }
    }))
    .buffer_unordered(parallelism)
    .collect()
    .await;
    let mut observed = BTreeMap::new();
    for (host, r) in results {
        match r {
            Ok(o) => {
                observed.insert(host, o);
            }
            Err(e) => failures.push(HostFailure::new(host, e)),
        }
    }
    failures.sort_by(|a, b| a.host.cmp(&b.host));
    for f in &failures {
        if let Some(c) = live.remove(&f.host) {
            c.close().await;
        }
    }
    Observed {
        configs,
        conns: live,
        hosts: observed,
        failures,
        digest_key: crate::state::digest_key(stack, false).await,
    }
}

/// The plan for `up`.
pub fn plan_up(stack: &Stack, obs: &Observed) -> Plan {
    let mut changes = Vec::new();
    let mut noop = 0;
    for h in &stack.hosts {
        let (Some(cfg), Some(o)) = (obs.configs.get(&h.name), obs.hosts.get(&h.name)) else {
            continue;
        };
        let (c, n) = hosts::diff(cfg, o, &obs.digest_key);
        changes.extend(c);
        noop += n;
    }
    Plan::new(stack.name(), changes, noop, obs.failures.clone())
}

/// The plan for `down`.
pub fn plan_down(stack: &Stack, obs: &Observed) -> Plan {
    let mut changes = Vec::new();
    for h in &stack.hosts {
        if let Some(o) = obs.hosts.get(&h.name) {
            changes.extend(hosts::diff_down(&h.name, o, &obs.digest_key));
        }
    }
    Plan::new(stack.name(), changes, 0, obs.failures.clone())
}

/// Turns one host's share of an `up` plan into apply steps.
pub fn steps_up(plan: &Plan, cfg: &HostConfig, o: &ObservedHost) -> ApplySteps {
    let host = &cfg.host;
    let prev = o.manifest.clone().unwrap_or_default();
    let mut steps = ApplySteps::default();
    let mut started: Vec<String> = prev.services.clone();
    for c in plan.for_host(host) {
        match (&c.addr, c.action) {
            (Addr::File { path, .. }, Action::Create | Action::Update) => {
                let path = path.as_str();
                if let Some(f) = cfg.files.iter().find(|f| f.path == path) {
                    let existed = o.files.get(path).is_some_and(|x| x.is_some());
                    steps.writes.push(WriteFile {
                        path: f.path.clone(),
                        content: f.content.clone(),
                        mode: f.mode,
                        owner: f.owner.clone(),
                        check: f.check,
                        backup_original: existed && prev.file(path).is_none(),
                        // set by `apply`, which has the stack
                        replace_symlink: false,
                        sensitive: f.sensitive,
                    });
                }
            }
            (Addr::File { path, .. }, Action::Delete) => {
                steps.removes.push(RemoveFile {
                    path: path.to_string(),
                    restore: prev.file(path).is_some_and(|f| f.backup),
                });
            }
            (Addr::Service { service: svc, .. }, Action::Start | Action::Reload) => {
                let svc = svc.as_str();
                let verb = if c.action == Action::Start {
                    if !started.iter().any(|s| s == svc) {
                        started.push(svc.to_string());
                    }
                    "start"
                } else {
                    "reload"
                };
                steps.services.push((verb.into(), svc.to_string()));
            }
            _ => {}
        }
    }
    let files = cfg
        .files
        .iter()
        .map(|f| ManifestFile {
            path: f.path.clone(),
            sha256: sha256_hex(&f.content),
            sensitive: f.sensitive,
            backup: prev.file(&f.path).is_some_and(|m| m.backup)
                || steps
                    .writes
                    .iter()
                    .any(|w| w.path == f.path && w.backup_original),
        })
        .collect();
    steps.manifest = ManifestOp::Write(Manifest {
        stack: plan.stack.clone(),
        files,
        services: started,
    });
    steps
}

/// Turns one host's share of a `down` plan into apply steps.
pub fn steps_down(plan: &Plan, host: &str, o: &ObservedHost) -> ApplySteps {
    let prev = o.manifest.clone().unwrap_or_default();
    let mut steps = ApplySteps::default();
    for c in plan.for_host(host) {
        match (&c.addr, c.action) {
            (Addr::Service { service, .. }, Action::Stop) => {
                steps.services.push(("stop".into(), service.to_string()));
            }
            (Addr::File { path, .. }, Action::Delete) => {
                steps.removes.push(RemoveFile {
                    path: path.to_string(),
                    restore: prev.file(path).is_some_and(|f| f.backup),
                });
            }
            _ => {}
        }
    }
    steps.manifest = ManifestOp::Remove;
    steps
}

/// Which kind of run an apply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    Down,
}

/// Applies one host's share of a plan in one script (None: the host was not observed).
pub async fn apply_host(
    stack: &Stack,
    obs: &Observed,
    plan: &Plan,
    mode: Mode,
    host: &str,
) -> Option<HostReport> {
    let conn = obs.conns.get(host)?;
    let o = obs.hosts.get(host)?;
    let mut steps = match mode {
        Mode::Up => steps_up(plan, obs.configs.get(host)?, o),
        Mode::Down => steps_down(plan, host, o),
    };
    for w in &mut steps.writes {
        w.replace_symlink = stack
            .file
            .files
            .iter()
            .any(|f| f.replace_symlink && f.dest.value == w.path);
    }
    // The app runs an image that must be on the host (loaded from the stack's archive) and
    // recorded before `app-ctl start` runs in the apply script.
    let starts_app = steps
        .services
        .iter()
        .any(|(v, s)| s == "app" && v != "stop");
    if starts_app {
        if let Err(e) = crate::deploy::exec::prepare_up(stack, conn).await {
            return Some(HostReport {
                host: conn.host.clone(),
                error: Some(e),
                ..Default::default()
            });
        }
    }
    Some(hp::apply(conn, stack.name(), &steps).await)
}
