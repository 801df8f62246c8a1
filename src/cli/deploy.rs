//! `hactl deploy`, `hactl rollback`, `hactl deploy history` and `hactl lab demo-image`:
//! arguments here, the decisions in `crate::deploy`, the printing in `crate::view`.

use std::path::PathBuf;

use clap::Args;

use crate::deploy::demo_image;
use crate::{view, ExitStatus};

/// `hactl lab demo-image`.
#[derive(Debug, Args)]
pub struct DemoImageArgs {
    /// The version the app serves and the image tag (`localhost/hactl-demo:VERSION`).
    #[arg(long)]
    pub version: String,
    /// Build a version whose health endpoint fails (404), to exercise rollbacks.
    #[arg(long)]
    pub broken: bool,
    /// Where to write the image archive (docker-archive, for `podman load`/`docker load`).
    #[arg(short = 'o', long = "output", value_name = "FILE.tar")]
    pub output: PathBuf,
    /// One JSON document on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
}

pub fn run_demo_image(a: DemoImageArgs) -> miette::Result<ExitStatus> {
    let img = demo_image::write(&a.version, a.broken, &a.output)?;
    if a.json {
        view::print_json(&img)?;
    } else {
        view::print_out(&format!(
            "wrote {} ({}, {} bytes{}): load it with `podman load -i {}`\n",
            img.path.display(),
            img.reference,
            img.bytes,
            if img.broken {
                ", health endpoint broken"
            } else {
                ""
            },
            img.path.display()
        ));
    }
    Ok(ExitStatus::Success)
}

use std::time::Duration;

use clap::Subcommand;

use crate::deploy::exec::{self, DeployReport, Options, Progress, Session, Target};
use crate::deploy::probe::{self, ProbeConfig};
use crate::deploy::{rollout, DeployError};
use crate::stack;

/// `hactl deploy`: a rolling deploy, or `hactl deploy history`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeployCommand {
    #[command(subcommand)]
    pub sub: Option<DeploySub>,
    #[command(flatten)]
    pub args: DeployArgs,
}

#[derive(Debug, Subcommand)]
pub enum DeploySub {
    /// The deploy history kept on the hosts: version, time, who, outcome.
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", env = "HACTL_STACK", value_name = "STACK")]
    pub file: PathBuf,
    /// One JSON document on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
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
    /// Hosts updated at once; the first batch is the canary.
    #[arg(long, default_value_t = 1, value_name = "N")]
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
    /// Send steady traffic to the public endpoint during the deploy (default URL: the VIP's
    /// haproxy or nginx port) and report failed requests and p50/p99 latency.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub probe: Option<String>,
    /// Probe requests per second.
    #[arg(long, default_value_t = 20.0, value_name = "R")]
    pub probe_rate: f64,
    /// Failed probe requests tolerated; over it the deploy rolls back (default: not gating).
    #[arg(long, value_name = "N")]
    pub probe_budget: Option<u64>,
    /// Keep probing this long after the last batch.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "5s")]
    pub probe_soak: Duration,
    /// Hard limit on the probe's duration, whatever the deploy does.
    #[arg(long, value_name = "D", value_parser = crate::stack::duration::arg, default_value = "10m")]
    pub probe_max: Duration,
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
    if let Some(DeploySub::History(h)) = c.sub {
        return run_history(h).await;
    }
    let a = c.args;
    let file = stack_file(&a.run)?;
    let stack = stack::load(&file)?;
    check_stack(&stack)?;
    let target = match (&a.image, &a.archive) {
        (Some(i), _) => Target {
            image: i.clone(),
            archive: None,
        },
        (None, Some(p)) => exec::read_archive(p)?,
        (None, None) => exec::stack_target(&stack)?,
    };
    // The stack's lock (as `up` takes it), besides the deploy lock on the first app host.
    let guard = super::plan::lock(&stack, "deploy", a.run.lock_wait).await?;
    let r = async {
        let session = Session::open(&stack).await?;
        let r = go(&session, &stack, target, &a.run, "deploy").await;
        session.close().await;
        r
    }
    .await;
    guard.release().await;
    finish(r?, &stack, &a.run).await
}

pub async fn run_rollback(a: RunArgs) -> miette::Result<ExitStatus> {
    let file = stack_file(&a)?;
    let stack = stack::load(&file)?;
    check_stack(&stack)?;
    let guard = super::plan::lock(&stack, "rollback", a.lock_wait).await?;
    let session = match Session::open(&stack).await {
        Ok(s) => s,
        Err(e) => {
            guard.release().await;
            return Err(e.into());
        }
    };
    let r = async {
        let history = session.history().await?;
        let apps = session.inspect("").await?;
        // the version most hosts run now
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for a in apps.values() {
            if let Some(i) = &a.image {
                *counts.entry(i.clone()).or_default() += 1;
            }
        }
        let current = counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(i, _)| i)
            .unwrap_or_default();
        let prev = rollout::previous_good(&history, &current)
            .ok_or_else(|| DeployError::NoPrevious(rollout::version_of(&current)))?;
        Ok::<_, miette::Report>(Target {
            image: prev,
            archive: None,
        })
    }
    .await;
    let r = match r {
        Ok(target) => go(&session, &stack, target, &a, "rollback").await,
        Err(e) => Err(e),
    };
    session.close().await;
    guard.release().await;
    finish(r?, &stack, &a).await
}

fn stack_file(a: &RunArgs) -> miette::Result<PathBuf> {
    a.file.clone().ok_or_else(|| {
        miette::miette!(
            code = "hactl::deploy::no_stack",
            help = "pass `-f STACK` or set `HACTL_STACK`",
            "which stack? no stack file given"
        )
    })
}

fn check_stack(stack: &stack::Stack) -> Result<(), DeployError> {
    if stack.file.app.is_none() {
        return Err(DeployError::NoApp(stack.name().into()));
    }
    if stack.file.provider.value != crate::stack::model::ProviderKind::Hosts {
        return Err(DeployError::Provider("aws".into()));
    }
    Ok(())
}

/// The default probe URL: the VIP on haproxy's port (or nginx's).
fn default_probe_url(stack: &stack::Stack) -> Option<String> {
    let vip = stack.vip.as_ref()?;
    let port = match (&stack.file.haproxy, &stack.file.nginx) {
        (Some(h), _) => h.listen.value,
        (None, Some(n)) => n.listen.value,
        _ => 80,
    };
    Some(match vip.address {
        std::net::IpAddr::V4(a) => format!("http://{a}:{port}/"),
        std::net::IpAddr::V6(a) => format!("http://[{a}]:{port}/"),
    })
}

async fn go(
    session: &Session<'_>,
    stack: &stack::Stack,
    target: Target,
    a: &RunArgs,
    op: &'static str,
) -> miette::Result<DeployReport> {
    let probe = match &a.probe {
        None => None,
        Some(u) => {
            let url = if u.is_empty() {
                default_probe_url(stack).ok_or_else(|| {
                    DeployError::ProbeUrl("the stack has no VIP: give `--probe URL`".into())
                })?
            } else {
                u.clone()
            };
            let (addr, host_header, path) =
                probe::parse_url(&url).map_err(DeployError::ProbeUrl)?;
            let rate = a.probe_rate.clamp(0.1, 1000.0);
            Some((
                ProbeConfig {
                    addr,
                    host_header,
                    path,
                    rate,
                    max_requests: (rate * a.probe_max.as_secs_f64()).ceil() as u64,
                    max_duration: a.probe_max,
                    timeout: Duration::from_secs(5),
                },
                url,
            ))
        }
    };
    if !a.auto_approve {
        view::confirm(&format!(
            "{op} {} ({}) to {} host(s) of stack `{}` in batches of {}",
            rollout::version_of(&target.image),
            target.image,
            session.app_hosts.len(),
            stack.name(),
            a.batch.max(1)
        ))?;
    }
    let opts = Options {
        batch: a.batch.max(1),
        max_failed_hosts: a.max_failed_hosts,
        lock_wait: a.lock_wait,
        probe,
        probe_budget: a.probe_budget,
        probe_soak: if a.probe.is_some() {
            a.probe_soak
        } else {
            Duration::ZERO
        },
        op,
    };
    let progress = Progress::new(false);
    Ok(exec::deploy(session, &target, &opts, &progress).await?)
}

/// Prints the deploy's outcome; a deploy that went through then waits until the stack serves
/// (`cli/wait.rs`), and with `--json` the report carries the wait's outcome as `serving`.
async fn finish(r: DeployReport, stack: &stack::Stack, a: &RunArgs) -> miette::Result<ExitStatus> {
    let deployed = matches!(r.outcome, rollout::Outcome::Deployed);
    let wait = a.wait.wait().filter(|_| deployed);
    if !a.json {
        view::print_out(&view::deploy::human(&r));
    }
    let serving = match wait {
        Some(t) => Some(super::wait::until_serving(stack, t, None).await),
        None => None,
    };
    if a.json {
        let mut doc = serde_json::to_value(&r)
            .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?;
        if let (Some(s), Some(obj)) = (&serving, doc.as_object_mut()) {
            obj.insert(
                "serving".into(),
                serde_json::to_value(s)
                    .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?,
            );
        }
        view::print_json(&doc)?;
    }
    Ok(match (deployed, wait.zip(serving.as_ref())) {
        (false, _) => ExitStatus::Failure,
        (true, Some((t, s))) => super::wait::finish(stack, t, s),
        (true, None) => ExitStatus::Success,
    })
}

async fn run_history(h: HistoryArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&h.file)?;
    check_stack(&stack)?;
    let session = Session::open(&stack).await?;
    let r = session.history().await;
    session.close().await;
    let entries = r?;
    if h.json {
        view::json::put_named("history", &entries)?;
    } else {
        view::print_out(&view::deploy::history(&entries));
    }
    Ok(ExitStatus::Success)
}
