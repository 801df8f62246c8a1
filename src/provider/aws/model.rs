//! The provider-neutral shape of one AWS resource, shared by the desired side (built from the
//! stack), the observed side (read from AWS by tags) and the pure diff.
//!
//! A resource is an address (`aws_instance.web[0]`), a kind, plain attributes and references.
//! References hold *addresses* of other resources (or literal ids for things hactl does not
//! own, e.g. an existing VPC), never raw ids: the observer maps every id it reads back to the
//! address carried by that resource's `hactl:address` tag. That is what makes the diff a pure
//! comparison of two value sets, and what lets `down` and a lost state work from tags alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The tag every resource hactl creates carries, with the stack name as its value.
pub const TAG_STACK: &str = "hactl:stack";
/// The tag that names the resource's address in the stack.
pub const TAG_ADDRESS: &str = "hactl:address";
/// The tag on an imported key pair that records which public key it holds
/// ([`super::desired::public_key_sha256`]): EC2 cannot show the material back.
pub const TAG_PUBLIC_KEY: &str = "hactl:public-key-sha256";

/// The kinds of resources the AWS provider manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResKind {
    Vpc,
    Subnet,
    InternetGateway,
    RouteTable,
    SecurityGroup,
    KeyPair,
    Instance,
    Lb,
    TargetGroup,
    Listener,
    TargetAttachment,
    EfsFileSystem,
    EfsMountTarget,
    DbSubnetGroup,
    DbInstance,
}

impl ResKind {
    /// Every kind, in declaration order.
    pub const ALL: [ResKind; 15] = {
        use ResKind::*;
        [
            Vpc,
            Subnet,
            InternetGateway,
            RouteTable,
            SecurityGroup,
            KeyPair,
            Instance,
            Lb,
            TargetGroup,
            Listener,
            TargetAttachment,
            EfsFileSystem,
            EfsMountTarget,
            DbSubnetGroup,
            DbInstance,
        ]
    };

    /// The Terraform-style type name that starts every address.
    pub fn type_name(self) -> &'static str {
        match self {
            ResKind::Vpc => "aws_vpc",
            ResKind::Subnet => "aws_subnet",
            ResKind::InternetGateway => "aws_internet_gateway",
            ResKind::RouteTable => "aws_route_table",
            ResKind::SecurityGroup => "aws_security_group",
            ResKind::KeyPair => "aws_key_pair",
            ResKind::Instance => "aws_instance",
            ResKind::Lb => "aws_lb",
            ResKind::TargetGroup => "aws_lb_target_group",
            ResKind::Listener => "aws_lb_listener",
            ResKind::TargetAttachment => "aws_lb_target_group_attachment",
            ResKind::EfsFileSystem => "aws_efs_file_system",
            ResKind::EfsMountTarget => "aws_efs_mount_target",
            ResKind::DbSubnetGroup => "aws_db_subnet_group",
            ResKind::DbInstance => "aws_db_instance",
        }
    }

    /// The kind whose [`ResKind::type_name`] is `name` (as the state records it).
    pub fn from_type_name(name: &str) -> Option<ResKind> {
        ResKind::ALL.into_iter().find(|k| k.type_name() == name)
    }

    /// Whether a change of this attribute or reference can only be made by replacing the
    /// resource (AWS has no call to change it in place).
    pub fn forces_replace(self, key: &str) -> bool {
        super::kinds::of(self).forces_replace(key)
    }
}

/// Whether the observed value `have` of attribute `key` satisfies the stack's `want`: equal,
/// or as the kind compares it ([`super::kinds::Kind::satisfies`]: an RDS `engine_version` is a
/// version prefix that RDS may move up by itself).
pub fn satisfies(kind: ResKind, key: &str, want: &str, have: Option<&str>) -> bool {
    have.is_some_and(|h| super::kinds::of(kind).satisfies(key, want, h))
}

/// One resource, desired or observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub addr: String,
    pub kind: ResKind,
    /// Plain attributes, compared as strings.
    pub attrs: BTreeMap<String, String>,
    /// References to other resources by address (or literal ids of unmanaged ones), sorted.
    pub refs: BTreeMap<String, Vec<String>>,
}

impl Resource {
    pub fn new(kind: ResKind, addr: impl Into<String>) -> Resource {
        Resource {
            addr: addr.into(),
            kind,
            attrs: BTreeMap::new(),
            refs: BTreeMap::new(),
        }
    }

    pub fn attr(mut self, k: &str, v: impl ToString) -> Resource {
        self.attrs.insert(k.to_string(), v.to_string());
        self
    }

    pub fn reference(mut self, k: &str, addrs: Vec<String>) -> Resource {
        let mut addrs = addrs;
        addrs.sort();
        addrs.dedup();
        self.refs.insert(k.to_string(), addrs);
        self
    }

    pub fn one_ref(&self, k: &str) -> Option<&str> {
        self.refs.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).map(String::as_str)
    }

    /// Addresses this resource needs to exist first (references to managed resources).
    pub fn deps(&self) -> impl Iterator<Item = &str> {
        self.refs
            .values()
            .flatten()
            .map(String::as_str)
            .filter(|a| is_addr(a))
    }
}

/// An address (as opposed to a literal AWS id such as `vpc-0abc`).
pub fn is_addr(s: &str) -> bool {
    s.starts_with("aws_")
}

/// What the state recorded: address → (kind, id). `observe` reads these by id first, so a
/// resource whose `hactl:*` tags were removed (a console tag clean-up) is still this stack's.
pub type Recorded = BTreeMap<String, (ResKind, String)>;

/// The `info` key of an observed resource that was found through the state, by id, while its
/// ownership tags are missing or wrong: the value names those tags (`hactl:stack, hactl:address`).
/// The diff shows it as a "re-tag" (an in-place update) and apply restores the tags.
pub const INFO_RETAG: &str = "retag";

/// A resource as read from AWS: its normalized description, its id, and facts for outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub res: Resource,
    /// The AWS id or ARN that API calls take.
    pub id: String,
    /// Values that are not compared but reported (DNS names, endpoints, addresses, zone).
    pub info: BTreeMap<String, String>,
}
