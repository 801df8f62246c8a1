//! The engine's hooks for people: live progress on stderr while changes are applied.
//!
//! On a terminal each change in flight is one line (an indicatif spinner) with its address,
//! the state it is waiting for and the time since it started — `aws_db_instance.main:
//! creating, 6m12s` — ticking by itself between the engine's reports, and it becomes one
//! permanent line when the change ends (`aws_db_instance.main: created in 6m40s`). When
//! stderr is not a terminal (CI, a pipe) nothing is redrawn: plain lines are written when a
//! change starts, when the state it waits for changes, at most once a minute while it does
//! not, and when it ends, so a log shows a long wait is alive without a line per tick.
//! (Terraform prints "Still creating... [6m10s elapsed]" every 10 s in its UI hook,
//! `internal/command/views/hook_ui.go`; a minute keeps a 20-minute RDS create to 20 lines.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::engine::hooks::Hooks;
use crate::plan::Action;

/// How often a plain (non-terminal) line repeats a state that did not change.
const PLAIN_REPEAT: Duration = Duration::from_secs(60);

/// `6m12s`, `42s`, `1h03m`: short enough for a progress line, exact to the second below an
/// hour.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The state a change is in while it runs: `creating`, `reloading`.
pub fn doing(a: Action) -> &'static str {
    match a {
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "deleting",
        Action::Start => "starting",
        Action::Reload => "reloading",
        Action::Stop => "stopping",
    }
}

/// What a finished change did: `created`, `reloaded`.
pub fn did(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Replace => "replaced",
        Action::Delete => "deleted",
        Action::Start => "started",
        Action::Reload => "reloaded",
        Action::Stop => "stopped",
    }
}

/// One progress line: `db: creating, 6m12s`.
pub fn progress_line(addr: &str, status: &str, took: Duration) -> String {
    format!("{addr}: {status}, {}", elapsed(took))
}

/// The line a finished change leaves: `db: created in 6m40s`.
pub fn done_line(addr: &str, action: Action, took: Duration) -> String {
    format!("{addr}: {} in {}", did(action), elapsed(took))
}

/// The line a failed change leaves.
pub fn failed_line(addr: &str, error: &str) -> String {
    format!("{addr}: failed: {error}")
}

/// Plain-line state of one change: the last status written and when.
struct Last {
    status: String,
    at: Duration,
}

enum Draw {
    /// A terminal: one spinner per change in flight.
    Live {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    /// Not a terminal: plain lines (to stderr, or kept for tests).
    Plain {
        last: Mutex<HashMap<String, Last>>,
        #[cfg(test)]
        kept: Option<Mutex<Vec<String>>>,
    },
}

/// [`Hooks`] for people, on stderr.
pub struct HumanHooks {
    draw: Draw,
}

impl Default for HumanHooks {
    fn default() -> Self {
        Self::stderr()
    }
}

impl HumanHooks {
    /// Live lines when stderr is a terminal, plain lines when it is not.
    pub fn stderr() -> HumanHooks {
        let target = ProgressDrawTarget::stderr();
        let draw = if target.is_hidden() {
            Draw::Plain {
                last: Mutex::new(HashMap::new()),
                #[cfg(test)]
                kept: None,
            }
        } else {
            Draw::Live {
                multi: MultiProgress::with_draw_target(target),
                bars: Mutex::new(HashMap::new()),
            }
        };
        HumanHooks { draw }
    }

    #[cfg(test)]
    fn kept() -> HumanHooks {
        HumanHooks {
            draw: Draw::Plain {
                last: Mutex::new(HashMap::new()),
                kept: Some(Mutex::new(Vec::new())),
            },
        }
    }

    #[cfg(test)]
    fn lines(&self) -> Vec<String> {
        match &self.draw {
            Draw::Plain { kept: Some(k), .. } => k.lock().unwrap().clone(),
            _ => Vec::new(),
        }
    }

    /// A permanent line: above the spinners on a terminal, else a plain line.
    fn line(&self, text: &str) {
        match &self.draw {
            Draw::Live { multi, .. } => {
                if multi.println(text).is_err() {
                    super::note(text);
                }
            }
            Draw::Plain {
                #[cfg(test)]
                kept,
                ..
            } => {
                #[cfg(test)]
                if let Some(k) = kept {
                    k.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(text.into());
                    return;
                }
                super::note(text);
            }
        }
    }

    fn spinner(&self, addr: &str, status: &str) -> Option<ProgressBar> {
        let Draw::Live { multi, bars } = &self.draw else {
            return None;
        };
        let style = ProgressStyle::with_template("{spinner} {prefix}: {msg}, {since}")
            .ok()?
            .with_key("since", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&elapsed(s.elapsed()));
            });
        let bar = multi.add(ProgressBar::new_spinner().with_style(style));
        bar.set_prefix(addr.to_string());
        bar.set_message(status.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut bars = bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = bars.insert(addr.to_string(), bar.clone()) {
            old.finish_and_clear();
        }
        Some(bar)
    }

    fn end(&self, addr: &str) {
        if let Draw::Live { multi, bars } = &self.draw {
            if let Some(bar) = bars.lock().unwrap_or_else(|p| p.into_inner()).remove(addr) {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
        if let Draw::Plain { last, .. } = &self.draw {
            last.lock().unwrap_or_else(|p| p.into_inner()).remove(addr);
        }
    }
}

impl Hooks for HumanHooks {
    fn started(&self, addr: &str, action: Action) {
        let status = doing(action);
        if self.spinner(addr, status).is_none() {
            if let Draw::Plain { last, .. } = &self.draw {
                last.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    addr.to_string(),
                    Last {
                        status: status.to_string(),
                        at: Duration::ZERO,
                    },
                );
            }
            self.line(&format!("{addr}: {status}…"));
        }
    }

    fn progress(&self, addr: &str, status: &str, took: Duration) {
        match &self.draw {
            Draw::Live { bars, .. } => {
                let bars = bars.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = bars.get(addr) {
                    bar.set_message(status.to_string());
                    return;
                }
                drop(bars);
                self.spinner(addr, status);
            }
            Draw::Plain { last, .. } => {
                let write = {
                    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                    let e = last.entry(addr.to_string()).or_insert(Last {
                        status: String::new(),
                        at: Duration::ZERO,
                    });
                    let write = e.status != status || took.saturating_sub(e.at) >= PLAIN_REPEAT;
                    if write {
                        e.status = status.to_string();
                        e.at = took;
                    }
                    write
                };
                if write {
                    self.line(&progress_line(addr, status, took));
                }
            }
        }
    }

    fn done(&self, addr: &str, action: Action, took: Duration) {
        self.end(addr);
        self.line(&done_line(addr, action, took));
    }

    fn failed(&self, addr: &str, error: &str) {
        self.end(addr);
        self.line(&failed_line(addr, error));
    }

    fn warning(&self, message: &str) {
        self.line(&format!("warning: {message}"));
    }

    fn step(&self, subject: &str, message: &str, elapsed: Duration) {
        let live = matches!(self.draw, Draw::Live { .. });
        self.line(&step_line(subject, message, live.then_some(elapsed)));
    }

    fn wait_started(&self, stack: &str, timeout: Duration) {
        self.line(&super::wait::started(stack, timeout));
    }

    fn wait_progress(&self, elapsed: Duration, not_ready: &[String]) {
        self.line(&super::wait::progress(elapsed, not_ready));
    }

    fn served(&self, serving: &crate::engine::serving::Serving) {
        self.line(&super::wait::serving(serving));
    }
}

/// A step's line, `host: message`; on a terminal led by the time since the operation started,
/// dimmed (`[  12.3s]`).
pub fn step_line(subject: &str, message: &str, elapsed: Option<Duration>) -> String {
    let who = if subject.is_empty() {
        String::new()
    } else {
        format!("{subject}: ")
    };
    match elapsed {
        Some(t) => format!("\x1b[2m[{:>6.1}s]\x1b[0m {who}{message}", t.as_secs_f64()),
        None => format!("{who}{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollout's steps and the wait are permanent lines, in the order they came; a step
    /// is timed on a terminal only.
    #[test]
    fn steps_and_the_wait_are_lines() {
        let h = HumanHooks::kept();
        h.step("web1", "draining", Duration::from_millis(1500));
        h.step("", "batch 1 of 2", Duration::ZERO);
        h.wait_started("lab", Duration::from_secs(120));
        h.wait_progress(
            Duration::from_millis(750),
            &["VIP 198.18.0.100: no holder".into()],
        );
        assert_eq!(
            h.lines(),
            [
                "web1: draining",
                "batch 1 of 2",
                "waiting for `lab` to serve (at most 120s; `--no-wait` skips this)…",
                "    0.8s not yet:\n    VIP 198.18.0.100: no holder",
            ]
        );
        assert_eq!(
            step_line("web1", "draining", Some(Duration::from_millis(1500))),
            "\x1b[2m[   1.5s]\x1b[0m web1: draining"
        );
    }

    #[test]
    fn elapsed_is_short_and_exact_below_an_hour() {
        assert_eq!(elapsed(Duration::from_millis(900)), "0s");
        assert_eq!(elapsed(Duration::from_secs(42)), "42s");
        assert_eq!(elapsed(Duration::from_secs(372)), "6m12s");
        assert_eq!(elapsed(Duration::from_secs(3780)), "1h03m");
    }

    /// Without a terminal: a line when a change starts, when the state it waits for
    /// changes, once a minute while it does not, and when it ends — never one per report.
    #[test]
    fn plain_lines_for_a_long_rds_create_and_a_failed_reload() {
        let h = HumanHooks::kept();
        let db = "aws_db_instance.main";
        h.started(db, Action::Create);
        for s in (5..=372).step_by(5) {
            h.progress(db, "creating", Duration::from_secs(s));
        }
        h.progress(db, "backing-up", Duration::from_secs(377));
        h.progress(db, "backing-up", Duration::from_secs(382));
        h.done(db, Action::Create, Duration::from_secs(400));
        h.started("web1:service/nginx", Action::Reload);
        h.failed(
            "web1:service/nginx",
            "nginx -t: unknown directive \"listn\"",
        );
        h.warning("2 hosts were not observed: their changes are unknown");
        insta::assert_snapshot!(h.lines().join("\n"));
    }

    /// The live line's text: what the spinner shows after its symbol.
    #[test]
    fn live_line_text() {
        insta::assert_snapshot!(
            [
                progress_line("db", "creating", Duration::from_secs(372)),
                done_line("db", Action::Create, Duration::from_secs(400)),
                failed_line("web1:service/nginx", "exit 1"),
            ]
            .join("\n"),
            @r"
        db: creating, 6m12s
        db: created in 6m40s
        web1:service/nginx: failed: exit 1
        "
        );
    }
}
