//! `hactl deploy`, `hactl rollback` and `hactl deploy history`: args → settings → the rollout
//! (`crate::deploy`: `command` for what is decided around it, `exec` for the hosts) → view.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::deploy::balancer;
use crate::deploy::command;
use crate::deploy::exec::{self, Progress, Session};
use crate::deploy::rollout;
use crate::{stack, view, ExitStatus};

/// `hactl deploy`: a rolling deploy, or `hactl deploy history`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeployCommand {
    #[command(subcommand)]
    pub sub: Option<super::history::DeploySub>,
    #[command(flatten)]
    pub args: DeployArgs,
}

/// Settings shared by `deploy` and `rollback`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", env = "HACTL_STACK", value_name = "STACK")]
    pub file: Option<PathBuf>,
    /// One JSON document on stdout instead of human output (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Hosts updated at once (at least 1); the first batch is the canary.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = super::probe_args::batch)]
    pub batch: usize,
    /// Go ahead without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Hosts that may fail (after the canary) before everything is rolled back.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_failed_hosts: usize,
    /// Wait this long for another deploy's lock (`30s`, `5m`) instead of failing at once.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "0s")]
    pub lock_wait: Duration,
    #[command(flatten)]
    pub probe: super::probe_args::ProbeArgs,
    /// Stop each host's running version before starting the new one (one copy of the app at
    /// a time, for instances without room for two). AWS stacks only: after the target group
    /// has drained the host.
    #[arg(long)]
    pub stop_first: bool,
    /// Test-only: leave each batch registered in the AWS target group while it is swapped.
    #[arg(long, hide = true)]
    pub no_deregister: bool,
    #[command(flatten)]
    pub wait: super::wait::WaitArgs,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Deploy this registry reference (pulled by compose on each host).
    #[arg(long, value_name = "REF", conflicts_with = "archive")]
    pub image: Option<String>,
    /// Deploy this image archive (docker-archive), copied over SSH and loaded where missing.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn run_deploy(c: DeployCommand) -> miette::Result<ExitStatus> {
    match c.sub {
        Some(super::history::DeploySub::History(h)) => super::history::run(h).await,
        None => rollout(&c.args.run, "deploy", Some(&c.args)).await,
    }
}

pub async fn run_rollback(a: RunArgs) -> miette::Result<ExitStatus> {
    rollout(&a, "rollback", None).await
}

/// `deploy` (`d`'s image or archive, else the stack's) or `rollback` (the last good version),
/// under the stack's lock (as `up` takes it) besides the deploy lock on the first app host.
async fn rollout(
    a: &RunArgs,
    op: &'static str,
    d: Option<&DeployArgs>,
) -> miette::Result<ExitStatus> {
    let stack = stack::load(&command::stack_file(a.file.as_deref())?)?;
    command::check_stack(&stack)?;
    // An AWS stack's instances become the hosts, its target group where batches leave rotation.
    let p = balancer::prepare(stack, !a.no_deregister).await?;
    let (stack, balancer, endpoint) = (p.stack, p.target_group, p.endpoint);
    let target = d
        .map(|d| command::target(&stack, d.image.as_deref(), d.archive.as_deref()))
        .transpose()?;
    // Every flag is checked here, before the lock and before any host is connected: bad input
    // costs no SSH round and leaves nothing behind.
    let opts = a.settings().options(op, &stack, endpoint, balancer)?;
    let guard = super::lock(&stack, op, a.lock_wait).await?;
    let r = async {
        let session = Session::open(&stack).await?;
        let r = async {
            let target = command::target_or_rollback(&session, target).await?;
            if !a.auto_approve {
                view::confirm(&view::deploy::question(
                    op, &target, &session, &stack, &opts,
                ))?;
            }
            let progress = Progress::new(false, view::deploy::steps());
            Ok::<_, miette::Report>(exec::deploy(&session, &target, &opts, &progress).await?)
        }
        .await;
        session.close().await;
        r
    }
    .await;
    guard.release().await;
    // The outcome; a deploy that went through then waits until the stack serves, and with
    // `--json` the report carries the wait's outcome as `serving`.
    let r = r?;
    if !a.json {
        view::print_out(&view::deploy::human(&r));
    }
    let deployed = matches!(r.outcome, rollout::Outcome::Deployed);
    let (serving, status) = super::wait::serve(&stack, a.wait.wait(), deployed).await;
    if a.json {
        view::print_json(&view::deploy::document(&r, serving.as_ref())?)?;
    }
    Ok(status)
}

impl RunArgs {
    /// The rollout's settings (`deploy::command::Settings`).
    fn settings(&self) -> command::Settings {
        command::Settings {
            batch: self.batch,
            max_failed_hosts: self.max_failed_hosts,
            lock_wait: self.lock_wait,
            probe: self.probe.settings(),
            probe_budget: self.probe.probe_budget,
            probe_soak: self.probe.probe_soak,
            stop_first: self.stop_first,
        }
    }
}
