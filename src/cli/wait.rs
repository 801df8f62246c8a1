//! `--no-wait` and `--wait-timeout`: the arguments of the wait until a stack serves, which
//! `up`, `heal` and `deploy` make (`engine::serving` makes it; `view::wait` prints it).

use std::time::Duration;

use clap::Args;

use crate::engine::serving;
pub(crate) use crate::engine::serving::{Serving, TargetWait};
use crate::stack::Stack;
use crate::{view, ExitStatus};

/// `--no-wait` and `--wait-timeout`, shared by `up`, `heal` and `deploy`.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return as soon as the changes are applied, without waiting for the stack to serve
    /// (one VIP holder, every check passing, the app healthy behind nginx, redis replicas in
    /// sync and sentinels meshed, AWS targets healthy).
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the stack to serve (`90s`, `5m`); past it the command fails, naming
    /// what is not ready, with exit code 3.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = crate::stack::duration::arg)]
    pub wait_timeout: Duration,
}

impl WaitArgs {
    /// The wait to make, or `None` with `--no-wait`.
    pub fn wait(&self) -> Option<Duration> {
        (!self.no_wait).then_some(self.wait_timeout)
    }
}

/// Waits until the stack serves (`engine::serving`), reporting through the view's hooks.
pub(crate) async fn until_serving(
    stack: &Stack,
    timeout: Duration,
    targets: Option<&TargetWait>,
) -> Serving {
    serving::until_serving(stack, timeout, targets, &*view::hooks()).await
}

/// The exit status after a wait; a stack that does not serve gets its diagnostic printed
/// beside the command's own outcome (already printed, still valid).
pub(crate) fn finish(stack: &Stack, timeout: Duration, s: &Serving) -> ExitStatus {
    match serving::not_serving(stack, timeout, s) {
        None => ExitStatus::Success,
        Some(e) => {
            view::print_error(&miette::Report::new(e));
            ExitStatus::NotServing
        }
    }
}

/// After a command's changes: when they went through (`ok`) and a wait is asked for, waits
/// until the stack serves; the wait's outcome and the exit status (failure when not `ok`).
pub(crate) async fn serve(
    stack: &Stack,
    wait: Option<Duration>,
    ok: bool,
) -> (Option<Serving>, ExitStatus) {
    match wait.filter(|_| ok) {
        _ if !ok => (None, ExitStatus::Failure),
        None => (None, ExitStatus::Success),
        Some(t) => {
            let s = until_serving(stack, t, None).await;
            let status = finish(stack, t, &s);
            (Some(s), status)
        }
    }
}
