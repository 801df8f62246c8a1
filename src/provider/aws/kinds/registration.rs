//! `aws_lb_target_group_attachment`: the instances registered in a target group. It is not an
//! AWS resource of its own: its id is its target group's ARN, it is read through the group
//! (DescribeTargetHealth), and what is registered is compared and changed as a set. A new
//! target group gets the registration made again before the old group goes
//! (create-before-destroy). A delete deregisters every target.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types as elbt;

use super::shared::Ctx;
use super::{reference, Kind, MissingAttr};
use crate::provider::aws::desired;
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::{unowned, Scan, MID_SCAN};
use crate::provider::aws::wait::settle;
use crate::provider::aws::AwsError;

pub struct Registration;

/// The registration as RegisterTargets needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub target_group: String,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            target_group: reference(r, "target_group")?.to_string(),
        })
    }
}

/// What to register and deregister to go from the ids `have` to the ids `want`.
fn changes(want: &[String], have: &[String]) -> (Vec<String>, Vec<String>) {
    let add = want.iter().filter(|w| !have.contains(w)).cloned().collect();
    let del = have.iter().filter(|h| !want.contains(h)).cloned().collect();
    (add, del)
}

fn targets(ids: &[String]) -> Vec<elbt::TargetDescription> {
    ids.iter()
        .map(|i| elbt::TargetDescription::builder().id(i).build())
        .collect()
}

#[async_trait::async_trait]
impl Kind for Registration {
    fn forces_replace(&self, key: &str) -> bool {
        key == "target_group"
    }

    fn create_before_destroy(&self) -> bool {
        true
    }

    fn read_through(&self) -> Option<ResKind> {
        Some(ResKind::TargetGroup)
    }

    /// Its id is its target group's ARN: it must not shadow the group.
    fn referred_to(&self) -> bool {
        false
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let parents = scan.parents(ResKind::TargetGroup);
        futures::future::try_join_all(parents.iter().map(|(addr, arn)| async move {
            let health = settle(MID_SCAN, "DescribeTargetHealth", "(read)", || {
                c.elb.describe_target_health().target_group_arn(arn).send()
            })
            .await?;
            let targets: Vec<String> = health
                .target_health_descriptions()
                .iter()
                .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
                .collect();
            let mut o = unowned(ResKind::TargetAttachment, desired::ATTACH, arn);
            o.res = o
                .res
                .reference("target_group", vec![addr.clone()])
                .reference("targets", targets);
            Ok(o)
        }))
        .await
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let tg = ctx.id(&r.addr, &at.target_group).await?;
        let empty = Observed {
            res: Resource::new(ResKind::TargetAttachment, &r.addr),
            id: tg.clone(),
            info: BTreeMap::new(),
        };
        self.update(ctx, r, &empty).await?;
        Ok(tg)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        Attrs::of(want)?;
        let (a, id) = (want.addr.as_str(), have.id.as_str());
        let want_ids = ctx.ref_ids(want, "targets").await?;
        // What is registered now, read at apply time: the instances the plan saw may have
        // been replaced by earlier steps of this run.
        let have_ids = ctx.registered(a, id).await?;
        let (add, del) = changes(&want_ids, &have_ids);
        if !add.is_empty() {
            ctx.settle("RegisterTargets", a, || {
                ctx.c
                    .elb
                    .register_targets()
                    .target_group_arn(id)
                    .set_targets(Some(targets(&add)))
                    .send()
            })
            .await?;
        }
        if !del.is_empty() {
            ctx.settle("DeregisterTargets", a, || {
                ctx.c
                    .elb
                    .deregister_targets()
                    .target_group_arn(id)
                    .set_targets(Some(targets(&del)))
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let (a, id) = (o.res.addr.as_str(), o.id.as_str());
        let registered = ctx.registered(a, id).await?;
        if !registered.is_empty() {
            ctx.remove("DeregisterTargets", a, || {
                ctx.c
                    .elb
                    .deregister_targets()
                    .target_group_arn(id)
                    .set_targets(Some(targets(&registered)))
                    .send()
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registration is changed as a set: what is wanted and not there is registered,
    /// what is there and not wanted is deregistered, nothing else is touched.
    #[test]
    fn registrations_change_as_a_set() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (add, del) = changes(&v(&["i-1", "i-2"]), &v(&["i-2", "i-3"]));
        assert_eq!((add, del), (v(&["i-1"]), v(&["i-3"])));
        assert_eq!(changes(&v(&["i-1"]), &v(&["i-1"])), (vec![], vec![]));
        let r = Resource::new(
            ResKind::TargetAttachment,
            "aws_lb_target_group_attachment.web",
        );
        assert_eq!(
            Attrs::of(&r).map_err(|e| e.key),
            Err("target_group".to_string())
        );
        assert!(Registration.create_before_destroy());
        assert_eq!(Registration.read_through(), Some(ResKind::TargetGroup));
    }
}
