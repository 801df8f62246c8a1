//! `aws_internet_gateway`: the VPC's way out, attached to it. Nothing forces a new one: a
//! gateway attached to another VPC is detached and attached again. Ready when created and
//! attached; detached before it is deleted.

use aws_sdk_ec2::types as ec2t;

use super::shared::Ctx;
use super::{reference, Kind, MissingAttr};
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::Scan;
use crate::provider::aws::AwsError;

pub struct InternetGateway;

/// The gateway as CreateInternetGateway and AttachInternetGateway need it.
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

async fn attach(ctx: &Ctx, addr: &str, id: &str, vpc_id: &str) -> Result<(), AwsError> {
    ctx.settle("AttachInternetGateway", addr, || {
        ctx.c
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id)
            .send()
    })
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Kind for InternetGateway {
    fn forces_replace(&self, _key: &str) -> bool {
        false
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let igws = scan
            .ec2(
                ResKind::InternetGateway,
                "DescribeInternetGateways",
                "internet-gateway-id",
                |g: &ec2t::InternetGateway| (g.internet_gateway_id(), g.tags()),
                |f, _| async move {
                    let o = c.ec2.describe_internet_gateways().filters(f).send().await;
                    o.map(|o| o.internet_gateways().to_vec())
                },
            )
            .await?;
        let mut out = Vec::new();
        for (g, mut o) in igws {
            let vpcs = g
                .attachments()
                .iter()
                .filter_map(|a| a.vpc_id().map(str::to_string))
                .collect();
            o.res = o.res.reference("vpc", vpcs);
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let out = ctx
            .settle("CreateInternetGateway", a, || {
                ctx.c
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::InternetGateway, a))
                    .send()
            })
            .await?;
        let id = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .unwrap_or_default()
            .to_string();
        let vpc_id = ctx.id(a, &at.vpc).await?;
        attach(ctx, a, &id, &vpc_id).await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        let a = want.addr.as_str();
        for old in have.res.refs.get("vpc").cloned().unwrap_or_default() {
            let vpc = ctx.id(a, &old).await?;
            // Best effort: a gateway that is not attached there any more is the goal.
            let _ = ctx
                .c
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(&have.id)
                .vpc_id(vpc)
                .send()
                .await;
        }
        let vpc_id = ctx.id(a, &at.vpc).await?;
        attach(ctx, a, &have.id, &vpc_id).await
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let (a, id) = (o.res.addr.as_str(), o.id.as_str());
        for vpc in o.res.refs.get("vpc").cloned().unwrap_or_default() {
            let vpc = ctx.id(a, &vpc).await.unwrap_or(vpc);
            ctx.remove("DetachInternetGateway", a, || {
                ctx.c
                    .ec2
                    .detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(&vpc)
                    .send()
            })
            .await?;
        }
        ctx.remove("DeleteInternetGateway", a, || {
            ctx.c
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway without its VPC is refused before any call; nothing replaces one.
    #[test]
    fn a_gateway_needs_its_vpc_and_is_never_replaced() {
        let r = Resource::new(ResKind::InternetGateway, "aws_internet_gateway.main");
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("vpc".to_string()));
        let r = r.reference("vpc", vec!["aws_vpc.main".into()]);
        assert!(Attrs::of(&r).is_ok());
        assert!(!InternetGateway.forces_replace("vpc"));
    }
}
