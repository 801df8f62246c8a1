//! The apply journal: before each cloud mutation the engine appends its intent (address,
//! action, idempotency token) to a journal beside the local state, and after it the result (the
//! id, or the error). A run that was killed leaves intents without a result; the next run reads
//! the journal first, records that it adopts them, and retries each create that was in flight
//! with the token it was first sent with — AWS answers a repeated RunInstances ClientToken or
//! EFS CreationToken with the resource the first call made, so nothing is made twice — while a
//! create that finished (or failed) is never sent its token again: a relaunch gets a token of
//! its own ([`create_token`]), because AWS answers an old token with the old, maybe terminated,
//! instance, or `IdempotentParameterMismatch` when the parameters changed.
//!
//! Format: JSON lines in `.hactl/<stack>.journal.jsonl` under the working directory (where the
//! local state lives by default; with the S3 backend the journal stays on the machine that ran
//! the apply). A line torn by a kill is skipped when read. `hactl state journal` shows it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// What a journal line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The call is about to be sent.
    Intent,
    /// It succeeded; `id` is the resource's id now (none after a delete).
    Done,
    /// It failed; `error` says why.
    Failed,
    /// A later run found this intent without a result and took it over.
    Adopted,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix time in milliseconds.
    pub at: u64,
    /// The run that wrote it: `<pid>-<start unix ms>`.
    pub run: String,
    pub addr: String,
    /// `create`, `update`, `replace`, `delete`.
    pub action: String,
    pub event: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A journal that could not be read or written.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot {what} the journal `{path}`: {source}")]
#[diagnostic(
    code(hactl::state::journal),
    help("hactl records each cloud change there before making it; check the directory's permissions and free space")
)]
pub struct JournalError {
    what: &'static str,
    path: String,
    source: std::io::Error,
}

/// The journal file of one stack.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Journal {
    /// `.hactl/<stack>.journal.jsonl` under the working directory.
    pub fn for_stack(stack: &str) -> Journal {
        Journal {
            path: PathBuf::from(".hactl").join(format!("{stack}.journal.jsonl")),
        }
    }

    /// A journal at `path` (tests).
    #[cfg(test)]
    pub fn at(path: PathBuf) -> Journal {
        Journal { path }
    }

    /// Appends one line and flushes it to the disk before returning: the intent is on disk
    /// before the call it announces is sent.
    pub async fn append(&self, e: &Entry) -> Result<(), JournalError> {
        let err = |what, source| JournalError {
            what,
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| err("create the directory of", e))?;
        }
        let mut line = serde_json::to_string(e)
            .map_err(|e| err("encode a line of", std::io::Error::other(e)))?;
        line.push('\n');
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| err("open", e))?;
        f.write_all(line.as_bytes())
            .await
            .map_err(|e| err("append to", e))?;
        f.sync_data().await.map_err(|e| err("sync", e))?;
        Ok(())
    }

    /// Every line, oldest first; none when there is no journal yet. A line that does not parse
    /// (torn by a kill mid-write) is skipped.
    pub async fn read(&self) -> Result<Vec<Entry>, JournalError> {
        match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => Ok(parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(JournalError {
                what: "read",
                path: self.path.display().to_string(),
                source: e,
            }),
        }
    }
}

/// The entries of a journal's text (JSON lines; unparsable lines skipped).
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The intents that have no result (done, failed or adopted) from the same run: what was in
/// flight when a run was killed.
pub fn in_flight(entries: &[Entry]) -> Vec<&Entry> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event == Event::Intent)
        .filter(|(i, e)| {
            !entries[i + 1..].iter().any(|r| {
                r.event != Event::Intent
                    && r.addr == e.addr
                    && r.action == e.action
                    && (r.run == e.run || r.event == Event::Adopted)
            })
        })
        .map(|(_, e)| e)
        .collect()
}

/// The token for a create of `addr`, derived from the journal:
/// - a create of `addr` in flight (its run was killed before the answer): its own token again,
///   so AWS answers with what that call made;
/// - otherwise `base` (derived from the state's lineage and the address) salted with the number
///   of creates of `addr` the journal shows finished or failed, so that no token is ever sent
///   twice for two different launches.
pub fn create_token(base: &str, entries: &[Entry], addr: &str) -> String {
    let pending = entries.iter().rev().find(|e| {
        e.addr == addr && e.action == "create" && e.event == Event::Intent && e.token.is_some()
    });
    if let Some(e) = pending {
        let answered = entries
            .iter()
            .skip_while(|x| !std::ptr::eq(*x, e))
            .skip(1)
            .any(|r| {
                r.addr == addr
                    && r.action == "create"
                    && matches!(r.event, Event::Done | Event::Failed)
            });
        if !answered {
            return e.token.clone().unwrap_or_default();
        }
    }
    let finished = entries
        .iter()
        .filter(|e| {
            e.addr == addr && e.action == "create" && matches!(e.event, Event::Done | Event::Failed)
        })
        .count();
    if finished == 0 {
        return base.to_string();
    }
    let h = crate::plan::sha256_hex(format!("{base}#{finished}").as_bytes());
    format!("hactl-{}", &h[..40])
}

/// One apply run's side of the journal. It reads the journal when it starts, and records as
/// adopted every intent a killed run left without a result (observe has found what that run
/// made, by its tags; a create still to do is retried with its token, [`create_token`]).
pub struct Run {
    journal: Journal,
    /// The journal as it was when the run started.
    past: Vec<Entry>,
    /// `<pid>-<start unix ms>`.
    id: String,
}

impl Run {
    /// Opens the stack's journal and adopts what is in flight ([`in_flight`]).
    pub async fn start(stack: &str) -> Result<Run, JournalError> {
        Run::open(Journal::for_stack(stack)).await
    }

    async fn open(journal: Journal) -> Result<Run, JournalError> {
        let past = journal.read().await?;
        let run = Run {
            journal,
            id: format!("{}-{}", std::process::id(), now_ms()),
            past,
        };
        for e in in_flight(&run.past) {
            run.note(
                &e.addr,
                &e.action,
                Event::Adopted,
                e.token.clone(),
                None,
                None,
            )
            .await?;
        }
        Ok(run)
    }

    /// The idempotency token of a create of `addr` whose own token is `base` ([`create_token`]).
    pub fn token(&self, base: &str, addr: &str) -> String {
        create_token(base, &self.past, addr)
    }

    /// Appends one line of this run.
    pub async fn note(
        &self,
        addr: &str,
        action: &str,
        event: Event,
        token: Option<String>,
        id: Option<String>,
        error: Option<String>,
    ) -> Result<(), JournalError> {
        self.journal
            .append(&Entry {
                at: now_ms(),
                run: self.id.clone(),
                addr: addr.to_string(),
                action: action.to_string(),
                event,
                token,
                id,
                error,
            })
            .await
    }
}

/// The journal as text, one line per entry: `time  run  event  action  addr  token/id/error`.
pub fn render(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "the journal is empty\n".into();
    }
    let mut out = String::new();
    for e in entries {
        let event = match e.event {
            Event::Intent => "intent",
            Event::Done => "done",
            Event::Failed => "failed",
            Event::Adopted => "adopted",
        };
        let mut extra = Vec::new();
        if let Some(t) = &e.token {
            extra.push(format!("token {t}"));
        }
        if let Some(i) = &e.id {
            extra.push(format!("id {i}"));
        }
        if let Some(x) = &e.error {
            extra.push(format!("error: {x}"));
        }
        out.push_str(&format!(
            "{:>13}  {:<24}  {:<7}  {:<7}  {}  {}\n",
            e.at,
            e.run,
            event,
            e.action,
            e.addr,
            extra.join(", ")
        ));
    }
    let open = in_flight(entries);
    if !open.is_empty() {
        out.push_str(&format!(
            "{} change(s) in flight: the next `hactl up` adopts them\n",
            open.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(run: &str, addr: &str, action: &str, event: Event, token: Option<&str>) -> Entry {
        Entry {
            at: 0,
            run: run.into(),
            addr: addr.into(),
            action: action.into(),
            event,
            token: token.map(str::to_string),
            id: None,
            error: None,
        }
    }

    /// A run killed between the intent and the answer leaves the intent in flight; the next
    /// run retries that create with the same token (AWS returns what the first call made).
    #[test]
    fn a_create_in_flight_is_retried_with_its_own_token() {
        let j = vec![
            e("r1", "aws_vpc.main", "create", Event::Intent, None),
            e("r1", "aws_vpc.main", "create", Event::Done, None),
            e(
                "r1",
                "aws_instance.web[0]",
                "create",
                Event::Intent,
                Some("t-first"),
            ),
        ];
        let open: Vec<&str> = in_flight(&j).iter().map(|e| e.addr.as_str()).collect();
        assert_eq!(open, ["aws_instance.web[0]"]);
        assert_eq!(create_token("base", &j, "aws_instance.web[0]"), "t-first");
        assert_eq!(create_token("base", &j, "aws_instance.web[1]"), "base");
    }

    /// Issue 12 §2 tokens: after a launch that finished (or failed), a relaunch of the same
    /// address never repeats a token: AWS would answer with the first (terminated) instance,
    /// or IdempotentParameterMismatch.
    #[test]
    fn a_relaunch_never_reuses_a_finished_token() {
        let mut j = vec![
            e(
                "r1",
                "aws_instance.web[0]",
                "create",
                Event::Intent,
                Some("base"),
            ),
            e("r1", "aws_instance.web[0]", "create", Event::Done, None),
        ];
        let second = create_token("base", &j, "aws_instance.web[0]");
        assert_ne!(second, "base");
        j.push(e(
            "r2",
            "aws_instance.web[0]",
            "create",
            Event::Intent,
            Some(second.as_str()),
        ));
        j.push(e(
            "r2",
            "aws_instance.web[0]",
            "create",
            Event::Failed,
            None,
        ));
        let third = create_token("base", &j, "aws_instance.web[0]");
        assert_ne!(third, second);
        assert_ne!(third, "base");
        assert!(in_flight(&j).is_empty());
    }

    /// An adopted intent is no longer in flight; a torn last line is skipped.
    #[test]
    fn adoption_closes_an_intent_and_torn_lines_are_skipped() {
        let j = vec![
            e("r1", "aws_lb.main", "create", Event::Intent, None),
            e("r2", "aws_lb.main", "create", Event::Adopted, None),
        ];
        assert!(in_flight(&j).is_empty());
        let mut text: String = j
            .iter()
            .map(|x| serde_json::to_string(x).unwrap() + "\n")
            .collect();
        text.push_str("{\"at\":1,\"run\":\"r3\",\"ad");
        assert_eq!(parse(&text), j);
    }

    /// Issue 11 item 6: a run that was killed between an intent and its answer is resumed
    /// from the journal: the next run records that it adopts the intent (nothing is in flight
    /// any more), and its create of that address is sent with the killed run's token, so AWS
    /// answers with what that call made.
    #[tokio::test]
    async fn a_run_resumes_a_killed_runs_intents_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::at(dir.path().join("s.journal.jsonl"));
        for x in [
            e(
                "killed",
                "aws_vpc.main",
                "create",
                Event::Intent,
                Some("t-vpc"),
            ),
            e("killed", "aws_vpc.main", "create", Event::Done, None),
            e(
                "killed",
                "aws_instance.web[0]",
                "create",
                Event::Intent,
                Some("t-web0"),
            ),
        ] {
            journal.append(&x).await.unwrap();
        }
        let run = Run::open(journal.clone()).await.unwrap();
        let after = journal.read().await.unwrap();
        let adopted: Vec<&Entry> = after.iter().filter(|x| x.event == Event::Adopted).collect();
        assert_eq!(adopted.len(), 1, "{after:?}");
        assert_eq!(adopted[0].addr, "aws_instance.web[0]");
        assert_eq!(adopted[0].token.as_deref(), Some("t-web0"));
        assert_ne!(adopted[0].run, "killed");
        assert!(in_flight(&after).is_empty(), "{after:?}");
        assert_eq!(run.token("base", "aws_instance.web[0]"), "t-web0");
        assert_ne!(
            run.token("base", "aws_vpc.main"),
            "t-vpc",
            "a finished create's token"
        );
        // A second run adopts nothing more.
        Run::open(journal.clone()).await.unwrap();
        let again = journal.read().await.unwrap();
        assert_eq!(again.len(), after.len());
    }

    #[tokio::test]
    async fn append_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::at(dir.path().join("sub/s.journal.jsonl"));
        assert!(journal.read().await.unwrap().is_empty());
        let x = e("r1", "aws_vpc.main", "create", Event::Intent, Some("t"));
        journal.append(&x).await.unwrap();
        journal.append(&x).await.unwrap();
        assert_eq!(journal.read().await.unwrap(), vec![x.clone(), x]);
    }
}
