//! `hactl drill -f STACK --scenario S [--json]`: a failover drill that measures itself.
//!
//! It finds the VIP holder, starts a bounded HTTP probe against the VIP (at most `--rate`
//! requests a second for at most `--max-time`; only loopback or lab addresses that route via
//! the lab bridge), injects the fault on the holder, measures the outage and the time until
//! another host answers, restores, measures the failback, and ends by asking every host
//! whether it holds the VIP: exactly one must. The figures are compared with what VRRP
//! promises for the stack's advert_int, check interval/fall and priorities
//! ([`crate::ha::timing`]).
//!
//! `keepalived-kill` is the case that must not be passed over: keepalived dies by SIGKILL and
//! leaves the address on the host, the backup takes over after Master_Down_Interval, and two
//! hosts hold the VIP. The drill reports that split brain, leaves it for `hactl up` to repair
//! (which starts keepalived again, so the old master rejoins the election and the loser
//! releases the address), and exits non-zero.

use clap::Args;

use super::StackArgs;
use crate::engine::drill::{self, Settings};
use crate::ha::timing::Scenario;
use crate::{view, ExitStatus};

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The fault to inject on the current VIP holder.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// service-stop: the service to stop (default: nginx, else haproxy).
    #[arg(long)]
    pub service: Option<String>,
    /// Probe requests per second (1–50).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rate: u32,
    /// Longest the probe runs, in seconds (1–30).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub max_time: u64,
}

pub async fn run(args: DrillArgs) -> miette::Result<ExitStatus> {
    let settings = Settings {
        file: args.stack.file.clone(),
        scenario: args.scenario,
        service: args.service.clone(),
        rate: args.rate,
        max_time: args.max_time,
    };
    let report = drill::run(&settings).await?;
    if args.stack.json {
        view::print_json(&report)?;
    } else {
        view::print_out(&view::drill::render(&report));
    }
    // Exactly one holder after the restore, or the drill failed.
    Ok(if report.split_brain || report.holders_after.len() != 1 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
