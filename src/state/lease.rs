//! What every state lock is, whichever backend holds it: the holder record ([`LockInfo`]:
//! id, user@host, pid, operation, since, lease), the lease rules, and the [`LockGuard`] a
//! backend hands out. The local lock (`lock.rs`) and the S3 lock (`s3.rs`) both build on this
//! file and on nothing of each other.
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

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::random_id;

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

/// How a held lock is let go: empty and unlock the local lock file, or delete the S3 lock
/// object if it is still this holder's. Each backend supplies its own.
type Release = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A held lock and the heartbeat that renews its lease; released by [`LockGuard::release`]
/// (a local one also when dropped or when the process dies; an S3 one then expires).
pub struct LockGuard {
    release: Release,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl LockGuard {
    /// A held lock: `heartbeat` renews its lease until the guard is released; `release`
    /// lets the lock go (and is dropped unrun when a test abandons the lock).
    pub(super) fn new<F>(
        heartbeat: tokio::task::JoinHandle<()>,
        release: impl FnOnce() -> F + Send + 'static,
    ) -> LockGuard
    where
        F: Future<Output = ()> + Send + 'static,
    {
        LockGuard {
            release: Box::new(move || Box::pin(release())),
            heartbeat,
        }
    }

    pub async fn release(self) {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        (self.release)().await;
    }

    /// Stops renewing the lease without releasing the lock: what a holder killed by SIGKILL
    /// leaves behind (tests of expiry).
    #[cfg(test)]
    pub(super) async fn abandon(self) {
        self.heartbeat.abort();
        let _ = self.heartbeat.await;
        // A local lock's file is closed (the release closure held it), so the kernel drops
        // its flock as at a process's death; an S3 lock object stays, with a lease nobody
        // renews.
        drop(self.release);
    }
}

/// How often a holder renews its lease: three times per TTL, so one late or failed renewal
/// does not lose it.
pub(super) fn renew_every(ttl_secs: u64) -> Duration {
    Duration::from_millis(ttl_secs.max(1) * 1000 / 3)
}

/// Polling interval while waiting for a lock: short enough to feel immediate.
pub(super) const POLL: Duration = Duration::from_millis(200);
