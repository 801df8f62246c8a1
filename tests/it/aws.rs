//! The AWS provider against a real moto server (seed 003): every check reads AWS through its
//! API with the SDK, never through hactl's state. Each test starts its own `moto_server` on a
//! free 127.0.0.1 port; when `moto_server` is missing the test fails with how to install it.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use crate::support::{hactl, root, stderr, stdout};

/// One moto server, killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on("127.0.0.1")
    }

    /// A moto server listening on `host` (the lab bridge address, for lab hosts to reach).
    pub fn start_on(host: &str) -> Moto {
        let port = std::net::TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", host, "-p", &port.to_string()])
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `moto_server` ({e}): the AWS tests need it. \
                     Install it with `pip install 'moto[server]'`"
                )
            });
        let url = format!("http://{host}:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((host, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {url}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, url }
    }

    /// The environment hactl (and the SDK in the tests) needs to reach this server only.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seed file the acceptance test names, relative to the working directory.
pub const SEED: &str = "stacks/seed-003-aws-web.yaml";
/// Its stack name: every test has its own moto server, so one name serves them all.
pub const NAME: &str = "aws-web";

/// `stacks/seed-003-aws-web.yaml` as it is in the repo (plus its `files:` template), copied into
/// a temporary checkout-like directory with its own vault (`secrets/aws-web.age`, under an age
/// identity in the temp HOME) holding the DB password and a fresh SSH public key. hactl runs
/// there as `hactl … -f stacks/seed-003-aws-web.yaml`; the local state lives under it.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub stack: PathBuf,
    pub name: String,
}

impl Workdir {
    /// The seed, optionally edited (appended sections, lab variants).
    pub fn seed(edit: impl Fn(String) -> String) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = std::fs::read_to_string(root().join(SEED)).expect("the seed file");
        std::fs::create_dir_all(dir.path().join("stacks/templates")).unwrap();
        std::fs::copy(
            root().join("stacks/templates/aws-web-app.env.j2"),
            dir.path().join("stacks/templates/aws-web-app.env.j2"),
        )
        .expect("the seed's template");
        let stack = dir.path().join(SEED);
        std::fs::write(&stack, edit(text)).expect("write stack");
        let w = Workdir {
            dir,
            stack,
            name: NAME.into(),
        };
        let o = w
            .base()
            .args(["secrets", "init", "-f", SEED])
            .output()
            .unwrap();
        assert!(o.status.success(), "secrets init: {}", stderr(&o));
        w.set_secret("db_password", b"moto-only-pw");
        // The instances' key pair: a real ed25519 key (EC2 and moto parse the material).
        let key = w.dir.path().join("id_ed25519");
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "aws-web-test", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen runs (openssh-client)");
        assert!(o.status.success(), "ssh-keygen: {}", stderr(&o));
        let public = std::fs::read(key.with_extension("pub")).unwrap();
        w.set_secret("ssh_public_key", &public);
        w
    }

    pub fn set_secret(&self, name: &str, value: &[u8]) {
        let mut set = self
            .base()
            .args(["secrets", "set", name, "-f", SEED])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            set.stdin.take().unwrap().write_all(value).unwrap();
        }
        let o = set.wait_with_output().unwrap();
        assert!(o.status.success(), "secrets set {name}: {}", stderr(&o));
    }

    /// hactl in this directory, with HOME here (the age identity lives under it).
    pub fn base(&self) -> Command {
        let mut c = hactl();
        c.current_dir(self.dir.path());
        c.env("HOME", self.dir.path());
        c.env_remove("HACTL_AGE_KEY");
        c.env_remove("HACTL_AGE_KEY_FILE");
        c
    }

    pub fn rewrite(&self, from: &str, to: &str) {
        let t = std::fs::read_to_string(&self.stack).unwrap();
        assert_eq!(
            t.matches(from).count(),
            1,
            "{from} is not once in the stack"
        );
        std::fs::write(&self.stack, t.replace(from, to)).unwrap();
    }

    pub fn cmd(&self, moto: &Moto, args: &[&str]) -> Command {
        let mut c = self.base();
        c.envs(moto.env());
        c.args(args);
        c.args(["-f", SEED]);
        c
    }

    pub fn run(&self, moto: &Moto, args: &[&str]) -> Output {
        self.cmd(moto, args).output().expect("hactl runs")
    }

    pub fn ok(&self, moto: &Moto, args: &[&str]) -> String {
        crate::support::succeeded(args, &self.run(moto, args))
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(".hactl")
            .join(format!("{}.state.json", self.name))
    }
}

fn by_stack(name: &str) -> Filter {
    Filter::builder()
        .name("tag:hactl:stack")
        .values(name)
        .build()
}

fn live() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopped")
        .build()
}

/// Counts of this stack's resources, read from AWS (tags for EC2, tags for ELB/EFS/RDS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    pub vpcs: usize,
    pub subnets: usize,
    pub igws: usize,
    pub route_tables: usize,
    pub sgs: usize,
    pub key_pairs: usize,
    pub instances: usize,
    pub lbs: usize,
    pub tgs: usize,
    pub listeners: usize,
    pub targets: usize,
    pub filesystems: usize,
    pub mount_targets: usize,
    pub db_subnet_groups: usize,
    pub dbs: usize,
}

pub async fn counts(conf: &aws_config::SdkConfig, name: &str) -> Counts {
    count(conf, Some(name)).await
}

/// Counts of everything in the account, tagged or not (orphans included), leaving out what
/// AWS makes by itself: the default VPC and its subnets and gateway, every VPC's `default`
/// security group and main route table, RDS's `default` subnet group.
pub async fn everything(conf: &aws_config::SdkConfig) -> Counts {
    count(conf, None).await
}

async fn count(conf: &aws_config::SdkConfig, name: Option<&str>) -> Counts {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    let efs = aws_sdk_efs::Client::new(conf);
    let rds = aws_sdk_rds::Client::new(conf);
    let filters = || Some(name.map(by_stack).into_iter().collect::<Vec<_>>());
    let default_vpcs: Vec<String> = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .unwrap()
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    // Not in a default VPC (what AWS made by itself).
    let ours = |vpc: Option<&str>| !vpc.is_some_and(|v| default_vpcs.iter().any(|d| d == v));
    let mut c = Counts::default();
    let vpcs = ec2
        .describe_vpcs()
        .set_filters(filters())
        .send()
        .await
        .unwrap();
    c.vpcs = vpcs.vpcs().iter().filter(|v| ours(v.vpc_id())).count();
    c.subnets = ec2
        .describe_subnets()
        .set_filters(filters())
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .filter(|s| ours(s.vpc_id()))
        .count();
    c.igws = ec2
        .describe_internet_gateways()
        .set_filters(filters())
        .send()
        .await
        .unwrap()
        .internet_gateways()
        .iter()
        .filter(|g| g.attachments().iter().all(|a| ours(a.vpc_id())))
        .count();
    c.route_tables = ec2
        .describe_route_tables()
        .set_filters(filters())
        .send()
        .await
        .unwrap()
        .route_tables()
        .iter()
        .filter(|t| ours(t.vpc_id()))
        .filter(|t| !t.associations().iter().any(|a| a.main() == Some(true)))
        .count();
    c.sgs = ec2
        .describe_security_groups()
        .set_filters(filters())
        .send()
        .await
        .unwrap()
        .security_groups()
        .iter()
        .filter(|g| ours(g.vpc_id()) && g.group_name() != Some("default"))
        .count();
    c.key_pairs = ec2
        .describe_key_pairs()
        .set_filters(filters())
        .send()
        .await
        .unwrap()
        .key_pairs()
        .len();
    let mut live_filters = filters().unwrap_or_default();
    live_filters.push(live());
    c.instances = ec2
        .describe_instances()
        .set_filters(Some(live_filters))
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    let tagged = |tags: &[aws_sdk_elasticloadbalancingv2::types::Tag]| {
        name.is_none_or(|name| {
            tags.iter()
                .any(|t| t.key() == Some("hactl:stack") && t.value() == Some(name))
        })
    };
    // Every page: moto pages load balancers by 50 and file systems by 10.
    for lb in &elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
    {
        let arn = lb.load_balancer_arn().unwrap();
        let t = elb.describe_tags().resource_arns(arn).send().await.unwrap();
        if tagged(t.tag_descriptions()[0].tags()) {
            c.lbs += 1;
            c.listeners += elb
                .describe_listeners()
                .load_balancer_arn(arn)
                .send()
                .await
                .unwrap()
                .listeners()
                .len();
        }
    }
    for tg in &elb
        .describe_target_groups()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
    {
        let arn = tg.target_group_arn().unwrap();
        let t = elb.describe_tags().resource_arns(arn).send().await.unwrap();
        if tagged(t.tag_descriptions()[0].tags()) {
            c.tgs += 1;
            c.targets += elb
                .describe_target_health()
                .target_group_arn(arn)
                .send()
                .await
                .unwrap()
                .target_health_descriptions()
                .len();
        }
    }
    let named = |key: Option<&str>, value: Option<&str>| {
        key == Some("hactl:stack") && name.is_some_and(|n| value == Some(n))
    };
    for fs in &efs
        .describe_file_systems()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
    {
        if name.is_none()
            || fs
                .tags()
                .iter()
                .any(|t| named(Some(t.key()), Some(t.value())))
        {
            c.filesystems += 1;
            c.mount_targets += efs
                .describe_mount_targets()
                .file_system_id(fs.file_system_id())
                .send()
                .await
                .unwrap()
                .mount_targets()
                .len();
        }
    }
    for db in &rds
        .describe_db_instances()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
    {
        if name.is_none() || db.tag_list().iter().any(|t| named(t.key(), t.value())) {
            c.dbs += 1;
        }
    }
    for g in rds
        .describe_db_subnet_groups()
        .send()
        .await
        .unwrap()
        .db_subnet_groups()
    {
        if g.db_subnet_group_name() == Some("default") {
            continue;
        }
        let tags = rds
            .list_tags_for_resource()
            .resource_name(g.db_subnet_group_arn().unwrap())
            .send()
            .await
            .unwrap();
        if name.is_none() || tags.tag_list().iter().any(|t| named(t.key(), t.value())) {
            c.db_subnet_groups += 1;
        }
    }
    c
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, o: Counts) -> Counts {
        Counts {
            vpcs: self.vpcs + o.vpcs,
            subnets: self.subnets + o.subnets,
            igws: self.igws + o.igws,
            route_tables: self.route_tables + o.route_tables,
            sgs: self.sgs + o.sgs,
            key_pairs: self.key_pairs + o.key_pairs,
            instances: self.instances + o.instances,
            lbs: self.lbs + o.lbs,
            tgs: self.tgs + o.tgs,
            listeners: self.listeners + o.listeners,
            targets: self.targets + o.targets,
            filesystems: self.filesystems + o.filesystems,
            mount_targets: self.mount_targets + o.mount_targets,
            db_subnet_groups: self.db_subnet_groups + o.db_subnet_groups,
            dbs: self.dbs + o.dbs,
        }
    }
}

/// What seed 003 makes: the full set, exactly once each.
pub fn full() -> Counts {
    Counts {
        vpcs: 1,
        subnets: 2,
        igws: 1,
        route_tables: 1,
        sgs: 4,
        key_pairs: 1,
        instances: 2,
        lbs: 1,
        tgs: 1,
        listeners: 1,
        targets: 2,
        filesystems: 1,
        mount_targets: 2,
        db_subnet_groups: 1,
        dbs: 1,
    }
}

/// An untagged VPC + security group + instance + bucket, as someone else's resources.
pub struct Decoy {
    vpc: String,
    sg: String,
    instance: String,
    bucket: String,
}

pub async fn make_decoy(conf: &aws_config::SdkConfig) -> Decoy {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.99.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let sg = ec2
        .create_security_group()
        .group_name("decoy")
        .description("not hactl's")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let inst = ec2
        .run_instances()
        .image_id("ami-1e749f67")
        .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet)
        .security_group_ids(&sg)
        .send()
        .await
        .unwrap();
    let instance = inst.instances()[0].instance_id().unwrap().to_string();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("decoy-bucket")
        .send()
        .await
        .unwrap();
    Decoy {
        vpc,
        sg,
        instance,
        bucket: "decoy-bucket".into(),
    }
}

pub async fn decoy_intact(conf: &aws_config::SdkConfig, d: &Decoy) {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let v = ec2.describe_vpcs().vpc_ids(&d.vpc).send().await.unwrap();
    assert_eq!(v.vpcs().len(), 1, "decoy VPC gone");
    let g = ec2
        .describe_security_groups()
        .group_ids(&d.sg)
        .send()
        .await
        .unwrap();
    assert_eq!(g.security_groups().len(), 1, "decoy SG gone");
    let i = ec2
        .describe_instances()
        .instance_ids(&d.instance)
        .send()
        .await
        .unwrap();
    let state = i.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert_eq!(
        state,
        Some(aws_sdk_ec2::types::InstanceStateName::Running),
        "decoy instance touched"
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    );
    s3.head_bucket().bucket(&d.bucket).send().await.unwrap();
}

/// Everything seed 003 asks for, checked through the AWS API.
async fn verify_seed003(conf: &aws_config::SdkConfig, name: &str) {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    let efs = aws_sdk_efs::Client::new(conf);
    let rds = aws_sdk_rds::Client::new(conf);

    let vpcs = ec2
        .describe_vpcs()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    assert_eq!(vpcs.vpcs().len(), 1);
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
    assert_eq!(vpcs.vpcs()[0].cidr_block(), Some("10.20.0.0/16"));

    let subnets = ec2
        .describe_subnets()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    let mut zones: Vec<&str> = subnets
        .subnets()
        .iter()
        .map(|s| s.availability_zone().unwrap())
        .collect();
    zones.sort();
    assert_eq!(zones, ["us-east-1a", "us-east-1b"]);
    assert!(subnets.subnets().iter().all(|s| s.vpc_id() == Some(&vpc)));
    let subnet_ids: Vec<String> = subnets
        .subnets()
        .iter()
        .map(|s| s.subnet_id().unwrap().to_string())
        .collect();

    let igws = ec2
        .describe_internet_gateways()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    let igw = &igws.internet_gateways()[0];
    assert_eq!(igw.attachments()[0].vpc_id(), Some(vpc.as_str()));
    let rt = ec2
        .describe_route_tables()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    let rt = &rt.route_tables()[0];
    assert!(rt
        .routes()
        .iter()
        .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
            && r.gateway_id() == igw.internet_gateway_id()));
    let mut assoc: Vec<String> = rt
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id().map(str::to_string))
        .collect();
    assoc.sort();
    let mut sorted = subnet_ids.clone();
    sorted.sort();
    assert_eq!(assoc, sorted, "both subnets use the public route table");

    // Security groups: least privilege.
    let sgs = ec2
        .describe_security_groups()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    let sg = |suffix: &str| {
        sgs.security_groups()
            .iter()
            .find(|g| g.group_name() == Some(&format!("hactl-{name}-{suffix}")))
            .unwrap_or_else(|| panic!("security group {suffix}"))
    };
    let rules = |g: &aws_sdk_ec2::types::SecurityGroup| {
        let mut v: Vec<String> = g
            .ip_permissions()
            .iter()
            .flat_map(|p| {
                let port = p.from_port().unwrap();
                p.ip_ranges()
                    .iter()
                    .map(move |r| format!("{port} {}", r.cidr_ip().unwrap()))
                    .chain(
                        p.user_id_group_pairs()
                            .iter()
                            .map(move |u| format!("{port} {}", u.group_id().unwrap())),
                    )
            })
            .collect();
        v.sort();
        v
    };
    let (lb_sg, hosts_sg, efs_sg, db_sg) = (sg("lb"), sg("hosts"), sg("efs"), sg("db"));
    let lb_id = lb_sg.group_id().unwrap();
    let hosts_id = hosts_sg.group_id().unwrap();
    assert_eq!(rules(lb_sg), ["80 0.0.0.0/0"]);
    assert_eq!(
        rules(hosts_sg),
        ["22 203.0.113.0/24".to_string(), format!("80 {lb_id}")]
    );
    assert_eq!(rules(efs_sg), [format!("2049 {hosts_id}")]);
    assert_eq!(rules(db_sg), [format!("5432 {hosts_id}")]);

    // Instances: two, in different zones, in the hosts group.
    let inst = ec2
        .describe_instances()
        .filters(by_stack(name))
        .filters(live())
        .send()
        .await
        .unwrap();
    let insts: Vec<_> = inst
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(insts.len(), 2);
    let mut izones: Vec<&str> = insts
        .iter()
        .map(|i| i.placement().unwrap().availability_zone().unwrap())
        .collect();
    izones.sort();
    assert_eq!(izones, ["us-east-1a", "us-east-1b"]);
    assert!(insts
        .iter()
        .all(|i| i.security_groups()[0].group_id() == Some(hosts_id)));

    // The stack's own key pair, imported from the vault, tagged, used by both instances.
    let keys = ec2
        .describe_key_pairs()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.key_pairs().len(), 1);
    let key = &keys.key_pairs()[0];
    let key_name = key.key_name().unwrap();
    assert_eq!(key_name, format!("hactl-{name}-hosts"));
    assert!(key
        .tags()
        .iter()
        .any(|t| t.key() == Some("hactl:address") && t.value() == Some("aws_key_pair.hosts")));
    assert!(insts.iter().all(|i| i.key_name() == Some(key_name)));
    let mut inst_ids: Vec<String> = insts
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    inst_ids.sort();

    // ALB, target group, listener, registrations.
    let lbs = elb
        .describe_load_balancers()
        .names(format!("hactl-{name}-lb"))
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(
        lb.r#type(),
        Some(&aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Application)
    );
    assert_eq!(lb.security_groups(), [lb_id.to_string()]);
    let tgs = elb
        .describe_target_groups()
        .names(format!("hactl-{name}-web-http-80"))
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.health_check_path(), Some("/healthz"));
    assert_eq!(tg.health_check_interval_seconds(), Some(10));
    assert_eq!(tg.health_check_timeout_seconds(), Some(5));
    assert_eq!(tg.healthy_threshold_count(), Some(2));
    assert_eq!(tg.unhealthy_threshold_count(), Some(2));
    let tg_arn = tg.target_group_arn().unwrap();
    let attrs = elb
        .describe_target_group_attributes()
        .target_group_arn(tg_arn)
        .send()
        .await
        .unwrap();
    let dereg = attrs
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
        .and_then(|a| a.value());
    assert_eq!(dereg, Some("30"));
    let ls = elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ls.listeners().len(), 1);
    assert_eq!(ls.listeners()[0].port(), Some(80));
    assert_eq!(
        ls.listeners()[0].default_actions()[0].target_group_arn(),
        Some(tg_arn)
    );
    let th = elb
        .describe_target_health()
        .target_group_arn(tg_arn)
        .send()
        .await
        .unwrap();
    let mut targets: Vec<String> = th
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().id().unwrap().to_string())
        .collect();
    targets.sort();
    assert_eq!(targets, inst_ids, "both instances registered");

    // EFS: one mount target per zone, in the NFS group.
    let fss = efs.describe_file_systems().send().await.unwrap();
    let fs: Vec<_> = fss
        .file_systems()
        .iter()
        .filter(|f| {
            f.tags()
                .iter()
                .any(|t| t.key() == "hactl:stack" && t.value() == name)
        })
        .collect();
    assert_eq!(fs.len(), 1);
    let mts = efs
        .describe_mount_targets()
        .file_system_id(fs[0].file_system_id())
        .send()
        .await
        .unwrap();
    let mut mt_subnets: Vec<String> = mts
        .mount_targets()
        .iter()
        .map(|m| m.subnet_id().to_string())
        .collect();
    mt_subnets.sort();
    assert_eq!(mt_subnets, sorted, "one mount target per zone");
    for m in mts.mount_targets() {
        let g = efs
            .describe_mount_target_security_groups()
            .mount_target_id(m.mount_target_id())
            .send()
            .await
            .unwrap();
        assert_eq!(
            g.security_groups(),
            [efs_sg.group_id().unwrap().to_string()]
        );
    }

    // RDS: subnet group over both zones, Multi-AZ, DB security group.
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(format!("hactl-{name}-db"))
        .send()
        .await
        .unwrap();
    let db = &db.db_instances()[0];
    assert_eq!(db.multi_az(), Some(true));
    assert_eq!(db.engine(), Some("postgres"));
    assert_eq!(
        db.vpc_security_groups()[0].vpc_security_group_id(),
        db_sg.group_id()
    );
    let g = db.db_subnet_group().unwrap();
    let mut g_subnets: Vec<String> = g
        .subnets()
        .iter()
        .map(|s| s.subnet_identifier().unwrap().to_string())
        .collect();
    g_subnets.sort();
    assert_eq!(g_subnets, sorted);
}

/// A current-thread runtime for the SDK calls the AWS tests make to count and check.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn aws_seed003_up_noop_replace_update_down() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let decoy = rt.block_on(make_decoy(&conf));
    let w = Workdir::seed(|t| t);

    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(out.contains("Applied."), "{out}");
    rt.block_on(verify_seed003(&conf, NAME));
    assert_eq!(rt.block_on(counts(&conf, NAME)), full());

    // Converged: a second up changes nothing and a detailed plan exits 0.
    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(out.contains("Nothing to do."), "{out}");
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 to create, 0 to update, 0 to delete"));

    // Outputs from the state.
    let doc: serde_json::Value =
        serde_json::from_str(&w.ok(&moto, &["outputs", "--json"])).unwrap();
    assert_eq!(doc["format_version"], "1.0");
    let outs = &doc["outputs"];
    assert!(outs["balancer"]["dns_name"]
        .as_str()
        .unwrap()
        .contains("elb"));
    assert!(!outs["database"]["endpoint"].as_str().unwrap().is_empty());
    assert_eq!(outs["database"]["port"], 5432);
    assert!(outs["shared_fs"]["id"].as_str().unwrap().starts_with("fs-"));
    assert_eq!(outs["hosts"].as_array().unwrap().len(), 2);

    // The state is lost: refresh rebuilds it from the tags alone.
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    std::fs::remove_file(w.state_path()).unwrap();
    w.ok(&moto, &["state", "refresh"]);
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    assert_eq!(before["resources"], after["resources"]);
    assert_eq!(before["outputs"], after["outputs"]);

    // Instance type: a replacement, with its reason; health-check path: an in-place update.
    w.rewrite("instance_type: t3.small", "instance_type: t3.medium");
    w.rewrite(
        "      path: /healthz\n      interval: 10s",
        "      path: /ready\n      interval: 10s",
    );
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains(
            "-/+ aws_instance.web[0]  (instance_type changed: t3.small → t3.medium: replace)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("~ aws_lb_target_group.web  (health_check.path: /healthz → /ready)"),
        "{plan}"
    );
    assert!(
        plan.contains("~ aws_lb_target_group_attachment.web"),
        "{plan}"
    );
    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(out.contains("Applied."), "{out}");
    let c = rt.block_on(counts(&conf, NAME));
    assert_eq!(c, full(), "replaced, not duplicated");
    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(out.contains("Nothing to do."), "{out}");
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let types: Vec<String> = rt
        .block_on(
            ec2.describe_instances()
                .filters(by_stack(NAME))
                .filters(live())
                .send(),
        )
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_type().unwrap().as_str().to_string())
        .collect();
    assert_eq!(types, ["t3.medium", "t3.medium"]);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let tg = rt
        .block_on(
            elb.describe_target_groups()
                .names("hactl-aws-web-web-http-80")
                .send(),
        )
        .unwrap();
    assert_eq!(tg.target_groups()[0].health_check_path(), Some("/ready"));

    // Down: everything tagged goes, the decoy stays.
    let out = w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert!(out.contains("Applied."), "{out}");
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
    rt.block_on(decoy_intact(&conf, &decoy));
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "after down, everything is to create again"
    );
}

/// Runs `up` and kills it with SIGKILL once `after` progress lines have been printed.
fn up_killed_after(w: &Workdir, moto: &Moto, after: usize) -> usize {
    let mut child = w
        .cmd(moto, &["up", "--auto-approve", "--provision-only"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hactl runs");
    let err = child.stderr.take().unwrap();
    let mut seen = 0;
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        if line.ends_with('…') {
            seen += 1;
            if seen >= after {
                // SAFETY: a plain kill(2) of our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                break;
            }
        }
    }
    let _ = child.wait();
    seen
}

#[test]
fn aws_sigkill_at_five_points_converges_without_duplicates() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = Workdir::seed(|t| t);
    // Points spread over the waves: network, security groups, instances and the
    // balancer/EFS/RDS, registrations and mount targets.
    for point in [1, 3, 6, 4, 2] {
        let seen = up_killed_after(&w, &moto, point);
        assert!(seen >= 1, "the run printed progress before the kill");
    }
    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(
        out.contains("Applied.") || out.contains("Nothing to do."),
        "{out}"
    );
    assert_eq!(
        rt.block_on(counts(&conf, NAME)),
        full(),
        "no duplicate, no orphan"
    );
    rt.block_on(verify_seed003(&conf, NAME));
    let out = w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(out.contains("Nothing to do."), "{out}");
    // Kills during down converge too.
    up_killed_after_cmd(
        &w,
        &moto,
        &["down", "--auto-approve", "--allow-data-loss"],
        3,
    );
    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
}

fn up_killed_after_cmd(w: &Workdir, moto: &Moto, args: &[&str], after: usize) {
    let mut child = w
        .cmd(moto, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hactl runs");
    let err = child.stderr.take().unwrap();
    let mut seen = 0;
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        if line.ends_with('…') {
            seen += 1;
            if seen >= after {
                // SAFETY: a plain kill(2) of our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                break;
            }
        }
    }
    let _ = child.wait();
}

fn s3_stack(text: String) -> String {
    format!("{text}\nstate:\n  backend: s3\n  bucket: hactl-state\n  key: stacks/lock2.json\n")
}

#[test]
fn aws_two_concurrent_ups_with_s3_backend_one_waits_one_fails() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    rt.block_on(s3.create_bucket().bucket("hactl-state").send())
        .unwrap();
    let w = Workdir::seed(s3_stack);

    let first = w
        .cmd(&moto, &["up", "--auto-approve", "--provision-only"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock, as `state lock-info` reports it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let o = w.run(&moto, &["state", "lock-info", "--json"]);
        // one document per command: the holder (or null) is its `lock`
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["lock"].is_object() {
            break v["lock"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the first up never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info["operation"], "up");
    // A second run that may not wait fails, naming the holder.
    let o = w.run(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("locked by") && err.contains(info["id"].as_str().unwrap()),
        "{err}"
    );
    // A third that may wait gets it once the first is done, and has nothing to do.
    let third = w
        .cmd(
            &moto,
            &[
                "up",
                "--auto-approve",
                "--provision-only",
                "--lock-wait",
                "5m",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let third = third.wait_with_output().unwrap();
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stdout(&third).contains("Nothing to do."),
        "{}",
        stdout(&third)
    );
    assert_eq!(rt.block_on(counts(&conf, NAME)), full());

    // The state in S3 is whole: valid JSON, this stack's, with every resource.
    let obj = rt
        .block_on(
            s3.get_object()
                .bucket("hactl-state")
                .key("stacks/lock2.json")
                .send(),
        )
        .unwrap();
    let bytes = rt.block_on(obj.body.collect()).unwrap().into_bytes();
    let st: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(st["stack"], NAME);
    assert!(st["serial"].as_u64().unwrap() > 10);
    assert_eq!(st["resources"].as_object().unwrap().len(), 21);
    // Unlocked now; a lock left by a dead run is removed by force-unlock with its id.
    let o = w.run(&moto, &["state", "lock-info", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["lock"], serde_json::Value::Null, "{doc}");
    assert_eq!(doc["command"], "state lock-info", "{doc}");
    let dead = r#"{"id":"deadbeef","who":"ci@gone","pid":1,"operation":"up","created":0}"#;
    rt.block_on(
        s3.put_object()
            .bucket("hactl-state")
            .key("stacks/lock2.json.lock")
            .body(dead.as_bytes().to_vec().into())
            .send(),
    )
    .unwrap();
    let o = w.run(&moto, &["plan", "--provision-only"]);
    assert!(stderr(&o).contains("ci@gone"), "{}", stderr(&o));
    let o = w.run(&moto, &["state", "force-unlock", "wrong"]);
    assert!(!o.status.success());
    w.ok(&moto, &["state", "force-unlock", "deadbeef"]);
    w.ok(&moto, &["plan", "--provision-only"]);
}

/// The seed for the lab: the same file, with SSH going through an ssh_config that maps the
/// instance names to lab hosts (the feature users need for bastions/NAT), lab login settings,
/// and the app from the lab's demo image archive (the lab has no registry).
fn lab_variant(text: String) -> String {
    let ssh_start = text.find("\nssh:\n").expect("ssh section") + 1;
    let ssh_end = text[ssh_start..].find("\n\n").expect("end of ssh") + ssh_start;
    let text = format!(
        "{}ssh:\n  user: root\n  identity_file: /srv/hactl-lab/id_ed25519\n  config_file: ssh_config\n  connect_timeout: 5s\n{}",
        &text[..ssh_start],
        &text[ssh_end..]
    );
    let app_start = text.find("\napp:\n").expect("app section") + 1;
    let app_end = text[app_start..].find("\n\n").expect("end of app") + app_start;
    format!(
        "{}app:\n  archive: ../demo-v1.tar\n  port: 8080\n  host_port: 8000\n  replicas: 1\n  runtime: podman\n  health:\n    path: /healthz\n    interval: 250ms\n    timeout: 1s\n    healthy_threshold: 2\n    deadline: 8s\n{}",
        &text[..app_start],
        &text[app_end..]
    )
}

fn lab(args: &[&str]) -> String {
    crate::support::ok(args)
}

/// The lab variant's working directory: the seed, an ssh_config that sends `web-0`/`web-1` to
/// the lab's host1/host2, and the demo image archive the app runs from.
pub fn lab_workdir() -> Workdir {
    let w = Workdir::seed(lab_variant);
    std::fs::write(
        w.dir.path().join("stacks/ssh_config"),
        "# web-0/web-1 are EC2 instances on moto; here they are the lab's hosts.\n\
         Host web-0\n  HostName 198.18.0.11\n\nHost web-1\n  HostName 198.18.0.12\n",
    )
    .unwrap();
    let archive = w.dir.path().join("demo-v1.tar");
    lab(&[
        "lab",
        "demo-image",
        "--version",
        "v1",
        "-o",
        archive.to_str().unwrap(),
    ]);
    w
}

/// Seed 003 on moto with its two instances mapped to a fresh two-host lab: the lab test lock
/// (held while this lives), moto, a runtime and SDK config for reading it back, and the
/// workdir ([`lab_workdir`]). Fields in drop order last to first: the lock goes last.
struct LabAws {
    _guard: crate::support::LabGuard,
    moto: Moto,
    rt: tokio::runtime::Runtime,
    conf: aws_config::SdkConfig,
    w: Workdir,
}

impl LabAws {
    fn start() -> LabAws {
        let _guard = crate::support::lab_guard();
        let _ = crate::support::run(&["lab", "down"]);
        lab(&["lab", "up", "--hosts", "2"]);
        let moto = Moto::start();
        let rt = rt();
        let conf = rt.block_on(moto.sdk());
        let w = lab_workdir();
        LabAws {
            _guard,
            moto,
            rt,
            conf,
            w,
        }
    }
}

/// The whole of seed 003 on moto + two lab hosts: `up` provisions on moto, then pushes nginx,
/// the app (compose) and the EFS mount entry to the instances, which the stack's ssh_config
/// maps to the lab; host keys are pinned at first contact into the state; the EFS mount step
/// is reported as not run (no NFS client here); a second `up` changes nothing on both layers.
#[test]
fn aws_seed003_configures_instances_on_lab_hosts() {
    let LabAws {
        _guard,
        moto,
        rt,
        conf,
        w,
    } = LabAws::start();
    // Before `up` the hosts are instances nobody made yet: `render` says so, with what to run.
    let o = w.run(&moto, &["render"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("hactl::render::no_instances"),
        "{}",
        stderr(&o)
    );

    let o = w.run(&moto, &["up", "--auto-approve"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        o.status.success(),
        "up failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    // After `up`, `render` shows each instance's files as `up` pushed them (outputs included).
    let doc: serde_json::Value = serde_json::from_str(&w.ok(&moto, &["render", "--json"])).unwrap();
    let rendered: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(rendered, ["web-0", "web-1"], "{doc:#}");
    assert!(
        doc.to_string().contains("/etc/hactl/aws-web/efs.fstab"),
        "{doc:#}"
    );
    // `up` returned once the stack served: the instances (as status reads them) and the
    // target group's targets (moto: registered and running is `healthy`).
    assert!(err.contains("serving after"), "{err}");
    assert_eq!(rt.block_on(counts(&conf, NAME)), full());
    assert!(out.contains("Configuring 2 instance(s) over SSH"), "{out}");
    assert!(
        err.contains("web-0: host key pinned at first contact"),
        "{err}"
    );
    assert!(
        err.contains("web-1: host key pinned at first contact"),
        "{err}"
    );
    // Both instances got nginx, the app (compose + app-ctl), its env file and the EFS entry.
    for h in ["web-0", "web-1"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{h}: ok — ")))
            .unwrap_or_else(|| panic!("no apply report for {h}:\n{out}"));
        for want in [
            "/etc/nginx/nginx.conf",
            "/etc/hactl/aws-web/docker-compose.yml",
            "/etc/hactl/aws-web/app.env",
            "/etc/hactl/aws-web/efs.fstab",
            "start app",
            "start nginx",
        ] {
            assert!(line.contains(want), "{want} not in: {line}");
        }
    }
    // EFS over NFS cannot run here: reported as not run, with the reason, never as mounted.
    for h in ["web-0", "web-1"] {
        assert!(
            out.contains(&format!(
                "{h}: mount EFS on /mnt/shared: not run: the host kernel has no NFS client"
            )),
            "{out}"
        );
    }
    assert!(!out.contains("mount EFS on /mnt/shared: mounted"), "{out}");

    // The host keys are in the state (by instance id) and in hactl's own known_hosts file.
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    let keys = st["host_keys"].as_object().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let ids: Vec<String> = st["outputs"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["instance_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| keys.contains_key(i)));
    let kh = std::fs::read_to_string(w.dir.path().join(".hactl/aws-web.known_hosts")).unwrap();
    assert!(kh.lines().count() >= 2, "{kh}");

    // What reached the lab hosts: the app's env file names moto's database endpoint, nginx
    // answers its health check.
    let endpoint = st["outputs"]["database"]["endpoint"].as_str().unwrap();
    for host in ["host1", "host2"] {
        let env = lab(&[
            "lab",
            "exec",
            host,
            "--",
            "cat",
            "/etc/hactl/aws-web/app.env",
        ]);
        assert!(env.contains(&format!("DATABASE_HOST={endpoint}")), "{env}");
        let fstab = lab(&[
            "lab",
            "exec",
            host,
            "--",
            "cat",
            "/etc/hactl/aws-web/efs.fstab",
        ]);
        assert!(fstab.contains(" /mnt/shared nfs4 "), "{fstab}");
    }
    for addr in ["198.18.0.11", "198.18.0.12"] {
        let t0 = Instant::now();
        loop {
            let o = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .arg(format!("http://{addr}/healthz"))
                .output()
                .expect("curl runs");
            if String::from_utf8_lossy(&o.stdout) == "200" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "nginx on {addr} does not answer /healthz"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Converged on both layers; host keys are now checked strictly from the pinned file.
    let o = w.run(&moto, &["up", "--auto-approve"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        o.status.success(),
        "second up\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert_eq!(out.matches("Nothing to do.").count(), 2, "{out}");
    assert!(!err.contains("pinned"), "{err}");

    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
    lab(&["lab", "down"]);
}

/// Issue 12 §2, replace without an outage on AWS as it behaves: a target turns `healthy` only
/// once its health check is answered, so a rolled instance is configured over SSH (key pinned,
/// files pushed, services started) after it is launched and before it is registered; before,
/// the host layer ran only after the whole cloud layer, and on a real account every roll of a
/// configured stack waited out `aws.timeouts.instance` and failed. Seed 003 on moto with the
/// instances mapped to two lab hosts: an `instance_type` change rolls web[0] then web[1], and
/// each new instance's key is pinned (its first contact) inside its own roll. Afterwards the
/// state pins exactly the two new instances and both layers are converged.
#[test]
fn aws_rolled_instance_is_configured_before_it_is_registered() {
    let LabAws {
        _guard,
        moto,
        rt,
        conf,
        w,
    } = LabAws::start();
    let o = w.run(&moto, &["up", "--auto-approve"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));

    w.rewrite("instance_type: t3.small", "instance_type: t3.medium");
    let o = w.run(&moto, &["up", "--auto-approve"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "roll\nstdout:\n{out}\nstderr:\n{err}");
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{err}"))
    };
    for i in 0..2 {
        let pinned = at(&format!("web-{i}: host key pinned at first contact"));
        assert!(
            at(&format!("aws_instance.web[{i}]: replacing")) < pinned
                && pinned < at(&format!("aws_instance.web[{i}]: replaced")),
            "web-{i} was not configured inside its roll:\n{err}"
        );
    }
    assert!(
        at("aws_instance.web[0]: replaced") < at("aws_instance.web[1]: replacing"),
        "{err}"
    );
    assert_eq!(
        rt.block_on(counts(&conf, NAME)),
        full(),
        "replaced, not duplicated"
    );

    // The state pins exactly the two running instances, by their new ids.
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    let mut pinned: Vec<&String> = st["host_keys"].as_object().unwrap().keys().collect();
    pinned.sort();
    let mut ids: Vec<String> = st["outputs"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["instance_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(pinned, ids.iter().collect::<Vec<_>>());

    let o = w.run(&moto, &["up", "--auto-approve"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.matches("Nothing to do.").count(), 2, "{out}\n{err}");
    assert!(!err.contains("pinned"), "{err}");

    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
    lab(&["lab", "down"]);
}

/// Issue 11: one plan for both layers. On seed 003 with moto and two lab hosts as the
/// instances: `plan` shows the cloud resources and each instance's files in one plan and one
/// JSON document; after `up`, `plan --detailed-exitcode` is 0 for both layers; a hand edit to a
/// host file and a hand change to a security group both appear in the next plan; `plan -o`
/// then `up plan.bin` applies exactly it; a host or stack change in between makes it refuse.
#[test]
fn aws_seed003_one_plan_for_cloud_and_hosts_and_saved_plans() {
    let LabAws {
        _guard,
        moto,
        rt,
        conf,
        w,
    } = LabAws::start();

    // Before anything exists: resources to create, then each instance's files, known after
    // apply, in one JSON document.
    let o = w.run(&moto, &["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    let changes = v["changes"].as_array().expect("changes");
    assert!(changes
        .iter()
        .any(|c| c["addr"] == "aws_instance.web[0]" && c["action"] == "create"));
    for h in ["web-0", "web-1"] {
        let f = changes
            .iter()
            .find(|c| c["addr"] == format!("{h}:/etc/nginx/nginx.conf"))
            .unwrap_or_else(|| panic!("no nginx.conf for {h}: {v:#}"));
        assert_eq!(f["reason_detail"]["code"], "known_after_apply", "{f:#}");
    }

    let o = w.run(&moto, &["up", "--auto-approve"]);
    assert!(o.status.success(), "up\n{}\n{}", stdout(&o), stderr(&o));
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    // Drift on both layers, in one plan.
    lab(&[
        "lab",
        "exec",
        "host1",
        "--",
        "sh",
        "-c",
        "echo '# edited by hand' >> /etc/nginx/nginx.conf",
    ]);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let sg = rt
        .block_on(
            ec2.describe_security_groups()
                .filters(by_stack(NAME))
                .filters(
                    Filter::builder()
                        .name("tag:hactl:address")
                        .values("aws_security_group.hosts")
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let sg_id = sg.security_groups()[0].group_id().unwrap().to_string();
    rt.block_on(
        ec2.authorize_security_group_ingress()
            .group_id(&sg_id)
            .ip_protocol("tcp")
            .from_port(8080)
            .to_port(8080)
            .cidr_ip("0.0.0.0/0")
            .send(),
    )
    .unwrap();
    let plan = w.ok(&moto, &["plan"]);
    assert!(plan.contains("~ aws_security_group.hosts"), "{plan}");
    assert!(
        plan.contains("web-0:\n  ~ /etc/nginx/nginx.conf  (content changed)"),
        "{plan}"
    );

    // Saved, then applied exactly; converged after.
    w.ok(&moto, &["plan", "-o", "plan.bin"]);
    let o = w.run(&moto, &["up", "plan.bin", "--no-wait"]);
    assert!(
        o.status.success(),
        "up plan.bin\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    // A host changed between plan and up: refused, nothing applied.
    lab(&[
        "lab",
        "exec",
        "host2",
        "--",
        "sh",
        "-c",
        "echo '# again' >> /etc/nginx/nginx.conf",
    ]);
    w.ok(&moto, &["plan", "-o", "plan.bin"]);
    lab(&[
        "lab",
        "exec",
        "host2",
        "--",
        "sh",
        "-c",
        "echo '# and again' >> /etc/nginx/nginx.conf",
    ]);
    let o = w.run(&moto, &["up", "plan.bin", "--no-wait"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("hactl::plan::stale"), "{}", stderr(&o));
    assert!(stderr(&o).contains("what is deployed"), "{}", stderr(&o));
    // The stack changed between plan and up: refused too.
    w.ok(&moto, &["plan", "-o", "plan.bin"]);
    w.rewrite("health_path: /healthz", "health_path: /ready");
    let o = w.run(&moto, &["up", "plan.bin", "--no-wait"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the stack file changed"),
        "{}",
        stderr(&o)
    );

    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    lab(&["lab", "down"]);
}

/// One EC2 instance of the stack as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ec2Instance {
    id: String,
    address: String,
    zone: String,
    state: String,
    stack_tag: String,
}

/// Every instance carrying the stack's tag, in any state, read with the SDK.
async fn instances(conf: &aws_config::SdkConfig, name: &str) -> Vec<Ec2Instance> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let out = ec2
        .describe_instances()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    let tag = |i: &aws_sdk_ec2::types::Instance, k: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_string()
    };
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Ec2Instance {
            id: i.instance_id().unwrap().to_string(),
            address: tag(i, "hactl:address"),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            stack_tag: tag(i, "hactl:stack"),
        })
        .collect()
}

/// The ids registered in the stack's target group, sorted, read with the SDK.
async fn registered_targets(conf: &aws_config::SdkConfig) -> Vec<String> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    let tgs = elb.describe_target_groups().send().await.unwrap();
    assert_eq!(
        tgs.target_groups().len(),
        1,
        "one target group on this moto"
    );
    let arn = tgs.target_groups()[0].target_group_arn().unwrap();
    let mut ids: Vec<String> = elb
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .unwrap()
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Issue 6: an instance terminated through the API is replaced by `hactl heal` — in the same
/// zone, with the stack's tags, registered in the target group instead of the dead one, its
/// host key pinned anew and configured over SSH as `up` does — and `plan` then shows nothing
/// to change. The lab's host2 stands in for the replacement (the ssh_config maps `web-1` to
/// it); hactl's files are removed from it first, so it comes back as a fresh machine would.
/// Then a stopped instance (which still exists) is terminated and replaced the same way.
#[test]
fn aws_heal_replaces_a_terminated_instance_on_lab_hosts() {
    let LabAws {
        _guard,
        moto,
        rt,
        conf,
        w,
    } = LabAws::start();
    w.ok(&moto, &["up", "--auto-approve"]);

    let before = rt.block_on(instances(&conf, NAME));
    assert_eq!(before.len(), 2, "{before:?}");
    let dead = before
        .iter()
        .find(|i| i.address == "aws_instance.web[1]")
        .unwrap()
        .clone();
    assert_eq!(dead.state, "running");
    // A fresh machine has none of hactl's files.
    lab(&[
        "lab",
        "exec",
        "host2",
        "--",
        "rm",
        "-f",
        "/etc/hactl/aws-web/app.env",
        "/etc/hactl/aws-web/efs.fstab",
    ]);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    rt.block_on(ec2.terminate_instances().instance_ids(&dead.id).send())
        .unwrap();
    // `plan` sees the hole; `heal --dry-run` plans the repair, changes nothing and exits 1.
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let o = w.run(&moto, &["heal", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let dry: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(dry["outcome"], "repairs_pending");
    assert_eq!(dry["not_repairs"], 0);
    // The cloud layer's repairs (the host layer follows: web-0's removed files, web-1's
    // files known after its launch).
    let planned: Vec<(&str, &str)> = dry["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "resource")
        .map(|c| (c["addr"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        planned,
        [
            ("aws_instance.web[1]", "create"),
            ("aws_lb_target_group_attachment.web", "update")
        ]
    );
    assert_eq!(
        rt.block_on(instances(&conf, NAME)).len(),
        2,
        "dry run launched nothing"
    );

    let t0 = Instant::now();
    let o = w.run(&moto, &["heal"]);
    let heal_time = t0.elapsed();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        o.status.success(),
        "heal failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        out.contains(&format!(
            "+ aws_instance.web[1]  ({} is terminated or gone: launch a replacement)",
            dead.id
        )),
        "{out}"
    );
    assert!(
        out.contains("~ aws_lb_target_group_attachment.web"),
        "{out}"
    );
    assert!(out.contains("\nHealed.\n"), "{out}");
    assert!(
        err.contains("web-1: host key pinned at first contact"),
        "{err}"
    );
    assert!(!err.contains("web-0: host key pinned"), "{err}");

    // Through the API: the dead one stays terminated, a new one runs in its zone with the
    // stack's tags, and the target group holds exactly the running instances.
    let after = rt.block_on(instances(&conf, NAME));
    let running: Vec<&Ec2Instance> = after.iter().filter(|i| i.state == "running").collect();
    assert_eq!(running.len(), 2, "{after:?}");
    let old = after.iter().find(|i| i.id == dead.id).unwrap();
    assert_eq!(old.state, "terminated");
    let new = running
        .iter()
        .find(|i| i.address == "aws_instance.web[1]")
        .unwrap_or_else(|| panic!("no running web[1]: {after:?}"));
    assert_ne!(new.id, dead.id);
    assert_eq!(new.zone, dead.zone, "replaced in the same zone");
    assert_eq!(new.stack_tag, NAME);
    let mut want: Vec<String> = running.iter().map(|i| i.id.clone()).collect();
    want.sort();
    assert_eq!(rt.block_on(registered_targets(&conf)), want);

    // The new instance was configured: its report lists the files a fresh host lacked, and
    // they are on the lab host, rendered with the outputs.
    let line = out
        .lines()
        .find(|l| l.starts_with("web-1: ok — "))
        .unwrap_or_else(|| panic!("no apply report for web-1:\n{out}"));
    for f in ["/etc/hactl/aws-web/app.env", "/etc/hactl/aws-web/efs.fstab"] {
        assert!(line.contains(f), "{f} not in: {line}");
    }
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    let endpoint = st["outputs"]["database"]["endpoint"].as_str().unwrap();
    let env = lab(&[
        "lab",
        "exec",
        "host2",
        "--",
        "cat",
        "/etc/hactl/aws-web/app.env",
    ]);
    assert!(env.contains(&format!("DATABASE_HOST={endpoint}")), "{env}");
    let fstab = lab(&[
        "lab",
        "exec",
        "host2",
        "--",
        "cat",
        "/etc/hactl/aws-web/efs.fstab",
    ]);
    assert!(fstab.contains(" /mnt/shared nfs4 "), "{fstab}");
    // The state follows: the new id in the outputs and the host keys, the dead one gone.
    let hosts = st["outputs"]["hosts"].as_array().unwrap();
    assert_eq!(hosts[1]["instance_id"], new.id.as_str());
    let keys = st["host_keys"].as_object().unwrap();
    assert!(
        keys.contains_key(&new.id) && !keys.contains_key(&dead.id),
        "{keys:?}"
    );

    // Converged: `plan` has nothing to change; `heal --watch` rounds find nothing to heal on
    // AWS nor to configure on the hosts.
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "plan after heal\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = w.ok(
        &moto,
        &["heal", "--watch", "--rounds", "2", "--interval", "200ms"],
    );
    assert!(out.contains("heal round 2 of `aws-web`:"), "{out}");
    assert_eq!(out.matches("\nNothing to heal.\n").count(), 2, "{out}");
    assert_eq!(out.matches("\nNothing to do.\n").count(), 2, "{out}");
    eprintln!("heal replaced and configured an instance in {heal_time:?}");

    // A stopped instance still exists: heal terminates it before launching its replacement.
    let stopped = after
        .iter()
        .find(|i| i.address == "aws_instance.web[0]")
        .unwrap()
        .clone();
    rt.block_on(ec2.stop_instances().instance_ids(&stopped.id).send())
        .unwrap();
    let out = w.ok(&moto, &["heal"]);
    assert!(
        out.contains(&format!(
            "-/+ aws_instance.web[0]  ({} is stopped: replace)",
            stopped.id
        )),
        "{out}"
    );
    let now = rt.block_on(instances(&conf, NAME));
    assert_eq!(
        now.iter()
            .find(|i| i.id == stopped.id)
            .map(|i| i.state.as_str()),
        Some("terminated")
    );
    let running: Vec<&Ec2Instance> = now.iter().filter(|i| i.state == "running").collect();
    let web0 = running
        .iter()
        .find(|i| i.address == "aws_instance.web[0]")
        .unwrap_or_else(|| panic!("no running web[0]: {now:?}"));
    assert_eq!(web0.zone, stopped.zone);
    let mut want: Vec<String> = running.iter().map(|i| i.id.clone()).collect();
    want.sort();
    assert_eq!(rt.block_on(registered_targets(&conf)), want);
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    w.ok(&moto, &["down", "--auto-approve", "--allow-data-loss"]);
    assert_eq!(rt.block_on(counts(&conf, NAME)), Counts::default());
    lab(&["lab", "down"]);
}

/// docs/ci.md's jobs, as written, on an AWS stack: seed 003 on moto with its instances on two
/// lab hosts. The plan job passes with changes pending; the apply job provisions, configures
/// and returns once the instances serve and the target group's targets are healthy; the plan
/// job afterwards has nothing to change. The age key comes in `HACTL_AGE_KEY`, as from a CI
/// secret store.
#[test]
fn docs_ci_sequence_runs_against_moto_and_the_lab() {
    let (plan, apply) = crate::pipeline::ci_jobs();
    let _guard = crate::support::lab_guard();
    let _ = crate::support::run(&["lab", "down"]);
    lab(&["lab", "up", "--hosts", "2"]);
    let moto = Moto::start();
    let w = lab_workdir();
    let key = std::fs::read_to_string(w.dir.path().join(".config/hactl/age.key"))
        .expect("the workdir's age identity");
    let mut env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("STACK".into(), SEED.into()));
    env.push(("HACTL_AGE_KEY".into(), key));
    // An empty HOME: only HACTL_AGE_KEY can open the vault, as on a CI runner.
    let home = tempfile::tempdir().expect("tempdir");
    env.push(("HOME".into(), home.path().display().to_string()));
    crate::pipeline::run_ci_job("plan", &plan, w.dir.path(), &env);
    let p = &crate::pipeline::json_docs(&w.dir.path().join("plan.json"))[0];
    assert_ne!(p["summary"]["create"], 0, "{p:#}");
    crate::pipeline::run_ci_job("apply", &apply, w.dir.path(), &env);
    let docs = crate::pipeline::json_docs(&w.dir.path().join("up.json"));
    // Both layers, the EFS mount and the wait: one document (docs/json.md).
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert!(docs[0]["host_plan"]["changes"].is_array(), "{docs:#?}");
    assert_eq!(
        docs[0]["hosts"].as_array().map(Vec::len),
        Some(2),
        "{docs:#?}"
    );
    assert_eq!(
        docs[0]["mounts"].as_array().map(Vec::len),
        Some(2),
        "{docs:#?}"
    );
    let serving = docs
        .iter()
        .find_map(|d| d.get("serving"))
        .unwrap_or_else(|| panic!("no `serving` in up.json: {docs:#?}"));
    assert_eq!(serving["serving"], true, "{serving:#}");
    crate::pipeline::run_ci_job("plan", &plan, w.dir.path(), &env);
    let p = &crate::pipeline::json_docs(&w.dir.path().join("plan.json"))[0];
    assert_eq!(
        p["changes"].as_array().map(Vec::len),
        Some(0),
        "nothing left to change on AWS: {p:#}"
    );
    let _ = crate::support::run(&["lab", "down"]);
}

/// The `hactl:password-hmac` tag of the stack's database, through the RDS API.
async fn password_tag(conf: &aws_config::SdkConfig) -> Option<String> {
    let rds = aws_sdk_rds::Client::new(conf);
    let out = rds
        .describe_db_instances()
        .db_instance_identifier(format!("hactl-{NAME}-db"))
        .send()
        .await
        .unwrap();
    out.db_instances()[0]
        .tag_list()
        .iter()
        .find(|t| t.key() == Some("hactl:password-hmac"))
        .and_then(|t| t.value().map(str::to_string))
}

/// Issue 12 §2: RDS never shows the master password back, so a password rotated in the vault
/// (`hactl secrets set`) never reached RDS. Now `plan` shows the database's in-place update
/// (without the password or its hash), `up` sends it (ModifyDBInstance `MasterUserPassword`)
/// and rewrites the instance's keyed-hash tag, and the next plan is empty. An instance without
/// the tag (made before hactl kept it) plans the update once, saying why. Neither password is
/// in any plan (text or JSON), `up`'s output, the state or the journal.
#[test]
fn aws_db_password_rotation_reaches_rds() {
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = crate::aws_users::fixture(|t| t);
    let (first, rotated) = ("moto-only-pw", "rotated-moto-pw-2");
    let mut shown = vec![w.ok(&moto, &["up", "--auto-approve", "--provision-only"])];
    let tag1 = rt
        .block_on(password_tag(&conf))
        .expect("the tag is set at create");
    assert_eq!(tag1.len(), 64, "{tag1}");
    assert!(tag1.chars().all(|c| c.is_ascii_hexdigit()), "{tag1}");

    w.set_secret("db_password", rotated.as_bytes());
    let plan = w.ok(&moto, &["plan", "--provision-only"]);
    assert!(plan.contains("~ aws_db_instance.main"), "{plan}");
    assert!(
        plan.contains("master_password: (sensitive) → (changed in the vault)"),
        "{plan}"
    );
    let json = w.ok(&moto, &["plan", "--json", "--provision-only"]);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("plan JSON");
    let changes = doc["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "only the database changes: {doc:#}");
    assert_eq!(changes[0]["action"], "update", "{doc:#}");
    shown.extend([plan, json]);
    shown.push(w.ok(&moto, &["up", "--auto-approve", "--provision-only"]));
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let tag2 = rt.block_on(password_tag(&conf)).expect("the tag is kept");
    assert_ne!(tag1, tag2, "the tag follows the new password");

    // An instance without the tag: one update, and the plan says why.
    let rds = aws_sdk_rds::Client::new(&conf);
    let arn = rt
        .block_on(
            rds.describe_db_instances()
                .db_instance_identifier(format!("hactl-{NAME}-db"))
                .send(),
        )
        .unwrap()
        .db_instances()[0]
        .db_instance_arn()
        .unwrap()
        .to_string();
    rt.block_on(
        rds.remove_tags_from_resource()
            .resource_name(&arn)
            .tag_keys("hactl:password-hmac")
            .send(),
    )
    .unwrap();
    let plan = w.ok(&moto, &["plan", "--provision-only"]);
    assert!(
        plan.contains("no `hactl:password-hmac` tag, the instance predates it"),
        "{plan}"
    );
    shown.push(plan);
    shown.push(w.ok(&moto, &["up", "--auto-approve", "--provision-only"]));
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(rt.block_on(password_tag(&conf)), Some(tag2.clone()));

    let on_disk = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    shown.push(on_disk(w.state_path()));
    shown.push(on_disk(
        w.dir.path().join(format!(".hactl/{NAME}.journal.jsonl")),
    ));
    for text in &shown {
        for secret in [first, rotated, &tag1[..16], &tag2[..16]] {
            assert!(
                !text.contains(secret),
                "`{secret}` is shown or stored:\n{text}"
            );
        }
    }
}

/// Issue 12 §2: an NLB's targets see the clients' addresses, and the hosts' group admitted the
/// target port from the VPC only: health checks passed and every client timed out. The NLB now
/// has its own group (created with it: AWS cannot add one later), open on the listener's port
/// to clients, and the hosts admit the target port from that group; a second plan is empty.
/// An NLB made without a group (as hactl made them before) is planned as a replacement, and
/// `up` makes it with one.
#[test]
fn aws_nlb_has_its_own_security_group() {
    use aws_sdk_elasticloadbalancingv2 as elbv2;
    let moto = Moto::start();
    let rt = rt();
    let conf = rt.block_on(moto.sdk());
    let w = crate::aws_users::fixture(|t| {
        t.replace("kind: alb", "kind: nlb")
            .replace("protocol: HTTP", "protocol: TCP")
    });
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let elb = elbv2::Client::new(&conf);
    let group = |name: String| {
        let g = rt
            .block_on(
                ec2.describe_security_groups()
                    .filters(Filter::builder().name("group-name").values(name).build())
                    .send(),
            )
            .unwrap();
        g.security_groups()[0].clone()
    };
    let lb_sg = group(format!("hactl-{NAME}-lb"));
    let lb_sg_id = lb_sg.group_id().unwrap().to_string();
    let rules = |g: &aws_sdk_ec2::types::SecurityGroup| -> Vec<String> {
        let mut v: Vec<String> = g
            .ip_permissions()
            .iter()
            .flat_map(|p| {
                let head = format!(
                    "{}/{}",
                    p.ip_protocol().unwrap_or("?"),
                    p.from_port().unwrap_or(-1)
                );
                p.ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip().map(str::to_string))
                    .chain(
                        p.user_id_group_pairs()
                            .iter()
                            .filter_map(|u| u.group_id().map(str::to_string)),
                    )
                    .map(move |from| format!("{head} from {from}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(rules(&lb_sg), ["tcp/80 from 0.0.0.0/0"]);
    let hosts = rules(&group(format!("hactl-{NAME}-hosts")));
    assert_eq!(
        hosts
            .iter()
            .filter(|r| r.starts_with("tcp/80 "))
            .collect::<Vec<_>>(),
        [&format!("tcp/80 from {lb_sg_id}")],
        "{hosts:?}"
    );
    let lb = |rt: &tokio::runtime::Runtime| {
        rt.block_on(
            elb.describe_load_balancers()
                .names(format!("hactl-{NAME}-lb"))
                .send(),
        )
        .unwrap()
        .load_balancers()[0]
            .clone()
    };
    let first = lb(&rt);
    assert_eq!(first.r#type().map(|t| t.as_str()), Some("network"));
    assert_eq!(first.security_groups(), std::slice::from_ref(&lb_sg_id));
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    // An NLB made without a group, as hactl made them before: replaced, and the plan says why.
    let arn = first.load_balancer_arn().unwrap();
    rt.block_on(elb.delete_load_balancer().load_balancer_arn(arn).send())
        .unwrap();
    let subnets: Vec<String> = first
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id().map(str::to_string))
        .collect();
    let tag = |k: &str, v: &str| elbv2::types::Tag::builder().key(k).value(v).build();
    rt.block_on(
        elb.create_load_balancer()
            .name(format!("hactl-{NAME}-lb"))
            .r#type(elbv2::types::LoadBalancerTypeEnum::Network)
            .set_subnets(Some(subnets))
            .tags(tag("hactl:stack", NAME))
            .tags(tag("hactl:address", "aws_lb.main"))
            .send(),
    )
    .unwrap();
    let plan = w.ok(&moto, &["plan", "--provision-only"]);
    assert!(plan.contains("-/+ aws_lb.main"), "{plan}");
    assert!(
        plan.contains("security_groups_at_create changed: false → true: replace"),
        "{plan}"
    );
    w.ok(&moto, &["up", "--auto-approve", "--provision-only"]);
    assert_eq!(lb(&rt).security_groups(), [lb_sg_id]);
    let o = w.run(&moto, &["plan", "--detailed-exitcode", "--provision-only"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
