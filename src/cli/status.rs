//! `hactl status -f STACK [--json]`: per host reachability, VRRP state, base and effective
//! priority, check results, services and whether it holds the VIP. Exits non-zero on split
//! brain (two holders), on no holder, or when a host cannot be reached.
//!
//! [`collect`] is the one reader of a running stack: `up`, `heal` and `deploy` wait on it
//! (`cli/wait.rs`) until the stack serves, so what they wait for is exactly what `status`
//! shows.

use clap::Args;

use super::StackArgs;
use crate::engine::status::collect;
use crate::{stack, view, ExitStatus};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub async fn run(args: StatusArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&args.stack.file)?;
    let status = collect(&stack).await;
    if args.stack.json {
        view::print_json(&status)?;
    } else {
        view::print_out(&view::status::render(&status));
    }
    let unreachable = status.hosts.iter().any(|h| !h.reachable);
    let bad_vip = status.vip.as_ref().is_some_and(|v| v.holders.len() != 1);
    Ok(if unreachable || bad_vip {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
