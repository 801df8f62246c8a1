//! `--no-wait` and `--wait-timeout`: the arguments of the wait until a stack serves, which
//! `up`, `heal` and `deploy` make (`engine::serving` makes it; `view::wait` prints it).

use std::time::Duration;

use clap::Args;

pub(crate) use crate::engine::serving::{finish, until_serving, Serving, TargetWait};

/// `--no-wait` and `--wait-timeout`, shared by `up`, `heal` and `deploy`.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Return as soon as the changes are applied, without waiting for the stack to serve
    /// (one VIP holder, every check passing, the app healthy behind nginx, AWS targets
    /// healthy).
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
