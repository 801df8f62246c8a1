//! The state lock: who holds it (id, user@host, pid, operation, since) and the local OS-lock
//! implementation. The S3 lock lives in `s3.rs`; both hand out a [`LockGuard`].

use std::io::{Read, Seek, Write};
use std::path::Path;
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
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// One line naming the holder, for errors and `state lock-info`.
    pub fn holder(&self) -> String {
        format!(
            "{} (pid {}, `{}`, since {}, lock id {})",
            self.who, self.pid, self.operation, self.created, self.id
        )
    }
}

/// A held lock; released by [`LockGuard::release`] (a local one also when dropped or when the
/// process dies).
pub enum LockGuard {
    Local(std::fs::File),
    S3 {
        backend: super::s3::S3Backend,
        id: String,
    },
}

impl LockGuard {
    pub async fn release(self) {
        match self {
            LockGuard::Local(f) => {
                // Empty the holder record first so `lock-info` never shows a stale holder.
                let _ = f.set_len(0);
                let _ = FileExt::unlock(&f);
            }
            LockGuard::S3 { backend, id } => {
                if let Err(e) = backend.release(&id).await {
                    tracing::warn!("releasing the state lock failed: {e}");
                }
            }
        }
    }
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
            let text = serde_json::to_string(&info).unwrap_or_default();
            f.set_len(0).map_err(|e| io_err(path, "write", e))?;
            f.seek(std::io::SeekFrom::Start(0))
                .and_then(|_| f.write_all(text.as_bytes()))
                .and_then(|_| f.flush())
                .map_err(|e| io_err(path, "write", e))?;
            return Ok(LockGuard::Local(f));
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
