//! AWS's own rules that a stack file alone can break, checked by `validate` so that `up` never
//! learns them half-way through a build (after the VPC, gateway and file system exist):
//!
//! - CIDRs are network addresses: `10.30.1.5/24` has host bits, which CreateVpc/CreateSubnet
//!   refuse (and a security group rule would be compared against AWS's normalized form forever);
//! - subnets are /16–/28 (Amazon VPC User Guide, "Subnet sizing": "the allowed block size is
//!   between a /28 netmask and /16 netmask"); a load balancer's subnets smaller than /27 get a
//!   warning (ELB User Guide for ALBs: "the subnets must have at least a /27 bitmask and at least
//!   8 free IP addresses"; AWS reserves 5 addresses of every subnet);
//! - a balancer has one listener per port (ELB answers a second CreateListener on the port
//!   with DuplicateListener; hactl's diff would see the second as a duplicate and delete one);
//! - listener protocols hactl cannot build as such are refused rather than silently built as
//!   TCP/HTTP: an NLB's `UDP`, `TCP_UDP` (UDP target groups and health checks) and `TLS`, an
//!   ALB's `HTTPS` (both need a certificate the stack has no key for);
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

use super::super::super::diag::Problem;
use super::super::super::model::{AwsBalancerSpec, AwsSpec};
use super::Checker;

/// The smallest subnet AWS allows (Amazon VPC: /16–/28).
const MIN_SUBNET_PREFIX: u8 = 16;
const MAX_SUBNET_PREFIX: u8 = 28;
/// The smallest subnet a load balancer is documented to work in.
const MAX_LB_SUBNET_PREFIX: u8 = 27;

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
            self.aws_listeners(b);
            self.aws_matcher(b);
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
            } else if p > MAX_LB_SUBNET_PREFIX && aws.balancer.is_some() {
                self.push(
                    Problem::new(
                        "hactl::stack::aws_cidr",
                        format!(
                            "subnet {n} is smaller than a /27: the load balancer may not fit in it"
                        ),
                    )
                    .at(span, "smaller than /27")
                    .help("ELB asks for load balancer subnets of at least a /27 with 8 free addresses (AWS keeps 5 of every subnet); use a /27 or larger")
                    .warning(),
                );
            }
        }
    }

    fn aws_listeners(&mut self, b: &AwsBalancerSpec) {
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
            let why = match (alb, l.protocol.as_str()) {
                (false, "UDP" | "TCP_UDP") => Some(
                    "they need a UDP target group, a health check over TCP or HTTP and UDP rules on the hosts' security group",
                ),
                (false, "TLS") | (true, "HTTPS") => {
                    Some("they need a certificate, and the stack has no key for one")
                }
                _ => None,
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
                    .help(if alb {
                        "use `HTTP` listeners; hactl refuses what it would silently build as another protocol"
                    } else {
                        "use `TCP` listeners; hactl refuses what it would silently build as another protocol"
                    }),
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
