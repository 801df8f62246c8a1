//! `hactl logs -f STACK [--host H] [--service S] [--since T] [--follow]`: the logs of
//! keepalived, nginx, haproxy or the app from every host over SSH, merged in time order and
//! prefixed with the host. Where each service logs is documented in [`crate::ha::logs`].
//!
//! `--follow` polls every host once a second for what was appended since (by byte offset),
//! over the same SSH connections, rather than keeping a `tail -f` open per host: the
//! connection layer runs whole scripts, and a poll keeps the merged output in time order.

use std::time::Duration;

use clap::Args;

use super::StackArgs;
use crate::engine::logs::{poll, since_ms, LogsError, Offsets};
use crate::ha::logs;
use crate::provider::hosts::{self as hp, Connection};
use crate::stack::{self, Host};
use crate::{view, ExitStatus};

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Only this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only this service (repeatable): keepalived, nginx, haproxy, app. Default: all.
    #[arg(long = "service", value_name = "SERVICE", value_parser = clap::builder::PossibleValuesParser::new(logs::SERVICES))]
    pub services: Vec<String>,
    /// Only lines since: a duration ago (`10m`, `90s`) or an ISO time (`2026-11-22T01:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Lines read per file and host before merging.
    #[arg(long, default_value_t = 2000)]
    pub lines: usize,
    /// Keep printing new lines as they are written (Ctrl-C stops).
    #[arg(long)]
    pub follow: bool,
}

pub async fn run(args: LogsArgs) -> miette::Result<ExitStatus> {
    if args.follow && view::json::mode() == view::json::Mode::Document {
        return Err(LogsError::FollowJson.into());
    }
    let stack = stack::load(&args.stack.file)?;
    for h in &args.hosts {
        if stack.host(h).is_none() {
            return Err(LogsError::UnknownHost(h.clone()).into());
        }
    }
    let hosts: Vec<&Host> = stack
        .hosts
        .iter()
        .filter(|h| args.hosts.is_empty() || args.hosts.contains(&h.name))
        .collect();
    let services: Vec<String> = if args.services.is_empty() {
        logs::SERVICES.iter().map(|s| s.to_string()).collect()
    } else {
        args.services.clone()
    };
    let since = args.since.as_deref().map(since_ms).transpose()?;
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(4);

    let conns = hp::connect_all(&stack, &hosts).await;
    let mut open: Vec<Connection> = Vec::new();
    let mut errors = Vec::new();
    for (name, c) in conns {
        match c {
            Ok(c) => open.push(c),
            Err(e) => {
                view::note(&format!("warning: {name}: {e}"));
                errors.push(e.to_string());
            }
        }
    }
    if open.is_empty() {
        return Err(LogsError::NoHost(errors.join("; ")).into());
    }
    let mut offsets = Offsets::new();
    let mut first = true;
    let mut failed = !errors.is_empty();
    loop {
        let (mut merged, errs) = poll(
            &open,
            &services,
            args.lines,
            stack.file.ssh.parallelism,
            &mut offsets,
        )
        .await;
        for (host, e) in errs {
            failed = true;
            view::note(&format!("warning: {host}: {e}"));
        }
        if let Some(s) = since {
            merged.retain(|e| e.ms >= s);
        }
        if !first || !merged.is_empty() || !args.follow {
            view::logs::show(&merged, width)?;
        }
        first = false;
        if !args.follow {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for c in open {
        c.close().await;
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
