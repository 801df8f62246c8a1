//! `hactl secrets …`: the age vault of a stack (see `crate::vault`).
//!
//! Every command loads the stack (for its name and `vault:` settings), does all its checks and
//! all its decrypting first, and writes last, atomically: a command that fails leaves the vault
//! file byte-identical. Values only ever come from stdin or a no-echo prompt, never from argv,
//! and only `get` prints one. File work is blocking, so it runs on the blocking pool; `edit`
//! stays async because it waits for the editor while listening for signals.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use miette::IntoDiagnostic;

use super::StackArgs;
use crate::stack::Stack;
use crate::vault::{
    self, read_value, read_vault, write_vault, Recipients, Secrets, VaultError, VaultPaths,
};
use crate::view;
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
        SecretsCommand::Edit(a) => edit(a).await,
        other => tokio::task::spawn_blocking(move || run_blocking(other))
            .await
            .into_diagnostic()?,
    }
}

fn run_blocking(cmd: SecretsCommand) -> miette::Result<ExitStatus> {
    match cmd {
        SecretsCommand::Init(a) => init(&a),
        SecretsCommand::Set(a) => set(&a),
        SecretsCommand::Get(a) => get(&a),
        SecretsCommand::List(a) => list(&a),
        SecretsCommand::Remove(a) => remove(&a),
        SecretsCommand::Recipients(RecipientsCommand::Add(a)) => recipients_add(&a),
        SecretsCommand::Recipients(RecipientsCommand::Remove(a)) => recipients_remove(&a),
        SecretsCommand::Recipients(RecipientsCommand::List(a)) => recipients_list(&a),
        SecretsCommand::Rekey(a) => rekey(&a),
        SecretsCommand::Check(a) => check(&a),
        SecretsCommand::Edit(_) => Err(miette::miette!("edit runs on the async path")),
    }
}

fn load(args: &StackArgs) -> miette::Result<(Stack, VaultPaths)> {
    let stack = crate::stack::load(&args.file)?;
    let paths = VaultPaths::of(&stack);
    Ok((stack, paths))
}

/// The recipients file, which must list somebody.
fn load_recipients(paths: &VaultPaths) -> Result<Recipients, VaultError> {
    let r = Recipients::load(&paths.recipients)?;
    if r.is_empty() {
        return Err(VaultError::NoRecipients {
            path: paths.recipients.display().to_string(),
        });
    }
    Ok(r)
}

fn check_name(name: &str) -> Result<(), VaultError> {
    if vault::valid_name(name) {
        Ok(())
    } else {
        Err(VaultError::BadName { name: name.into() })
    }
}

fn init(args: &StackArgs) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(args)?;
    if paths.vault.exists() {
        return Err(VaultError::Exists {
            path: paths.vault.display().to_string(),
        }
        .into());
    }
    create_vault(&stack, &paths, &Secrets::default())?;
    Ok(ExitStatus::Success)
}

/// Writes the stack's vault holding `secrets`, readable by the user's age identity (created,
/// 0600, when there is none) plus whoever the recipients file lists already; writes the
/// recipients file. Returns the identity file when one was created. Used by `secrets init`
/// and `hactl init`.
pub(super) fn create_vault(
    stack: &Stack,
    paths: &VaultPaths,
    secrets: &Secrets,
) -> miette::Result<Option<PathBuf>> {
    let mut recipients = Recipients::load(&paths.recipients)?;
    let (public, created) = vault::ensure_identity(stack)?;
    if let Some(p) = &created {
        view::note(&format!(
            "created the age identity `{}` (0600); back it up: without it (or another \
             recipient) the vault cannot be opened",
            p.display()
        ));
    }
    let new_file = recipients.is_empty() && !paths.recipients.exists();
    if new_file {
        recipients.lines.push(vault::RecipientLine::Other(format!(
            "# Who can open `{}`: one age (`age1…`) or SSH public key per line.\n\
             # Change it with `hactl secrets recipients add|remove KEY -f {}`.",
            file_name(&paths.vault),
            stack.path.display()
        )));
    }
    recipients.add(&public)?;
    if let Some(dir) = paths.vault.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).into_diagnostic()?;
    }
    write_vault(stack, paths, secrets, &recipients)?;
    crate::vault::write_recipients(paths, &recipients)?;
    view::note(&format!(
        "created the vault `{}` for the stack `{}`, readable by {} (listed in `{}`)",
        paths.vault.display(),
        stack.name(),
        count(recipients.keys().count(), "recipient"),
        paths.recipients.display()
    ));
    view::note(&format!("your public key: {public}"));
    Ok(created)
}

fn set(args: &NameArgs) -> miette::Result<ExitStatus> {
    check_name(&args.name)?;
    let (stack, paths) = load(&args.stack)?;
    let recipients = load_recipients(&paths)?;
    let (_, mut secrets) = read_vault(&stack, &paths)?;
    let value = read_value(&args.name)?;
    let replaced = secrets.insert(args.name.clone(), value);
    write_vault(&stack, &paths, &secrets, &recipients)?;
    view::note(&format!(
        "{} `{}` in `{}`",
        if replaced { "replaced" } else { "set" },
        args.name,
        paths.vault.display()
    ));
    Ok(ExitStatus::Success)
}

fn get(args: &NameArgs) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(&args.stack)?;
    let (_, secrets) = read_vault(&stack, &paths)?;
    let Some(value) = secrets.get(&args.name) else {
        return Err(unknown(&stack, &secrets, &args.name).into());
    };
    view::print_out(value.expose());
    // A newline for people at a terminal; scripts get the value exactly.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !value.expose().ends_with('\n') {
        view::print_out("\n");
    }
    Ok(ExitStatus::Success)
}

fn unknown(stack: &Stack, secrets: &Secrets, name: &str) -> VaultError {
    VaultError::UnknownSecret {
        stack: stack.name().to_string(),
        name: name.to_string(),
        hint: vault::refs_hint(stack, secrets, name),
    }
}

fn list(args: &StackArgs) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(args)?;
    let (_, secrets) = read_vault(&stack, &paths)?;
    let names: Vec<&str> = secrets.names().collect();
    if args.json {
        view::print_json(&names)?;
    } else {
        let mut out = String::new();
        for n in names {
            out.push_str(n);
            out.push('\n');
        }
        view::print_out(&out);
    }
    Ok(ExitStatus::Success)
}

fn remove(args: &NameArgs) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(&args.stack)?;
    let recipients = load_recipients(&paths)?;
    let (_, mut secrets) = read_vault(&stack, &paths)?;
    if !secrets.remove(&args.name) {
        return Err(unknown(&stack, &secrets, &args.name).into());
    }
    write_vault(&stack, &paths, &secrets, &recipients)?;
    view::note(&format!(
        "removed `{}` from `{}`",
        args.name,
        paths.vault.display()
    ));
    warn_dangling(&stack, &secrets);
    Ok(ExitStatus::Success)
}

async fn edit(args: StackArgs) -> miette::Result<ExitStatus> {
    let file = args.file.clone();
    let (stack, paths, recipients, secrets) = tokio::task::spawn_blocking(move || {
        let stack = crate::stack::load(&file)?;
        let paths = VaultPaths::of(&stack);
        let recipients = load_recipients(&paths)?;
        let (_, secrets) = read_vault(&stack, &paths)?;
        Ok::<_, miette::Report>((stack, paths, recipients, secrets))
    })
    .await
    .into_diagnostic()??;

    let initial = vault::encode_edit(stack.name(), &secrets);
    let shown = paths.vault.clone();
    let edited = vault::edit_plaintext(stack.name(), &initial, |text| {
        vault::decode_edit(text, &shown)
    })
    .await?;
    drop(initial);

    let summary = summarize(&secrets, &edited);
    if summary.is_empty() {
        view::note("no changes; the vault is unchanged");
        return Ok(ExitStatus::Success);
    }
    tokio::task::spawn_blocking(move || {
        write_vault(&stack, &paths, &edited, &recipients)?;
        warn_dangling(&stack, &edited);
        Ok::<_, VaultError>(())
    })
    .await
    .into_diagnostic()??;
    view::note(&format!(
        "updated `{}`: {}",
        args.file.display(),
        summary.join(", ")
    ));
    Ok(ExitStatus::Success)
}

/// After a secret is removed: the stack's references that no longer resolve (a warning here;
/// `validate`, `plan` and `up` refuse them).
fn warn_dangling(stack: &Stack, secrets: &Secrets) {
    for p in vault::check_references(stack, secrets) {
        let at = match (p.line, p.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}: ", stack.path.display()),
            _ => String::new(),
        };
        view::note(&format!("warning: {at}{}", p.message));
    }
}

/// What changed, by name only.
fn summarize(before: &Secrets, after: &Secrets) -> Vec<String> {
    let mut out = Vec::new();
    for n in after.names() {
        match before.get(n) {
            None => out.push(format!("added `{n}`")),
            Some(v) if Some(v) != after.get(n) => out.push(format!("changed `{n}`")),
            Some(_) => {}
        }
    }
    for n in before.names() {
        if !after.contains(n) {
            out.push(format!("removed `{n}`"));
        }
    }
    out
}

/// The key from the arguments: the words joined, or the first key line of a file.
fn key_from_args(words: &[String]) -> miette::Result<String> {
    let joined = words.join(" ");
    if words.len() == 1 {
        let p = Path::new(&words[0]);
        if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| VaultError::io("read", p, e))?;
            if let Some(line) = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
            {
                return Ok(line.to_string());
            }
            return Err(miette::miette!("`{}` holds no key", p.display()));
        }
    }
    Ok(joined)
}

fn recipients_add(args: &KeyArgs) -> miette::Result<ExitStatus> {
    let key = key_from_args(&args.key)?;
    let (stack, paths) = load(&args.stack)?;
    let mut recipients = Recipients::load(&paths.recipients)?;
    if !recipients.add(&key)? {
        view::note("already a recipient; nothing to do");
        return Ok(ExitStatus::Success);
    }
    if args.no_rekey || !paths.vault.exists() {
        crate::vault::write_recipients(&paths, &recipients)?;
        view::note(&format!(
            "added the recipient to `{}`; the vault is not re-encrypted yet: run `hactl secrets rekey -f {}`",
            paths.recipients.display(),
            stack.path.display()
        ));
        return Ok(ExitStatus::Success);
    }
    let (_, secrets) = read_vault(&stack, &paths)?;
    write_vault(&stack, &paths, &secrets, &recipients)?;
    crate::vault::write_recipients(&paths, &recipients)?;
    view::note(&format!(
        "added the recipient and re-encrypted `{}` to {}",
        paths.vault.display(),
        count(recipients.keys().count(), "recipient")
    ));
    Ok(ExitStatus::Success)
}

fn recipients_remove(args: &KeyArgs) -> miette::Result<ExitStatus> {
    let key = key_from_args(&args.key)?;
    let (stack, paths) = load(&args.stack)?;
    let mut recipients = Recipients::load(&paths.recipients)?;
    if !recipients.remove(&key) {
        return Err(VaultError::NotARecipient {
            key: key.chars().take(40).collect(),
            path: paths.recipients.display().to_string(),
        }
        .into());
    }
    if recipients.is_empty() {
        return Err(VaultError::NoRecipients {
            path: paths.recipients.display().to_string(),
        }
        .into());
    }
    if args.no_rekey || !paths.vault.exists() {
        crate::vault::write_recipients(&paths, &recipients)?;
        view::note(&format!(
            "removed the recipient from `{}`; the vault is not re-encrypted yet: run `hactl secrets rekey -f {}`",
            paths.recipients.display(),
            stack.path.display()
        ));
    } else {
        let (_, secrets) = read_vault(&stack, &paths)?;
        write_vault(&stack, &paths, &secrets, &recipients)?;
        crate::vault::write_recipients(&paths, &recipients)?;
        view::note(&format!(
            "removed the recipient and re-encrypted `{}` to {}",
            paths.vault.display(),
            count(recipients.keys().count(), "recipient")
        ));
    }
    view::note(
        "warning: the removed key can still open every earlier version of the vault in git \
         history (and any copy someone kept): rotate every secret in it — change each password \
         or key where it is used, then `hactl secrets set` the new value",
    );
    Ok(ExitStatus::Success)
}

fn recipients_list(args: &StackArgs) -> miette::Result<ExitStatus> {
    let (_, paths) = load(args)?;
    let recipients = Recipients::load(&paths.recipients)?;
    let keys: Vec<&str> = recipients.keys().collect();
    if args.json {
        view::print_json(&keys)?;
    } else {
        let mut out = String::new();
        for k in keys {
            out.push_str(k);
            out.push('\n');
        }
        view::print_out(&out);
    }
    Ok(ExitStatus::Success)
}

fn rekey(args: &StackArgs) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(args)?;
    let recipients = load_recipients(&paths)?;
    let (_, secrets) = read_vault(&stack, &paths)?;
    write_vault(&stack, &paths, &secrets, &recipients)?;
    view::note(&format!(
        "re-encrypted `{}` to {} (listed in `{}`)",
        paths.vault.display(),
        count(recipients.keys().count(), "recipient"),
        paths.recipients.display()
    ));
    view::note(
        "note: if this removed anyone, their key still opens the old vault in git history: \
         rotate the secrets they could read",
    );
    Ok(ExitStatus::Success)
}

fn check(args: &StackArgs) -> miette::Result<ExitStatus> {
    let (stack, _) = load(args)?;
    vault::open_checked(&stack)?;
    view::note(&format!(
        "every secret reference in `{}` is in its vault ({} checked)",
        stack.path.display(),
        vault::references(&stack).len()
    ));
    Ok(ExitStatus::Success)
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| PathBuf::from(p).display().to_string())
}
