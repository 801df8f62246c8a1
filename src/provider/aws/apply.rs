//! The step runner of the AWS provider: one planned change in one [`Phase`] ([`run_step`]),
//! the create-before-destroy roll of an instance between its target groups ([`roll_instance`]),
//! and the idempotency tokens the engine journals ([`token`]). What a change *does* is the
//! kind's ([`super::kinds::Kind`]: create, update, re-tag, delete, each in the kind's own file
//! under `kinds/`); nothing here matches on the kind.
//!
//! The engine's walk (`engine::graph`) decides the order and the parallelism: deletes deepest
//! first, creates and updates after what they reference, create-before-destroy replacements'
//! old halves and duplicates last (the [`crate::plan::Order`] the diff gave each change, see
//! [`super::diff::create_before_destroy`]). The engine's AWS provider (`engine::cloud`) calls
//! [`run_step`] for each task in the [`Phase`] the walk gives it, and saves the state after each.
//!
//! Idempotency: every create carries the ownership tags in the create call itself (EC2
//! TagSpecifications, ELB/RDS/EFS Tags), so a resource never exists untagged and a re-run finds
//! it by tags instead of creating it again; instances also send a ClientToken and file systems
//! a CreationToken derived from the state's lineage and the address, so a create retried by the
//! SDK returns the first one on AWS. Mount targets and listeners are unique by zone / port.
//! The engine journals each step around [`run_step`] (`engine::journal`): the intent before the
//! call, the result after; a run that was killed is adopted by the next one.
//!
//! AWS as it behaves ([`super::wait`], [`super::kinds::shared`]): calls that name a resource of
//! this run retry NotFound while the new id propagates; waits poll with tokio sleeps, treat
//! throttling as pending, end at a failure state with the AWS status, and have per-kind limits
//! (`aws.timeouts`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2::types as elbt;

use crate::plan::Action;

use super::diff::Step;
use super::kinds;
use super::model::{Observed, ResKind, Resource, INFO_RETAG};
use super::wait::{self, call_err, CallError};
use super::AwsError;

pub use super::kinds::Ctx;

/// What happened to one step, for progress and the state.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        addr: String,
        action: Action,
    },
    Done {
        addr: String,
        action: Action,
        /// The id the address has now (None: deleted).
        id: Option<String>,
        kind: ResKind,
        elapsed: Duration,
    },
    Failed {
        addr: String,
        error: String,
    },
}

/// The target groups (addresses) an instance replaced create-before-destroy is moved between:
/// those whose registration (the plan's attachment) lists the instance.
#[derive(Debug, Default, Clone)]
pub struct Roll {
    target_groups: BTreeMap<String, Vec<String>>,
}

impl Roll {
    /// From every step of the plan (the registrations' desired targets).
    pub fn of(steps: &[Step]) -> Roll {
        let mut target_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in steps.iter().filter_map(|s| s.desired.as_ref()) {
            if r.kind != ResKind::TargetAttachment {
                continue;
            }
            let Some(tg) = r.one_ref("target_group") else {
                continue;
            };
            for t in r.refs.get("targets").into_iter().flatten() {
                target_groups
                    .entry(t.clone())
                    .or_default()
                    .push(tg.to_string());
            }
        }
        Roll { target_groups }
    }
}

/// A rolled instance once it runs, before it is registered anywhere: what the host layer needs
/// to reach and configure it ([`Prepare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The address it replaces the old instance at (`aws_instance.web[0]`).
    pub addr: String,
    pub instance_id: String,
    pub private_ip: String,
    pub public_ip: Option<String>,
}

/// What a roll runs between launching the new instance and registering it: the host layer
/// (key pinned, files pushed, services started), so the target group's health checks can pass.
/// An error fails the roll with the old instance still registered and serving.
pub type Prepare<'a> =
    dyn Fn(Launched) -> futures::future::LocalBoxFuture<'a, Result<(), String>> + 'a;

/// Which part of a change a task carries out ([`run_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A delete, or the delete half of a replacement made destroy-first.
    Delete,
    /// A create, an update, or the create half of a replacement (a rolled instance: all of it,
    /// see [`roll_instance`]).
    Forward,
    /// After every create and update: the old half of a create-before-destroy replacement (the
    /// address keeps its new id) or a duplicate (the address keeps its first one).
    Cleanup,
}

/// What a step's journal line calls its action: `create` (with a token, [`token`]),
/// `update` or `delete`.
pub fn verb(s: &Step, phase: Phase) -> &'static str {
    match (phase, s.change.action) {
        (Phase::Forward, Action::Update) => "update",
        (Phase::Forward, _) if creates(s, phase) => "create",
        (Phase::Forward, _) => "none",
        _ => "delete",
    }
}

/// Whether the step creates a resource in this phase (it then sends an idempotency token).
pub fn creates(s: &Step, phase: Phase) -> bool {
    phase == Phase::Forward
        && matches!(s.change.action, Action::Create | Action::Replace)
        && s.desired.is_some()
}

/// The step's own idempotency token: the same for a retried create of this resource, different
/// for a replacement (salted with the id it replaces). The journal may change it
/// (`engine::journal::create_token`).
pub fn token(ctx: &Ctx, s: &Step) -> String {
    let salt = s
        .observed
        .as_ref()
        .map(|o| o.id.as_str())
        .or(s.replaces.as_deref())
        .unwrap_or("");
    ctx.token(&s.change.addr, salt)
}

/// One step in one [`Phase`]: its events, its call(s), and the id it leaves in the context
/// (returned too: the engine journals it). `rolled`: the step is an instance replaced
/// create-before-destroy ([`crate::plan::Order::Rolled`]), carried out whole by
/// [`roll_instance`] between the target groups `roll` names, with `prepare` run on the new
/// instance before it is registered. `token`: a create's idempotency token, as journaled.
#[allow(clippy::too_many_arguments)]
pub async fn run_step<F, Fut>(
    ctx: &Arc<Ctx>,
    s: &Step,
    phase: Phase,
    rolled: bool,
    roll: &Roll,
    prepare: Option<&Prepare<'_>>,
    token: Option<&str>,
    on_event: F,
) -> Result<Option<String>, AwsError>
where
    F: Fn(Event) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let addr = s.change.addr.clone();
    let action = match phase {
        Phase::Forward => s.change.action,
        Phase::Delete | Phase::Cleanup => Action::Delete,
    };
    on_event(Event::Started {
        addr: addr.clone(),
        action,
    })
    .await;
    let t0 = Instant::now();
    let token = token.unwrap_or_default();
    let r = match phase {
        Phase::Delete => match &s.observed {
            Some(o) => delete(ctx, o).await.map(|_| None),
            None => Ok(None),
        },
        // The old half of a create-before-destroy replacement, or a duplicate: the address
        // keeps the id it has now (the new resource, or the first of the duplicates).
        Phase::Cleanup => match &s.observed {
            Some(o) => match delete(ctx, o).await {
                Ok(()) => Ok(ctx.ids.lock().await.get(&addr).cloned()),
                Err(e) => Err(e),
            },
            None => Ok(None),
        },
        Phase::Forward => match (&s.desired, s.change.action) {
            (Some(d), Action::Update) => match s.observed.as_ref() {
                Some(o) => {
                    let mut r = retag(ctx, o).await;
                    if r.is_ok() && !s.retag_only {
                        r = kinds::of(d.kind).update(ctx, d, o).await;
                    }
                    r.map(|_| Some(o.id.clone()))
                }
                None => Ok(None),
            },
            (Some(d), Action::Replace) if rolled && d.kind == ResKind::Instance => {
                match &s.observed {
                    Some(o) => roll_instance(ctx, d, o, roll, prepare, token)
                        .await
                        .map(Some),
                    None => create(ctx, d, token).await.map(Some),
                }
            }
            (Some(d), _) => create(ctx, d, token).await.map(Some),
            (None, _) => Ok(None),
        },
    };
    match r {
        Ok(id) => {
            let kind = s
                .desired
                .as_ref()
                .map(|d| d.kind)
                .or(s.observed.as_ref().map(|o| o.res.kind))
                .unwrap_or(ResKind::Vpc);
            {
                let mut ids = ctx.ids.lock().await;
                match &id {
                    Some(id) => {
                        ids.insert(addr.clone(), id.clone());
                    }
                    None if phase == Phase::Delete || s.desired.is_none() => {
                        ids.remove(&addr);
                    }
                    None => {}
                }
            }
            on_event(Event::Done {
                addr,
                action,
                id: id.clone(),
                kind,
                elapsed: t0.elapsed(),
            })
            .await;
            Ok(id)
        }
        Err(e) => {
            on_event(Event::Failed {
                addr,
                error: e.to_string(),
            })
            .await;
            Err(e)
        }
    }
}

/// An instance replaced create-before-destroy: the new one is launched (its token salted with
/// the old id) and waited on to be running, then `prepare`d (the host layer configures it: on
/// AWS a target is only `healthy` once something answers its health check); in every target
/// group the old one is registered in ([`Roll`]), the new one is registered and waited on to be
/// `healthy`, then the old one is deregistered and waited on until it has drained; then the old
/// one is terminated. If the preparation fails, or the new one does not become healthy within
/// the instance limit, the step fails with the old one still registered and serving. Returns
/// the new instance's id.
async fn roll_instance(
    ctx: &Ctx,
    want: &Resource,
    old: &Observed,
    roll: &Roll,
    prepare: Option<&Prepare<'_>>,
    token: &str,
) -> Result<String, AwsError> {
    let a = want.addr.as_str();
    let new_id = create(ctx, want, token).await?;
    if let Some(prepare) = prepare {
        let launched = launched(ctx, a, &new_id).await?;
        prepare(launched).await.map_err(|e| AwsError::Prepare {
            addr: a.to_string(),
            id: new_id.clone(),
            error: e,
        })?;
    }
    for tg_addr in roll.target_groups.get(a).into_iter().flatten() {
        let Some(tg) = ctx.ids.lock().await.get(tg_addr).cloned() else {
            continue; // a group still to be created: its registration step registers the new one
        };
        if !ctx.registered(a, &tg).await?.contains(&old.id) {
            continue;
        }
        let target = |id: &str| elbt::TargetDescription::builder().id(id).build();
        ctx.settle("RegisterTargets", a, || {
            ctx.c
                .elb
                .register_targets()
                .target_group_arn(&tg)
                .targets(target(&new_id))
                .send()
        })
        .await?;
        ctx.wait(a, "healthy", ctx.timeouts.instance, || async {
            let state = target_state(ctx, a, &tg, &new_id).await?;
            Ok(wait::target_healthy(state.as_deref()))
        })
        .await?;
        ctx.settle("DeregisterTargets", a, || {
            ctx.c
                .elb
                .deregister_targets()
                .target_group_arn(&tg)
                .targets(target(&old.id))
                .send()
        })
        .await?;
        ctx.wait(a, "drained", ctx.timeouts.instance, || async {
            let state = target_state(ctx, a, &tg, &old.id).await?;
            Ok(wait::target_drained(state.as_deref()))
        })
        .await?;
    }
    delete(ctx, old).await?;
    Ok(new_id)
}

/// The addresses of the running instance `id` (DescribeInstances; retried while the new id
/// propagates). An instance without a private address yet is an error: it cannot be reached.
async fn launched(ctx: &Ctx, addr: &str, id: &str) -> Result<Launched, AwsError> {
    let out = ctx
        .settle("DescribeInstances", addr, || {
            ctx.c.ec2.describe_instances().instance_ids(id).send()
        })
        .await?;
    let i = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id));
    let private_ip = i
        .and_then(|i| i.private_ip_address())
        .ok_or_else(|| AwsError::Prepare {
            addr: addr.to_string(),
            id: id.to_string(),
            error: "DescribeInstances shows no private address for it".into(),
        })?;
    Ok(Launched {
        addr: addr.to_string(),
        instance_id: id.to_string(),
        private_ip: private_ip.to_string(),
        public_ip: i.and_then(|i| i.public_ip_address()).map(str::to_string),
    })
}

/// The health state (`initial`, `healthy`, `draining`, …) of one target in a target group, or
/// None when it is not registered there.
async fn target_state(
    ctx: &Ctx,
    addr: &str,
    tg: &str,
    id: &str,
) -> Result<Option<String>, CallError> {
    let out = ctx
        .c
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .map_err(call_err("DescribeTargetHealth", addr))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .find(|d| d.target().and_then(|t| t.id()) == Some(id))
        .map(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default()
        }))
}

/// Creates `r` (the kind's create, which waits until it is ready).
async fn create(ctx: &Ctx, r: &Resource, token: &str) -> Result<String, AwsError> {
    kinds::of(r.kind).create(ctx, r, token).await
}

/// Deletes `o` (the kind's delete, which waits until what depends on it may go).
async fn delete(ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
    kinds::of(o.res.kind).delete(ctx, o).await
}

/// Restores the ownership tags of a resource the state recorded and that lost them (observe
/// sets [`INFO_RETAG`]): `hactl:stack` and `hactl:address` (and a key pair's fingerprint tag),
/// by the kind's service. Nothing else about the resource changes.
async fn retag(ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
    if o.info.get(INFO_RETAG).is_none_or(|t| t.is_empty()) {
        return Ok(());
    }
    kinds::of(o.res.kind).retag(ctx, o).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::diff;
    use crate::provider::aws::fixture::{observed, resources};

    /// An instance replaced create-before-destroy is moved between the target groups whose
    /// registration lists it: the roll registers the new one there before the old one goes.
    #[test]
    fn a_rolled_instance_moves_between_its_registrations_groups() {
        let have = observed(&resources(|s| s));
        let want = resources(|s| s.replace("t2.micro", "t3.small"));
        let d = diff::diff(&want, &have);
        let roll = Roll::of(&d.steps);
        assert_eq!(
            roll.target_groups
                .get("aws_instance.web[0]")
                .map(Vec::as_slice),
            Some(&["aws_lb_target_group.web".to_string()][..])
        );
    }
}
