//! `aws_lb`: the stack's load balancer, an ALB (`application`) or an NLB (`network`), facing
//! the internet across the public subnets. Its name and type cannot change in place; its
//! subnets and security groups can (SetSecurityGroups), except that an NLB created without any
//! can never have one (`security_groups_at_create`, see `desired`): it is replaced. `provisioning → active` (`failed` final: the SDK's
//! `load_balancer_available` waiter). The scan reads every load balancer of the region (ELBv2
//! has no tag filter) and keeps those whose tags are the stack's.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types as elbt;

use super::shared::{api, Ctx};
use super::{get, Kind, MissingAttr};
use crate::provider::aws::model::{Observed, ResKind, Resource, TAG_ADDRESS, TAG_STACK};
use crate::provider::aws::observe::{owned, Scan};
use crate::provider::aws::wait::{self, call_err, Poll, Timeouts};
use crate::provider::aws::AwsError;

pub struct Lb;

/// The load balancer as CreateLoadBalancer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub name: String,
    /// `application` or `network`.
    pub kind: String,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            name: get(r, "name")?.to_string(),
            kind: get(r, "kind")?.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Kind for Lb {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "kind" | "name" | "security_groups_at_create")
    }

    fn ready(&self, status: &str) -> Poll {
        wait::load_balancer_active(status)
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        t.load_balancer
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        // Region-wide: every page (ELBv2 pages by 400 at most).
        let lbs: Vec<_> = scan
            .c
            .elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(api("DescribeLoadBalancers", "(read)"))?;
        let arns: Vec<String> = lbs
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_string))
            .collect();
        let tags = scan.elb_tags(&arns).await?;
        let mut out = Vec::new();
        for l in &lbs {
            let Some(arn) = l.load_balancer_arn() else {
                continue;
            };
            let tag = |k: &str| tags.get(arn).and_then(|t| t.get(k)).map(String::as_str);
            let Some(who) = scan.who(ResKind::Lb, arn, tag(TAG_STACK), tag(TAG_ADDRESS)) else {
                continue;
            };
            let mut o = owned(ResKind::Lb, who, arn);
            o.res = o
                .res
                .attr("name", l.load_balancer_name().unwrap_or_default())
                .attr("kind", l.r#type().map(|t| t.as_str()).unwrap_or_default())
                .reference(
                    "subnets",
                    l.availability_zones()
                        .iter()
                        .filter_map(|z| z.subnet_id().map(str::to_string))
                        .collect(),
                );
            // An NLB made without a security group can never get one: replaced (see
            // `desired`).
            o.res = o
                .res
                .attr("security_groups_at_create", !l.security_groups().is_empty());
            if !l.security_groups().is_empty() {
                o.res = o
                    .res
                    .reference("security_groups", l.security_groups().to_vec());
            }
            o.info
                .insert("dns_name".into(), l.dns_name().unwrap_or_default().into());
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let c = &ctx.c;
        let a = r.addr.as_str();
        let subnets_ids = ctx.ref_ids(r, "subnets").await?;
        let security_groups_ids = ctx.ref_ids(r, "security_groups").await?;
        let mut req = c
            .elb
            .create_load_balancer()
            .name(&at.name)
            .r#type(elbt::LoadBalancerTypeEnum::from(at.kind.as_str()))
            .scheme(elbt::LoadBalancerSchemeEnum::InternetFacing)
            .set_subnets(Some(subnets_ids))
            .set_tags(Some(ctx.elb_tags(a)));
        if r.refs.contains_key("security_groups") {
            req = req.set_security_groups(Some(security_groups_ids));
        }
        let out = ctx
            .settle("CreateLoadBalancer", a, || req.clone().send())
            .await?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .unwrap_or_default()
            .to_string();
        ctx.wait(a, "active", self.timeout(&ctx.timeouts), || async {
            let o = c
                .elb
                .describe_load_balancers()
                .load_balancer_arns(&arn)
                .send()
                .await
                .map_err(call_err("DescribeLoadBalancers", a))?;
            Ok(
                match o
                    .load_balancers()
                    .iter()
                    .find_map(|l| l.state().and_then(|s| s.code()))
                {
                    Some(code) => self.ready(code.as_str()),
                    None => Poll::Pending("not listed".into()),
                },
            )
        })
        .await?;
        Ok(arn)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        Attrs::of(want)?;
        let (a, id) = (want.addr.as_str(), have.id.as_str());
        let subnets_ids = ctx.ref_ids(want, "subnets").await?;
        ctx.settle("SetSubnets", a, || {
            ctx.c
                .elb
                .set_subnets()
                .load_balancer_arn(id)
                .set_subnets(Some(subnets_ids.clone()))
                .send()
        })
        .await?;
        if want.refs.contains_key("security_groups") {
            let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
            ctx.settle("SetSecurityGroups", a, || {
                ctx.c
                    .elb
                    .set_security_groups()
                    .load_balancer_arn(id)
                    .set_security_groups(Some(security_groups_ids.clone()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_elb(o).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteLoadBalancer", &o.res.addr, || {
            ctx.c
                .elb
                .delete_load_balancer()
                .load_balancer_arn(&o.id)
                .send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A balancer without its type is refused before CreateLoadBalancer (never a silent
    /// ALB); `active` and `active_impaired` serve, `failed` ends the wait.
    #[test]
    fn a_load_balancer_needs_its_type_and_fails_on_failed() {
        let r = Resource::new(ResKind::Lb, "aws_lb.web").attr("name", "hactl-web-lb");
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("kind".to_string()));
        assert_eq!(
            Lb.ready("provisioning"),
            Poll::Pending("provisioning".into())
        );
        assert_eq!(Lb.ready("active_impaired"), Poll::Ready);
        assert_eq!(Lb.ready("failed"), Poll::Failed("failed".into()));
        assert!(Lb.forces_replace("kind"));
        assert!(Lb.forces_replace("security_groups_at_create"));
        assert!(!Lb.forces_replace("subnets"));
        assert_eq!(Lb.timeout(&Timeouts::default()), Duration::from_secs(600));
    }
}
