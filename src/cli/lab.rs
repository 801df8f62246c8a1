//! `hactl lab up|status|down`: local lab hosts.

use clap::Subcommand;

use crate::ExitStatus;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create (or complete) the lab with N hosts.
    Up {
        #[arg(long, default_value_t = 3)]
        hosts: usize,
    },
    /// Show the lab's hosts and processes.
    Status,
    /// Remove every host, link, route, mount and process of the lab.
    Down,
}

pub async fn run(_cmd: LabCommand) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
