//! `hactl render -f STACK [--host H] [--out DIR]`: writes (or lists) what `up` would push.

use std::path::PathBuf;

use clap::Args;

use super::StackArgs;
use crate::ExitStatus;

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Write the files under DIR/<host>/<path> instead of listing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(_args: RenderArgs) -> miette::Result<ExitStatus> {
    Ok(ExitStatus::Success)
}
