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
        Self::of_instances_only(stack, st, secrets, pin, None, hooks).await
    }

    /// [`HostLayer::of_instances`], narrowed to the host named `only` when given: every
    /// instance is rendered (templates may list them all) and keeps its pinned key, only that
    /// one is pinned and observed.
    pub async fn of_instances_only(
        stack: &Stack,
        st: &mut State,
        secrets: &Secrets,
        pin: bool,
        only: Option<&str>,
        hooks: &dyn Hooks,
    ) -> miette::Result<HostLayer> {
        let instances = aws_hosts::instances(&st.outputs);
        let mut s = stack.clone();
        s.hosts = aws_hosts::hosts(stack, &instances);
        let mut configs = render_instances(&s, secrets, &st.outputs)?;
        let mut narrowed = instances.clone();
        if let Some(name) = only {
            s.hosts.retain(|h| h.name == name);
            configs.retain(|n, _| n == name);
            narrowed.retain(|i| i.name == name);
        }
        if stack.file.ssh.known_hosts.is_none() {
            let path = known_hosts_path(stack.name());
            // Pruned against every instance the outputs name: a replaced instance's key goes
            // (its successor may answer to the same name or address with another key).
            write_known_hosts(&instances, st, &path, pin)?;
            if pin {
                pin_new(&s, &narrowed, st, &path, hooks).await?;
            }
            s.file.ssh.known_hosts = Some(crate::stack::model::unspanned(
                path.to_string_lossy().into_owned(),
            ));
        }
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

/// The host layer of an instance a roll just launched (`aws_instance.web[0]`'s new one, not yet
/// registered in any target group): the outputs as they will be once it has replaced the old
/// one, its key pinned (`st` is the run's state; a copy is changed), its files pushed and
/// services started, its EFS entry mounted. Returns the host key lines pinned for it, which the
/// caller records in the state under its id. An error names what failed on the host.
pub async fn configure_rolled(
    stack: &Stack,
    mut st: State,
    secrets: &Secrets,
    new: &crate::provider::aws::apply::Launched,
    hooks: &dyn Hooks,
) -> Result<Option<String>, String> {
    let name = crate::provider::aws::outputs::host_name(&new.addr);
    let entry = serde_json::json!({
        "name": name,
        "address": new.private_ip,
        "public_ip": new.public_ip,
        "instance_id": new.instance_id,
    });
    if !st.outputs["hosts"].is_array() {
        st.outputs["hosts"] = serde_json::Value::Array(Vec::new());
    }
    if let Some(hosts) = st.outputs["hosts"].as_array_mut() {
        match hosts.iter_mut().find(|h| h["name"] == name.as_str()) {
            Some(h) => *h = entry,
            None => hosts.push(entry),
        }
    }
    let layer = HostLayer::of_instances_only(stack, &mut st, secrets, true, Some(&name), hooks)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut plan = layer.plan(Mode::Up);
    super::graph::assign_waves(&mut plan);
    let (w, _) = walk_hosts(&layer, &plan, Mode::Up, secrets, 1, hooks).await;
    let mut errors: Vec<String> = plan
        .failed_hosts
        .iter()
        .map(|f| format!("{}: {}", f.host, f.error))
        .chain(w.failed.iter().map(|(t, e)| format!("{t}: {e}")))
        .chain(w.skipped.iter().map(|t| format!("{t}: not started")))
        .collect();
    if errors.is_empty() {
        for m in mount_efs(stack, &layer, &st.outputs).await {
            if let aws_hosts::MountOutcome::Failed(e) = &m.mount {
                errors.push(format!("mount {}: {e}", m.path));
            }
        }
    }
    layer.close().await;
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(st.host_keys.get(&new.instance_id).cloned())
}

/// Walks `plan` (`mode`) over `layer`'s connections, `parallelism` hosts at once: the walk and
/// each host's report, sorted by host.
pub async fn walk_hosts(
    layer: &HostLayer,
    plan: &Plan,
    mode: Mode,
    secrets: &Secrets,
    parallelism: usize,
    hooks: &dyn Hooks,
) -> (super::graph::Walked, Vec<HostReport>) {
    let hosts = Hosts {
        layer,
        plan,
        mode,
        secrets,
        reports: Default::default(),
    };
    let w = super::graph::walk(plan, &hosts, parallelism.max(1), hooks).await;
    let mut reports = hosts.reports.into_inner();
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    (w, reports)
}

/// The EFS mount step on `layer`'s instances when the stack mounts a file system and the
/// `outputs` name its DNS name; nothing otherwise.
pub async fn mount_efs(
    stack: &Stack,
    layer: &HostLayer,
    outputs: &serde_json::Value,
) -> Vec<Mount> {
    let efs = outputs["shared_fs"]["dns_name"]
        .as_str()
        .unwrap_or_default();
    match (aws_hosts::efs_mount(stack), efs.is_empty()) {
        (Some(path), false) => mount_step(&layer.stack, &path).await,
        _ => Vec::new(),
    }
}

/// The stack `render` shows and the outputs it renders with: on AWS the instances the state's
/// outputs record ([`instances_from_state`]), rendered with them (database endpoint, EFS entry)
/// exactly as `up` pushes them; else the stack as written, with no outputs.
pub async fn for_render(stack: Stack) -> miette::Result<(Stack, serde_json::Value)> {
    if crate::engine::cloud::is_aws(&stack) && stack.hosts.is_empty() {
        instances_from_state(stack).await
    } else {
        Ok((stack, serde_json::Value::Null))
    }
}

/// The files of `hosts`, in their order: with `outputs` (an AWS stack's) as the instances'
/// layer renders them ([`render_instances`]), else as the hosts layer does.
pub fn render_hosts(
    stack: &Stack,
    secrets: &Secrets,
    outputs: &serde_json::Value,
    hosts: &[&crate::stack::Host],
) -> miette::Result<Vec<HostConfig>> {
    if outputs.is_null() {
        let prepared = crate::render::Prepared::new(stack, secrets, outputs)?;
        Ok(hosts
            .iter()
            .map(|h| prepared.host(h))
            .collect::<Result<Vec<_>, _>>()?)
    } else {
        let mut all = render_instances(stack, secrets, outputs)?;
        Ok(hosts.iter().filter_map(|h| all.remove(&h.name)).collect())
    }
}

/// No instances to render yet (`hactl render` on an AWS stack before `up`).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("stack `{stack}` has no instances yet: on AWS the hosts are EC2 instances, known once `hactl up` made them ({why})")]
#[diagnostic(
    code(hactl::render::no_instances),
    help("`hactl plan` shows their files as known after apply; after `hactl up` (or `up --provision-only`), `render` renders each instance with the state's outputs")
)]
pub struct NoInstances {
    stack: String,
    why: String,
}

/// An AWS stack with its instances as hosts, and the outputs they are rendered with: from the
/// state `up` saved (no AWS call). [`NoInstances`] when there is no state or no instance.
pub async fn instances_from_state(mut stack: Stack) -> miette::Result<(Stack, serde_json::Value)> {
    let backend = crate::state::Backend::for_stack(&stack).await?;
    let no = |why: String| NoInstances {
        stack: stack.name().to_string(),
        why,
    };
    let Some(st) = backend.read(stack.name()).await? else {
        return Err(no(format!("no state at `{}`", backend.describe())).into());
    };
    let found = aws_hosts::instances(&st.outputs);
    if found.is_empty() {
        return Err(no("the state's outputs list none".into()).into());
    }
    stack.hosts = aws_hosts::hosts(&stack, &found);
    Ok((stack, st.outputs))
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
/// First, each one's sshd must answer ([`wait_for_sshd`]): an error names those that did not.
async fn pin_new(
    s: &Stack,
    instances: &[aws_hosts::Instance],
    st: &mut State,
    path: &std::path::Path,
    hooks: &dyn Hooks,
) -> miette::Result<()> {
    let new: Vec<(&aws_hosts::Instance, &crate::stack::Host)> = instances
        .iter()
        .zip(&s.hosts)
        .filter(|(i, _)| !st.host_keys.contains_key(&i.instance_id))
        .collect();
    wait_for_sshd(s, &new, hooks).await?;
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
    Ok(())
}

/// Waits, all at once, until each new instance's sshd answers on the address hactl connects
/// to (`provider::aws::sshd`), at most `aws.timeouts.ssh`. The wait shows as the progress of
/// `HOST:service/sshd` (and its end as that service started) when the first probe is not
/// answered. Instances reached through `ssh.config_file` or `ssh.proxy_jump` are not probed:
/// no plain TCP connection from here reaches them.
async fn wait_for_sshd(
    s: &Stack,
    new: &[(&aws_hosts::Instance, &crate::stack::Host)],
    hooks: &dyn Hooks,
) -> miette::Result<()> {
    use crate::provider::aws::{sshd, wait::Timeouts};
    if s.file.ssh.config_file.is_some() || s.file.ssh.proxy_jump.is_some() {
        return Ok(());
    }
    let timeout = s
        .file
        .aws
        .as_ref()
        .map(|a| Timeouts::from_spec(&a.timeouts))
        .unwrap_or_default()
        .ssh;
    let port = s.file.ssh.port;
    let waits = new.iter().filter_map(|(inst, host)| {
        let ip: std::net::IpAddr = host.ssh_target.parse().ok()?;
        let addr = std::net::SocketAddr::new(ip, port);
        Some(async move {
            let label = format!("{}:service/sshd", host.name);
            let mut waited = false;
            let r = sshd::wait(addr, timeout, sshd::Pace::default(), |status, took| {
                waited = true;
                hooks.progress(&label, &format!("waiting for sshd: {status}"), took);
            })
            .await;
            match r {
                Ok((_, took)) => {
                    if waited {
                        hooks.done(&label, Action::Start, took);
                    }
                    None
                }
                Err(last) => {
                    hooks.failed(&label, &format!("sshd did not answer: {last}"));
                    Some(sshd::not_answering_line(
                        &host.name,
                        &inst.instance_id,
                        addr,
                        &last,
                    ))
                }
            }
        })
    });
    let failed: Vec<String> = futures::future::join_all(waits)
        .await
        .into_iter()
        .flatten()
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(sshd::NotAnswering {
            after: crate::stack::duration::Dur(timeout).to_string(),
            hosts: failed,
        }
        .into())
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

#[cfg(test)]
mod tests {
    //! The wait for sshd before the first contact, wired as `up` runs it: against a listener on
    //! 127.0.0.1 standing in for a new instance's public address.

    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::stack::duration::Dur;
    use crate::stack::model::unspanned;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Hooks for Seen {
        fn progress(&self, addr: &str, status: &str, _: Duration) {
            self.0.lock().unwrap().push(format!("{addr}: {status}"));
        }
        fn done(&self, addr: &str, action: Action, _: Duration) {
            self.0.lock().unwrap().push(format!("{addr}: {action:?}"));
        }
        fn failed(&self, addr: &str, error: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{addr}: failed: {error}"));
        }
    }

    /// Seed 003 with one new instance at 127.0.0.1, sshd expected on `port` within `secs`.
    fn seed(port: u16, secs: u64) -> (Stack, Vec<aws_hosts::Instance>) {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/seed-003-aws-web.yaml");
        let mut s = crate::stack::load(&path).expect("the seed loads");
        s.file.ssh.port = port;
        if let Some(a) = s.file.aws.as_mut() {
            a.timeouts.ssh = Some(unspanned(Dur::from_secs(secs)));
        }
        let inst = vec![aws_hosts::Instance {
            name: "web-0".into(),
            instance_id: "i-0test".into(),
            private_ip: "10.0.0.5".parse().unwrap(),
            public_ip: Some("127.0.0.1".into()),
        }];
        s.hosts = aws_hosts::hosts(&s, &inst);
        (s, inst)
    }

    /// Issue 12 §2: a new instance is contacted only once its sshd answers: the wait reports
    /// its progress (`connection refused`) until a banner comes, then ends.
    #[tokio::test]
    async fn new_instances_are_pinned_only_once_sshd_answers() {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        // Probes go every 2 s (`sshd::Pace::default`): the second one finds the banner.
        let (s, inst) = seed(addr.port(), 10);
        let pairs: Vec<_> = inst.iter().zip(&s.hosts).collect();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let l = tokio::net::TcpListener::bind(addr).await.unwrap();
            while let Ok((mut c, _)) = l.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
        });
        let seen = Seen::default();
        wait_for_sshd(&s, &pairs, &seen)
            .await
            .expect("sshd answers");
        let seen = seen.0.into_inner().unwrap();
        assert_eq!(
            seen.first().map(String::as_str),
            Some("web-0:service/sshd: waiting for sshd: connection refused"),
            "{seen:?}"
        );
        assert_eq!(
            seen.last().map(String::as_str),
            Some("web-0:service/sshd: Start")
        );
    }

    /// A port that never answers with a banner ends the wait at `aws.timeouts.ssh` with an
    /// error naming the instance, its id and the address; through `ssh.config_file` nothing
    /// is probed (no plain TCP connection reaches such an instance).
    #[tokio::test]
    async fn sshd_that_never_answers_is_an_error_naming_the_instance() {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = l.accept().await {
                held.push(c); // accepted, never a banner
            }
        });
        let (s, inst) = seed(addr.port(), 1);
        let pairs: Vec<_> = inst.iter().zip(&s.hosts).collect();
        let t0 = std::time::Instant::now();
        let e = wait_for_sshd(&s, &pairs, &Seen::default())
            .await
            .expect_err("times out");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "web-0 (i-0test at {addr}): last seen: port open, no SSH banner"
            )),
            "{text}"
        );
        assert!(text.starts_with("sshd did not answer within 1s"), "{text}");

        let mut via_config = s.clone();
        via_config.file.ssh.config_file = Some(unspanned("ssh_config".into()));
        wait_for_sshd(&via_config, &pairs, &Seen::default())
            .await
            .expect("not probed");
    }
}
