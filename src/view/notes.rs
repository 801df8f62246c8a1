//! The engine's hooks as the progress lines `up`, `down` and `heal` have always printed on
//! stderr (`aws_vpc.main: creating…`, `aws_vpc.main: created [1.2s]`), until the live view
//! (indicatif, `--json-events`) replaces this adapter. With `--json` only failures and
//! warnings are written, as before: stdout keeps its one document.

use std::time::Duration;

use crate::engine::hooks::Hooks;
use crate::plan::{Action, Addr, Kind};

/// Hooks → `view::note` lines.
pub struct Notes {
    json: bool,
}

impl Notes {
    pub fn new(json: bool) -> Notes {
        Notes { json }
    }
}

/// Per-change lines are for cloud resources (slow, one at a time); host changes are reported
/// per host after the apply.
fn is_resource(addr: &str) -> bool {
    addr.parse::<Addr>()
        .is_ok_and(|a| a.kind() == Kind::Resource)
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

impl Hooks for Notes {
    fn started(&self, addr: &str, action: Action) {
        if !self.json && is_resource(addr) {
            super::note(&format!("{addr}: {}…", verb(action)));
        }
    }

    fn progress(&self, addr: &str, status: &str, elapsed: Duration) {
        if !self.json {
            super::note(&format!("{addr}: {status}, {}s", elapsed.as_secs()));
        }
    }

    fn done(&self, addr: &str, action: Action, elapsed: Duration) {
        if !self.json && is_resource(addr) {
            super::note(&format!(
                "{addr}: {} [{:.1}s]",
                done(action),
                elapsed.as_secs_f64()
            ));
        }
    }

    fn failed(&self, addr: &str, error: &str) {
        super::note(&format!("{addr}: failed: {error}"));
    }

    fn warning(&self, message: &str) {
        super::note(message);
    }
}
