//! `hactl plan`, `hactl up` and `hactl down`, for every provider: args → settings → engine
//! (`engine::run`: lock, observe both layers, one plan, walk) → view. The plan is printed
//! before anything changes; applying needs `--auto-approve`, a "yes" at a terminal prompt, or
//! a saved plan (`plan -o FILE`, then `up FILE`, refused when stale). `up` then waits until
//! the stack serves (`cli/wait.rs`) unless `--no-wait`.

use std::path::PathBuf;

use clap::Args;

use super::aws::{apply_and_report, RunArgs, TargetArgs};
use super::StackArgs;
use crate::engine::run::{self, Command};
use crate::engine::saved::Saved;
use crate::{stack, view, ExitStatus};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Exit 2 when there are changes, 0 when none, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan to FILE, for `hactl up FILE` (which refuses it once anything changed).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `provider: aws`: plan the cloud layer only, as `up --provision-only` applies it.
    #[arg(long)]
    pub provision_only: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// A plan saved by `hactl plan -o FILE`: apply exactly it, without asking.
    #[arg(value_name = "PLAN")]
    pub saved: Option<PathBuf>,
    /// The stack file (with a saved plan: the one it was made from, by default).
    #[arg(short = 'f', long = "file", env = "HACTL_STACK", value_name = "STACK")]
    pub file: Option<PathBuf>,
    /// One JSON document on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// `provider: aws`: create and update the AWS resources only, without configuring the
    /// instances over SSH (e.g. they are not reachable from where this runs).
    #[arg(long)]
    pub provision_only: bool,
    #[command(flatten)]
    pub wait: super::wait::WaitArgs,
    /// Show every host's full diffs (default: a change identical on several hosts is shown
    /// once, with the list of hosts, and long diffs are cut).
    #[arg(long)]
    pub diff: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Remove without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

pub async fn run_plan(a: PlanArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    view::print_warnings(&crate::ha::problems(&stack));
    view::print_warnings(&crate::provider::aws::preflight::region_warnings(&stack));
    let hooks = view::hooks();
    let mut opts = a.run.options(&a.target, a.provision_only);
    opts.save = a.out.is_some();
    let s = run::open(&stack, Command::Plan, &opts, &*hooks).await?;
    let saved = a.out.as_ref().map(|out| {
        let mut sv = Saved::new(&stack, &s.basis, &s.plan, &opts.targets);
        sv.provision_only = a.provision_only;
        sv.write(out)
    });
    let (plan, order, refused) = (s.plan.clone(), s.host_order.clone(), s.refusal());
    s.close().await;
    saved.transpose()?;
    if a.stack.json {
        view::print_json(&plan)?;
    } else {
        view::print_out(&view::plan::render_plan(&plan, &order));
        if let Some(out) = &a.out {
            let p = out.display();
            view::print_out(&format!(
                "\nSaved the plan to `{p}`: `hactl up {p}` applies exactly it.\n"
            ));
        }
    }
    refused?;
    if let Some(e) = crate::plan::unobserved(&plan.failed_hosts) {
        return Err(e);
    }
    Ok(if a.detailed_exitcode && plan.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

pub async fn run_up(a: UpArgs) -> miette::Result<ExitStatus> {
    let saved = a.saved.as_deref().map(Saved::read).transpose()?;
    let stack = stack::load(&Saved::stack_file(a.file.as_deref(), saved.as_ref())?)?;
    view::print_warnings(&crate::ha::problems(&stack));
    view::print_warnings(&crate::provider::aws::preflight::region_warnings(&stack));
    let hooks = view::hooks();
    let mut opts = a.run.options(&a.target, a.provision_only);
    if let Some(s) = &saved {
        opts.targets = s.narrowed();
        opts.save = true;
        opts.provision_only |= s.provision_only;
    }
    let s = run::open(&stack, Command::Up, &opts, &*hooks).await?;
    if let (Some(sv), Some(path)) = (&saved, &a.saved) {
        let mut fresh = Saved::new(&stack, &s.basis, &s.plan, &opts.targets);
        fresh.provision_only = sv.provision_only;
        if let Err(e) = sv.check(path, &fresh) {
            s.close().await;
            return Err(e.into());
        }
    }
    let approved = a.auto_approve || saved.is_some();
    apply_and_report(s, a.json, a.diff, approved, a.wait.wait(), &*hooks).await
}

pub async fn run_down(a: DownArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    let hooks = view::hooks();
    let opts = a.run.options(&a.target, false);
    let s = run::open(&stack, Command::Down, &opts, &*hooks).await?;
    apply_and_report(s, a.stack.json, true, a.auto_approve, None, &*hooks).await
}
