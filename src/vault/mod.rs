//! The age vault: secrets encrypted in the repo, opened with each person's or CI's own key.
//!
//! One vault per stack (`secrets/<stack>.age` beside the stack's repo, or the stack's
//! `vault.file`): an armored age file whose plaintext is a small YAML document
//! `{stack: NAME, secrets: {name: value}}`. The stack name inside the ciphertext binds the vault
//! to its stack, so a vault copied from another stack is refused instead of silently used. The
//! recipients (`<vault>.recipients`, plain text) sit beside it so a review shows who can read.
//!
//! [`Secret`] is the only type that holds a decrypted value; it redacts itself in `Debug`,
//! `Display` and `Serialize`, and wipes its memory on drop, so a secret can only reach a
//! template or a host by an explicit `expose()` call. Plaintext never touches disk except in
//! `secrets edit`, which uses a private 0700 directory that is wiped on every exit path.
//!
//! The rest of hactl uses two functions: [`open`] (decrypt the stack's vault) and
//! [`check_references`] (every `secret: NAME` in the stack names a secret that exists).

mod edit;
mod error;
mod file;
mod identity;
pub mod io;
pub mod manage;
mod payload;
mod prompt;
mod recipients;
pub mod refs;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::stack::Stack;

pub use error::VaultError;
pub use refs::{check_references, references};

pub(crate) use edit::edit_plaintext;
pub(crate) use file::{read_vault, write_recipients, write_vault, VaultPaths};
pub(crate) use identity::ensure_identity;
pub(crate) use payload::{decode_edit, encode_edit};
pub(crate) use prompt::read_value;
pub(crate) use recipients::{RecipientLine, Recipients};
pub(crate) use refs::hint as refs_hint;

/// Keeps what hactl decrypts out of core files, for the rest of the process's life: the core
/// size limit goes to 0, soft and hard (`setrlimit(2)` `RLIMIT_CORE`; inherited by the editor
/// `secrets edit` starts, which holds the plaintext too), and the process is marked not
/// dumpable (`prctl(2)` `PR_SET_DUMPABLE` 0: no core file even if a limit is raised or
/// `core_pattern` pipes to a handler, and no ptrace or `/proc/PID/mem` for other processes of
/// the same user). Called before any identity or plaintext is in memory.
///
/// Best effort: both calls only fail on a kernel without them, and there is nothing better to
/// do then than to say so.
pub fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; prctl(PR_SET_DUMPABLE) takes plain integers.
    let (limit, dumpable) = unsafe {
        (
            libc::setrlimit(libc::RLIMIT_CORE, &zero),
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0),
        )
    };
    if limit != 0 || dumpable != 0 {
        tracing::warn!(
            "could not disable core dumps: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A decrypted secret value that never prints itself and wipes its memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The plain value, for the one place that must use it (a template, a host's stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Reading a secret from the vault's YAML. Integers are accepted (and kept as written) because
/// people write `port: 5432` in an editor; anything else must be a string. The error names the
/// type only, never the value.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The shortest secret value (or line of one) that [`Secrets::redact`] replaces.
pub const REDACT_MIN: usize = 4;

/// The decrypted vault: name → secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub values: BTreeMap<String, Secret>,
}

impl Secrets {
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
    /// Secret names, sorted (names are not secret).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    /// Sets a secret; returns true when it replaced an existing one.
    pub fn insert(&mut self, name: String, value: Secret) -> bool {
        self.values.insert(name, value).is_some()
    }
    pub fn remove(&mut self, name: &str) -> bool {
        self.values.remove(name).is_some()
    }
    /// `text` (a tool's output: `keepalived -t`, `nginx -t`, `haproxy -c`, a service's
    /// errors) with every secret value replaced by `(secret NAME)`. A checker quotes the
    /// line it refuses, so a secret with a line break shows in pieces: each line of a
    /// multi-line secret is redacted too. Pieces shorter than [`REDACT_MIN`] characters are
    /// left alone (redacting every `a` would destroy the output and protect nothing).
    pub fn redact(&self, text: &str) -> String {
        let mut needles: Vec<(&str, &str)> = Vec::new();
        for (name, secret) in &self.values {
            let v = secret.expose();
            needles.push((v, name));
            for line in v.lines().map(str::trim) {
                needles.push((line, name));
            }
        }
        needles.retain(|(n, _)| n.chars().count() >= REDACT_MIN);
        // longest first, so a secret that contains another is replaced whole
        needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
        let mut out = text.to_string();
        for (needle, name) in needles {
            if out.contains(needle) {
                out = out.replace(needle, &format!("(secret {name})"));
            }
        }
        out
    }

    /// The value of a stack field that is either inline or `{secret: NAME}`; `None` when the
    /// named secret does not exist (which [`check_references`] reports beforehand).
    pub fn resolve(&self, value: &crate::stack::model::Value) -> Option<Secret> {
        match value {
            crate::stack::model::Value::Plain(s) => Some(Secret::new(s.clone())),
            crate::stack::model::Value::Secret(r) => self.get(&r.secret).cloned(),
        }
    }
}

/// A secret name: the stack's rule (validation checks `secret: NAME` with it).
pub use crate::stack::model::valid_secret_name as valid_name;

/// Opens the stack's vault. A stack with no vault file and no `secret:` reference has no
/// secrets (not an error); a stack that references secrets needs its vault.
pub fn open(stack: &Stack) -> Result<Secrets, VaultError> {
    let paths = VaultPaths::of(stack);
    if !paths.vault.exists() && references(stack).is_empty() {
        tracing::debug!(vault = %paths.vault.display(), "no vault and no secret references");
        return Ok(Secrets::default());
    }
    let (_, secrets) = read_vault(stack, &paths)?;
    Ok(secrets)
}

/// [`open`], then [`check_references`]: what every command that renders or applies a stack
/// calls, so an unknown `secret: NAME` stops it before anything runs, with `file:line:col`.
pub fn open_checked(stack: &Stack) -> miette::Result<Secrets> {
    let secrets = open(stack)?;
    let problems = check_references(stack, &secrets);
    if problems.is_empty() {
        Ok(secrets)
    } else {
        Err(
            crate::stack::StackError::invalid(&stack.path, Arc::clone(&stack.source), problems)
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 §6: a core file written while secrets are in memory holds them.
    #[test]
    fn core_dumps_are_off_once_secrets_are_read() {
        no_core_dumps();
        let mut lim = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes into the struct; PR_GET_DUMPABLE takes no pointers.
        let (r, dumpable) = unsafe {
            (
                libc::getrlimit(libc::RLIMIT_CORE, &mut lim),
                libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0),
            )
        };
        assert_eq!(r, 0);
        assert_eq!((lim.rlim_cur, lim.rlim_max), (0, 0));
        assert_eq!(dumpable, 0);
    }

    #[test]
    fn secret_redacts_everywhere() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        let mut all = Secrets::default();
        all.insert("pw".into(), s);
        let dbg = format!("{all:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(all.get("pw").unwrap().expose(), "hunter2");
    }

    #[test]
    fn checker_output_is_redacted_of_secret_values() {
        let mut all = Secrets::default();
        all.insert(
            "vrrp_password".into(),
            Secret::new("s3cret\nvrrp_script evil {".into()),
        );
        all.insert("db".into(), Secret::new("hunter22".into()));
        all.insert("tiny".into(), Secret::new("ab".into()));
        // what keepalived -t prints for an auth_pass with a line break in it
        let out = "(/etc/keepalived/.k: Line 12) Unknown keyword 'vrrp_script evil {'\n\
                   auth_pass s3cret\nredis: AUTH hunter22 failed (ab)";
        let r = all.redact(out);
        assert!(
            !r.contains("s3cret") && !r.contains("evil") && !r.contains("hunter22"),
            "{r}"
        );
        assert!(
            r.contains("(secret vrrp_password)") && r.contains("(secret db)"),
            "{r}"
        );
        // too short to redact without destroying the output
        assert!(r.contains("(ab)"), "{r}");
        assert_eq!(all.redact("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn names() {
        assert!(valid_name("db_password"));
        assert!(valid_name("_x1"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
        assert!(!valid_name("a.b"));
    }
}
