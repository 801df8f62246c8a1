//! What `plan`, `up`, `down` and `heal` share, for every provider: the run options (lock wait,
//! parallelism, targets) → engine settings, and the apply → report → wait that follows an
//! approved plan. The engine (`engine::run`) does the work; `view` shows it.

use std::time::Duration;

use clap::Args;

use crate::engine::hooks::Hooks;
use crate::engine::run::{Command, Options, Session};
use crate::engine::target::Targets;
use crate::plan::Addr;
use crate::{view, ExitStatus};

/// Options of runs that take the state lock and talk to AWS.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// How long to wait for another run's state lock (e.g. `30s`, `5m`); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = crate::stack::duration::arg, default_value = "0s")]
    pub lock_wait: Duration,
    /// How many AWS resources are created or deleted at once within a wave.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Allow a plan that deletes or replaces a database or file system (`down` included).
    #[arg(long)]
    pub allow_data_loss: bool,
}

/// Narrowing a run (the result is partial: a warning says so).
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Only this address and what it depends on (repeatable): `aws_instance.web[0]`,
    /// `web1:/etc/nginx/nginx.conf`, `web1:service/nginx`.
    #[arg(long = "target", value_name = "ADDR")]
    pub target: Vec<Addr>,
    /// Only these hosts (comma-separated names).
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

impl RunArgs {
    /// The engine's settings for a run.
    pub fn options(&self, t: &TargetArgs, provision_only: bool) -> Options {
        Options {
            lock_wait: self.lock_wait,
            parallelism: self.parallelism,
            provision_only,
            targets: Targets {
                addrs: t.target.clone(),
                hosts: t.hosts.clone(),
            },
            save: false,
            allow_data_loss: self.allow_data_loss,
        }
    }
}

/// Shows the plan, asks (unless `approved`), applies, reports, then (`wait`, when hosts were
/// configured) waits until the stack serves. The lock is released before the wait.
pub async fn apply_and_report(
    mut s: Session,
    json: bool,
    full_diff: bool,
    approved: bool,
    wait: Option<Duration>,
    hooks: &dyn Hooks,
) -> miette::Result<ExitStatus> {
    if !json {
        view::print_out(&view::run::render_planned(&s, full_diff));
    }
    if let Err(e) = view::run::approve(&s, approved) {
        s.close().await;
        return Err(e);
    }
    let r = s.apply(hooks).await;
    let (plan, not_found, command) = (s.plan.clone(), s.not_found.clone(), s.command);
    let not_repairs = s.not_repairs;
    s.close().await;
    let mut applied = r?;
    if !json {
        let outputs = super::outputs::render_human(&applied.outputs);
        view::print_out(&view::run::render_applied(
            &plan, &applied, command, &not_found, &outputs, full_diff,
        ));
    }
    let wait = wait.filter(|_| !applied.failed() && command != Command::Down);
    let serving = match (wait, &applied.configured) {
        (Some(t), Some(stack)) => {
            let targets = match applied.target_group.clone() {
                Some(arn) => Some(super::wait::TargetWait::of(stack, arn).await),
                None => None,
            };
            Some((
                t,
                super::wait::until_serving(stack, t, targets.as_ref()).await,
            ))
        }
        _ => None,
    };
    if json {
        view::print_json(&view::run::Document {
            plan: &plan,
            applied: &applied,
            not_found: &not_found,
            not_repairs,
            serving: serving.as_ref().map(|s| &s.1),
        })?;
    }
    if let Some(e) = applied.error.take() {
        return Err(e);
    }
    Ok(match (applied.failed(), serving, &applied.configured) {
        (true, ..) => ExitStatus::Failure,
        (false, Some((t, s)), Some(stack)) => super::wait::finish(stack, t, &s),
        _ => ExitStatus::Success,
    })
}

/// One `heal` round of a cloud stack: the repairs, then the instances configured as `up` does;
/// `--dry-run` changes nothing (exit 1 when repairs are pending: not a healthy stack).
pub async fn heal(
    stack: &crate::stack::Stack,
    opts: &Options,
    json: bool,
    dry_run: bool,
    wait: Option<Duration>,
) -> miette::Result<ExitStatus> {
    let hooks = view::hooks();
    let s = crate::engine::run::open(stack, Command::Heal, opts, &*hooks).await?;
    if !dry_run {
        return apply_and_report(s, json, true, true, wait, &*hooks).await;
    }
    let pending = s.plan.resources().next().is_some();
    let shown = view::run::show_heal_dry_run(&s, json, pending);
    s.close().await;
    shown?;
    Ok(if pending {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
