//! The lines `up`, `heal` and `deploy` print on stderr while they wait for the stack to serve
//! (`cli/wait.rs`): one when the wait starts, one each time what is not ready changes, one
//! when it serves. Progress, so stderr: stdout keeps the command's data.

use std::time::Duration;

use crate::engine::serving::Serving;
use crate::stack::duration::Dur;

pub fn started(stack: &str, timeout: Duration) -> String {
    format!(
        "waiting for `{stack}` to serve (at most {}; `--no-wait` skips this)…",
        Dur(timeout)
    )
}

pub fn progress(elapsed: Duration, not_ready: &[String]) -> String {
    let mut s = format!("  {:>5.1}s not yet:", elapsed.as_secs_f64());
    for w in not_ready {
        s.push_str("\n    ");
        s.push_str(w);
    }
    s
}

pub fn serving(s: &Serving) -> String {
    let secs = s.elapsed_ms as f64 / 1000.0;
    match &s.vip_holder {
        Some(h) => format!("serving after {secs:.1}s (VIP held by {h})"),
        None => format!("serving after {secs:.1}s"),
    }
}
