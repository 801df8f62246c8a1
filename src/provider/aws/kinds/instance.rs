//! `aws_instance`: an EC2 instance. Replaced create-before-destroy, one at a time (launched,
//! registered and healthy before the old one is deregistered, drained and terminated);
//! `pending → running`, with `shutting-down`/`terminated`/`stopping`/`stopped` final
//! ([`crate::provider::aws::wait::instance_running`]).

use std::time::Duration;

use super::{get, parse, Kind, MissingAttr};
use crate::provider::aws::model::Resource;
use crate::provider::aws::wait::{Poll, Timeouts};

pub struct Instance;

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
        crate::provider::aws::wait::instance_running(status)
    }

    fn timeout(&self, t: &Timeouts) -> Option<Duration> {
        Some(t.instance)
    }
}

/// The instance as RunInstances needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
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
            ami: get(r, "ami")?.to_string(),
            instance_type: get(r, "instance_type")?.to_string(),
            key_name: r.get("key_name").map(str::to_string),
            http_tokens: get(r, "metadata.http_tokens")?.to_string(),
            hop_limit: parse(r, "metadata.hop_limit")?,
        })
    }
}
