//! `hactl lab balancer`: the stand-in ALB/NLB for an AWS stack on moto whose instances are lab
//! hosts. Arguments here, the work in `crate::lab::balancer`, one JSON line per event through
//! `crate::view`.

use clap::Args;

use crate::{lab, view, ExitStatus};

/// `hactl lab balancer`.
#[derive(Debug, Args)]
pub struct BalancerArgs {
    /// The target group's ARN (`hactl state show` or the state file's
    /// `aws_lb_target_group.web`).
    #[arg(long, value_name = "ARN")]
    pub target_group: String,
    /// Where a target really is: `TARGET_ID=ADDRESS:PORT` (a lab host's nginx). Repeatable.
    #[arg(long = "backend", value_name = "ID=ADDR:PORT", required = true)]
    pub backends: Vec<String>,
    /// Listen here (loopback or a lab address; port 0 picks one, printed on the first line).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// The region to read (default: `AWS_REGION`, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// How often the target group is read.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "100ms")]
    pub poll: std::time::Duration,
    /// Stop after this long, whatever happens.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "10m")]
    pub max_time: std::time::Duration,
}

pub async fn run(a: BalancerArgs) -> miette::Result<ExitStatus> {
    let mut backends = std::collections::BTreeMap::new();
    for b in &a.backends {
        let (id, addr) = lab::balancer::parse_backend(b)
            .map_err(|e| miette::miette!(code = "hactl::lab::backend", "bad `--backend`: {e}"))?;
        backends.insert(id, addr);
    }
    let region = a
        .region
        .or_else(|| std::env::var("AWS_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    let cfg = lab::balancer::Config {
        listen: a.listen,
        region,
        target_group_arn: a.target_group,
        backends,
        poll: a.poll,
        max_time: a.max_time,
    };
    lab::balancer::run(cfg, |e| {
        if let Ok(line) = serde_json::to_string(e) {
            view::print_out(&format!("{line}\n"));
        }
    })
    .await?;
    Ok(ExitStatus::Success)
}
