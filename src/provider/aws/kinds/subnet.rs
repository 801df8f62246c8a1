//! `aws_subnet`: one public subnet per zone. Its CIDR, zone and VPC cannot change in place;
//! `MapPublicIpOnLaunch` is switched on at create (the hosts are reached on their public
//! addresses) and repaired when someone turned it off. Ready when CreateSubnet returns; a
//! delete waits out the ENIs of a deleted load balancer or terminated instance
//! (`DependencyViolation`).

use aws_sdk_ec2::types as ec2t;

use super::shared::Ctx;
use super::{get, parse, reference, Kind, MissingAttr};
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::Scan;
use crate::provider::aws::AwsError;

pub struct Subnet;

/// The subnet as CreateSubnet and ModifySubnetAttribute need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub vpc: String,
    pub cidr: String,
    pub zone: String,
    /// `MapPublicIpOnLaunch`.
    pub map_public_ip: bool,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            vpc: reference(r, "vpc")?.to_string(),
            cidr: get(r, "cidr")?.to_string(),
            zone: get(r, "zone")?.to_string(),
            map_public_ip: parse(r, "map_public_ip")?,
        })
    }
}

/// Sets the subnet's MapPublicIpOnLaunch attribute.
async fn set_map_public_ip(ctx: &Ctx, addr: &str, id: &str, on: bool) -> Result<(), AwsError> {
    ctx.settle("ModifySubnetAttribute", addr, || {
        ctx.c
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(ec2t::AttributeBooleanValue::builder().value(on).build())
            .send()
    })
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Kind for Subnet {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "cidr" | "zone" | "vpc")
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let subnets = scan
            .ec2(
                ResKind::Subnet,
                "DescribeSubnets",
                "subnet-id",
                |s: &ec2t::Subnet| (s.subnet_id(), s.tags()),
                |f, _| async move {
                    let o = c.ec2.describe_subnets().filters(f).send().await;
                    o.map(|o| o.subnets().to_vec())
                },
            )
            .await?;
        let mut out = Vec::new();
        for (s, mut o) in subnets {
            o.res = o
                .res
                .attr("cidr", s.cidr_block().unwrap_or_default())
                .attr("zone", s.availability_zone().unwrap_or_default())
                .attr(
                    "map_public_ip",
                    s.map_public_ip_on_launch().unwrap_or(false),
                )
                .reference("vpc", s.vpc_id().map(str::to_string).into_iter().collect());
            o.info.insert(
                "zone".into(),
                s.availability_zone().unwrap_or_default().into(),
            );
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let vpc_id = ctx.id(a, &at.vpc).await?;
        let out = ctx
            .settle("CreateSubnet", a, || {
                ctx.c
                    .ec2
                    .create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(&at.cidr)
                    .availability_zone(&at.zone)
                    .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Subnet, a))
                    .send()
            })
            .await?;
        let id = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .unwrap_or_default()
            .to_string();
        set_map_public_ip(ctx, a, &id, true).await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        if want.get("map_public_ip") != have.res.get("map_public_ip") {
            set_map_public_ip(ctx, &want.addr, &have.id, at.map_public_ip).await?;
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteSubnet", &o.res.addr, || {
            ctx.c.ec2.delete_subnet().subnet_id(&o.id).send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subnet without its zone or VPC is refused before any call, naming what is missing;
    /// CIDR, zone and VPC force a new one, the public-address setting does not.
    #[test]
    fn a_subnet_needs_cidr_zone_and_vpc() {
        let r = Resource::new(ResKind::Subnet, "aws_subnet.public[0]")
            .attr("cidr", "10.0.0.0/24")
            .attr("map_public_ip", true);
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("vpc".to_string()));
        let r = r.reference("vpc", vec!["aws_vpc.main".into()]);
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("zone".to_string()));
        let r = r.attr("zone", "eu-west-1a");
        assert!(Attrs::of(&r).is_ok_and(|a| a.map_public_ip));
        for k in ["cidr", "zone", "vpc"] {
            assert!(Subnet.forces_replace(k), "{k}");
        }
        assert!(!Subnet.forces_replace("map_public_ip"));
    }
}
