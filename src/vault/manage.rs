//! What `hactl secrets …` does to a stack's age vault, one function per command.
//!
//! Every operation loads the stack (for its name and `vault:` settings), does all its checks
//! and all its decrypting first, and writes last, atomically: an operation that fails leaves
//! the vault file byte-identical. Values only ever come from stdin or a no-echo prompt, never
//! from argv, and only `get` prints one. File work here is blocking (the command runs it on the
//! blocking pool); `edit` is async because it waits for the editor while listening for
//! signals.

use std::path::{Path, PathBuf};

use miette::IntoDiagnostic;

use crate::stack::Stack;
use crate::vault::io;
use crate::vault::{
    self, read_value, read_vault, write_vault, Recipients, Secrets, VaultError, VaultPaths,
};
use crate::ExitStatus;

fn load(file: &Path) -> miette::Result<(Stack, VaultPaths)> {
    let stack = crate::stack::load(file)?;
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

/// `secrets init`.
pub fn init(file: &Path) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(file)?;
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
pub fn create_vault(
    stack: &Stack,
    paths: &VaultPaths,
    secrets: &Secrets,
) -> miette::Result<Option<PathBuf>> {
    let mut recipients = Recipients::load(&paths.recipients)?;
    let (public, created) = vault::ensure_identity(stack)?;
    if let Some(p) = &created {
        io::note(&format!(
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
    io::note(&format!(
        "created the vault `{}` for the stack `{}`, readable by {} (listed in `{}`)",
        paths.vault.display(),
        stack.name(),
        count(recipients.keys().count(), "recipient"),
        paths.recipients.display()
    ));
    io::note(&format!("your public key: {public}"));
    Ok(created)
}

/// `secrets set NAME`.
pub fn set(file: &Path, name: &str) -> miette::Result<ExitStatus> {
    check_name(name)?;
    let (stack, paths) = load(file)?;
    let recipients = load_recipients(&paths)?;
    let (_, mut secrets) = read_vault(&stack, &paths)?;
    let value = read_value(name)?;
    let replaced = secrets.insert(name.to_string(), value);
    write_vault(&stack, &paths, &secrets, &recipients)?;
    io::note(&format!(
        "{} `{}` in `{}`",
        if replaced { "replaced" } else { "set" },
        name,
        paths.vault.display()
    ));
    Ok(ExitStatus::Success)
}

/// `secrets get NAME`.
pub fn get(file: &Path, name: &str) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(file)?;
    let (_, secrets) = read_vault(&stack, &paths)?;
    let Some(value) = secrets.get(name) else {
        return Err(unknown(&stack, &secrets, name).into());
    };
    io::print_out(value.expose());
    // A newline for people at a terminal; scripts get the value exactly.
    if io::stdout_is_terminal() && !value.expose().ends_with('\n') {
        io::print_out("\n");
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

/// `secrets list`.
pub fn list(file: &Path, json: bool) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(file)?;
    let (_, secrets) = read_vault(&stack, &paths)?;
    let names: Vec<&str> = secrets.names().collect();
    if json {
        io::put_named("secrets", &names)?;
    } else {
        let mut out = String::new();
        for n in names {
            out.push_str(n);
            out.push('\n');
        }
        io::print_out(&out);
    }
    Ok(ExitStatus::Success)
}

/// `secrets rm NAME`.
pub fn remove(file: &Path, name: &str) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(file)?;
    let recipients = load_recipients(&paths)?;
    let (_, mut secrets) = read_vault(&stack, &paths)?;
    if !secrets.remove(name) {
        return Err(unknown(&stack, &secrets, name).into());
    }
    write_vault(&stack, &paths, &secrets, &recipients)?;
    io::note(&format!(
        "removed `{}` from `{}`",
        name,
        paths.vault.display()
    ));
    warn_dangling(&stack, &secrets);
    Ok(ExitStatus::Success)
}

/// `secrets edit`.
pub async fn edit(file: PathBuf) -> miette::Result<ExitStatus> {
    let shown_file = file.clone();
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
        io::note("no changes; the vault is unchanged");
        return Ok(ExitStatus::Success);
    }
    tokio::task::spawn_blocking(move || {
        write_vault(&stack, &paths, &edited, &recipients)?;
        warn_dangling(&stack, &edited);
        Ok::<_, VaultError>(())
    })
    .await
    .into_diagnostic()??;
    io::note(&format!(
        "updated `{}`: {}",
        shown_file.display(),
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
        io::note(&format!("warning: {at}{}", p.message));
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

/// `secrets recipients add KEY`.
pub fn recipients_add(file: &Path, words: &[String], no_rekey: bool) -> miette::Result<ExitStatus> {
    let key = key_from_args(words)?;
    let (stack, paths) = load(file)?;
    let mut recipients = Recipients::load(&paths.recipients)?;
    if !recipients.add(&key)? {
        io::note("already a recipient; nothing to do");
        return Ok(ExitStatus::Success);
    }
    if no_rekey || !paths.vault.exists() {
        crate::vault::write_recipients(&paths, &recipients)?;
        io::note(&format!(
            "added the recipient to `{}`; the vault is not re-encrypted yet: run `hactl secrets rekey -f {}`",
            paths.recipients.display(),
            stack.path.display()
        ));
        return Ok(ExitStatus::Success);
    }
    let (_, secrets) = read_vault(&stack, &paths)?;
    write_vault(&stack, &paths, &secrets, &recipients)?;
    crate::vault::write_recipients(&paths, &recipients)?;
    io::note(&format!(
        "added the recipient and re-encrypted `{}` to {}",
        paths.vault.display(),
        count(recipients.keys().count(), "recipient")
    ));
    Ok(ExitStatus::Success)
}

/// `secrets recipients remove KEY`.
pub fn recipients_remove(
    file: &Path,
    words: &[String],
    no_rekey: bool,
) -> miette::Result<ExitStatus> {
    let key = key_from_args(words)?;
    let (stack, paths) = load(file)?;
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
    if no_rekey || !paths.vault.exists() {
        crate::vault::write_recipients(&paths, &recipients)?;
        io::note(&format!(
            "removed the recipient from `{}`; the vault is not re-encrypted yet: run `hactl secrets rekey -f {}`",
            paths.recipients.display(),
            stack.path.display()
        ));
    } else {
        let (_, secrets) = read_vault(&stack, &paths)?;
        write_vault(&stack, &paths, &secrets, &recipients)?;
        crate::vault::write_recipients(&paths, &recipients)?;
        io::note(&format!(
            "removed the recipient and re-encrypted `{}` to {}",
            paths.vault.display(),
            count(recipients.keys().count(), "recipient")
        ));
    }
    io::note(
        "warning: the removed key can still open every earlier version of the vault in git \
         history (and any copy someone kept): rotate every secret in it — change each password \
         or key where it is used, then `hactl secrets set` the new value",
    );
    Ok(ExitStatus::Success)
}

/// `secrets recipients list`.
pub fn recipients_list(file: &Path, json: bool) -> miette::Result<ExitStatus> {
    let (_, paths) = load(file)?;
    let recipients = Recipients::load(&paths.recipients)?;
    let keys: Vec<&str> = recipients.keys().collect();
    if json {
        io::put_named("recipients", &keys)?;
    } else {
        let mut out = String::new();
        for k in keys {
            out.push_str(k);
            out.push('\n');
        }
        io::print_out(&out);
    }
    Ok(ExitStatus::Success)
}

/// `secrets rekey`.
pub fn rekey(file: &Path) -> miette::Result<ExitStatus> {
    let (stack, paths) = load(file)?;
    let recipients = load_recipients(&paths)?;
    let (_, secrets) = read_vault(&stack, &paths)?;
    write_vault(&stack, &paths, &secrets, &recipients)?;
    io::note(&format!(
        "re-encrypted `{}` to {} (listed in `{}`)",
        paths.vault.display(),
        count(recipients.keys().count(), "recipient"),
        paths.recipients.display()
    ));
    io::note(
        "note: if this removed anyone, their key still opens the old vault in git history: \
         rotate the secrets they could read",
    );
    Ok(ExitStatus::Success)
}

/// `secrets check`.
pub fn check(file: &Path) -> miette::Result<ExitStatus> {
    let (stack, _) = load(file)?;
    vault::open_checked(&stack)?;
    io::note(&format!(
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
