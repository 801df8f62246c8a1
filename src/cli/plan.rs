//! `hactl plan`, `hactl up` and `hactl down`: load → render → observe → diff → (apply) →
//! report. The plan is printed before anything changes; applying needs `--auto-approve` or a
//! "yes" at a terminal prompt, and is refused (with a hint) when no terminal can be asked.
//! `up` and `down` hold the stack's lock ([`lock`]) from before the hosts are read until the
//! report, as the AWS path does.
//! `up` then waits until the stack serves (`cli/wait.rs`) unless `--no-wait`.

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
    pub run: super::aws::RunArgs,
    /// Remove without asking.
    #[arg(long)]
    pub auto_approve: bool,
}

struct Prepared {
    stack: stack::Stack,
    observed: engine::Observed,
    /// For redacting tool output in the reports.
    secrets: vault::Secrets,
}

async fn prepare(args: &StackArgs) -> miette::Result<Prepared> {
    let stack = stack::load(&args.file)?;
    let secrets = vault::open_checked(&stack)?;
    let observed = engine::render_and_observe(&stack, &secrets).await?;
    Ok(Prepared {
        stack,
        observed,
        secrets,
    })
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

/// Takes the stack's lock for `operation` on a `provider: hosts` stack: the state backend's
/// lock (a local file lock under `.hactl/`, or the S3 lock when `state.backend` is `s3`),
/// leased and renewed while held, waiting up to `wait` (`--lock-wait`) for a holder.
pub(crate) async fn lock(
    stack: &stack::Stack,
    operation: &str,
    wait: std::time::Duration,
) -> miette::Result<crate::state::LockGuard> {
    let backend = crate::state::Backend::for_stack(stack).await?;
    match backend.lock(operation, std::time::Duration::ZERO).await {
        Err(crate::state::StateError::Locked { holder, .. }) if !wait.is_zero() => {
            view::note(&format!(
                "waiting for the stack lock held by {holder} (up to {})",
                crate::stack::duration::Dur(wait)
            ));
            Ok(backend.lock(operation, wait).await?)
        }
        r => Ok(r?),
    }
}

pub async fn run_up(a: UpArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    view::print_warnings(&stack::risks(&stack));
    if super::aws::is_aws(&stack) {
        return super::aws::up(
            stack,
            &a.stack,
            &a.run,
            a.auto_approve,
            a.provision_only,
            a.wait.wait(),
        )
        .await;
    }
    let guard = lock(&stack, "up", a.run.lock_wait).await?;
    let r = async {
        let mut p = prepare(&a.stack).await?;
        p.observed.digest_key = crate::state::digest_key(&p.stack, true).await;
        let plan = engine::plan_up(&p.stack, &p.observed);
        let shown = Shown {
            json: a.stack.json,
            full_diff: a.diff,
        };
        apply(p, plan, shown, a.auto_approve, Mode::Up, a.wait.wait()).await
    }
    .await;
    guard.release().await;
    r
}

pub async fn run_down(a: DownArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    if super::aws::is_aws(&stack) {
        return super::aws::down(stack, &a.stack, &a.run, a.auto_approve).await;
    }
    let guard = lock(&stack, "down", a.run.lock_wait).await?;
    let r = async {
        let mut p = prepare(&a.stack).await?;
        p.observed.digest_key = crate::state::digest_key(&p.stack, true).await;
        let plan = engine::plan_down(&p.stack, &p.observed);
        let shown = Shown {
            json: a.stack.json,
            full_diff: true,
        };
        apply(p, plan, shown, a.auto_approve, Mode::Down, None).await
    }
    .await;
    guard.release().await;
    r
}

/// The hosts layer of an AWS `up`: the instances, already built into `stack.hosts` and
/// rendered with the state's outputs, go through the same observe → plan → apply as a hosts
/// stack (see `cli/aws.rs`, which waits for the stack to serve once the EFS mount is done).
pub(crate) async fn up_rendered(
    stack: stack::Stack,
    configs: std::collections::BTreeMap<String, crate::render::HostConfig>,
    secrets: vault::Secrets,
    json: bool,
    auto_approve: bool,
) -> miette::Result<ExitStatus> {
    let observed = engine::observe(&stack, configs).await;
    let plan = engine::plan_up(&stack, &observed);
    apply(
        Prepared {
            stack,
            observed,
            secrets,
        },
        plan,
        Shown {
            json,
            full_diff: false,
        },
        auto_approve,
        Mode::Up,
        None,
    )
    .await
}

/// How `up` and `down` show their plan: `--json`, and `--diff` (every host's full diffs
/// rather than the compact plan, `view::compact`).
struct Shown {
    json: bool,
    full_diff: bool,
}

#[derive(serde::Serialize)]
struct ApplyOutput<'a> {
    outcome: &'a str,
    plan: &'a Plan,
    hosts: &'a [HostReport],
    /// How the wait for the stack to serve ended (absent with `--no-wait` or on failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    serving: Option<&'a super::wait::Serving>,
}

/// Applies the plan, then (`wait`: at most that long) waits for the stack to serve. With
/// `--json` the one document carries the wait's outcome; human output prints the reports
/// first, so the progress of the wait follows them on stderr.
async fn apply(
    p: Prepared,
    plan: Plan,
    shown: Shown,
    auto_approve: bool,
    mode: Mode,
    wait: Option<std::time::Duration>,
) -> miette::Result<ExitStatus> {
    let order = host_order(&p.stack);
    let json = shown.json;
    if !json && shown.full_diff {
        view::print_out(&view::plan::render_plan(&plan, &order));
    } else if !json {
        view::print_out(&view::compact::render_plan(&plan, &order));
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
        // Checkers and services quote what they refuse: never a secret value.
        for r in &mut reports {
            r.redact(&p.secrets);
        }
    }
    p.observed.close().await;
    let failed = !plan.failed_hosts.is_empty() || reports.iter().any(|r| !r.ok);
    let outcome = match (failed, plan.has_changes()) {
        (true, _) => "failed",
        (false, true) => "applied",
        (false, false) => "no_changes",
    };
    if !json {
        let mut text = view::plan::render_reports(&reports, &plan);
        text.push_str(match outcome {
            "failed" => "\nSome hosts failed: see above. The others were applied.\n",
            "applied" => "\nApplied.\n",
            _ => "\nNothing to do.\n",
        });
        view::print_out(&text);
    }
    let wait = wait.filter(|_| !failed && mode == Mode::Up);
    let serving = match wait {
        Some(t) => Some(super::wait::until_serving(&p.stack, t, None).await),
        None => None,
    };
    if json {
        view::print_json(&ApplyOutput {
            outcome,
            plan: &plan,
            hosts: &reports,
            serving: serving.as_ref(),
        })?;
    }
    Ok(match (failed, wait.zip(serving.as_ref())) {
        (true, _) => ExitStatus::Failure,
        (false, Some((t, s))) => super::wait::finish(&p.stack, t, s),
        (false, None) => ExitStatus::Success,
    })
}
