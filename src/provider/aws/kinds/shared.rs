//! What every kind's calls share, written once: the call context [`Ctx`] (clients, the ids
//! made so far, tokens, limits), the ownership tags each service takes in its create call and
//! in a re-tag, the mapping of an SDK error to [`AwsError`] ([`api`]), the retry of a call that
//! names a resource this run may have just made ([`Ctx::settle`]), the wait on a kind's ready
//! state ([`Ctx::wait`]), and the retry of a delete while AWS says something still uses the
//! resource ([`Ctx::retry_busy`]). The kinds' files hold only what differs per kind.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use aws_sdk_ec2::types as ec2t;
use aws_sdk_elasticloadbalancingv2::types as elbt;

use crate::provider::aws::client::Clients;
use crate::provider::aws::model::{is_addr, Observed, Resource, TAG_ADDRESS, TAG_STACK};
use crate::provider::aws::wait::{self, CallError, Poll, Timeouts};
use crate::provider::aws::{sdk_code, AwsError};
use crate::vault::Secret;

/// What the kinds' create, update and delete calls need besides the resource.
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

/// Maps an SDK error of `op` on `addr` to [`AwsError::Api`]: the service's code and message
/// ([`sdk_message`]), not a debug dump. Reads name `(read)` or `(preflight)` as the address.
pub fn api<E, R>(
    op: &'static str,
    addr: &str,
) -> impl Fn(aws_sdk_ec2::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let call = wait::call_err(op, addr);
    move |e| call(e).error
}

/// The error codes that mean "something still uses it" to a delete: ENIs of a deleted load
/// balancer or terminated instance linger before a security group or subnet can go; a target
/// group is in use until its listener is repointed; a file system until its mount targets go;
/// an RDS instance or subnet group while a modification runs.
const BUSY: [&str; 6] = [
    "DependencyViolation",
    "ResourceInUse",
    "FileSystemInUse",
    "InvalidDBSubnetGroupStateFault",
    "InvalidGroup.InUse",
    "InvalidDBInstanceState",
];

/// Whether a delete answered `code` should be tried again later ([`BUSY`]).
pub fn is_busy(code: &str) -> bool {
    BUSY.iter().any(|b| code.contains(b))
}

impl Ctx {
    /// The id of `dep` (an address this run knows, or a literal id of an unmanaged resource).
    pub async fn id(&self, addr: &str, dep: &str) -> Result<String, AwsError> {
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

    /// The id of `r`'s one reference `key`. A reference the resource does not have is an
    /// error, never an empty id sent to AWS.
    pub async fn ref_id(&self, r: &Resource, key: &str) -> Result<String, AwsError> {
        let dep = r.one_ref(key).ok_or_else(|| AwsError::MissingDep {
            addr: r.addr.clone(),
            dep: format!("its `{key}` reference"),
        })?;
        self.id(&r.addr, dep).await
    }

    /// The ids of all of `r`'s references `key` (none when it has none).
    pub async fn ref_ids(&self, r: &Resource, key: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        for d in r.refs.get(key).cloned().unwrap_or_default() {
            out.push(self.id(&r.addr, &d).await?);
        }
        Ok(out)
    }

    /// A token that is the same for a retried create of this resource and different for a
    /// replacement (salted with the id being replaced).
    pub fn token(&self, addr: &str, salt: &str) -> String {
        let h = crate::plan::sha256_hex(
            format!("{}|{}|{}|{}", self.lineage, self.stack, addr, salt).as_bytes(),
        );
        format!("hactl-{}", &h[..40])
    }

    /// The ownership tags (and a `Name`) for an EC2 create call's TagSpecifications.
    pub fn ec2_tags(&self, rt: ec2t::ResourceType, addr: &str) -> ec2t::TagSpecification {
        let tag = |k: &str, v: &str| ec2t::Tag::builder().key(k).value(v).build();
        ec2t::TagSpecification::builder()
            .resource_type(rt)
            .tags(tag(TAG_STACK, &self.stack))
            .tags(tag(TAG_ADDRESS, addr))
            .tags(tag("Name", &format!("{}/{}", self.stack, addr)))
            .build()
    }

    /// The ownership tags for an ELBv2 create call or AddTags.
    pub fn elb_tags(&self, addr: &str) -> Vec<elbt::Tag> {
        self.pairs(addr)
            .map(|(k, v)| elbt::Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// The ownership tags for an RDS create call or AddTagsToResource.
    pub fn rds_tags(&self, addr: &str) -> Vec<aws_sdk_rds::types::Tag> {
        self.pairs(addr)
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// The ownership tags for an EFS create call or TagResource.
    pub fn efs_tags(&self, addr: &str) -> Vec<aws_sdk_efs::types::Tag> {
        self.pairs(addr)
            .filter_map(|(k, v)| {
                aws_sdk_efs::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect()
    }

    /// `hactl:stack` and `hactl:address`: the tags that make a resource this stack's.
    fn pairs<'a>(&'a self, addr: &'a str) -> impl Iterator<Item = (&'static str, &'a str)> {
        [(TAG_STACK, self.stack.as_str()), (TAG_ADDRESS, addr)].into_iter()
    }

    /// Restores the ownership tags of an EC2 resource `id` (and the `extra` ones, a key
    /// pair's fingerprint) with CreateTags. Only these: a `Name` someone changed by hand is
    /// theirs.
    pub async fn retag_ec2(
        &self,
        addr: &str,
        id: &str,
        extra: &[(&str, &str)],
    ) -> Result<(), AwsError> {
        let tags = self
            .pairs(addr)
            .map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build())
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ec2t::Tag::builder().key(*k).value(*v).build()),
            )
            .collect();
        self.c
            .ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(api("CreateTags", addr))?;
        Ok(())
    }

    /// Restores the ownership tags of a load balancer or target group (AddTags).
    pub async fn retag_elb(&self, o: &Observed) -> Result<(), AwsError> {
        let a = o.res.addr.as_str();
        self.c
            .elb
            .add_tags()
            .resource_arns(&o.id)
            .set_tags(Some(self.elb_tags(a)))
            .send()
            .await
            .map_err(api("AddTags", a))?;
        Ok(())
    }

    /// Restores the ownership tags of an RDS resource, by the ARN observe read (AddTagsToResource).
    pub async fn retag_rds(&self, o: &Observed) -> Result<(), AwsError> {
        let a = o.res.addr.as_str();
        let arn = o.info.get("arn").cloned().unwrap_or_default();
        self.c
            .rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(self.rds_tags(a)))
            .send()
            .await
            .map_err(api("AddTagsToResource", a))?;
        Ok(())
    }

    /// Waits on `check` for at most `timeout` (the kind's limit): throttling is pending, and
    /// so is NotFound while the id propagates ([`wait::until`]). Each pending status AWS
    /// reports is kept in [`Ctx::status`] for the progress lines.
    pub async fn wait<F, Fut>(
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

    /// Waits until a deleted resource is gone: `check` reads its status as a [`Poll`]; `gone`
    /// is the NotFound code the service answers for it once it is gone. Only that code means
    /// gone: throttling is one more poll ([`Ctx::wait`]).
    pub async fn wait_gone<E, R, F, Fut>(
        &self,
        addr: &str,
        what: &'static str,
        op: &'static str,
        gone: &'static str,
        timeout: Duration,
        check: F,
    ) -> Result<(), AwsError>
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Poll, aws_sdk_ec2::error::SdkError<E, R>>>,
    {
        self.wait(addr, what, timeout, || async {
            match check().await {
                Ok(p) => Ok(p),
                Err(e) if sdk_code(&e).as_deref() == Some(gone) => Ok(Poll::Ready),
                Err(e) => Err(wait::call_err(op, addr)(e)),
            }
        })
        .await
    }

    /// One call that names a resource this run may have just made: NotFound (and throttling
    /// the SDK's retries did not absorb) is retried while the id propagates ([`wait::settle`]).
    pub async fn settle<T, E, R, F, Fut>(
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

    /// Retries a delete while AWS says something still uses the resource ([`is_busy`]), for
    /// [`Ctx::wait_timeout`] at most. NotFound is the goal of a delete: Ok(None).
    pub async fn retry_busy<T, E, R, F, Fut>(
        &self,
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
        let deadline = Instant::now() + self.wait_timeout;
        let mut delay = Duration::from_millis(500);
        loop {
            match f().await {
                Ok(v) => return Ok(Some(v)),
                Err(e) => {
                    let code = sdk_code(&e).unwrap_or_default();
                    if code.contains("NotFound") {
                        return Ok(None); // already gone: the goal of a delete
                    }
                    if !is_busy(&code) || Instant::now() >= deadline {
                        return Err(api(op, addr)(e));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(10));
        }
    }

    /// A delete call ([`Ctx::retry_busy`]) whose answer nothing needs.
    pub async fn remove<T, E, R, F, Fut>(
        &self,
        op: &'static str,
        addr: &str,
        f: F,
    ) -> Result<(), AwsError>
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
    {
        self.retry_busy(op, addr, f).await.map(|_| ())
    }

    /// The instance ids registered in a target group now.
    pub async fn registered(&self, addr: &str, tg: &str) -> Result<Vec<String>, AwsError> {
        let out = self
            .settle("DescribeTargetHealth", addr, || {
                self.c
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes a delete waits out are exactly "something still uses it"; NotFound and
    /// permission errors are not among them.
    #[test]
    fn a_delete_waits_out_only_in_use_codes() {
        for code in [
            "DependencyViolation",
            "ResourceInUse",
            "FileSystemInUse",
            "InvalidDBSubnetGroupStateFault",
            "InvalidGroup.InUse",
            "InvalidDBInstanceState",
        ] {
            assert!(is_busy(code), "{code}");
        }
        for code in ["InvalidVpcID.NotFound", "UnauthorizedOperation", ""] {
            assert!(!is_busy(code), "{code}");
        }
    }
}
