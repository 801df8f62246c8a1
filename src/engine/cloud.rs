//! The cloud layer of a `provider: aws` stack: read what the stack owns (the state's ids, then
//! the ownership tags) while the account answers what only it knows, diff (pure, in
//! `provider::aws::diff`), and carry the plan's resource changes out through the AWS provider
//! one task at a time (`engine::graph` orders them), saving the state after each one.
//!
//! The boundary with the provider is narrow on purpose (the provider's files are being split
//! into one file per resource kind): this file uses `observe::observe`,
//! `observe::instance_status`, `preflight::check`, `diff::{diff, destroy, repairs,
//! salt_relaunches}`, `diff::Step` (carried as each change's payload, see
//! [`diff::Step::to_change`]), `apply::{apply, Ctx, Event}` and `outputs::outputs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use tokio::sync::Mutex;

use super::graph::{Provider, Task};
use super::hooks::Hooks;
use crate::plan::{Action, Plan};
use crate::provider::aws::apply::{self, Ctx, Event};
use crate::provider::aws::client::Clients;
use crate::provider::aws::diff::{self, Step};
use crate::provider::aws::model::{Observed, Recorded, ResKind};
use crate::provider::aws::{desired, observe, outputs, preflight, AwsError};
use crate::stack::model::ProviderKind;
use crate::stack::Stack;
use crate::state::{Backend, ResourceState, State};
use crate::vault;

/// How often a cloud change that is still running reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Which run the cloud layer plans for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Up,
    Down,
    /// Repairs only ([`diff::repairs`]).
    Heal,
}

pub fn is_aws(stack: &Stack) -> bool {
    stack.file.provider.value == ProviderKind::Aws
}

pub fn region(stack: &Stack) -> String {
    stack
        .file
        .aws
        .as_ref()
        .map(|a| a.region.value.clone())
        .unwrap_or_else(|| "us-east-1".into())
}

fn given_subnets(stack: &Stack) -> Vec<String> {
    stack
        .file
        .aws
        .as_ref()
        .and_then(|a| a.network.subnet_ids.clone())
        .unwrap_or_default()
}

/// What the state recorded, as `observe` reads it first (by id, before tags).
pub fn recorded(st: &State) -> Recorded {
    st.resources
        .iter()
        .filter_map(|(addr, r)| {
            let kind = ResKind::from_type_name(&r.kind)?;
            Some((addr.clone(), (kind, r.id.clone())))
        })
        .collect()
}

/// Reads everything this stack owns: what the state recorded (by id), then what carries its
/// tags.
pub async fn read(stack: &Stack, clients: &Clients, st: &State) -> miette::Result<Vec<Observed>> {
    Ok(observe::observe(clients, stack.name(), &given_subnets(stack), &recorded(st)).await?)
}

/// The state's resources and outputs, rebuilt from what was observed.
/// Of two resources at one address (a duplicate not deleted yet), the first as observed is
/// kept, as the diff keeps it: the one the state recorded, else the oldest.
pub fn record(st: &mut State, observed: &[Observed]) {
    st.resources = observed
        .iter()
        .rev()
        .map(|o| {
            (
                o.res.addr.clone(),
                ResourceState {
                    kind: o.res.kind.type_name().to_string(),
                    id: o.id.clone(),
                },
            )
        })
        .collect();
    st.outputs = outputs::outputs(observed);
}

/// What the cloud layer knows before planning: the state as read, the account's answers and
/// every resource the stack owns.
pub struct Cloud {
    pub clients: Clients,
    pub state: State,
    pub observed: Vec<Observed>,
    pub account: preflight::Account,
    /// The hosts' public key (`aws.hosts.public_key`), resolved (None for `down`).
    pub key: Option<vault::Secret>,
}

/// The cloud layer's share of a plan, and what the report says beside it.
pub struct CloudPlan {
    pub plan: Plan,
    /// `heal`: differences `up` would make that are not repairs (left alone).
    pub not_repairs: Option<usize>,
    /// `down`: what the state recorded that AWS no longer has, as `{addr: id}`.
    pub not_found: BTreeMap<String, String>,
}

/// Reads the cloud layer under the caller's lock. `down` asks the account nothing (it creates
/// nothing); `heal` also reads the instances' EC2 status checks.
pub async fn observe(stack: &Stack, backend: &Backend, op: Op) -> miette::Result<Cloud> {
    let name = stack.name();
    let state = backend
        .read(name)
        .await?
        .unwrap_or_else(|| State::new(name));
    let clients = Clients::new(&region(stack)).await;
    // What only the account knows is asked first: a refusal names the stack key.
    let (account, observed) = tokio::join!(
        async {
            if op == Op::Down {
                Ok(preflight::Account::default())
            } else {
                preflight::check(&clients, stack).await
            }
        },
        read(stack, &clients, &state)
    );
    let (account, mut observed) = (account?, observed?);
    if op == Op::Heal {
        observe::instance_status(&clients, &mut observed).await?;
    }
    let key = if op == Op::Down {
        None
    } else {
        public_key(stack)?
    };
    Ok(Cloud {
        clients,
        state,
        observed,
        account,
        key,
    })
}

impl Cloud {
    /// The plan of the cloud layer (pure: from what was observed).
    pub fn plan(&self, stack: &Stack, op: Op) -> CloudPlan {
        let inputs = desired::Inputs {
            public_key: self.key.as_ref().map(|k| k.expose()),
            vpc_cidrs: self.account.vpc_cidrs.as_deref(),
        };
        let last_ids: BTreeMap<String, String> = self
            .state
            .resources
            .iter()
            .map(|(a, r)| (a.clone(), r.id.clone()))
            .collect();
        let mut not_repairs = None;
        let d = match op {
            Op::Down => diff::destroy(&self.observed),
            Op::Up => {
                let mut d = diff::diff(&desired::desired(&stack.file, &inputs), &self.observed);
                diff::salt_relaunches(&mut d, &last_ids);
                d
            }
            Op::Heal => {
                let r = diff::repairs(
                    &desired::desired(&stack.file, &inputs),
                    &self.observed,
                    &last_ids,
                );
                not_repairs = Some(r.others);
                r.diff
            }
        };
        let not_found = if op == Op::Down {
            self.state
                .resources
                .iter()
                .filter(|(a, _)| !self.observed.iter().any(|o| &o.res.addr == *a))
                .map(|(a, r)| (a.clone(), r.id.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        CloudPlan {
            plan: d.plan(stack.name()),
            not_repairs,
            not_found,
        }
    }

    /// The names (`web-0`, …) of the instances the stack wants, in index order.
    pub fn wanted_hosts(&self, stack: &Stack) -> Vec<String> {
        let inputs = desired::Inputs {
            public_key: self.key.as_ref().map(|k| k.expose()),
            vpc_cidrs: self.account.vpc_cidrs.as_deref(),
        };
        desired::desired(&stack.file, &inputs)
            .iter()
            .filter(|r| r.kind == ResKind::Instance)
            .map(|r| outputs::host_name(&r.addr))
            .collect()
    }
}

/// The AWS provider as the engine's walker sees it: each task is one resource's change (or
/// half of a replace); after each, the state records the id the address has now and is saved.
pub struct Aws<'b> {
    ctx: Arc<Ctx>,
    backend: &'b Backend,
    pub state: Mutex<State>,
    /// The AWS errors, kept whole (code and help) for the report.
    pub errors: Mutex<Vec<AwsError>>,
    pub save_errors: Mutex<Vec<String>>,
}

impl<'b> Aws<'b> {
    /// The provider for applying `plan` (`op`) with what `cloud` observed.
    pub fn new(
        stack: &Stack,
        backend: &'b Backend,
        cloud: Cloud,
        plan: &Plan,
        op: Op,
    ) -> miette::Result<Aws<'b>> {
        let db_credentials = if plan.resources().next().is_some() && op == Op::Up {
            db_credentials(stack)?
        } else {
            None
        };
        let ctx = Arc::new(Ctx {
            c: cloud.clients.clone(),
            stack: stack.name().to_string(),
            lineage: cloud.state.lineage.clone(),
            root_volume_gb: stack
                .file
                .aws
                .as_ref()
                .map(|a| a.hosts.root_volume_gb.value as i32)
                .unwrap_or(20),
            db_credentials,
            public_key: cloud.key,
            wait_timeout: Duration::from_secs(
                std::env::var("HACTL_AWS_WAIT_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1800),
            ),
            timeouts: stack
                .file
                .aws
                .as_ref()
                .map(|a| crate::provider::aws::wait::Timeouts::from_spec(&a.timeouts))
                .unwrap_or_default(),
            ids: Mutex::new(
                cloud
                    .observed
                    .iter()
                    .rev() // the first of duplicates wins
                    .map(|o| (o.res.addr.clone(), o.id.clone()))
                    .collect(),
            ),
        });
        Ok(Aws {
            ctx,
            backend,
            state: Mutex::new(cloud.state),
            errors: Mutex::new(Vec::new()),
            save_errors: Mutex::new(Vec::new()),
        })
    }

    /// Re-reads what exists now: the state and outputs describe AWS as it is, not as
    /// planned. Returns the state as saved.
    pub async fn finish(&self, stack: &Stack, hooks: &dyn Hooks) -> miette::Result<State> {
        let mut st = self.state.lock().await;
        let after = read(stack, &self.ctx.c, &st).await?;
        record(&mut st, &after);
        self.backend.write(&mut st).await?;
        hooks.state_saved(st.serial);
        Ok(st.clone())
    }
}

impl Provider for Aws<'_> {
    fn run<'a>(
        &'a self,
        task: &'a Task<'a>,
        hooks: &'a dyn Hooks,
    ) -> LocalBoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(c) = task.changes.first() else {
                return Ok(());
            };
            let Some(step) = c.payload.get::<Step>() else {
                return Err(format!("`{}` has no AWS step to apply", c.addr));
            };
            // One half at a time: the walker orders the halves of a replace.
            let mut step = step.clone();
            step.change.action = match (task.deleting, step.change.action) {
                (true, _) => Action::Delete,
                (false, Action::Replace) => Action::Create,
                (false, a) => a,
            };
            let on_event = |ev: Event| async move {
                match &ev {
                    Event::Started { addr, action } => {
                        tracing::debug!(%addr, ?action, "aws: started")
                    }
                    Event::Failed { addr, error } => tracing::debug!(%addr, %error, "aws: failed"),
                    Event::Done {
                        addr,
                        action,
                        elapsed,
                        ..
                    } => {
                        tracing::debug!(%addr, ?action, ?elapsed, "aws: done")
                    }
                }
                if let Event::Done { addr, id, kind, .. } = ev {
                    let mut st = self.state.lock().await;
                    match id {
                        Some(id) => {
                            st.resources.insert(
                                addr,
                                ResourceState {
                                    kind: kind.type_name().into(),
                                    id,
                                },
                            );
                        }
                        None => {
                            st.resources.remove(&addr);
                        }
                    }
                    match self.backend.write(&mut st).await {
                        Ok(()) => hooks.state_saved(st.serial),
                        Err(e) => self.save_errors.lock().await.push(e.to_string()),
                    }
                }
            };
            // A long wait (a database creating for minutes) says what it waits for, and for
            // how long, every few seconds.
            let addr = c.addr.to_string();
            let status = match step.change.action {
                Action::Delete => "deleting",
                Action::Update => "updating",
                _ => "creating",
            };
            let t0 = std::time::Instant::now();
            let work = apply::apply(self.ctx.clone(), std::slice::from_ref(&step), 1, on_event);
            tokio::pin!(work);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            let errors = loop {
                tokio::select! {
                    r = &mut work => break r,
                    _ = tick.tick() => hooks.progress(&addr, status, t0.elapsed()),
                }
            };
            match errors.into_iter().next() {
                None => Ok(()),
                Some(e) => {
                    let text = e.to_string();
                    self.errors.lock().await.push(e);
                    Err(text)
                }
            }
        })
    }
}

/// The hosts' public key (`aws.hosts.public_key`), inline or from the vault.
pub fn public_key(stack: &Stack) -> miette::Result<Option<vault::Secret>> {
    let Some(v) = stack
        .file
        .aws
        .as_ref()
        .and_then(|a| a.hosts.public_key.as_ref())
    else {
        return Ok(None);
    };
    let secrets = vault::open(stack)?;
    let key = secrets
        .resolve(&v.value)
        .ok_or_else(|| AwsError::PublicKey("aws.hosts.public_key".into()))?;
    Ok(Some(key))
}

/// The RDS master credentials, resolved from the stack (inline or from the vault).
fn db_credentials(stack: &Stack) -> miette::Result<Option<(vault::Secret, vault::Secret)>> {
    let Some(db) = stack.file.aws.as_ref().and_then(|a| a.database.as_ref()) else {
        return Ok(None);
    };
    let secrets = vault::open(stack)?;
    let user = secrets
        .resolve(&db.username.value)
        .ok_or_else(|| AwsError::Credentials("database.username".into()))?;
    let pass = secrets
        .resolve(&db.password.value)
        .ok_or_else(|| AwsError::Credentials("database.password".into()))?;
    Ok(Some((user, pass)))
}
