//! The plan as data: what would change, where and why.
//!
//! A [`Plan`] is a flat list of [`Change`]s — files, services and (on AWS) cloud resources —
//! each with an address, an action, a reason and before/after digests, plus the hosts that
//! could not be observed. It is computed by pure functions (`hosts::diff`) from what the stack
//! wants and what the providers observed, so it can be printed, serialized, compared and
//! tested without any SSH or AWS. Applying it is the engine's job.

pub mod hosts;

use serde::Serialize;

/// What a change does. Symbols follow Terraform: `+` create, `~` update, `-` delete,
/// `-/+` replace; services get `>` start, `↻` reload, `■` stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Start,
    Reload,
    Stop,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Start => ">",
            Action::Reload => "↻",
            Action::Stop => "■",
        }
    }
}

/// What kind of thing a change is about (derived from its [`Addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Service,
    Resource,
    /// A redis instance's replication role (`heal`).
    Redis,
}

/// What a change is about, typed: the engine and the providers decide on the variant, never on
/// the text. `Display` gives the address users type and read (Terraform's `addrs` package
/// plays the same part): `aws_instance.web[0]`, `web1:/etc/nginx/nginx.conf`,
/// `web1:service/nginx`, `web1:redis/cache:6379`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// A cloud resource: its type name (`aws_instance`) and its name in the stack (`web[0]`).
    Resource { kind: String, name: String },
    /// A file hactl writes on a host, by absolute path.
    File { host: String, path: String },
    /// A service hactl runs on a host (`nginx`, `keepalived`, `app`, …).
    Service { host: String, service: String },
    /// One redis instance of a service: its replication role is what `heal` changes.
    Redis {
        host: String,
        service: String,
        port: u16,
    },
}

impl Addr {
    /// A cloud resource's address from its `type.name` form (`aws_vpc.main`); a string without
    /// a dot is kept whole as the type.
    pub fn resource(addr: &str) -> Addr {
        let (kind, name) = addr.split_once('.').unwrap_or((addr, ""));
        Addr::Resource {
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }

    pub fn file(host: &str, path: &str) -> Addr {
        Addr::File {
            host: host.to_string(),
            path: path.to_string(),
        }
    }

    pub fn service(host: &str, service: &str) -> Addr {
        Addr::Service {
            host: host.to_string(),
            service: service.to_string(),
        }
    }

    /// The host the change happens on (None for cloud resources).
    pub fn host(&self) -> Option<&str> {
        match self {
            Addr::Resource { .. } => None,
            Addr::File { host, .. } | Addr::Service { host, .. } | Addr::Redis { host, .. } => {
                Some(host)
            }
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Addr::Resource { .. } => Kind::Resource,
            Addr::File { .. } => Kind::File,
            Addr::Service { .. } => Kind::Service,
            Addr::Redis { .. } => Kind::Redis,
        }
    }

    /// The address without its host (`/etc/nginx/nginx.conf`, `service nginx`), for a block
    /// that already names the host.
    pub fn local(&self) -> String {
        match self {
            Addr::Resource { .. } => self.to_string(),
            Addr::File { path, .. } => path.clone(),
            Addr::Service { service, .. } => format!("service {service}"),
            Addr::Redis { service, port, .. } => format!("redis {service}:{port}"),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Resource { kind, name } if name.is_empty() => write!(f, "{kind}"),
            Addr::Resource { kind, name } => write!(f, "{kind}.{name}"),
            Addr::File { host, path } => write!(f, "{host}:{path}"),
            Addr::Service { host, service } => write!(f, "{host}:service/{service}"),
            Addr::Redis {
                host,
                service,
                port,
            } => write!(f, "{host}:redis/{service}:{port}"),
        }
    }
}

/// An address as typed on the command line (`--target`) that is none of the forms above.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`{0}` is not an address: expected `aws_TYPE.NAME`, `HOST:/PATH`, `HOST:service/NAME` or `HOST:redis/SERVICE:PORT`")]
#[diagnostic(
    code(hactl::plan::bad_address),
    help("`hactl plan` lists every address; copy one from there")
)]
pub struct BadAddr(pub String);

impl std::str::FromStr for Addr {
    type Err = BadAddr;

    fn from_str(s: &str) -> Result<Addr, BadAddr> {
        let bad = || BadAddr(s.to_string());
        if let Some((host, rest)) = s.split_once(':') {
            if host.is_empty() || host.contains('/') {
                return Err(bad());
            }
            if rest.starts_with('/') {
                return Ok(Addr::file(host, rest));
            }
            if let Some(svc) = rest.strip_prefix("service/").filter(|x| !x.is_empty()) {
                return Ok(Addr::service(host, svc));
            }
            if let Some((svc, port)) = rest.strip_prefix("redis/").and_then(|r| r.rsplit_once(':'))
            {
                let port = port.parse().map_err(|_| bad())?;
                return Ok(Addr::Redis {
                    host: host.to_string(),
                    service: svc.to_string(),
                    port,
                });
            }
            return Err(bad());
        }
        match s.split_once('.') {
            Some((k, n)) if !k.is_empty() && !n.is_empty() => Ok(Addr::resource(s)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One attribute of a cloud resource that differs: `key: before → after`, and whether AWS can
/// only change it by replacing the resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttrChange {
    pub key: String,
    pub before: String,
    pub after: String,
    pub forces_replace: bool,
}

/// Why a change is planned, typed: apply decides on the variant, people read its `Display`
/// (the short reasons plans have always shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    // --- host files and services
    /// The file is not on the host.
    Missing,
    ContentChanged,
    ContentAndMode {
        from: u32,
        to: u32,
    },
    Mode {
        from: u32,
        to: u32,
    },
    /// A symbolic link where the file goes: `up` refuses it unless `replace_symlink: true`.
    Symlink,
    /// A directory, fifo or device where the file goes.
    NotRegularFile,
    /// hactl wrote it before and the stack no longer renders it.
    NoLongerInStack {
        restored: bool,
    },
    /// `down`: hactl wrote it.
    WrittenByHactl {
        restored: bool,
    },
    /// A running service whose files change: these file names.
    FilesChanged {
        files: Vec<String>,
    },
    NotRunning,
    /// `down`: hactl started it.
    StartedByHactl,
    /// A host of a cloud stack that does not exist yet: what its files hold depends on cloud
    /// outputs (addresses, endpoints) known only after the cloud layer is applied.
    KnownAfterApply,
    // --- cloud resources
    /// Nothing in the account carries this address.
    NotFound,
    /// A second resource with this address (a create retried before its first answer came
    /// back): this one, by id, is deleted.
    Duplicate {
        id: String,
    },
    /// Attributes differ (some may force replacement), the ownership tags are missing
    /// (`retag`: which), and/or resources it references are replaced.
    Differs {
        attrs: Vec<AttrChange>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retag: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        replaced: Vec<String>,
    },
    /// Observed, owned by the stack, not asked for any more.
    NotInStack,
    /// `down`.
    StackDown,
    /// `heal`: a missing instance launched again (`was`: the id the state recorded).
    Relaunch {
        was: Option<String>,
    },
    /// `heal`: an instance that serves nothing (stopped, impaired) replaced.
    Dead {
        id: String,
        why: String,
    },
    // --- redis replication (`heal`)
    /// A live instance that does not replicate its port's primary (`primary`: its host,
    /// `address`: the address it is made to follow with `REPLICAOF`).
    NotFollowingPrimary {
        primary: String,
        address: String,
    },
    /// No live primary on the port and `promotion: hactl`: this replica, the one with the most
    /// data, is promoted (`REPLICAOF NO ONE`).
    NoLivePrimary,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Missing => f.write_str("missing"),
            Reason::ContentChanged => f.write_str("content changed"),
            Reason::ContentAndMode { from, to } => {
                write!(f, "content and mode {from:04o} → {to:04o} changed")
            }
            Reason::Mode { from, to } => write!(f, "mode {from:04o} → {to:04o}"),
            Reason::Symlink => f.write_str(
                "a symbolic link on the host: `up` refuses it unless the file says `replace_symlink: true`",
            ),
            Reason::NotRegularFile => {
                f.write_str("not a regular file on the host: `up` cannot replace it")
            }
            Reason::NoLongerInStack { restored: false } => f.write_str("no longer in the stack"),
            Reason::NoLongerInStack { restored: true } => {
                f.write_str("no longer in the stack: original restored")
            }
            Reason::WrittenByHactl { restored: false } => f.write_str("written by hactl"),
            Reason::WrittenByHactl { restored: true } => {
                f.write_str("written by hactl: original restored")
            }
            Reason::FilesChanged { files } => write!(f, "{} changed", files.join(", ")),
            Reason::NotRunning => f.write_str("not running"),
            Reason::StartedByHactl => f.write_str("started by hactl"),
            Reason::KnownAfterApply => f.write_str("known after apply"),
            Reason::NotFound => f.write_str("not found"),
            Reason::Duplicate { id } => write!(f, "duplicate `{id}`"),
            Reason::Differs {
                attrs,
                retag,
                replaced,
            } => {
                let mut parts: Vec<String> = attrs
                    .iter()
                    .map(|a| {
                        if a.forces_replace {
                            format!("{} changed: {} → {}: replace", a.key, a.before, a.after)
                        } else {
                            format!("{}: {} → {}", a.key, a.before, a.after)
                        }
                    })
                    .collect();
                parts.extend(retag.iter().map(|t| format!("re-tag: {t} missing")));
                parts.extend(replaced.iter().map(|a| format!("{a} is replaced")));
                f.write_str(&parts.join("; "))
            }
            Reason::NotInStack => f.write_str("not in the stack"),
            Reason::StackDown => f.write_str("stack down"),
            Reason::Relaunch { was: Some(id) } => {
                write!(f, "{id} is terminated or gone: launch a replacement")
            }
            Reason::Relaunch { was: None } => f.write_str("missing: launch it"),
            Reason::Dead { id, why } => write!(f, "{id} is {why}: replace"),
            Reason::NotFollowingPrimary { primary, address } => {
                write!(f, "not a replica of the primary {primary} ({address})")
            }
            Reason::NoLivePrimary => {
                f.write_str("no live primary: promoted, the replica with the most data")
            }
        }
    }
}

/// What apply needs beyond what the plan shows, opaque to the plan: the provider that planned
/// the change puts its own description here (the AWS provider its diff step) and takes it back
/// at apply. Never serialized: a saved plan is re-made and compared (see `engine::saved`).
#[derive(Clone, Default)]
pub enum Payload {
    #[default]
    None,
    Provider(std::sync::Arc<dyn std::any::Any + Send + Sync>),
}

impl Payload {
    pub fn provider<T: std::any::Any + Send + Sync>(v: T) -> Payload {
        Payload::Provider(std::sync::Arc::new(v))
    }

    /// The provider's description, if it is a `T`.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        match self {
            Payload::None => None,
            Payload::Provider(p) => p.downcast_ref(),
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::None => f.write_str("Payload::None"),
            Payload::Provider(_) => f.write_str("Payload::Provider(..)"),
        }
    }
}

/// Two plans are equal when they show the same changes: the payload is the provider's copy.
impl PartialEq for Payload {
    fn eq(&self, _: &Payload) -> bool {
        true
    }
}
impl Eq for Payload {}

/// When the delete of a replaced cloud resource runs, relative to the creates and updates
/// (Terraform's `lifecycle { create_before_destroy }`). The provider that plans the change
/// decides; the engine's walk (`engine::graph`) orders by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Deletes (and the delete half of a replace) run first, deepest first: AWS frees names,
    /// addresses and zones before the creates need them.
    #[default]
    DestroyFirst,
    /// The new resource is created, and what references it repointed, before the old one is
    /// deleted (a target group a listener forwards to). Also a duplicate's delete: the address
    /// keeps its first resource, so the second goes last.
    CreateFirst,
    /// Replaced by one task that creates the new one, moves the traffic over and deletes the
    /// old one (an instance behind a load balancer); such tasks run one at a time.
    Rolled,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Stable address: `host1:/etc/nginx/nginx.conf`, `host1:service/nginx`, `aws_vpc.main`.
    pub addr: Addr,
    pub action: Action,
    /// Why, typed; shown as a few words: `content changed`, `nginx.conf changed`.
    pub reason: Reason,
    /// Digest (files: `sha256:…`) or summary of the current value.
    pub before: Option<String>,
    /// Digest or summary of the wanted value.
    pub after: Option<String>,
    /// Unified diff of a text file; never present for sensitive files.
    pub diff: Option<String>,
    /// The content includes a secret: shown only as digests.
    pub sensitive: bool,
    /// Changes that must be done before this one starts (the engine orders by them).
    pub depends_on: Vec<Addr>,
    /// The dependency wave (0: depends on nothing in the plan), for display and JSON.
    pub wave: usize,
    /// What the provider needs to apply it (not shown, not serialized).
    pub payload: Payload,
    /// A replacement's (or a late delete's) place in the walk ([`Order`]).
    pub order: Order,
    /// The change deletes data only this resource holds (a database, a file system): what is
    /// kept of it, as the plan says it. The engine refuses such a plan unless the user
    /// allows data loss (`--allow-data-loss`).
    pub destroys_data: Option<String>,
}

impl Change {
    /// A change with no digests, diff, dependencies or payload.
    pub fn new(addr: Addr, action: Action, reason: Reason) -> Change {
        Change {
            addr,
            action,
            reason,
            before: None,
            after: None,
            diff: None,
            sensitive: false,
            depends_on: Vec::new(),
            wave: 0,
            payload: Payload::None,
            order: Order::DestroyFirst,
            destroys_data: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.addr.kind()
    }
}

/// The JSON shape of a change (`plan --json`, saved plans): the address and reason as text
/// (what people grep for), the typed reason beside it, `host` and `kind` from the address.
impl Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            addr: &'a Addr,
            #[serde(skip_serializing_if = "Option::is_none")]
            host: Option<&'a str>,
            kind: Kind,
            action: Action,
            reason: String,
            reason_detail: &'a Reason,
            #[serde(skip_serializing_if = "Option::is_none")]
            before: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            after: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            diff: &'a Option<String>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            sensitive: bool,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            depends_on: &'a [Addr],
            wave: usize,
            #[serde(skip_serializing_if = "is_destroy_first")]
            order: Order,
            #[serde(skip_serializing_if = "Option::is_none")]
            destroys_data: &'a Option<String>,
        }
        fn is_destroy_first(o: &Order) -> bool {
            *o == Order::DestroyFirst
        }
        Json {
            addr: &self.addr,
            host: self.addr.host(),
            kind: self.addr.kind(),
            action: self.action,
            reason: self.reason.to_string(),
            reason_detail: &self.reason,
            before: &self.before,
            after: &self.after,
            diff: &self.diff,
            sensitive: self.sensitive,
            depends_on: &self.depends_on,
            wave: self.wave,
            order: self.order,
            destroys_data: &self.destroys_data,
        }
        .serialize(s)
    }
}

/// Counts for the summary line and `--json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub noop: usize,
}

/// A host that could not be observed (unreachable, refused host key, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFailure {
    pub host: String,
    pub error: String,
}

/// The error of a plan with hosts it could not observe (`hactl::plan::hosts_unobserved`),
/// naming them; None when every host answered.
pub fn unobserved(failed: &[HostFailure]) -> Option<miette::Report> {
    if failed.is_empty() {
        return None;
    }
    let names: Vec<&str> = failed.iter().map(|f| f.host.as_str()).collect();
    Some(miette::miette!(
        code = "hactl::plan::hosts_unobserved",
        help = "each host's reason is in the plan (`failed_hosts`); the plan of the others is shown, but nothing can be applied from it until every host answers",
        "{} host(s) could not be observed: {}",
        names.len(),
        names.join(", ")
    ))
}

impl HostFailure {
    /// `error` as a line a log and a JSON reader can take: ssh's stderr ends its lines with
    /// `\r\n` and may carry other control characters; only newlines and tabs are kept.
    pub fn new(host: impl Into<String>, error: impl std::fmt::Display) -> HostFailure {
        let error = error
            .to_string()
            .chars()
            .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
            .collect::<String>()
            .trim_end()
            .to_string();
        HostFailure {
            host: host.into(),
            error,
        }
    }
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub stack: String,
    pub summary: Summary,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_hosts: Vec<HostFailure>,
    /// Narrowed by `--target`/`--hosts`: not everything the stack asks for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl Plan {
    /// Builds a plan and its summary; `noop` is the number of things checked and found right.
    pub fn new(
        stack: &str,
        changes: Vec<Change>,
        noop: usize,
        failed_hosts: Vec<HostFailure>,
    ) -> Plan {
        let mut summary = Summary {
            noop,
            ..Summary::default()
        };
        for c in &changes {
            match c.action {
                Action::Create | Action::Start => summary.create += 1,
                Action::Update | Action::Reload => summary.update += 1,
                Action::Delete | Action::Stop => summary.delete += 1,
                Action::Replace => {
                    summary.create += 1;
                    summary.delete += 1;
                }
            }
        }
        Plan {
            stack: stack.to_string(),
            summary,
            changes,
            failed_hosts,
            partial: false,
        }
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The changes on one host, in plan order.
    pub fn for_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Change> + 'a {
        self.changes
            .iter()
            .filter(move |c| c.addr.host() == Some(host))
    }

    /// The cloud resource changes, in plan order.
    pub fn resources(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.addr.kind() == Kind::Resource)
    }
}

/// `sha256:` + the first 12 hex digits: short enough to read, long enough to tell apart.
pub fn short_digest(sha256_hex: &str) -> String {
    format!("sha256:{}", &sha256_hex[..sha256_hex.len().min(12)])
}

/// Full lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The key that turns the digest of a file nobody but root may read into a keyed hash for
/// plans (`hmac:` + 12 hex digits of HMAC-SHA256, RFC 2104, over the file's SHA-256).
///
/// A plain SHA-256 prefix of a file holding an 8-character `auth_pass` lets whoever reads a
/// CI log guess the secret offline; without the key the keyed hash tells them nothing, yet two
/// plans with the same key still show whether the content changed. One random key per stack,
/// kept in the stack's state (see `crate::state::digest_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKey([u8; 32]);

impl DigestKey {
    /// A fresh random key.
    pub fn random() -> DigestKey {
        DigestKey(rand::random())
    }

    /// The key from its 64 hex digits, as the state keeps it.
    pub fn from_hex(s: &str) -> Option<DigestKey> {
        let bytes = hex::decode(s).ok()?;
        Some(DigestKey(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// HMAC-SHA256 (RFC 2104) of `value` under a key derived from this one for `purpose`
    /// (HMAC-SHA256(key, `purpose`), so the plan digests and each other use never share a
    /// key): 64 lowercase hex digits. What an RDS instance's `hactl:password-hmac` tag holds
    /// (`provider::aws::kinds::db_instance::password_hmac`).
    pub fn mac(&self, purpose: &str, value: &[u8]) -> String {
        use hmac::Mac;
        type H = hmac::Hmac<sha2::Sha256>;
        let derived = match H::new_from_slice(&self.0) {
            Ok(mut m) => {
                m.update(purpose.as_bytes());
                m.finalize().into_bytes()
            }
            Err(_) => return String::new(),
        };
        match H::new_from_slice(&derived) {
            Ok(mut m) => {
                m.update(value);
                hex::encode(m.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// `hmac:` + the first 12 hex digits of HMAC-SHA256(key, `sha256_hex`).
    pub fn show(&self, sha256_hex: &str) -> String {
        use hmac::Mac;
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0) else {
            return "hmac:?".into();
        };
        mac.update(sha256_hex.as_bytes());
        let tag = hex::encode(mac.finalize().into_bytes());
        format!("hmac:{}", &tag[..12])
    }
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn secret_digests_are_keyed_not_guessable_offline() {
        let k1 = DigestKey::from_hex(&"11".repeat(32)).expect("64 hex digits");
        let k2 = DigestKey::from_hex(&"22".repeat(32)).expect("64 hex digits");
        let sha = sha256_hex(b"auth_pass hunter22\n");
        let shown = k1.show(&sha);
        assert!(shown.starts_with("hmac:") && shown.len() == 17, "{shown}");
        // no part of the plain digest is shown, and another key gives another hash
        assert!(!shown.contains(&sha[..12]));
        assert_ne!(shown, k2.show(&sha));
        // the same key and content give the same hash, so plans stay comparable
        assert_eq!(shown, k1.show(&sha));
        assert_eq!(
            DigestKey::from_hex(&k1.to_hex()).map(|k| k.show(&sha)),
            Some(shown)
        );
        assert!(DigestKey::from_hex("abc").is_none());
        assert_eq!(format!("{k1:?}"), "DigestKey(..)");
    }
}

#[cfg(test)]
mod host_failure_tests {
    use super::HostFailure;

    /// ssh's `\r\n` and other control characters never reach a plan's text or JSON.
    #[test]
    fn a_host_failure_is_clean_text() {
        let f = HostFailure::new(
            "web1",
            "ssh: connect to host 198.51.100.11 port 22: Connection timed out\r\n\u{1b}[31mx\r\n",
        );
        assert_eq!(
            f.error,
            "ssh: connect to host 198.51.100.11 port 22: Connection timed out\n[31mx"
        );
        assert_eq!(f.host, "web1");
    }
}
