//! hactl: one declarative stack file to a highly available web stack.
//!
//! `main` parses arguments, runs the command and turns its outcome into the process exit
//! code. It is the one place that prints errors: every command returns a `miette` report or an
//! [`ExitStatus`], never exits by itself.

mod cli;
mod deploy;
mod engine;
mod ha;
#[cfg(test)]
mod imports;
mod lab;
mod localfs;
mod onhost;
mod plan;
mod provider;
mod render;
mod services;
mod stack;
mod state;
mod vault;
mod view;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// The process exit codes, stable for scripts and CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything went as asked (and, with `--detailed-exitcode`, nothing to change).
    Success,
    /// An error: invalid input, a failed host, a refused action.
    Failure,
    /// `--detailed-exitcode` only: the plan has changes.
    Changes,
    /// `up`, `heal`, `deploy`: the changes were applied, but the stack did not serve within
    /// `--wait-timeout` (no single VIP holder, a check failing, the app unhealthy behind
    /// nginx, AWS targets not healthy).
    NotServing,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Changes => ExitCode::from(2),
            ExitStatus::NotServing => ExitCode::from(3),
        }
    }
}

/// The command's name as typed (`up`, `state show`) and its own arguments' matches.
fn leaf(m: &ArgMatches) -> (String, &ArgMatches) {
    let mut names = Vec::new();
    let mut m = m;
    while let Some((name, sub)) = m.subcommand() {
        names.push(name);
        m = sub;
    }
    (names.join(" "), m)
}

/// Parses the arguments and sets the output mode: `--json` makes stdout one JSON document,
/// `--json-events` NDJSON events and then that document (so it implies `--json`, which is
/// added to the command's own arguments; a command without `--json` refuses it).
fn parse() -> Result<cli::Cli, miette::Report> {
    let matches = cli::Cli::command().try_get_matches().map_err(usage_error)?;
    let args = cli::Cli::from_arg_matches(&matches).map_err(usage_error)?;
    let (name, sub) = leaf(&matches);
    let has_json = sub.try_get_one::<bool>("json").is_ok();
    let json = sub.try_get_one::<bool>("json").ok().flatten() == Some(&true);
    let (args, mode) = match (args.json_events, has_json) {
        (false, _) => (
            args,
            if json {
                view::json::Mode::Document
            } else {
                view::json::Mode::Human
            },
        ),
        (true, false) => {
            return Err(miette::miette!(
                code = "hactl::cli::json_events",
                help = "`--json-events` streams the engine's events of commands that have `--json`",
                "`hactl {name}` has no `--json`, so no `--json-events` either"
            ))
        }
        (true, true) if json => (args, view::json::Mode::Events),
        (true, true) => {
            let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            argv.push("--json".into());
            let args = cli::Cli::try_parse_from(argv).map_err(usage_error)?;
            (args, view::json::Mode::Events)
        }
    };
    view::json::init(mode, &name);
    Ok(args)
}

/// A command line clap refuses. `--help` and `--version` print and exit 0 here (what they
/// were asked for); anything else is a usage error: exit 1 like every other error, never
/// clap's own 2, which `--detailed-exitcode` reserves for "changes pending" (a mistyped flag
/// in a CI plan job must fail it). With `--json` the error is the command's one document.
fn usage_error(e: clap::Error) -> miette::Report {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        // `hactl` alone, or `hactl state`: the help is the useful answer, and still an error.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(1);
        }
        _ => {}
    }
    let argv: Vec<String> = std::env::args().collect();
    let json = argv.iter().any(|a| a == "--json" || a == "--json-events");
    let name = typed_command(&argv);
    view::json::init(
        if json {
            view::json::Mode::Document
        } else {
            view::json::Mode::Human
        },
        &name,
    );
    let text = e.render().to_string();
    // clap's text up to its usage line, on one line ("the following required arguments were
    // not provided: --probe <URL>"); its tips become the help below.
    let message = text
        .trim()
        .trim_start_matches("error: ")
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip: "))
        .collect::<Vec<_>>()
        .join(" ");
    // clap's tips ("a similar argument exists: '--target'") are the help, then where to look.
    let mut help: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tip: "))
        .map(str::to_string)
        .collect();
    help.push(match name.as_str() {
        "" => "see `hactl --help`".to_string(),
        n => format!("see `hactl {n} --help`"),
    });
    let help = help.join("; ");
    miette::miette!(code = "hactl::cli::usage", help = help, "{message}")
}

/// The subcommand path a command line names (`state lock-info`), as far as it is valid; flags
/// before and between the names are skipped.
fn typed_command(argv: &[String]) -> String {
    let mut cmd = cli::Cli::command();
    let mut names: Vec<String> = Vec::new();
    for a in argv.iter().skip(1) {
        if a.starts_with('-') {
            continue;
        }
        let Some(sub) = cmd.find_subcommand(a).cloned() else {
            break;
        };
        names.push(sub.get_name().to_string());
        cmd = sub;
    }
    names.join(" ")
}

/// The vault's terminal is `view` (the vault cannot import it: `view` reaches the vault
/// through the engine), wired here where both are in reach.
struct VaultIo;

impl vault::io::Io for VaultIo {
    fn note(&self, text: &str) {
        view::note(text);
    }
    fn prompt(&self, text: &str) {
        view::prompt(text);
    }
    fn interactive(&self) -> bool {
        view::interactive()
    }
    fn print_out(&self, text: &str) {
        view::print_out(text);
    }
    fn stdout_is_terminal(&self) -> bool {
        view::stdout_is_terminal()
    }
    fn put_named(&self, key: &str, value: serde_json::Value) -> miette::Result<()> {
        view::json::put_named(key, &value)
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(report) => {
            view::json::finish(Some(&report));
            view::print_error(&report);
            return ExitCode::from(1);
        }
    };
    view::init_tracing(args.verbose);
    vault::io::install(&VaultIo);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(status) => {
            view::json::finish(None);
            status.into()
        }
        Err(report) => {
            view::json::finish(Some(&report));
            view::print_error(&report);
            ExitCode::from(1)
        }
    }
}
