//! `hactl heal -f STACK [--watch --interval D]`: find what is down and converge.
//!
//! One round, on `provider: hosts`: render and observe every host (as `plan` does); a host that
//! cannot be reached is reported as down and left alone; a reachable host whose files or
//! services differ from the stack (typically one that came back, rebuilt or rebooted) is
//! reconfigured exactly as `up` would. Then, for each redis service, every instance's
//! replication state is read and `services::redis::decide` says which instance is the primary
//! of each port; every other live instance that does not follow it is made to (`REPLICAOF`):
//! an old primary rejoins as a replica, never as a second primary. hactl promotes a replica
//! itself only with `promotion: hactl`; with sentinels it leaves promotion to them.
//!
//! On `provider: aws` a round is `up` restricted to repairs (`cli/aws.rs`): an instance of the
//! stack that is terminated, shutting down, gone, stopped or impaired is replaced in its zone
//! with the stack's image, type and tags, the target group registers the new one and drops the
//! dead one, the state records what exists, then every instance is configured over SSH as `up`
//! does (`--provision-only` skips that). Other differences are reported, not applied.
//!
//! `--watch` repeats the round every `--interval` until interrupted (or `--rounds` rounds). A
//! round of an AWS stack that fails (AWS error, state locked by another run) is reported and
//! the watch goes on: the next round starts again from what exists.
//!
//! Without `--watch` (and without `--dry-run`), a round that converged waits until the stack
//! serves, as `up` does (`cli/wait.rs`; `--no-wait` skips it). A watch does not wait: its next
//! round looks again anyway.

use std::time::Duration;

use clap::Args;

use super::StackArgs;
use crate::engine::heal::round;
use crate::stack::Stack;
use crate::{stack, vault, view, ExitStatus};

#[derive(Debug, Args)]
pub struct HealArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Keep healing: one round every `--interval` until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Time between two rounds with `--watch`: `5s`, `500ms`, `1m`.
    #[arg(long, default_value = "5s", value_parser = crate::stack::duration::arg)]
    pub interval: Duration,
    /// With `--watch`: stop after this many rounds.
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: super::aws::RunArgs,
    /// `provider: aws`: replace and register instances only, without configuring them over SSH.
    #[arg(long)]
    pub provision_only: bool,
    #[command(flatten)]
    pub wait: super::wait::WaitArgs,
}

impl HealArgs {
    /// The wait after the round: only for a single round that changes things.
    fn wait(&self) -> Option<Duration> {
        self.wait.wait().filter(|_| !self.watch && !self.dry_run)
    }
}

pub async fn run(a: HealArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    if crate::engine::cloud::is_aws(&stack) {
        return run_aws(&a, &stack).await;
    }
    let secrets = vault::open(&stack)?;
    let hooks = view::hooks();
    let mut n = 0u32;
    loop {
        n += 1;
        // The stack's lock for each round (not the whole `--watch`, so an `up` can run
        // between two rounds); with `--watch`, a round that finds it busy (a deploy or an
        // `up` running) is skipped, not the end of the watch.
        let guard = match super::lock(&stack, "heal", a.run.lock_wait).await {
            Ok(g) => g,
            Err(e) if a.watch && a.rounds.is_none_or(|max| n < max) => {
                view::print_error(&e);
                tokio::time::sleep(a.interval).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        // `--watch`: one object per round in the document's `rounds`.
        let _round = a.watch.then(|| view::json::item("rounds"));
        let r = round(&stack, &secrets, n, a.dry_run, &*hooks).await;
        guard.release().await;
        let mut r = r?;
        let healthy = r.converged && r.down.is_empty();
        let wait = a.wait().filter(|_| healthy);
        if !a.stack.json {
            view::print_out(&view::heal::render(&r));
        }
        if let Some(t) = wait {
            r.serving = Some(super::wait::until_serving(&stack, t, None).await);
        }
        if a.stack.json {
            view::print_json(&r)?;
        }
        let done = !a.watch || a.rounds.is_some_and(|max| n >= max);
        if done {
            return Ok(match (healthy, wait.zip(r.serving.as_ref())) {
                (false, _) => ExitStatus::Failure,
                (true, Some((t, s))) => super::wait::finish(&stack, t, s),
                (true, None) => ExitStatus::Success,
            });
        }
        tokio::time::sleep(a.interval).await;
    }
}

/// The rounds of an AWS stack; each prints its own plan, progress and outcome (`cli/aws.rs`).
async fn run_aws(a: &HealArgs, stack: &Stack) -> miette::Result<ExitStatus> {
    let mut n = 0u32;
    loop {
        n += 1;
        let last = !a.watch || a.rounds.is_some_and(|max| n >= max);
        if a.watch && !a.stack.json {
            view::print_out(&format!("heal round {n} of `{}`:\n", stack.name()));
        }
        let _round = a.watch.then(|| view::json::item("rounds"));
        let opts = a.run.options(&Default::default(), a.provision_only);
        let r = super::aws::heal(stack, &opts, a.stack.json, a.dry_run, a.wait()).await;
        let status = match r {
            Ok(s) => s,
            Err(e) if !last => {
                view::print_error(&e);
                ExitStatus::Failure
            }
            Err(e) => return Err(e),
        };
        if last {
            return Ok(status);
        }
        tokio::time::sleep(a.interval).await;
    }
}
