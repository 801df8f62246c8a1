//! `aws_security_group`: what may reach the hosts, the balancer, EFS and RDS. Its VPC and name
//! cannot change in place; its ingress rules can, authorized and revoked as a set. A rule is
//! `<proto>/<port> from <source>` ([`desired::parse_rule`]), the source a CIDR, a group id, or
//! the address of one of the stack's groups (read back as that address). Ready when created;
//! a delete waits out the ENIs of a deleted load balancer or terminated instance
//! (`DependencyViolation`, `InvalidGroup.InUse`).

use std::collections::BTreeMap;

use aws_sdk_ec2::types as ec2t;

use super::shared::Ctx;
use super::{get, reference, Kind, MissingAttr};
use crate::provider::aws::desired;
use crate::provider::aws::model::{is_addr, Observed, ResKind, Resource};
use crate::provider::aws::observe::{Ids, Scan};
use crate::provider::aws::AwsError;

pub struct SecurityGroup;

/// The group as CreateSecurityGroup and its ingress calls need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub vpc: String,
    pub name: String,
    /// The ingress rules (none is a valid group: nothing may reach it).
    pub ingress: Vec<String>,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            vpc: reference(r, "vpc")?.to_string(),
            name: get(r, "name")?.to_string(),
            ingress: rules(r),
        })
    }
}

/// The ingress rules of `r` (its `ingress` attribute, `, `-separated).
fn rules(r: &Resource) -> Vec<String> {
    r.get("ingress")
        .unwrap_or_default()
        .split(", ")
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The rules of `a` that are not in `b`.
fn missing<'a>(a: &'a [String], b: &[String]) -> Vec<&'a String> {
    a.iter().filter(|r| !b.contains(r)).collect()
}

/// The EC2 permission for `rule`: its source a CIDR, a group id, or the address of one of the
/// stack's groups (`ids`: address → id; None while that group has no id).
fn ip_permission(ids: &BTreeMap<String, String>, rule: &str) -> Option<ec2t::IpPermission> {
    let (proto, port, from) = desired::parse_rule(rule)?;
    let b = ec2t::IpPermission::builder()
        .ip_protocol(proto)
        .from_port(port)
        .to_port(port);
    Some(if is_addr(&from) {
        b.user_id_group_pairs(
            ec2t::UserIdGroupPair::builder()
                .group_id(ids.get(&from)?)
                .build(),
        )
        .build()
    } else if from.starts_with("sg-") {
        b.user_id_group_pairs(ec2t::UserIdGroupPair::builder().group_id(from).build())
            .build()
    } else {
        b.ip_ranges(ec2t::IpRange::builder().cidr_ip(from).build())
            .build()
    })
}

#[async_trait::async_trait]
impl Kind for SecurityGroup {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "vpc" | "name")
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let groups = scan
            .ec2(
                ResKind::SecurityGroup,
                "DescribeSecurityGroups",
                "group-id",
                |g: &ec2t::SecurityGroup| (g.group_id(), g.tags()),
                |f, _| async move {
                    let o = c.ec2.describe_security_groups().filters(f).send().await;
                    o.map(|o| o.security_groups().to_vec())
                },
            )
            .await?;
        let mut out = Vec::new();
        for (g, mut o) in groups {
            // Rules keep group ids for now; resolve maps them to addresses with the rest.
            let mut rules = Vec::new();
            for p in g.ip_permissions() {
                let proto = p.ip_protocol().unwrap_or("-1");
                let port = p.from_port().unwrap_or(-1);
                for range in p.ip_ranges() {
                    if let Some(c) = range.cidr_ip() {
                        rules.push(desired::proto_rule(proto, port.into(), c));
                    }
                }
                for pair in p.user_id_group_pairs() {
                    if let Some(gid) = pair.group_id() {
                        rules.push(format!("{proto}/{port} from {gid}"));
                    }
                }
            }
            o.res = o
                .res
                .attr("name", g.group_name().unwrap_or_default())
                .reference("vpc", g.vpc_id().map(str::to_string).into_iter().collect());
            o.info.insert("rules".into(), rules.join("\n"));
            out.push(o);
        }
        Ok(out)
    }

    /// The rules' sources too: a group of the stack is named by its address, and the groups
    /// its rules admit are its `ingress_from` references.
    fn resolve(&self, o: &mut Observed, ids: &Ids<'_>) {
        ids.map_refs(&mut o.res);
        let mut rules: Vec<String> = o
            .info
            .get("rules")
            .map(|s| {
                s.lines()
                    .map(|l| match desired::parse_rule(l) {
                        Some((p, port, from)) => format!("{p}/{port} from {}", ids.addr_of(&from)),
                        None => l.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        rules.sort();
        rules.dedup();
        o.res.attrs.insert("ingress".into(), rules.join(", "));
        let mut from: Vec<String> = rules
            .iter()
            .filter_map(|r| desired::parse_rule(r).map(|(_, _, f)| f))
            .filter(|f| f.starts_with("aws_"))
            .collect();
        from.sort();
        from.dedup();
        o.res.refs.insert("ingress_from".into(), from);
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let vpc_id = ctx.id(a, &at.vpc).await?;
        let out = ctx
            .settle("CreateSecurityGroup", a, || {
                ctx.c
                    .ec2
                    .create_security_group()
                    .group_name(&at.name)
                    .description(format!("hactl {} {}", ctx.stack, a))
                    .vpc_id(&vpc_id)
                    .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::SecurityGroup, a))
                    .send()
            })
            .await?;
        let id = out.group_id().unwrap_or_default().to_string();
        // The rules: an update from a group without any.
        let empty = Observed {
            res: Resource::new(ResKind::SecurityGroup, a).attr("ingress", ""),
            id: id.clone(),
            info: BTreeMap::new(),
        };
        self.update(ctx, r, &empty).await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        let (a, id) = (want.addr.as_str(), have.id.as_str());
        let have_r = rules(&have.res);
        let ids = ctx.ids.lock().await.clone();
        let add: Vec<_> = missing(&at.ingress, &have_r)
            .into_iter()
            .filter_map(|r| ip_permission(&ids, r))
            .collect();
        let del: Vec<_> = missing(&have_r, &at.ingress)
            .into_iter()
            .filter_map(|r| ip_permission(&ids, r))
            .collect();
        if !add.is_empty() {
            ctx.settle("AuthorizeSecurityGroupIngress", a, || {
                ctx.c
                    .ec2
                    .authorize_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(add.clone()))
                    .send()
            })
            .await?;
        }
        if !del.is_empty() {
            ctx.settle("RevokeSecurityGroupIngress", a, || {
                ctx.c
                    .ec2
                    .revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(del.clone()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retry_busy("DeleteSecurityGroup", &o.res.addr, || {
            ctx.c.ec2.delete_security_group().group_id(&o.id).send()
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group without its name is refused before any call; no rules is a valid group; only
    /// the VPC and the name replace one.
    #[test]
    fn a_security_group_needs_vpc_and_name_not_rules() {
        let r = Resource::new(ResKind::SecurityGroup, "aws_security_group.hosts")
            .reference("vpc", vec!["aws_vpc.main".into()]);
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("name".to_string()));
        let r = r.attr("name", "hactl-web-hosts");
        assert_eq!(Attrs::of(&r).map(|a| a.ingress), Ok(vec![]));
        assert!(SecurityGroup.forces_replace("name"));
        assert!(!SecurityGroup.forces_replace("ingress"));
    }

    /// A rule's source is a CIDR range, a group id, or one of the stack's groups by address;
    /// a group of the stack without an id yet gives no permission (never an empty group id).
    #[test]
    fn rules_become_ip_permissions_by_their_source() {
        let ids: BTreeMap<String, String> =
            [("aws_security_group.lb".to_string(), "sg-lb".to_string())].into();
        let cidr = ip_permission(&ids, &desired::rule(22, "0.0.0.0/0")).expect("cidr");
        assert_eq!(cidr.ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));
        assert_eq!((cidr.from_port(), cidr.to_port()), (Some(22), Some(22)));
        let by_addr =
            ip_permission(&ids, &desired::rule(80, "aws_security_group.lb")).expect("group");
        assert_eq!(by_addr.user_id_group_pairs()[0].group_id(), Some("sg-lb"));
        assert!(ip_permission(&ids, &desired::rule(80, "aws_security_group.efs")).is_none());
        let have = vec!["a".to_string(), "b".to_string()];
        assert_eq!(missing(&have, &["b".to_string()]), [&"a".to_string()]);
    }
}
