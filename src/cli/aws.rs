//! `plan`, `up` and `down` for `provider: aws` stacks: lock the state → read by tags → diff →
//! print → (apply in waves, saving the state after every change) → outputs → unlock.
//! `cli/plan.rs` dispatches here when the stack's provider is `aws`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Mutex;

use super::StackArgs;
use crate::plan::{Action, Plan};
use crate::provider::aws::apply::{self, Ctx, Event};
use crate::provider::aws::client::Clients;
use crate::provider::aws::{desired, diff, observe, outputs};
use crate::stack::model::ProviderKind;
use crate::stack::Stack;
use crate::state::{Backend, ResourceState, State};
use crate::{vault, view, ExitStatus};

/// Options of runs that take the state lock and talk to AWS.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// How long to wait for another run's state lock (e.g. `30s`, `5m`); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_wait: Duration,
    /// How many AWS resources are created or deleted at once within a wave.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::stack::duration::parse(s)
        .map(|d| d.0)
        .map_err(|e| e.to_string())
}

pub fn is_aws(stack: &Stack) -> bool {
    stack.file.provider.value == ProviderKind::Aws
}

pub(crate) fn region(stack: &Stack) -> String {
    stack
        .file
        .aws
        .as_ref()
        .map(|a| a.region.value.clone())
        .unwrap_or_else(|| "us-east-1".into())
}

fn given_subnets(stack: &Stack) -> Vec<String> {
    stack
        .file
        .aws
        .as_ref()
        .and_then(|a| a.network.subnet_ids.clone())
        .unwrap_or_default()
}

/// Reads everything this stack owns.
pub(crate) async fn read(
    stack: &Stack,
    clients: &Clients,
) -> miette::Result<Vec<crate::provider::aws::model::Observed>> {
    Ok(observe::observe(clients, stack.name(), &given_subnets(stack)).await?)
}

/// The state's resources and outputs, rebuilt from what was observed.
pub(crate) fn record(st: &mut State, observed: &[crate::provider::aws::model::Observed]) {
    st.resources = observed
        .iter()
        .map(|o| {
            (
                o.res.addr.clone(),
                ResourceState {
                    kind: o.res.kind.type_name().to_string(),
                    id: o.id.clone(),
                },
            )
        })
        .collect();
    st.outputs = outputs::outputs(observed);
}

#[derive(serde::Serialize)]
struct ApplyOutput<'a> {
    outcome: &'a str,
    plan: &'a Plan,
    outputs: &'a serde_json::Value,
}

pub async fn plan(
    stack: Stack,
    args: &StackArgs,
    run: &RunArgs,
    detailed_exitcode: bool,
) -> miette::Result<ExitStatus> {
    let backend = Backend::for_stack(&stack).await?;
    let guard = backend.lock("plan", run.lock_wait).await?;
    let r = async {
        let clients = Clients::new(&region(&stack)).await;
        let observed = read(&stack, &clients).await?;
        let d = diff::diff(&desired::desired(&stack.file), &observed);
        Ok::<_, miette::Report>(d.plan(stack.name()))
    }
    .await;
    guard.release().await;
    let plan = r?;
    if args.json {
        view::print_json(&plan)?;
    } else {
        view::print_out(&view::plan::render_plan(&plan, &[]));
    }
    Ok(if detailed_exitcode && plan.has_changes() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

pub async fn up(
    stack: Stack,
    args: &StackArgs,
    run: &RunArgs,
    auto_approve: bool,
) -> miette::Result<ExitStatus> {
    let backend = Backend::for_stack(&stack).await?;
    let guard = backend.lock("up", run.lock_wait).await?;
    let r = converge(&stack, &backend, args, run, auto_approve, false).await;
    guard.release().await;
    r
}

pub async fn down(
    stack: Stack,
    args: &StackArgs,
    run: &RunArgs,
    auto_approve: bool,
) -> miette::Result<ExitStatus> {
    let backend = Backend::for_stack(&stack).await?;
    let guard = backend.lock("down", run.lock_wait).await?;
    let r = converge(&stack, &backend, args, run, auto_approve, true).await;
    guard.release().await;
    r
}

fn confirm(destroy: bool) -> miette::Result<()> {
    if !view::interactive() {
        return Err(miette::miette!(
            code = "hactl::approve::no_tty",
            help =
                "re-run with `--auto-approve` (CI), or run it in a terminal to answer the prompt",
            "refusing to {} without approval: not running in a terminal",
            if destroy {
                "remove these"
            } else {
                "apply these changes"
            }
        ));
    }
    eprint!("Do you want to apply this plan? Only `yes` is accepted: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| miette::miette!("cannot read the answer: {e}"))?;
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err(miette::miette!(
            code = "hactl::approve::declined",
            "cancelled: nothing was changed"
        ))
    }
}

async fn converge(
    stack: &Stack,
    backend: &Backend,
    args: &StackArgs,
    run: &RunArgs,
    auto_approve: bool,
    destroy: bool,
) -> miette::Result<ExitStatus> {
    let name = stack.name().to_string();
    let st = backend
        .read(&name)
        .await?
        .unwrap_or_else(|| State::new(&name));
    let clients = Clients::new(&region(stack)).await;
    let observed = read(stack, &clients).await?;
    let d = if destroy {
        diff::destroy(&observed)
    } else {
        diff::diff(&desired::desired(&stack.file), &observed)
    };
    let plan = d.plan(&name);
    if !args.json {
        view::print_out(&view::plan::render_plan(&plan, &[]));
    }
    if plan.has_changes() && !auto_approve {
        confirm(destroy)?;
    }

    let db_credentials = if plan.has_changes() && !destroy {
        db_credentials(stack)?
    } else {
        None
    };
    let ctx = Arc::new(Ctx {
        c: clients.clone(),
        stack: name.clone(),
        lineage: st.lineage.clone(),
        root_volume_gb: stack
            .file
            .aws
            .as_ref()
            .map(|a| a.hosts.root_volume_gb.value as i32)
            .unwrap_or(20),
        db_credentials,
        wait_timeout: Duration::from_secs(
            std::env::var("HACTL_AWS_WAIT_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1800),
        ),
        ids: Mutex::new(
            observed
                .iter()
                .rev() // the first of duplicates wins
                .map(|o| (o.res.addr.clone(), o.id.clone()))
                .collect(),
        ),
    });
    let state = Arc::new(Mutex::new(st));
    let save_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let json = args.json;
    let errors = if plan.has_changes() {
        let on_event = {
            let state = state.clone();
            let save_errors = save_errors.clone();
            move |ev: Event| {
                let state = state.clone();
                let save_errors = save_errors.clone();
                async move {
                    match ev {
                        Event::Started { addr, action } => {
                            if !json {
                                eprintln!("{addr}: {}…", verb(action));
                            }
                        }
                        Event::Failed { addr, error } => eprintln!("{addr}: failed: {error}"),
                        Event::Done {
                            addr,
                            action,
                            id,
                            kind,
                            elapsed,
                        } => {
                            if !json {
                                eprintln!(
                                    "{addr}: {} {}[{:.1}s]",
                                    done(action),
                                    id.as_deref().map(|i| format!("({i}) ")).unwrap_or_default(),
                                    elapsed.as_secs_f64()
                                );
                            }
                            let mut st = state.lock().await;
                            match id {
                                Some(id) => {
                                    st.resources.insert(
                                        addr,
                                        ResourceState {
                                            kind: kind.type_name().into(),
                                            id,
                                        },
                                    );
                                }
                                None => {
                                    st.resources.remove(&addr);
                                }
                            }
                            if let Err(e) = backend.write(&mut st).await {
                                save_errors.lock().await.push(e.to_string());
                            }
                        }
                    }
                }
            }
        };
        apply::apply(ctx.clone(), &d.steps, run.parallelism, on_event).await
    } else {
        Vec::new()
    };

    // Re-read what exists now: the state and outputs describe AWS as it is, not as planned.
    let after = read(stack, &clients).await?;
    let mut st = state.lock().await;
    record(&mut st, &after);
    backend.write(&mut st).await?;
    let save_errors = save_errors.lock().await.clone();
    let failed = !errors.is_empty() || !save_errors.is_empty();
    let outcome = match (failed, plan.has_changes()) {
        (true, _) => "failed",
        (false, true) => "applied",
        (false, false) => "no_changes",
    };
    if json {
        view::print_json(&ApplyOutput {
            outcome,
            plan: &plan,
            outputs: &st.outputs,
        })?;
    } else {
        let mut text = String::new();
        for e in &save_errors {
            text.push_str(&format!("state: {e}\n"));
        }
        text.push_str(match outcome {
            "failed" => "\nFailed: see above. Re-run to resume from what exists.\n",
            "applied" => "\nApplied.\n",
            _ => "\nNothing to do.\n",
        });
        if !destroy {
            text.push_str(&format!(
                "\nOutputs:\n{}",
                super::outputs::render_human(&st.outputs)
            ));
        }
        view::print_out(&text);
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e.into());
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "deleting",
        _ => "working",
    }
}

fn done(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Delete => "deleted",
        _ => "done",
    }
}

/// The RDS master credentials, resolved from the stack (inline or from the vault).
fn db_credentials(stack: &Stack) -> miette::Result<Option<(vault::Secret, vault::Secret)>> {
    let Some(db) = stack.file.aws.as_ref().and_then(|a| a.database.as_ref()) else {
        return Ok(None);
    };
    let secrets = vault::open(stack)?;
    let user = secrets
        .resolve(&db.username.value)
        .ok_or_else(|| crate::provider::aws::AwsError::Credentials("database.username".into()))?;
    let pass = secrets
        .resolve(&db.password.value)
        .ok_or_else(|| crate::provider::aws::AwsError::Credentials("database.password".into()))?;
    Ok(Some((user, pass)))
}
