//! What the stack asks for, as a list of [`Resource`]s: pure, no AWS calls.
//!
//! Seed 003's shape: a VPC with one public subnet per zone, an internet gateway and a route
//! table; least-privilege security groups (the balancer open on its listeners, the hosts only
//! from the balancer and SSH from a stated CIDR, NFS and the DB port only from the hosts);
//! instances spread round-robin over the zones; an ALB/NLB with a target group, listeners and
//! the instances registered; EFS with a mount target in every zone; a DB subnet group and an
//! RDS instance (Multi-AZ by default). With `network.vpc_id` the network is not managed and
//! references carry the given ids instead of addresses.

use crate::stack::model::{AwsSpec, StackFile};

use super::model::{ResKind, Resource};

/// Names AWS sees (LB, target group, SG, DB): derived from the stack name, within AWS's
/// length limits; a hash keeps truncated names distinct.
pub fn aws_name(stack: &str, suffix: &str, max: usize) -> String {
    let full = format!("hactl-{stack}-{suffix}");
    if full.len() <= max {
        return full;
    }
    let h = &crate::plan::sha256_hex(full.as_bytes())[..6];
    let keep = max.saturating_sub(h.len() + 1 + suffix.len() + 1);
    let head: String = stack.chars().take(keep).collect();
    format!("{}-{h}-{suffix}", head.trim_end_matches('-'))
}

pub const VPC: &str = "aws_vpc.main";
pub const IGW: &str = "aws_internet_gateway.main";
pub const RTB: &str = "aws_route_table.public";
pub const SG_LB: &str = "aws_security_group.lb";
pub const SG_HOSTS: &str = "aws_security_group.hosts";
pub const SG_EFS: &str = "aws_security_group.efs";
pub const SG_DB: &str = "aws_security_group.db";
pub const KEY_PAIR: &str = "aws_key_pair.hosts";
pub const LB: &str = "aws_lb.main";
pub const TG: &str = "aws_lb_target_group.web";
pub const ATTACH: &str = "aws_lb_target_group_attachment.web";
pub const EFS: &str = "aws_efs_file_system.shared";
pub const DB_SUBNETS: &str = "aws_db_subnet_group.main";
pub const DB: &str = "aws_db_instance.main";

pub fn subnet_addr(i: usize) -> String {
    format!("aws_subnet.public[{i}]")
}
pub fn instance_addr(i: usize) -> String {
    format!("aws_instance.web[{i}]")
}
pub fn mount_target_addr(i: usize) -> String {
    format!("aws_efs_mount_target.shared[{i}]")
}
pub fn listener_addr(port: i64) -> String {
    format!("aws_lb_listener.port_{port}")
}

/// The target group's AWS name: the stack's, with the protocol and port that force its
/// replacement (`hactl-web3-web-http-80`). Names are unique per account and region, so a
/// replacement made create-before-destroy (a `target_port` change) needs a name of its own
/// while the old group still exists.
pub fn target_group_name(stack: &str, protocol: &str, port: i64) -> String {
    aws_name(
        stack,
        &format!("web-{}-{port}", protocol.to_ascii_lowercase()),
        32,
    )
}

/// The default port of each database engine.
pub fn db_default_port(engine: &str) -> i64 {
    match engine {
        "mysql" | "mariadb" | "aurora-mysql" => 3306,
        "sqlserver-ex" | "sqlserver-se" | "sqlserver-ee" | "sqlserver-web" => 1433,
        "oracle-ee" | "oracle-se2" => 1521,
        _ => 5432,
    }
}

/// One security group ingress rule in its canonical text form: `tcp/80 from 0.0.0.0/0` or
/// `tcp/2049 from aws_security_group.hosts`. The text is what the diff compares and shows.
pub fn rule(port: i64, from: &str) -> String {
    format!("tcp/{port} from {from}")
}

/// Parses [`rule`]'s text back into (protocol, port, source).
pub fn parse_rule(s: &str) -> Option<(String, i32, String)> {
    let (proto_port, from) = s.split_once(" from ")?;
    let (proto, port) = proto_port.split_once('/')?;
    Some((proto.to_string(), port.parse().ok()?, from.to_string()))
}

fn sg(stack: &str, addr: &str, short: &str, vpc: &str, rules: Vec<String>) -> Resource {
    let mut rules = rules;
    rules.sort();
    rules.dedup();
    let from: Vec<String> = rules
        .iter()
        .filter_map(|r| parse_rule(r).map(|(_, _, f)| f))
        .filter(|f| f.starts_with("aws_"))
        .collect();
    Resource::new(ResKind::SecurityGroup, addr)
        .attr("name", aws_name(stack, short, 255))
        .attr("ingress", rules.join(", "))
        .reference("vpc", vec![vpc.to_string()])
        .reference("ingress_from", from)
}

/// The subnets (addresses, or given ids) in zone order.
pub fn subnets(aws: &AwsSpec) -> Vec<String> {
    if let Some(ids) = &aws.network.subnet_ids {
        return ids.clone();
    }
    (0..aws.zones.value.len()).map(subnet_addr).collect()
}

/// The hosts' SSH public key as given (`aws.hosts.public_key`, resolved from the vault when it
/// is a `{secret: NAME}`): hactl imports it as the stack's own EC2 key pair.
///
/// `vpc_cidrs`: with `network.vpc_id`, the existing VPC's IPv4 CIDR blocks as the account
/// reports them ([`super::preflight`]); rules that admit traffic "from the VPC" use them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    pub public_key: Option<&'a str>,
    pub vpc_cidrs: Option<&'a [String]>,
}

/// The key pair's fingerprint as hactl compares it: the SHA-256 of the key line's type and
/// base64 body (a trailing comment does not count), truncated. EC2's own fingerprint depends
/// on the key type, so hactl records this one in a tag instead.
pub fn public_key_sha256(key: &str) -> String {
    let canon: Vec<&str> = key.split_whitespace().take(2).collect();
    crate::plan::sha256_hex(canon.join(" ").as_bytes())[..32].to_string()
}

/// Every resource the stack asks for, in a stable order.
pub fn desired(file: &StackFile, inputs: &Inputs) -> Vec<Resource> {
    let Some(aws) = &file.aws else {
        return Vec::new();
    };
    let stack = file.name.value.as_str();
    let zones = &aws.zones.value;
    let mut out = Vec::new();

    let vpc = match &aws.network.vpc_id {
        Some(id) => id.clone(),
        None => {
            let cidr = aws
                .network
                .vpc_cidr
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or_else(|| "10.0.0.0/16".into());
            // DNS hostnames on: EFS and RDS endpoints resolve through them.
            out.push(
                Resource::new(ResKind::Vpc, VPC)
                    .attr("cidr", cidr)
                    .attr("dns_hostnames", true),
            );
            let cidrs: Vec<String> = match &aws.network.subnets {
                Some(s) => s.value.clone(),
                None => (0..zones.len()).map(|i| format!("10.0.{i}.0/24")).collect(),
            };
            for (i, zone) in zones.iter().enumerate() {
                let cidr = cidrs.get(i).cloned().unwrap_or_default();
                out.push(
                    Resource::new(ResKind::Subnet, subnet_addr(i))
                        .attr("cidr", cidr)
                        .attr("zone", zone)
                        // Public subnets: instances get a public address at launch.
                        .attr("map_public_ip", true)
                        .reference("vpc", vec![VPC.into()]),
                );
            }
            out.push(
                Resource::new(ResKind::InternetGateway, IGW).reference("vpc", vec![VPC.into()]),
            );
            out.push(
                Resource::new(ResKind::RouteTable, RTB)
                    .reference("vpc", vec![VPC.into()])
                    .reference("gateway", vec![IGW.into()])
                    .reference("subnets", subnets(aws)),
            );
            VPC.to_string()
        }
    };
    let subnet_list = subnets(aws);

    // Security groups: least privilege, each open only to the one layer in front of it.
    let target_port = aws
        .balancer
        .as_ref()
        .map(|b| b.target_port.value)
        .unwrap_or(80);
    let mut host_rules = Vec::new();
    if let Some(b) = &aws.balancer {
        if b.kind.value == "alb" {
            let rules = b
                .listeners
                .iter()
                .map(|l| rule(l.port.value, "0.0.0.0/0"))
                .collect();
            out.push(sg(stack, SG_LB, "lb", &vpc, rules));
            host_rules.push(rule(target_port, SG_LB));
        } else {
            // An NLB has no security group of its own here: traffic keeps the client's
            // address, so the hosts accept the target port from the VPC only — the VPC hactl
            // makes (`vpc_cidr`), or every CIDR block of an existing one as DescribeVpcs
            // reports it (never a guess: a wrong block leaves every target unhealthy).
            let cidrs: Vec<String> = match (&aws.network.vpc_cidr, inputs.vpc_cidrs) {
                (Some(c), _) => vec![c.value.clone()],
                (None, Some(found)) => found.to_vec(),
                (None, None) => Vec::new(),
            };
            for cidr in cidrs {
                host_rules.push(rule(target_port, &cidr));
            }
        }
    }
    if let Some(c) = &aws.network.ssh_cidr {
        host_rules.push(rule(22, &c.value));
    }
    out.push(sg(stack, SG_HOSTS, "hosts", &vpc, host_rules));
    if aws.shared_fs.is_some() {
        out.push(sg(stack, SG_EFS, "efs", &vpc, vec![rule(2049, SG_HOSTS)]));
    }
    if let Some(db) = &aws.database {
        let port = db
            .port
            .as_ref()
            .map(|p| p.value)
            .unwrap_or_else(|| db_default_port(&db.engine.value));
        out.push(sg(stack, SG_DB, "db", &vpc, vec![rule(port, SG_HOSTS)]));
    }

    // The stack's own key pair, imported from `hosts.public_key`; instances use it.
    let key_pair = inputs.public_key.map(|k| {
        let name = aws_name(stack, "hosts", 255);
        out.push(
            Resource::new(ResKind::KeyPair, KEY_PAIR)
                .attr("name", &name)
                .attr("public_key_sha256", public_key_sha256(k)),
        );
        name
    });

    // Instances, round-robin over the zones' subnets.
    let count = aws.hosts.count.value.max(0) as usize;
    let mut instances = Vec::new();
    for i in 0..count {
        let subnet = subnet_list
            .get(i % subnet_list.len().max(1))
            .cloned()
            .unwrap_or_default();
        let mut r = Resource::new(ResKind::Instance, instance_addr(i))
            .attr("instance_type", &aws.hosts.instance_type.value)
            .attr("ami", &aws.hosts.ami.value)
            // IMDSv2 only, reachable from containers (one hop more than the host).
            .attr("metadata.http_tokens", "required")
            .attr("metadata.hop_limit", 2)
            .reference("subnet", vec![subnet])
            .reference("security_groups", vec![SG_HOSTS.into()]);
        if let Some(name) = &key_pair {
            r = r
                .attr("key_name", name)
                .reference("key_pair", vec![KEY_PAIR.into()]);
        } else if let Some(k) = &aws.hosts.key_name {
            r = r.attr("key_name", k);
        }
        instances.push(r.addr.clone());
        out.push(r);
    }

    if let Some(b) = &aws.balancer {
        let alb = b.kind.value == "alb";
        let mut lb = Resource::new(ResKind::Lb, LB)
            .attr("name", aws_name(stack, "lb", 32))
            .attr("kind", if alb { "application" } else { "network" })
            .reference("subnets", subnet_list.clone());
        if alb {
            lb = lb.reference("security_groups", vec![SG_LB.into()]);
        }
        out.push(lb);
        let hc = &b.health_check;
        let tg_protocol = if alb { "HTTP" } else { "TCP" };
        out.push(
            Resource::new(ResKind::TargetGroup, TG)
                .attr(
                    "name",
                    target_group_name(stack, tg_protocol, b.target_port.value),
                )
                .attr("protocol", tg_protocol)
                .attr("port", b.target_port.value)
                .attr("health_check.path", &hc.path)
                .attr("health_check.interval", hc.interval.value.0.as_secs())
                .attr("health_check.timeout", hc.timeout.value.0.as_secs())
                .attr("health_check.healthy_threshold", hc.healthy_threshold.value)
                .attr(
                    "health_check.unhealthy_threshold",
                    hc.unhealthy_threshold.value,
                )
                .attr("health_check.matcher", hc.matcher_or_default(&b.kind.value))
                .attr(
                    "deregistration_delay",
                    b.deregistration_delay.value.0.as_secs(),
                )
                .reference("vpc", vec![vpc.clone()]),
        );
        for l in &b.listeners {
            // The protocol as written, never a silent substitute: `validate` refuses the ones
            // hactl cannot build yet (UDP, TCP_UDP) and HTTPS/TLS without `certificate_arn`,
            // and a listener that differs from what AWS reports is planned as a change.
            let proto = l.protocol.to_uppercase();
            let mut listener = Resource::new(ResKind::Listener, listener_addr(l.port.value))
                .attr("port", l.port.value)
                .attr("protocol", proto);
            if let Some(c) = &l.certificate_arn {
                listener = listener.attr("certificate_arn", &c.value);
            }
            out.push(
                listener
                    .reference("lb", vec![LB.into()])
                    .reference("target_group", vec![TG.into()]),
            );
        }
        out.push(
            Resource::new(ResKind::TargetAttachment, ATTACH)
                .reference("target_group", vec![TG.into()])
                .reference("targets", instances.clone()),
        );
    }

    if let Some(fs) = &aws.shared_fs {
        out.push(
            Resource::new(ResKind::EfsFileSystem, EFS)
                .attr("performance_mode", &fs.performance_mode.value)
                .attr("encrypted", fs.encrypted),
        );
        for (i, subnet) in subnet_list.iter().enumerate() {
            out.push(
                Resource::new(ResKind::EfsMountTarget, mount_target_addr(i))
                    .reference("file_system", vec![EFS.into()])
                    .reference("subnet", vec![subnet.clone()])
                    .reference("security_groups", vec![SG_EFS.into()]),
            );
        }
    }

    if let Some(db) = &aws.database {
        out.push(
            Resource::new(ResKind::DbSubnetGroup, DB_SUBNETS)
                .attr("name", aws_name(stack, "db", 255))
                .reference("subnets", subnet_list.clone()),
        );
        let port = db
            .port
            .as_ref()
            .map(|p| p.value)
            .unwrap_or_else(|| db_default_port(&db.engine.value));
        let mut r = Resource::new(ResKind::DbInstance, DB)
            .attr("identifier", aws_name(stack, "db", 63))
            .attr("engine", &db.engine.value)
            .attr("instance_class", &db.instance_class.value)
            .attr("storage_gb", db.storage_gb.value)
            .attr("multi_az", db.multi_az)
            .attr("db_name", &db.name)
            .attr("port", port)
            // On: RDS refuses DeleteDBInstance; hactl turns it off only in a delete the user
            // allowed (`--allow-data-loss`).
            .attr("deletion_protection", true)
            .reference("subnet_group", vec![DB_SUBNETS.into()])
            .reference("security_groups", vec![SG_DB.into()]);
        if let Some(v) = &db.engine_version {
            r = r.attr("engine_version", v);
        }
        out.push(r);
    }
    out
}
