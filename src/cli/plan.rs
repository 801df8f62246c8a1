//! `hactl plan`, `hactl up` and `hactl down`: load → observe → diff → (apply) → report.

use clap::Args;

use super::StackArgs;
use crate::ExitStatus;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Exit 2 when there are changes, 0 when none, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Remove without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

pub async fn run_plan(_a: PlanArgs) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
pub async fn run_up(_a: UpArgs) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
pub async fn run_down(_a: DownArgs) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
