//! `aws_db_instance`: an RDS instance. It holds data: a delete or replacement is refused unless
//! allowed, deletion protection is on, and a final snapshot is taken ([`crate::provider::aws::diff::destroys_data`]).
//! `creating → backing-up → available` takes 10–40 minutes (Multi-AZ the longest); `failed`
//! and `incompatible-*` are final ([`crate::provider::aws::wait::db_available`]). The engine
//! version is a prefix RDS may move up by itself.
//!
//! The master password: RDS never shows it back, so hactl keeps a keyed hash of the one it
//! last gave in the instance's [`TAG_PASSWORD_HMAC`] tag ([`password_hmac`]) and compares
//! that as the `master_password` attribute: a password rotated in the vault (`hactl secrets
//! set`) plans an in-place update (ModifyDBInstance `MasterUserPassword`, applied
//! immediately, then the tag rewritten), shown without the secret ([`Kind::masked`]). An
//! instance without the tag (made before hactl kept it) plans that update once.
//!
//! The key is the stack's digest key (`crate::state::digest_key`, kept in the state, the same
//! key that hides secret files' digests in plans), derived for this purpose. Not a key of the
//! vault's: each person and CI opens the vault with their own age identity, so a key derived
//! from an identity would differ between them and every run would re-set the password; and a
//! key that `up` wrote into the vault would be lost by every CI checkout that does not commit
//! it back. The state is what every run of the stack shares. Without the key the tag tells
//! nothing (an unkeyed hash of an 8-character password can be guessed offline); with a new
//! key (a state rebuilt by `state refresh`) the password is set once more, to the same value.

use std::time::Duration;

use super::{get, parse, Kind, MissingAttr};
use crate::plan::DigestKey;
use crate::provider::aws::model::{Resource, TAG_PASSWORD_HMAC};
use crate::provider::aws::wait::{Poll, Timeouts};

pub struct DbInstance;

impl Kind for DbInstance {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "engine" | "db_name" | "identifier")
    }

    /// `engine_version`: `16.3` is satisfied by the `16.4` RDS upgraded to by itself (auto
    /// minor version upgrade), never by a lower or another major version.
    fn satisfies(&self, key: &str, want: &str, have: &str) -> bool {
        want == have || (key == "engine_version" && version_satisfies(want, have))
    }

    /// `master_password` is a keyed hash: the plan says that it changed (or that the tag was
    /// missing), never the hash.
    fn masked(&self, key: &str, have: Option<&str>) -> Option<(String, String)> {
        (key == MASTER_PASSWORD).then(|| match have {
            Some(_) => ("(sensitive)".into(), "(changed in the vault)".into()),
            None => (
                format!("(not recorded: no `{TAG_PASSWORD_HMAC}` tag, the instance predates it)"),
                "(set from the vault)".into(),
            ),
        })
    }

    fn holds_data(&self) -> bool {
        true
    }

    fn ready(&self, status: &str) -> Poll {
        crate::provider::aws::wait::db_available(status)
    }

    fn timeout(&self, t: &Timeouts) -> Option<Duration> {
        Some(t.database)
    }
}

/// The attribute that stands for the master password: [`password_hmac`] on the desired side,
/// the [`TAG_PASSWORD_HMAC`] tag on the observed side.
pub const MASTER_PASSWORD: &str = "master_password";

/// The keyed hash of the master password `password` of the database of stack `stack`, as the
/// [`TAG_PASSWORD_HMAC`] tag keeps it: HMAC-SHA256 (RFC 2104) under `key` derived for this
/// purpose ([`DigestKey::mac`]), over the stack name and the password; 64 hex digits (RDS tag
/// values take 256 characters).
pub fn password_hmac(key: &DigestKey, stack: &str, password: &str) -> String {
    key.mac(
        "hactl rds master password v1",
        format!("{stack}\0{password}").as_bytes(),
    )
}

/// Whether the running `have` satisfies the configured `want` version: a prefix of it, or the
/// same major version with the rest moved up (terraform-provider-aws compares the same way,
/// `internal/service/rds/instance.go`, `compareActualEngineVersion`).
pub fn version_satisfies(want: &str, have: &str) -> bool {
    if want == have {
        return true;
    }
    let parts = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    let (Some(w), Some(h)) = (parts(want), parts(have)) else {
        return have.starts_with(&format!("{want}."));
    };
    w.first() == h.first() && h.len() >= w.len() && h[..w.len()] >= w[..]
}

/// The database as the create call needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub identifier: String,
    pub engine: String,
    pub engine_version: Option<String>,
    pub instance_class: String,
    /// GiB.
    pub storage_gb: i32,
    pub multi_az: bool,
    pub db_name: String,
    pub port: i32,
    pub deletion_protection: bool,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            identifier: get(r, "identifier")?.to_string(),
            engine: get(r, "engine")?.to_string(),
            engine_version: r.get("engine_version").map(str::to_string),
            instance_class: get(r, "instance_class")?.to_string(),
            storage_gb: parse(r, "storage_gb")?,
            multi_az: parse(r, "multi_az")?,
            db_name: get(r, "db_name")?.to_string(),
            port: parse(r, "port")?,
            deletion_protection: parse(r, "deletion_protection")?,
        })
    }
}
