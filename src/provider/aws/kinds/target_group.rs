//! `aws_lb_target_group`: replaced create-before-destroy (its AWS name carries the protocol
//! and port that force the replacement, so old and new coexist while the listeners are
//! repointed; DeleteTargetGroup answers `ResourceInUse` while a listener forwards to it).

use super::{get, parse, Kind, MissingAttr};
use crate::provider::aws::model::Resource;

pub struct TargetGroup;

impl Kind for TargetGroup {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "port" | "protocol" | "vpc" | "name")
    }

    fn create_before_destroy(&self) -> bool {
        true
    }
}

/// The group as CreateTargetGroup needs it (seconds for the durations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub name: String,
    pub protocol: String,
    pub port: i32,
    pub health_check_path: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    pub matcher: Option<String>,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            name: get(r, "name")?.to_string(),
            protocol: get(r, "protocol")?.to_string(),
            port: parse(r, "port")?,
            health_check_path: get(r, "health_check.path")?.to_string(),
            interval: parse(r, "health_check.interval")?,
            timeout: parse(r, "health_check.timeout")?,
            healthy_threshold: parse(r, "health_check.healthy_threshold")?,
            unhealthy_threshold: parse(r, "health_check.unhealthy_threshold")?,
            matcher: r.get("health_check.matcher").map(str::to_string),
        })
    }
}
