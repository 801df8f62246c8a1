//! What only the account can answer, asked before anything is created: `plan` and `heal`
//! refuse with it, and `up` refuses before its first mutating call. `validate` cannot know
//! these (it reads no account); see `docs/stack.md` for which rules live where.
//!
//! - every zone of `aws.zones` exists in the region and is available
//!   (DescribeAvailabilityZones);
//! - `hosts.instance_type` is offered in every zone an instance goes to
//!   (DescribeInstanceTypeOfferings, location type `availability-zone`);
//! - each of `network.subnet_ids` exists, lies in `network.vpc_id`, and is in the zone it is
//!   listed for (DescribeSubnets): otherwise the hosts, the balancer, EFS and RDS Multi-AZ all
//!   end up in one zone and EFS answers MountTargetConflict;
//! - `network.vpc_id` exists, and its CIDR blocks (DescribeVpcs: the primary and every
//!   associated one) are returned for the rules that admit traffic "from the VPC", instead of a
//!   guess.
//!
//! All of it is asked in one round of concurrent calls; every refusal names the stack key
//! (`file:line:col`) and what AWS said.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_ec2::types::Filter;

use crate::stack::diag::{locate, Problem};
use crate::stack::Stack;

use super::client::Clients;
use super::{sdk_message, AwsError};

/// What the account told us that the resources need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// With `network.vpc_id`: the VPC's IPv4 CIDR blocks (primary first, then the other
    /// associated ones).
    pub vpc_cidrs: Option<Vec<String>>,
}

/// The stack asks for something the account does not have: nothing was created.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("AWS refuses {} of `{path}` (nothing was created)", plural(problems.len()))]
#[diagnostic(
    code(hactl::aws::preflight),
    help("fix the stack file and run `hactl plan` again")
)]
pub struct Refused {
    pub path: String,
    #[related]
    pub problems: Vec<Problem>,
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 setting".into()
    } else {
        format!("{n} settings")
    }
}

fn api<E, R>(op: &'static str) -> impl Fn(aws_sdk_ec2::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| AwsError::Api {
        op,
        addr: "(preflight)".into(),
        message: sdk_message(&e),
    }
}

/// The zones each instance goes to: round-robin over the subnets, as `desired` places them.
fn instance_zones(zones: &[String], count: i64) -> BTreeSet<String> {
    let n = zones.len().max(1);
    (0..count.max(0) as usize)
        .filter_map(|i| zones.get(i % n).cloned())
        .collect()
}

/// Asks AWS about the stack; a refusal lists every problem at once.
pub async fn check(c: &Clients, stack: &Stack) -> miette::Result<Account> {
    let Some(aws) = &stack.file.aws else {
        return Ok(Account::default());
    };
    let region = c.region.clone();
    let net = &aws.network;
    let itype = aws.hosts.instance_type.value.clone();
    let subnet_ids = net.subnet_ids.clone().unwrap_or_default();
    // One round: the offerings of the type in every zone of the region (a handful of rows),
    // so the zones the instances go to need not be known first.
    let (azs, offerings, subnets, vpcs) = tokio::join!(
        c.ec2.describe_availability_zones().send(),
        c.ec2
            .describe_instance_type_offerings()
            .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
            .filters(
                Filter::builder()
                    .name("instance-type")
                    .values(&itype)
                    .build()
            )
            .send(),
        async {
            if subnet_ids.is_empty() {
                return Ok(Vec::new());
            }
            c.ec2
                .describe_subnets()
                .filters(
                    Filter::builder()
                        .name("subnet-id")
                        .set_values(Some(subnet_ids.clone()))
                        .build(),
                )
                .send()
                .await
                .map(|o| o.subnets().to_vec())
        },
        async {
            let Some(id) = &net.vpc_id else {
                return Ok(Vec::new());
            };
            c.ec2
                .describe_vpcs()
                .filters(Filter::builder().name("vpc-id").values(id).build())
                .send()
                .await
                .map(|o| o.vpcs().to_vec())
        },
    );
    let azs = azs.map_err(api("DescribeAvailabilityZones"))?;
    let offerings = offerings.map_err(api("DescribeInstanceTypeOfferings"))?;
    let subnets: Vec<_> = subnets.map_err(api("DescribeSubnets"))?;
    let vpcs: Vec<_> = vpcs.map_err(api("DescribeVpcs"))?;

    let mut problems = Vec::new();
    let known: Vec<(String, String)> = azs
        .availability_zones()
        .iter()
        .filter_map(|z| {
            Some((
                z.zone_name()?.to_string(),
                z.state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            ))
        })
        .collect();
    let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
    for (j, z) in aws.zones.value.iter().enumerate() {
        // Located only when refused: finding a key re-reads the file's tree.
        let span = || stack.span_of(&format!("aws.zones.{j}"));
        match known.iter().find(|(n, _)| n == z) {
            None => problems.push(
                Problem::new(
                    "hactl::aws::zone",
                    format!("zone `{z}` does not exist in {region}"),
                )
                .at(span(), "no such zone")
                .help(format!(
                    "DescribeAvailabilityZones lists {} in {region}",
                    names.join(", ")
                )),
            ),
            Some((_, state)) if state != "available" => problems.push(
                Problem::new(
                    "hactl::aws::zone",
                    format!("zone `{z}` is `{state}`, not available"),
                )
                .at(span(), "not available")
                .help("pick an available zone (DescribeAvailabilityZones)"),
            ),
            Some(_) => {}
        }
    }

    // Existing subnets: the zone each is really in, compared with the zone it is listed for.
    let mut zone_of_slot: Vec<String> = aws.zones.value.clone();
    for (j, id) in subnet_ids.iter().enumerate() {
        let span = || stack.span_of(&format!("aws.network.subnet_ids.{j}"));
        let Some(s) = subnets.iter().find(|s| s.subnet_id() == Some(id.as_str())) else {
            problems.push(
                Problem::new(
                    "hactl::aws::subnet",
                    format!("subnet `{id}` does not exist in {region}"),
                )
                .at(span(), "no such subnet")
                .help("DescribeSubnets does not return it: check the id and the region"),
            );
            continue;
        };
        let real = s.availability_zone().unwrap_or_default();
        if let Some(listed) = aws.zones.value.get(j) {
            if real != listed {
                problems.push(
                    Problem::new(
                        "hactl::aws::subnet",
                        format!(
                            "subnet `{id}` is in {real}, but it is listed for {listed} (`aws.zones[{j}]`)"
                        ),
                    )
                    .at(span(), "in another zone")
                    .help("list one subnet of each zone, in the order of `aws.zones` (DescribeSubnets gives each subnet's AvailabilityZone); with two subnets in one zone the hosts, the balancer, EFS and the database all end up there"),
                );
            }
        }
        if let (Some(vpc), Some(in_vpc)) = (&net.vpc_id, s.vpc_id()) {
            if vpc != in_vpc {
                problems.push(
                    Problem::new(
                        "hactl::aws::subnet",
                        format!("subnet `{id}` is in {in_vpc}, not in `vpc_id` {vpc}"),
                    )
                    .at(span(), "in another VPC")
                    .help("every subnet of the stack must be in `network.vpc_id`"),
                );
            }
        }
        if let Some(slot) = zone_of_slot.get_mut(j) {
            *slot = real.to_string();
        }
    }

    let mut account = Account::default();
    if let Some(id) = &net.vpc_id {
        match vpcs.first() {
            None => problems.push(
                Problem::new(
                    "hactl::aws::vpc",
                    format!("VPC `{id}` does not exist in {region}"),
                )
                .at(stack.span_of("aws.network.vpc_id"), "no such VPC")
                .help("DescribeVpcs does not return it: check the id and the region"),
            ),
            Some(v) => {
                let mut cidrs: Vec<String> =
                    v.cidr_block().map(str::to_string).into_iter().collect();
                for a in v.cidr_block_association_set() {
                    let associated = a
                        .cidr_block_state()
                        .and_then(|s| s.state())
                        .is_none_or(|s| s.as_str() == "associated");
                    if let (Some(c), true) = (a.cidr_block(), associated) {
                        if !cidrs.iter().any(|x| x == c) {
                            cidrs.push(c.to_string());
                        }
                    }
                }
                account.vpc_cidrs = Some(cidrs);
            }
        }
    }

    // The instance type in every zone an instance goes to (only zones that exist: the others
    // are reported above).
    let wanted: BTreeSet<String> = instance_zones(&zone_of_slot, aws.hosts.count.value)
        .into_iter()
        .filter(|z| names.contains(&z.as_str()))
        .collect();
    if !wanted.is_empty() {
        let offered: BTreeSet<&str> = offerings
            .instance_type_offerings()
            .iter()
            .filter_map(|x| x.location())
            .collect();
        let lacking: Vec<&String> = wanted
            .iter()
            .filter(|z| !offered.contains(z.as_str()))
            .collect();
        if !lacking.is_empty() {
            let where_offered = if offered.is_empty() {
                format!("no zone of {region}")
            } else {
                offered.iter().copied().collect::<Vec<_>>().join(", ")
            };
            problems.push(
                Problem::new(
                    "hactl::aws::instance_type",
                    format!(
                        "instance type `{itype}` is not offered in {}",
                        lacking
                            .iter()
                            .map(|z| z.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .at(stack.span_of("aws.hosts.instance_type"), "not offered there")
                .help(format!(
                    "DescribeInstanceTypeOfferings offers it in {where_offered}: pick another type or other zones"
                )),
            );
        }
    }

    if problems.is_empty() {
        return Ok(account);
    }
    let path = stack.path.display().to_string();
    Err(Refused {
        problems: locate(&stack.path, Arc::clone(&stack.source), problems),
        path,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_go_round_robin_over_the_zones() {
        let z = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let zones = z(&["a", "b", "c"]);
        assert_eq!(
            instance_zones(&zones, 2),
            z(&["a", "b"]).into_iter().collect()
        );
        assert_eq!(instance_zones(&zones, 5).len(), 3);
        assert!(instance_zones(&zones, 0).is_empty());
    }
}
