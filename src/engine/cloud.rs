//! The cloud layer of a `provider: aws` stack: read what the stack owns (the state's ids, then
//! the ownership tags) while the account answers what only it knows, diff (pure, in
//! `provider::aws::diff`), and carry the plan's resource changes out through the AWS provider
//! one task at a time (`engine::graph` orders them), saving the state after each one.
//!
//! The boundary with the provider is narrow on purpose (the provider's files are being split
//! into one file per resource kind): this file uses `observe::observe`,
//! `observe::instance_status`, `preflight::check`, `diff::{diff, destroy, repairs,
//! salt_relaunches, refuse_data_loss}`, `diff::Step` (carried as each change's payload, see
//! [`diff::Step::to_change`]), `apply::{run_step, verb, creates, token, Roll, Phase, Ctx,
//! Event}` and `outputs::outputs`.
//!
//! The journal (`engine::journal`): before each cloud mutation the intent (address, action,
//! idempotency token) is appended, after it the result; [`Aws::start`] adopts what a killed run
//! left in flight, and a create's token comes from the journal (never resent once answered).
//!
//! Data safety: a plan whose changes destroy data (a database or file system deleted or
//! replaced, [`crate::plan::Change::destroys_data`]) is refused by [`refuse_data_loss`] unless
//! the run allows it (`--allow-data-loss`), before anything is asked or changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use tokio::sync::Mutex;

use super::graph::{Provider, Task};
use super::hooks::Hooks;
use super::journal;
use crate::plan::{Action, Plan};
use crate::provider::aws::apply::{self, Ctx, Event, Phase, Roll};
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

/// The plan's changes that destroy data, refused unless `allowed` (`--allow-data-loss`): the
/// error lists each with its reason ([`diff::DataLoss`]).
pub fn refuse_data_loss(plan: &Plan, allowed: bool) -> Result<(), diff::DataLoss> {
    diff::refuse_data_loss(plan.resources(), allowed)
}

/// The AWS provider as the engine's walker sees it: each task is one resource's change (or
/// half of a replace); after each, the state records the id the address has now and is saved.
pub struct Aws<'b> {
    ctx: Arc<Ctx>,
    /// This run's side of the journal.
    journal: journal::Run,
    /// The target groups the run's rolled instances move between.
    roll: Roll,
    backend: &'b Backend,
    pub state: Mutex<State>,
    /// The AWS (and journal) errors, kept whole (code and help) for the report.
    pub errors: Mutex<Vec<miette::Report>>,
    pub save_errors: Mutex<Vec<String>>,
}

impl<'b> Aws<'b> {
    /// The provider for applying `plan` (`op`) with what `cloud` observed. Reads the journal
    /// first and adopts what a killed run left in flight ([`journal::Run::start`]).
    pub async fn start(
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
            status: Mutex::new(BTreeMap::new()),
        });
        let steps: Vec<Step> = plan
            .resources()
            .filter_map(|c| c.payload.get::<Step>())
            .cloned()
            .collect();
        let journal = journal::Run::start(stack.name()).await?;
        Ok(Aws {
            ctx,
            journal,
            roll: Roll::of(&steps),
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
            // One half at a time: the walker orders the halves of a replace (a rolled one is
            // one task, see `Order::Rolled`).
            let phase = match (task.deleting, task.late) {
                (true, false) => Phase::Delete,
                (true, true) => Phase::Cleanup,
                (false, _) => Phase::Forward,
            };
            let rolled = c.order == crate::plan::Order::Rolled;
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
            let status = match (phase, step.change.action) {
                (Phase::Delete | Phase::Cleanup, _) => "deleting",
                (_, Action::Update) => "updating",
                (_, Action::Replace) if rolled => "replacing",
                _ => "creating",
            };
            let t0 = std::time::Instant::now();
            self.ctx.status.lock().await.remove(&addr);
            // The journal first: the intent is on disk before the call is sent.
            let verb = apply::verb(step, phase);
            let token = apply::creates(step, phase)
                .then(|| self.journal.token(&apply::token(&self.ctx, step), &addr));
            let intent = journal::Event::Intent;
            if let Err(e) = self
                .journal
                .note(&addr, verb, intent, token.clone(), None, None)
                .await
            {
                let text = e.to_string();
                self.errors.lock().await.push(e.into());
                return Err(text);
            }
            let work = apply::run_step(
                &self.ctx,
                step,
                phase,
                rolled,
                &self.roll,
                token.as_deref(),
                on_event,
            );
            tokio::pin!(work);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            let errors = loop {
                tokio::select! {
                    r = &mut work => break r,
                    _ = tick.tick() => {
                        // What AWS says it is (`backing-up`), else what hactl is doing.
                        let aws = self.ctx.status.lock().await.get(&addr).cloned();
                        hooks.progress(&addr, aws.as_deref().unwrap_or(status), t0.elapsed());
                    }
                }
            };
            let noted = match &errors {
                Ok(id) => {
                    let done = journal::Event::Done;
                    self.journal
                        .note(&addr, verb, done, None, id.clone(), None)
                        .await
                }
                Err(e) => {
                    let failed = journal::Event::Failed;
                    let error = Some(e.to_string());
                    self.journal
                        .note(&addr, verb, failed, None, None, error)
                        .await
                }
            };
            let e: miette::Report = match (errors, noted) {
                (Ok(_), Ok(())) => return Ok(()),
                (Err(e), _) => e.into(),
                (Ok(_), Err(e)) => e.into(),
            };
            let text = e.to_string();
            self.errors.lock().await.push(e);
            Err(text)
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

#[cfg(test)]
mod tests {
    //! The order the walk gives a cloud plan (`engine::graph` over the changes
    //! `provider::aws::diff` makes), for the replacements issue 12 §2 names.

    use super::super::graph::{self, tests::Fake};
    use super::super::hooks::Silent;
    use crate::plan::{Action, Order, Plan};
    use crate::provider::aws::diff;
    use crate::provider::aws::fixture::{observed, resources};
    use crate::provider::aws::model::{ResKind, Resource};

    /// A task as the fake provider logs it: `-addr` for a delete half.
    fn tag(t: &graph::Task) -> String {
        if t.deleting {
            format!("-{}", t.label)
        } else {
            t.label.clone()
        }
    }

    /// The tasks `label` waits for in the walk of `plan`, sorted.
    fn waits_for(plan: &Plan, label: &str) -> Vec<String> {
        let (ts, pre) = graph::tasks(plan);
        let i = ts
            .iter()
            .position(|t| tag(t) == label)
            .unwrap_or_else(|| panic!("no task {label}"));
        let mut v: Vec<String> = pre[i].iter().map(|&j| tag(&ts[j])).collect();
        v.sort();
        v
    }

    fn order_of(plan: &Plan, addr: &str) -> (Action, Order) {
        let c = plan
            .resources()
            .find(|c| c.addr.to_string() == addr)
            .unwrap_or_else(|| panic!("no change for {addr}"));
        (c.action, c.order)
    }

    /// The order the fake provider ran the tasks in.
    async fn walked(plan: &Plan) -> Vec<String> {
        let fake = Fake::default();
        let w = graph::walk(plan, &fake, 4, &Silent).await;
        assert!(w.ok(), "{w:?}");
        let log = fake.log.lock().map(|l| l.clone()).unwrap_or_default();
        log
    }

    fn pos(log: &[String], x: &str) -> usize {
        log.iter()
            .position(|l| l == x)
            .unwrap_or_else(|| panic!("{x} did not run: {log:?}"))
    }

    /// Issue 12 §2: a `target_port` change replaces the target group create-before-destroy:
    /// nothing is deleted first; the new group is created, the listener repointed and the
    /// targets registered, and only then is the old group (and its registration) deleted. On
    /// main the old group's delete came first and AWS answered `ResourceInUse` for 30 minutes.
    #[tokio::test]
    async fn target_port_change_creates_the_new_group_before_deleting_the_old() {
        let have = observed(&resources(|s| s));
        let want = resources(|s| s.replace("kind: alb\n", "kind: alb\n    target_port: 8080\n"));
        let plan = diff::diff(&want, &have).plan("web3");
        let tg = "aws_lb_target_group.web";
        let att = "aws_lb_target_group_attachment.web";
        assert_eq!(order_of(&plan, tg), (Action::Replace, Order::CreateFirst));
        assert_eq!(order_of(&plan, att), (Action::Replace, Order::CreateFirst));
        let (ts, _) = graph::tasks(&plan);
        assert!(
            ts.iter().all(|t| !t.deleting || t.late),
            "nothing goes first"
        );
        assert_eq!(
            waits_for(&plan, "aws_lb_listener.port_80"),
            [tg],
            "the listener is repointed once the new group exists"
        );
        let old = waits_for(&plan, &format!("-{tg}"));
        for w in [
            "aws_lb_listener.port_80".to_string(),
            tg.to_string(),
            att.to_string(),
            format!("-{att}"),
        ] {
            assert!(old.contains(&w), "the old group goes after {w}: {old:?}");
        }
        let log = walked(&plan).await;
        assert!(pos(&log, "aws_lb_listener.port_80") < pos(&log, &format!("-{tg}")));
        assert!(pos(&log, &format!("-{att}")) < pos(&log, &format!("-{tg}")));
        // The two groups coexist for a while: their AWS names differ.
        let name = |rs: &[Resource]| {
            rs.iter()
                .find(|r| r.kind == ResKind::TargetGroup)
                .and_then(|r| r.get("name").map(str::to_string))
        };
        assert_ne!(name(&want), name(&resources(|s| s)));
    }

    /// Issue 12 §2: an instance_type change replaces the instances create-before-destroy, one
    /// at a time (web[1] waits for web[0]); each is one task (launch, register, wait healthy,
    /// deregister, drain, terminate) and nothing is terminated first.
    #[tokio::test]
    async fn instance_type_change_rolls_one_instance_at_a_time() {
        let have = observed(&resources(|s| s));
        let want = resources(|s| s.replace("t2.micro", "t3.small"));
        let plan = diff::diff(&want, &have).plan("web3");
        for a in ["aws_instance.web[0]", "aws_instance.web[1]"] {
            assert_eq!(order_of(&plan, a), (Action::Replace, Order::Rolled));
        }
        let (ts, _) = graph::tasks(&plan);
        assert!(
            ts.iter().all(|t| !t.deleting || t.late),
            "nothing goes first"
        );
        assert!(waits_for(&plan, "aws_instance.web[1]").contains(&"aws_instance.web[0]".into()));
        assert!(!waits_for(&plan, "aws_instance.web[0]").contains(&"aws_instance.web[1]".into()));
        let log = walked(&plan).await;
        assert!(pos(&log, "aws_instance.web[0]") < pos(&log, "aws_instance.web[1]"));
        assert!(
            !log.iter().any(|l| l.starts_with("-aws_instance")),
            "{log:?}"
        );
    }

    /// An instance whose subnet is replaced cannot be made before the old one is gone (the old
    /// subnet cannot go while the old instance is in it): destroy-then-create, as before.
    #[test]
    fn a_replaced_subnet_makes_its_instances_destroy_first() {
        let have = observed(&resources(|s| s));
        let want = resources(|s| s.replace("10.20.1.0/24", "10.20.3.0/24"));
        let plan = diff::diff(&want, &have).plan("web3");
        for a in ["aws_subnet.public[0]", "aws_instance.web[0]"] {
            assert_eq!(order_of(&plan, a), (Action::Replace, Order::DestroyFirst));
        }
        assert!(waits_for(&plan, "-aws_subnet.public[0]").contains(&"-aws_instance.web[0]".into()));
        assert!(waits_for(&plan, "aws_instance.web[0]").contains(&"-aws_subnet.public[0]".into()));
    }

    /// A duplicate (a create retried before its first answer) is removed after the creates and
    /// updates, never before the address's kept resource is in place.
    #[test]
    fn duplicates_are_removed_last() {
        let want = resources(|s| s);
        let mut have = observed(&want);
        let mut dup = have
            .iter()
            .find(|o| o.res.kind == ResKind::TargetGroup)
            .unwrap()
            .clone();
        dup.id = "arn:dup".into();
        have.push(dup);
        // and a listener to create, which the duplicate's delete waits for
        have.retain(|o| o.res.kind != ResKind::Listener);
        let plan = diff::diff(&want, &have).plan("web3");
        let tg = "aws_lb_target_group.web";
        assert_eq!(order_of(&plan, tg), (Action::Delete, Order::CreateFirst));
        let (ts, _) = graph::tasks(&plan);
        assert!(ts.iter().filter(|t| t.deleting).all(|t| t.late), "{ts:?}");
        let dup = waits_for(&plan, &format!("-{tg}"));
        assert!(
            dup.contains(&"aws_lb_listener.port_80".to_string()),
            "the duplicate goes after the creates: {dup:?}"
        );
    }

    /// A task waits for the tasks of what it references, not for a whole wave: the database
    /// does not wait for the load balancer, so the run is as long as its longest chain; `down`
    /// deletes a resource after everything that references it.
    #[test]
    fn a_task_waits_only_for_what_it_references() {
        let want = resources(|s| s);
        let plan = diff::diff(&want, &[]).plan("web3");
        assert_eq!(
            waits_for(&plan, "aws_db_instance.main"),
            ["aws_db_subnet_group.main", "aws_security_group.db"]
        );
        assert_eq!(
            waits_for(&plan, "aws_lb_listener.port_80"),
            ["aws_lb.main", "aws_lb_target_group.web"]
        );
        assert!(waits_for(&plan, "aws_vpc.main").is_empty());

        let down = diff::destroy(&observed(&want)).plan("web3");
        let vpc = waits_for(&down, "-aws_vpc.main");
        for a in [
            "-aws_subnet.public[0]",
            "-aws_security_group.lb",
            "-aws_lb_target_group.web",
        ] {
            assert!(
                vpc.iter().any(|v| v == a),
                "{a} not before the VPC: {vpc:?}"
            );
        }
        assert!(waits_for(&down, "-aws_db_instance.main").is_empty());
    }

    /// Issue 12 §2 data safety: `down` and a `database.name` change destroy data and are
    /// refused unless allowed; an instance replacement is not.
    #[test]
    fn data_loss_is_refused_unless_allowed() {
        let want = resources(|s| s);
        let down = diff::destroy(&observed(&want)).plan("web3");
        let err = super::refuse_data_loss(&down, false).expect_err("down is refused");
        assert_eq!(err.steps.len(), 2, "{:?}", err.steps);
        assert!(super::refuse_data_loss(&down, true).is_ok());
        let renamed =
            resources(|s| s.replace("username: app\n", "username: app\n    name: app2\n"));
        let plan = diff::diff(&renamed, &observed(&want)).plan("web3");
        assert!(super::refuse_data_loss(&plan, false).is_err());
        let retyped = resources(|s| s.replace("t2.micro", "t3.small"));
        let plan = diff::diff(&retyped, &observed(&want)).plan("web3");
        assert!(plan.has_changes());
        assert!(super::refuse_data_loss(&plan, false).is_ok());
    }
}
