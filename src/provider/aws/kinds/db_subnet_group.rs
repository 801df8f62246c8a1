//! `aws_db_subnet_group`: the subnets RDS places the database in, named from the stack
//! (`hactl-<stack>-db`: the name is its id). The name cannot change in place; the subnets can.
//! RDS lists subnet groups by name only (no tag filter): the read asks for the derived name,
//! then confirms the group by its tags. Ready when created; a delete waits while the database
//! still uses it (`InvalidDBSubnetGroupStateFault`).

use super::shared::{api, Ctx};
use super::{get, Kind, MissingAttr};
use crate::provider::aws::desired;
use crate::provider::aws::model::{Observed, ResKind, Resource, TAG_ADDRESS, TAG_STACK};
use crate::provider::aws::observe::{owned, Scan};
use crate::provider::aws::AwsError;

pub struct DbSubnetGroup;

/// The subnet group as CreateDBSubnetGroup needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub name: String,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            name: get(r, "name")?.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Kind for DbSubnetGroup {
    fn forces_replace(&self, key: &str) -> bool {
        key == "name"
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        // Found by its name, then confirmed by its tags. Only DBSubnetGroupNotFound means
        // there is none: any other failure fails the read, never "absent" (which would plan a
        // second group and a replaced database).
        let groups = match c
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(desired::aws_name(scan.stack, "db", 255))
            .send()
            .await
        {
            Ok(out) => out.db_subnet_groups().to_vec(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_subnet_group_not_found_fault()) =>
            {
                Vec::new()
            }
            Err(e) => return Err(api("DescribeDBSubnetGroups", "(read)")(e)),
        };
        let mut out = Vec::new();
        for g in &groups {
            let (Some(name), Some(arn)) = (g.db_subnet_group_name(), g.db_subnet_group_arn())
            else {
                continue;
            };
            let tags = c
                .rds
                .list_tags_for_resource()
                .resource_name(arn)
                .send()
                .await
                .map_err(api("ListTagsForResource", "(read)"))?;
            let tag = |k: &str| {
                tags.tag_list()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
            };
            let Some(who) = scan.who(
                ResKind::DbSubnetGroup,
                name,
                tag(TAG_STACK),
                tag(TAG_ADDRESS),
            ) else {
                continue;
            };
            let mut o = owned(ResKind::DbSubnetGroup, who, name);
            o.info.insert("arn".into(), arn.into());
            o.res = o.res.attr("name", name).reference(
                "subnets",
                g.subnets()
                    .iter()
                    .filter_map(|s| s.subnet_identifier().map(str::to_string))
                    .collect(),
            );
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let subnets_ids = ctx.ref_ids(r, "subnets").await?;
        ctx.settle("CreateDBSubnetGroup", a, || {
            ctx.c
                .rds
                .create_db_subnet_group()
                .db_subnet_group_name(&at.name)
                .db_subnet_group_description(format!("hactl {}", ctx.stack))
                .set_subnet_ids(Some(subnets_ids.clone()))
                .set_tags(Some(ctx.rds_tags(a)))
                .send()
        })
        .await?;
        Ok(at.name)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        Attrs::of(want)?;
        let subnets_ids = ctx.ref_ids(want, "subnets").await?;
        ctx.settle("ModifyDBSubnetGroup", &want.addr, || {
            ctx.c
                .rds
                .modify_db_subnet_group()
                .db_subnet_group_name(&have.id)
                .set_subnet_ids(Some(subnets_ids.clone()))
                .send()
        })
        .await?;
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_rds(o).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteDBSubnetGroup", &o.res.addr, || {
            ctx.c
                .rds
                .delete_db_subnet_group()
                .db_subnet_group_name(&o.id)
                .send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subnet group without its name is refused before any call; only the name replaces it.
    #[test]
    fn a_db_subnet_group_needs_its_name() {
        let r = Resource::new(ResKind::DbSubnetGroup, "aws_db_subnet_group.main");
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("name".to_string()));
        assert!(DbSubnetGroup.forces_replace("name"));
        assert!(!DbSubnetGroup.forces_replace("subnets"));
    }
}
