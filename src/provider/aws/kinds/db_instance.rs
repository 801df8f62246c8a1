//! `aws_db_instance`: an RDS instance. It holds data: a delete or replacement is refused unless
//! allowed, deletion protection is on, and a final snapshot is taken ([`crate::provider::aws::diff::destroys_data`]).
//! `creating → backing-up → available` takes 10–40 minutes (Multi-AZ the longest); `failed`
//! and `incompatible-*` are final ([`crate::provider::aws::wait::db_available`]). The engine
//! version is a prefix RDS may move up by itself.

use std::time::Duration;

use super::{get, parse, Kind, MissingAttr};
use crate::provider::aws::model::Resource;
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
