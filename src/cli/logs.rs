//! `hactl logs -f STACK [--host H] [--service S] [--since T] [--follow]`: the logs of
//! keepalived, nginx, haproxy or the app from every host over SSH, merged in time order and
//! prefixed with the host. Where each service logs is documented in [`crate::ha::logs`].
//!
//! `--follow` polls every host once a second for what was appended since (by byte offset),
//! over the same SSH connections, rather than keeping a `tail -f` open per host: the
//! connection layer runs whole scripts, and a poll keeps the merged output in time order.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use serde::Serialize;

use super::StackArgs;
use crate::ha::logs::{self, Entry};
use crate::provider::hosts::{self as hp, Connection};
use crate::stack::{self, Host};
use crate::ExitStatus;

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

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LogsError {
    #[error("`--since {0}` is neither a duration nor an ISO time")]
    #[diagnostic(
        code(hactl::logs::since),
        help("e.g. `--since 10m` or `--since 2026-11-22T01:00:00Z`")
    )]
    Since(String),
    #[error("host `{0}` is not in the stack")]
    #[diagnostic(code(hactl::logs::host), help("use a name from the stack's `hosts`"))]
    UnknownHost(String),
    #[error("no host could be read: {0}")]
    #[diagnostic(code(hactl::logs::unreachable), help("check `hactl status -f STACK`"))]
    NoHost(String),
}

#[derive(Debug, Serialize)]
struct JsonEntry<'a> {
    time: String,
    host: &'a str,
    service: &'a str,
    line: &'a str,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn since_ms(text: &str) -> Result<i64, LogsError> {
    if let Ok(d) = crate::stack::duration::parse(text) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    logs::parse_iso(text).ok_or_else(|| LogsError::Since(text.to_string()))
}

fn print(entries: &[Entry], json: bool, width: usize) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for e in entries {
        let time = if e.ms == i64::MIN {
            "-".to_string()
        } else {
            logs::format_ms(e.ms)
        };
        if json {
            let j = JsonEntry {
                time,
                host: &e.host,
                service: &e.service,
                line: &e.text,
            };
            if let Ok(s) = serde_json::to_string(&j) {
                let _ = writeln!(out, "{s}");
            }
        } else {
            let _ = writeln!(
                out,
                "{:<width$} {time} {:<10} {}",
                e.host, e.service, e.text
            );
        }
    }
    let _ = out.flush();
}

/// Reads one host; returns its stamped entries and the new file offsets.
async fn read_host(
    conn: &Connection,
    services: &[String],
    lines: usize,
    offsets: &BTreeMap<String, u64>,
) -> Result<(Vec<Entry>, BTreeMap<String, u64>), hp::HostError> {
    let out = hp::query(conn, &logs::read_script(services, lines, offsets)).await?;
    let (ls, sizes) = logs::parse(&out);
    let mut next = offsets.clone();
    for (path, size) in sizes {
        // A file that shrank was rotated or truncated: start it over.
        let prev = offsets.get(&path).copied().unwrap_or(0);
        next.insert(path, if size < prev { 0 } else { size });
    }
    Ok((logs::stamp_lines(&conn.host, ls), next))
}

pub async fn run(args: LogsArgs) -> miette::Result<ExitStatus> {
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
                crate::view::note(&format!("warning: {name}: {e}"));
                errors.push(e.to_string());
            }
        }
    }
    if open.is_empty() {
        return Err(LogsError::NoHost(errors.join("; ")).into());
    }
    let mut offsets: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut first = true;
    let mut failed = !errors.is_empty();
    loop {
        let results: Vec<_> = futures::stream::iter(open.iter().map(|c| {
            let off = offsets.get(&c.host).cloned().unwrap_or_default();
            let services = &services;
            async move {
                let r = read_host(c, services, args.lines, &off).await;
                (c.host.clone(), r)
            }
        }))
        .buffer_unordered(stack.file.ssh.parallelism.max(1))
        .collect()
        .await;
        let mut all = Vec::new();
        for (host, r) in results {
            match r {
                Ok((entries, next)) => {
                    all.extend(entries);
                    offsets.insert(host, next);
                }
                Err(e) => {
                    failed = true;
                    crate::view::note(&format!("warning: {host}: {e}"));
                }
            }
        }
        let mut merged = logs::merge(all);
        if let Some(s) = since {
            merged.retain(|e| e.ms >= s);
        }
        if !first || !merged.is_empty() || !args.follow {
            print(&merged, args.stack.json, width);
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
