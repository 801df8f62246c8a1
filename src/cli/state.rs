//! `hactl state lock-info | force-unlock ID | refresh | journal`: inspect and repair the state and its
//! lock. `refresh` rebuilds the state (ids and outputs) from the resources' ownership tags,
//! which is how a lost or corrupted state is recovered.

use clap::{Args, Subcommand};

use super::aws::RunArgs;
use super::StackArgs;
use crate::engine::cloud::{read, record, region};
use crate::provider::aws::client::Clients;
use crate::state::{Backend, State};
use crate::{stack, view, ExitStatus};

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Who holds the state lock (id, user@host, pid, operation, since), if anyone.
    LockInfo(StackArgs),
    /// Remove a lock left behind by a run that died (S3 backend), given its id.
    ForceUnlock(ForceUnlockArgs),
    /// Rebuild the state from the resources' `hactl:stack` tags.
    Refresh(RefreshArgs),
    /// The apply journal: each cloud change's intent and result, and what is in flight.
    Journal(StackArgs),
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The lock id shown by `hactl state lock-info` or in the "locked" error.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `hactl state journal`: the journal beside the state, as text, or with `--json` its
/// `entries` and the ones still `in_flight`.
async fn journal(a: StackArgs) -> miette::Result<ExitStatus> {
    use crate::engine::journal::{in_flight, render, Journal};
    let stack = stack::load(&a.file)?;
    let entries = Journal::for_stack(stack.name()).read().await?;
    if a.json {
        view::json::put_named("entries", &entries)?;
        view::json::put_named("in_flight", &in_flight(&entries))?;
    } else {
        view::print_out(&render(&entries));
    }
    Ok(ExitStatus::Success)
}

pub async fn run(c: StateCommand) -> miette::Result<ExitStatus> {
    match c {
        StateCommand::Journal(a) => journal(a).await,
        StateCommand::LockInfo(a) => {
            let stack = stack::load(&a.file)?;
            let backend = Backend::for_stack(&stack).await?;
            let info = backend.lock_info().await?;
            if a.json {
                // Always under `lock` (null when free): a reader tests one key, whether or not
                // the lock is held.
                view::json::put_named("lock", &info)?;
            } else {
                match info {
                    Some(i) => view::print_out(&format!(
                        "locked by {}\n  id: {}\n  operation: {}\n  pid: {}\n  since: {} (unix)\n  renewed: {} (unix), lease {} s\n",
                        i.who, i.id, i.operation, i.pid, i.created, i.renewed, i.ttl
                    )),
                    None => view::print_out(&format!("not locked ({})\n", backend.describe())),
                }
            }
            Ok(ExitStatus::Success)
        }
        StateCommand::ForceUnlock(a) => {
            let stack = stack::load(&a.stack.file)?;
            let backend = Backend::for_stack(&stack).await?;
            backend.force_unlock(&a.id).await?;
            view::print_out(&format!("unlocked {} ({})\n", a.id, backend.describe()));
            Ok(ExitStatus::Success)
        }
        StateCommand::Refresh(a) => {
            let stack = stack::load(&a.stack.file)?;
            let backend = Backend::for_stack(&stack).await?;
            let guard = backend.lock("refresh", a.run.lock_wait).await?;
            let r = async {
                // A corrupt state is replaced; a valid one keeps its lineage and serial.
                let mut st = match backend.read(stack.name()).await {
                    Ok(Some(s)) => s,
                    _ => State::new(stack.name()),
                };
                let fresh = st.serial == 0;
                let clients = Clients::new(&region(&stack)).await;
                // A valid state's ids are read first (a resource that lost its tags is kept);
                // a lost or corrupt one leaves the tags alone to decide.
                let observed = read(&stack, &clients, &st).await?;
                record(&mut st, &observed);
                if fresh {
                    if let Backend::Local { state, .. } = &backend {
                        // A corrupt file would make the lineage check refuse the write.
                        let _ = tokio::fs::remove_file(state).await;
                    }
                }
                backend.write(&mut st).await?;
                Ok::<_, miette::Report>(st)
            }
            .await;
            guard.release().await;
            let st = r?;
            if a.stack.json {
                view::print_json(&st)?;
            } else {
                view::print_out(&format!(
                    "state refreshed: {} resources, serial {} ({})\n",
                    st.resources.len(),
                    st.serial,
                    backend.describe()
                ));
            }
            Ok(ExitStatus::Success)
        }
    }
}
