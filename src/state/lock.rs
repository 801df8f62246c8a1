//! The state lock: who holds it (id, user@host, pid, operation, since, lease) and the local
//! OS-lock implementation. The S3 lock lives in `s3.rs`; both hand out a [`LockGuard`].
//!
//! **Leases.** A lock records when its holder last renewed it (`renewed`) and for how long a
//! renewal counts (`ttl`). A live holder renews it every `ttl / 3` from a heartbeat task, so
//! a lock whose lease ran out belongs to a holder that died (SIGKILL, a lost machine): the next
//! run takes it over instead of needing `force-unlock`. The S3 lock depends on this. The local
//! lock is also an OS file lock (`flock`), which the kernel drops the moment its holder dies,
//! so a dead local holder never blocks anyone even for its TTL; its lease is still written
//! and renewed, so `state lock-info` shows a live holder the same way for both backends.
//! The TTL is 60 s (`HACTL_LOCK_TTL`, e.g. `5s` for tests). Judging a lease uses the local
//! clock against the holder's: clocks must agree to well within the TTL.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use super::{random_id, StateError};

/// What a lock records about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    pub operation: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// When the holder last renewed its lease (seconds since the Unix epoch; 0 in a lock
    /// written before leases existed, which never expires).
    #[serde(default)]
    pub renewed: u64,
    /// Seconds a renewal counts for (0: no lease).
    #[serde(default)]
    pub ttl: u64,
}

/// Seconds since the Unix epoch.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The lease TTL: `HACTL_LOCK_TTL` (a duration, at least 1 s), else 60 s.
pub fn lease_ttl() -> Duration {
    std::env::var("HACTL_LOCK_TTL")
        .ok()
        .and_then(|t| crate::stack::duration::parse(&t).ok())
        .map(|d| d.0.max(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(60))
}

impl LockInfo {
    pub fn new(operation: &str) -> LockInfo {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        LockInfo {
            id: random_id(),
            who: format!("{user}@{host}"),
            pid: std::process::id(),
            operation: operation.to_string(),
            created: now_secs(),
            renewed: now_secs(),
            ttl: lease_ttl().as_secs(),
        }
    }

    /// True when the lease ran out at `now` (seconds): the holder stopped renewing it.
    pub fn expired(&self, now: u64) -> bool {
        self.ttl > 0 && self.renewed.saturating_add(self.ttl) < now
    }

    /// One line naming the holder, for errors and `state lock-info`.
    pub fn holder(&self) -> String {
        format!(
            "{} (pid {}, `{}`, since {}, renewed {}, lease {} s, lock id {})",
            self.who, self.pid, self.operation, self.created, self.renewed, self.ttl, self.id
        )
    }
}

/// A held lock and the heartbeat that renews its lease; released by [`LockGuard::release`]
/// (a local one also when dropped or when the process dies; an S3 one then expires).
pub struct LockGuard {
    held: Held,
    heartbeat: tokio::task::JoinHandle<()>,
}

enum Held {
    Local(Arc<std::fs::File>),
    S3 {
        backend: super::s3::S3Backend,
        id: String,
    },
}

impl LockGuard {
    pub async fn release(self) {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        match self.held {
            Held::Local(f) => {
                // Empty the holder record first so `lock-info` never shows a stale holder.
                let _ = f.set_len(0);
                let _ = FileExt::unlock(f.as_ref());
            }
            Held::S3 { backend, id } => {
                if let Err(e) = backend.release(&id).await {
                    tracing::warn!("releasing the state lock failed: {e}");
                }
            }
        }
    }

    /// Stops renewing the lease without releasing the lock: what a holder killed by SIGKILL
    /// leaves behind (tests of expiry).
    #[cfg(test)]
    pub(super) async fn abandon(self) {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        // A local lock's file is closed, so the kernel drops its flock as at a process's death;
        // an S3 lock object stays, with a lease nobody renews.
        drop(self.held);
    }

    pub(super) fn s3(
        backend: super::s3::S3Backend,
        id: String,
        heartbeat: tokio::task::JoinHandle<()>,
    ) -> LockGuard {
        LockGuard {
            held: Held::S3 { backend, id },
            heartbeat,
        }
    }
}

/// How often a holder renews its lease: three times per TTL, so one late or failed renewal
/// does not lose it.
pub(super) fn renew_every(ttl_secs: u64) -> Duration {
    Duration::from_millis(ttl_secs.max(1) * 1000 / 3)
}

/// Writes the holder record into the (locked) local lock file.
fn write_info(f: &std::fs::File, info: &LockInfo) -> std::io::Result<()> {
    let text = serde_json::to_string(info).unwrap_or_default();
    let mut w = f;
    f.set_len(0)?;
    w.seek(std::io::SeekFrom::Start(0))?;
    w.write_all(text.as_bytes())?;
    w.flush()
}

fn io_err(path: &Path, what: &'static str, source: std::io::Error) -> StateError {
    StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn open(path: &Path) -> Result<std::fs::File, StateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err(path, "create the directory of", e))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err(path, "open", e))
}

fn read_info(f: &mut std::fs::File) -> Option<LockInfo> {
    let mut s = String::new();
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// Polling interval while waiting for a lock: short enough to feel immediate.
pub(super) const POLL: Duration = Duration::from_millis(200);

pub(super) async fn local_lock(
    path: &Path,
    info: LockInfo,
    wait: Duration,
) -> Result<LockGuard, StateError> {
    let deadline = Instant::now() + wait;
    let mut f = open(path)?;
    loop {
        if FileExt::try_lock_exclusive(&f).map_err(|e| io_err(path, "lock", e))? {
            write_info(&f, &info).map_err(|e| io_err(path, "write", e))?;
            let f = Arc::new(f);
            let file = Arc::clone(&f);
            let heartbeat = tokio::spawn(async move {
                let mut info = info;
                loop {
                    tokio::time::sleep(renew_every(info.ttl)).await;
                    info.renewed = now_secs();
                    if let Err(e) = write_info(&file, &info) {
                        tracing::warn!("renewing the state lock's lease failed: {e}");
                    }
                }
            });
            return Ok(LockGuard {
                held: Held::Local(f),
                heartbeat,
            });
        }
        if Instant::now() >= deadline {
            let holder = read_info(&mut f);
            return Err(StateError::Locked {
                holder: holder
                    .as_ref()
                    .map(LockInfo::holder)
                    .unwrap_or_else(|| "another process".into()),
                id: holder.map(|h| h.id).unwrap_or_default(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(super) fn local_info(path: &Path) -> Result<Option<LockInfo>, StateError> {
    if !path.exists() {
        return Ok(None);
    }
    let mut f = open(path)?;
    if FileExt::try_lock_exclusive(&f).map_err(|e| io_err(path, "lock", e))? {
        let _ = FileExt::unlock(&f);
        return Ok(None);
    }
    Ok(read_info(&mut f))
}
