//! `hactl deploy`, `rollback` and `deploy history` as people read them: one line per host
//! with its result and version, the load probe's figures, the outcome; the history as a
//! table in UTC.

use std::fmt::Write as _;

use crate::deploy::exec::{DeployReport, Options, Session, Target};
use crate::deploy::rollout;
use crate::engine::serving::Serving;

/// Where a rollout's steps go: this run's hooks (`Hooks::step`), shown on stderr.
pub fn steps() -> crate::deploy::exec::StepSink {
    let hooks = super::hooks();
    Box::new(move |subject, message, elapsed| hooks.step(subject, message, elapsed))
}

/// The question `deploy`/`rollback` ask before they start (without `--auto-approve`).
pub fn question(
    op: &str,
    target: &Target,
    session: &Session<'_>,
    stack: &crate::stack::Stack,
    opts: &Options,
) -> String {
    format!(
        "{op} {} ({}) to {} host(s) of stack `{}` in batches of {}",
        rollout::version_of(&target.image),
        target.image,
        session.app_hosts.len(),
        stack.name(),
        opts.batch
    )
}

/// The `--json` document's body: the report, with the wait's outcome as `serving` when the
/// command waited for the stack to serve.
pub fn document(r: &DeployReport, serving: Option<&Serving>) -> miette::Result<serde_json::Value> {
    let encode = |e: serde_json::Error| miette::miette!("cannot encode JSON output: {e}");
    let mut doc = serde_json::to_value(r).map_err(encode)?;
    if let (Some(s), Some(obj)) = (serving, doc.as_object_mut()) {
        obj.insert("serving".into(), serde_json::to_value(s).map_err(encode)?);
    }
    Ok(doc)
}

pub fn human(r: &DeployReport) -> String {
    let mut s = String::new();
    for h in &r.hosts {
        let _ = write!(s, "  {:<8} {:<16} {}", h.host, h.result, h.version);
        if let Some(e) = &h.error {
            let _ = write!(s, "  ({e})");
        }
        s.push('\n');
    }
    if let Some(p) = &r.probe {
        let _ = writeln!(
            s,
            "probe {}: {} requests, {} failed, p50 {:.1} ms, p99 {:.1} ms",
            p.url, p.stats.requests, p.stats.failed, p.stats.p50_ms, p.stats.p99_ms
        );
    }
    let verb = match r.outcome {
        rollout::Outcome::Deployed => format!("{} {}: deployed", r.op, r.version),
        rollout::Outcome::RolledBack => format!("{} {}: rolled back", r.op, r.version),
        rollout::Outcome::Failed => format!("{} {}: FAILED", r.op, r.version),
    };
    let _ = write!(s, "{verb} in {:.1} s", r.elapsed_ms as f64 / 1000.0);
    if let Some(reason) = &r.reason {
        let _ = write!(s, ": {reason}");
    }
    s.push('\n');
    s
}

/// `deploy history`: one row per recorded deploy or rollback, oldest first.
pub fn history(entries: &[crate::deploy::rollout::HistoryEntry]) -> String {
    let mut s = String::from("TIME (UTC)           OP        VERSION      OUTCOME      WHO\n");
    for e in entries {
        let _ = writeln!(
            s,
            "{:<20} {:<9} {:<12} {:<12} {}",
            utc(e.time),
            e.op,
            e.version,
            e.outcome.as_str(),
            e.who
        );
    }
    if entries.is_empty() {
        s.push_str("(no deploys recorded)\n");
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS` from unix seconds (civil-from-days, no time zone crate needed).
pub fn utc(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }
}
