//! Reading the services' logs from the hosts for `hactl logs`: one script per host over the
//! open SSH connection returns what each log file holds past the offsets read last time
//! (`ha::logs::read_script`), stamped and merged in time order (`ha::logs::merge`). A file
//! that shrank was rotated or truncated and is read from its start again.

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::ha::logs::{self, Entry};
use crate::provider::hosts::{self as hp, Connection};

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
    #[error("`--follow` never ends, so it cannot be one `--json` document")]
    #[diagnostic(
        code(hactl::logs::follow_json),
        help("use `--json-events`: one `log` event per line as it arrives")
    )]
    FollowJson,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `--since`: a duration ago (`10m`) or an ISO time, as Unix milliseconds.
pub fn since_ms(text: &str) -> Result<i64, LogsError> {
    if let Ok(d) = crate::stack::duration::parse(text) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    logs::parse_iso(text).ok_or_else(|| LogsError::Since(text.to_string()))
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

/// Where each host's files were read up to, by host then path.
pub type Offsets = BTreeMap<String, BTreeMap<String, u64>>;

/// One round over every open host (at most `parallelism` at once): the new entries merged
/// in time order, and the hosts that failed with their error. `offsets` moves on for the
/// hosts that answered.
pub async fn poll(
    open: &[Connection],
    services: &[String],
    lines: usize,
    parallelism: usize,
    offsets: &mut Offsets,
) -> (Vec<Entry>, Vec<(String, hp::HostError)>) {
    let results: Vec<_> = futures::stream::iter(open.iter().map(|c| {
        let off = offsets.get(&c.host).cloned().unwrap_or_default();
        async move {
            let r = read_host(c, services, lines, &off).await;
            (c.host.clone(), r)
        }
    }))
    .buffer_unordered(parallelism.max(1))
    .collect()
    .await;
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for (host, r) in results {
        match r {
            Ok((entries, next)) => {
                all.extend(entries);
                offsets.insert(host, next);
            }
            Err(e) => failed.push((host, e)),
        }
    }
    (logs::merge(all), failed)
}
