//! `plan`, `up`, `down` and `heal` for `provider: aws` stacks: lock the state → read by tags →
//! diff → print → (apply in waves, saving the state after every change) → outputs → unlock.
//! `cli/plan.rs` and `cli/heal.rs` dispatch here when the stack's provider is `aws`.
//!
//! `heal` is `up` with a narrower diff ([`diff::repairs`]: dead or missing instances and their
//! target registrations only), through the same apply, state recording and host configuration;
//! it is not a second implementation of any of them.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Mutex;

use super::StackArgs;
use crate::plan::{Action, Plan};
use crate::provider::aws::apply::{self, Ctx, Event};
use crate::provider::aws::client::Clients;
use crate::provider::aws::model::{Recorded, ResKind};
use crate::provider::aws::{desired, diff, hosts, observe, outputs, preflight};
use crate::stack::model::ProviderKind;
use crate::stack::Stack;
use crate::state::{Backend, ResourceState, State};
use crate::{vault, view, ExitStatus};

/// Options of runs that take the state lock and talk to AWS.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// How long to wait for another run's state lock (e.g. `30s`, `5m`); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = crate::stack::duration::arg, default_value = "0s")]
    pub lock_wait: Duration,
    /// How many AWS resources are created or deleted at once within a wave.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Allow a plan that deletes or replaces a database or file system (`down` included):
    /// without it such a plan is refused. A database still gets a final snapshot.
    #[arg(long)]
    pub allow_data_loss: bool,
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

/// What the state recorded, as `observe` reads it first (by id, before tags).
pub(crate) fn recorded(st: &State) -> Recorded {
    st.resources
        .iter()
        .filter_map(|(addr, r)| {
            let kind = ResKind::from_type_name(&r.kind)?;
            Some((addr.clone(), (kind, r.id.clone())))
        })
        .collect()
}

/// Reads everything this stack owns: what the state recorded (by id), then what carries its
/// tags.
pub(crate) async fn read(
    stack: &Stack,
    clients: &Clients,
    st: &State,
) -> miette::Result<Vec<crate::provider::aws::model::Observed>> {
    Ok(observe::observe(clients, stack.name(), &given_subnets(stack), &recorded(st)).await?)
}

/// The state's resources and outputs, rebuilt from what was observed.
/// Of two resources at one address (a duplicate not deleted yet), the first as observed is
/// kept, as the diff keeps it: the one the state recorded, else the oldest.
pub(crate) fn record(st: &mut State, observed: &[crate::provider::aws::model::Observed]) {
    st.resources = observed
        .iter()
        .rev()
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
    /// `heal`: differences `up` would make that are not repairs (left alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    not_repairs: Option<usize>,
    /// `down`: what the state recorded that AWS no longer has, as `{addr: id}`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    not_found: std::collections::BTreeMap<String, String>,
}

/// Which run [`converge`] makes: the diff it applies and the words it reports with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Up,
    Down,
    /// Repairs only; with `dry_run` the plan is printed and nothing changes.
    Heal {
        dry_run: bool,
    },
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
        let st = backend
            .read(stack.name())
            .await?
            .unwrap_or_else(|| State::new(stack.name()));
        let clients = Clients::new(&region(&stack)).await;
        // What only the account knows is asked first: a refusal names the stack key.
        let (account, observed) = tokio::join!(
            preflight::check(&clients, &stack),
            read(&stack, &clients, &st)
        );
        let (account, observed) = (account?, observed?);
        let key = public_key(&stack)?;
        let inputs = desired::Inputs {
            public_key: key.as_ref().map(|k| k.expose()),
            vpc_cidrs: account.vpc_cidrs.as_deref(),
        };
        let d = diff::diff(&desired::desired(&stack.file, &inputs), &observed);
        let refusal = diff::refuse_data_loss(&d, run.allow_data_loss);
        Ok::<_, miette::Report>((d.plan(stack.name()), refusal))
    }
    .await;
    guard.release().await;
    let (plan, refusal) = r?;
    if args.json {
        view::print_json(&plan)?;
    } else {
        view::print_out(&view::plan::render_plan(&plan, &[]));
    }
    refusal?;
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
    provision_only: bool,
    wait: Option<Duration>,
) -> miette::Result<ExitStatus> {
    let backend = Backend::for_stack(&stack).await?;
    let guard = backend.lock("up", run.lock_wait).await?;
    let r = async {
        let status = converge(&stack, &backend, args, run, auto_approve, Op::Up).await?;
        if status != ExitStatus::Success || !hosts::has_host_config(&stack) {
            return Ok(status);
        }
        if provision_only {
            if !args.json {
                view::print_out(
                    "\nHosts: not configured (`--provision-only`), so not waited on to serve.\n",
                );
            }
            return Ok(status);
        }
        configure_hosts(&stack, &backend, args, auto_approve, wait).await
    }
    .await;
    guard.release().await;
    r
}

/// Where hactl keeps the host keys it pinned for a stack's instances (when the stack names no
/// `ssh.known_hosts` of its own): beside the local state, rebuilt from the state on each run.
fn known_hosts_path(stack: &str) -> std::path::PathBuf {
    let rel = std::path::Path::new(".hactl").join(format!("{stack}.known_hosts"));
    std::env::current_dir().map(|d| d.join(&rel)).unwrap_or(rel)
}

/// The second layer of `up`: the instances in the state's outputs are configured over SSH by
/// the spine's flow (render with the outputs → observe → plan → apply), then the EFS mount
/// step runs (or says why it cannot), then (`wait`) the instances and the target group are
/// waited on until the stack serves (`cli/wait.rs`).
async fn configure_hosts(
    stack: &Stack,
    backend: &Backend,
    args: &StackArgs,
    auto_approve: bool,
    wait: Option<Duration>,
) -> miette::Result<ExitStatus> {
    let name = stack.name().to_string();
    let mut st = backend
        .read(&name)
        .await?
        .unwrap_or_else(|| State::new(&name));
    let instances = hosts::instances(&st.outputs);
    let mut s = stack.clone();
    s.hosts = hosts::hosts(stack, &instances);
    if !args.json {
        view::print_out(&format!(
            "\nConfiguring {} instance(s) over SSH:\n",
            s.hosts.len()
        ));
    }
    if stack.file.ssh.known_hosts.is_none() {
        let path = known_hosts_path(&name);
        pin_host_keys(&s, &instances, &mut st, &path).await?;
        backend.write(&mut st).await?;
        s.file.ssh.known_hosts = Some(crate::stack::model::unspanned(
            path.to_string_lossy().into_owned(),
        ));
    }
    let secrets = vault::open_checked(&s)?;
    let mut configs = crate::engine::render_all_with_outputs(&s, &secrets, &st.outputs)?;
    let mount_path = hosts::efs_mount(stack);
    let efs_dns = st.outputs["shared_fs"]["dns_name"]
        .as_str()
        .unwrap_or_default();
    if let (Some(path), false) = (&mount_path, efs_dns.is_empty()) {
        for cfg in configs.values_mut() {
            cfg.files.push(crate::render::RenderedFile {
                path: hosts::fstab_path(&name),
                content: hosts::fstab_line(efs_dns, path).into_bytes(),
                mode: 0o644,
                owner: Some("root".into()),
                service: None,
                check: None,
                sensitive: false,
            });
        }
    }
    let status =
        super::plan::up_rendered(s.clone(), configs, secrets, args.json, auto_approve).await?;
    let status = match mount_path {
        Some(path) if !efs_dns.is_empty() => {
            let failed = mount_step(&s, &path, args.json).await;
            if failed {
                ExitStatus::Failure
            } else {
                status
            }
        }
        _ => status,
    };
    let Some(timeout) = wait.filter(|_| status == ExitStatus::Success) else {
        return Ok(status);
    };
    // The balancer's view too: its targets must pass its own health checks.
    let targets = match st.resources.get(desired::TG) {
        Some(tg) => Some(super::wait::TargetWait {
            clients: Clients::new(&region(stack)).await,
            arn: tg.id.clone(),
        }),
        None => None,
    };
    let serving = super::wait::until_serving(&s, timeout, targets.as_ref()).await;
    if args.json {
        view::print_json(&serde_json::json!({ "serving": serving }))?;
    }
    Ok(super::wait::finish(&s, timeout, &serving))
}

/// Host keys: only current instances' keys are kept (a replaced instance is a new host); the
/// stack's known_hosts file is rewritten from the state; each instance not pinned yet is
/// contacted once with `accept-new`, one at a time so the lines it adds are its own, and those
/// lines are recorded in the state under its instance id.
async fn pin_host_keys(
    s: &Stack,
    instances: &[hosts::Instance],
    st: &mut State,
    path: &std::path::Path,
) -> miette::Result<()> {
    st.host_keys
        .retain(|id, _| instances.iter().any(|i| &i.instance_id == id));
    let io = |e: std::io::Error| miette::miette!("cannot write `{}`: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, st.host_keys.values().cloned().collect::<String>()).map_err(io)?;
    let lines = || -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let mut with_file = s.clone();
    with_file.file.ssh.known_hosts = Some(crate::stack::model::unspanned(
        path.to_string_lossy().into_owned(),
    ));
    for (inst, host) in instances.iter().zip(&s.hosts) {
        if st.host_keys.contains_key(&inst.instance_id) {
            continue;
        }
        let before = lines();
        match crate::provider::hosts::Connection::pin(&with_file, host).await {
            Ok(()) => {
                let new: Vec<String> = lines().difference(&before).cloned().collect();
                if !new.is_empty() {
                    view::note(&format!("{}: host key pinned at first contact", host.name));
                    st.host_keys
                        .insert(inst.instance_id.clone(), new.join("\n") + "\n");
                }
            }
            // The strict connection that follows reports it with the other hosts.
            Err(e) => view::note(&format!("{}: first contact failed: {e}", host.name)),
        }
    }
    Ok(())
}

/// The EFS mount on every instance. Returns true when a mount was tried and failed; a host
/// that cannot mount NFS at all is reported as not run, with the reason.
async fn mount_step(s: &Stack, path: &str, json: bool) -> bool {
    let all: Vec<&crate::stack::Host> = s.hosts.iter().collect();
    let conns = crate::provider::hosts::connect_all(s, &all).await;
    let mut failed = false;
    let mut text = String::new();
    let mut records = Vec::new();
    for (host, conn) in conns {
        let outcome = match conn {
            Ok(c) => {
                let r =
                    crate::provider::hosts::query(&c, &hosts::mount_script(s.name(), path)).await;
                c.close().await;
                match r {
                    Ok(out) => hosts::parse_mount(&out),
                    Err(e) => hosts::MountOutcome::Failed(e.to_string()),
                }
            }
            Err(e) => hosts::MountOutcome::NotRun(format!("cannot connect: {e}")),
        };
        let line = match &outcome {
            hosts::MountOutcome::Mounted => "mounted".to_string(),
            hosts::MountOutcome::AlreadyMounted => "already mounted".to_string(),
            hosts::MountOutcome::NotRun(r) => format!("not run: {r}"),
            hosts::MountOutcome::Failed(r) => {
                failed = true;
                format!("FAILED: {r}")
            }
        };
        text.push_str(&format!("{host}: mount EFS on {path}: {line}\n"));
        records.push(serde_json::json!({"host": host, "path": path, "mount": outcome}));
    }
    if json {
        let _ = view::print_json(&serde_json::json!({ "efs_mount": records }));
    } else {
        view::print_out(&format!("\n{text}"));
    }
    failed
}

/// One `heal` round of an AWS stack: under the state lock, replace the instances that are dead
/// or gone and re-register the target group ([`diff::repairs`]), record what exists in the
/// state, then configure the instances over SSH exactly as `up` does (pinning a new instance's
/// host key at first contact), which also reconfigures any instance whose files drifted.
pub async fn heal(
    stack: &Stack,
    args: &StackArgs,
    run: &RunArgs,
    dry_run: bool,
    provision_only: bool,
    wait: Option<Duration>,
) -> miette::Result<ExitStatus> {
    let backend = Backend::for_stack(stack).await?;
    let guard = backend.lock("heal", run.lock_wait).await?;
    let r = async {
        let status = converge(stack, &backend, args, run, true, Op::Heal { dry_run }).await?;
        if status != ExitStatus::Success || dry_run || !hosts::has_host_config(stack) {
            return Ok(status);
        }
        if provision_only {
            if !args.json {
                view::print_out("\nHosts: not configured (`--provision-only`).\n");
            }
            return Ok(status);
        }
        configure_hosts(stack, &backend, args, true, wait).await
    }
    .await;
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
    let r = converge(&stack, &backend, args, run, auto_approve, Op::Down).await;
    guard.release().await;
    r
}

async fn converge(
    stack: &Stack,
    backend: &Backend,
    args: &StackArgs,
    run: &RunArgs,
    auto_approve: bool,
    op: Op,
) -> miette::Result<ExitStatus> {
    let destroy = op == Op::Down;
    let name = stack.name().to_string();
    let st = backend
        .read(&name)
        .await?
        .unwrap_or_else(|| State::new(&name));
    let clients = Clients::new(&region(stack)).await;
    // Before anything is created: ask AWS what only the account knows (zones, instance type
    // offerings, existing subnets and VPC), while the stack's resources are read. `down`
    // creates nothing and needs none of it.
    let (account, observed) = tokio::join!(
        async {
            if destroy {
                Ok(preflight::Account::default())
            } else {
                preflight::check(&clients, stack).await
            }
        },
        read(stack, &clients, &st)
    );
    let (account, mut observed) = (account?, observed?);
    // `down` names what the state recorded and AWS no longer has (deleted outside hactl).
    let not_found: Vec<(String, String)> = st
        .resources
        .iter()
        .filter(|(a, _)| !observed.iter().any(|o| &o.res.addr == *a))
        .map(|(a, r)| (a.clone(), r.id.clone()))
        .collect();
    let key = if destroy { None } else { public_key(stack)? };
    let inputs = desired::Inputs {
        public_key: key.as_ref().map(|k| k.expose()),
        vpc_cidrs: account.vpc_cidrs.as_deref(),
    };
    let mut not_repairs = None;
    let last_ids: std::collections::BTreeMap<String, String> = st
        .resources
        .iter()
        .map(|(a, r)| (a.clone(), r.id.clone()))
        .collect();
    let d = match op {
        Op::Down => diff::destroy(&observed),
        Op::Up => {
            let mut d = diff::diff(&desired::desired(&stack.file, &inputs), &observed);
            diff::salt_relaunches(&mut d, &last_ids);
            d
        }
        Op::Heal { .. } => {
            observe::instance_status(&clients, &mut observed).await?;
            let r = diff::repairs(
                &desired::desired(&stack.file, &inputs),
                &observed,
                &last_ids,
            );
            not_repairs = Some(r.others);
            r.diff
        }
    };
    let plan = d.plan(&name);
    if !args.json {
        let mut text = view::plan::render_plan(&plan, &[]);
        if let Some(n @ 1..) = not_repairs {
            text.push_str(&format!(
                "{n} other difference(s) are not repairs: `hactl plan` shows them, `hactl up` applies them.\n"
            ));
        }
        view::print_out(&text);
    }
    // Before any prompt or change: a plan that destroys data needs `--allow-data-loss`.
    diff::refuse_data_loss(&d, run.allow_data_loss)?;
    if let Op::Heal { dry_run: true } = op {
        if args.json {
            view::print_json(&ApplyOutput {
                outcome: if plan.has_changes() {
                    "repairs_pending"
                } else {
                    "no_changes"
                },
                plan: &plan,
                outputs: &st.outputs,
                not_repairs,
                not_found: Default::default(),
            })?;
        } else {
            view::print_out(if plan.has_changes() {
                "\nDry run: nothing was changed.\n"
            } else {
                "\nNothing to heal.\n"
            });
        }
        // Like `heal --dry-run` on hosts: work left to do is not a healthy stack.
        return Ok(if plan.has_changes() {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        });
    }
    if plan.has_changes() && !auto_approve {
        view::confirm(if destroy {
            "remove these"
        } else {
            "apply these changes"
        })?;
    }

    let db_credentials = if plan.has_changes() && op == Op::Up {
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
        public_key: key,
        wait_timeout: Duration::from_secs(
            std::env::var("HACTL_AWS_WAIT_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1800),
        ),
        timeouts: stack
            .file
            .aws
            .as_ref()
            .map(|a| crate::provider::aws::wait::Timeouts::from_spec(&a.timeouts))
            .unwrap_or_default(),
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
                                view::note(&format!("{addr}: {}…", verb(action)));
                            }
                        }
                        Event::Failed { addr, error } => {
                            view::note(&format!("{addr}: failed: {error}"))
                        }
                        Event::Done {
                            addr,
                            action,
                            id,
                            kind,
                            elapsed,
                        } => {
                            if !json {
                                view::note(&format!(
                                    "{addr}: {} {}[{:.1}s]",
                                    done(action),
                                    id.as_deref().map(|i| format!("({i}) ")).unwrap_or_default(),
                                    elapsed.as_secs_f64()
                                ));
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
    let mut st = state.lock().await;
    let after = read(stack, &clients, &st).await?;
    record(&mut st, &after);
    backend.write(&mut st).await?;
    let save_errors = save_errors.lock().await.clone();
    let failed = !errors.is_empty() || !save_errors.is_empty();
    let outcome = match (failed, plan.has_changes()) {
        (true, _) => "failed",
        (false, true) => "applied",
        (false, false) => "no_changes",
    };
    let not_found = if destroy {
        not_found.into_iter().collect()
    } else {
        Default::default()
    };
    if json {
        view::print_json(&ApplyOutput {
            outcome,
            plan: &plan,
            outputs: &st.outputs,
            not_repairs,
            not_found,
        })?;
    } else {
        let mut text = String::new();
        for e in &save_errors {
            text.push_str(&format!("state: {e}\n"));
        }
        if !not_found.is_empty() {
            text.push_str("\nNot found in AWS (recorded in the state, deleted outside hactl?):\n");
            for (addr, id) in &not_found {
                text.push_str(&format!("  {addr}  {id}\n"));
            }
        }
        text.push_str(match (outcome, op) {
            ("failed", _) => "\nFailed: see above. Re-run to resume from what exists.\n",
            ("applied", Op::Heal { .. }) => "\nHealed.\n",
            ("applied", _) => "\nApplied.\n",
            (_, Op::Heal { .. }) => "\nNothing to heal.\n",
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

/// The hosts' public key (`aws.hosts.public_key`), inline or from the vault.
pub(crate) fn public_key(stack: &Stack) -> miette::Result<Option<vault::Secret>> {
    let Some(v) = stack
        .file
        .aws
        .as_ref()
        .and_then(|a| a.hosts.public_key.as_ref())
    else {
        return Ok(None);
    };
    let secrets = vault::open(stack)?;
    let key = secrets
        .resolve(&v.value)
        .ok_or_else(|| crate::provider::aws::AwsError::PublicKey("aws.hosts.public_key".into()))?;
    Ok(Some(key))
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
