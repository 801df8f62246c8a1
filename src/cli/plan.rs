//! `hactl plan`, `hactl up` and `hactl down`: load → render → observe → diff → (apply) →
//! report. The plan is printed before anything changes; applying needs `--auto-approve` or a
//! "yes" at a terminal prompt, and is refused (with a hint) when no terminal can be asked.

use clap::Args;

use super::StackArgs;
use crate::engine::{self, Mode};
use crate::plan::Plan;
use crate::provider::hosts::HostReport;
use crate::{stack, vault, view, ExitStatus};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub run: super::aws::RunArgs,
    /// Exit 2 when there are changes, 0 when none, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub run: super::aws::RunArgs,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// `provider: aws`: create and update the AWS resources only, without configuring the
    /// instances over SSH (e.g. they are not reachable from where this runs).
    #[arg(long)]
    pub provision_only: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub run: super::aws::RunArgs,
    /// Remove without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

struct Prepared {
    stack: stack::Stack,
    observed: engine::Observed,
}

async fn prepare(args: &StackArgs) -> miette::Result<Prepared> {
    let stack = stack::load(&args.file)?;
    let secrets = vault::open_checked(&stack)?;
    let observed = engine::render_and_observe(&stack, &secrets).await?;
    Ok(Prepared { stack, observed })
}

fn host_order(stack: &stack::Stack) -> Vec<String> {
    stack.hosts.iter().map(|h| h.name.clone()).collect()
}

pub async fn run_plan(a: PlanArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    view::print_warnings(&stack::risks(&stack));
    if super::aws::is_aws(&stack) {
        return super::aws::plan(stack, &a.stack, &a.run, a.detailed_exitcode).await;
    }
    let p = prepare(&a.stack).await?;
    let plan = engine::plan_up(&p.stack, &p.observed);
    if a.stack.json {
        view::print_json(&plan)?;
    } else {
        view::print_out(&view::plan::render_plan(&plan, &host_order(&p.stack)));
    }
    p.observed.close().await;
    Ok(if !plan.failed_hosts.is_empty() {
        ExitStatus::Failure
    } else if a.detailed_exitcode && plan.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

pub async fn run_up(a: UpArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    view::print_warnings(&stack::risks(&stack));
    if super::aws::is_aws(&stack) {
        return super::aws::up(stack, &a.stack, &a.run, a.auto_approve, a.provision_only).await;
    }
    let p = prepare(&a.stack).await?;
    let plan = engine::plan_up(&p.stack, &p.observed);
    apply(p, plan, a.stack.json, a.auto_approve, Mode::Up).await
}

pub async fn run_down(a: DownArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    if super::aws::is_aws(&stack) {
        return super::aws::down(stack, &a.stack, &a.run, a.auto_approve).await;
    }
    let p = prepare(&a.stack).await?;
    let plan = engine::plan_down(&p.stack, &p.observed);
    apply(p, plan, a.stack.json, a.auto_approve, Mode::Down).await
}

/// The hosts layer of an AWS `up`: the instances, already built into `stack.hosts` and
/// rendered with the state's outputs, go through the same observe → plan → apply as a hosts
/// stack (see `cli/aws.rs`).
pub(crate) async fn up_rendered(
    stack: stack::Stack,
    configs: std::collections::BTreeMap<String, crate::render::HostConfig>,
    json: bool,
    auto_approve: bool,
) -> miette::Result<ExitStatus> {
    let observed = engine::observe(&stack, configs).await;
    let plan = engine::plan_up(&stack, &observed);
    apply(
        Prepared { stack, observed },
        plan,
        json,
        auto_approve,
        Mode::Up,
    )
    .await
}

#[derive(serde::Serialize)]
struct ApplyOutput<'a> {
    outcome: &'a str,
    plan: &'a Plan,
    hosts: &'a [HostReport],
}

async fn apply(
    p: Prepared,
    plan: Plan,
    json: bool,
    auto_approve: bool,
    mode: Mode,
) -> miette::Result<ExitStatus> {
    let order = host_order(&p.stack);
    if !json {
        view::print_out(&view::plan::render_plan(&plan, &order));
    }
    let mut reports = Vec::new();
    if plan.has_changes() {
        if !auto_approve {
            view::confirm(match mode {
                Mode::Up => "apply these changes",
                Mode::Down => "remove these",
            })?;
        }
        reports = engine::apply(&p.stack, &p.observed, &plan, mode).await;
    }
    p.observed.close().await;
    let failed = !plan.failed_hosts.is_empty() || reports.iter().any(|r| !r.ok);
    let outcome = match (failed, plan.has_changes()) {
        (true, _) => "failed",
        (false, true) => "applied",
        (false, false) => "no_changes",
    };
    if json {
        view::print_json(&ApplyOutput {
            outcome,
            plan: &plan,
            hosts: &reports,
        })?;
    } else {
        let mut text = view::plan::render_reports(&reports, &plan);
        text.push_str(match outcome {
            "failed" => "\nSome hosts failed: see above. The others were applied.\n",
            "applied" => "\nApplied.\n",
            _ => "\nNothing to do.\n",
        });
        view::print_out(&text);
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
