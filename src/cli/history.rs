//! `hactl deploy history`: the deploy history kept on the app hosts (`deploy::exec`), as a
//! table or one JSON document.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::deploy::command;
use crate::deploy::exec::Session;
use crate::{stack, view, ExitStatus};

/// `hactl deploy`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum DeploySub {
    /// The deploy history kept on the hosts: version, time, who, outcome.
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", env = "HACTL_STACK", value_name = "STACK")]
    pub file: PathBuf,
    /// One JSON document on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(h: HistoryArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&h.file)?;
    command::check_stack(&stack)?;
    // On AWS the hosts are the instances in the state.
    let stack = crate::deploy::balancer::prepare(stack, true).await?.stack;
    let session = Session::open(&stack).await?;
    let r = session.history().await;
    session.close().await;
    let entries = r?;
    if h.json {
        view::json::put_named("history", &entries)?;
    } else {
        view::print_out(&view::deploy::history(&entries));
    }
    Ok(ExitStatus::Success)
}
