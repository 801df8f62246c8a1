//! Output: the one place that prints. Human output goes to stdout for data and stderr for
//! progress and errors; `--json` writes exactly one JSON document on stdout ([`json`]) and
//! `--json-events` NDJSON events ([`events`]). Colour, live progress ([`progress`]) and
//! prompts only when attached to a terminal. The engine reports through
//! [`crate::engine::hooks::Hooks`]; [`hooks`] picks the implementation for this run.

pub mod compact;
pub mod deploy;
pub mod drill;
pub mod events;
pub mod explain;
pub mod heal;
pub mod init;
pub mod json;
pub mod lab;
pub mod logs;
pub mod plan;
pub mod progress;
pub mod render;
pub mod run;
pub mod status;
pub mod wait;

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

/// Logs go to stderr; `RUST_LOG` wins over `-v`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints an error report with its causes, source excerpt and hints on stderr.
pub fn print_error(report: &miette::Report) {
    eprintln!("{}", format_report(report, std::io::stderr().is_terminal()));
}

/// Formats a report the way the terminal shows it (no colour when `color` is false, which is
/// also what snapshot tests use).
pub fn format_report(report: &miette::Report, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    if handler
        .render_report(&mut out, report.as_ref() as &dyn miette::Diagnostic)
        .is_err()
    {
        return format!("error: {report}");
    }
    out
}

/// Prints located warnings (a stack's risks) on stderr, each as miette draws a diagnostic:
/// `file:line:col`, the line, a caret, the code.
pub fn print_warnings(warnings: &[crate::stack::diag::Problem]) {
    let color = std::io::stderr().is_terminal();
    for w in warnings {
        eprint!("{}", format_diagnostic(w, color));
    }
}

/// One diagnostic as the terminal shows it (see [`format_report`]).
pub fn format_diagnostic(d: &dyn miette::Diagnostic, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    if handler.render_report(&mut out, d).is_err() {
        return format!("warning: {d}\n");
    }
    out
}

/// The engine's hooks for this run: live or plain progress for people, the document's
/// record with `--json`, NDJSON events with `--json-events`.
pub fn hooks() -> Box<dyn crate::engine::hooks::Hooks> {
    match json::mode() {
        json::Mode::Human => Box::new(progress::HumanHooks::stderr()),
        json::Mode::Document => Box::new(events::JsonHooks::document()),
        json::Mode::Events => Box::new(events::JsonHooks::events()),
    }
}

/// Adds a command's result to its one JSON document (see [`json::put`]; `main` writes the
/// document when the command returns).
pub fn print_json<T: serde::Serialize>(value: &T) -> miette::Result<()> {
    json::put(value)
}

/// Shows a command's result: with `--json` it is the document's result, else
/// `human(value)` on stdout.
pub fn show<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> miette::Result<()> {
    if json {
        json::put(value)
    } else {
        print_out(&human(value));
        Ok(())
    }
}

/// Writes human output on stdout; on stderr when stdout carries JSON, so the JSON stays
/// parseable whatever a command prints.
pub fn print_out(text: &str) {
    if json::active() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes lines of streamed data on stdout (`logs --follow`, NDJSON records), flushed, so a
/// reader sees each line as it comes.
pub fn print_lines(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// True when stdout is a terminal (a secret printed there gets a newline for the prompt).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Writes a progress or notice line on stderr.
pub fn note(text: &str) {
    eprintln!("{text}");
}

/// Writes a prompt on stderr, without a newline (the answer follows on the same line).
pub fn prompt(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// True when stdin and stderr are both terminals: only then may hactl ask a question.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks one question on the terminal (stderr) and returns the line typed, without its
/// newline. Callers ask only when [`interactive`] is true.
pub fn ask(question: &str) -> miette::Result<String> {
    use std::io::BufRead;
    eprint!("{question}: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| miette::miette!("cannot read the answer: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Asks "Do you want to WHAT?" on the terminal and accepts only `yes`; refuses at once (with a
/// hint) when there is no terminal to ask, so CI never hangs on a prompt.
pub fn confirm(what: &str) -> miette::Result<()> {
    use std::io::BufRead;
    if !interactive() {
        return Err(miette::miette!(
            code = "hactl::approve::no_tty",
            help =
                "re-run with `--auto-approve` (CI), or run it in a terminal to answer the prompt",
            "refusing to {what} without approval: not running in a terminal"
        ));
    }
    eprint!("Do you want to {what}? Only `yes` is accepted: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| miette::miette!("cannot read the answer: {e}"))?;
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err(miette::miette!(
            code = "hactl::approve::declined",
            "cancelled: nothing was changed"
        ))
    }
}
