//! The host layer, for both providers: which hosts a run configures (the stack's own, or a
//! cloud stack's instances from the state's outputs), what they hold (rendered, with the cloud
//! outputs when there are any), and carrying a plan's host changes out (one task per host for
//! the walker, one script per host).
//!
//! A cloud stack's instances that do not exist yet cannot be observed and their files cannot
//! be rendered for real (addresses, endpoints come from the cloud): the plan lists each file
//! they will get as "(known after apply)", and `up` plans them again once the cloud layer is
//! applied.

use std::collections::BTreeMap;

use futures::future::LocalBoxFuture;
use tokio::sync::Mutex;

use super::graph::{Provider, Task};
use super::hooks::Hooks;
use super::{Mode, Observed};
use crate::plan::{Action, Addr, Change, Plan, Reason};
use crate::provider::aws::hosts as aws_hosts;
use crate::provider::hosts::{self as hp, HostReport};
use crate::render::{HostConfig, RenderedFile};
use crate::stack::Stack;
use crate::state::State;
use crate::vault::Secrets;

/// The hosts of a run, rendered and observed (connections kept open for the apply).
pub struct HostLayer {
    /// The stack with the hosts this layer configures (a cloud stack: its instances).
    pub stack: Stack,
    pub observed: Observed,
}

impl HostLayer {
    /// Renders and observes a `provider: hosts` stack's hosts.
    pub async fn of_hosts(stack: &Stack, secrets: &Secrets) -> miette::Result<HostLayer> {
        let observed = super::render_and_observe(stack, secrets).await?;
        Ok(HostLayer {
            stack: stack.clone(),
            observed,
        })
    }

    /// A cloud stack's instances as the state's outputs record them, rendered with those
    /// outputs (plus the EFS mount entry), reached over SSH with the host keys the state
    /// pinned. With `pin`, an instance not pinned yet is contacted once to pin its key (and
    /// the state saved by the caller); without, it is simply not reachable yet.
    pub async fn of_instances(
        stack: &Stack,
        st: &mut State,
        secrets: &Secrets,
        pin: bool,
        hooks: &dyn Hooks,
    ) -> miette::Result<HostLayer> {
        let instances = aws_hosts::instances(&st.outputs);
        let mut s = stack.clone();
        s.hosts = aws_hosts::hosts(stack, &instances);
        if stack.file.ssh.known_hosts.is_none() {
            let path = known_hosts_path(stack.name());
            write_known_hosts(&instances, st, &path, pin)?;
            if pin {
                pin_new(&s, &instances, st, &path, hooks).await;
            }
            s.file.ssh.known_hosts = Some(crate::stack::model::unspanned(
                path.to_string_lossy().into_owned(),
            ));
        }
        let configs = render_instances(&s, secrets, &st.outputs)?;
        let observed = super::observe(&s, configs).await;
        Ok(HostLayer { stack: s, observed })
    }

    pub fn plan(&self, mode: Mode) -> Plan {
        match mode {
            Mode::Up => super::plan_up(&self.stack, &self.observed),
            Mode::Down => super::plan_down(&self.stack, &self.observed),
        }
    }

    pub fn host_order(&self) -> Vec<String> {
        self.stack.hosts.iter().map(|h| h.name.clone()).collect()
    }

    pub async fn close(self) {
        self.observed.close().await;
    }
}

/// Every instance's files, rendered with the outputs, plus the EFS mount entry when the stack
/// mounts one and the file system's DNS name is known.
pub fn render_instances(
    s: &Stack,
    secrets: &Secrets,
    outputs: &serde_json::Value,
) -> miette::Result<BTreeMap<String, HostConfig>> {
    let mut configs = super::render_all_with_outputs(s, secrets, outputs)?;
    let efs_dns = outputs["shared_fs"]["dns_name"]
        .as_str()
        .unwrap_or_default();
    if let (Some(path), false) = (aws_hosts::efs_mount(s), efs_dns.is_empty()) {
        for cfg in configs.values_mut() {
            cfg.files.push(RenderedFile {
                path: aws_hosts::fstab_path(s.name()),
                content: aws_hosts::fstab_line(efs_dns, &path).into_bytes(),
                mode: 0o644,
                owner: Some("root".into()),
                service: None,
                check: None,
                sensitive: false,
            });
        }
    }
    Ok(configs)
}

/// The host changes of instances that do not exist yet (`names`, e.g. `web-1`): every file
/// the stack renders for them and every service it starts, "(known after apply)". They are
/// rendered with placeholder addresses only to learn the paths and services; nothing of the
/// placeholder content is shown.
pub fn known_after_apply(
    stack: &Stack,
    names: &[String],
    secrets: &Secrets,
    outputs: &serde_json::Value,
) -> Vec<Change> {
    let placeholder: Vec<aws_hosts::Instance> = names
        .iter()
        .map(|n| aws_hosts::Instance {
            name: n.clone(),
            instance_id: String::new(),
            private_ip: std::net::IpAddr::from([0, 0, 0, 0]),
            public_ip: None,
        })
        .collect();
    let mut s = stack.clone();
    s.hosts = aws_hosts::hosts(stack, &placeholder);
    // What the cloud has not produced yet stands in as a placeholder, so the templates render
    // (strict undefined) and tell which files and services there will be.
    let mut outputs = outputs.clone();
    let later = "(known after apply)";
    if let Some(o) = outputs.as_object_mut() {
        let fill = serde_json::json!({
            "balancer": {"dns_name": later, "arn": later},
            "database": {"endpoint": later, "port": 0, "identifier": later},
            "shared_fs": {"id": later, "dns_name": later},
        });
        for (k, v) in fill.as_object().into_iter().flatten() {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let hosts = o.entry("hosts").or_insert_with(|| serde_json::json!([]));
        if let Some(hs) = hosts.as_array_mut() {
            for n in names {
                if !hs.iter().any(|h| h["name"] == n.as_str()) {
                    hs.push(
                        serde_json::json!({"name": n, "address": "0.0.0.0", "instance_id": later}),
                    );
                }
            }
        }
    }
    let configs = match render_instances(&s, secrets, &outputs) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("known after apply: cannot render: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for name in names {
        let Some(cfg) = configs.get(name) else {
            continue;
        };
        for f in &cfg.files {
            out.push(Change {
                after: Some("(known after apply)".into()),
                sensitive: f.sensitive,
                ..Change::new(
                    Addr::file(name, &f.path),
                    Action::Create,
                    Reason::KnownAfterApply,
                )
            });
        }
        for svc in &cfg.services {
            out.push(Change::new(
                Addr::service(name, svc),
                Action::Start,
                Reason::KnownAfterApply,
            ));
        }
    }
    out
}

/// Where hactl keeps the host keys it pinned for a stack's instances (when the stack names no
/// `ssh.known_hosts` of its own): beside the local state, rebuilt from the state on each run.
pub fn known_hosts_path(stack: &str) -> std::path::PathBuf {
    let rel = std::path::Path::new(".hactl").join(format!("{stack}.known_hosts"));
    std::env::current_dir().map(|d| d.join(&rel)).unwrap_or(rel)
}

/// Host keys: only current instances' keys are kept (a replaced instance is a new host) when
/// `prune`; the stack's known_hosts file is rewritten from the state.
fn write_known_hosts(
    instances: &[aws_hosts::Instance],
    st: &mut State,
    path: &std::path::Path,
    prune: bool,
) -> miette::Result<()> {
    if prune {
        st.host_keys
            .retain(|id, _| instances.iter().any(|i| &i.instance_id == id));
    }
    let io = |e: std::io::Error| miette::miette!("cannot write `{}`: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, st.host_keys.values().cloned().collect::<String>()).map_err(io)?;
    Ok(())
}

/// Each instance not pinned yet is contacted once with `accept-new`, one at a time so the
/// lines it adds are its own, and those lines are recorded in the state under its instance id.
async fn pin_new(
    s: &Stack,
    instances: &[aws_hosts::Instance],
    st: &mut State,
    path: &std::path::Path,
    hooks: &dyn Hooks,
) {
    let lines = || -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let mut with_file = s.clone();
    with_file.file.ssh.known_hosts = Some(crate::stack::model::unspanned(
        path.to_string_lossy().into_owned(),
    ));
    for (inst, host) in instances.iter().zip(&s.hosts) {
        if st.host_keys.contains_key(&inst.instance_id) {
            continue;
        }
        let before = lines();
        match hp::Connection::pin(&with_file, host).await {
            Ok(()) => {
                let new: Vec<String> = lines().difference(&before).cloned().collect();
                if !new.is_empty() {
                    hooks.warning(&format!("{}: host key pinned at first contact", host.name));
                    st.host_keys
                        .insert(inst.instance_id.clone(), new.join("\n") + "\n");
                }
            }
            // The strict connection that follows reports it with the other hosts.
            Err(e) => hooks.warning(&format!("{}: first contact failed: {e}", host.name)),
        }
    }
}

/// The outcome of the EFS mount step on one host.
#[derive(Debug, serde::Serialize)]
pub struct Mount {
    pub host: String,
    pub path: String,
    pub mount: aws_hosts::MountOutcome,
}

/// The EFS mount on every instance; a host that cannot mount NFS at all is reported as not
/// run, with the reason.
pub async fn mount_step(s: &Stack, path: &str) -> Vec<Mount> {
    let all: Vec<&crate::stack::Host> = s.hosts.iter().collect();
    let conns = hp::connect_all(s, &all).await;
    let mut out = Vec::new();
    for (host, conn) in conns {
        let mount = match conn {
            Ok(c) => {
                let r = hp::query(&c, &aws_hosts::mount_script(s.name(), path)).await;
                c.close().await;
                match r {
                    Ok(o) => aws_hosts::parse_mount(&o),
                    Err(e) => aws_hosts::MountOutcome::Failed(e.to_string()),
                }
            }
            Err(e) => aws_hosts::MountOutcome::NotRun(format!("cannot connect: {e}")),
        };
        out.push(Mount {
            host,
            path: path.to_string(),
            mount,
        });
    }
    out
}

/// The hosts provider as the engine's walker sees it: a task is all of one host's changes,
/// applied in one script; the reports are kept for the view.
pub struct Hosts<'l> {
    pub layer: &'l HostLayer,
    pub plan: &'l Plan,
    pub mode: Mode,
    pub secrets: &'l Secrets,
    pub reports: Mutex<Vec<HostReport>>,
}

impl Provider for Hosts<'_> {
    fn run<'a>(
        &'a self,
        task: &'a Task<'a>,
        _hooks: &'a dyn Hooks,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let l = self.layer;
            let Some(mut r) =
                super::apply_host(&l.stack, &l.observed, self.plan, self.mode, &task.label).await
            else {
                return Err(format!("{}: not observed", task.label));
            };
            // Checkers and services quote what they refuse: never a secret value.
            r.redact(self.secrets);
            let result = if r.ok {
                Ok(())
            } else {
                Err(r.error.clone().unwrap_or_else(|| "failed".into()))
            };
            self.reports.lock().await.push(r);
            result
        })
    }
}
