//! `hactl logs` output: one line per log line, `HOST TIME SERVICE TEXT`, hosts padded to the
//! widest name so the text lines up. With `--json` the lines are the document's `entries`;
//! with `--follow --json-events` each line is a `log` event as it arrives (a followed log has
//! no end, so it cannot be one document).

use std::fmt::Write as _;

use serde::Serialize;

use crate::ha::logs::{self, Entry};

/// One log line as JSON carries it.
#[derive(Debug, Serialize)]
pub struct JsonEntry<'a> {
    /// `2026-11-22T01:00:00.123Z`, or `-` when the line carried no time.
    pub time: String,
    pub host: &'a str,
    pub service: &'a str,
    pub line: &'a str,
}

fn time(e: &Entry) -> String {
    if e.ms == i64::MIN {
        "-".to_string()
    } else {
        logs::format_ms(e.ms)
    }
}

/// The entries as JSON values, in order.
pub fn json_entries(entries: &[Entry]) -> Vec<JsonEntry<'_>> {
    entries
        .iter()
        .map(|e| JsonEntry {
            time: time(e),
            host: &e.host,
            service: &e.service,
            line: &e.text,
        })
        .collect()
}

/// The entries as people read them: host padded to `width`, time, service, text.
pub fn render(entries: &[Entry], width: usize) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = writeln!(
            out,
            "{:<width$} {} {:<10} {}",
            e.host,
            time(e),
            e.service,
            e.text
        );
    }
    out
}

/// Shows a batch of entries in the run's mode: human lines on stdout, `log` events, or
/// (`--json`) the document's `entries`.
pub fn show(entries: &[Entry], width: usize) -> miette::Result<()> {
    match super::json::mode() {
        super::json::Mode::Human => super::print_lines(&render(entries, width)),
        super::json::Mode::Events => {
            for e in json_entries(entries) {
                let v = serde_json::to_value(&e)
                    .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?;
                super::events::emit_line(&super::events::event(
                    "log",
                    std::time::SystemTime::now(),
                    [("entry".to_string(), v)],
                ));
            }
        }
        super::json::Mode::Document => super::json::put_named("entries", &json_entries(entries))?,
    }
    Ok(())
}
