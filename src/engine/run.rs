//! `plan`, `up`, `down` and `heal` for every provider, as one flow:
//! lock → observe (cloud and hosts) → one [`Plan`] → (approve) → walk → save → report.
//!
//! [`open`] takes the stack's lock (not for a hosts stack's `plan`, which writes nothing),
//! observes both layers and makes the plan; the command shows it and asks; [`Session::apply`]
//! walks it (`engine::graph`) with the AWS provider for the cloud layer and the hosts provider
//! for the host layer. A cloud stack's host layer is planned twice: once with the outputs as
//! they are (new instances' files "(known after apply)") so `plan` shows everything `up` does,
//! and again after the cloud layer is applied, with the outputs it produced.
//! The instances hactl configured before are observed over SSH while the cloud layer is read
//! (both are mostly waiting), so a `plan` with nothing to do costs about the longer of the two.
//! [`Session::close`] releases the lock on every path.

use std::time::Duration;

use serde::Serialize;

use super::cloud::{self, Cloud, Op};
use super::graph::{self, Walked};
use super::hooks::Hooks;
use super::layers::{self, HostLayer, Mount};
use super::saved::Basis;
use super::target::Targets;
use super::Mode;
use crate::plan::{Addr, Plan};
use crate::provider::aws::hosts as aws_hosts;
use crate::provider::aws::outputs::host_name;
use crate::provider::hosts::HostReport;
use crate::stack::Stack;
use crate::state::{Backend, LockGuard, State, StateError};
use crate::vault::{self, Secrets};

/// Which command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Plan,
    Up,
    Down,
    Heal,
}

/// Settings of a run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How long to wait for another run's lock.
    pub lock_wait: Duration,
    /// How many cloud resources are changed at once.
    pub parallelism: usize,
    /// A cloud stack: the cloud layer only (no SSH).
    pub provision_only: bool,
    pub targets: Targets,
    /// The plan is being saved (`plan -o`): a hosts stack's digest key is created now, so
    /// the plan made again at `up` shows the same digests.
    pub save: bool,
    /// A plan that deletes or replaces a database or file system may be applied
    /// (`--allow-data-loss`); without it such a plan is refused ([`Session::refusal`]).
    pub allow_data_loss: bool,
}

/// An open run: the lock, what was observed, and the plan made from it.
pub struct Session {
    pub stack: Stack,
    pub command: Command,
    backend: Backend,
    guard: Option<LockGuard>,
    cloud: Option<Cloud>,
    layer: Option<HostLayer>,
    secrets: Option<Secrets>,
    pub plan: Plan,
    /// Hosts in stack order, for the view.
    pub host_order: Vec<String>,
    /// `heal` of a cloud stack: differences that are not repairs (left alone).
    pub not_repairs: Option<usize>,
    /// `down` of a cloud stack: recorded, gone from AWS.
    pub not_found: std::collections::BTreeMap<String, String>,
    /// What the plan was made from (for saved plans).
    pub basis: Basis,
    opts: Options,
}

/// How an apply ended, as the JSON document says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    #[default]
    NoChanges,
    Failed,
}

/// What an apply did.
#[derive(Debug, Default, Serialize)]
pub struct Applied {
    pub outcome: Outcome,
    pub walked: Walked,
    /// A cloud stack: the host layer as planned again once the cloud layer was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_plan: Option<Plan>,
    pub hosts: Vec<HostReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub outputs: serde_json::Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_errors: Vec<String>,
    /// The stack the hosts were configured as (a cloud stack: its instances), for the wait.
    #[serde(skip)]
    pub configured: Option<Stack>,
    /// A cloud stack: its target group's ARN, for the wait.
    #[serde(skip)]
    pub target_group: Option<String>,
    /// A cloud stack with host configuration, run with `--provision-only`.
    #[serde(skip)]
    pub hosts_skipped: bool,
    /// The first cloud error, whole (code and help).
    #[serde(skip)]
    pub error: Option<miette::Report>,
}

impl Applied {
    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Failed
    }
}

/// Takes the lock for `operation`, saying whom it waits for.
pub async fn lock(
    backend: &Backend,
    operation: &str,
    wait: Duration,
    hooks: &dyn Hooks,
) -> miette::Result<LockGuard> {
    match backend.lock(operation, Duration::ZERO).await {
        Err(StateError::Locked { holder, .. }) if !wait.is_zero() => {
            hooks.warning(&format!(
                "waiting for the stack lock held by {holder} (up to {})",
                crate::stack::duration::Dur(wait)
            ));
            Ok(backend.lock(operation, wait).await?)
        }
        r => Ok(r?),
    }
}

/// Locks, observes both layers and plans `command`.
pub async fn open(
    stack: &Stack,
    command: Command,
    opts: &Options,
    hooks: &dyn Hooks,
) -> miette::Result<Session> {
    let aws = cloud::is_aws(stack);
    let backend = Backend::for_stack(stack).await?;
    let guard = if command == Command::Plan && !aws {
        None
    } else {
        let op = match command {
            Command::Plan => "plan",
            Command::Up => "up",
            Command::Down => "down",
            Command::Heal => "heal",
        };
        Some(lock(&backend, op, opts.lock_wait, hooks).await?)
    };
    let mut s = Session {
        stack: stack.clone(),
        command,
        backend,
        guard,
        cloud: None,
        layer: None,
        secrets: None,
        plan: Plan::default(),
        host_order: Vec::new(),
        not_repairs: None,
        not_found: Default::default(),
        basis: Basis::default(),
        opts: opts.clone(),
    };
    match s.observe_and_plan(hooks).await {
        Ok(()) => Ok(s),
        Err(e) => {
            s.close().await;
            Err(e)
        }
    }
}

impl Session {
    fn mode(&self) -> Mode {
        if self.command == Command::Down {
            Mode::Down
        } else {
            Mode::Up
        }
    }

    fn op(&self) -> Op {
        match self.command {
            Command::Down => Op::Down,
            Command::Heal => Op::Heal,
            Command::Plan | Command::Up => Op::Up,
        }
    }

    /// A cloud stack configures its instances (unless `--provision-only` or `down`).
    fn cloud_hosts_wanted(&self) -> bool {
        !self.opts.provision_only
            && self.command != Command::Down
            && aws_hosts::has_host_config(&self.stack)
    }

    async fn observe_and_plan(&mut self, hooks: &dyn Hooks) -> miette::Result<()> {
        let stack = self.stack.clone();
        let mut changes = Vec::new();
        let mut noop = 0;
        let mut failures = Vec::new();
        let mut state_basis: Option<(String, u64)> = None;
        if cloud::is_aws(&stack) {
            // The instances hactl configured before are observed over SSH while the cloud
            // layer is read: both are mostly waiting (on AWS, on the hosts).
            let secrets = self
                .cloud_hosts_wanted()
                .then(|| vault::open_checked(&stack))
                .transpose()?;
            let (c, early) = tokio::join!(
                cloud::observe(&stack, &self.backend, self.op()),
                observe_pinned(&stack, &self.backend, secrets.as_ref(), hooks),
            );
            let (c, early) = match (c, early) {
                (Ok(c), Ok(e)) => (c, e),
                (Err(err), e) => {
                    if let Ok(Some((_, l))) = e {
                        l.close().await;
                    }
                    return Err(err);
                }
                (Ok(_), Err(err)) => return Err(err),
            };
            let cp = c.plan(&stack, self.op());
            state_basis = Some((c.state.lineage.clone(), c.state.serial));
            changes.extend(cp.plan.changes);
            noop += cp.plan.summary.noop;
            self.not_repairs = cp.not_repairs;
            self.not_found = cp.not_found;
            if let Some(secrets) = secrets {
                // Instances that exist and stay: observed; the others: known after apply.
                let moving: Vec<String> = changes
                    .iter()
                    .filter(|c| c.action != crate::plan::Action::Update)
                    .filter(|c| matches!(&c.addr, Addr::Resource { kind, .. } if kind == "aws_instance"))
                    .map(|c| host_name(&c.addr.to_string()))
                    .collect();
                let (existing, mut st) = pinned(&stack, &c.state, &moving);
                let later: Vec<String> = c
                    .wanted_hosts(&stack)
                    .into_iter()
                    .filter(|n| !existing.contains(n))
                    .collect();
                // What was observed early is kept when it is exactly these instances (the
                // usual case); a replaced instance is observed again without it.
                let layer = match early {
                    Some((names, l)) if names == existing => Some(l),
                    Some((_, l)) => {
                        l.close().await;
                        None
                    }
                    None => None,
                };
                let layer = match layer {
                    Some(l) => Some(l),
                    None if existing.is_empty() => None,
                    None => Some(
                        HostLayer::of_instances(&stack, &mut st, &secrets, false, hooks).await?,
                    ),
                };
                if let Some(layer) = layer {
                    let hp = layer.plan(Mode::Up);
                    noop += hp.summary.noop;
                    failures.extend(hp.failed_hosts.clone());
                    changes.extend(hp.changes);
                    self.host_order.extend(layer.host_order());
                    self.layer = Some(layer);
                }
                changes.extend(layers::known_after_apply(
                    &stack,
                    &later,
                    &secrets,
                    &c.state.outputs,
                ));
                self.host_order.extend(later);
                self.secrets = Some(secrets);
            }
            self.cloud = Some(c);
        } else {
            let secrets = vault::open_checked(&stack)?;
            let mut layer = HostLayer::of_hosts(&stack, &secrets).await?;
            // `up`/`down` (and a plan that is saved) key the digests with the state's key.
            if self.command != Command::Plan || self.opts.save {
                layer.observed.digest_key = crate::state::digest_key(&stack, true).await;
            }
            let hp = layer.plan(self.mode());
            noop += hp.summary.noop;
            failures.extend(hp.failed_hosts);
            changes.extend(hp.changes);
            self.host_order = layer.host_order();
            self.layer = Some(layer);
            self.secrets = Some(secrets);
            if let Ok(Some(st)) = self.backend.read(stack.name()).await {
                state_basis = Some((st.lineage, st.serial));
            }
        }
        let mut plan = Plan::new(stack.name(), changes, noop, failures);
        graph::assign_waves(&mut plan);
        if !self.opts.targets.is_empty() {
            self.opts.targets.narrow(&mut plan);
            hooks.warning(&self.opts.targets.warning());
        }
        self.basis = Basis::of(
            &stack,
            state_basis,
            self.cloud.as_ref(),
            self.layer.as_ref(),
        );
        self.plan = plan;
        hooks.planned(&self.plan);
        Ok(())
    }

    /// The plan destroys data and the run does not allow it (`--allow-data-loss`): the error
    /// to show after the plan, before anything is asked or changed.
    pub fn refusal(&self) -> miette::Result<()> {
        Ok(cloud::refuse_data_loss(
            &self.plan,
            self.opts.allow_data_loss,
        )?)
    }

    /// Applies the plan: the cloud layer, then (a cloud stack) the host layer planned again
    /// with the new outputs, and the EFS mount step. A plan [`Session::refusal`] refuses is
    /// not applied.
    pub async fn apply(&mut self, hooks: &dyn Hooks) -> miette::Result<Applied> {
        self.refusal()?;
        let mut applied = Applied::default();
        let parallelism = self.opts.parallelism.max(1);
        let mut failed = !self.plan.failed_hosts.is_empty();
        if let Some(c) = self.cloud.take() {
            let cloud_plan = Plan::new(
                self.stack.name(),
                self.plan.resources().cloned().collect(),
                0,
                Vec::new(),
            );
            let st = {
                let mut aws =
                    cloud::Aws::start(&self.stack, &self.backend, c, &cloud_plan, self.op())
                        .await?;
                if self.cloud_hosts_wanted() {
                    let secrets = self.secrets.clone().unwrap_or_default();
                    aws.rolled_hosts = Some((self.stack.clone(), secrets));
                }
                applied.walked = graph::walk(&cloud_plan, &aws, parallelism, hooks).await;
                let st = aws.finish(&self.stack, hooks).await?;
                applied.state_errors = std::mem::take(&mut *aws.save_errors.lock().await);
                applied.error = aws.errors.lock().await.drain(..).next();
                st
            };
            failed |= !applied.walked.ok() || !applied.state_errors.is_empty();
            applied.target_group = st
                .resources
                .get(crate::provider::aws::desired::TG)
                .map(|r| r.id.clone());
            applied.outputs = st.outputs.clone();
            applied.hosts_skipped = self.opts.provision_only
                && self.command != Command::Down
                && aws_hosts::has_host_config(&self.stack);
            if !failed && self.cloud_hosts_wanted() {
                self.configure_instances(st, &mut applied, hooks).await?;
                failed |= applied.failed();
            }
        } else if let Some(layer) = &self.layer {
            let host_plan = self.plan.clone();
            let secrets = self.secrets.clone().unwrap_or_default();
            let (w, reports) = layers::walk_hosts(
                layer,
                &host_plan,
                self.mode(),
                &secrets,
                layer.stack.file.ssh.parallelism,
                hooks,
            )
            .await;
            failed |= !w.ok();
            applied.hosts = reports;
            applied.walked = w;
            applied.configured = Some(layer.stack.clone());
        }
        applied.outcome = match (
            failed,
            self.plan.has_changes() || applied.host_plan.as_ref().is_some_and(Plan::has_changes),
        ) {
            (true, _) => Outcome::Failed,
            (false, true) => Outcome::Applied,
            (false, false) => Outcome::NoChanges,
        };
        Ok(applied)
    }

    /// The host layer of a cloud stack, after its cloud layer: pin new instances' keys, render
    /// with the new outputs, observe, plan, apply, mount.
    async fn configure_instances(
        &mut self,
        mut st: State,
        applied: &mut Applied,
        hooks: &dyn Hooks,
    ) -> miette::Result<()> {
        if let Some(old) = self.layer.take() {
            old.close().await;
        }
        let secrets = self.secrets.clone().unwrap_or_default();
        let layer = HostLayer::of_instances(&self.stack, &mut st, &secrets, true, hooks).await?;
        self.backend.write(&mut st).await?;
        hooks.state_saved(st.serial);
        let mut plan = layer.plan(Mode::Up);
        graph::assign_waves(&mut plan);
        if !self.opts.targets.is_empty() {
            self.opts.targets.narrow(&mut plan);
        }
        hooks.planned(&plan);
        let (w, reports) = layers::walk_hosts(
            &layer,
            &plan,
            Mode::Up,
            &secrets,
            layer.stack.file.ssh.parallelism,
            hooks,
        )
        .await;
        applied.hosts = reports;
        let mut failed = !w.ok() || !plan.failed_hosts.is_empty();
        applied.mounts = layers::mount_efs(&self.stack, &layer, &st.outputs).await;
        failed |= applied
            .mounts
            .iter()
            .any(|m| matches!(m.mount, aws_hosts::MountOutcome::Failed(_)));
        applied.configured = Some(layer.stack.clone());
        applied.host_plan = Some(plan);
        if failed {
            applied.outcome = Outcome::Failed;
        }
        self.layer = Some(layer);
        Ok(())
    }

    /// Closes the connections and releases the lock.
    pub async fn close(mut self) {
        if let Some(l) = self.layer.take() {
            l.close().await;
        }
        if let Some(g) = self.guard.take() {
            g.release().await;
        }
    }
}

/// The instances of a cloud stack's state that hactl may contact, minus `moving` (replaced or
/// created by this plan), and the state with only those in its outputs. Only instances hactl
/// configured before are contacted: their host keys are pinned (or the stack names its own
/// known_hosts). Any other address is not known to be this stack's host yet, and is not
/// connected to before `up`.
fn pinned(stack: &Stack, state: &State, moving: &[String]) -> (Vec<String>, State) {
    let own_keys = stack.file.ssh.known_hosts.is_some();
    let existing: Vec<String> = aws_hosts::instances(&state.outputs)
        .into_iter()
        .filter(|i| own_keys || state.host_keys.contains_key(&i.instance_id))
        .map(|i| i.name)
        .filter(|n| !moving.contains(n))
        .collect();
    let mut st = state.clone();
    if let Some(hs) = st.outputs["hosts"].as_array_mut() {
        hs.retain(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| existing.iter().any(|e| e == n))
        });
    }
    (existing, st)
}

/// The pinned instances as the state records them, rendered and observed (None: hosts are not
/// configured by this run, no state yet, or no such instance): started beside the cloud read.
async fn observe_pinned(
    stack: &Stack,
    backend: &Backend,
    secrets: Option<&Secrets>,
    hooks: &dyn Hooks,
) -> miette::Result<Option<(Vec<String>, HostLayer)>> {
    let Some(secrets) = secrets else {
        return Ok(None);
    };
    let Some(state) = backend.read(stack.name()).await? else {
        return Ok(None);
    };
    let (existing, mut st) = pinned(stack, &state, &[]);
    if existing.is_empty() {
        return Ok(None);
    }
    let layer = HostLayer::of_instances(stack, &mut st, secrets, false, hooks).await?;
    Ok(Some((existing, layer)))
}
