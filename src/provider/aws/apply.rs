//! Carrying out one planned AWS change: its call(s) and its waits.
//!
//! The engine's walk (`engine::graph`) decides the order and the parallelism: deletes deepest
//! first, creates and updates after what they reference, create-before-destroy replacements'
//! old halves and duplicates last (the [`crate::plan::Order`] the diff gave each change, see
//! [`super::diff::create_before_destroy`]). The engine's AWS provider (`engine::cloud`) calls
//! [`run_step`] for each task in the [`Phase`] the walk gives it, and saves the state after each.
//!
//! Idempotency: every create carries the ownership tags in the create call itself (EC2
//! TagSpecifications, ELB/RDS/EFS Tags), so a resource never exists untagged and a re-run finds
//! it by tags instead of creating it again; instances also send a ClientToken and file systems
//! a CreationToken derived from the state's lineage and the address, so a create retried by the
//! SDK returns the first one on AWS. Mount targets and listeners are unique by zone / port.
//! The engine journals each step around [`run_step`] (`engine::journal`): the intent before the
//! call, the result after; a run that was killed is adopted by the next one.
//!
//! AWS as it behaves ([`super::wait`]): calls that name a resource of this run retry NotFound
//! while the new id propagates; waits poll with tokio sleeps, treat throttling as pending, end
//! at a failure state with the AWS status, and have per-kind limits (`aws.timeouts`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use super::wait::{self, call_err, CallError, Poll, Timeouts};
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
    /// How long a delete is retried while AWS says something still uses the resource.
    pub wait_timeout: Duration,
    /// How long each kind may take to become ready or gone, and how long a new id may stay
    /// unknown to AWS.
    pub timeouts: Timeouts,
    /// address → id of everything that exists (observed, then created).
    pub ids: Mutex<BTreeMap<String, String>>,
    /// address → the status AWS last reported while a change waits on it (`creating`,
    /// `backing-up`, `provisioning`, `initial`): what the progress lines say it waits for.
    pub status: Mutex<BTreeMap<String, String>>,
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

/// The target groups (addresses) an instance replaced create-before-destroy is moved between:
/// those whose registration (the plan's attachment) lists the instance.
#[derive(Debug, Default, Clone)]
pub struct Roll {
    target_groups: BTreeMap<String, Vec<String>>,
}

impl Roll {
    /// From every step of the plan (the registrations' desired targets).
    pub fn of(steps: &[Step]) -> Roll {
        let mut target_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in steps.iter().filter_map(|s| s.desired.as_ref()) {
            if r.kind != ResKind::TargetAttachment {
                continue;
            }
            let Some(tg) = r.one_ref("target_group") else {
                continue;
            };
            for t in r.refs.get("targets").into_iter().flatten() {
                target_groups
                    .entry(t.clone())
                    .or_default()
                    .push(tg.to_string());
            }
        }
        Roll { target_groups }
    }
}

/// Which part of a change a task carries out ([`run_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A delete, or the delete half of a replacement made destroy-first.
    Delete,
    /// A create, an update, or the create half of a replacement (a rolled instance: all of it,
    /// see [`roll_instance`]).
    Forward,
    /// After every create and update: the old half of a create-before-destroy replacement (the
    /// address keeps its new id) or a duplicate (the address keeps its first one).
    Cleanup,
}

/// What a step's journal line calls its action: `create` (with a token, [`token`]),
/// `update` or `delete`.
pub fn verb(s: &Step, phase: Phase) -> &'static str {
    match (phase, s.change.action) {
        (Phase::Forward, Action::Update) => "update",
        (Phase::Forward, _) if creates(s, phase) => "create",
        (Phase::Forward, _) => "none",
        _ => "delete",
    }
}

/// Whether the step creates a resource in this phase (it then sends an idempotency token).
pub fn creates(s: &Step, phase: Phase) -> bool {
    phase == Phase::Forward
        && matches!(s.change.action, Action::Create | Action::Replace)
        && s.desired.is_some()
}

/// The step's own idempotency token: the same for a retried create of this resource, different
/// for a replacement (salted with the id it replaces). The journal may change it
/// (`engine::journal::create_token`).
pub fn token(ctx: &Ctx, s: &Step) -> String {
    let salt = s
        .observed
        .as_ref()
        .map(|o| o.id.as_str())
        .or(s.replaces.as_deref())
        .unwrap_or("");
    ctx.token(&s.change.addr, salt)
}

/// One step in one [`Phase`]: its events, its call(s), and the id it leaves in the context
/// (returned too: the engine journals it). `rolled`: the step is an instance replaced
/// create-before-destroy ([`crate::plan::Order::Rolled`]), carried out whole by
/// [`roll_instance`] between the target groups `roll` names. `token`: a create's idempotency
/// token, as journaled.
#[allow(clippy::too_many_arguments)]
pub async fn run_step<F, Fut>(
    ctx: &Arc<Ctx>,
    s: &Step,
    phase: Phase,
    rolled: bool,
    roll: &Roll,
    token: Option<&str>,
    on_event: F,
) -> Result<Option<String>, AwsError>
where
    F: Fn(Event) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let addr = s.change.addr.clone();
    let action = match phase {
        Phase::Forward => s.change.action,
        Phase::Delete | Phase::Cleanup => Action::Delete,
    };
    on_event(Event::Started {
        addr: addr.clone(),
        action,
    })
    .await;
    let t0 = Instant::now();
    let token = token.unwrap_or_default();
    let r = match phase {
        Phase::Delete => match &s.observed {
            Some(o) => delete(ctx, o).await.map(|_| None),
            None => Ok(None),
        },
        // The old half of a create-before-destroy replacement, or a duplicate: the address
        // keeps the id it has now (the new resource, or the first of the duplicates).
        Phase::Cleanup => match &s.observed {
            Some(o) => match delete(ctx, o).await {
                Ok(()) => Ok(ctx.ids.lock().await.get(&addr).cloned()),
                Err(e) => Err(e),
            },
            None => Ok(None),
        },
        Phase::Forward => match (&s.desired, s.change.action) {
            (Some(d), Action::Update) => match s.observed.as_ref() {
                Some(o) => {
                    let mut r = retag(ctx, o).await;
                    if r.is_ok() && !s.retag_only {
                        r = update(ctx, d, o).await;
                    }
                    r.map(|_| Some(o.id.clone()))
                }
                None => Ok(None),
            },
            (Some(d), Action::Replace) if rolled && d.kind == ResKind::Instance => {
                match &s.observed {
                    Some(o) => roll_instance(ctx, d, o, roll, token).await.map(Some),
                    None => create(ctx, d, token).await.map(Some),
                }
            }
            (Some(d), _) => create(ctx, d, token).await.map(Some),
            (None, _) => Ok(None),
        },
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
                    None if phase == Phase::Delete || s.desired.is_none() => {
                        ids.remove(&addr);
                    }
                    None => {}
                }
            }
            on_event(Event::Done {
                addr,
                action,
                id: id.clone(),
                kind,
                elapsed: t0.elapsed(),
            })
            .await;
            Ok(id)
        }
        Err(e) => {
            on_event(Event::Failed {
                addr,
                error: e.to_string(),
            })
            .await;
            Err(e)
        }
    }
}

/// An instance replaced create-before-destroy: the new one is launched (its token salted with
/// the old id) and waited on to be running; in every target group the old one is registered in
/// ([`Roll`]), the new one is registered and waited on to be `healthy`, then the old one is
/// deregistered and waited on until it has drained; then the old one is terminated. If the new
/// one does not become healthy within the instance limit, the step fails with the old one still
/// registered and serving. Returns the new instance's id.
async fn roll_instance(
    ctx: &Ctx,
    want: &Resource,
    old: &Observed,
    roll: &Roll,
    token: &str,
) -> Result<String, AwsError> {
    let a = want.addr.as_str();
    let new_id = create(ctx, want, token).await?;
    for tg_addr in roll.target_groups.get(a).into_iter().flatten() {
        let Some(tg) = ctx.ids.lock().await.get(tg_addr).cloned() else {
            continue; // a group still to be created: its registration step registers the new one
        };
        if !registered(ctx, a, &tg).await?.contains(&old.id) {
            continue;
        }
        let target = |id: &str| elbt::TargetDescription::builder().id(id).build();
        ctx.settle("RegisterTargets", a, || {
            ctx.c
                .elb
                .register_targets()
                .target_group_arn(&tg)
                .targets(target(&new_id))
                .send()
        })
        .await?;
        ctx.wait(a, "healthy", ctx.timeouts.instance, || async {
            let state = target_state(ctx, a, &tg, &new_id).await?;
            Ok(wait::target_healthy(state.as_deref()))
        })
        .await?;
        ctx.settle("DeregisterTargets", a, || {
            ctx.c
                .elb
                .deregister_targets()
                .target_group_arn(&tg)
                .targets(target(&old.id))
                .send()
        })
        .await?;
        ctx.wait(a, "drained", ctx.timeouts.instance, || async {
            let state = target_state(ctx, a, &tg, &old.id).await?;
            Ok(wait::target_drained(state.as_deref()))
        })
        .await?;
    }
    delete(ctx, old).await?;
    Ok(new_id)
}

/// The health state (`initial`, `healthy`, `draining`, …) of one target in a target group, or
/// None when it is not registered there.
async fn target_state(
    ctx: &Ctx,
    addr: &str,
    tg: &str,
    id: &str,
) -> Result<Option<String>, CallError> {
    let out = ctx
        .c
        .elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .map_err(call_err("DescribeTargetHealth", addr))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .find(|d| d.target().and_then(|t| t.id()) == Some(id))
        .map(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default()
        }))
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
        // A reference the resource does not have is an error, never an empty id sent to AWS.
        let dep = r.one_ref(key).ok_or_else(|| AwsError::MissingDep {
            addr: r.addr.clone(),
            dep: format!("its `{key}` reference"),
        })?;
        self.id(&r.addr, dep).await
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

    /// Waits on `check` for at most `timeout` (the kind's limit): throttling is pending, and
    /// so is NotFound while the id propagates ([`wait::until`]). Each pending status AWS
    /// reports is kept in [`Ctx::status`] for the progress lines.
    async fn wait<F, Fut>(
        &self,
        addr: &str,
        what: &'static str,
        timeout: Duration,
        check: F,
    ) -> Result<(), AwsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Poll, CallError>>,
    {
        let seen = || async {
            let r = check().await;
            if let Ok(Poll::Pending(status)) = &r {
                self.status
                    .lock()
                    .await
                    .insert(addr.to_string(), status.clone());
            }
            r
        };
        wait::until(addr, what, timeout, self.timeouts.propagation, seen).await
    }

    /// One call that names a resource this run may have just made: NotFound (and throttling
    /// the SDK's retries did not absorb) is retried while the id propagates ([`wait::settle`]).
    async fn settle<T, E, R, F, Fut>(
        &self,
        op: &'static str,
        addr: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
    {
        wait::settle(self.timeouts.propagation, op, addr, f).await
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

/// Creates `r`; `token` is its idempotency token (RunInstances ClientToken, EFS
/// CreationToken), derived from the journal (`engine::journal::create_token`).
async fn create(ctx: &Ctx, r: &Resource, token: &str) -> Result<String, AwsError> {
    let c = &ctx.c;
    let a = r.addr.as_str();
    match r.kind {
        ResKind::Vpc => {
            let cidr = required(r, "cidr")?;
            let out = ctx
                .settle("CreateVpc", a, || {
                    c.ec2
                        .create_vpc()
                        .cidr_block(cidr)
                        .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Vpc, a))
                        .send()
                })
                .await?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_string();
            // Hostnames in the VPC: EFS and RDS endpoints resolve through them.
            ctx.settle("ModifyVpcAttribute", a, || {
                c.ec2
                    .modify_vpc_attribute()
                    .vpc_id(&id)
                    .enable_dns_hostnames(
                        ec2t::AttributeBooleanValue::builder().value(true).build(),
                    )
                    .send()
            })
            .await?;
            Ok(id)
        }
        ResKind::Subnet => {
            let vpc_id = ctx.ref_id(r, "vpc").await?;
            let (cidr, zone) = (required(r, "cidr")?, required(r, "zone")?);
            let out = ctx
                .settle("CreateSubnet", a, || {
                    c.ec2
                        .create_subnet()
                        .vpc_id(&vpc_id)
                        .cidr_block(cidr)
                        .availability_zone(zone)
                        .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Subnet, a))
                        .send()
                })
                .await?;
            let id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_string();
            ctx.settle("ModifySubnetAttribute", a, || {
                c.ec2
                    .modify_subnet_attribute()
                    .subnet_id(&id)
                    .map_public_ip_on_launch(
                        ec2t::AttributeBooleanValue::builder().value(true).build(),
                    )
                    .send()
            })
            .await?;
            Ok(id)
        }
        ResKind::InternetGateway => {
            let out = ctx
                .settle("CreateInternetGateway", a, || {
                    c.ec2
                        .create_internet_gateway()
                        .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::InternetGateway, a))
                        .send()
                })
                .await?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .unwrap_or_default()
                .to_string();
            let vpc_id = ctx.ref_id(r, "vpc").await?;
            ctx.settle("AttachInternetGateway", a, || {
                c.ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(&id)
                    .vpc_id(&vpc_id)
                    .send()
            })
            .await?;
            Ok(id)
        }
        ResKind::RouteTable => {
            let vpc_id = ctx.ref_id(r, "vpc").await?;
            let out = ctx
                .settle("CreateRouteTable", a, || {
                    c.ec2
                        .create_route_table()
                        .vpc_id(&vpc_id)
                        .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::RouteTable, a))
                        .send()
                })
                .await?;
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
            let vpc_id = ctx.ref_id(r, "vpc").await?;
            let name = required(r, "name")?;
            let out = ctx
                .settle("CreateSecurityGroup", a, || {
                    c.ec2
                        .create_security_group()
                        .group_name(name)
                        .description(format!("hactl {} {}", ctx.stack, a))
                        .vpc_id(&vpc_id)
                        .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::SecurityGroup, a))
                        .send()
                })
                .await?;
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
            let name = required(r, "name")?;
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
            let subnet_id = ctx.ref_id(r, "subnet").await?;
            let security_groups_ids = ctx.ref_ids(r, "security_groups").await?;
            let at = super::kinds::instance::Attrs::of(r)?;
            let root = root_device(ctx, a, &at.ami).await?;
            let mut req = c
                .ec2
                .run_instances()
                .image_id(&at.ami)
                .metadata_options(metadata_options(r))
                .instance_type(ec2t::InstanceType::from(at.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(&subnet_id)
                .set_security_group_ids(Some(security_groups_ids.clone()))
                .client_token(token)
                .block_device_mappings(
                    ec2t::BlockDeviceMapping::builder()
                        .device_name(&root)
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
            if let Some(k) = &at.key_name {
                req = req.key_name(k);
            }
            // The same ClientToken on every try: AWS returns the first launch.
            let out = ctx.settle("RunInstances", a, || req.clone().send()).await?;
            let id = out
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .unwrap_or_default()
                .to_string();
            ctx.wait(a, "running", ctx.timeouts.instance, || async {
                let o = c
                    .ec2
                    .describe_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .map_err(call_err("DescribeInstances", a))?;
                let state = o
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.state().and_then(|s| s.name()))
                    .map(|s| s.as_str().to_string());
                Ok(match state {
                    Some(s) => wait::instance_running(&s),
                    // Not listed yet: the id is still propagating.
                    None => Poll::Pending("not listed".into()),
                })
            })
            .await?;
            Ok(id)
        }
        ResKind::Lb => {
            let subnets_ids = ctx.ref_ids(r, "subnets").await?;
            let security_groups_ids = ctx.ref_ids(r, "security_groups").await?;
            let mut req = c
                .elb
                .create_load_balancer()
                .name(required(r, "name")?)
                .r#type(elbt::LoadBalancerTypeEnum::from(
                    r.get("kind").unwrap_or("application"),
                ))
                .scheme(elbt::LoadBalancerSchemeEnum::InternetFacing)
                .set_subnets(Some(subnets_ids.clone()))
                .set_tags(Some(ctx.elb_tags(a)));
            if r.refs.contains_key("security_groups") {
                req = req.set_security_groups(Some(security_groups_ids));
            }
            let out = ctx
                .settle("CreateLoadBalancer", a, || req.clone().send())
                .await?;
            let arn = out
                .load_balancers()
                .first()
                .and_then(|l| l.load_balancer_arn())
                .unwrap_or_default()
                .to_string();
            ctx.wait(a, "active", timeout_of(ctx, ResKind::Lb), || async {
                let o = c
                    .elb
                    .describe_load_balancers()
                    .load_balancer_arns(&arn)
                    .send()
                    .await
                    .map_err(call_err("DescribeLoadBalancers", a))?;
                Ok(
                    match o
                        .load_balancers()
                        .iter()
                        .find_map(|l| l.state().and_then(|s| s.code()))
                    {
                        Some(code) => super::kinds::of(ResKind::Lb).ready(code.as_str()),
                        None => Poll::Pending("not listed".into()),
                    },
                )
            })
            .await?;
            Ok(arn)
        }
        ResKind::TargetGroup => {
            let at = super::kinds::target_group::Attrs::of(r)?;
            let vpc_id = ctx.ref_id(r, "vpc").await?;
            let out = ctx
                .settle("CreateTargetGroup", a, || {
                    c.elb
                        .create_target_group()
                        .name(&at.name)
                        .protocol(elbt::ProtocolEnum::from(at.protocol.as_str()))
                        .port(at.port)
                        .vpc_id(&vpc_id)
                        .target_type(elbt::TargetTypeEnum::Instance)
                        .health_check_protocol(elbt::ProtocolEnum::Http)
                        .health_check_path(&at.health_check_path)
                        .health_check_interval_seconds(at.interval)
                        .health_check_timeout_seconds(at.timeout)
                        .healthy_threshold_count(at.healthy_threshold)
                        .unhealthy_threshold_count(at.unhealthy_threshold)
                        .set_matcher(
                            at.matcher
                                .as_deref()
                                .filter(|m| !m.is_empty())
                                .map(|m| elbt::Matcher::builder().http_code(m).build()),
                        )
                        .set_tags(Some(ctx.elb_tags(a)))
                        .send()
                })
                .await?;
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
            let lb_id = ctx.ref_id(r, "lb").await?;
            let target_group_id = ctx.ref_id(r, "target_group").await?;
            let out = ctx
                .settle("CreateListener", a, || {
                    c.elb
                        .create_listener()
                        .load_balancer_arn(&lb_id)
                        .set_port(r.get("port").and_then(|p| p.parse().ok()))
                        .protocol(elbt::ProtocolEnum::from(
                            r.get("protocol").unwrap_or("HTTP"),
                        ))
                        .set_certificates(certificates(r))
                        .default_actions(forward(&target_group_id))
                        .set_tags(Some(ctx.elb_tags(a)))
                        .send()
                })
                .await?;
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
            let token = token.to_string();
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
                    let o = ctx
                        .settle("DescribeFileSystems", a, || {
                            c.efs.describe_file_systems().creation_token(&token).send()
                        })
                        .await?;
                    o.file_systems()
                        .first()
                        .map(|f| f.file_system_id().to_string())
                        .ok_or_else(|| api("CreateFileSystem", a)(e))?
                }
                Err(e) => return Err(api("CreateFileSystem", a)(e)),
            };
            ctx.wait(a, "available", ctx.timeouts.file_system, || async {
                let o = c
                    .efs
                    .describe_file_systems()
                    .file_system_id(&id)
                    .send()
                    .await
                    .map_err(call_err("DescribeFileSystems", a))?;
                Ok(match o.file_systems().first() {
                    Some(f) => wait::efs_available(f.life_cycle_state().as_str()),
                    None => Poll::Pending("not listed".into()),
                })
            })
            .await?;
            Ok(id)
        }
        ResKind::EfsMountTarget => {
            let file_system_id = ctx.ref_id(r, "file_system").await?;
            let subnet_id = ctx.ref_id(r, "subnet").await?;
            let security_groups_ids = ctx.ref_ids(r, "security_groups").await?;
            let out = ctx
                .settle("CreateMountTarget", a, || {
                    c.efs
                        .create_mount_target()
                        .file_system_id(&file_system_id)
                        .subnet_id(&subnet_id)
                        .set_security_groups(Some(security_groups_ids.clone()))
                        .send()
                })
                .await?;
            let id = out.mount_target_id().to_string();
            ctx.wait(a, "available", ctx.timeouts.file_system, || async {
                let o = c
                    .efs
                    .describe_mount_targets()
                    .mount_target_id(&id)
                    .send()
                    .await
                    .map_err(call_err("DescribeMountTargets", a))?;
                Ok(match o.mount_targets().first() {
                    Some(m) => wait::efs_available(m.life_cycle_state().as_str()),
                    None => Poll::Pending("not listed".into()),
                })
            })
            .await?;
            Ok(id)
        }
        ResKind::DbSubnetGroup => {
            let name = required(r, "name")?.to_string();
            let subnets_ids = ctx.ref_ids(r, "subnets").await?;
            ctx.settle("CreateDBSubnetGroup", a, || {
                c.rds
                    .create_db_subnet_group()
                    .db_subnet_group_name(&name)
                    .db_subnet_group_description(format!("hactl {}", ctx.stack))
                    .set_subnet_ids(Some(subnets_ids.clone()))
                    .set_tags(Some(ctx.rds_tags(a)))
                    .send()
            })
            .await?;
            Ok(name)
        }
        ResKind::DbInstance => {
            let (user, pass) = ctx
                .db_credentials
                .as_ref()
                .ok_or_else(|| AwsError::Credentials("database.username/password".into()))?;
            let at = super::kinds::db_instance::Attrs::of(r)?;
            let ident = at.identifier.clone();
            let req = c
                .rds
                .create_db_instance()
                .db_instance_identifier(&ident)
                .db_instance_class(&at.instance_class)
                .engine(&at.engine)
                .set_engine_version(at.engine_version.clone())
                .allocated_storage(at.storage_gb)
                .master_username(user.expose())
                .master_user_password(pass.expose())
                .db_name(&at.db_name)
                .multi_az(at.multi_az)
                .port(at.port)
                .db_subnet_group_name(ctx.ref_id(r, "subnet_group").await?)
                .set_vpc_security_group_ids(Some(ctx.ref_ids(r, "security_groups").await?))
                .publicly_accessible(false)
                .storage_encrypted(true)
                .deletion_protection(at.deletion_protection)
                .set_tags(Some(ctx.rds_tags(a)));
            // The subnet group may be new to RDS still (DBSubnetGroupNotFoundFault): settle.
            ctx.settle("CreateDBInstance", a, || async {
                match req.clone().send().await {
                    Ok(_) => Ok(()),
                    // The identifier is ours (it is derived from the stack name) and tagged
                    // at creation: a retried create finds the first one.
                    Err(e) if sdk_code(&e).as_deref() == Some("DBInstanceAlreadyExists") => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await?;
            ctx.wait(
                a,
                "available",
                timeout_of(ctx, ResKind::DbInstance),
                || async {
                    let o = c
                        .rds
                        .describe_db_instances()
                        .db_instance_identifier(&ident)
                        .send()
                        .await
                        .map_err(call_err("DescribeDBInstances", a))?;
                    Ok(
                        match o
                            .db_instances()
                            .first()
                            .and_then(|d| d.db_instance_status())
                        {
                            Some(status) => super::kinds::of(ResKind::DbInstance).ready(status),
                            None => Poll::Pending("not listed".into()),
                        },
                    )
                },
            )
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

/// An attribute the create call needs: a missing one is an error naming it, never an empty
/// string sent to AWS.
fn required<'a>(r: &'a Resource, key: &str) -> Result<&'a str, AwsError> {
    Ok(super::kinds::get(r, key)?)
}

/// The AMI's root device name (`/dev/xvda` on Amazon Linux, `/dev/sda1` on Ubuntu), read with
/// DescribeImages: only a block device mapping on that name resizes the root volume; any other
/// name attaches a second, billed volume and leaves the root at the AMI's size (EC2 user guide,
/// "Block device mappings": the root device of an AMI).
async fn root_device(ctx: &Ctx, addr: &str, ami: &str) -> Result<String, AwsError> {
    let out = ctx
        .settle("DescribeImages", addr, || {
            ctx.c.ec2.describe_images().image_ids(ami).send()
        })
        .await?;
    out.images()
        .iter()
        .find(|i| i.image_id() == Some(ami))
        .and_then(|i| i.root_device_name())
        .map(str::to_string)
        .ok_or_else(|| AwsError::Api {
            op: "DescribeImages",
            addr: addr.to_string(),
            message: format!("the AMI `{ami}` was not found or names no root device"),
        })
}

/// The instance metadata service settings the stack asks for: IMDSv2 only (`HttpTokens`
/// required: IMDSv1's unauthenticated GETs are what SSRF attacks read credentials through) and
/// a PUT response hop limit of 2, so that containers behind a bridge network still reach it
/// (EC2 user guide, "Configure the instance metadata options").
fn metadata_options(r: &Resource) -> ec2t::InstanceMetadataOptionsRequest {
    ec2t::InstanceMetadataOptionsRequest::builder()
        .http_endpoint(ec2t::InstanceMetadataEndpointState::Enabled)
        .http_tokens(ec2t::HttpTokensState::from(
            r.get("metadata.http_tokens").unwrap_or("required"),
        ))
        .set_http_put_response_hop_limit(r.get("metadata.hop_limit").and_then(|v| v.parse().ok()))
        .build()
}

/// How long a create of `kind` may take to be ready ([`super::kinds::Kind::timeout`]).
fn timeout_of(ctx: &Ctx, kind: ResKind) -> Duration {
    super::kinds::of(kind)
        .timeout(&ctx.timeouts)
        .unwrap_or(ctx.timeouts.propagation)
}

/// The identifier of the final snapshot RDS takes when hactl deletes the database `db` at
/// `unix` seconds: `<db>-final-<unix>`. RDS's rules for `FinalDBSnapshotIdentifier` (1–255
/// letters, digits and hyphens, a letter first, no trailing or double hyphen; RDS API
/// reference, DeleteDBInstance) hold for any identifier hactl derives ([`super::desired::aws_name`]).
pub fn final_snapshot_id(db: &str, unix: u64) -> String {
    format!("{}-final-{unix}", db.trim_end_matches('-'))
}

/// The instance ids registered in a target group now.
async fn registered(ctx: &Ctx, addr: &str, tg: &str) -> Result<Vec<String>, AwsError> {
    let out = ctx
        .settle("DescribeTargetHealth", addr, || {
            ctx.c
                .elb
                .describe_target_health()
                .target_group_arn(tg)
                .send()
        })
        .await?;
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

/// A listener's `Certificates` (CreateListener/ModifyListener): its `certificate_arn`, the
/// default certificate of an HTTPS or TLS listener; none for other protocols.
fn certificates(r: &Resource) -> Option<Vec<elbt::Certificate>> {
    r.get("certificate_arn")
        .map(|arn| vec![elbt::Certificate::builder().certificate_arn(arn).build()])
}

fn forward(tg: &str) -> elbt::Action {
    elbt::Action::builder()
        .r#type(elbt::ActionTypeEnum::Forward)
        .target_group_arn(tg)
        .build()
}

async fn set_dereg(ctx: &Ctx, r: &Resource, arn: &str) -> Result<(), AwsError> {
    ctx.settle("ModifyTargetGroupAttributes", &r.addr, || {
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
    })
    .await?;
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
            let vpc_id = ctx.ref_id(want, "vpc").await?;
            ctx.settle("AttachInternetGateway", a, || {
                c.ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(&vpc_id)
                    .send()
            })
            .await?;
        }
        ResKind::RouteTable => {
            if refs(want, "gateway") != refs(&have.res, "gateway") {
                let gw = ctx.ref_id(want, "gateway").await?;
                if have.res.refs.get("gateway").is_some_and(|g| !g.is_empty()) {
                    ctx.settle("ReplaceRoute", a, || {
                        c.ec2
                            .replace_route()
                            .route_table_id(id)
                            .destination_cidr_block("0.0.0.0/0")
                            .gateway_id(&gw)
                            .send()
                    })
                    .await?;
                } else {
                    ctx.settle("CreateRoute", a, || {
                        c.ec2
                            .create_route()
                            .route_table_id(id)
                            .destination_cidr_block("0.0.0.0/0")
                            .gateway_id(&gw)
                            .send()
                    })
                    .await?;
                }
            }
            let want_s = refs(want, "subnets");
            let have_s = refs(&have.res, "subnets");
            for s in missing(&want_s, &have_s) {
                let subnet = ctx.id(a, s).await?;
                ctx.settle("AssociateRouteTable", a, || {
                    c.ec2
                        .associate_route_table()
                        .route_table_id(id)
                        .subnet_id(&subnet)
                        .send()
                })
                .await?;
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
                        ctx.settle("DisassociateRouteTable", a, || {
                            c.ec2
                                .disassociate_route_table()
                                .association_id(assoc)
                                .send()
                        })
                        .await?;
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
                ctx.settle("AuthorizeSecurityGroupIngress", a, || {
                    c.ec2
                        .authorize_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(add.clone()))
                        .send()
                })
                .await?;
            }
            if !del.is_empty() {
                ctx.settle("RevokeSecurityGroupIngress", a, || {
                    c.ec2
                        .revoke_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(del.clone()))
                        .send()
                })
                .await?;
            }
        }
        ResKind::Instance => {
            let imds = ["metadata.http_tokens", "metadata.hop_limit"];
            if imds.iter().any(|k| want.get(k) != have.res.get(k)) {
                ctx.settle("ModifyInstanceMetadataOptions", a, || {
                    c.ec2
                        .modify_instance_metadata_options()
                        .instance_id(id)
                        .http_endpoint(ec2t::InstanceMetadataEndpointState::Enabled)
                        .http_tokens(ec2t::HttpTokensState::from(
                            want.get("metadata.http_tokens").unwrap_or("required"),
                        ))
                        .set_http_put_response_hop_limit(
                            want.get("metadata.hop_limit").and_then(|v| v.parse().ok()),
                        )
                        .send()
                })
                .await?;
            }
            let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
            ctx.settle("ModifyInstanceAttribute", a, || {
                c.ec2
                    .modify_instance_attribute()
                    .instance_id(id)
                    .set_groups(Some(security_groups_ids.clone()))
                    .send()
            })
            .await?;
        }
        ResKind::Lb => {
            let subnets_ids = ctx.ref_ids(want, "subnets").await?;
            ctx.settle("SetSubnets", a, || {
                c.elb
                    .set_subnets()
                    .load_balancer_arn(id)
                    .set_subnets(Some(subnets_ids.clone()))
                    .send()
            })
            .await?;
            if want.refs.contains_key("security_groups") {
                let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
                ctx.settle("SetSecurityGroups", a, || {
                    c.elb
                        .set_security_groups()
                        .load_balancer_arn(id)
                        .set_security_groups(Some(security_groups_ids.clone()))
                        .send()
                })
                .await?;
            }
        }
        ResKind::TargetGroup => {
            let n = |k: &str| want.get(k).and_then(|v| v.parse::<i32>().ok());
            ctx.settle("ModifyTargetGroup", a, || {
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
            })
            .await?;
            if want.get("deregistration_delay") != have.res.get("deregistration_delay") {
                set_dereg(ctx, want, id).await?;
            }
        }
        ResKind::Listener => {
            let target_group_id = ctx.ref_id(want, "target_group").await?;
            ctx.settle("ModifyListener", a, || {
                c.elb
                    .modify_listener()
                    .listener_arn(id)
                    .protocol(elbt::ProtocolEnum::from(
                        want.get("protocol").unwrap_or("HTTP"),
                    ))
                    .set_certificates(certificates(want))
                    .default_actions(forward(&target_group_id))
                    .send()
            })
            .await?;
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
                ctx.settle("RegisterTargets", a, || {
                    c.elb
                        .register_targets()
                        .target_group_arn(id)
                        .set_targets(Some(add.clone()))
                        .send()
                })
                .await?;
            }
            if !del.is_empty() {
                ctx.settle("DeregisterTargets", a, || {
                    c.elb
                        .deregister_targets()
                        .target_group_arn(id)
                        .set_targets(Some(del.clone()))
                        .send()
                })
                .await?;
            }
        }
        ResKind::EfsMountTarget => {
            let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
            ctx.settle("ModifyMountTargetSecurityGroups", a, || {
                c.efs
                    .modify_mount_target_security_groups()
                    .mount_target_id(id)
                    .set_security_groups(Some(security_groups_ids.clone()))
                    .send()
            })
            .await?;
        }
        ResKind::DbSubnetGroup => {
            let subnets_ids = ctx.ref_ids(want, "subnets").await?;
            ctx.settle("ModifyDBSubnetGroup", a, || {
                c.rds
                    .modify_db_subnet_group()
                    .db_subnet_group_name(id)
                    .set_subnet_ids(Some(subnets_ids.clone()))
                    .send()
            })
            .await?;
        }
        ResKind::DbInstance => {
            let n = |k: &str| want.get(k).and_then(|v| v.parse::<i32>().ok());
            let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
            ctx.settle("ModifyDBInstance", a, || {
                c.rds
                    .modify_db_instance()
                    .db_instance_identifier(id)
                    .apply_immediately(true)
                    .set_db_instance_class(want.get("instance_class").map(str::to_string))
                    .set_allocated_storage(n("storage_gb"))
                    .set_multi_az(want.get("multi_az").map(|v| v == "true"))
                    .set_engine_version(want.get("engine_version").map(str::to_string))
                    .set_db_port_number(n("port"))
                    .set_deletion_protection(want.get("deletion_protection").map(|v| v == "true"))
                    .set_vpc_security_group_ids(Some(security_groups_ids.clone()))
                    .send()
            })
            .await?;
        }
        ResKind::Vpc => {
            if want.get("dns_hostnames") != have.res.get("dns_hostnames") {
                let on = want.get("dns_hostnames") == Some("true");
                ctx.settle("ModifyVpcAttribute", a, || {
                    c.ec2
                        .modify_vpc_attribute()
                        .vpc_id(id)
                        .enable_dns_hostnames(
                            ec2t::AttributeBooleanValue::builder().value(on).build(),
                        )
                        .send()
                })
                .await?;
            }
        }
        ResKind::Subnet => {
            if want.get("map_public_ip") != have.res.get("map_public_ip") {
                let on = want.get("map_public_ip") == Some("true");
                ctx.settle("ModifySubnetAttribute", a, || {
                    c.ec2
                        .modify_subnet_attribute()
                        .subnet_id(id)
                        .map_public_ip_on_launch(
                            ec2t::AttributeBooleanValue::builder().value(on).build(),
                        )
                        .send()
                })
                .await?;
            }
        }
        // Nothing else has attributes that change in place.
        ResKind::EfsFileSystem | ResKind::KeyPair => {}
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
            ctx.wait(a, "terminated", ctx.timeouts.instance, || async {
                let o = match c.ec2.describe_instances().instance_ids(id).send().await {
                    Ok(o) => o,
                    // Gone from the listing: terminated long enough ago.
                    Err(e) if sdk_code(&e).as_deref() == Some("InvalidInstanceID.NotFound") => {
                        return Ok(Poll::Ready)
                    }
                    Err(e) => return Err(call_err("DescribeInstances", a)(e)),
                };
                let state = o
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.state().and_then(|s| s.name()))
                    .map(|s| s.as_str().to_string());
                Ok(match state.as_deref() {
                    Some("terminated") | None => Poll::Ready,
                    Some(s) => Poll::Pending(s.into()),
                })
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
            ctx.wait(a, "deleted", ctx.timeouts.file_system, || async {
                match c
                    .efs
                    .describe_mount_targets()
                    .mount_target_id(id)
                    .send()
                    .await
                {
                    Ok(o) => Ok(match o.mount_targets().first() {
                        Some(m) if m.life_cycle_state().as_str() != "deleted" => {
                            Poll::Pending(m.life_cycle_state().as_str().into())
                        }
                        _ => Poll::Ready,
                    }),
                    // Only NotFound means gone: throttling is one more poll.
                    Err(e) if sdk_code(&e).as_deref() == Some("MountTargetNotFound") => {
                        Ok(Poll::Ready)
                    }
                    Err(e) => Err(call_err("DescribeMountTargets", a)(e)),
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
            // Only a plan the user allowed (`--allow-data-loss`, checked at plan time) gets
            // here: deletion protection comes off, and RDS takes a final snapshot first. The
            // automated backups go with the instance, as Terraform's default
            // (`delete_automated_backups`): the final snapshot is the copy that is kept.
            if o.res.get("deletion_protection") != Some("false") {
                retry_busy(ctx, "ModifyDBInstance", a, || {
                    c.rds
                        .modify_db_instance()
                        .db_instance_identifier(id)
                        .deletion_protection(false)
                        .apply_immediately(true)
                        .send()
                })
                .await?;
            }
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let snapshot = final_snapshot_id(id, unix);
            retry_busy(ctx, "DeleteDBInstance", a, || {
                c.rds
                    .delete_db_instance()
                    .db_instance_identifier(id)
                    .skip_final_snapshot(false)
                    .final_db_snapshot_identifier(&snapshot)
                    .delete_automated_backups(true)
                    .send()
            })
            .await?;
            // The subnet group and security group can only go once the instance is gone.
            ctx.wait(a, "deleted", ctx.timeouts.database, || async {
                match c
                    .rds
                    .describe_db_instances()
                    .db_instance_identifier(id)
                    .send()
                    .await
                {
                    Ok(o) => Ok(match o.db_instances().first() {
                        Some(d) => Poll::Pending(d.db_instance_status().unwrap_or("?").into()),
                        None => Poll::Ready,
                    }),
                    // Only NotFound means gone: throttling is one more poll.
                    Err(e) if sdk_code(&e).as_deref() == Some("DBInstanceNotFound") => {
                        Ok(Poll::Ready)
                    }
                    Err(e) => Err(call_err("DescribeDBInstances", a)(e)),
                }
            })
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::diff;
    use crate::provider::aws::fixture::{observed, resources};

    /// An instance replaced create-before-destroy is moved between the target groups whose
    /// registration lists it: the roll registers the new one there before the old one goes.
    #[test]
    fn a_rolled_instance_moves_between_its_registrations_groups() {
        let have = observed(&resources(|s| s));
        let want = resources(|s| s.replace("t2.micro", "t3.small"));
        let d = diff::diff(&want, &have);
        let roll = Roll::of(&d.steps);
        assert_eq!(
            roll.target_groups
                .get("aws_instance.web[0]")
                .map(Vec::as_slice),
            Some(&["aws_lb_target_group.web".to_string()][..])
        );
    }

    /// The final snapshot's name follows RDS's identifier rules for any derived DB name.
    #[test]
    fn final_snapshot_ids_follow_rds_rules() {
        let id = final_snapshot_id("hactl-web3-db", 1_764_550_000);
        assert_eq!(id, "hactl-web3-db-final-1764550000");
        let long = crate::provider::aws::desired::aws_name(&"x".repeat(80), "db", 63);
        let id = final_snapshot_id(&long, 1);
        assert!(
            id.len() <= 255 && !id.contains("--") && !id.ends_with('-'),
            "{id}"
        );
        assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
    }
}
