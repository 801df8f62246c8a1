//! `aws_efs_mount_target`: the file system's address in one subnet (one per zone). It has no
//! tags of its own: it is read through its file system, and its address comes from its subnet
//! (`aws_efs_mount_target.shared[<subnet index>]`). Unique per zone, so a retried create
//! answers `MountTargetConflict` rather than making a second one. Its file system and subnet
//! cannot change in place; its security groups can. `creating → available`, `error` final;
//! a delete waits until it is gone, as the file system can only go after.

use std::time::Duration;

use super::shared::{api, Ctx};
use super::{reference, Kind, MissingAttr};
use crate::provider::aws::desired::mount_target_addr;
use crate::provider::aws::diff::UNKNOWN;
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::{unowned, Ids, Scan, MID_SCAN};
use crate::provider::aws::wait::{self, call_err, settle, Poll, Timeouts};
use crate::provider::aws::AwsError;

pub struct MountTarget;

/// The mount target as CreateMountTarget needs it (references: addresses or ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub file_system: String,
    pub subnet: String,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            file_system: reference(r, "file_system")?.to_string(),
            subnet: reference(r, "subnet")?.to_string(),
        })
    }
}

/// The address of a mount target in `subnet` (an id): by the index of the stack's subnet it
/// is in (`aws_subnet.public[<i>]`, or the i-th of the subnets the stack names), else by the
/// subnet id itself.
fn address(subnet: &str, ids: &Ids<'_>) -> String {
    let index = match ids.get(subnet) {
        Some(a) => a
            .strip_prefix("aws_subnet.public[")
            .and_then(|s| s.strip_suffix(']'))
            .map(str::to_string),
        None => ids
            .given_subnets
            .iter()
            .position(|s| *s == subnet)
            .map(|i| i.to_string()),
    };
    match index.and_then(|i| i.parse().ok()) {
        Some(i) => mount_target_addr(i),
        None => format!("aws_efs_mount_target.shared[{subnet}]"),
    }
}

#[async_trait::async_trait]
impl Kind for MountTarget {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "file_system" | "subnet")
    }

    fn ready(&self, status: &str) -> Poll {
        wait::efs_available(status)
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        t.file_system
    }

    fn read_through(&self) -> Option<ResKind> {
        Some(ResKind::EfsFileSystem)
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let parents = scan.parents(ResKind::EfsFileSystem);
        let per_fs = futures::future::try_join_all(parents.iter().map(|(addr, id)| async move {
            let out = settle(MID_SCAN, "DescribeMountTargets", "(read)", || {
                c.efs.describe_mount_targets().file_system_id(id).send()
            })
            .await?;
            let mut v = Vec::new();
            for m in out.mount_targets() {
                if matches!(
                    m.life_cycle_state(),
                    aws_sdk_efs::types::LifeCycleState::Deleted
                        | aws_sdk_efs::types::LifeCycleState::Deleting
                ) {
                    continue;
                }
                // A failed read is an error, never "no security groups" (which would plan a
                // change). One that is not in a state to answer, or that answers NotFound
                // although it was just listed (a new mount target EFS lists before it answers
                // for it: taking it for gone planned a second create, `MountTargetConflict`),
                // has groups not known yet: it is observed, and no change is planned from them.
                let sgs = match c
                    .efs
                    .describe_mount_target_security_groups()
                    .mount_target_id(m.mount_target_id())
                    .send()
                    .await
                {
                    Ok(o) => Some(o.security_groups().to_vec()),
                    Err(e)
                        if e.as_service_error().is_some_and(|s| {
                            s.is_mount_target_not_found() || s.is_incorrect_mount_target_state()
                        }) =>
                    {
                        None
                    }
                    Err(e) => return Err(api("DescribeMountTargetSecurityGroups", "(read)")(e)),
                };
                // The address comes from the subnet, once ids map to addresses (resolve).
                let mut o = unowned(ResKind::EfsMountTarget, "", m.mount_target_id());
                o.res = o
                    .res
                    .reference("file_system", vec![addr.clone()])
                    .reference("subnet", vec![m.subnet_id().to_string()]);
                match sgs {
                    Some(sgs) => o.res = o.res.reference("security_groups", sgs),
                    None => {
                        o.info.insert(UNKNOWN.into(), "security_groups".into());
                    }
                }
                o.info.insert(
                    "zone".into(),
                    m.availability_zone_name().unwrap_or_default().into(),
                );
                v.push(o);
            }
            Ok::<_, AwsError>(v)
        }))
        .await?;
        Ok(per_fs.into_iter().flatten().collect())
    }

    fn resolve(&self, o: &mut Observed, ids: &Ids<'_>) {
        let subnet = o.res.one_ref("subnet").unwrap_or_default().to_string();
        o.res.addr = address(&subnet, ids);
        ids.map_refs(&mut o.res);
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let c = &ctx.c;
        let a = r.addr.as_str();
        let file_system_id = ctx.id(a, &at.file_system).await?;
        let subnet_id = ctx.id(a, &at.subnet).await?;
        let security_groups_ids = ctx.ref_ids(r, "security_groups").await?;
        let out = ctx
            .settle("CreateMountTarget", a, || {
                c.efs
                    .create_mount_target()
                    .file_system_id(&file_system_id)
                    .subnet_id(&subnet_id)
                    .set_security_groups(Some(security_groups_ids.clone()))
                    .send()
            })
            .await?;
        let id = out.mount_target_id().to_string();
        ctx.wait(a, "available", self.timeout(&ctx.timeouts), || async {
            let o = c
                .efs
                .describe_mount_targets()
                .mount_target_id(&id)
                .send()
                .await
                .map_err(call_err("DescribeMountTargets", a))?;
            Ok(match o.mount_targets().first() {
                Some(m) => self.ready(m.life_cycle_state().as_str()),
                None => Poll::Pending("not listed".into()),
            })
        })
        .await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        Attrs::of(want)?;
        let a = want.addr.as_str();
        let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
        ctx.settle("ModifyMountTargetSecurityGroups", a, || {
            ctx.c
                .efs
                .modify_mount_target_security_groups()
                .mount_target_id(&have.id)
                .set_security_groups(Some(security_groups_ids.clone()))
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let (a, id) = (o.res.addr.as_str(), o.id.as_str());
        let c = &ctx.c;
        ctx.remove("DeleteMountTarget", a, || {
            c.efs.delete_mount_target().mount_target_id(id).send()
        })
        .await?;
        // The file system can only go once its mount targets are gone.
        ctx.wait_gone(
            a,
            "deleted",
            "DescribeMountTargets",
            "MountTargetNotFound",
            self.timeout(&ctx.timeouts),
            || async {
                let o = c
                    .efs
                    .describe_mount_targets()
                    .mount_target_id(id)
                    .send()
                    .await;
                o.map(|o| match o.mount_targets().first() {
                    Some(m) if m.life_cycle_state().as_str() != "deleted" => {
                        Poll::Pending(m.life_cycle_state().as_str().into())
                    }
                    _ => Poll::Ready,
                })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mount target without its subnet is refused before any call; it is read through its
    /// file system, replaced for another subnet, and its groups change in place.
    #[test]
    fn a_mount_target_needs_file_system_and_subnet() {
        let r = Resource::new(ResKind::EfsMountTarget, "aws_efs_mount_target.shared[0]")
            .reference("file_system", vec!["aws_efs_file_system.shared".into()]);
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("subnet".to_string()));
        assert_eq!(MountTarget.read_through(), Some(ResKind::EfsFileSystem));
        assert!(MountTarget.forces_replace("subnet"));
        assert!(!MountTarget.forces_replace("security_groups"));
        assert_eq!(MountTarget.ready("error"), Poll::Failed("error".into()));
    }
}
