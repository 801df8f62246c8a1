//! The load probe's flags, shared by `deploy` and `rollback` (flattened into their arguments):
//! where it sends, how fast, how long, and how it reaches an HTTPS endpoint.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::deploy::command::ProbeSettings;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Send steady traffic to the public endpoint during the deploy (default URL: the VIP's
    /// haproxy or nginx port, or an AWS stack's load balancer) and report failed requests and
    /// p50/p99 latency.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub probe: Option<String>,
    /// Probe requests per second.
    #[arg(long, default_value_t = 20.0, value_name = "R")]
    pub probe_rate: f64,
    /// Failed probe requests tolerated; over it the deploy rolls back (default: not gating).
    #[arg(long, value_name = "N")]
    pub probe_budget: Option<u64>,
    /// Trust only the CA certificates in this PEM file for an `https://` probe URL (default:
    /// the system's roots).
    #[arg(long, value_name = "FILE.pem")]
    pub probe_ca: Option<PathBuf>,
    /// Answer this name with this address instead of asking DNS (`NAME=ADDR[:PORT]`, like
    /// curl's `--resolve`; without a port, the URL's port). Repeatable.
    #[arg(long, value_name = "NAME=ADDR")]
    pub probe_resolve: Vec<String>,
    /// Reuse the probe's connections (off: each request on its own connection, so a
    /// connection the rollout cuts is seen).
    #[arg(long)]
    pub probe_keep_alive: bool,
    /// Keep probing this long after the last batch.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "5s")]
    pub probe_soak: Duration,
    /// Hard limit on the probe's duration, whatever the deploy does.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "10m")]
    pub probe_max: Duration,
}

impl ProbeArgs {
    pub fn settings(&self) -> ProbeSettings {
        ProbeSettings {
            url: self.probe.clone(),
            rate: self.probe_rate,
            max: self.probe_max,
            keep_alive: self.probe_keep_alive,
            resolve: self.probe_resolve.clone(),
            ca: self.probe_ca.clone(),
        }
    }
}
