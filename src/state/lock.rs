//! The local state lock: an OS file lock (`flock`) on a file beside the state, holding the
//! holder's [`LockInfo`] with its lease (see `lease.rs`).

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use super::lease::{now_secs, renew_every, LockGuard, LockInfo, POLL};
use super::StateError;

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
            return Ok(LockGuard::new(heartbeat, move || async move {
                // Empty the holder record first so `lock-info` never shows a stale holder.
                let _ = f.set_len(0);
                let _ = FileExt::unlock(f.as_ref());
            }));
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
