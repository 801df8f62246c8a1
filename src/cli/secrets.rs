//! `hactl secrets …`: the age vault of a stack (see `crate::vault`).
//!
//! The arguments, and the dispatch to `vault::manage`, which does the work. File work is
//! blocking, so it runs on the blocking pool; `edit` stays async because it waits for the
//! editor while listening for signals.

use clap::{Args, Subcommand};
use miette::IntoDiagnostic;

use super::StackArgs;
use crate::vault::manage as m;
use crate::ExitStatus;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create the stack's vault and recipients file (and your age identity if you have none).
    Init(StackArgs),
    /// Set a secret. The value is read from stdin, or asked for without echo in a terminal;
    /// never given as an argument. A one-line value loses its trailing newline.
    Set(NameArgs),
    /// Print one secret's value on stdout, and nothing else (for scripts).
    Get(NameArgs),
    /// List the secret names (never the values).
    List(StackArgs),
    /// Remove a secret.
    #[command(name = "rm")]
    Remove(NameArgs),
    /// Edit the secrets in $EDITOR; the plaintext copy is private and wiped afterwards.
    Edit(StackArgs),
    /// Who can open the vault.
    #[command(subcommand)]
    Recipients(RecipientsCommand),
    /// Re-encrypt the vault to the recipients listed now.
    Rekey(StackArgs),
    /// Check that every `secret: NAME` in the stack names a secret in the vault.
    Check(StackArgs),
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The secret's name (letters, digits, `_`).
    pub name: String,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Subcommand)]
pub enum RecipientsCommand {
    /// Add a public key (age `age1…`, `ssh-ed25519 …`, `ssh-rsa …`, or a `.pub` file) and
    /// re-encrypt the vault to it.
    Add(KeyArgs),
    /// Remove a public key and re-encrypt the vault without it.
    Remove(KeyArgs),
    /// Print the recipients.
    List(StackArgs),
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The public key (quotes optional), or a file holding it.
    #[arg(required = true, num_args = 1..)]
    pub key: Vec<String>,
    /// Only change the recipients file (e.g. when you cannot open the vault yourself); someone
    /// who can must run `hactl secrets rekey` afterwards.
    #[arg(long)]
    pub no_rekey: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

pub async fn run(cmd: SecretsCommand) -> miette::Result<ExitStatus> {
    match cmd {
        SecretsCommand::Edit(a) => m::edit(a.file).await,
        other => tokio::task::spawn_blocking(move || run_blocking(other))
            .await
            .into_diagnostic()?,
    }
}

fn run_blocking(cmd: SecretsCommand) -> miette::Result<ExitStatus> {
    match cmd {
        SecretsCommand::Init(a) => m::init(&a.file),
        SecretsCommand::Set(a) => m::set(&a.stack.file, &a.name),
        SecretsCommand::Get(a) => m::get(&a.stack.file, &a.name),
        SecretsCommand::List(a) => m::list(&a.file, a.json),
        SecretsCommand::Remove(a) => m::remove(&a.stack.file, &a.name),
        SecretsCommand::Recipients(RecipientsCommand::Add(a)) => {
            m::recipients_add(&a.stack.file, &a.key, a.no_rekey)
        }
        SecretsCommand::Recipients(RecipientsCommand::Remove(a)) => {
            m::recipients_remove(&a.stack.file, &a.key, a.no_rekey)
        }
        SecretsCommand::Recipients(RecipientsCommand::List(a)) => {
            m::recipients_list(&a.file, a.json)
        }
        SecretsCommand::Rekey(a) => m::rekey(&a.file),
        SecretsCommand::Check(a) => m::check(&a.file),
        SecretsCommand::Edit(_) => Err(miette::miette!("edit runs on the async path")),
    }
}
