//! Resource kinds as the unit of the AWS provider: one trait, [`Kind`], and one file per kind
//! implementing it over a typed attribute struct (`Attrs::of(&Resource)`, where a missing
//! attribute is a [`MissingAttr`] naming it, never "" sent to AWS). A kind says which changes
//! force a replacement, when an observed value satisfies the stack's, whether a delete loses
//! data, whether a replacement can be made create-before-destroy, how it is read (its part of
//! `observe`), created, updated, re-tagged and deleted, which states of a wait are ready,
//! pending or failed, and how long that may take. [`of`] gives each kind's implementation: the
//! diff, the step runner (`apply`) and the scan (`observe`) ask it instead of matching on the
//! kind themselves. What the kinds' calls share (the call context, tags, error mapping, the
//! NotFound and in-use retries) is [`shared`], written once.
//!
//! The anchor is terraform-provider-aws, where each resource type is one file with its schema,
//! CRUD functions, waiters and timeouts (`internal/service/ec2/vpc_.go`,
//! `internal/service/rds/instance.go`).

pub mod db_instance;
pub mod db_subnet_group;
pub mod file_system;
pub mod instance;
pub mod internet_gateway;
pub mod key_pair;
pub mod lb;
pub mod listener;
pub mod mount_target;
pub mod registration;
pub mod route_table;
pub mod security_group;
pub mod shared;
pub mod subnet;
pub mod target_group;
pub mod vpc;

use std::time::Duration;

use super::model::{Observed, ResKind, Resource};
use super::observe::{Ids, Scan};
use super::wait::{Poll, Timeouts};
use super::AwsError;
pub use shared::Ctx;

/// What one resource kind knows about itself, and its calls.
#[async_trait::async_trait]
pub trait Kind: Sync {
    /// Whether a change of this attribute or reference can only be made by replacing the
    /// resource (AWS has no call that changes it in place).
    fn forces_replace(&self, key: &str) -> bool;

    /// Whether the observed value `have` of `key` satisfies the stack's `want` (equal, unless
    /// the kind knows better: see [`db_instance::DbInstance`]'s engine version).
    fn satisfies(&self, _key: &str, want: &str, have: &str) -> bool {
        want == have
    }

    /// How the plan shows a change of `key` when its value must not be shown (a keyed hash
    /// of a secret): `(before, after)` in place of the values, from what was observed
    /// (`have`, None when AWS reported nothing). None: the key is shown as it is.
    fn masked(&self, _key: &str, _have: Option<&str>) -> Option<(String, String)> {
        None
    }

    /// Whether deleting one loses data only it holds (a database, a file system).
    fn holds_data(&self) -> bool {
        false
    }

    /// Whether a replacement may create the new one before deleting the old (a second one
    /// can exist beside the first, and what references it can be repointed).
    fn create_before_destroy(&self) -> bool {
        false
    }

    /// What a status read while waiting for a new one to be ready means (the SDK waiters'
    /// acceptors): ready, pending, or failed (a state AWS will not leave by itself, which ends
    /// the wait with that status). Kinds that are ready when their create call returns never
    /// wait.
    fn ready(&self, _status: &str) -> Poll {
        Poll::Ready
    }

    /// How long a create or delete of one may wait for it to become ready or gone
    /// ([`Timeouts`], stack-settable under `aws.timeouts`). Kinds that are ready when their
    /// create call returns wait only while a new id propagates.
    fn timeout(&self, t: &Timeouts) -> Duration {
        t.propagation
    }

    /// The kind this one is read through (a listener through its load balancer, a
    /// registration through its target group, a mount target through its file system): it
    /// has no tags of its own, and is read in the scan's second round.
    fn read_through(&self) -> Option<ResKind> {
        None
    }

    /// Whether other resources refer to one of this kind by its id, so that the scan maps
    /// that id back to its address ([`Ids`]). Not a kind whose id is another's too: a
    /// registration's id is its target group's ARN, and the DB instance's identifier is its
    /// subnet group's name (`hactl-<stack>-db`); nothing refers to either.
    fn referred_to(&self) -> bool {
        true
    }

    /// Every one of this kind that is the stack's: its tagged ones, and those the state
    /// recorded (found by id when their tags are gone), with references as AWS ids.
    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError>;

    /// Maps the references of one read by [`Kind::read`] from AWS ids to addresses.
    fn resolve(&self, o: &mut Observed, ids: &Ids<'_>) {
        ids.map_refs(&mut o.res);
    }

    /// Creates `r` and waits until it is ready; returns its id. `token` is its idempotency
    /// token, derived from the journal (`engine::journal::create_token`).
    async fn create(&self, ctx: &Ctx, r: &Resource, token: &str) -> Result<String, AwsError>;

    /// Changes `have` in place to what `want` says (only attributes that do not
    /// [`Kind::forces_replace`] differ).
    async fn update(&self, _ctx: &Ctx, _want: &Resource, _have: &Observed) -> Result<(), AwsError> {
        Ok(())
    }

    /// Restores the ownership tags of one the state recorded and that lost them (observe set
    /// [`super::model::INFO_RETAG`]). Kinds without tags of their own never need it.
    async fn retag(&self, _ctx: &Ctx, _o: &Observed) -> Result<(), AwsError> {
        Ok(())
    }

    /// Deletes `o` (retrying while something still uses it) and, where what depends on it
    /// can only go after, waits until it is gone.
    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError>;
}

/// A missing attribute that the create or update call needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("`{addr}` has no `{key}` attribute")]
#[diagnostic(
    code(hactl::aws::missing_attribute),
    help(
        "this is a bug in hactl's stack → resource mapping: please report it with the stack file"
    )
)]
pub struct MissingAttr {
    pub addr: String,
    pub key: String,
}

/// The value of `key`, or [`MissingAttr`] (never a silent "").
pub fn get<'a>(r: &'a Resource, key: &str) -> Result<&'a str, MissingAttr> {
    r.get(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MissingAttr {
            addr: r.addr.clone(),
            key: key.to_string(),
        })
}

/// The value of `key` parsed as `T`, or [`MissingAttr`] when it is missing or does not parse.
pub fn parse<T: std::str::FromStr>(r: &Resource, key: &str) -> Result<T, MissingAttr> {
    get(r, key)?.parse().map_err(|_| MissingAttr {
        addr: r.addr.clone(),
        key: key.to_string(),
    })
}

/// The reference `key` of `r` that a call needs (an address, or the literal id of an
/// unmanaged resource), or [`MissingAttr`] naming it.
pub fn reference<'a>(r: &'a Resource, key: &str) -> Result<&'a str, MissingAttr> {
    r.one_ref(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| MissingAttr {
            addr: r.addr.clone(),
            key: key.to_string(),
        })
}

/// The implementation of `kind`.
pub fn of(kind: ResKind) -> &'static dyn Kind {
    match kind {
        ResKind::Vpc => &vpc::Vpc,
        ResKind::Subnet => &subnet::Subnet,
        ResKind::InternetGateway => &internet_gateway::InternetGateway,
        ResKind::RouteTable => &route_table::RouteTable,
        ResKind::SecurityGroup => &security_group::SecurityGroup,
        ResKind::KeyPair => &key_pair::KeyPair,
        ResKind::Instance => &instance::Instance,
        ResKind::Lb => &lb::Lb,
        ResKind::TargetGroup => &target_group::TargetGroup,
        ResKind::Listener => &listener::Listener,
        ResKind::TargetAttachment => &registration::Registration,
        ResKind::EfsFileSystem => &file_system::FileSystem,
        ResKind::EfsMountTarget => &mount_target::MountTarget,
        ResKind::DbSubnetGroup => &db_subnet_group::DbSubnetGroup,
        ResKind::DbInstance => &db_instance::DbInstance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly the database and the file system hold data; exactly target groups, their
    /// registrations and instances can be replaced create-before-destroy; exactly the kinds
    /// whose id another kind shares are not mapped back by id; exactly the kinds without tags
    /// are read through their parent.
    #[test]
    fn each_kind_says_what_it_is() {
        use ResKind::*;
        let all = ResKind::ALL;
        let data: Vec<ResKind> = all.into_iter().filter(|k| of(*k).holds_data()).collect();
        assert_eq!(data, [EfsFileSystem, DbInstance]);
        let cbd: Vec<ResKind> = all
            .into_iter()
            .filter(|k| of(*k).create_before_destroy())
            .collect();
        assert_eq!(cbd, [Instance, TargetGroup, TargetAttachment]);
        let hidden: Vec<ResKind> = all.into_iter().filter(|k| !of(*k).referred_to()).collect();
        assert_eq!(hidden, [TargetAttachment, DbInstance]);
        let through: Vec<(ResKind, ResKind)> = all
            .into_iter()
            .filter_map(|k| Some((k, of(k).read_through()?)))
            .collect();
        assert_eq!(
            through,
            [
                (Listener, Lb),
                (TargetAttachment, TargetGroup),
                (EfsMountTarget, EfsFileSystem)
            ]
        );
        // Only the kinds with a ready state of their own wait longer than a new id propagates.
        let t = Timeouts::default();
        let waits: Vec<ResKind> = all
            .into_iter()
            .filter(|k| of(*k).timeout(&t) != t.propagation)
            .collect();
        assert_eq!(
            waits,
            [Instance, Lb, EfsFileSystem, EfsMountTarget, DbInstance]
        );
        assert!(of(Subnet).forces_replace("zone"));
        assert!(!of(TargetGroup).forces_replace("health_check.path"));
    }

    /// A missing attribute is an error naming it, never "".
    #[test]
    fn a_missing_attribute_is_an_error() {
        let r = Resource::new(ResKind::Vpc, "aws_vpc.main").attr("cidr", "");
        assert_eq!(
            get(&r, "cidr"),
            Err(MissingAttr {
                addr: "aws_vpc.main".into(),
                key: "cidr".into()
            })
        );
        let r = r.attr("port", "eighty");
        assert!(parse::<i32>(&r, "port").is_err());
    }
}
