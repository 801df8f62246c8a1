//! `aws_lb_target_group`: where the load balancer sends traffic, with its health check.
//! Replaced create-before-destroy (its AWS name carries the protocol and port that force the
//! replacement, so old and new coexist while the listeners are repointed; DeleteTargetGroup
//! answers `ResourceInUse` while a listener forwards to it). The health check and the
//! deregistration delay change in place. Ready when created. The scan reads every target group
//! of the region (ELBv2 has no tag filter) and keeps those whose tags are the stack's.

use aws_sdk_elasticloadbalancingv2::types as elbt;

use super::shared::{api, Ctx};
use super::{get, parse, reference, Kind, MissingAttr};
use crate::provider::aws::model::{Observed, ResKind, Resource, TAG_ADDRESS, TAG_STACK};
use crate::provider::aws::observe::{owned, Scan, MID_SCAN};
use crate::provider::aws::wait::settle;
use crate::provider::aws::AwsError;

pub struct TargetGroup;

/// The group as CreateTargetGroup and ModifyTargetGroup need it (seconds for the durations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub vpc: String,
    pub name: String,
    pub protocol: String,
    pub port: i32,
    pub health_check_path: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    /// The health check's success codes (`Matcher.HttpCode`), when the stack states them.
    pub matcher: Option<String>,
    /// `deregistration_delay.timeout_seconds` (ELB's default: 300).
    pub deregistration_delay: Option<String>,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            vpc: reference(r, "vpc")?.to_string(),
            name: get(r, "name")?.to_string(),
            protocol: get(r, "protocol")?.to_string(),
            port: parse(r, "port")?,
            health_check_path: get(r, "health_check.path")?.to_string(),
            interval: parse(r, "health_check.interval")?,
            timeout: parse(r, "health_check.timeout")?,
            healthy_threshold: parse(r, "health_check.healthy_threshold")?,
            unhealthy_threshold: parse(r, "health_check.unhealthy_threshold")?,
            matcher: r
                .get("health_check.matcher")
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            deregistration_delay: r.get("deregistration_delay").map(str::to_string),
        })
    }

    fn matcher(&self) -> Option<elbt::Matcher> {
        self.matcher
            .as_deref()
            .map(|m| elbt::Matcher::builder().http_code(m).build())
    }
}

/// Sets the group's deregistration delay (30 s unless the stack says otherwise: ELB's 300 s
/// default makes every rolled instance wait five minutes).
async fn set_dereg(ctx: &Ctx, addr: &str, arn: &str, at: &Attrs) -> Result<(), AwsError> {
    ctx.settle("ModifyTargetGroupAttributes", addr, || {
        ctx.c
            .elb
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .attributes(
                elbt::TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value(at.deregistration_delay.as_deref().unwrap_or("30"))
                    .build(),
            )
            .send()
    })
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Kind for TargetGroup {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "port" | "protocol" | "vpc" | "name")
    }

    fn create_before_destroy(&self) -> bool {
        true
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        // Region-wide: every page (ELBv2 pages by 400 at most).
        let tgs: Vec<_> = c
            .elb
            .describe_target_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(api("DescribeTargetGroups", "(read)"))?;
        let arns: Vec<String> = tgs
            .iter()
            .filter_map(|t| t.target_group_arn().map(str::to_string))
            .collect();
        let tags = scan.elb_tags(&arns).await?;
        let mut out = Vec::new();
        for t in &tgs {
            let Some(arn) = t.target_group_arn() else {
                continue;
            };
            let tag = |k: &str| tags.get(arn).and_then(|t| t.get(k)).map(String::as_str);
            let Some(who) = scan.who(ResKind::TargetGroup, arn, tag(TAG_STACK), tag(TAG_ADDRESS))
            else {
                continue;
            };
            let mut o = owned(ResKind::TargetGroup, who, arn);
            o.res = o
                .res
                .attr("name", t.target_group_name().unwrap_or_default())
                .attr(
                    "protocol",
                    t.protocol().map(|p| p.as_str()).unwrap_or_default(),
                )
                .attr("port", t.port().unwrap_or_default())
                .attr(
                    "health_check.path",
                    t.health_check_path().unwrap_or_default(),
                )
                .attr(
                    "health_check.interval",
                    t.health_check_interval_seconds().unwrap_or_default(),
                )
                .attr(
                    "health_check.timeout",
                    t.health_check_timeout_seconds().unwrap_or_default(),
                )
                .attr(
                    "health_check.healthy_threshold",
                    t.healthy_threshold_count().unwrap_or_default(),
                )
                .attr(
                    "health_check.unhealthy_threshold",
                    t.unhealthy_threshold_count().unwrap_or_default(),
                )
                .attr(
                    "health_check.matcher",
                    t.matcher().and_then(|m| m.http_code()).unwrap_or_default(),
                )
                .reference("vpc", t.vpc_id().map(str::to_string).into_iter().collect());
            out.push(o);
        }
        // The deregistration delay is an attribute of its own, one group at a time. Each read
        // names a group just listed: NotFound is asked again for `MID_SCAN`.
        let delays = futures::future::try_join_all(out.iter().map(|o| async move {
            let attrs = settle(MID_SCAN, "DescribeTargetGroupAttributes", "(read)", || {
                c.elb
                    .describe_target_group_attributes()
                    .target_group_arn(&o.id)
                    .send()
            })
            .await?;
            Ok::<_, AwsError>(
                attrs
                    .attributes()
                    .iter()
                    .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
                    .and_then(|a| a.value())
                    .unwrap_or("300")
                    .to_string(),
            )
        }))
        .await?;
        for (o, dereg) in out.iter_mut().zip(delays) {
            o.res.attrs.insert("deregistration_delay".into(), dereg);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let vpc_id = ctx.id(a, &at.vpc).await?;
        let out = ctx
            .settle("CreateTargetGroup", a, || {
                ctx.c
                    .elb
                    .create_target_group()
                    .name(&at.name)
                    .protocol(elbt::ProtocolEnum::from(at.protocol.as_str()))
                    .port(at.port)
                    .vpc_id(&vpc_id)
                    .target_type(elbt::TargetTypeEnum::Instance)
                    .health_check_protocol(elbt::ProtocolEnum::Http)
                    .health_check_path(&at.health_check_path)
                    .health_check_interval_seconds(at.interval)
                    .health_check_timeout_seconds(at.timeout)
                    .healthy_threshold_count(at.healthy_threshold)
                    .unhealthy_threshold_count(at.unhealthy_threshold)
                    .set_matcher(at.matcher())
                    .set_tags(Some(ctx.elb_tags(a)))
                    .send()
            })
            .await?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .unwrap_or_default()
            .to_string();
        set_dereg(ctx, a, &arn, &at).await?;
        Ok(arn)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        let (a, id) = (want.addr.as_str(), have.id.as_str());
        ctx.settle("ModifyTargetGroup", a, || {
            ctx.c
                .elb
                .modify_target_group()
                .target_group_arn(id)
                .health_check_path(&at.health_check_path)
                .health_check_interval_seconds(at.interval)
                .health_check_timeout_seconds(at.timeout)
                .healthy_threshold_count(at.healthy_threshold)
                .unhealthy_threshold_count(at.unhealthy_threshold)
                .set_matcher(at.matcher())
                .send()
        })
        .await?;
        if want.get("deregistration_delay") != have.res.get("deregistration_delay") {
            set_dereg(ctx, a, id, &at).await?;
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_elb(o).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteTargetGroup", &o.res.addr, || {
            ctx.c
                .elb
                .delete_target_group()
                .target_group_arn(&o.id)
                .send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Resource {
        Resource::new(ResKind::TargetGroup, "aws_lb_target_group.web")
            .reference("vpc", vec!["aws_vpc.main".into()])
            .attr("name", "hactl-web-tg-http-80")
            .attr("protocol", "HTTP")
            .attr("port", 80)
            .attr("health_check.path", "/healthz")
            .attr("health_check.interval", 10)
            .attr("health_check.timeout", 5)
            .attr("health_check.healthy_threshold", 2)
    }

    /// A group without a threshold is refused before CreateTargetGroup, naming it; an empty
    /// matcher is no matcher (ELB's default codes), never `""` sent as the codes.
    #[test]
    fn a_target_group_needs_its_health_check() {
        assert_eq!(
            Attrs::of(&group()).map_err(|e| e.key),
            Err("health_check.unhealthy_threshold".to_string())
        );
        let r = group()
            .attr("health_check.unhealthy_threshold", 3)
            .attr("health_check.matcher", "");
        let at = Attrs::of(&r).expect("complete");
        assert_eq!(at.matcher(), None);
        let r = r.attr("port", "eighty");
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("port".to_string()));
    }

    /// Protocol and port force a new group (made before the old one goes); the health check
    /// changes in place.
    #[test]
    fn port_and_protocol_replace_the_group_first() {
        assert!(TargetGroup.forces_replace("port"));
        assert!(TargetGroup.forces_replace("protocol"));
        assert!(!TargetGroup.forces_replace("health_check.path"));
        assert!(!TargetGroup.forces_replace("deregistration_delay"));
        assert!(TargetGroup.create_before_destroy());
    }
}
