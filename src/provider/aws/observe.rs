//! Reads everything that carries `hactl:stack=<name>` and describes it as [`Observed`]
//! resources whose references are addresses (ids mapped back through the `hactl:address`
//! tags). Listeners, target registrations and EFS mount targets have no tags of their own and
//! are read through the balancer, target group and file system they belong to.
//!
//! All list calls of one round run concurrently: a no-op plan is two rounds of requests. The
//! region-wide listings (load balancers, target groups, file systems, DB instances) are read
//! page by page to the end: a busy account has more than one page (moto pages load balancers
//! by 50 and file systems by 10), and a resource on page two is not absent.

use std::collections::BTreeMap;

use super::client::Clients;
use super::desired::{self, listener_addr, mount_target_addr};
use super::model::{
    Observed, Recorded, ResKind, Resource, INFO_RETAG, TAG_ADDRESS, TAG_PUBLIC_KEY, TAG_STACK,
};
use super::wait::settle;
use super::{sdk_message, AwsError};

fn api<E, R>(op: &'static str) -> impl Fn(aws_sdk_ec2::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| AwsError::Api {
        op,
        addr: "(read)".into(),
        message: sdk_message(&e),
    }
}

fn ec2_tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn stack_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{TAG_STACK}"))
        .values(stack)
        .build()
}

/// A resource read from AWS before its references are mapped to addresses.
struct Raw {
    obs: Observed,
}

fn raw(kind: ResKind, addr: &str, id: &str) -> Raw {
    Raw {
        obs: Observed {
            res: Resource::new(kind, addr),
            id: id.to_string(),
            info: BTreeMap::new(),
        },
    }
}

/// A resource of this stack at `addr`, noting the ownership tags it lacks (found by id).
fn owned(kind: ResKind, (addr, retag): (String, Vec<&str>), id: &str) -> Raw {
    let mut r = raw(kind, &addr, id);
    if !retag.is_empty() {
        r.obs.info.insert(INFO_RETAG.into(), retag.join(", "));
    }
    r
}

/// Which of this stack's resources an AWS resource is, and which ownership tags it lacks.
///
/// The state is read first: an id it recorded is that address, whatever its tags say now (a
/// console tag clean-up does not make a running resource someone else's); the tags it should
/// carry and does not are listed for a re-tag. Without a record, the tags decide (discovery,
/// as when the state is lost).
struct Owner<'a> {
    stack: &'a str,
    /// (kind, id) → address: ids are unique per kind only (the DB instance and its subnet
    /// group share the name `hactl-<stack>-db`).
    by_id: BTreeMap<(ResKind, &'a str), &'a str>,
}

impl<'a> Owner<'a> {
    fn new(stack: &'a str, recorded: &'a Recorded) -> Owner<'a> {
        // Listeners, registrations and mount targets are read through their parents (the
        // attachment's id is its target group's ARN: it must not claim the group).
        let by_id = recorded
            .iter()
            .filter(|(_, (k, _))| {
                !matches!(
                    k,
                    ResKind::Listener | ResKind::TargetAttachment | ResKind::EfsMountTarget
                )
            })
            .map(|(a, (k, id))| ((*k, id.as_str()), a.as_str()))
            .collect();
        Owner { stack, by_id }
    }

    fn of(
        &self,
        kind: ResKind,
        id: &str,
        stack_tag: Option<&str>,
        addr_tag: Option<&str>,
    ) -> Option<(String, Vec<&'static str>)> {
        if let Some(a) = self.by_id.get(&(kind, id)) {
            let mut retag = Vec::new();
            if stack_tag != Some(self.stack) {
                retag.push(TAG_STACK);
            }
            if addr_tag != Some(*a) {
                retag.push(TAG_ADDRESS);
            }
            return Some((a.to_string(), retag));
        }
        if stack_tag != Some(self.stack) {
            return None;
        }
        addr_tag.map(|a| (a.to_string(), Vec::new()))
    }

    /// The recorded ids of `kind` that a tag listing did not return.
    fn missing<'i>(
        recorded: &Recorded,
        kind: ResKind,
        seen: impl IntoIterator<Item = &'i str>,
    ) -> Vec<String> {
        let seen: std::collections::BTreeSet<&str> = seen.into_iter().collect();
        recorded
            .values()
            .filter(|(k, id)| *k == kind && !seen.contains(id.as_str()))
            .map(|(_, id)| id.clone())
            .collect()
    }
}

fn id_filter(name: &str, ids: &[String]) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(ids.to_vec()))
        .build()
}

/// Everything of this stack that exists now: what carries its tags, and what the state
/// recorded (`recorded`; empty when the state is lost), read by id when its tags are gone.
/// A no-op plan is two rounds of requests; a recorded resource that lost its tags adds one.
pub async fn observe(
    c: &Clients,
    stack: &str,
    given_subnets: &[String],
    recorded: &Recorded,
) -> Result<Vec<Observed>, AwsError> {
    let owner = Owner::new(stack, recorded);
    let f = || stack_filter(stack);
    let (vpcs, subnets, igws, rtbs, sgs, keys, insts, lbs, tgs, fss, dbs, dbsg) = tokio::join!(
        c.ec2.describe_vpcs().filters(f()).send(),
        c.ec2.describe_subnets().filters(f()).send(),
        c.ec2.describe_internet_gateways().filters(f()).send(),
        c.ec2.describe_route_tables().filters(f()).send(),
        c.ec2.describe_security_groups().filters(f()).send(),
        c.ec2.describe_key_pairs().filters(f()).send(),
        c.ec2
            .describe_instances()
            .filters(f())
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build()
            )
            .send(),
        // Region-wide listings: every page (ELBv2 pages by 400 at most, EFS by 100 and RDS by
        // 100 by default; a busy account has more than one).
        c.elb
            .describe_load_balancers()
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        c.elb
            .describe_target_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        c.efs
            .describe_file_systems()
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        c.rds
            .describe_db_instances()
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        c.rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(desired::aws_name(stack, "db", 255))
            .send(),
    );
    let mut raws: Vec<Raw> = Vec::new();
    let mut our_vpcs: Vec<(String, String)> = Vec::new();

    let vpcs = vpcs.map_err(api("DescribeVpcs"))?;
    let subnets = subnets.map_err(api("DescribeSubnets"))?;
    let igws = igws.map_err(api("DescribeInternetGateways"))?;
    let rtbs = rtbs.map_err(api("DescribeRouteTables"))?;
    let sgs = sgs.map_err(api("DescribeSecurityGroups"))?;
    let keys = keys.map_err(api("DescribeKeyPairs"))?;
    let insts = insts.map_err(api("DescribeInstances"))?;
    let tagged_instances = insts.reservations().iter().flat_map(|r| r.instances());
    // What the state recorded and the tag listings did not return: read by id (filters, so an
    // id that is gone is simply absent), all at once and only when there is any.
    let m_vpc = Owner::missing(
        recorded,
        ResKind::Vpc,
        vpcs.vpcs().iter().filter_map(|v| v.vpc_id()),
    );
    let m_sub = Owner::missing(
        recorded,
        ResKind::Subnet,
        subnets.subnets().iter().filter_map(|v| v.subnet_id()),
    );
    let m_igw = Owner::missing(
        recorded,
        ResKind::InternetGateway,
        igws.internet_gateways()
            .iter()
            .filter_map(|v| v.internet_gateway_id()),
    );
    let m_rtb = Owner::missing(
        recorded,
        ResKind::RouteTable,
        rtbs.route_tables()
            .iter()
            .filter_map(|v| v.route_table_id()),
    );
    let m_sg = Owner::missing(
        recorded,
        ResKind::SecurityGroup,
        sgs.security_groups().iter().filter_map(|v| v.group_id()),
    );
    let m_key = Owner::missing(
        recorded,
        ResKind::KeyPair,
        keys.key_pairs().iter().filter_map(|v| v.key_name()),
    );
    let m_inst = Owner::missing(
        recorded,
        ResKind::Instance,
        tagged_instances.clone().filter_map(|v| v.instance_id()),
    );
    let (x_vpc, x_sub, x_igw, x_rtb, x_sg, x_key, x_inst) = tokio::join!(
        async {
            if m_vpc.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_vpcs()
                .filters(id_filter("vpc-id", &m_vpc))
                .send()
                .await
                .map(|o| o.vpcs().to_vec())
        },
        async {
            if m_sub.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_subnets()
                .filters(id_filter("subnet-id", &m_sub))
                .send()
                .await
                .map(|o| o.subnets().to_vec())
        },
        async {
            if m_igw.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_internet_gateways()
                .filters(id_filter("internet-gateway-id", &m_igw))
                .send()
                .await
                .map(|o| o.internet_gateways().to_vec())
        },
        async {
            if m_rtb.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_route_tables()
                .filters(id_filter("route-table-id", &m_rtb))
                .send()
                .await
                .map(|o| o.route_tables().to_vec())
        },
        async {
            if m_sg.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_security_groups()
                .filters(id_filter("group-id", &m_sg))
                .send()
                .await
                .map(|o| o.security_groups().to_vec())
        },
        async {
            if m_key.is_empty() {
                return Ok(Vec::new());
            }
            // The material too: a pair that lost its tags lost the fingerprint tag as well.
            c.ec2
                .describe_key_pairs()
                .filters(id_filter("key-name", &m_key))
                .include_public_key(true)
                .send()
                .await
                .map(|o| o.key_pairs().to_vec())
        },
        async {
            if m_inst.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_instances()
                .filters(id_filter("instance-id", &m_inst))
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .values("stopping")
                        .values("stopped")
                        .build(),
                )
                .send()
                .await
                .map(|o| {
                    o.reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .cloned()
                        .collect()
                })
        },
    );
    let x_vpc: Vec<_> = x_vpc.map_err(api("DescribeVpcs"))?;
    let x_sub: Vec<_> = x_sub.map_err(api("DescribeSubnets"))?;
    let x_igw: Vec<_> = x_igw.map_err(api("DescribeInternetGateways"))?;
    let x_rtb: Vec<_> = x_rtb.map_err(api("DescribeRouteTables"))?;
    let x_sg: Vec<_> = x_sg.map_err(api("DescribeSecurityGroups"))?;
    let x_key: Vec<_> = x_key.map_err(api("DescribeKeyPairs"))?;
    let x_inst: Vec<_> = x_inst.map_err(api("DescribeInstances"))?;

    for v in vpcs.vpcs().iter().chain(&x_vpc) {
        let Some(id) = v.vpc_id() else { continue };
        let tags = v.tags();
        let Some(who) = owner.of(
            ResKind::Vpc,
            id,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        ) else {
            continue;
        };
        let mut r = owned(ResKind::Vpc, who, id);
        r.obs.res = r.obs.res.attr("cidr", v.cidr_block().unwrap_or_default());
        our_vpcs.push((r.obs.res.addr.clone(), id.to_string()));
        raws.push(r);
    }
    for s in subnets.subnets().iter().chain(&x_sub) {
        let Some(id) = s.subnet_id() else { continue };
        let tags = s.tags();
        let Some(who) = owner.of(
            ResKind::Subnet,
            id,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        ) else {
            continue;
        };
        let mut r = owned(ResKind::Subnet, who, id);
        r.obs.res = r
            .obs
            .res
            .attr("cidr", s.cidr_block().unwrap_or_default())
            .attr("zone", s.availability_zone().unwrap_or_default())
            .attr(
                "map_public_ip",
                s.map_public_ip_on_launch().unwrap_or(false),
            )
            .reference("vpc", s.vpc_id().map(str::to_string).into_iter().collect());
        r.obs.info.insert(
            "zone".into(),
            s.availability_zone().unwrap_or_default().into(),
        );
        raws.push(r);
    }
    for g in igws.internet_gateways().iter().chain(&x_igw) {
        let Some(id) = g.internet_gateway_id() else {
            continue;
        };
        let tags = g.tags();
        let Some(who) = owner.of(
            ResKind::InternetGateway,
            id,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        ) else {
            continue;
        };
        let mut r = owned(ResKind::InternetGateway, who, id);
        let vpcs = g
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id().map(str::to_string))
            .collect();
        r.obs.res = r.obs.res.reference("vpc", vpcs);
        raws.push(r);
    }
    for t in rtbs.route_tables().iter().chain(&x_rtb) {
        let Some(id) = t.route_table_id() else {
            continue;
        };
        let tags = t.tags();
        let Some(who) = owner.of(
            ResKind::RouteTable,
            id,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        ) else {
            continue;
        };
        let mut r = owned(ResKind::RouteTable, who, id);
        let gw = t
            .routes()
            .iter()
            .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .filter_map(|r| r.gateway_id().map(str::to_string))
            .collect();
        let subnets = t
            .associations()
            .iter()
            .filter(|a| a.main() != Some(true))
            .filter_map(|a| a.subnet_id().map(str::to_string))
            .collect();
        let assoc: Vec<String> = t
            .associations()
            .iter()
            .filter(|a| a.main() != Some(true))
            .filter_map(|a| {
                Some(format!(
                    "{}={}",
                    a.subnet_id()?,
                    a.route_table_association_id()?
                ))
            })
            .collect();
        r.obs.info.insert("associations".into(), assoc.join(","));
        r.obs.res = r
            .obs
            .res
            .reference("vpc", t.vpc_id().map(str::to_string).into_iter().collect())
            .reference("gateway", gw)
            .reference("subnets", subnets);
        raws.push(r);
    }
    for g in sgs.security_groups().iter().chain(&x_sg) {
        let Some(id) = g.group_id() else { continue };
        let tags = g.tags();
        let Some(who) = owner.of(
            ResKind::SecurityGroup,
            id,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        ) else {
            continue;
        };
        let mut r = owned(ResKind::SecurityGroup, who, id);
        // Rules keep group ids for now; they are mapped to addresses below with the rest.
        let mut rules = Vec::new();
        for p in g.ip_permissions() {
            let proto = p.ip_protocol().unwrap_or("-1");
            let port = p.from_port().unwrap_or(-1);
            for range in p.ip_ranges() {
                if let Some(c) = range.cidr_ip() {
                    rules.push(desired::rule(port.into(), c));
                }
            }
            for pair in p.user_id_group_pairs() {
                if let Some(gid) = pair.group_id() {
                    rules.push(format!("{proto}/{port} from {gid}"));
                }
            }
        }
        r.obs.res = r
            .obs
            .res
            .attr("name", g.group_name().unwrap_or_default())
            .reference("vpc", g.vpc_id().map(str::to_string).into_iter().collect());
        r.obs.info.insert("rules".into(), rules.join("\n"));
        raws.push(r);
    }
    for k in keys.key_pairs().iter().chain(&x_key) {
        let Some(name) = k.key_name() else { continue };
        let tags = k.tags();
        let Some((addr, mut retag)) = owner.of(
            ResKind::KeyPair,
            name,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        ) else {
            continue;
        };
        // The fingerprint hactl compares lives in a tag; a pair read by id brings its material.
        let sha = match (ec2_tag(tags, TAG_PUBLIC_KEY), k.public_key()) {
            (Some(t), _) => t.to_string(),
            (None, Some(material)) => {
                retag.push(TAG_PUBLIC_KEY);
                desired::public_key_sha256(material)
            }
            (None, None) => String::new(),
        };
        // The name is the id: RunInstances and DeleteKeyPair take it.
        let mut r = owned(ResKind::KeyPair, (addr, retag), name);
        r.obs.res = r.obs.res.attr("name", name).attr("public_key_sha256", sha);
        if let Some(id) = k.key_pair_id() {
            r.obs.info.insert("key_pair_id".into(), id.into());
        }
        raws.push(r);
    }
    {
        for i in tagged_instances.chain(&x_inst) {
            let Some(id) = i.instance_id() else { continue };
            let tags = i.tags();
            let Some(who) = owner.of(
                ResKind::Instance,
                id,
                ec2_tag(tags, TAG_STACK),
                ec2_tag(tags, TAG_ADDRESS),
            ) else {
                continue;
            };
            let mut r = owned(ResKind::Instance, who, id);
            let mut res = r
                .obs
                .res
                .attr(
                    "instance_type",
                    i.instance_type().map(|t| t.as_str()).unwrap_or_default(),
                )
                .attr("ami", i.image_id().unwrap_or_default())
                .attr(
                    "metadata.http_tokens",
                    i.metadata_options()
                        .and_then(|m| m.http_tokens())
                        .map(|t| t.as_str())
                        .unwrap_or("optional"),
                )
                .attr(
                    "metadata.hop_limit",
                    i.metadata_options()
                        .and_then(|m| m.http_put_response_hop_limit())
                        .unwrap_or(1),
                )
                .reference(
                    "subnet",
                    i.subnet_id().map(str::to_string).into_iter().collect(),
                )
                .reference(
                    "security_groups",
                    i.security_groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                );
            if let Some(k) = i.key_name() {
                // Mapped to the key pair's address below when it is this stack's own.
                res = res
                    .attr("key_name", k)
                    .reference("key_pair", vec![k.to_string()]);
            }
            r.obs.res = res;
            let info = &mut r.obs.info;
            if let Some(ip) = i.private_ip_address() {
                info.insert("private_ip".into(), ip.into());
            }
            if let Some(ip) = i.public_ip_address() {
                info.insert("public_ip".into(), ip.into());
            }
            if let Some(z) = i.placement().and_then(|p| p.availability_zone()) {
                info.insert("zone".into(), z.into());
            }
            // `heal` replaces a stopped one; the diff of `up` does not look at it.
            if let Some(s) = i.state().and_then(|s| s.name()) {
                info.insert("state".into(), s.as_str().into());
            }
            raws.push(r);
        }
    }

    // ELBv2 lists everything; our resources are the ones whose tags say so.
    let lbs = lbs.map_err(api("DescribeLoadBalancers"))?;
    let tgs = tgs.map_err(api("DescribeTargetGroups"))?;
    let arns: Vec<String> = lbs
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .chain(
            tgs.iter()
                .filter_map(|t| t.target_group_arn().map(str::to_string)),
        )
        .collect();
    let elb_tags = elb_tags(c, &arns).await?;
    let ours = |kind: ResKind, arn: Option<&str>| -> Option<(String, Vec<&'static str>)> {
        let arn = arn?;
        let t = elb_tags.get(arn);
        let tag = |k: &str| t.and_then(|t| t.get(k)).map(String::as_str);
        owner.of(kind, arn, tag(TAG_STACK), tag(TAG_ADDRESS))
    };
    let mut our_lbs = Vec::new();
    for l in &lbs {
        let Some(who) = ours(ResKind::Lb, l.load_balancer_arn()) else {
            continue;
        };
        let addr = who.0.clone();
        let arn = l.load_balancer_arn().unwrap_or_default();
        let mut r = owned(ResKind::Lb, who, arn);
        let mut res = r
            .obs
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
        if !l.security_groups().is_empty() {
            res = res.reference("security_groups", l.security_groups().to_vec());
        }
        r.obs.res = res;
        r.obs
            .info
            .insert("dns_name".into(), l.dns_name().unwrap_or_default().into());
        our_lbs.push((addr, arn.to_string()));
        raws.push(r);
    }
    let mut our_tgs = Vec::new();
    for t in &tgs {
        let Some(who) = ours(ResKind::TargetGroup, t.target_group_arn()) else {
            continue;
        };
        let addr = who.0.clone();
        let arn = t.target_group_arn().unwrap_or_default();
        let mut r = owned(ResKind::TargetGroup, who, arn);
        r.obs.res = r
            .obs
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
        our_tgs.push((addr, arn.to_string()));
        raws.push(r);
    }

    let mut our_fs = Vec::new();
    for f in &fss.map_err(api("DescribeFileSystems"))? {
        let tag = |k: &str| {
            f.tags()
                .iter()
                .find(|t| t.key() == k)
                .map(|t| t.value().to_string())
        };
        if matches!(
            f.life_cycle_state(),
            aws_sdk_efs::types::LifeCycleState::Deleted
                | aws_sdk_efs::types::LifeCycleState::Deleting
        ) {
            continue;
        }
        let id = f.file_system_id();
        let Some(who) = owner.of(
            ResKind::EfsFileSystem,
            id,
            tag(TAG_STACK).as_deref(),
            tag(TAG_ADDRESS).as_deref(),
        ) else {
            continue;
        };
        let addr = who.0.clone();
        let mut r = owned(ResKind::EfsFileSystem, who, id);
        r.obs.res = r
            .obs
            .res
            .attr("performance_mode", f.performance_mode().as_str())
            .attr("encrypted", f.encrypted().unwrap_or(false));
        r.obs.info.insert(
            "dns_name".into(),
            format!("{id}.efs.{}.amazonaws.com", c.region),
        );
        our_fs.push((addr, id.to_string()));
        raws.push(r);
    }

    for d in &dbs.map_err(api("DescribeDBInstances"))? {
        let tag = |k: &str| {
            d.tag_list()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
        };
        if d.db_instance_status() == Some("deleting") {
            continue;
        }
        let id = d.db_instance_identifier().unwrap_or_default();
        let Some(who) = owner.of(ResKind::DbInstance, id, tag(TAG_STACK), tag(TAG_ADDRESS)) else {
            continue;
        };
        let mut r = owned(ResKind::DbInstance, who, id);
        if let Some(arn) = d.db_instance_arn() {
            r.obs.info.insert("arn".into(), arn.into());
        }
        r.obs.res = r
            .obs
            .res
            .attr("identifier", id)
            .attr("engine", d.engine().unwrap_or_default())
            .attr("engine_version", d.engine_version().unwrap_or_default())
            .attr("instance_class", d.db_instance_class().unwrap_or_default())
            .attr("storage_gb", d.allocated_storage().unwrap_or_default())
            .attr("multi_az", d.multi_az().unwrap_or(false))
            .attr("db_name", d.db_name().unwrap_or_default())
            .attr(
                "deletion_protection",
                d.deletion_protection().unwrap_or(false),
            )
            .reference(
                "subnet_group",
                d.db_subnet_group()
                    .and_then(|g| g.db_subnet_group_name())
                    .map(str::to_string)
                    .into_iter()
                    .collect(),
            )
            .reference(
                "security_groups",
                d.vpc_security_groups()
                    .iter()
                    .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                    .collect(),
            );
        // The port is known from the endpoint only: until the instance is available RDS has
        // none and reports `DbInstancePort` 0, which must not plan a port change.
        match d.endpoint().and_then(|e| e.port()) {
            Some(port) => r.obs.res = r.obs.res.attr("port", port),
            None => {
                r.obs
                    .info
                    .insert(super::diff::UNKNOWN.into(), "port".into());
            }
        }
        if let Some(e) = d.endpoint() {
            r.obs
                .info
                .insert("endpoint".into(), e.address().unwrap_or_default().into());
            r.obs
                .info
                .insert("port".into(), e.port().unwrap_or_default().to_string());
        }
        raws.push(r);
    }

    // The DB subnet group is found by its name, then confirmed by its tags. Only
    // DBSubnetGroupNotFound means there is none: any other failure fails the read, never
    // "absent" (which would plan a second group and a replaced database).
    let dbsg = match dbsg {
        Ok(out) => out.db_subnet_groups().to_vec(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_db_subnet_group_not_found_fault()) =>
        {
            Vec::new()
        }
        Err(e) => return Err(api("DescribeDBSubnetGroups")(e)),
    };
    {
        for g in &dbsg {
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
                .map_err(api("ListTagsForResource"))?;
            let tag = |k: &str| {
                tags.tag_list()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
            };
            let Some(who) = owner.of(
                ResKind::DbSubnetGroup,
                name,
                tag(TAG_STACK),
                tag(TAG_ADDRESS),
            ) else {
                continue;
            };
            let mut r = owned(ResKind::DbSubnetGroup, who, name);
            r.obs.info.insert("arn".into(), arn.into());
            r.obs.res = r.obs.res.attr("name", name).reference(
                "subnets",
                g.subnets()
                    .iter()
                    .filter_map(|s| s.subnet_identifier().map(str::to_string))
                    .collect(),
            );
            raws.push(r);
        }
    }

    // Second round: what hangs off the balancer, target groups and file systems. Each read
    // names a resource the first round listed: NotFound is a new one EC2/ELB/EFS lists before
    // it answers for it (a killed run's), asked again for `MID_SCAN` ([`wait::settle`]).
    let listeners = futures::future::try_join_all(our_lbs.iter().map(|(addr, arn)| async move {
        let out = settle(MID_SCAN, "DescribeListeners", "(read)", || {
            c.elb.describe_listeners().load_balancer_arn(arn).send()
        })
        .await?;
        let mut v = Vec::new();
        for l in out.listeners() {
            let port = l.port().unwrap_or_default();
            let mut r = raw(
                ResKind::Listener,
                &listener_addr(port.into()),
                l.listener_arn().unwrap_or_default(),
            );
            // The default certificate (DescribeListeners lists only that one).
            if let Some(arn) = l.certificates().first().and_then(|c| c.certificate_arn()) {
                r.obs.res = r.obs.res.attr("certificate_arn", arn);
            }
            r.obs.res = r
                .obs
                .res
                .attr("port", port)
                .attr(
                    "protocol",
                    l.protocol().map(|p| p.as_str()).unwrap_or_default(),
                )
                .reference("lb", vec![addr.clone()])
                .reference(
                    "target_group",
                    l.default_actions()
                        .iter()
                        .filter_map(|a| a.target_group_arn().map(str::to_string))
                        .collect(),
                );
            v.push(r);
        }
        Ok::<_, AwsError>(v)
    }));
    let tg_details = futures::future::try_join_all(our_tgs.iter().map(|(addr, arn)| async move {
        let (attrs, health) = tokio::join!(
            settle(MID_SCAN, "DescribeTargetGroupAttributes", "(read)", || {
                c.elb
                    .describe_target_group_attributes()
                    .target_group_arn(arn)
                    .send()
            }),
            settle(MID_SCAN, "DescribeTargetHealth", "(read)", || {
                c.elb.describe_target_health().target_group_arn(arn).send()
            })
        );
        let attrs = attrs?;
        let dereg = attrs
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value())
            .unwrap_or("300")
            .to_string();
        let targets: Vec<String> = health?
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect();
        let mut att = raw(ResKind::TargetAttachment, desired::ATTACH, arn);
        att.obs.res = att
            .obs
            .res
            .reference("target_group", vec![addr.clone()])
            .reference("targets", targets);
        Ok::<_, AwsError>((addr.clone(), dereg, att))
    }));
    let mounts = futures::future::try_join_all(our_fs.iter().map(|(addr, id)| async move {
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
            // change). One that is not in a state to answer, or that answers NotFound although
            // it was just listed (a new mount target EFS lists before it answers for it:
            // taking it for gone planned a second create, `MountTargetConflict`), has groups
            // not known yet: it is observed, and no change is planned from them.
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
                Err(e) => return Err(api("DescribeMountTargetSecurityGroups")(e)),
            };
            let mut r = raw(ResKind::EfsMountTarget, "", m.mount_target_id());
            r.obs.res = r
                .obs
                .res
                .reference("file_system", vec![addr.clone()])
                .reference("subnet", vec![m.subnet_id().to_string()]);
            match sgs {
                Some(sgs) => r.obs.res = r.obs.res.reference("security_groups", sgs),
                None => {
                    r.obs
                        .info
                        .insert(super::diff::UNKNOWN.into(), "security_groups".into());
                }
            }
            r.obs.info.insert(
                "zone".into(),
                m.availability_zone_name().unwrap_or_default().into(),
            );
            v.push(r);
        }
        Ok::<_, AwsError>(v)
    }));
    // DNS hostnames are an attribute of their own (DescribeVpcAttribute), one VPC at a time.
    // A VPC the tag listing returned but EC2 answers NotFound for (a new one, not propagated
    // yet: a killed run's) has its DNS setting not known yet: no change is planned from it.
    let dns = futures::future::try_join_all(our_vpcs.iter().map(|(addr, id)| async move {
        let out = match c
            .ec2
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if super::wait::is_not_found(&super::sdk_code(&e).unwrap_or_default()) => {
                return Ok((addr.clone(), None));
            }
            Err(e) => return Err(api("DescribeVpcAttribute")(e)),
        };
        let on = out
            .enable_dns_hostnames()
            .and_then(|v| v.value())
            .unwrap_or(false);
        Ok::<_, AwsError>((addr.clone(), Some(on)))
    }));
    let (listeners, tg_details, mounts, dns) = tokio::join!(listeners, tg_details, mounts, dns);
    for (addr, on) in dns? {
        if let Some(v) = raws.iter_mut().find(|r| r.obs.res.addr == addr) {
            match on {
                Some(on) => {
                    v.obs
                        .res
                        .attrs
                        .insert("dns_hostnames".into(), on.to_string());
                }
                None => {
                    let unknown = v.obs.info.entry(super::diff::UNKNOWN.into()).or_default();
                    if !unknown.is_empty() {
                        unknown.push(',');
                    }
                    unknown.push_str("dns_hostnames");
                }
            }
        }
    }
    raws.extend(listeners?.into_iter().flatten());
    for (addr, dereg, att) in tg_details? {
        if let Some(tg) = raws.iter_mut().find(|r| r.obs.res.addr == addr) {
            tg.obs
                .res
                .attrs
                .insert("deregistration_delay".into(), dereg);
        }
        raws.push(att);
    }
    let mounts: Vec<Raw> = mounts?.into_iter().flatten().collect();

    // Map ids (and ARNs, and the DB subnet group's name) back to addresses.
    // The attachment's id is its target group's ARN: it must not shadow the group.
    let mut by_id: BTreeMap<String, String> = raws
        .iter()
        .filter(|r| r.obs.res.kind != ResKind::TargetAttachment)
        .map(|r| (r.obs.id.clone(), r.obs.res.addr.clone()))
        .collect();
    by_id.retain(|_, a| !a.is_empty());
    let addr_of = |id: &String| by_id.get(id).cloned().unwrap_or_else(|| id.clone());
    for mut m in mounts {
        let subnet = m.obs.res.one_ref("subnet").unwrap_or_default().to_string();
        let index = match by_id.get(&subnet) {
            Some(a) => a
                .strip_prefix("aws_subnet.public[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string),
            None => given_subnets
                .iter()
                .position(|s| *s == subnet)
                .map(|i| i.to_string()),
        };
        m.obs.res.addr = match index.and_then(|i| i.parse().ok()) {
            Some(i) => mount_target_addr(i),
            None => format!("aws_efs_mount_target.shared[{subnet}]"),
        };
        raws.push(m);
    }
    let mut out = Vec::with_capacity(raws.len());
    for mut r in raws {
        for v in r.obs.res.refs.values_mut() {
            *v = v.iter().map(addr_of).collect();
            v.sort();
            v.dedup();
        }
        // A key pair the stack does not own (`hosts.key_name`) is no reference.
        if r.obs
            .res
            .refs
            .get("key_pair")
            .is_some_and(|k| !k.iter().all(|a| a.starts_with("aws_")))
        {
            r.obs.res.refs.remove("key_pair");
        }
        if r.obs.res.kind == ResKind::SecurityGroup {
            let mut rules: Vec<String> = r
                .obs
                .info
                .get("rules")
                .map(|s| {
                    s.lines()
                        .map(|l| match desired::parse_rule(l) {
                            Some((p, port, from)) => {
                                format!("{p}/{port} from {}", addr_of(&from))
                            }
                            None => l.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            rules.sort();
            rules.dedup();
            let from: Vec<String> = rules
                .iter()
                .filter_map(|r| desired::parse_rule(r).map(|(_, _, f)| f))
                .filter(|f| f.starts_with("aws_"))
                .collect();
            r.obs.res = r
                .obs
                .res
                .attr("ingress", rules.join(", "))
                .reference("ingress_from", from);
        }
        out.push(r.obs);
    }
    // By address; of two at one address, the one the state recorded first (the diff keeps
    // the first and deletes the others as duplicates).
    let recorded_id = |o: &Observed| recorded.get(&o.res.addr).map(|(_, id)| id) == Some(&o.id);
    out.sort_by(|a, b| (&a.res.addr, !recorded_id(a)).cmp(&(&b.res.addr, !recorded_id(b))));
    Ok(out)
}

/// The EC2 status checks of the observed instances, for `heal`: an instance whose instance or
/// system check reads `impaired` gets `info["status"] = "impaired"` (anything else leaves it
/// alone). A second round trip that only `heal` pays: `plan` and `up` never replace a running
/// instance for its health.
pub async fn instance_status(c: &Clients, observed: &mut [Observed]) -> Result<(), AwsError> {
    let ids: Vec<String> = observed
        .iter()
        .filter(|o| o.res.kind == ResKind::Instance)
        .map(|o| o.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let out = c
        .ec2
        .describe_instance_status()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .map_err(api("DescribeInstanceStatus"))?;
    for s in out.instance_statuses() {
        let impaired = |x: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            x.and_then(|x| x.status()) == Some(&aws_sdk_ec2::types::SummaryStatus::Impaired)
        };
        if !(impaired(s.instance_status()) || impaired(s.system_status())) {
            continue;
        }
        if let Some(o) = observed
            .iter_mut()
            .find(|o| Some(o.id.as_str()) == s.instance_id())
        {
            o.info.insert("status".into(), "impaired".into());
        }
    }
    Ok(())
}

/// How long an ARN that was just listed may answer NotFound for its tags before it counts as
/// deleted since it was listed: ELBv2 lists a new load balancer or target group before it
/// answers for it (eventual consistency), and a scan must neither fail on that nor miss it.
const MID_SCAN: std::time::Duration = std::time::Duration::from_secs(15);

/// ELBv2 tags for many ARNs (DescribeTags takes 20 at a time), concurrently. DescribeTags fails
/// the whole request when one ARN is NotFound: such a chunk is asked again one ARN at a time
/// ([`elb_tags_one`]), so one resource new or gone mid-scan never fails the scan.
async fn elb_tags(
    c: &Clients,
    arns: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, AwsError> {
    let chunks = futures::future::try_join_all(arns.chunks(20).map(|chunk| async move {
        match c
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
        {
            Ok(o) => Ok(vec![o]),
            Err(e) if super::wait::is_not_found(&super::sdk_code(&e).unwrap_or_default()) => {
                let mut outs = Vec::new();
                for arn in chunk {
                    outs.extend(elb_tags_one(c, arn).await?);
                }
                Ok(outs)
            }
            Err(e) => Err(api("DescribeTags")(e)),
        }
    }))
    .await?;
    let mut out = BTreeMap::new();
    for o in chunks.iter().flatten() {
        for d in o.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            out.insert(d.resource_arn().unwrap_or_default().to_string(), tags);
        }
    }
    Ok(out)
}

/// The tags of one ARN that was just listed: NotFound is asked again for [`MID_SCAN`] (a new
/// resource), then means the resource was deleted since it was listed (None: not observed).
/// Any other error is the scan's error.
async fn elb_tags_one(
    c: &Clients,
    arn: &str,
) -> Result<
    Option<aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput>,
    AwsError,
> {
    let t0 = std::time::Instant::now();
    loop {
        match c.elb.describe_tags().resource_arns(arn).send().await {
            Ok(o) => return Ok(Some(o)),
            Err(e) => {
                let code = super::sdk_code(&e).unwrap_or_default();
                if !super::wait::is_not_found(&code) {
                    return Err(api("DescribeTags")(e));
                }
                if t0.elapsed() >= MID_SCAN {
                    return Ok(None);
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recorded {
        [
            ("aws_vpc.main", ResKind::Vpc, "vpc-1"),
            ("aws_lb_target_group.web", ResKind::TargetGroup, "arn:tg"),
            (
                "aws_lb_target_group_attachment.web",
                ResKind::TargetAttachment,
                "arn:tg",
            ),
        ]
        .into_iter()
        .map(|(a, k, id)| (a.to_string(), (k, id.to_string())))
        .collect()
    }

    /// The state's record decides before the tags: an untagged VPC it recorded is this stack's
    /// and lacks both tags; a tagged one it did not record is found by its tags; an untagged
    /// one it did not record is someone else's.
    #[test]
    fn the_state_decides_before_the_tags() {
        let rec = recorded();
        let o = Owner::new("web", &rec);
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-1", None, None),
            Some(("aws_vpc.main".into(), vec![TAG_STACK, TAG_ADDRESS]))
        );
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-1", Some("web"), Some("aws_vpc.main")),
            Some(("aws_vpc.main".into(), vec![]))
        );
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-2", Some("web"), Some("aws_vpc.main")),
            Some(("aws_vpc.main".into(), vec![]))
        );
        assert_eq!(o.of(ResKind::Vpc, "vpc-3", None, None), None);
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-4", Some("other"), Some("aws_vpc.main")),
            None
        );
        // The attachment shares its group's ARN: the group keeps it. Ids are per kind.
        assert_eq!(o.of(ResKind::Subnet, "vpc-1", None, None), None);
        assert_eq!(
            o.of(ResKind::TargetGroup, "arn:tg", None, None)
                .map(|w| w.0),
            Some("aws_lb_target_group.web".into())
        );
        assert_eq!(
            Owner::missing(&rec, ResKind::Vpc, ["vpc-9"]),
            vec!["vpc-1".to_string()]
        );
        assert!(Owner::missing(&rec, ResKind::Vpc, ["vpc-1"]).is_empty());
    }
}
