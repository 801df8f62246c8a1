//! `hactl secrets …`: the age vault.

use clap::Subcommand;

use crate::ExitStatus;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// List secret names.
    List,
}

pub async fn run(_cmd: SecretsCommand) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
