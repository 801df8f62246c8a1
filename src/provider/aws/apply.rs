//! Carrying out a diff's steps against AWS.
//!
//! Order: deletes first (and the delete half of replacements), deepest wave first; then
//! creates and updates, wave by wave. Within a wave, steps run concurrently, at most
//! `parallelism` at a time. A failed step stops the run after its wave finishes (nothing that
//! depends on it starts); the state is saved after every step, so a re-run resumes.
//!
//! Idempotency: every create carries the ownership tags in the create call itself (EC2
//! TagSpecifications, ELB/RDS/EFS Tags), so a resource never exists untagged and a re-run finds
//! it by tags instead of creating it again; instances also send a ClientToken and file systems
//! a CreationToken derived from the state's lineage and the address, so a create retried by the
//! SDK returns the first one on AWS. Mount targets and listeners are unique by zone / port.
//! Waiting uses tokio sleeps with exponential backoff.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Mutex;

use aws_sdk_ec2::types as ec2t;
use aws_sdk_elasticloadbalancingv2::types as elbt;

use crate::plan::Action;
use crate::vault::Secret;

use super::client::Clients;
use super::desired::parse_rule;
use super::diff::Step;
use super::model::{
    is_addr, Observed, ResKind, Resource, INFO_RETAG, TAG_ADDRESS, TAG_PUBLIC_KEY, TAG_STACK,
};
use super::{sdk_code, sdk_message, AwsError};

/// What apply needs besides the steps.
pub struct Ctx {
    pub c: Clients,
    pub stack: String,
    /// Salt for idempotency tokens: the state's lineage.
    pub lineage: String,
    pub root_volume_gb: i32,
    /// The hosts' public key to import as the stack's key pair (from the vault or the stack).
    pub public_key: Option<Secret>,
    /// RDS master username and password (from the vault).
    pub db_credentials: Option<(Secret, Secret)>,
    /// How long to wait for one resource to become ready or gone.
    pub wait_timeout: Duration,
    /// address → id of everything that exists (observed, then created).
    pub ids: Mutex<BTreeMap<String, String>>,
}

/// What happened to one step, for progress and the state.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        addr: String,
        action: Action,
    },
    Done {
        addr: String,
        action: Action,
        /// The id the address has now (None: deleted).
        id: Option<String>,
        kind: ResKind,
        elapsed: Duration,
    },
    Failed {
        addr: String,
        error: String,
    },
}

/// Runs the steps; `on_event` is awaited after each one (the caller saves the state there).
pub async fn apply<F, Fut>(
    ctx: Arc<Ctx>,
    steps: &[Step],
    parallelism: usize,
    on_event: F,
) -> Vec<AwsError>
where
    F: Fn(Event) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let mut deletes: BTreeMap<usize, Vec<&Step>> = BTreeMap::new();
    let mut forwards: BTreeMap<usize, Vec<&Step>> = BTreeMap::new();
    for s in steps {
        match s.change.action {
            Action::Delete => deletes.entry(s.wave).or_default().push(s),
            Action::Replace => {
                deletes.entry(s.wave).or_default().push(s);
                forwards.entry(s.wave).or_default().push(s);
            }
            _ => forwards.entry(s.wave).or_default().push(s),
        }
    }
    let mut errors = Vec::new();
    for (_, wave) in deletes.into_iter().rev() {
        errors.extend(run_wave(&ctx, wave, parallelism, true, on_event.clone()).await);
        if !errors.is_empty() {
            return errors;
        }
    }
    for (_, wave) in forwards {
        errors.extend(run_wave(&ctx, wave, parallelism, false, on_event.clone()).await);
        if !errors.is_empty() {
            return errors;
        }
    }
    errors
}

async fn run_wave<F, Fut>(
    ctx: &Arc<Ctx>,
    wave: Vec<&Step>,
    parallelism: usize,
    deleting: bool,
    on_event: F,
) -> Vec<AwsError>
where
    F: Fn(Event) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let results: Vec<Option<AwsError>> = futures::stream::iter(wave.into_iter().map(|s| {
        let ctx = ctx.clone();
        let on_event = on_event.clone();
        async move {
            let addr = s.change.addr.clone();
            let action = if deleting {
                Action::Delete
            } else {
                s.change.action
            };
            on_event(Event::Started {
                addr: addr.clone(),
                action,
            })
            .await;
            let t0 = Instant::now();
            let r = if deleting {
                match &s.observed {
                    Some(o) => delete(&ctx, o).await.map(|_| None),
                    None => Ok(None),
                }
            } else {
                match (&s.desired, s.change.action) {
                    (Some(d), Action::Update) => {
                        let o = s.observed.as_ref();
                        match o {
                            Some(o) => {
                                let mut r = retag(&ctx, o).await;
                                if r.is_ok() && !s.retag_only {
                                    r = update(&ctx, d, o).await;
                                }
                                r.map(|_| Some(o.id.clone()))
                            }
                            None => Ok(None),
                        }
                    }
                    (Some(d), _) => {
                        let salt = s
                            .observed
                            .as_ref()
                            .map(|o| o.id.as_str())
                            .or(s.replaces.as_deref())
                            .unwrap_or("");
                        create(&ctx, d, salt).await.map(Some)
                    }
                    (None, _) => Ok(None),
                }
            };
            match r {
                Ok(id) => {
                    let kind = s
                        .desired
                        .as_ref()
                        .map(|d| d.kind)
                        .or(s.observed.as_ref().map(|o| o.res.kind))
                        .unwrap_or(ResKind::Vpc);
                    {
                        let mut ids = ctx.ids.lock().await;
                        match &id {
                            Some(id) => {
                                ids.insert(addr.clone(), id.clone());
                            }
                            // A duplicate's delete leaves the address's real resource alone.
                            None if s.desired.is_none() || deleting => {
                                let dup = s.change.reason.starts_with("duplicate");
                                if !dup {
                                    ids.remove(&addr);
                                }
                            }
                            None => {}
                        }
                    }
                    on_event(Event::Done {
                        addr,
                        action,
                        id,
                        kind,
                        elapsed: t0.elapsed(),
                    })
                    .await;
                    None
                }
                Err(e) => {
                    on_event(Event::Failed {
                        addr,
                        error: e.to_string(),
                    })
                    .await;
                    Some(e)
                }
            }
        }
    }))
    .buffer_unordered(parallelism.max(1))
    .collect()
    .await;
    results.into_iter().flatten().collect()
}

fn api<E, R>(
    op: &'static str,
    addr: &str,
) -> impl Fn(aws_sdk_ec2::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let addr = addr.to_string();
    move |e| AwsError::Api {
        op,
        addr: addr.clone(),
        message: sdk_message(&e),
    }
}

impl Ctx {
    async fn id(&self, addr: &str, dep: &str) -> Result<String, AwsError> {
        if !is_addr(dep) {
            return Ok(dep.to_string());
        }
        self.ids
            .lock()
            .await
            .get(dep)
            .cloned()
            .ok_or_else(|| AwsError::MissingDep {
                addr: addr.to_string(),
                dep: dep.to_string(),
            })
    }

    async fn ref_id(&self, r: &Resource, key: &str) -> Result<String, AwsError> {
        let dep = r.one_ref(key).unwrap_or_default().to_string();
        self.id(&r.addr, &dep).await
    }

    async fn ref_ids(&self, r: &Resource, key: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        for d in r.refs.get(key).cloned().unwrap_or_default() {
            out.push(self.id(&r.addr, &d).await?);
        }
        Ok(out)
    }

    /// A token that is the same for a retried create of this resource and different for a
    /// replacement (salted with the id being replaced).
    fn token(&self, addr: &str, salt: &str) -> String {
        let h = crate::plan::sha256_hex(
            format!("{}|{}|{}|{}", self.lineage, self.stack, addr, salt).as_bytes(),
        );
        format!("hactl-{}", &h[..40])
    }

    fn ec2_tags(&self, rt: ec2t::ResourceType, addr: &str) -> ec2t::TagSpecification {
        let tag = |k: &str, v: &str| ec2t::Tag::builder().key(k).value(v).build();
        ec2t::TagSpecification::builder()
            .resource_type(rt)
            .tags(tag(TAG_STACK, &self.stack))
            .tags(tag(TAG_ADDRESS, addr))
            .tags(tag("Name", &format!("{}/{}", self.stack, addr)))
            .build()
    }

    fn elb_tags(&self, addr: &str) -> Vec<elbt::Tag> {
        vec![
            elbt::Tag::builder()
                .key(TAG_STACK)
                .value(&self.stack)
                .build(),
            elbt::Tag::builder().key(TAG_ADDRESS).value(addr).build(),
        ]
    }

    fn rds_tags(&self, addr: &str) -> Vec<aws_sdk_rds::types::Tag> {
        vec![
            aws_sdk_rds::types::Tag::builder()
                .key(TAG_STACK)
                .value(&self.stack)
                .build(),
            aws_sdk_rds::types::Tag::builder()
                .key(TAG_ADDRESS)
                .value(addr)
                .build(),
        ]
    }

    /// Polls `check` with exponential backoff (250 ms → 10 s) until it says done.
    async fn wait<F, Fut>(&self, addr: &str, what: &'static str, check: F) -> Result<(), AwsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool, AwsError>>,
    {
        let deadline = Instant::now() + self.wait_timeout;
        let mut delay = Duration::from_millis(250);
        loop {
            if check().await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(AwsError::Timeout {
                    addr: addr.to_string(),
                    what,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(10));
        }
    }
}

/// Retries a delete while AWS says something still uses the resource (ENIs of terminated
/// instances linger for a while before a security group or subnet can go).
async fn retry_busy<T, E, R, F, Fut>(
    ctx: &Ctx,
    op: &'static str,
    addr: &str,
    f: F,
) -> Result<Option<T>, AwsError>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
{
    let deadline = Instant::now() + ctx.wait_timeout;
    let mut delay = Duration::from_millis(500);
    loop {
        match f().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) => {
                let code = sdk_code(&e).unwrap_or_default();
                if code.contains("NotFound") || code.ends_with(".NotFound") {
                    return Ok(None); // already gone: the goal of a delete
                }
                let busy = [
                    "DependencyViolation",
                    "ResourceInUse",
                    "FileSystemInUse",
                    "InvalidDBSubnetGroupStateFault",
                    "InvalidGroup.InUse",
                    "InvalidDBInstanceState",
                ]
                .iter()
                .any(|b| code.contains(b));
                if !busy || Instant::now() >= deadline {
                    return Err(api(op, addr)(e));
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(10));
    }
}

async fn create(ctx: &Ctx, r: &Resource, salt: &str) -> Result<String, AwsError> {
    let c = &ctx.c;
    let a = r.addr.as_str();
    match r.kind {
        ResKind::Vpc => {
            let out = c
                .ec2
                .create_vpc()
                .cidr_block(r.get("cidr").unwrap_or_default())
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Vpc, a))
                .send()
                .await
                .map_err(api("CreateVpc", a))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_string();
            // Hostnames in the VPC: EFS and RDS endpoints resolve through them.
            c.ec2
                .modify_vpc_attribute()
                .vpc_id(&id)
                .enable_dns_hostnames(ec2t::AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .map_err(api("ModifyVpcAttribute", a))?;
            Ok(id)
        }
        ResKind::Subnet => {
            let out = c
                .ec2
                .create_subnet()
                .vpc_id(ctx.ref_id(r, "vpc").await?)
                .cidr_block(r.get("cidr").unwrap_or_default())
                .availability_zone(r.get("zone").unwrap_or_default())
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Subnet, a))
                .send()
                .await
                .map_err(api("CreateSubnet", a))?;
            let id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_string();
            c.ec2
                .modify_subnet_attribute()
                .subnet_id(&id)
                .map_public_ip_on_launch(ec2t::AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .map_err(api("ModifySubnetAttribute", a))?;
            Ok(id)
        }
        ResKind::InternetGateway => {
            let out = c
                .ec2
                .create_internet_gateway()
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::InternetGateway, a))
                .send()
                .await
                .map_err(api("CreateInternetGateway", a))?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .unwrap_or_default()
                .to_string();
            c.ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(ctx.ref_id(r, "vpc").await?)
                .send()
                .await
                .map_err(api("AttachInternetGateway", a))?;
            Ok(id)
        }
        ResKind::RouteTable => {
            let out = c
                .ec2
                .create_route_table()
                .vpc_id(ctx.ref_id(r, "vpc").await?)
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::RouteTable, a))
                .send()
                .await
                .map_err(api("CreateRouteTable", a))?;
            let id = out
                .route_table()
                .and_then(|t| t.route_table_id())
                .unwrap_or_default()
                .to_string();
            let empty = Observed {
                res: Resource::new(ResKind::RouteTable, a),
                id: id.clone(),
                info: BTreeMap::new(),
            };
            update(ctx, r, &empty).await?;
            Ok(id)
        }
        ResKind::SecurityGroup => {
            let out = c
                .ec2
                .create_security_group()
                .group_name(r.get("name").unwrap_or_default())
                .description(format!("hactl {} {}", ctx.stack, a))
                .vpc_id(ctx.ref_id(r, "vpc").await?)
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::SecurityGroup, a))
                .send()
                .await
                .map_err(api("CreateSecurityGroup", a))?;
            let id = out.group_id().unwrap_or_default().to_string();
            let empty = Observed {
                res: Resource::new(ResKind::SecurityGroup, a).attr("ingress", ""),
                id: id.clone(),
                info: BTreeMap::new(),
            };
            update(ctx, r, &empty).await?;
            Ok(id)
        }
        ResKind::KeyPair => {
            let name = r.get("name").unwrap_or_default();
            let material = ctx
                .public_key
                .as_ref()
                .ok_or_else(|| AwsError::PublicKey("aws.hosts.public_key".into()))?;
            let mut tags = ctx.ec2_tags(ec2t::ResourceType::KeyPair, a);
            tags.tags.get_or_insert_with(Vec::new).push(
                ec2t::Tag::builder()
                    .key(TAG_PUBLIC_KEY)
                    .value(r.get("public_key_sha256").unwrap_or_default())
                    .build(),
            );
            match c
                .ec2
                .import_key_pair()
                .key_name(name)
                .public_key_material(aws_sdk_ec2::primitives::Blob::new(
                    material.expose().trim().as_bytes(),
                ))
                .tag_specifications(tags)
                .send()
                .await
            {
                Ok(_) => {}
                // A retried import whose first answer was lost: the pair exists, tagged.
                Err(e) if sdk_code(&e).as_deref() == Some("InvalidKeyPair.Duplicate") => {}
                Err(e) => return Err(api("ImportKeyPair", a)(e)),
            }
            Ok(name.to_string())
        }
        ResKind::Instance => {
            let mut req = c
                .ec2
                .run_instances()
                .image_id(r.get("ami").unwrap_or_default())
                .instance_type(ec2t::InstanceType::from(
                    r.get("instance_type").unwrap_or_default(),
                ))
                .min_count(1)
                .max_count(1)
                .subnet_id(ctx.ref_id(r, "subnet").await?)
                .set_security_group_ids(Some(ctx.ref_ids(r, "security_groups").await?))
                .client_token(ctx.token(a, salt))
                .block_device_mappings(
                    ec2t::BlockDeviceMapping::builder()
                        .device_name("/dev/xvda")
                        .ebs(
                            ec2t::EbsBlockDevice::builder()
                                .volume_size(ctx.root_volume_gb)
                                .volume_type(ec2t::VolumeType::Gp3)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Instance, a))
                .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Volume, a));
            if let Some(k) = r.get("key_name") {
                req = req.key_name(k);
            }
            let out = req.send().await.map_err(api("RunInstances", a))?;
            let id = out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .unwrap_or_default()
                .to_string();
            ctx.wait(a, "running", || async {
                let o = c
                    .ec2
                    .describe_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .map_err(api("DescribeInstances", a))?;
                Ok(o.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .any(|i| {
                        i.state().and_then(|s| s.name()) == Some(&ec2t::InstanceStateName::Running)
                    }))
            })
            .await?;
            Ok(id)
        }
        ResKind::Lb => {
            let mut req = c
                .elb
                .create_load_balancer()
                .name(r.get("name").unwrap_or_default())
                .r#type(elbt::LoadBalancerTypeEnum::from(
                    r.get("kind").unwrap_or("application"),
                ))
                .scheme(elbt::LoadBalancerSchemeEnum::InternetFacing)
                .set_subnets(Some(ctx.ref_ids(r, "subnets").await?))
                .set_tags(Some(ctx.elb_tags(a)));
            if r.refs.contains_key("security_groups") {
                req = req.set_security_groups(Some(ctx.ref_ids(r, "security_groups").await?));
            }
            let out = req.send().await.map_err(api("CreateLoadBalancer", a))?;
            let arn = out
                .load_balancers()
                .first()
                .and_then(|l| l.load_balancer_arn())
                .unwrap_or_default()
                .to_string();
            ctx.wait(a, "active", || async {
                let o = c
                    .elb
                    .describe_load_balancers()
                    .load_balancer_arns(&arn)
                    .send()
                    .await
                    .map_err(api("DescribeLoadBalancers", a))?;
                Ok(o.load_balancers().iter().any(|l| {
                    l.state().and_then(|s| s.code()) == Some(&elbt::LoadBalancerStateEnum::Active)
                }))
            })
            .await?;
            Ok(arn)
        }
        ResKind::TargetGroup => {
            let n = |k: &str| r.get(k).and_then(|v| v.parse::<i32>().ok());
            let out = c
                .elb
                .create_target_group()
                .name(r.get("name").unwrap_or_default())
                .protocol(elbt::ProtocolEnum::from(
                    r.get("protocol").unwrap_or("HTTP"),
                ))
                .set_port(n("port"))
                .vpc_id(ctx.ref_id(r, "vpc").await?)
                .target_type(elbt::TargetTypeEnum::Instance)
                .health_check_protocol(elbt::ProtocolEnum::Http)
                .health_check_path(r.get("health_check.path").unwrap_or("/"))
                .set_health_check_interval_seconds(n("health_check.interval"))
                .set_health_check_timeout_seconds(n("health_check.timeout"))
                .set_healthy_threshold_count(n("health_check.healthy_threshold"))
                .set_unhealthy_threshold_count(n("health_check.unhealthy_threshold"))
                .set_matcher(matcher(r))
                .set_tags(Some(ctx.elb_tags(a)))
                .send()
                .await
                .map_err(api("CreateTargetGroup", a))?;
            let arn = out
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .unwrap_or_default()
                .to_string();
            set_dereg(ctx, r, &arn).await?;
            Ok(arn)
        }
        ResKind::Listener => {
            let out = c
                .elb
                .create_listener()
                .load_balancer_arn(ctx.ref_id(r, "lb").await?)
                .set_port(r.get("port").and_then(|p| p.parse().ok()))
                .protocol(elbt::ProtocolEnum::from(
                    r.get("protocol").unwrap_or("HTTP"),
                ))
                .default_actions(forward(ctx.ref_id(r, "target_group").await?))
                .set_tags(Some(ctx.elb_tags(a)))
                .send()
                .await
                .map_err(api("CreateListener", a))?;
            Ok(out
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .unwrap_or_default()
                .to_string())
        }
        ResKind::TargetAttachment => {
            let tg = ctx.ref_id(r, "target_group").await?;
            let empty = Observed {
                res: Resource::new(ResKind::TargetAttachment, a),
                id: tg.clone(),
                info: BTreeMap::new(),
            };
            update(ctx, r, &empty).await?;
            Ok(tg)
        }
        ResKind::EfsFileSystem => {
            let token = ctx.token(a, salt);
            let tags: Vec<_> = [(TAG_STACK, ctx.stack.as_str()), (TAG_ADDRESS, a)]
                .iter()
                .filter_map(|(k, v)| {
                    aws_sdk_efs::types::Tag::builder()
                        .key(*k)
                        .value(*v)
                        .build()
                        .ok()
                })
                .collect();
            let id = match c
                .efs
                .create_file_system()
                .creation_token(&token)
                .performance_mode(aws_sdk_efs::types::PerformanceMode::from(
                    r.get("performance_mode").unwrap_or("generalPurpose"),
                ))
                .encrypted(r.get("encrypted") == Some("true"))
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(o) => o.file_system_id().to_string(),
                Err(e) if sdk_code(&e).as_deref() == Some("FileSystemAlreadyExists") => {
                    // A retried create: the token finds the first one.
                    let o = c
                        .efs
                        .describe_file_systems()
                        .creation_token(&token)
                        .send()
                        .await
                        .map_err(api("DescribeFileSystems", a))?;
                    o.file_systems()
                        .first()
                        .map(|f| f.file_system_id().to_string())
                        .ok_or_else(|| api("CreateFileSystem", a)(e))?
                }
                Err(e) => return Err(api("CreateFileSystem", a)(e)),
            };
            ctx.wait(a, "available", || async {
                let o = c
                    .efs
                    .describe_file_systems()
                    .file_system_id(&id)
                    .send()
                    .await
                    .map_err(api("DescribeFileSystems", a))?;
                Ok(o.file_systems().iter().any(|f| {
                    f.life_cycle_state() == &aws_sdk_efs::types::LifeCycleState::Available
                }))
            })
            .await?;
            Ok(id)
        }
        ResKind::EfsMountTarget => {
            let out = c
                .efs
                .create_mount_target()
                .file_system_id(ctx.ref_id(r, "file_system").await?)
                .subnet_id(ctx.ref_id(r, "subnet").await?)
                .set_security_groups(Some(ctx.ref_ids(r, "security_groups").await?))
                .send()
                .await
                .map_err(api("CreateMountTarget", a))?;
            let id = out.mount_target_id().to_string();
            ctx.wait(a, "available", || async {
                let o = c
                    .efs
                    .describe_mount_targets()
                    .mount_target_id(&id)
                    .send()
                    .await
                    .map_err(api("DescribeMountTargets", a))?;
                Ok(o.mount_targets().iter().any(|m| {
                    m.life_cycle_state() == &aws_sdk_efs::types::LifeCycleState::Available
                }))
            })
            .await?;
            Ok(id)
        }
        ResKind::DbSubnetGroup => {
            let name = r.get("name").unwrap_or_default().to_string();
            c.rds
                .create_db_subnet_group()
                .db_subnet_group_name(&name)
                .db_subnet_group_description(format!("hactl {}", ctx.stack))
                .set_subnet_ids(Some(ctx.ref_ids(r, "subnets").await?))
                .set_tags(Some(ctx.rds_tags(a)))
                .send()
                .await
                .map_err(api("CreateDBSubnetGroup", a))?;
            Ok(name)
        }
        ResKind::DbInstance => {
            let (user, pass) = ctx
                .db_credentials
                .as_ref()
                .ok_or_else(|| AwsError::Credentials("database.username/password".into()))?;
            let n = |k: &str| r.get(k).and_then(|v| v.parse::<i32>().ok());
            let ident = r.get("identifier").unwrap_or_default().to_string();
            let res = c
                .rds
                .create_db_instance()
                .db_instance_identifier(&ident)
                .db_instance_class(r.get("instance_class").unwrap_or_default())
                .engine(r.get("engine").unwrap_or_default())
                .set_engine_version(r.get("engine_version").map(str::to_string))
                .set_allocated_storage(n("storage_gb"))
                .master_username(user.expose())
                .master_user_password(pass.expose())
                .db_name(r.get("db_name").unwrap_or("app"))
                .multi_az(r.get("multi_az") == Some("true"))
                .set_port(n("port"))
                .db_subnet_group_name(ctx.ref_id(r, "subnet_group").await?)
                .set_vpc_security_group_ids(Some(ctx.ref_ids(r, "security_groups").await?))
                .publicly_accessible(false)
                .storage_encrypted(true)
                .set_tags(Some(ctx.rds_tags(a)))
                .send()
                .await;
            match res {
                Ok(_) => {}
                // The identifier is ours (it is derived from the stack name) and tagged at
                // creation: a retried create finds the first one.
                Err(e) if sdk_code(&e).as_deref() == Some("DBInstanceAlreadyExists") => {}
                Err(e) => return Err(api("CreateDBInstance", a)(e)),
            }
            ctx.wait(a, "available", || async {
                let o = c
                    .rds
                    .describe_db_instances()
                    .db_instance_identifier(&ident)
                    .send()
                    .await
                    .map_err(api("DescribeDBInstances", a))?;
                Ok(o.db_instances()
                    .iter()
                    .any(|d| d.db_instance_status() == Some("available")))
            })
            .await?;
            Ok(ident)
        }
    }
}

/// Restores the ownership tags of a resource the state recorded and that lost them (observe
/// sets [`INFO_RETAG`]): `hactl:stack` and `hactl:address`, and a key pair's fingerprint tag.
/// Only these: a `Name` someone changed by hand is theirs. Nothing else about the resource
/// changes. Resources without tags of their own (listeners, mount targets, registrations) are
/// read through their parents and never need it.
async fn retag(ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
    if o.info.get(INFO_RETAG).is_none_or(|t| t.is_empty()) {
        return Ok(());
    }
    let c = &ctx.c;
    let a = o.res.addr.as_str();
    let mut pairs = vec![(TAG_STACK, ctx.stack.clone()), (TAG_ADDRESS, a.to_string())];
    match o.res.kind {
        ResKind::Vpc
        | ResKind::Subnet
        | ResKind::InternetGateway
        | ResKind::RouteTable
        | ResKind::SecurityGroup
        | ResKind::Instance
        | ResKind::KeyPair => {
            // EC2 tags a key pair by its id (`key-…`), not by the name hactl uses as its id.
            let id = match o.res.kind {
                ResKind::KeyPair => {
                    if let Some(sha) = o.res.get("public_key_sha256").filter(|s| !s.is_empty()) {
                        pairs.push((TAG_PUBLIC_KEY, sha.to_string()));
                    }
                    o.info
                        .get("key_pair_id")
                        .cloned()
                        .unwrap_or_else(|| o.id.clone())
                }
                _ => o.id.clone(),
            };
            let tags = pairs
                .iter()
                .map(|(k, v)| ec2t::Tag::builder().key(*k).value(v).build())
                .collect();
            c.ec2
                .create_tags()
                .resources(id)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(api("CreateTags", a))?;
        }
        ResKind::Lb | ResKind::TargetGroup => {
            c.elb
                .add_tags()
                .resource_arns(&o.id)
                .set_tags(Some(ctx.elb_tags(a)))
                .send()
                .await
                .map_err(api("AddTags", a))?;
        }
        ResKind::EfsFileSystem => {
            let tags = pairs
                .iter()
                .filter_map(|(k, v)| {
                    aws_sdk_efs::types::Tag::builder()
                        .key(*k)
                        .value(v)
                        .build()
                        .ok()
                })
                .collect();
            c.efs
                .tag_resource()
                .resource_id(&o.id)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(api("TagResource", a))?;
        }
        ResKind::DbInstance | ResKind::DbSubnetGroup => {
            let arn = o.info.get("arn").cloned().unwrap_or_default();
            c.rds
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(ctx.rds_tags(a)))
                .send()
                .await
                .map_err(api("AddTagsToResource", a))?;
        }
        ResKind::Listener | ResKind::TargetAttachment | ResKind::EfsMountTarget => {}
    }
    Ok(())
}

/// The instance ids registered in a target group now.
async fn registered(ctx: &Ctx, addr: &str, tg: &str) -> Result<Vec<String>, AwsError> {
    let out = ctx
        .c
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .map_err(api("DescribeTargetHealth", addr))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect())
}

/// The health check's success codes (ELB `Matcher.HttpCode`), when the stack states them.
fn matcher(r: &Resource) -> Option<elbt::Matcher> {
    r.get("health_check.matcher")
        .filter(|m| !m.is_empty())
        .map(|m| elbt::Matcher::builder().http_code(m).build())
}

fn forward(tg: String) -> elbt::Action {
    elbt::Action::builder()
        .r#type(elbt::ActionTypeEnum::Forward)
        .target_group_arn(tg)
        .build()
}

async fn set_dereg(ctx: &Ctx, r: &Resource, arn: &str) -> Result<(), AwsError> {
    ctx.c
        .elb
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            elbt::TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(r.get("deregistration_delay").unwrap_or("30"))
                .build(),
        )
        .send()
        .await
        .map_err(api("ModifyTargetGroupAttributes", &r.addr))?;
    Ok(())
}

fn ip_permission(ctx_ids: &BTreeMap<String, String>, rule: &str) -> Option<ec2t::IpPermission> {
    let (proto, port, from) = parse_rule(rule)?;
    let b = ec2t::IpPermission::builder()
        .ip_protocol(proto)
        .from_port(port)
        .to_port(port);
    Some(if is_addr(&from) {
        b.user_id_group_pairs(
            ec2t::UserIdGroupPair::builder()
                .group_id(ctx_ids.get(&from)?)
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

fn split_rules(s: Option<&str>) -> Vec<String> {
    s.unwrap_or_default()
        .split(", ")
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn missing<'a>(want: &'a [String], have: &[String]) -> Vec<&'a String> {
    want.iter().filter(|w| !have.contains(w)).collect()
}

async fn update(ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
    let c = &ctx.c;
    let a = want.addr.as_str();
    let id = have.id.as_str();
    let refs = |r: &Resource, k: &str| r.refs.get(k).cloned().unwrap_or_default();
    match want.kind {
        ResKind::InternetGateway => {
            for old in refs(&have.res, "vpc") {
                let vpc = ctx.id(a, &old).await?;
                let _ = c
                    .ec2
                    .detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(vpc)
                    .send()
                    .await;
            }
            c.ec2
                .attach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(ctx.ref_id(want, "vpc").await?)
                .send()
                .await
                .map_err(api("AttachInternetGateway", a))?;
        }
        ResKind::RouteTable => {
            if refs(want, "gateway") != refs(&have.res, "gateway") {
                let gw = ctx.ref_id(want, "gateway").await?;
                if have.res.refs.get("gateway").is_some_and(|g| !g.is_empty()) {
                    c.ec2
                        .replace_route()
                        .route_table_id(id)
                        .destination_cidr_block("0.0.0.0/0")
                        .gateway_id(gw)
                        .send()
                        .await
                        .map_err(api("ReplaceRoute", a))?;
                } else {
                    c.ec2
                        .create_route()
                        .route_table_id(id)
                        .destination_cidr_block("0.0.0.0/0")
                        .gateway_id(gw)
                        .send()
                        .await
                        .map_err(api("CreateRoute", a))?;
                }
            }
            let want_s = refs(want, "subnets");
            let have_s = refs(&have.res, "subnets");
            for s in missing(&want_s, &have_s) {
                c.ec2
                    .associate_route_table()
                    .route_table_id(id)
                    .subnet_id(ctx.id(a, s).await?)
                    .send()
                    .await
                    .map_err(api("AssociateRouteTable", a))?;
            }
            // Extra associations: disassociate by their association ids (read by observe).
            let want_ids = ctx.ref_ids(want, "subnets").await?;
            for pair in have
                .info
                .get("associations")
                .map(|s| s.split(',').filter(|x| !x.is_empty()).collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if let Some((subnet, assoc)) = pair.split_once('=') {
                    if !want_ids.iter().any(|w| w == subnet) {
                        c.ec2
                            .disassociate_route_table()
                            .association_id(assoc)
                            .send()
                            .await
                            .map_err(api("DisassociateRouteTable", a))?;
                    }
                }
            }
        }
        ResKind::SecurityGroup => {
            let want_r = split_rules(want.get("ingress"));
            let have_r = split_rules(have.res.get("ingress"));
            let ids = ctx.ids.lock().await.clone();
            let add: Vec<_> = missing(&want_r, &have_r)
                .into_iter()
                .filter_map(|r| ip_permission(&ids, r))
                .collect();
            let del: Vec<_> = missing(&have_r, &want_r)
                .into_iter()
                .filter_map(|r| ip_permission(&ids, r))
                .collect();
            if !add.is_empty() {
                c.ec2
                    .authorize_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(add))
                    .send()
                    .await
                    .map_err(api("AuthorizeSecurityGroupIngress", a))?;
            }
            if !del.is_empty() {
                c.ec2
                    .revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(del))
                    .send()
                    .await
                    .map_err(api("RevokeSecurityGroupIngress", a))?;
            }
        }
        ResKind::Instance => {
            c.ec2
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(ctx.ref_ids(want, "security_groups").await?))
                .send()
                .await
                .map_err(api("ModifyInstanceAttribute", a))?;
        }
        ResKind::Lb => {
            c.elb
                .set_subnets()
                .load_balancer_arn(id)
                .set_subnets(Some(ctx.ref_ids(want, "subnets").await?))
                .send()
                .await
                .map_err(api("SetSubnets", a))?;
            if want.refs.contains_key("security_groups") {
                c.elb
                    .set_security_groups()
                    .load_balancer_arn(id)
                    .set_security_groups(Some(ctx.ref_ids(want, "security_groups").await?))
                    .send()
                    .await
                    .map_err(api("SetSecurityGroups", a))?;
            }
        }
        ResKind::TargetGroup => {
            let n = |k: &str| want.get(k).and_then(|v| v.parse::<i32>().ok());
            c.elb
                .modify_target_group()
                .target_group_arn(id)
                .health_check_path(want.get("health_check.path").unwrap_or("/"))
                .set_health_check_interval_seconds(n("health_check.interval"))
                .set_health_check_timeout_seconds(n("health_check.timeout"))
                .set_healthy_threshold_count(n("health_check.healthy_threshold"))
                .set_unhealthy_threshold_count(n("health_check.unhealthy_threshold"))
                .set_matcher(matcher(want))
                .send()
                .await
                .map_err(api("ModifyTargetGroup", a))?;
            if want.get("deregistration_delay") != have.res.get("deregistration_delay") {
                set_dereg(ctx, want, id).await?;
            }
        }
        ResKind::Listener => {
            c.elb
                .modify_listener()
                .listener_arn(id)
                .protocol(elbt::ProtocolEnum::from(
                    want.get("protocol").unwrap_or("HTTP"),
                ))
                .default_actions(forward(ctx.ref_id(want, "target_group").await?))
                .send()
                .await
                .map_err(api("ModifyListener", a))?;
        }
        ResKind::TargetAttachment => {
            let want_ids = ctx.ref_ids(want, "targets").await?;
            // What is registered now, read at apply time: the instances the plan saw may
            // have been replaced by earlier steps of this run.
            let have_ids = registered(ctx, a, id).await?;
            let add: Vec<_> = want_ids
                .iter()
                .filter(|w| !have_ids.contains(w))
                .map(|i| elbt::TargetDescription::builder().id(i).build())
                .collect();
            let del: Vec<_> = have_ids
                .iter()
                .filter(|h| !want_ids.contains(h))
                .map(|i| elbt::TargetDescription::builder().id(i).build())
                .collect();
            if !add.is_empty() {
                c.elb
                    .register_targets()
                    .target_group_arn(id)
                    .set_targets(Some(add))
                    .send()
                    .await
                    .map_err(api("RegisterTargets", a))?;
            }
            if !del.is_empty() {
                c.elb
                    .deregister_targets()
                    .target_group_arn(id)
                    .set_targets(Some(del))
                    .send()
                    .await
                    .map_err(api("DeregisterTargets", a))?;
            }
        }
        ResKind::EfsMountTarget => {
            c.efs
                .modify_mount_target_security_groups()
                .mount_target_id(id)
                .set_security_groups(Some(ctx.ref_ids(want, "security_groups").await?))
                .send()
                .await
                .map_err(api("ModifyMountTargetSecurityGroups", a))?;
        }
        ResKind::DbSubnetGroup => {
            c.rds
                .modify_db_subnet_group()
                .db_subnet_group_name(id)
                .set_subnet_ids(Some(ctx.ref_ids(want, "subnets").await?))
                .send()
                .await
                .map_err(api("ModifyDBSubnetGroup", a))?;
        }
        ResKind::DbInstance => {
            let n = |k: &str| want.get(k).and_then(|v| v.parse::<i32>().ok());
            c.rds
                .modify_db_instance()
                .db_instance_identifier(id)
                .apply_immediately(true)
                .set_db_instance_class(want.get("instance_class").map(str::to_string))
                .set_allocated_storage(n("storage_gb"))
                .set_multi_az(want.get("multi_az").map(|v| v == "true"))
                .set_engine_version(want.get("engine_version").map(str::to_string))
                .set_vpc_security_group_ids(Some(ctx.ref_ids(want, "security_groups").await?))
                .send()
                .await
                .map_err(api("ModifyDBInstance", a))?;
        }
        // Nothing else has attributes that change in place.
        ResKind::Vpc | ResKind::Subnet | ResKind::EfsFileSystem | ResKind::KeyPair => {}
    }
    Ok(())
}

async fn delete(ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
    let c = &ctx.c;
    let a = o.res.addr.as_str();
    let id = o.id.as_str();
    match o.res.kind {
        ResKind::Vpc => {
            retry_busy(ctx, "DeleteVpc", a, || c.ec2.delete_vpc().vpc_id(id).send()).await?;
        }
        ResKind::Subnet => {
            retry_busy(ctx, "DeleteSubnet", a, || {
                c.ec2.delete_subnet().subnet_id(id).send()
            })
            .await?;
        }
        ResKind::InternetGateway => {
            for vpc in o.res.refs.get("vpc").cloned().unwrap_or_default() {
                let vpc = ctx.id(a, &vpc).await.unwrap_or(vpc);
                retry_busy(ctx, "DetachInternetGateway", a, || {
                    c.ec2
                        .detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(&vpc)
                        .send()
                })
                .await?;
            }
            retry_busy(ctx, "DeleteInternetGateway", a, || {
                c.ec2
                    .delete_internet_gateway()
                    .internet_gateway_id(id)
                    .send()
            })
            .await?;
        }
        ResKind::RouteTable => {
            for pair in o
                .info
                .get("associations")
                .map(|s| s.split(',').filter(|x| !x.is_empty()).collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if let Some((_, assoc)) = pair.split_once('=') {
                    retry_busy(ctx, "DisassociateRouteTable", a, || {
                        c.ec2
                            .disassociate_route_table()
                            .association_id(assoc)
                            .send()
                    })
                    .await?;
                }
            }
            retry_busy(ctx, "DeleteRouteTable", a, || {
                c.ec2.delete_route_table().route_table_id(id).send()
            })
            .await?;
        }
        ResKind::SecurityGroup => {
            retry_busy(ctx, "DeleteSecurityGroup", a, || {
                c.ec2.delete_security_group().group_id(id).send()
            })
            .await?;
        }
        ResKind::KeyPair => {
            retry_busy(ctx, "DeleteKeyPair", a, || {
                c.ec2.delete_key_pair().key_name(id).send()
            })
            .await?;
        }
        ResKind::Instance => {
            retry_busy(ctx, "TerminateInstances", a, || {
                c.ec2.terminate_instances().instance_ids(id).send()
            })
            .await?;
            ctx.wait(a, "terminated", || async {
                let o = c
                    .ec2
                    .describe_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(api("DescribeInstances", a))?;
                Ok(o.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .all(|i| {
                        i.state().and_then(|s| s.name())
                            == Some(&ec2t::InstanceStateName::Terminated)
                    }))
            })
            .await?;
        }
        ResKind::Lb => {
            retry_busy(ctx, "DeleteLoadBalancer", a, || {
                c.elb.delete_load_balancer().load_balancer_arn(id).send()
            })
            .await?;
        }
        ResKind::TargetGroup => {
            retry_busy(ctx, "DeleteTargetGroup", a, || {
                c.elb.delete_target_group().target_group_arn(id).send()
            })
            .await?;
        }
        ResKind::Listener => {
            retry_busy(ctx, "DeleteListener", a, || {
                c.elb.delete_listener().listener_arn(id).send()
            })
            .await?;
        }
        ResKind::TargetAttachment => {
            let targets: Vec<_> = registered(ctx, a, id)
                .await?
                .into_iter()
                .map(|i| elbt::TargetDescription::builder().id(i).build())
                .collect();
            if !targets.is_empty() {
                retry_busy(ctx, "DeregisterTargets", a, || {
                    c.elb
                        .deregister_targets()
                        .target_group_arn(id)
                        .set_targets(Some(targets.clone()))
                        .send()
                })
                .await?;
            }
        }
        ResKind::EfsFileSystem => {
            retry_busy(ctx, "DeleteFileSystem", a, || {
                c.efs.delete_file_system().file_system_id(id).send()
            })
            .await?;
        }
        ResKind::EfsMountTarget => {
            retry_busy(ctx, "DeleteMountTarget", a, || {
                c.efs.delete_mount_target().mount_target_id(id).send()
            })
            .await?;
            // The file system can only go once its mount targets are gone.
            ctx.wait(a, "deleted", || async {
                match c
                    .efs
                    .describe_mount_targets()
                    .mount_target_id(id)
                    .send()
                    .await
                {
                    Ok(o) => Ok(o.mount_targets().iter().all(|m| {
                        m.life_cycle_state() == &aws_sdk_efs::types::LifeCycleState::Deleted
                    })),
                    Err(_) => Ok(true),
                }
            })
            .await?;
        }
        ResKind::DbSubnetGroup => {
            retry_busy(ctx, "DeleteDBSubnetGroup", a, || {
                c.rds
                    .delete_db_subnet_group()
                    .db_subnet_group_name(id)
                    .send()
            })
            .await?;
        }
        ResKind::DbInstance => {
            retry_busy(ctx, "DeleteDBInstance", a, || {
                c.rds
                    .delete_db_instance()
                    .db_instance_identifier(id)
                    .skip_final_snapshot(true)
                    .delete_automated_backups(true)
                    .send()
            })
            .await?;
            // The subnet group and security group can only go once the instance is gone.
            ctx.wait(a, "deleted", || async {
                match c
                    .rds
                    .describe_db_instances()
                    .db_instance_identifier(id)
                    .send()
                    .await
                {
                    Ok(o) => Ok(o.db_instances().is_empty()),
                    Err(_) => Ok(true),
                }
            })
            .await?;
        }
    }
    Ok(())
}
