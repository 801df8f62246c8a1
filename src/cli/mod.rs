//! Command-line arguments (clap derive structs only) and dispatch: one file per command, each
//! doing load → engine → view. Settings come from arguments, then the environment.

mod aws;
mod balancer;
mod completions;
mod demo_image;
mod deploy;
mod drill;
mod explain;
mod heal;
mod history;
mod init;
mod lab;
mod logs;
mod outputs;
mod plan;
mod probe_args;
mod render;
mod schema;
mod secrets;
mod state;
mod status;
mod validate;
mod wait;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ExitStatus;

#[derive(Debug, Parser)]
#[command(
    name = "hactl",
    version,
    about = "One stack file to a highly available web stack"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// NDJSON on stdout: one event per step of the engine as it happens, then the command's
    /// `--json` document as the last event (docs/json.md). Implies `--json`.
    #[arg(long, global = true)]
    pub json_events: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack file and report every problem at once.
    Validate(StackArgs),
    /// Render every file hactl would push, for every host (or one).
    Render(render::RenderArgs),
    /// Print the stack file format as a JSON Schema (for editors and pipelines).
    Schema,
    /// Show what `up` would change on each host, with diffs.
    Plan(plan::PlanArgs),
    /// Provision and configure everything the stack describes.
    Up(plan::UpArgs),
    /// Remove what hactl created, and nothing else.
    Down(plan::DownArgs),
    /// The outputs saved in the state (LB DNS name, DB endpoint, EFS id, host addresses).
    Outputs(outputs::OutputsArgs),
    /// Inspect and repair the state and its lock.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Per host: reachable, VRRP state, priority, services, VIP holder.
    Status(status::StatusArgs),
    /// keepalived's priority arithmetic for the stack: who holds the VIP in each failure case.
    Explain(explain::ExplainArgs),
    /// Inject a fault on the VIP holder and measure the failover (lab and loopback only).
    Drill(drill::DrillArgs),
    /// Find hosts and services that are down and converge: reconfigure hosts that came back,
    /// make every redis instance follow its port's one primary (`--watch` to keep at it).
    Heal(heal::HealArgs),
    /// Logs of keepalived, nginx, haproxy or the app from every host, merged in time order.
    Logs(logs::LogsArgs),
    /// Roll a new app version out host by host: drain, blue/green, health gate, rollback.
    Deploy(deploy::DeployCommand),
    /// Return the app to the previous good version (from the deploy history).
    Rollback(deploy::RunArgs),
    /// Local lab hosts in network namespaces.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// The age-encrypted vault.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Write a starting stack file and its vault from flags (asks for what is missing only on
    /// a terminal).
    Init(init::InitArgs),
    /// The shell completion script for bash, zsh, fish or powershell, on stdout.
    Completions(completions::CompletionsArgs),
    /// The man page (roff) on stdout, or every page into `--dir`.
    Man(completions::ManArgs),
}

/// The stack file argument shared by every stack command.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", env = "HACTL_STACK", value_name = "STACK")]
    pub file: PathBuf,
    /// One JSON document on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: Cli) -> miette::Result<ExitStatus> {
    match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Render(a) => render::run(a).await,
        Command::Schema => schema::run(),
        Command::Plan(a) => plan::run_plan(a).await,
        Command::Up(a) => plan::run_up(a).await,
        Command::Down(a) => plan::run_down(a).await,
        Command::Outputs(a) => outputs::run(a).await,
        Command::State(c) => state::run(c).await,
        Command::Status(a) => status::run(a).await,
        Command::Explain(a) => explain::run(a),
        Command::Drill(a) => drill::run(a).await,
        Command::Heal(a) => heal::run(a).await,
        Command::Logs(a) => logs::run(a).await,
        Command::Deploy(c) => deploy::run_deploy(c).await,
        Command::Rollback(a) => deploy::run_rollback(a).await,
        Command::Lab(c) => lab::run(c).await,
        Command::Secrets(c) => secrets::run(c).await,
        Command::Init(a) => init::run(a),
        Command::Completions(a) => completions::run_completions(a),
        Command::Man(a) => completions::run_man(a),
    }
}

/// Takes the stack's lock for `operation` (`deploy`, `rollback`, a `heal` round), saying whom
/// it waits for.
pub(crate) async fn lock(
    stack: &crate::stack::Stack,
    operation: &str,
    wait: std::time::Duration,
) -> miette::Result<crate::state::LockGuard> {
    let backend = crate::state::Backend::for_stack(stack).await?;
    crate::engine::run::lock(&backend, operation, wait, &*crate::view::hooks()).await
}
