//! `aws_route_table`: the public subnets' routes: a default route (`0.0.0.0/0`) to the internet
//! gateway and an association per subnet. Only its VPC forces a new one; the route and the
//! associations change in place (an association is removed by its association id, which the
//! read keeps in `info["associations"]` as `subnet=association,…`). Ready when created.

use std::collections::BTreeMap;

use aws_sdk_ec2::types as ec2t;

use super::shared::Ctx;
use super::{reference, Kind, MissingAttr};
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::Scan;
use crate::provider::aws::AwsError;

pub struct RouteTable;

/// The route table as CreateRouteTable needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub vpc: String,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            vpc: reference(r, "vpc")?.to_string(),
        })
    }
}

/// The (subnet id, association id) pairs of a read route table (`info["associations"]`).
fn associations(o: &Observed) -> Vec<(&str, &str)> {
    o.info
        .get("associations")
        .map(|s| {
            s.split(',')
                .filter_map(|pair| pair.split_once('='))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Kind for RouteTable {
    fn forces_replace(&self, key: &str) -> bool {
        key == "vpc"
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let tables = scan
            .ec2(
                ResKind::RouteTable,
                "DescribeRouteTables",
                "route-table-id",
                |t: &ec2t::RouteTable| (t.route_table_id(), t.tags()),
                |f, _| async move {
                    let o = c.ec2.describe_route_tables().filters(f).send().await;
                    o.map(|o| o.route_tables().to_vec())
                },
            )
            .await?;
        let mut out = Vec::new();
        for (t, mut o) in tables {
            let gw = t
                .routes()
                .iter()
                .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                .filter_map(|r| r.gateway_id().map(str::to_string))
                .collect();
            let explicit = || t.associations().iter().filter(|a| a.main() != Some(true));
            let subnets = explicit()
                .filter_map(|a| a.subnet_id().map(str::to_string))
                .collect();
            let assoc: Vec<String> = explicit()
                .filter_map(|a| {
                    Some(format!(
                        "{}={}",
                        a.subnet_id()?,
                        a.route_table_association_id()?
                    ))
                })
                .collect();
            o.info.insert("associations".into(), assoc.join(","));
            o.res = o
                .res
                .reference("vpc", t.vpc_id().map(str::to_string).into_iter().collect())
                .reference("gateway", gw)
                .reference("subnets", subnets);
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let vpc_id = ctx.id(a, &at.vpc).await?;
        let out = ctx
            .settle("CreateRouteTable", a, || {
                ctx.c
                    .ec2
                    .create_route_table()
                    .vpc_id(&vpc_id)
                    .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::RouteTable, a))
                    .send()
            })
            .await?;
        let id = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .unwrap_or_default()
            .to_string();
        // The route and the associations: an update from an empty table.
        let empty = Observed {
            res: Resource::new(ResKind::RouteTable, a),
            id: id.clone(),
            info: BTreeMap::new(),
        };
        self.update(ctx, r, &empty).await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        Attrs::of(want)?;
        let c = &ctx.c;
        let a = want.addr.as_str();
        let id = have.id.as_str();
        let refs = |r: &Resource, k: &str| r.refs.get(k).cloned().unwrap_or_default();
        if refs(want, "gateway") != refs(&have.res, "gateway") {
            let gw = ctx.ref_id(want, "gateway").await?;
            if have.res.refs.get("gateway").is_some_and(|g| !g.is_empty()) {
                ctx.settle("ReplaceRoute", a, || {
                    c.ec2
                        .replace_route()
                        .route_table_id(id)
                        .destination_cidr_block("0.0.0.0/0")
                        .gateway_id(&gw)
                        .send()
                })
                .await?;
            } else {
                ctx.settle("CreateRoute", a, || {
                    c.ec2
                        .create_route()
                        .route_table_id(id)
                        .destination_cidr_block("0.0.0.0/0")
                        .gateway_id(&gw)
                        .send()
                })
                .await?;
            }
        }
        let have_s = refs(&have.res, "subnets");
        for s in refs(want, "subnets").iter().filter(|s| !have_s.contains(s)) {
            let subnet = ctx.id(a, s).await?;
            ctx.settle("AssociateRouteTable", a, || {
                c.ec2
                    .associate_route_table()
                    .route_table_id(id)
                    .subnet_id(&subnet)
                    .send()
            })
            .await?;
        }
        // Extra associations: disassociate by their association ids (read by observe).
        let want_ids = ctx.ref_ids(want, "subnets").await?;
        for (subnet, assoc) in associations(have) {
            if !want_ids.iter().any(|w| w == subnet) {
                ctx.settle("DisassociateRouteTable", a, || {
                    c.ec2
                        .disassociate_route_table()
                        .association_id(assoc)
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let a = o.res.addr.as_str();
        for (_, assoc) in associations(o) {
            ctx.remove("DisassociateRouteTable", a, || {
                ctx.c
                    .ec2
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
            })
            .await?;
        }
        ctx.remove("DeleteRouteTable", a, || {
            ctx.c.ec2.delete_route_table().route_table_id(&o.id).send()
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The associations a read recorded are the pairs a delete and an update remove by id;
    /// only the VPC replaces the table.
    #[test]
    fn associations_are_read_back_as_pairs() {
        let mut o = Observed {
            res: Resource::new(ResKind::RouteTable, "aws_route_table.public"),
            id: "rtb-1".into(),
            info: BTreeMap::new(),
        };
        assert!(associations(&o).is_empty());
        o.info.insert(
            "associations".into(),
            "subnet-1=rtbassoc-1,subnet-2=rtbassoc-2".into(),
        );
        assert_eq!(
            associations(&o),
            [("subnet-1", "rtbassoc-1"), ("subnet-2", "rtbassoc-2")]
        );
        assert_eq!(Attrs::of(&o.res).map_err(|e| e.key), Err("vpc".to_string()));
        assert!(RouteTable.forces_replace("vpc"));
        assert!(!RouteTable.forces_replace("gateway"));
    }
}
