//! What AWS users actually do (issue 17), replayed on moto: a console tag clean-up must not
//! replace the stack (identity: the state's ids first, tags second), and what only the account
//! knows is asked before anything is created. Every check reads AWS through the SDK.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;

use crate::aws::{counts, rt, Counts, Moto, Workdir, NAME};
use crate::support::{root, stderr, stdout};

/// `tests/fixtures/aws/web.yaml` (seed 003 on moto) under the tests' stack name, optionally
/// edited, in a fresh work directory with its vault.
pub(crate) fn fixture(edit: impl Fn(String) -> String) -> Workdir {
    let text = std::fs::read_to_string(root().join("tests/fixtures/aws/web.yaml"))
        .expect("the fixture")
        .replace("STACKNAME", NAME);
    let text = edit(text);
    Workdir::seed(move |_| text.clone())
}

/// Every instance ever launched in this moto account (any state, any tags): a replaced
/// instance would show up here as one more id.
async fn all_instance_ids(conf: &aws_config::SdkConfig) -> BTreeSet<String> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    ec2.describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

async fn running_ids(conf: &aws_config::SdkConfig) -> BTreeSet<String> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    ec2.describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// The stack's VPC id and the id of its security group named `hactl-aws-web-{suffix}`.
async fn vpc_and_group(conf: &aws_config::SdkConfig, suffix: &str) -> (String, String) {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let v = ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:hactl:stack")
                .values(NAME)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc = v.vpcs()[0].vpc_id().unwrap().to_string();
    let g = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values(format!("hactl-{NAME}-{suffix}"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    (vpc, g.security_groups()[0].group_id().unwrap().to_string())
}

/// A console tag clean-up: the `hactl:*` tags removed from these resources.
async fn untag(conf: &aws_config::SdkConfig, ids: &[&str]) {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let mut req = ec2.delete_tags();
    for id in ids {
        req = req.resources(*id);
    }
    for k in ["hactl:stack", "hactl:address"] {
        req = req.tags(aws_sdk_ec2::types::Tag::builder().key(k).build());
    }
    req.send().await.unwrap();
}

async fn hactl_tags(conf: &aws_config::SdkConfig, id: &str) -> Vec<(String, String)> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let t = ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(id).build())
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = t
        .tags()
        .iter()
        .filter(|t| t.key().is_some_and(|k| k.starts_with("hactl:")))
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn vpc_exists(conf: &aws_config::SdkConfig, id: &str) -> bool {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    !ec2.describe_vpcs()
        .filters(Filter::builder().name("vpc-id").values(id).build())
        .send()
        .await
        .unwrap()
        .vpcs()
        .is_empty()
}

async fn group_exists(conf: &aws_config::SdkConfig, id: &str) -> bool {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    !ec2.describe_security_groups()
        .filters(Filter::builder().name("group-id").values(id).build())
        .send()
        .await
        .unwrap()
        .security_groups()
        .is_empty()
}

/// Issue 17 §1: after `up`, the `hactl:*` tags are removed from the VPC and from the hosts'
/// security group. `plan` shows two re-tags and nothing else; `up` re-tags them and launches,
/// terminates and replaces nothing; after a second clean-up, `down` deletes everything the
/// state recorded, the untagged VPC and group included, and names what it could not find (a
/// group deleted outside hactl).
#[test]
fn aws_tag_cleanup_is_a_retag_not_a_replacement() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| t);
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    let before = rt.block_on(all_instance_ids(&conf));
    assert_eq!(before.len(), 2, "{before:?}");
    let (vpc, hosts_sg) = rt.block_on(vpc_and_group(&conf, "hosts"));
    let (_, db_sg) = rt.block_on(vpc_and_group(&conf, "db"));
    rt.block_on(untag(&conf, &[&vpc, &hosts_sg]));
    assert!(rt.block_on(hactl_tags(&conf, &vpc)).is_empty());
    // `state refresh` with a valid state keeps what it recorded, tags or not.
    let recorded = |w: &Workdir| -> serde_json::Value {
        let st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
        st["resources"].clone()
    };
    let before_refresh = recorded(&w);
    w.ok(&moto, &["state", "refresh"]);
    assert_eq!(recorded(&w), before_refresh);
    assert_eq!(before_refresh["aws_vpc.main"]["id"], vpc.as_str());

    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    let plan = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{plan}{}", stderr(&o));
    for addr in ["aws_vpc.main", "aws_security_group.hosts"] {
        assert!(
            plan.contains(&format!(
                "~ {addr}  (re-tag: hactl:stack, hactl:address missing)"
            )),
            "{plan}"
        );
    }
    assert!(
        plan.contains("Plan: 0 to create, 2 to update, 0 to delete"),
        "{plan}"
    );
    assert!(
        !plan.contains("-/+") && !plan.contains("(not found)"),
        "{plan}"
    );

    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(out.contains("Applied."), "{out}");
    assert_eq!(
        rt.block_on(all_instance_ids(&conf)),
        before,
        "no instance launched or replaced"
    );
    assert_eq!(rt.block_on(running_ids(&conf)), before, "both still run");
    assert_eq!(
        rt.block_on(hactl_tags(&conf, &vpc)),
        [
            ("hactl:address".to_string(), "aws_vpc.main".to_string()),
            ("hactl:stack".to_string(), NAME.to_string())
        ]
    );
    assert_eq!(rt.block_on(hactl_tags(&conf, &hosts_sg)).len(), 2);
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    // Another clean-up, and a group deleted outside hactl: `down` deletes by the state's ids
    // and names what was already gone.
    rt.block_on(untag(&conf, &[&vpc, &hosts_sg]));
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    rt.block_on(ec2.delete_security_group().group_id(&db_sg).send())
        .unwrap();
    let out = w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert!(
        out.contains("Not found in AWS (recorded in the state, deleted outside hactl?):"),
        "{out}"
    );
    assert!(
        out.contains(&format!("  aws_security_group.db  {db_sg}")),
        "{out}"
    );
    assert!(!rt.block_on(vpc_exists(&conf, &vpc)), "untagged VPC left");
    assert!(
        !rt.block_on(group_exists(&conf, &hosts_sg)),
        "untagged group left"
    );
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
    assert!(rt.block_on(running_ids(&conf)).is_empty());
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    assert_eq!(
        st["resources"].as_object().map(|r| r.len()),
        Some(0),
        "{st}"
    );
}

/// The ids of the stack's subnets, gateway, route table, key pair (its `key-…` id) and every
/// instance, read by tag (instances: all in the account).
async fn tagged_ec2_ids(conf: &aws_config::SdkConfig) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let f = || {
        Filter::builder()
            .name("tag:hactl:stack")
            .values(NAME)
            .build()
    };
    let mut ids = Vec::new();
    let s = ec2.describe_subnets().filters(f()).send().await.unwrap();
    ids.extend(
        s.subnets()
            .iter()
            .filter_map(|x| x.subnet_id().map(str::to_string)),
    );
    let g = ec2
        .describe_internet_gateways()
        .filters(f())
        .send()
        .await
        .unwrap();
    ids.extend(
        g.internet_gateways()
            .iter()
            .filter_map(|x| x.internet_gateway_id().map(str::to_string)),
    );
    let r = ec2
        .describe_route_tables()
        .filters(f())
        .send()
        .await
        .unwrap();
    ids.extend(
        r.route_tables()
            .iter()
            .filter_map(|x| x.route_table_id().map(str::to_string)),
    );
    let k = ec2.describe_key_pairs().filters(f()).send().await.unwrap();
    ids.extend(
        k.key_pairs()
            .iter()
            .filter_map(|x| x.key_pair_id().map(str::to_string)),
    );
    ids.extend(all_instance_ids(conf).await);
    ids
}

/// Issue 17 §1, every kind that carries tags: subnets, gateway, route table, key pair (and its
/// fingerprint tag), instances, balancer, target group, file system, DB instance and DB subnet
/// group all lose their `hactl:*` tags; `plan` re-tags each in place and creates, replaces and
/// deletes nothing; `up` restores every tag and launches nothing.
#[test]
fn aws_every_kind_that_loses_its_tags_is_retagged_in_place() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| {
        t.replace(
            "    ami: ami-1e749f67\n",
            "    ami: ami-1e749f67\n    public_key: {secret: ssh_public_key}\n",
        )
    });
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    let before = rt.block_on(all_instance_ids(&conf));
    let ec2_ids = rt.block_on(tagged_ec2_ids(&conf));
    assert_eq!(ec2_ids.len(), 2 + 1 + 1 + 1 + 2, "{ec2_ids:?}");
    // The console clean-up, service by service.
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let mut req = ec2.delete_tags().set_resources(Some(ec2_ids.clone()));
    for k in ["hactl:stack", "hactl:address", "hactl:public-key-sha256"] {
        req = req.tags(aws_sdk_ec2::types::Tag::builder().key(k).build());
    }
    rt.block_on(req.send()).unwrap();
    let keys = vec!["hactl:stack".to_string(), "hactl:address".to_string()];
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lb = rt
        .block_on(elb.describe_load_balancers().send())
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let tg = rt
        .block_on(elb.describe_target_groups().send())
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    rt.block_on(
        elb.remove_tags()
            .resource_arns(&lb)
            .resource_arns(&tg)
            .set_tag_keys(Some(keys.clone()))
            .send(),
    )
    .unwrap();
    let efs = aws_sdk_efs::Client::new(&conf);
    let fs = rt
        .block_on(efs.describe_file_systems().send())
        .unwrap()
        .file_systems()[0]
        .file_system_id()
        .to_string();
    rt.block_on(
        efs.untag_resource()
            .resource_id(&fs)
            .set_tag_keys(Some(keys.clone()))
            .send(),
    )
    .unwrap();
    let rds = aws_sdk_rds::Client::new(&conf);
    let db = rt.block_on(rds.describe_db_instances().send()).unwrap();
    let db_arn = db.db_instances()[0].db_instance_arn().unwrap().to_string();
    let groups = rt.block_on(rds.describe_db_subnet_groups().send()).unwrap();
    let group_arn = groups.db_subnet_groups()[0]
        .db_subnet_group_arn()
        .unwrap()
        .to_string();
    for arn in [&db_arn, &group_arn] {
        rt.block_on(
            rds.remove_tags_from_resource()
                .resource_name(arn)
                .set_tag_keys(Some(keys.clone()))
                .send(),
        )
        .unwrap();
    }

    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    let plan = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{plan}{}", stderr(&o));
    for addr in [
        "aws_subnet.public[0]",
        "aws_subnet.public[1]",
        "aws_internet_gateway.main",
        "aws_route_table.public",
        "aws_instance.web[0]",
        "aws_instance.web[1]",
        "aws_lb.main",
        "aws_lb_target_group.web",
        "aws_efs_file_system.shared",
        "aws_db_instance.main",
        "aws_db_subnet_group.main",
    ] {
        assert!(
            plan.contains(&format!(
                "~ {addr}  (re-tag: hactl:stack, hactl:address missing)"
            )),
            "{addr}: {plan}"
        );
    }
    assert!(
        plan.contains(
            "~ aws_key_pair.hosts  (re-tag: hactl:stack, hactl:address, hactl:public-key-sha256 missing)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to create, 12 to update, 0 to delete"),
        "{plan}"
    );
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert_eq!(rt.block_on(all_instance_ids(&conf)), before);
    assert_eq!(rt.block_on(tagged_ec2_ids(&conf)).len(), ec2_ids.len());
    assert_eq!(rt.block_on(counts(&conf, NAME)), crate::aws::full());
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
}

/// Issue 17 §3: the target group's health check matcher is compared like the other health
/// check settings: changed through the API (`200-499`), `plan` shows the drift as an in-place
/// update and `up` sets the stack's (AWS's default for an ALB, `200`) back.
#[test]
fn aws_health_check_matcher_drift_is_planned_and_repaired() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| t);
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let matcher = || {
        let tg = rt
            .block_on(
                elb.describe_target_groups()
                    .names(format!("hactl-{NAME}-web-http-80"))
                    .send(),
            )
            .unwrap();
        let tg = &tg.target_groups()[0];
        (
            tg.target_group_arn().unwrap().to_string(),
            tg.matcher().and_then(|m| m.http_code()).map(str::to_string),
        )
    };
    let (arn, m) = matcher();
    assert_eq!(m.as_deref(), Some("200"));
    rt.block_on(
        elb.modify_target_group()
            .target_group_arn(&arn)
            .matcher(
                aws_sdk_elasticloadbalancingv2::types::Matcher::builder()
                    .http_code("200-499")
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    let plan = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{plan}{}", stderr(&o));
    assert!(
        plan.contains("~ aws_lb_target_group.web  (health_check.matcher: 200-499 → 200)"),
        "{plan}"
    );
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert_eq!(matcher().1.as_deref(), Some("200"));
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

/// Nothing of the stack exists in the account: no VPC but the default one, no tagged
/// resource, no instance, balancer, file system or database at all.
pub(crate) async fn nothing_created(conf: &aws_config::SdkConfig) {
    assert_eq!(counts(conf, NAME).await, Counts::default());
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    assert!(
        vpcs.vpcs().iter().all(|v| v.is_default() == Some(true)),
        "a VPC was created: {:?}",
        vpcs.vpcs()
    );
    assert!(all_instance_ids(conf).await.is_empty(), "an instance ran");
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    assert!(elb
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
        .is_empty());
    let efs = aws_sdk_efs::Client::new(conf);
    assert!(efs
        .describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()
        .is_empty());
}

/// `plan` and `up` both refuse; stderr names the key (`file:line:col`) and what AWS said.
/// `plan`'s diagnostic is snapshotted as `name` (ids AWS made up are filtered).
pub(crate) fn refused(w: &Workdir, moto: &Moto, name: &str, located: &str, said: &[&str]) {
    for args in [
        &["plan", "--provision-only"][..],
        &["up", "--auto-approve", "--provision-only"][..],
    ] {
        let o = w.run(moto, args);
        let err = stderr(&o);
        if args == ["plan", "--provision-only"] {
            insta::with_settings!({
                filters => vec![
                    (r"subnet-[0-9a-f]{8,}", "subnet-[ID]"),
                    (r"vpc-[0-9a-f]{8,}", "vpc-[ID]"),
                ],
                prepend_module_to_snapshot => false,
                omit_expression => true,
            }, {
                insta::assert_snapshot!(name, err);
            });
        }
        assert_eq!(o.status.code(), Some(1), "{args:?}\n{}{err}", stdout(&o));
        assert!(err.contains("nothing was created"), "{err}");
        assert!(
            err.contains(&format!("[stacks/seed-003-aws-web.yaml:{located}]")),
            "{args:?} does not point at {located}:\n{err}"
        );
        for s in said {
            assert!(err.contains(s), "{args:?}: `{s}` not in\n{err}");
        }
    }
}

/// Issue 17 §2: a zone that does not exist in the region (`us-east-1q`) is refused by `plan`
/// and by `up` before its first create, with the zones AWS lists.
#[test]
fn aws_unknown_zone_is_refused_before_anything_is_created() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| {
        t.replace(
            "zones: [us-east-1a, us-east-1b]",
            "zones: [us-east-1a, us-east-1q]",
        )
    });
    refused(
        &w,
        &moto,
        "preflight_unknown_zone",
        "13:23",
        &[
            "hactl::aws::zone",
            "zone `us-east-1q` does not exist in us-east-1",
            "DescribeAvailabilityZones lists us-east-1a, us-east-1b",
        ],
    );
    rt.block_on(nothing_created(&conf));
}

/// Issue 17 §2: an instance type not offered in one of the zones an instance goes to
/// (moto's offerings data has no `t3.small` in us-east-1e) is refused, naming the zone.
#[test]
fn aws_instance_type_not_offered_in_a_zone_is_refused() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = fixture(|t| {
        t.replace(
            "zones: [us-east-1a, us-east-1b]",
            "zones: [us-east-1a, us-east-1e]",
        )
        .replace("instance_type: t2.micro", "instance_type: t3.small")
    });
    refused(
        &w,
        &moto,
        "preflight_instance_type",
        "20:20",
        &[
            "hactl::aws::instance_type",
            "instance type `t3.small` is not offered in us-east-1e",
            "DescribeInstanceTypeOfferings offers it in us-east-1a",
        ],
    );
    rt.block_on(nothing_created(&conf));
}

/// The default VPC of moto's us-east-1 and its id.
async fn default_vpc(conf: &aws_config::SdkConfig) -> (String, String) {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let v = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .unwrap();
    let v = &v.vpcs()[0];
    (
        v.vpc_id().unwrap().to_string(),
        v.cidr_block().unwrap().to_string(),
    )
}

async fn make_subnet(conf: &aws_config::SdkConfig, vpc: &str, cidr: &str, zone: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    ec2.create_subnet()
        .vpc_id(vpc)
        .cidr_block(cidr)
        .availability_zone(zone)
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string()
}

/// An existing network: `vpc_id` + `subnet_ids` instead of `vpc_cidr` + `subnets`.
fn existing_network(text: String, vpc: &str, subnets: &[String]) -> String {
    let start = text.find("  network:\n").expect("network section");
    let end = text[start..].find("  hosts:\n").expect("hosts section") + start;
    format!(
        "{}  network:\n    vpc_id: {vpc}\n    subnet_ids: [{}]\n    ssh_cidr: 198.18.0.0/24\n{}",
        &text[..start],
        subnets.join(", "),
        &text[end..]
    )
}

/// Issue 17 §2: existing `subnet_ids` that are both in us-east-1a while `zones` lists
/// us-east-1a and us-east-1b are refused (the ALB, EFS and RDS Multi-AZ would end in one zone
/// and EFS would answer MountTargetConflict).
#[test]
fn aws_subnet_ids_in_the_wrong_zone_are_refused() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let (vpc, _) = rt.block_on(default_vpc(&conf));
    let a = rt.block_on(make_subnet(&conf, &vpc, "172.31.200.0/24", "us-east-1a"));
    let b = rt.block_on(make_subnet(&conf, &vpc, "172.31.201.0/24", "us-east-1a"));
    let w = fixture(|t| existing_network(t, &vpc, &[a.clone(), b.clone()]));
    refused(
        &w,
        &moto,
        "preflight_subnet_zone",
        &format!("16:{}", 18 + a.len() + 2),
        &[
            "hactl::aws::subnet",
            &format!("subnet `{b}` is in us-east-1a, but it is listed for us-east-1b"),
        ],
    );
    rt.block_on(nothing_created(&conf));
}

/// Issue 17 §2: with `vpc_id`, an NLB's hosts accept the target port from the VPC's real CIDR
/// block (moto's default VPC is 172.31.0.0/16), not from a hard-coded 10.0.0.0/16; a VPC
/// that does not exist is refused before anything is created.
#[test]
fn aws_existing_vpc_cidr_comes_from_the_account() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let (vpc, cidr) = rt.block_on(default_vpc(&conf));
    assert_eq!(cidr, "172.31.0.0/16");
    let a = rt.block_on(make_subnet(&conf, &vpc, "172.31.200.0/24", "us-east-1a"));
    let b = rt.block_on(make_subnet(&conf, &vpc, "172.31.201.0/24", "us-east-1b"));
    let nlb = |t: String| {
        let t = existing_network(t, &vpc, &[a.clone(), b.clone()]);
        t.replace("kind: alb", "kind: nlb")
            .replace("protocol: HTTP", "protocol: TCP")
    };
    let w = fixture(nlb);
    let out = w.ok(&moto, &["plan", "--provision-only"]);
    assert!(
        out.contains("+ aws_security_group.hosts"),
        "the hosts' group is planned: {out}"
    );
    let o = w.run(&moto, &["plan", "--json", "--provision-only"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan JSON");
    assert!(!plan.to_string().contains("10.0.0.0/16"), "{plan}");
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let g = rt
        .block_on(
            ec2.describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values(format!("hactl-{NAME}-hosts"))
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let ranges: Vec<String> = g.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(80))
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip().map(str::to_string))
        .collect();
    assert_eq!(ranges, ["172.31.0.0/16"]);
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);

    // A VPC id that does not exist: refused, pointing at `vpc_id`.
    let w = fixture(|t| nlb(t).replace(&vpc, "vpc-0dead0dead"));
    refused(
        &w,
        &moto,
        "preflight_unknown_vpc",
        "15:13",
        &[
            "hactl::aws::vpc",
            "VPC `vpc-0dead0dead` does not exist in us-east-1",
        ],
    );
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
}
