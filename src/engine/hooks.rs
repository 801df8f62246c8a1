//! How the engine tells the outside world what it is doing, without printing.
//!
//! The engine (plan, apply, waits, deploys) calls a [`Hooks`] implementation at each step;
//! `view` implements it for humans (live progress on a terminal) and for machines (one JSON
//! document, or NDJSON events). This is Terraform's pattern (`internal/terraform/hook.go`,
//! rendered by `internal/command/views/hook_ui.go`): the engine never decides how anything
//! looks, so the same run reads the same in a terminal and in a CI log.
//!
//! Addresses are the change addresses of [`crate::plan::Change`] as displayed
//! (`aws_db_instance.main`, `web1:/etc/nginx/nginx.conf`, `web1:service/nginx`).

use std::time::Duration;

use super::serving::Serving;
use crate::plan::{Action, Plan};

/// What the engine reports. Every method has an empty default so an implementation listens
/// only to what it shows; implementations must be cheap and must not block (they are called
/// from async tasks).
// Until `engine::apply` reports through it (issue 11 item 1), only view's tests call it.
pub trait Hooks: Send + Sync {
    /// The plan is known, before any confirmation or change.
    fn planned(&self, _plan: &Plan) {}
    /// A change starts being applied.
    fn started(&self, _addr: &str, _action: Action) {}
    /// A long change reports the state it is waiting for (`"creating"`, `"backing-up"`,
    /// `"sshd"`) and the time since it started, e.g. every few seconds of a wait.
    fn progress(&self, _addr: &str, _status: &str, _elapsed: Duration) {}
    /// A change finished.
    fn done(&self, _addr: &str, _action: Action, _elapsed: Duration) {}
    /// A change failed; what does not depend on it may go on.
    fn failed(&self, _addr: &str, _error: &str) {}
    /// The state was written; `serial` is its serial after the write.
    fn state_saved(&self, _serial: u64) {}
    /// Something the user should know that does not stop the run.
    fn warning(&self, _message: &str) {}
    /// A step of a long operation that is worth a line of its own (a rollout's batch, drain,
    /// health gate): `subject` is the host it is about (empty: the whole run), `elapsed` the
    /// time since the operation started.
    fn step(&self, _subject: &str, _message: &str, _elapsed: Duration) {}
    /// The wait until `stack` serves started, bounded by `timeout`.
    fn wait_started(&self, _stack: &str, _timeout: Duration) {}
    /// What keeps the stack from serving changed (`not_ready`: one line per thing).
    fn wait_progress(&self, _elapsed: Duration, _not_ready: &[String]) {}
    /// The stack serves.
    fn served(&self, _serving: &Serving) {}
}

/// Hooks that report nothing: for tests of the engine that only want the result.
#[cfg(test)]
pub struct Silent;

#[cfg(test)]
impl Hooks for Silent {}
