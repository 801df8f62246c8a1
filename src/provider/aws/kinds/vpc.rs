//! `aws_vpc`: the stack's network. Its CIDR cannot change in place (a new VPC); DNS hostnames
//! are switched on at create (EFS and RDS endpoints resolve through them) and repaired when
//! someone turned them off: EC2 reports them only through DescribeVpcAttribute, one VPC at a
//! time. Ready when CreateVpc returns.

use aws_sdk_ec2::types as ec2t;

use super::shared::{api, Ctx};
use super::{get, parse, Kind, MissingAttr};
use crate::provider::aws::diff::UNKNOWN;
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::Scan;
use crate::provider::aws::wait::is_not_found;
use crate::provider::aws::{sdk_code, AwsError};

pub struct Vpc;

/// The VPC as CreateVpc and ModifyVpcAttribute need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub cidr: String,
    /// `EnableDnsHostnames`.
    pub dns_hostnames: bool,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            cidr: get(r, "cidr")?.to_string(),
            dns_hostnames: parse(r, "dns_hostnames")?,
        })
    }
}

/// Sets the VPC's DNS hostnames attribute.
async fn set_dns_hostnames(ctx: &Ctx, addr: &str, id: &str, on: bool) -> Result<(), AwsError> {
    ctx.settle("ModifyVpcAttribute", addr, || {
        ctx.c
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_hostnames(ec2t::AttributeBooleanValue::builder().value(on).build())
            .send()
    })
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Kind for Vpc {
    fn forces_replace(&self, key: &str) -> bool {
        key == "cidr"
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let vpcs = scan
            .ec2(
                ResKind::Vpc,
                "DescribeVpcs",
                "vpc-id",
                |v: &ec2t::Vpc| (v.vpc_id(), v.tags()),
                |f, _| async move {
                    let o = c.ec2.describe_vpcs().filters(f).send().await;
                    o.map(|o| o.vpcs().to_vec())
                },
            )
            .await?;
        let mut out = Vec::new();
        for (v, mut o) in vpcs {
            o.res = o.res.attr("cidr", v.cidr_block().unwrap_or_default());
            out.push(o);
        }
        // DNS hostnames are an attribute of their own (DescribeVpcAttribute), one VPC at a
        // time. A VPC the tag listing returned but EC2 answers NotFound for (a new one, not
        // propagated yet: a killed run's) has its DNS setting not known yet: no change is
        // planned from it.
        let dns = futures::future::try_join_all(out.iter().map(|o| async move {
            match c
                .ec2
                .describe_vpc_attribute()
                .vpc_id(&o.id)
                .attribute(ec2t::VpcAttributeName::EnableDnsHostnames)
                .send()
                .await
            {
                Ok(out) => Ok(Some(
                    out.enable_dns_hostnames()
                        .and_then(|v| v.value())
                        .unwrap_or(false),
                )),
                Err(e) if is_not_found(&sdk_code(&e).unwrap_or_default()) => Ok(None),
                Err(e) => Err(api("DescribeVpcAttribute", "(read)")(e)),
            }
        }))
        .await?;
        for (o, on) in out.iter_mut().zip(dns) {
            match on {
                Some(on) => {
                    o.res.attrs.insert("dns_hostnames".into(), on.to_string());
                }
                None => {
                    let unknown = o.info.entry(UNKNOWN.into()).or_default();
                    if !unknown.is_empty() {
                        unknown.push(',');
                    }
                    unknown.push_str("dns_hostnames");
                }
            }
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let out = ctx
            .settle("CreateVpc", a, || {
                ctx.c
                    .ec2
                    .create_vpc()
                    .cidr_block(&at.cidr)
                    .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Vpc, a))
                    .send()
            })
            .await?;
        let id = out
            .vpc()
            .and_then(|v| v.vpc_id())
            .unwrap_or_default()
            .to_string();
        // Hostnames in the VPC: EFS and RDS endpoints resolve through them.
        set_dns_hostnames(ctx, a, &id, true).await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        if want.get("dns_hostnames") != have.res.get("dns_hostnames") {
            set_dns_hostnames(ctx, &want.addr, &have.id, at.dns_hostnames).await?;
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteVpc", &o.res.addr, || {
            ctx.c.ec2.delete_vpc().vpc_id(&o.id).send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VPC without its CIDR is refused before any call; only the CIDR forces a new one.
    #[test]
    fn a_vpc_needs_its_cidr_and_only_the_cidr_replaces_it() {
        let r = Resource::new(ResKind::Vpc, "aws_vpc.main").attr("dns_hostnames", true);
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("cidr".to_string()));
        let r = r.attr("cidr", "10.0.0.0/16");
        assert_eq!(
            Attrs::of(&r),
            Ok(Attrs {
                cidr: "10.0.0.0/16".into(),
                dns_hostnames: true
            })
        );
        assert!(Vpc.forces_replace("cidr"));
        assert!(!Vpc.forces_replace("dns_hostnames"));
    }
}
