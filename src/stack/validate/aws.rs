//! AWS's own rules that a stack file alone can break, checked by `validate` so that `up` never
//! learns them half-way through a build (after the VPC, gateway and file system exist):
//!
//! - CIDRs are network addresses: `10.30.1.5/24` has host bits, which CreateVpc/CreateSubnet
//!   refuse (and a security group rule would be compared against AWS's normalized form forever);
//! - subnets are /16–/28 (Amazon VPC User Guide, "Subnet sizing": "the allowed block size is
//!   between a /28 netmask and /16 netmask"); an ALB's subnets are /27 or larger (ELB User
//!   Guide for Application Load Balancers, "Subnets for your load balancer": "the subnets must
//!   have at least a /27 bitmask and at least 8 free IP addresses"; AWS reserves 5 addresses
//!   of every subnet). An NLB asks only for 8 free addresses, which every /28 has (11);
//! - a balancer has one listener per port (ELB answers a second CreateListener on the port
//!   with DuplicateListener; hactl's diff would see the second as a duplicate and delete one);
//! - an ALB's `HTTPS` and an NLB's `TLS` listener need `certificate_arn` (CreateListener
//!   refuses them without a certificate), an ACM certificate of the stack's region or an IAM
//!   server certificate; no other listener takes one. An NLB's `UDP` and `TCP_UDP` are refused
//!   rather than silently built as TCP (they need UDP target groups, a TCP or HTTP health
//!   check and UDP rules on the hosts' security group);
//! - RDS's rules for the database name, the master username and password per engine, and
//!   EC2's for the hosts' public key, on the values written in the file
//!   ([`crate::stack::aws_rules`]; `plan` applies the same rules to the values in the vault);
//! - the health check matcher: HTTP codes 200–499 on an ALB, 200–599 on an NLB, as one code,
//!   a comma list or one range (ELB `Matcher.HttpCode`).
//!
//! What only the account can answer (zones of the region, instance type offerings, the zones
//! of existing subnets, an existing VPC's CIDRs) is checked by `plan` against AWS
//! (`provider::aws::preflight`). Every subnet lying inside `vpc_cidr` is checked in `checks`.
//!
//! Kept apart from `checks` (which calls [`Checker::aws_rules`] once) so that AWS's rules live
//! in one place.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::super::super::aws_rules;
use super::super::super::diag::Problem;
use super::super::super::model::{AwsBalancerSpec, AwsDatabaseSpec, AwsSpec, Value};
use super::Checker;

/// The smallest subnet AWS allows (Amazon VPC: /16–/28).
const MIN_SUBNET_PREFIX: u8 = 16;
const MAX_SUBNET_PREFIX: u8 = 28;
/// The smallest subnet an ALB is documented to work in.
const MAX_ALB_SUBNET_PREFIX: u8 = 27;

/// A CIDR with host bits set, and the network it probably meant (`10.30.1.5/24` →
/// `10.30.1.0/24`). None when the text is not a CIDR or is already a network address.
pub(crate) fn host_bits(text: &str) -> Option<IpNet> {
    let n: IpNet = text.parse().ok()?;
    (n.addr() != n.network()).then(|| n.trunc())
}

impl Checker<'_> {
    /// Every rule of this module, for `aws:`.
    pub(super) fn aws_rules(&mut self) {
        let Some(aws) = &self.f.aws else { return };
        self.aws_cidrs(aws);
        if let Some(b) = &aws.balancer {
            self.aws_listeners(b, &aws.region.value);
            self.aws_matcher(b);
        }
        if let Some(db) = &aws.database {
            self.aws_database(db);
        }
        if let Some(k) = &aws.hosts.public_key {
            if let Value::Plain(text) = &k.value {
                if let Err(why) = aws_rules::ec2_public_key(text) {
                    let span = self.loc_or(k, "aws.hosts.public_key");
                    self.push(
                        Problem::new(
                            "hactl::stack::aws_hosts",
                            format!("the hosts' public key {why}"),
                        )
                        .at(span, "EC2 would refuse this key")
                        .help("EC2 ImportKeyPair takes one OpenSSH line of an RSA or ED25519 key, e.g. the contents of `~/.ssh/id_ed25519.pub`"),
                    );
                }
            }
        }
    }

    /// RDS's rules for the values written in the file (secrets are checked by `plan`).
    fn aws_database(&mut self, db: &AwsDatabaseSpec) {
        let engine = db.engine.value.as_str();
        if !aws_rules::DB_ENGINES.contains(&engine) {
            return; // `checks` reports the engine
        }
        if let Err(why) = aws_rules::db_name(engine, &db.name) {
            let span = self.at("aws.database.name");
            self.push(
                Problem::new(
                    "hactl::stack::aws_database",
                    format!("database name `{}` {why}", db.name),
                )
                .at(span, "not an RDS database name")
                .help("RDS (CreateDBInstance `DBName`): a letter, then letters, digits or underscores; at most 63 characters on PostgreSQL, 64 on MySQL and MariaDB"),
            );
        }
        if let Value::Plain(user) = &db.username.value {
            if let Err(why) = aws_rules::db_username(user) {
                let span = self.loc_or(&db.username, "aws.database.username");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_database",
                        format!("database username `{user}` {why}"),
                    )
                    .at(span, "not an RDS master username")
                    .help("RDS (CreateDBInstance `MasterUsername`): 1 to 16 letters, digits or underscores, starting with a letter"),
                );
            }
        }
        if let Value::Plain(password) = &db.password.value {
            if let Err(why) = aws_rules::db_password(engine, password) {
                let span = self.loc_or(&db.password, "aws.database.password");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_database",
                        format!("the database password {why}"),
                    )
                    .at(span, "RDS would refuse this password")
                    .help(format!(
                        "RDS (CreateDBInstance `MasterUserPassword`): 8 to {} printable ASCII characters for {engine}, without `/`, `\"`, `@` or spaces",
                        aws_rules::db_password_max(engine)
                    )),
                );
            }
        }
    }

    fn cidr_host_bits(&mut self, text: &str, span: Option<miette::SourceSpan>, what: &str) -> bool {
        let Some(net) = host_bits(text) else {
            return false;
        };
        self.push(
            Problem::new(
                "hactl::stack::aws_cidr",
                format!("{what} `{text}` has host bits set: did you mean {net}?"),
            )
            .at(span, "not a network address")
            .help(format!(
                "write the network address, `{net}`: AWS takes only CIDRs whose host bits are zero"
            )),
        );
        true
    }

    fn aws_cidrs(&mut self, aws: &AwsSpec) {
        let net = &aws.network;
        if let Some(c) = &net.vpc_cidr {
            let span = self.loc(c);
            self.cidr_host_bits(&c.value, span, "the VPC CIDR");
        }
        if let Some(c) = &net.ssh_cidr {
            let span = self.loc(c);
            self.cidr_host_bits(&c.value, span, "`ssh_cidr`");
        }
        let Some(subnets) = &net.subnets else { return };
        for (j, text) in subnets.value.iter().enumerate() {
            let span = self.at(&format!("aws.network.subnets.{j}"));
            if self.cidr_host_bits(text, span, "subnet") {
                continue;
            }
            let Ok(n) = text.parse::<IpNet>() else {
                continue; // `checks` reports what does not parse
            };
            let IpNet::V4(v4) = n else {
                self.push(
                    Problem::new(
                        "hactl::stack::aws_cidr",
                        format!(
                            "subnet `{text}` is IPv6; `subnets` are the IPv4 blocks of the VPC"
                        ),
                    )
                    .at(span, "not IPv4")
                    .help("e.g. `10.20.1.0/24`"),
                );
                continue;
            };
            let p = v4.prefix_len();
            if !(MIN_SUBNET_PREFIX..=MAX_SUBNET_PREFIX).contains(&p) {
                let (label, what) = if p > MAX_SUBNET_PREFIX {
                    ("smaller than /28", "smaller than a /28, the smallest")
                } else {
                    ("larger than /16", "larger than a /16, the largest")
                };
                self.push(
                    Problem::new(
                        "hactl::stack::aws_cidr",
                        format!("subnet {n} is {what} subnet AWS allows"),
                    )
                    .at(span, label)
                    .help("Amazon VPC subnets are /16 to /28 (CreateSubnet refuses others); e.g. a /24 per zone"),
                );
            } else if p > MAX_ALB_SUBNET_PREFIX
                && aws.balancer.as_ref().is_some_and(|b| b.kind.value == "alb")
            {
                self.push(
                    Problem::new(
                        "hactl::stack::aws_cidr",
                        format!(
                            "subnet {n} is smaller than a /27, the smallest subnet an ALB may use"
                        ),
                    )
                    .at(span, "smaller than /27")
                    .help("ELB requires an ALB's subnets to be at least a /27 with 8 free addresses (AWS keeps 5 of every subnet): use a /27 or larger")
                );
            }
        }
    }

    fn aws_listeners(&mut self, b: &AwsBalancerSpec, region: &str) {
        let alb = b.kind.value != "nlb";
        let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
        for (j, l) in b.listeners.iter().enumerate() {
            if let Some(first) = seen.get(&l.port.value) {
                let span = self.loc_or(&l.port, &format!("aws.balancer.listeners.{j}.port"));
                self.push(
                    Problem::new(
                        "hactl::stack::aws_listener",
                        format!(
                            "listener port {} is used twice (listeners {first} and {j})",
                            l.port.value
                        ),
                    )
                    .at(span, "port already has a listener")
                    .help("a balancer has one listener per port (ELB answers DuplicateListener); remove one or pick another port"),
                );
            } else {
                seen.insert(l.port.value, j);
            }
            let cert = l.certificate_arn.as_ref();
            let cert_path = format!("aws.balancer.listeners.{j}.certificate_arn");
            let why = match (alb, l.protocol.as_str()) {
                (false, "UDP" | "TCP_UDP") => Some(
                    "they need a UDP target group, a health check over TCP or HTTP and UDP rules on the hosts' security group",
                ),
                (false, "TLS") | (true, "HTTPS") => {
                    match cert {
                        None => {
                            let span = self
                                .at(&format!("aws.balancer.listeners.{j}.protocol"))
                                .or_else(|| self.at(&format!("aws.balancer.listeners.{j}")));
                            self.push(
                                Problem::new(
                                    "hactl::stack::aws_listener",
                                    format!("a `{}` listener needs `certificate_arn`", l.protocol),
                                )
                                .at(span, "no certificate")
                                .help("add `certificate_arn:` with an ACM certificate of the stack's region (`arn:aws:acm:REGION:ACCOUNT:certificate/ID`) or an IAM server certificate; ELB refuses the listener without one"),
                            );
                        }
                        Some(c) => {
                            if let Err(why) = aws_rules::certificate_arn(&c.value, region) {
                                let span = self.loc_or(c, &cert_path);
                                self.push(
                                    Problem::new(
                                        "hactl::stack::aws_listener",
                                        format!("`certificate_arn` `{}` {why}", c.value),
                                    )
                                    .at(span, "not a listener certificate")
                                    .help("an ACM certificate of the stack's region (`arn:aws:acm:REGION:ACCOUNT:certificate/ID`) or an IAM server certificate (`arn:aws:iam::ACCOUNT:server-certificate/NAME`)"),
                                );
                            }
                        }
                    }
                    None
                }
                _ => {
                    if let Some(c) = cert {
                        let span = self.loc_or(c, &cert_path);
                        self.push(
                            Problem::new(
                                "hactl::stack::aws_listener",
                                format!(
                                    "a `{}` listener takes no certificate; `certificate_arn` is for `{}` listeners",
                                    l.protocol,
                                    if alb { "HTTPS" } else { "TLS" }
                                ),
                            )
                            .at(span, "not used by this protocol")
                            .help(format!(
                                "set `protocol: {}` to terminate TLS at the balancer, or remove `certificate_arn`",
                                if alb { "HTTPS" } else { "TLS" }
                            )),
                        );
                    }
                    None
                }
            };
            if let Some(why) = why {
                let span = self.at(&format!("aws.balancer.listeners.{j}.protocol"));
                self.push(
                    Problem::new(
                        "hactl::stack::aws_listener",
                        format!(
                            "hactl does not build `{}` listeners yet: {why}",
                            l.protocol
                        ),
                    )
                    .at(span, "not built as asked")
                    .help("use `TCP` or `TLS` listeners; hactl refuses what it would silently build as another protocol"),
                );
            }
        }
    }

    fn aws_matcher(&mut self, b: &AwsBalancerSpec) {
        let Some(m) = &b.health_check.matcher else {
            return;
        };
        let (lo, hi) = if b.kind.value == "nlb" {
            (200, 599)
        } else {
            (200, 499)
        };
        if let Err(why) = matcher_ok(&m.value, lo, hi) {
            let span = self.loc_or(m, "aws.balancer.health_check.matcher");
            self.push(
                Problem::new(
                    "hactl::stack::aws_balancer",
                    format!("health check matcher `{}` {why}", m.value),
                )
                .at(span, "bad matcher")
                .help(format!(
                    "HTTP codes {lo}–{hi} on an {}: one code (`200`), a list (`200,202`) or a range (`200-299`)",
                    b.kind.value
                )),
            );
        }
    }
}

/// Whether an ELB `Matcher.HttpCode` is well formed: one code, codes separated by commas, or
/// one range `lo-hi`, every code within `lo..=hi`.
fn matcher_ok(m: &str, lo: u16, hi: u16) -> Result<(), String> {
    let code = |s: &str| -> Result<u16, String> {
        let c: u16 = s
            .trim()
            .parse()
            .map_err(|_| format!("has `{s}`, which is not an HTTP code"))?;
        if (lo..=hi).contains(&c) {
            Ok(c)
        } else {
            Err(format!("has {c}, outside {lo}–{hi}"))
        }
    };
    if let Some((a, b)) = m.split_once('-') {
        let (a, b) = (code(a)?, code(b)?);
        if a > b {
            return Err(format!("is a range that runs backwards ({a} > {b})"));
        }
        return Ok(());
    }
    for part in m.split(',') {
        code(part)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bits_suggest_the_network() {
        assert_eq!(
            host_bits("10.30.1.5/24").map(|n| n.to_string()),
            Some("10.30.1.0/24".into())
        );
        assert_eq!(host_bits("10.30.1.0/24"), None);
        assert_eq!(host_bits("not a cidr"), None);
    }

    #[test]
    fn matcher_forms() {
        assert!(matcher_ok("200", 200, 499).is_ok());
        assert!(matcher_ok("200,202", 200, 499).is_ok());
        assert!(matcher_ok("200-299", 200, 499).is_ok());
        assert!(matcher_ok("500", 200, 499).is_err());
        assert!(matcher_ok("500", 200, 599).is_ok());
        assert!(matcher_ok("299-200", 200, 499).is_err());
        assert!(matcher_ok("ok", 200, 499).is_err());
    }
}
