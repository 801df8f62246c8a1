//! Stack files: YAML text → spanned model ([`model`]) → validated [`Stack`].
//!
//! `load` is the only way in. It checks UTF-8 itself (the parser's own error has no position),
//! parses with serde-saphyr (duplicate keys, alias bombs and deep nesting are refused), and then
//! runs every semantic check over the whole file so the user sees **all** problems at once, each
//! with `file:line:col`, the source line, a caret, a code and a hint. A syntax or type error
//! stops the load at that first error, as every YAML parser does.
//!
//! The validated `Stack` keeps the parsed file (for templates) and adds what the rest of hactl
//! needs resolved: parsed addresses, effective base priorities, unicast peers, roles.

pub mod aws_rules;
pub mod diag;
pub mod duration;
#[cfg(test)]
mod fuzz;
pub mod hearing;
pub mod model;
pub mod scaffold;
pub mod schema;
pub(crate) mod validate;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use diag::StackError;
pub use model::StackFile;

/// A stack that passed every check.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The stack file as written (defaults filled in).
    pub file: StackFile,
    /// Path of the stack file as given.
    pub path: PathBuf,
    /// Its text, for diagnostics raised after loading (e.g. unknown secret names).
    pub source: Arc<String>,
    /// Hosts with everything resolved, in file order.
    pub hosts: Vec<Host>,
    /// The VIP, resolved (when the stack has one).
    pub vip: Option<Vip>,
    /// What the checks warn about without refusing the stack (located, in file order).
    pub warnings: Vec<diag::Problem>,
}

/// One host, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub address: IpAddr,
    /// What SSH connects to (`ssh_host`, else the address).
    pub ssh_target: String,
    /// Base VRRP priority (before check weights).
    pub priority: u8,
    /// Unicast peers' addresses.
    pub peers: Vec<IpAddr>,
    pub interface: String,
    pub roles: BTreeSet<String>,
}

impl Host {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }
}

/// The VIP, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Vip {
    pub address: IpAddr,
    pub prefix: u8,
    /// 2 or 3.
    pub vrrp_version: u8,
}

impl Stack {
    pub fn name(&self) -> &str {
        &self.file.name.value
    }

    /// Directory of the stack file: relative paths inside it resolve from here.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Resolves a path written in the stack: `~/` is the home directory, relative paths are
    /// relative to the stack file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/") {
            if let Some(home) = std::env::var_os("HOME") {
                return PathBuf::from(home).join(rest);
            }
        }
        let pb = PathBuf::from(p);
        if pb.is_absolute() {
            pb
        } else {
            self.dir().join(pb)
        }
    }

    /// The span of the value at a key path (`aws.zones.1`, `aws.hosts.instance_type`) in the
    /// stack file, to point a diagnostic found after loading at `file:line:col`.
    pub fn span_of(&self, path: &str) -> Option<miette::SourceSpan> {
        validate::span_at(&self.source, path)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// Reads and validates a stack file.
///
/// Reads at most [`validate::MAX_STACK_BYTES`] + 1 bytes: a huge file (or `/dev/zero`) is
/// refused with `hactl::stack::too_large` without being read whole.
pub fn load(path: &Path) -> Result<Stack, StackError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| StackError::io(path, e))?;
    let mut bytes = Vec::new();
    f.take(validate::MAX_STACK_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StackError::io(path, e))?;
    load_bytes(path, &bytes)
}

/// Validates stack text that did not come from disk (tests, stdin). `path` names it in errors.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Stack, StackError> {
    validate::load_bytes(path, bytes)
}

/// Loads a stack whose only problems have codes in `tolerated`, returning those problems
/// beside it (located, for printing). For `explain`, which shows what a refused hearing graph
/// would do.
pub fn load_tolerating(
    path: &Path,
    tolerated: &[&str],
) -> Result<(Stack, Vec<diag::Problem>), StackError> {
    let bytes = std::fs::read(path).map_err(|e| StackError::io(path, e))?;
    validate::load_tolerating(path, &bytes, tolerated)
}

/// A loaded stack's warnings and the given risks (code, message, the stack key each is about)
/// as located warnings, each pointing at its key when it names one. `crate::ha::problems`
/// gives it the HA model's risks (the VIP split, never moving or flapping; timings that make
/// failover slow or jumpy): `validate`, `plan` and `up` print them, `explain` the same list.
pub fn located_warnings(
    stack: &Stack,
    risks: Vec<(&'static str, String, Option<String>)>,
) -> Vec<diag::Problem> {
    validate::risks(stack, risks)
}
