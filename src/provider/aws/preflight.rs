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
//!   guess;
//! - `hosts.ami` exists in the region and is `available` (DescribeImages), and its
//!   architecture is one `hosts.instance_type` runs (DescribeInstanceTypes,
//!   `ProcessorInfo.SupportedArchitectures`): an arm64 image on a t3 would fail RunInstances
//!   after the VPC, the balancer and the file system exist;
//! - the secrets the stack names, as the vault holds them, keep RDS's and EC2's rules (the
//!   database's master username and password per engine, the hosts' public key:
//!   [`crate::stack::aws_rules`], which `validate` applies to values written in the file).
//!
//! All of it is asked in one round of concurrent calls; every refusal names the stack key
//! (`file:line:col`) and what AWS said (or would say).

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_ec2::types::Filter;

use crate::stack::aws_rules;
use crate::stack::diag::{locate, Problem};
use crate::stack::model::Value;
use crate::stack::Stack;

use super::client::Clients;
use super::{sdk_message, AwsError};

/// What the account told us that the resources need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// With `network.vpc_id`: the VPC's IPv4 CIDR blocks (primary first, then the other
    /// associated ones).
    pub vpc_cidrs: Option<Vec<String>>,
    /// `hosts.ami`'s root device (DescribeImages `RootDeviceName`: `/dev/xvda` on Amazon
    /// Linux, `/dev/sda1` on Ubuntu), for the root volume's block device mapping.
    pub root_device_name: Option<String>,
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

/// The region variables of the environment, in the order the SDK reads them.
const REGION_VARS: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

/// Warnings, at `aws.region`, for each region variable of the environment that names another
/// region than the stack's: hactl uses `aws.region` (see `client`), and says that it ignores
/// them rather than building in a region nobody named in the file. Shown by `plan`, `up`,
/// `heal` and `down` through the view.
pub fn region_warnings(stack: &Stack) -> Vec<Problem> {
    let Some(aws) = &stack.file.aws else {
        return Vec::new();
    };
    let problems: Vec<Problem> = region_conflicts(&aws.region.value, |k| std::env::var(k).ok())
        .into_iter()
        .map(|(var, value)| {
            Problem::new(
                "hactl::aws::region",
                format!(
                    "{var}={value} in the environment is ignored: this stack is in {}",
                    aws.region.value
                ),
            )
            .at(stack.span_of("aws.region"), "the stack's region")
            .help(format!(
                "hactl always works in `aws.region`; unset {var} (or change `aws.region`) to silence this"
            ))
            .warning()
        })
        .collect();
    locate(&stack.path, Arc::clone(&stack.source), problems)
}

/// `(variable, value)` of each set, non-empty region variable that differs from `region`.
fn region_conflicts(region: &str, env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    REGION_VARS
        .iter()
        .filter_map(|k| {
            let v = env(k)?;
            let v = v.trim();
            (!v.is_empty() && v != region).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The secrets of the stack (as the vault holds them) that break RDS's or EC2's rules: the
/// hosts' public key and the database's master username and password, each when it is a
/// `{secret: NAME}` (values written in the file are `validate`'s). Opens the vault only when
/// the stack names such a secret; a secret missing from the vault is left to the error that
/// names it when the value is needed.
fn secret_problems(stack: &Stack) -> miette::Result<Vec<Problem>> {
    let Some(aws) = &stack.file.aws else {
        return Ok(Vec::new());
    };
    let secret = |v: &Value| match v {
        Value::Secret(r) => Some(r.secret.clone()),
        Value::Plain(_) => None,
    };
    let key = aws
        .hosts
        .public_key
        .as_ref()
        .and_then(|k| secret(&k.value).map(|n| (n, &k.value)));
    let db = aws
        .database
        .as_ref()
        .filter(|d| aws_rules::DB_ENGINES.contains(&d.engine.value.as_str()));
    let user = db.and_then(|d| secret(&d.username.value).map(|n| (n, &d.username.value)));
    let pass = db.and_then(|d| secret(&d.password.value).map(|n| (n, &d.password.value)));
    if key.is_none() && user.is_none() && pass.is_none() {
        return Ok(Vec::new());
    }
    let vault = crate::vault::open(stack)?;
    let mut out = Vec::new();
    let mut rule = |at: &str,
                    what: &str,
                    (name, v): (String, &Value),
                    check: &dyn Fn(&str) -> Result<(), String>,
                    code: &'static str,
                    help: String| {
        let Some(value) = vault.resolve(v) else {
            return;
        };
        if let Err(why) = check(value.expose()) {
            out.push(
                Problem::new(code, format!("{what} (secret `{name}`) {why}"))
                    .at(stack.span_of(at), "from the vault")
                    .help(help),
            );
        }
    };
    if let Some(k) = key {
        rule(
            "aws.hosts.public_key",
            "the hosts' public key",
            k,
            &|t: &str| aws_rules::ec2_public_key(t).map(|_| ()),
            "hactl::stack::aws_hosts",
            "EC2 ImportKeyPair takes one OpenSSH line of an RSA or ED25519 key, e.g. the contents of `~/.ssh/id_ed25519.pub`: `hactl secrets set NAME < KEY.pub`".into(),
        );
    }
    if let Some(u) = user {
        rule(
            "aws.database.username",
            "the database username",
            u,
            &aws_rules::db_username,
            "hactl::stack::aws_database",
            "RDS (CreateDBInstance `MasterUsername`): 1 to 16 letters, digits or underscores, starting with a letter".into(),
        );
    }
    if let (Some(d), Some(p)) = (db, pass) {
        let engine = d.engine.value.clone();
        let max = aws_rules::db_password_max(&engine);
        rule(
            "aws.database.password",
            "the database password",
            p,
            &|t: &str| aws_rules::db_password(&engine, t),
            "hactl::stack::aws_database",
            format!("RDS (CreateDBInstance `MasterUserPassword`): 8 to {max} printable ASCII characters for {engine}, without `/`, `\"`, `@` or spaces; `hactl secrets set NAME` replaces it"),
        );
    }
    Ok(out)
}

/// Asks AWS about the stack; a refusal lists every problem at once.
pub async fn check(c: &Clients, stack: &Stack) -> miette::Result<Account> {
    let Some(aws) = &stack.file.aws else {
        return Ok(Account::default());
    };
    let region = c.region.clone();
    let net = &aws.network;
    let itype = aws.hosts.instance_type.value.clone();
    let ami = aws.hosts.ami.value.clone();
    let subnet_ids = net.subnet_ids.clone().unwrap_or_default();
    let mut problems = secret_problems(stack)?;
    // One round: the offerings of the type in every zone of the region (a handful of rows),
    // so the zones the instances go to need not be known first.
    let (azs, offerings, subnets, vpcs, image, itype_info) = tokio::join!(
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
        c.ec2.describe_images().image_ids(&ami).send(),
        c.ec2
            .describe_instance_types()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(itype.as_str()))
            .send(),
    );
    let azs = azs.map_err(api("DescribeAvailabilityZones"))?;
    let offerings = offerings.map_err(api("DescribeInstanceTypeOfferings"))?;
    let subnets: Vec<_> = subnets.map_err(api("DescribeSubnets"))?;
    let vpcs: Vec<_> = vpcs.map_err(api("DescribeVpcs"))?;
    // An id EC2 does not know (or cannot parse) is an answer about the stack, not a failure.
    let image = match image {
        Ok(o) => o
            .images()
            .iter()
            .find(|i| i.image_id() == Some(ami.as_str()))
            .cloned(),
        Err(e) if super::sdk_code(&e).is_some_and(|c| c.starts_with("InvalidAMIID.")) => None,
        Err(e) => return Err(api("DescribeImages")(e).into()),
    };
    // An unknown type is reported by the offerings check: no architecture to compare then.
    let type_archs: Option<Vec<String>> = match itype_info {
        Ok(o) => o.instance_types().first().map(|t| {
            t.processor_info()
                .map(|p| {
                    p.supported_architectures()
                        .iter()
                        .map(|a| a.as_str().to_string())
                        .collect()
                })
                .unwrap_or_default()
        }),
        Err(e) if super::sdk_code(&e).is_some_and(|c| c.starts_with("InvalidInstanceType")) => None,
        Err(e) => return Err(api("DescribeInstanceTypes")(e).into()),
    };

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
    match &image {
        None => problems.push(
            Problem::new(
                "hactl::aws::ami",
                format!("AMI `{ami}` does not exist in {region}"),
            )
            .at(stack.span_of("aws.hosts.ami"), "no such image")
            .help(format!(
                "DescribeImages does not return it: AMIs are regional (copy it to {region}, or use that region's image of the same release)"
            )),
        ),
        Some(img) => {
            let state = img.state().map(|s| s.as_str()).unwrap_or("unknown");
            let arch = img.architecture().map(|a| a.as_str()).unwrap_or("unknown");
            if state != "available" {
                problems.push(
                    Problem::new(
                        "hactl::aws::ami",
                        format!("AMI `{ami}` is `{state}`, not available"),
                    )
                    .at(stack.span_of("aws.hosts.ami"), "not available")
                    .help("RunInstances takes available images only (DescribeImages `State`)"),
                );
            }
            if let Some(archs) = &type_archs {
                if !archs.iter().any(|a| a == arch) {
                    problems.push(
                        Problem::new(
                            "hactl::aws::ami",
                            format!(
                                "AMI `{ami}` is built for {arch}, but instance type `{itype}` runs {}",
                                if archs.is_empty() { "no listed architecture".to_string() } else { archs.join(", ") }
                            ),
                        )
                        .at(stack.span_of("aws.hosts.ami"), "wrong architecture")
                        .help(format!(
                            "pick an {arch} instance type, or the {} image of the same release (DescribeImages `Architecture`, DescribeInstanceTypes `ProcessorInfo.SupportedArchitectures`)",
                            archs.first().map(String::as_str).unwrap_or("matching")
                        )),
                    );
                }
            }
            account.root_device_name = img.root_device_name().map(str::to_string);
        }
    }
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

    /// Issue 12 §2: `AWS_REGION` silently won over `aws.region`. Each variable naming another
    /// region is a conflict (to warn about); the same region, empty or unset is none.
    #[test]
    fn region_variables_that_differ_from_the_stack_are_conflicts() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            region_conflicts("eu-west-1", env(&[("AWS_REGION", "us-east-1")])),
            vec![("AWS_REGION".to_string(), "us-east-1".to_string())]
        );
        assert_eq!(
            region_conflicts(
                "eu-west-1",
                env(&[
                    ("AWS_REGION", "eu-west-1"),
                    ("AWS_DEFAULT_REGION", "us-west-2")
                ])
            ),
            vec![("AWS_DEFAULT_REGION".to_string(), "us-west-2".to_string())]
        );
        assert!(region_conflicts("eu-west-1", env(&[("AWS_REGION", "")])).is_empty());
        assert!(region_conflicts("eu-west-1", env(&[])).is_empty());
    }

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
