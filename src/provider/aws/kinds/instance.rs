//! `aws_instance`: an EC2 instance. Replaced create-before-destroy, one at a time (launched,
//! registered and healthy before the old one is deregistered, drained and terminated: the step
//! runner's `roll_instance`); `pending → running`, with `shutting-down`/`terminated`/
//! `stopping`/`stopped` final ([`crate::provider::aws::wait::instance_running`]). Launched with
//! a ClientToken derived from the journal (the same token on every try: AWS returns the first
//! launch), IMDSv2 only, and the root volume sized on the AMI's own root device name. Its
//! security groups and metadata options change in place. A delete waits until it is
//! terminated (its ENIs hold the subnet and security groups until then).

use std::time::Duration;

use aws_sdk_ec2::types as ec2t;

use super::shared::{api, Ctx};
use super::{get, parse, reference, Kind, MissingAttr};
use crate::provider::aws::client::Clients;
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::{Ids, Scan};
use crate::provider::aws::wait::{self, call_err, Poll, Timeouts};
use crate::provider::aws::AwsError;

pub struct Instance;

/// The instance as RunInstances needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub subnet: String,
    pub ami: String,
    pub instance_type: String,
    pub key_name: Option<String>,
    /// IMDS `HttpTokens`: `required` (IMDSv2 only).
    pub http_tokens: String,
    /// IMDS PUT response hop limit (2: containers reach it).
    pub hop_limit: i32,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            subnet: reference(r, "subnet")?.to_string(),
            ami: get(r, "ami")?.to_string(),
            instance_type: get(r, "instance_type")?.to_string(),
            key_name: r.get("key_name").map(str::to_string),
            http_tokens: get(r, "metadata.http_tokens")?.to_string(),
            hop_limit: parse(r, "metadata.hop_limit")?,
        })
    }

    /// The instance metadata service settings: IMDSv2 only (`HttpTokens` required: IMDSv1's
    /// unauthenticated GETs are what SSRF attacks read credentials through) and a PUT response
    /// hop limit of 2, so that containers behind a bridge network still reach it (EC2 user
    /// guide, "Configure the instance metadata options").
    fn metadata_options(&self) -> ec2t::InstanceMetadataOptionsRequest {
        ec2t::InstanceMetadataOptionsRequest::builder()
            .http_endpoint(ec2t::InstanceMetadataEndpointState::Enabled)
            .http_tokens(ec2t::HttpTokensState::from(self.http_tokens.as_str()))
            .http_put_response_hop_limit(self.hop_limit)
            .build()
    }
}

/// The instances a scan or a wait counts: not those terminated or on their way there.
fn live() -> ec2t::Filter {
    ec2t::Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build()
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

/// The state of instance `id` (None: not listed).
async fn state(ctx: &Ctx, addr: &str, id: &str) -> Result<Option<String>, wait::CallError> {
    let o = ctx
        .c
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(call_err("DescribeInstances", addr))?;
    Ok(o.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.state().and_then(|s| s.name()))
        .map(|s| s.as_str().to_string()))
}

#[async_trait::async_trait]
impl Kind for Instance {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(
            key,
            "instance_type" | "ami" | "key_name" | "key_pair" | "subnet"
        )
    }

    fn create_before_destroy(&self) -> bool {
        true
    }

    fn ready(&self, status: &str) -> Poll {
        wait::instance_running(status)
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        t.instance
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let instances = scan
            .ec2(
                ResKind::Instance,
                "DescribeInstances",
                "instance-id",
                |i: &ec2t::Instance| (i.instance_id(), i.tags()),
                |f, _| async move {
                    let o = c
                        .ec2
                        .describe_instances()
                        .filters(f)
                        .filters(live())
                        .send()
                        .await;
                    o.map(|o| {
                        o.reservations()
                            .iter()
                            .flat_map(|r| r.instances())
                            .cloned()
                            .collect()
                    })
                },
            )
            .await?;
        let mut out = Vec::new();
        for (i, mut o) in instances {
            let mut res = o
                .res
                .attr(
                    "instance_type",
                    i.instance_type().map(|t| t.as_str()).unwrap_or_default(),
                )
                .attr("ami", i.image_id().unwrap_or_default())
                .attr(
                    "metadata.http_tokens",
                    i.metadata_options()
                        .and_then(|m| m.http_tokens())
                        .map(|t| t.as_str())
                        .unwrap_or("optional"),
                )
                .attr(
                    "metadata.hop_limit",
                    i.metadata_options()
                        .and_then(|m| m.http_put_response_hop_limit())
                        .unwrap_or(1),
                )
                .reference(
                    "subnet",
                    i.subnet_id().map(str::to_string).into_iter().collect(),
                )
                .reference(
                    "security_groups",
                    i.security_groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                );
            if let Some(k) = i.key_name() {
                // Mapped to the key pair's address in resolve when it is this stack's own.
                res = res
                    .attr("key_name", k)
                    .reference("key_pair", vec![k.to_string()]);
            }
            o.res = res;
            let info = &mut o.info;
            if let Some(ip) = i.private_ip_address() {
                info.insert("private_ip".into(), ip.into());
            }
            if let Some(ip) = i.public_ip_address() {
                info.insert("public_ip".into(), ip.into());
            }
            if let Some(z) = i.placement().and_then(|p| p.availability_zone()) {
                info.insert("zone".into(), z.into());
            }
            // `heal` replaces a stopped one; the diff of `up` does not look at it.
            if let Some(s) = i.state().and_then(|s| s.name()) {
                info.insert("state".into(), s.as_str().into());
            }
            out.push(o);
        }
        Ok(out)
    }

    /// A key pair the stack does not own (`hosts.key_name`) is no reference.
    fn resolve(&self, o: &mut Observed, ids: &Ids<'_>) {
        ids.map_refs(&mut o.res);
        if o.res
            .refs
            .get("key_pair")
            .is_some_and(|k| !k.iter().all(|a| a.starts_with("aws_")))
        {
            o.res.refs.remove("key_pair");
        }
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let subnet_id = ctx.id(a, &at.subnet).await?;
        let security_groups_ids = ctx.ref_ids(r, "security_groups").await?;
        let root = root_device(ctx, a, &at.ami).await?;
        let req = ctx
            .c
            .ec2
            .run_instances()
            .image_id(&at.ami)
            .metadata_options(at.metadata_options())
            .instance_type(ec2t::InstanceType::from(at.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnet_id)
            .set_security_group_ids(Some(security_groups_ids))
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
            .tag_specifications(ctx.ec2_tags(ec2t::ResourceType::Volume, a))
            .set_key_name(at.key_name.clone());
        // The same ClientToken on every try: AWS returns the first launch.
        let out = ctx.settle("RunInstances", a, || req.clone().send()).await?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .unwrap_or_default()
            .to_string();
        ctx.wait(a, "running", self.timeout(&ctx.timeouts), || async {
            Ok(match state(ctx, a, &id).await? {
                Some(s) => self.ready(&s),
                // Not listed yet: the id is still propagating.
                None => Poll::Pending("not listed".into()),
            })
        })
        .await?;
        Ok(id)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        let (a, id) = (want.addr.as_str(), have.id.as_str());
        let imds = ["metadata.http_tokens", "metadata.hop_limit"];
        if imds.iter().any(|k| want.get(k) != have.res.get(k)) {
            ctx.settle("ModifyInstanceMetadataOptions", a, || {
                ctx.c
                    .ec2
                    .modify_instance_metadata_options()
                    .instance_id(id)
                    .http_endpoint(ec2t::InstanceMetadataEndpointState::Enabled)
                    .http_tokens(ec2t::HttpTokensState::from(at.http_tokens.as_str()))
                    .http_put_response_hop_limit(at.hop_limit)
                    .send()
            })
            .await?;
        }
        let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
        ctx.settle("ModifyInstanceAttribute", a, || {
            ctx.c
                .ec2
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(security_groups_ids.clone()))
                .send()
        })
        .await?;
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let (a, id) = (o.res.addr.as_str(), o.id.as_str());
        ctx.remove("TerminateInstances", a, || {
            ctx.c.ec2.terminate_instances().instance_ids(id).send()
        })
        .await?;
        // Gone from the listing (InvalidInstanceID.NotFound): terminated long enough ago.
        ctx.wait_gone(
            a,
            "terminated",
            "DescribeInstances",
            "InvalidInstanceID.NotFound",
            self.timeout(&ctx.timeouts),
            || async {
                let o = ctx.c.ec2.describe_instances().instance_ids(id).send().await;
                o.map(|o| {
                    let state = o
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .find_map(|i| i.state().and_then(|s| s.name()))
                        .map(|s| s.as_str().to_string());
                    match state.as_deref() {
                        Some("terminated") | None => Poll::Ready,
                        Some(s) => Poll::Pending(s.into()),
                    }
                })
            },
        )
        .await
    }
}

/// The EC2 status checks of the observed instances, for `heal`: an instance whose instance or
/// system check reads `impaired` gets `info["status"] = "impaired"` (anything else leaves it
/// alone). A second round trip that only `heal` pays: `plan` and `up` never replace a running
/// instance for its health.
pub async fn status_checks(c: &Clients, observed: &mut [Observed]) -> Result<(), AwsError> {
    let ids: Vec<String> = observed
        .iter()
        .filter(|o| o.res.kind == ResKind::Instance)
        .map(|o| o.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let out = c
        .ec2
        .describe_instance_status()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .map_err(api("DescribeInstanceStatus", "(read)"))?;
    for s in out.instance_statuses() {
        let impaired = |x: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            x.and_then(|x| x.status()) == Some(&aws_sdk_ec2::types::SummaryStatus::Impaired)
        };
        if !(impaired(s.instance_status()) || impaired(s.system_status())) {
            continue;
        }
        if let Some(o) = observed
            .iter_mut()
            .find(|o| Some(o.id.as_str()) == s.instance_id())
        {
            o.info.insert("status".into(), "impaired".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Resource {
        Resource::new(ResKind::Instance, "aws_instance.web[0]")
            .reference("subnet", vec!["aws_subnet.public[0]".into()])
            .attr("ami", "ami-1")
            .attr("instance_type", "t3.small")
            .attr("metadata.http_tokens", "required")
    }

    /// An instance without its hop limit is refused before RunInstances, naming it (never
    /// IMDS's default of 1, which containers cannot reach); the options ask for IMDSv2 only.
    #[test]
    fn an_instance_needs_its_metadata_options() {
        assert_eq!(
            Attrs::of(&web()).map_err(|e| e.key),
            Err("metadata.hop_limit".to_string())
        );
        let at = Attrs::of(&web().attr("metadata.hop_limit", 2)).expect("complete");
        let m = at.metadata_options();
        assert_eq!(m.http_tokens(), Some(&ec2t::HttpTokensState::Required));
        assert_eq!(m.http_put_response_hop_limit(), Some(2));
        let no_subnet = Resource {
            refs: Default::default(),
            ..web()
        };
        assert_eq!(
            Attrs::of(&no_subnet).map_err(|e| e.key),
            Err("subnet".to_string())
        );
    }

    /// Type, AMI, key and subnet replace an instance (one at a time, the new one first);
    /// `running` is ready, `terminated` and `stopped` end the wait.
    #[test]
    fn an_instance_is_rolled_and_fails_when_it_stops() {
        for k in ["instance_type", "ami", "key_name", "key_pair", "subnet"] {
            assert!(Instance.forces_replace(k), "{k}");
        }
        assert!(!Instance.forces_replace("security_groups"));
        assert!(!Instance.forces_replace("metadata.http_tokens"));
        assert!(Instance.create_before_destroy());
        assert_eq!(Instance.ready("pending"), Poll::Pending("pending".into()));
        assert_eq!(Instance.ready("running"), Poll::Ready);
        assert_eq!(
            Instance.ready("terminated"),
            Poll::Failed("terminated".into())
        );
        assert_eq!(Instance.ready("stopped"), Poll::Failed("stopped".into()));
    }
}
