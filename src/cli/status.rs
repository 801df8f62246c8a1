//! `hactl status -f STACK [--json]`: per host reachability, VRRP state, services, VIP holder.

use clap::Args;

use super::StackArgs;
use crate::ExitStatus;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub async fn run(_args: StatusArgs) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
