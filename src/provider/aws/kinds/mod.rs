//! Resource kinds as the unit of the AWS provider: one trait, [`Kind`], that says for one kind
//! which changes force a replacement, when an observed value satisfies the stack's, whether a
//! delete loses data, whether a replacement can be made create-before-destroy, which states of
//! a wait are ready or final, and how long the wait may take. [`of`] gives each kind's
//! implementation; the diff, the apply phases and the waits ask it instead of matching on the
//! kind themselves.
//!
//! The kinds whose attributes were the worst offenders (a missing attribute silently sent to
//! AWS as "") have their own file and a typed attribute struct parsed from the resource, with
//! every missing attribute an error naming it: [`db_instance`], [`instance`],
//! [`target_group`]. The others are described by [`Table`] rows in this file until their
//! create/update/delete calls move here from `apply.rs` too (issue 12 §1, partly done).

pub mod db_instance;
pub mod instance;
pub mod target_group;

use std::time::Duration;

use super::model::{ResKind, Resource};
use super::wait::{Poll, Timeouts};

/// What one resource kind knows about itself.
pub trait Kind: Sync {
    /// Whether a change of this attribute or reference can only be made by replacing the
    /// resource (AWS has no call that changes it in place).
    fn forces_replace(&self, key: &str) -> bool;

    /// Whether the observed value `have` of `key` satisfies the stack's `want` (equal, unless
    /// the kind knows better: see [`db_instance::DbInstance`]'s engine version).
    fn satisfies(&self, _key: &str, want: &str, have: &str) -> bool {
        want == have
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
    /// acceptors). Kinds that are ready when their create call returns never wait.
    fn ready(&self, _status: &str) -> Poll {
        Poll::Ready
    }

    /// How long a create, update or delete of one may take ([`Timeouts`], stack-settable).
    fn timeout(&self, _t: &Timeouts) -> Option<Duration> {
        None
    }
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

/// A kind described by a row: the keys that force its replacement.
pub struct Table {
    pub replace_on: &'static [&'static str],
}

impl Kind for Table {
    fn forces_replace(&self, key: &str) -> bool {
        self.replace_on.contains(&key)
    }
}

/// The load balancer: ready when `active` (the SDK's `load_balancer_available` waiter).
struct Lb;
impl Kind for Lb {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "kind" | "name")
    }
    fn ready(&self, status: &str) -> Poll {
        super::wait::load_balancer_active(status)
    }
    fn timeout(&self, t: &Timeouts) -> Option<Duration> {
        Some(t.load_balancer)
    }
}

/// The EFS file system: holds data (no final snapshot exists; AWS Backup keeps file systems).
struct FileSystem;
impl Kind for FileSystem {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "performance_mode" | "encrypted")
    }
    fn holds_data(&self) -> bool {
        true
    }
    fn ready(&self, status: &str) -> Poll {
        super::wait::efs_available(status)
    }
    fn timeout(&self, t: &Timeouts) -> Option<Duration> {
        Some(t.file_system)
    }
}

/// An EFS mount target: `creating → available`, gone before its file system can go.
struct MountTarget;
impl Kind for MountTarget {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "file_system" | "subnet")
    }
    fn ready(&self, status: &str) -> Poll {
        super::wait::efs_available(status)
    }
    fn timeout(&self, t: &Timeouts) -> Option<Duration> {
        Some(t.file_system)
    }
}

/// The registration of instances in a target group: made again in the new group before the
/// old group goes.
struct Registration;
impl Kind for Registration {
    fn forces_replace(&self, key: &str) -> bool {
        key == "target_group"
    }
    fn create_before_destroy(&self) -> bool {
        true
    }
}

static VPC: Table = Table {
    replace_on: &["cidr"],
};
static SUBNET: Table = Table {
    replace_on: &["cidr", "zone", "vpc"],
};
static GATEWAY: Table = Table { replace_on: &[] };
static ROUTE_TABLE: Table = Table {
    replace_on: &["vpc"],
};
static SECURITY_GROUP: Table = Table {
    replace_on: &["vpc", "name"],
};
// EC2 cannot change an imported key's material: a new key is a new pair.
static KEY_PAIR: Table = Table {
    replace_on: &["name", "public_key_sha256"],
};
static LISTENER: Table = Table {
    replace_on: &["lb"],
};
static DB_SUBNET_GROUP: Table = Table {
    replace_on: &["name"],
};

/// The implementation of `kind`.
pub fn of(kind: ResKind) -> &'static dyn Kind {
    match kind {
        ResKind::Vpc => &VPC,
        ResKind::Subnet => &SUBNET,
        ResKind::InternetGateway => &GATEWAY,
        ResKind::RouteTable => &ROUTE_TABLE,
        ResKind::SecurityGroup => &SECURITY_GROUP,
        ResKind::KeyPair => &KEY_PAIR,
        ResKind::Instance => &instance::Instance,
        ResKind::Lb => &Lb,
        ResKind::TargetGroup => &target_group::TargetGroup,
        ResKind::Listener => &LISTENER,
        ResKind::TargetAttachment => &Registration,
        ResKind::EfsFileSystem => &FileSystem,
        ResKind::EfsMountTarget => &MountTarget,
        ResKind::DbSubnetGroup => &DB_SUBNET_GROUP,
        ResKind::DbInstance => &db_instance::DbInstance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly the database and the file system hold data; exactly target groups, their
    /// registrations and instances can be replaced create-before-destroy.
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
