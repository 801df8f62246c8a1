//! hactl's state: resource ids, outputs, serial and lineage, with a lock, kept in a local
//! file or in S3.
//!
//! The state records every resource's id, and every plan reads those ids first: a resource
//! whose `hactl:stack`/`hactl:address` tags were removed (a console tag clean-up) is still
//! found, re-tagged, and never replaced for it. The tags find the rest, and rebuild a lost
//! state (`hactl state refresh`). The state also holds the outputs (for `hactl outputs` and
//! templates without an AWS call), the pinned SSH host keys, and a lineage + serial that stop
//! one run from overwriting another stack's or a newer state.
//!
//! Backends: `local` (`.hactl/<stack>.state.json` under the working directory, written
//! atomically by rename; locked with an OS file lock on `.hactl/<stack>.lock`, which the kernel
//! releases when the holder dies) and `s3` (the state object at `key`, the lock object at
//! `key.lock` created with `If-None-Match: *`, so exactly one writer wins). Both locks carry a
//! lease that a live holder renews: a dead holder's S3 lock is taken over once its lease runs
//! out (see `lock.rs`); `hactl state force-unlock ID` is for not waiting that long.
//!
//! Writes compare before they replace: a state of another lineage, or of the same lineage at
//! a serial other than the one this run read (another run wrote since), is refused
//! (`hactl::state::lineage`, `hactl::state::stale`). On S3 the compare and the write are one
//! conditional request (`If-Match` the ETag read; `If-None-Match: *` for a first state), so
//! two writers cannot both pass the compare.

mod lease;
mod lock;
mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use lease::{LockGuard, LockInfo};

use crate::stack::Stack;

/// The state document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Random id fixed when the state is first created: a state from elsewhere is refused.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    pub stack: String,
    /// address → what hactl knows about it.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceState>,
    /// Outputs: `balancer.dns_name`, `database.endpoint`, `shared_fs.id`, `hosts[]`, …
    #[serde(default)]
    pub outputs: serde_json::Value,
    /// SSH host keys pinned at first contact (accept-new once, strict after): instance id →
    /// the known_hosts lines its first contact added. Only current instances are kept, so a
    /// replaced instance is contacted anew; `.hactl/<stack>.known_hosts` is rebuilt from here.
    /// (Local state: `known_hosts` beside it; S3 state: the team shares the pins.)
    #[serde(default)]
    pub host_keys: BTreeMap<String, String>,
    /// The stack's key for keyed digests in plans (64 hex digits, see
    /// [`crate::plan::DigestKey`]): why the state file is written owner-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceState {
    pub kind: String,
    pub id: String,
}

impl State {
    pub fn new(stack: &str) -> State {
        State {
            version: 1,
            lineage: random_id(),
            serial: 0,
            stack: stack.to_string(),
            resources: BTreeMap::new(),
            outputs: serde_json::Value::Object(Default::default()),
            host_keys: BTreeMap::new(),
            digest_key: Some(crate::plan::DigestKey::random().to_hex()),
        }
    }
}

/// The stack's key for keyed digests in plans: read from the state and, when `create` (an
/// `up`/`down` of a `provider: hosts` stack; `plan` writes nothing), created and saved there
/// on first use. An AWS stack's state gets one when it is created (its runs write the state
/// themselves). When there is no key, or the state cannot be read or written, the key is
/// this run's alone: digests then differ between runs, and still reveal nothing.
pub async fn digest_key(stack: &Stack, create: bool) -> crate::plan::DigestKey {
    use crate::plan::DigestKey;
    let Ok(backend) = Backend::for_stack(stack).await else {
        return DigestKey::random();
    };
    let mut st = match backend.read(stack.name()).await {
        Ok(Some(st)) => st,
        Ok(None) if create && stack.file.aws.is_none() => {
            let mut st = State::new(stack.name());
            st.digest_key = None;
            st
        }
        _ => return DigestKey::random(),
    };
    if let Some(k) = st.digest_key.as_deref().and_then(DigestKey::from_hex) {
        return k;
    }
    let k = DigestKey::random();
    if create && stack.file.aws.is_none() {
        st.digest_key = Some(k.to_hex());
        if backend.write(&mut st).await.is_err() {
            return DigestKey::random();
        }
    }
    k
}

/// 16 random bytes as hex: lineages and lock ids.
pub fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("cannot {what} `{path}`: {source}")]
    #[diagnostic(code(hactl::state::io))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state `{path}` is not valid: {message}")]
    #[diagnostic(
        code(hactl::state::corrupt),
        help("restore it from a backup, or delete it and run `hactl state refresh` to rebuild it from the resources' tags")
    )]
    Corrupt { path: String, message: String },
    #[error("the state `{path}` belongs to stack `{found}`, not `{expected}`")]
    #[diagnostic(
        code(hactl::state::wrong_stack),
        help("point `state.path`/`state.key` at this stack's own state")
    )]
    WrongStack {
        path: String,
        found: String,
        expected: String,
    },
    #[error(
        "the state changed under us: lineage {found} (serial {found_serial}) is not ours ({ours})"
    )]
    #[diagnostic(
        code(hactl::state::lineage),
        help("another state was written to the same place; inspect it before retrying")
    )]
    Lineage {
        found: String,
        found_serial: u64,
        ours: String,
    },
    #[error("the state changed under us: it is at serial {found}, this run read serial {ours}")]
    #[diagnostic(
        code(hactl::state::stale),
        help("another run wrote the state since this one read it; run again to start from the new state")
    )]
    Stale { found: u64, ours: u64 },
    #[error("the state is locked by {holder}")]
    #[diagnostic(
        code(hactl::state::locked),
        help("wait for that run to finish (or pass `--lock-wait 5m`); if it died, `hactl state force-unlock {id}`")
    )]
    Locked { holder: String, id: String },
    #[error("the lock is held by `{found}`, not `{given}`")]
    #[diagnostic(
        code(hactl::state::unlock_id),
        help("`hactl state lock-info` shows the id of the current lock")
    )]
    UnlockMismatch { found: String, given: String },
    #[error("{0}")]
    #[diagnostic(
        code(hactl::state::local_unlock),
        help("a local lock is an OS file lock: it is released when its holder exits; stop that process instead")
    )]
    LocalUnlock(String),
    #[error("the `s3` state backend needs `state.bucket`")]
    #[diagnostic(
        code(hactl::state::no_bucket),
        help("add `bucket:` (and optionally `key:`) under `state:`")
    )]
    NoBucket,
    #[error("S3 {op} `s3://{bucket}/{key}` failed: {message}")]
    #[diagnostic(
        code(hactl::state::s3),
        help("check the bucket exists and the credentials may read and write it")
    )]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
}

/// Where a stack's state lives.
pub enum Backend {
    Local { state: PathBuf, lock: PathBuf },
    S3(s3::S3Backend),
}

impl Backend {
    /// The backend the stack names (default: local under the working directory).
    pub async fn for_stack(stack: &Stack) -> Result<Backend, StateError> {
        let name = stack.name();
        let spec = stack.file.state.as_ref();
        match spec.map(|s| s.backend.value.as_str()) {
            Some("s3") => {
                let spec = spec.ok_or(StateError::NoBucket)?;
                let bucket = spec.bucket.clone().ok_or(StateError::NoBucket)?;
                let key = spec
                    .key
                    .clone()
                    .unwrap_or_else(|| format!("hactl/{name}.state.json"));
                let region = stack
                    .file
                    .aws
                    .as_ref()
                    .map(|a| a.region.value.clone())
                    .unwrap_or_else(|| "us-east-1".into());
                Ok(Backend::S3(s3::S3Backend::new(&region, bucket, key).await))
            }
            _ => {
                let state = match spec.and_then(|s| s.path.as_deref()) {
                    Some(p) => PathBuf::from(p),
                    None => Path::new(".hactl").join(format!("{name}.state.json")),
                };
                let lock = state.with_extension("lock");
                Ok(Backend::Local { state, lock })
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Backend::Local { state, .. } => state.display().to_string(),
            Backend::S3(s) => s.describe(),
        }
    }

    /// Reads the state; `None` when there is none yet.
    pub async fn read(&self, stack: &str) -> Result<Option<State>, StateError> {
        Ok(self.read_tagged(stack).await?.map(|(st, _)| st))
    }

    /// [`Backend::read`], with the S3 object's ETag (for the conditional write).
    async fn read_tagged(
        &self,
        stack: &str,
    ) -> Result<Option<(State, Option<String>)>, StateError> {
        let (text, path, etag) = match self {
            Backend::Local { state, .. } => match tokio::fs::read_to_string(state).await {
                Ok(t) => (t, state.display().to_string(), None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => {
                    return Err(StateError::Io {
                        what: "read",
                        path: state.clone(),
                        source,
                    })
                }
            },
            Backend::S3(s) => match s.get_tagged(s.key()).await? {
                Some((t, etag)) => (t, s.describe(), Some(etag)),
                None => return Ok(None),
            },
        };
        let st: State = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if st.stack != stack {
            return Err(StateError::WrongStack {
                path,
                found: st.stack,
                expected: stack.to_string(),
            });
        }
        Ok(Some((st, etag)))
    }

    /// Writes the state with the next serial. Refuses to overwrite another lineage, or the
    /// same lineage at a serial other than `st`'s (another run wrote since `st` was read);
    /// on S3 the write is conditional on the object read being the one replaced.
    pub async fn write(&self, st: &mut State) -> Result<(), StateError> {
        let current = self.read_tagged(&st.stack).await?;
        let mut etag = None;
        if let Some((cur, tag)) = current {
            if cur.lineage != st.lineage {
                return Err(StateError::Lineage {
                    found: cur.lineage,
                    found_serial: cur.serial,
                    ours: st.lineage.clone(),
                });
            }
            if cur.serial != st.serial {
                return Err(StateError::Stale {
                    found: cur.serial,
                    ours: st.serial,
                });
            }
            etag = tag;
        }
        let mut next = st.clone();
        next.serial += 1;
        let text = serde_json::to_string_pretty(&next).map_err(|e| StateError::Corrupt {
            path: self.describe(),
            message: e.to_string(),
        })? + "\n";
        match self {
            Backend::Local { state, .. } => write_atomic(state, text.as_bytes()).await?,
            Backend::S3(s) => {
                if s.put_if(s.key(), text, etag.as_deref()).await?.is_none() {
                    // Written between our read and our write: read again to say what it is.
                    let found = self.read(&st.stack).await?.map(|c| c.serial).unwrap_or(0);
                    return Err(StateError::Stale {
                        found,
                        ours: st.serial,
                    });
                }
            }
        }
        st.serial = next.serial;
        Ok(())
    }

    /// Takes the lock for `operation`, waiting up to `wait` for a holder to let go.
    pub async fn lock(&self, operation: &str, wait: Duration) -> Result<LockGuard, StateError> {
        let info = LockInfo::new(operation);
        match self {
            Backend::Local { lock, .. } => lock::local_lock(lock, info, wait).await,
            Backend::S3(s) => s.lock(info, wait).await,
        }
    }

    /// Who holds the lock now (None: nobody).
    pub async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        match self {
            Backend::Local { lock, .. } => lock::local_info(lock),
            Backend::S3(s) => s.lock_info().await,
        }
    }

    /// Removes a lock left by a dead run, if its id is `id`.
    pub async fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        match self {
            Backend::Local { lock, .. } => match lock::local_info(lock)? {
                None => Err(StateError::LocalUnlock(
                    "the local state is not locked".into(),
                )),
                Some(i) => Err(StateError::LocalUnlock(format!(
                    "the local lock {} is held by a live process ({}, pid {})",
                    i.id, i.who, i.pid
                ))),
            },
            Backend::S3(s) => s.force_unlock(id).await,
        }
    }
}

/// Replaces the state file ([`crate::localfs::replace`]) on a blocking thread: a reader or a
/// crash never sees half. Owner-only from creation, its directory too: the state holds the
/// digest key and pinned host keys. (With tokio's `File`, `write_all` returned with the last
/// chunk still in flight, and CI once read a just-written state as empty.)
async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
    let at = path.clone();
    let io = |e: crate::localfs::ReplaceError| StateError::Io {
        what: e.what,
        path: e.path,
        source: e.source,
    };
    match tokio::task::spawn_blocking(move || crate::localfs::replace(&path, &bytes, 0o600, 0o700))
        .await
    {
        Ok(r) => r.map_err(io),
        Err(e) => Err(StateError::Io {
            what: "write",
            path: at,
            source: std::io::Error::other(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI once saw `down` read its own state back as an empty file ("EOF while parsing"):
    /// tokio's `write_all` returned with the last chunk queued on a background thread, and the
    /// handle was dropped, so the rename could publish the file before its bytes. The contract:
    /// every read right after the write sees all of it. (The race needs a busy blocking pool;
    /// on an idle machine the old code passed this too, so it guards, it did not reproduce.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_atomic_write_is_whole_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        // a state's size, and one of several of tokio's 2 MiB chunks
        for round in 0..400u32 {
            let len = if round % 40 == 0 { 5 << 20 } else { 3000 } + round as usize;
            let bytes = vec![b'a' + (round % 26) as u8; len];
            write_atomic(&path, &bytes).await.unwrap();
            let back = std::fs::read(&path).unwrap();
            assert_eq!(back.len(), bytes.len(), "round {round}");
            assert!(back == bytes, "round {round}: other bytes");
        }
    }

    #[tokio::test]
    async fn local_state_round_trip_and_lineage() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::Local {
            state: dir.path().join("s.json"),
            lock: dir.path().join("s.lock"),
        };
        assert!(b.read("x").await.unwrap().is_none());
        let mut st = State::new("x");
        b.write(&mut st).await.unwrap();
        b.write(&mut st).await.unwrap();
        let back = b.read("x").await.unwrap().unwrap();
        assert_eq!(back.serial, 2);
        assert_eq!(back.lineage, st.lineage);
        // Another lineage may not overwrite it.
        let mut other = State::new("x");
        let err = b.write(&mut other).await.unwrap_err();
        assert!(matches!(err, StateError::Lineage { .. }), "{err}");
        // Nor is it read as another stack's.
        let err = b.read("y").await.unwrap_err();
        assert!(matches!(err, StateError::WrongStack { .. }), "{err}");
    }

    /// Regression (issue 15 §6, issue 11 §5): writes compared the lineage but never the
    /// serial, so a run that read serial 2 overwrote serial 3 that another run wrote since.
    #[tokio::test]
    async fn a_write_over_a_newer_serial_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::Local {
            state: dir.path().join("s.json"),
            lock: dir.path().join("s.lock"),
        };
        let mut first = State::new("x");
        b.write(&mut first).await.unwrap();
        let mut a = b.read("x").await.unwrap().unwrap();
        let mut other = b.read("x").await.unwrap().unwrap();
        other.outputs = serde_json::json!({"by": "other"});
        b.write(&mut other).await.unwrap();
        assert_eq!(other.serial, 2);
        a.outputs = serde_json::json!({"by": "a"});
        let err = b.write(&mut a).await.unwrap_err();
        assert!(
            matches!(err, StateError::Stale { found: 2, ours: 1 }),
            "{err}"
        );
        assert_eq!(a.serial, 1, "a refused write leaves the serial");
        let kept = b.read("x").await.unwrap().unwrap();
        assert_eq!(kept.outputs, serde_json::json!({"by": "other"}));
    }

    /// A live holder renews its lease; a local lock whose holder is gone (its file closed, as
    /// at SIGKILL) is free at once, without waiting for the TTL.
    #[tokio::test]
    async fn local_lease_is_renewed_and_a_dead_holder_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::Local {
            state: dir.path().join("s.json"),
            lock: dir.path().join("s.lock"),
        };
        let mut info = LockInfo::new("up");
        info.ttl = 1;
        let g = lock::local_lock(&dir.path().join("s.lock"), info, Duration::ZERO)
            .await
            .unwrap();
        let first = b.lock_info().await.unwrap().unwrap();
        assert_eq!((first.operation.as_str(), first.ttl), ("up", 1));
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let later = b.lock_info().await.unwrap().unwrap();
        assert!(later.renewed > first.renewed, "{first:?} then {later:?}");
        assert!(!later.expired(lease::now_secs()), "{later:?}");
        g.abandon().await;
        let t0 = std::time::Instant::now();
        let g2 = b.lock("down", Duration::from_secs(5)).await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        g2.release().await;
    }

    #[tokio::test]
    async fn local_state_holding_the_digest_key_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".hactl/s.json");
        let b = Backend::Local {
            state: state.clone(),
            lock: dir.path().join(".hactl/s.lock"),
        };
        let mut st = State::new("x");
        assert!(st
            .digest_key
            .as_deref()
            .and_then(crate::plan::DigestKey::from_hex)
            .is_some());
        b.write(&mut st).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o600);
        assert_eq!(mode(&dir.path().join(".hactl")), 0o700);
        let back = b.read("x").await.unwrap().unwrap();
        assert_eq!(back.digest_key, st.digest_key);
    }

    #[tokio::test]
    async fn local_lock_excludes_and_waits() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("s.lock");
        let b = Backend::Local {
            state: dir.path().join("s.json"),
            lock: lock.clone(),
        };
        let g = b.lock("up", Duration::ZERO).await.unwrap();
        let info = b.lock_info().await.unwrap().unwrap();
        assert_eq!(info.operation, "up");
        let Err(err) = b.lock("plan", Duration::ZERO).await else {
            panic!("a second lock was granted")
        };
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        let waiter = tokio::spawn(async move {
            let b = Backend::Local {
                state: dir.path().join("s.json"),
                lock,
            };
            b.lock("down", Duration::from_secs(5)).await.map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        g.release().await;
        waiter.await.unwrap().unwrap();
    }
}
