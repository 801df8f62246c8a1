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

/// What kind of thing a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Service,
    Resource,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Stable address: `host1:/etc/nginx/nginx.conf`, `host1:service/nginx`, `aws_vpc.main`.
    pub addr: String,
    /// The host it happens on (None for cloud resources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub kind: Kind,
    pub action: Action,
    /// Why, in a few words: `content changed`, `nginx.conf changed`, `not running`.
    pub reason: String,
    /// Digest (files: `sha256:…`) or summary of the current value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Digest or summary of the wanted value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Unified diff of a text file; never present for sensitive files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The content includes a secret: shown only as digests.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
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

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub stack: String,
    pub summary: Summary,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_hosts: Vec<HostFailure>,
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
        }
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The changes on one host, in plan order.
    pub fn for_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Change> + 'a {
        self.changes
            .iter()
            .filter(move |c| c.host.as_deref() == Some(host))
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
