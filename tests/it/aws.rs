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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
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
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
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

/// A stack from tests/fixtures/aws in its own directory (the local state lives under it).
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub stack: PathBuf,
    pub name: String,
}

impl Workdir {
    pub fn new(fixture: &str, name: &str, edit: impl Fn(String) -> String) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = std::fs::read_to_string(root().join("tests/fixtures/aws").join(fixture))
            .expect("fixture");
        let stack = dir.path().join("stack.yaml");
        std::fs::write(&stack, edit(text.replace("STACKNAME", name))).expect("write stack");
        let w = Workdir {
            dir,
            stack,
            name: name.into(),
        };
        // The stack's vault with the DB password, under an age identity in the temp HOME.
        let o = w
            .base()
            .args(["secrets", "init", "-f"])
            .arg(&w.stack)
            .output()
            .unwrap();
        assert!(o.status.success(), "secrets init: {}", stderr(&o));
        let mut set = w
            .base()
            .args(["secrets", "set", "db_password", "-f"])
            .arg(&w.stack)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            set.stdin
                .take()
                .unwrap()
                .write_all(b"moto-only-pw")
                .unwrap();
        }
        let o = set.wait_with_output().unwrap();
        assert!(o.status.success(), "secrets set: {}", stderr(&o));
        w
    }

    /// hactl in this directory, with HOME here (the age identity lives under it).
    fn base(&self) -> Command {
        let mut c = hactl();
        c.current_dir(self.dir.path());
        c.env("HOME", self.dir.path());
        c.env_remove("HACTL_AGE_KEY");
        c.env_remove("HACTL_AGE_KEY_FILE");
        c
    }

    pub fn rewrite(&self, from: &str, to: &str) {
        let t = std::fs::read_to_string(&self.stack).unwrap();
        assert!(t.contains(from), "{from} not in the stack");
        std::fs::write(&self.stack, t.replace(from, to)).unwrap();
    }

    pub fn cmd(&self, moto: &Moto, args: &[&str]) -> Command {
        let mut c = self.base();
        c.envs(moto.env());
        c.args(args);
        c.arg("-f").arg(&self.stack);
        c
    }

    pub fn run(&self, moto: &Moto, args: &[&str]) -> Output {
        self.cmd(moto, args).output().expect("hactl runs")
    }

    pub fn ok(&self, moto: &Moto, args: &[&str]) -> String {
        let o = self.run(moto, args);
        assert!(
            o.status.success(),
            "hactl {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
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
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Counts {
    vpcs: usize,
    subnets: usize,
    igws: usize,
    route_tables: usize,
    sgs: usize,
    instances: usize,
    lbs: usize,
    tgs: usize,
    listeners: usize,
    targets: usize,
    filesystems: usize,
    mount_targets: usize,
    db_subnet_groups: usize,
    dbs: usize,
}

pub async fn counts(conf: &aws_config::SdkConfig, name: &str) -> Counts {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    let efs = aws_sdk_efs::Client::new(conf);
    let rds = aws_sdk_rds::Client::new(conf);
    let mut c = Counts::default();
    let vpcs = ec2
        .describe_vpcs()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap();
    c.vpcs = vpcs.vpcs().len();
    c.subnets = ec2
        .describe_subnets()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap()
        .subnets()
        .len();
    c.igws = ec2
        .describe_internet_gateways()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap()
        .internet_gateways()
        .len();
    c.route_tables = ec2
        .describe_route_tables()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap()
        .route_tables()
        .len();
    c.sgs = ec2
        .describe_security_groups()
        .filters(by_stack(name))
        .send()
        .await
        .unwrap()
        .security_groups()
        .len();
    c.instances = ec2
        .describe_instances()
        .filters(by_stack(name))
        .filters(live())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    let tagged = |tags: &[aws_sdk_elasticloadbalancingv2::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == Some("hactl:stack") && t.value() == Some(name))
    };
    for lb in elb
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancers()
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
    for tg in elb
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
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
    for fs in efs
        .describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()
    {
        if fs
            .tags()
            .iter()
            .any(|t| t.key() == "hactl:stack" && t.value() == name)
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
    for db in rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
    {
        if db
            .tag_list()
            .iter()
            .any(|t| t.key() == Some("hactl:stack") && t.value() == Some(name))
        {
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
        let tags = rds
            .list_tags_for_resource()
            .resource_name(g.db_subnet_group_arn().unwrap())
            .send()
            .await
            .unwrap();
        if tags
            .tag_list()
            .iter()
            .any(|t| t.key() == Some("hactl:stack") && t.value() == Some(name))
        {
            c.db_subnet_groups += 1;
        }
    }
    c
}

/// What seed 003 makes: the full set, exactly once each.
pub fn full() -> Counts {
    Counts {
        vpcs: 1,
        subnets: 2,
        igws: 1,
        route_tables: 1,
        sgs: 4,
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
struct Decoy {
    vpc: String,
    sg: String,
    instance: String,
    bucket: String,
}

async fn make_decoy(conf: &aws_config::SdkConfig) -> Decoy {
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

async fn decoy_intact(conf: &aws_config::SdkConfig, d: &Decoy) {
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
    assert_eq!(vpcs.vpcs()[0].cidr_block(), Some("10.30.0.0/16"));

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
        ["22 198.18.0.0/24".to_string(), format!("80 {lb_id}")]
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
        .names(format!("hactl-{name}-web"))
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.health_check_path(), Some("/healthz"));
    assert_eq!(tg.health_check_interval_seconds(), Some(10));
    assert_eq!(tg.health_check_timeout_seconds(), Some(5));
    assert_eq!(tg.healthy_threshold_count(), Some(2));
    assert_eq!(tg.unhealthy_threshold_count(), Some(3));
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
    assert_eq!(dereg, Some("15"));
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

fn rt() -> tokio::runtime::Runtime {
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
    let w = Workdir::new("web.yaml", "seed3", |t| t);

    let out = w.ok(&moto, &["up", "--auto-approve"]);
    assert!(out.contains("Applied."), "{out}");
    rt.block_on(verify_seed003(&conf, "seed3"));
    assert_eq!(rt.block_on(counts(&conf, "seed3")), full());

    // Converged: a second up changes nothing and a detailed plan exits 0.
    let out = w.ok(&moto, &["up", "--auto-approve"]);
    assert!(out.contains("Nothing to do."), "{out}");
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("0 to create, 0 to update, 0 to delete"));

    // Outputs from the state.
    let outs: serde_json::Value =
        serde_json::from_str(&w.ok(&moto, &["outputs", "--json"])).unwrap();
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
    w.rewrite("instance_type: t2.micro", "instance_type: t2.small");
    w.rewrite("path: /healthz", "path: /ready");
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains(
            "-/+ aws_instance.web[0]  (instance_type changed: t2.micro → t2.small: replace)"
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
    let out = w.ok(&moto, &["up", "--auto-approve"]);
    assert!(out.contains("Applied."), "{out}");
    let c = rt.block_on(counts(&conf, "seed3"));
    assert_eq!(c, full(), "replaced, not duplicated");
    let out = w.ok(&moto, &["up", "--auto-approve"]);
    assert!(out.contains("Nothing to do."), "{out}");
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let types: Vec<String> = rt
        .block_on(
            ec2.describe_instances()
                .filters(by_stack("seed3"))
                .filters(live())
                .send(),
        )
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_type().unwrap().as_str().to_string())
        .collect();
    assert_eq!(types, ["t2.small", "t2.small"]);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let tg = rt
        .block_on(elb.describe_target_groups().names("hactl-seed3-web").send())
        .unwrap();
    assert_eq!(tg.target_groups()[0].health_check_path(), Some("/ready"));

    // Down: everything tagged goes, the decoy stays.
    let out = w.ok(&moto, &["down", "--auto-approve"]);
    assert!(out.contains("Applied."), "{out}");
    assert_eq!(rt.block_on(counts(&conf, "seed3")), Counts::default());
    rt.block_on(decoy_intact(&conf, &decoy));
    let o = w.run(&moto, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "after down, everything is to create again"
    );
}

/// Runs `up` and kills it with SIGKILL once `after` progress lines have been printed.
fn up_killed_after(w: &Workdir, moto: &Moto, after: usize) -> usize {
    let mut child = w
        .cmd(moto, &["up", "--auto-approve"])
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
    let w = Workdir::new("web.yaml", "kill5", |t| t);
    // Points spread over the waves: network, security groups, instances and the
    // balancer/EFS/RDS, registrations and mount targets.
    for point in [1, 3, 6, 4, 2] {
        let seen = up_killed_after(&w, &moto, point);
        assert!(seen >= 1, "the run printed progress before the kill");
    }
    let out = w.ok(&moto, &["up", "--auto-approve"]);
    assert!(
        out.contains("Applied.") || out.contains("Nothing to do."),
        "{out}"
    );
    assert_eq!(
        rt.block_on(counts(&conf, "kill5")),
        full(),
        "no duplicate, no orphan"
    );
    rt.block_on(verify_seed003(&conf, "kill5"));
    let out = w.ok(&moto, &["up", "--auto-approve"]);
    assert!(out.contains("Nothing to do."), "{out}");
    // Kills during down converge too.
    up_killed_after_cmd(&w, &moto, &["down", "--auto-approve"], 3);
    w.ok(&moto, &["down", "--auto-approve"]);
    assert_eq!(rt.block_on(counts(&conf, "kill5")), Counts::default());
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
    let w = Workdir::new("web.yaml", "lock2", s3_stack);

    let first = w
        .cmd(&moto, &["up", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock, as `state lock-info` reports it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let o = w.run(&moto, &["state", "lock-info", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v.is_object() {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the first up never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info["operation"], "up");
    // A second run that may not wait fails, naming the holder.
    let o = w.run(&moto, &["up", "--auto-approve"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("locked by") && err.contains(info["id"].as_str().unwrap()),
        "{err}"
    );
    // A third that may wait gets it once the first is done, and has nothing to do.
    let third = w
        .cmd(&moto, &["up", "--auto-approve", "--lock-wait", "5m"])
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
    assert_eq!(rt.block_on(counts(&conf, "lock2")), full());

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
    assert_eq!(st["stack"], "lock2");
    assert!(st["serial"].as_u64().unwrap() > 10);
    assert_eq!(st["resources"].as_object().unwrap().len(), 20);
    // Unlocked now; a lock left by a dead run is removed by force-unlock with its id.
    let o = w.run(&moto, &["state", "lock-info", "--json"]);
    assert_eq!(stdout(&o).trim(), "null");
    let dead = r#"{"id":"deadbeef","who":"ci@gone","pid":1,"operation":"up","created":0}"#;
    rt.block_on(
        s3.put_object()
            .bucket("hactl-state")
            .key("stacks/lock2.json.lock")
            .body(dead.as_bytes().to_vec().into())
            .send(),
    )
    .unwrap();
    let o = w.run(&moto, &["plan"]);
    assert!(stderr(&o).contains("ci@gone"), "{}", stderr(&o));
    let o = w.run(&moto, &["state", "force-unlock", "wrong"]);
    assert!(!o.status.success());
    w.ok(&moto, &["state", "force-unlock", "deadbeef"]);
    w.ok(&moto, &["plan"]);
}
