//! hactl: one declarative stack file to a highly available web stack.
//!
//! `main` parses arguments, runs the command and turns its outcome into the process exit
//! code. It is the one place that prints errors: every command returns a `miette` report or an
//! [`ExitStatus`], never exits by itself.

mod cli;
mod deploy;
mod engine;
mod ha;
#[cfg(test)]
mod imports;
mod lab;
mod onhost;
mod plan;
mod provider;
mod render;
mod services;
mod stack;
mod state;
mod vault;
mod view;

use std::process::ExitCode;

use clap::Parser;

/// The process exit codes, stable for scripts and CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything went as asked (and, with `--detailed-exitcode`, nothing to change).
    Success,
    /// An error: invalid input, a failed host, a refused action.
    Failure,
    /// `--detailed-exitcode` only: the plan has changes.
    Changes,
    /// `up`, `heal`, `deploy`: the changes were applied, but the stack did not serve within
    /// `--wait-timeout` (no single VIP holder, a check failing, the app unhealthy behind
    /// nginx, AWS targets not healthy).
    NotServing,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Changes => ExitCode::from(2),
            ExitStatus::NotServing => ExitCode::from(3),
        }
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    view::init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(status) => status.into(),
        Err(report) => {
            view::print_error(&report);
            ExitCode::from(1)
        }
    }
}
