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
    /// Probe requests per second: more than 0, at most 1000.
    #[arg(long, default_value_t = 20.0, value_name = "R", value_parser = rate)]
    pub probe_rate: f64,
    /// Failed probe requests tolerated; over it the deploy rolls back (default: not gating).
    #[arg(long, value_name = "N")]
    pub probe_budget: Option<u64>,
    /// Trust only the CA certificates in this PEM file for an `https://` probe URL (default:
    /// the system's roots).
    #[arg(long, value_name = "FILE.pem", requires = "probe")]
    pub probe_ca: Option<PathBuf>,
    /// Answer this name with this address instead of asking DNS (`NAME=ADDR[:PORT]`, like
    /// curl's `--resolve`; without a port, the URL's port). Repeatable.
    #[arg(long, value_name = "NAME=ADDR", requires = "probe")]
    pub probe_resolve: Vec<String>,
    /// Reuse the probe's connections (off: each request on its own connection, so a
    /// connection the rollout cuts is seen).
    #[arg(long)]
    pub probe_keep_alive: bool,
    /// Keep probing this long after the last batch.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "5s")]
    pub probe_soak: Duration,
    /// Hard limit on the probe's duration, whatever the deploy does (more than 0).
    #[arg(long, value_name = "D", value_parser = positive_duration, default_value = "10m")]
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

/// The most requests a second the probe sends: it is a health probe, not a load generator.
pub const MAX_RATE: f64 = 1000.0;

/// `--probe-rate`: a finite number of requests a second in (0, [`MAX_RATE`]]. Refused, not
/// clamped: a probe far slower or faster than asked would judge the deploy on other traffic.
fn rate(text: &str) -> Result<f64, String> {
    let r: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number (requests a second)"))?;
    if !r.is_finite() || r <= 0.0 || r > MAX_RATE {
        return Err(format!(
            "`{text}`: the rate must be more than 0 and at most {MAX_RATE} requests a second"
        ));
    }
    Ok(r)
}

/// `--probe-max`: a duration (the stack file's grammar) longer than zero: a probe allowed no
/// time would send nothing and report a clean deploy.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = crate::stack::duration::arg(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("`{text}`: must be longer than 0"));
    }
    Ok(d)
}

/// `--batch`: hosts at a time, at least 1 (0 would update nothing and call it done).
pub fn batch(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of hosts"))?;
    if n == 0 {
        return Err("`0`: at least 1 host per batch".into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rates outside (0, 1000] and non-numbers are refused at parse time, not clamped.
    #[test]
    fn probe_rate_must_be_a_finite_number_up_to_1000() {
        for bad in ["nan", "NaN", "inf", "0", "-1", "1000.5", "fast"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert_eq!(rate("0.5"), Ok(0.5));
        assert_eq!(rate("1000"), Ok(1000.0));
    }

    /// `--probe-max 0s` and `--batch 0` are refused; the smallest useful values pass.
    #[test]
    fn probe_max_and_batch_must_be_more_than_zero() {
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("0").is_err());
        assert_eq!(positive_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(batch("0").is_err());
        assert!(batch("-1").is_err());
        assert_eq!(batch("1"), Ok(1));
    }
}
