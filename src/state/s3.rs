//! The S3 state backend: the state object at `key`, its lock at `key.lock`.
//!
//! The lock is a conditional create (`If-None-Match: *`): S3 answers 412 to every writer but
//! the first, so two runs can never both believe they hold it. The lock object holds the
//! holder's [`LockInfo`] with its lease, renewed by a heartbeat with writes conditional on the
//! object's ETag (`If-Match`). Release, force-unlock and the takeover of an expired lease read
//! the object, compare its id or lease, and delete it with `If-Match` its ETag: a lock that
//! another run took in between is never deleted. State writes are conditional the same way
//! ([`S3Backend::put_if`]).
//!
//! Every conditional write survives the SDK's own retry: a PUT that S3 stored but whose answer
//! was lost is retried, and the retry gets 412 from the object its first attempt wrote. A 412
//! is therefore read back, and a lock (or state) that is exactly ours is ours: without that, a
//! run would wait on its own lock until the lease ran out, or call its own state write stale.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use super::lease::{now_secs, renew_every, LockGuard, LockInfo, POLL};
use super::StateError;

#[derive(Clone)]
pub struct S3Backend {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

fn message<E: ProvideErrorMetadata + std::fmt::Display>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => e.to_string(),
    }
}

impl S3Backend {
    pub async fn new(region: &str, bucket: String, key: String) -> S3Backend {
        let conf = crate::provider::aws::client::sdk_config(region).await;
        // Path-style addressing when an endpoint is given (moto, MinIO): virtual-host style
        // would need `bucket.localhost` to resolve.
        let s3conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
            .build();
        S3Backend {
            client: aws_sdk_s3::Client::from_conf(s3conf),
            bucket,
            key,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn err(&self, op: &'static str, key: &str, message: String) -> StateError {
        StateError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message,
        }
    }

    /// The object's text and its ETag (what a conditional write or delete compares).
    pub async fn get_tagged(&self, key: &str) -> Result<Option<(String, String)>, StateError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let etag = o.e_tag().unwrap_or_default().to_string();
                let bytes = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.err("read", key, e.to_string()))?
                    .into_bytes();
                Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), etag)))
            }
            Err(e) => {
                let se = e.into_service_error();
                if se.is_no_such_key() || se.code() == Some("NoSuchKey") {
                    Ok(None)
                } else {
                    Err(self.err("GetObject", key, message(&se)))
                }
            }
        }
    }

    /// Writes `key` only if it is still what was read: `etag` of the object read, or `None`
    /// when there was none (then only if there still is none). `Ok(None)` when it changed
    /// (S3 answered 412: another writer came first); else the new ETag.
    ///
    /// A 412 can also be this very write's own doing: the SDK retries a PUT whose answer was
    /// lost (a 5xx or a dropped connection after S3 stored it), and the retry's condition
    /// fails against the object the first attempt wrote. So a 412 is checked by reading the
    /// object back: when it holds exactly the text written, the write happened (its ETag is
    /// returned); only a different text is another writer's.
    pub async fn put_if(
        &self,
        key: &str,
        text: String,
        etag: Option<&str>,
    ) -> Result<Option<String>, StateError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(text.clone().into_bytes()));
        let req = match etag {
            Some(t) => req.if_match(t),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(o) => Ok(Some(o.e_tag().unwrap_or_default().to_string())),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let se = e.into_service_error();
                if !precondition_failed(status, se.code()) {
                    return Err(self.err("PutObject", key, message(&se)));
                }
                match self.get_tagged(key).await? {
                    Some((now, etag)) if now == text => Ok(Some(etag)),
                    _ => Ok(None),
                }
            }
        }
    }

    /// Takes the lock: creates the lock object if there is none (`If-None-Match: *`); takes
    /// over one whose lease ran out (a conditional delete of exactly that object, then the
    /// create again); else waits up to `wait`. A live holder's heartbeat keeps its lease.
    pub async fn lock(&self, info: LockInfo, wait: Duration) -> Result<LockGuard, StateError> {
        let deadline = Instant::now() + wait;
        let key = self.lock_key();
        loop {
            let mut info = info.clone();
            info.renewed = now_secs();
            let body = serde_json::to_string(&info).unwrap_or_default();
            if let Some(etag) = self.put_if(&key, body, None).await? {
                let heartbeat = tokio::spawn(heartbeat(self.clone(), info.clone(), etag));
                return Ok(guard(self.clone(), info.id, heartbeat));
            }
            let current = self.lock_tagged().await?;
            // Our own lock (an earlier attempt of this run's create, whose answer was lost,
            // stored it): held, whatever its text says about the time of renewal.
            if let Some((held, etag)) = &current {
                if held.id == info.id {
                    let heartbeat =
                        tokio::spawn(heartbeat(self.clone(), info.clone(), etag.clone()));
                    return Ok(guard(self.clone(), info.id, heartbeat));
                }
            }
            if let Some((held, etag)) = &current {
                if held.expired(now_secs()) {
                    tracing::warn!(
                        "taking over the state lock of {}: its lease ran out",
                        held.holder()
                    );
                    self.delete_lock_if(etag).await?;
                    continue;
                }
            }
            if Instant::now() >= deadline {
                let holder = current.map(|(h, _)| h);
                return Err(StateError::Locked {
                    holder: holder
                        .as_ref()
                        .map(LockInfo::holder)
                        .unwrap_or_else(|| "another run".into()),
                    id: holder.map(|h| h.id).unwrap_or_default(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The lock's holder record and its ETag.
    async fn lock_tagged(&self) -> Result<Option<(LockInfo, String)>, StateError> {
        Ok(self
            .get_tagged(&self.lock_key())
            .await?
            .and_then(|(t, etag)| serde_json::from_str(&t).ok().map(|i| (i, etag))))
    }

    pub async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.lock_tagged().await?.map(|(i, _)| i))
    }

    /// Deletes the lock object only if it is still the one read (`If-Match` its ETag): a lock
    /// taken by someone else in between is left alone. True when it was deleted.
    async fn delete_lock_if(&self, etag: &str) -> Result<bool, StateError> {
        let key = self.lock_key();
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let se = e.into_service_error();
                if precondition_failed(status, se.code())
                    || status == Some(404)
                    || se.code() == Some("NoSuchKey")
                {
                    Ok(false)
                } else {
                    Err(self.err("DeleteObject", &key, message(&se)))
                }
            }
        }
    }

    /// Deletes the lock if it is still the one with `id` (compared, then a conditional
    /// delete of exactly the object compared).
    pub async fn release(&self, id: &str) -> Result<(), StateError> {
        match self.lock_tagged().await? {
            Some((i, etag)) if i.id == id => {
                if !self.delete_lock_if(&etag).await? {
                    tracing::warn!("the state lock changed while it was being released; left it");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub async fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        match self.lock_tagged().await? {
            Some((i, etag)) if i.id == id => {
                if self.delete_lock_if(&etag).await? {
                    Ok(())
                } else {
                    Err(StateError::UnlockMismatch {
                        found: "(a lock that changed while unlocking)".into(),
                        given: id.to_string(),
                    })
                }
            }
            Some((i, _)) => Err(StateError::UnlockMismatch {
                found: i.id,
                given: id.to_string(),
            }),
            None => Err(StateError::UnlockMismatch {
                found: "(no lock)".into(),
                given: id.to_string(),
            }),
        }
    }
}

/// S3's answer to a failed `If-Match` / `If-None-Match` (412; 409 when a concurrent
/// conditional write is in flight).
fn precondition_failed(status: Option<u16>, code: Option<&str>) -> bool {
    status == Some(412)
        || status == Some(409)
        || code == Some("PreconditionFailed")
        || code == Some("ConditionalRequestConflict")
}

/// The guard of a held S3 lock: releasing it deletes the lock object only if it still holds
/// `id` (a lock another run took over after this one's lease ran out is left alone).
fn guard(backend: S3Backend, id: String, heartbeat: tokio::task::JoinHandle<()>) -> LockGuard {
    LockGuard::new(heartbeat, move || async move {
        if let Err(e) = backend.release(&id).await {
            tracing::warn!("releasing the state lock failed: {e}");
        }
    })
}

/// Renews the lease every `ttl / 3` with a write conditional on the lock object being the
/// one this holder last wrote; stops when it is not (the lease ran out and another run took
/// the lock over), saying so.
async fn heartbeat(backend: S3Backend, mut info: LockInfo, mut etag: String) {
    let key = backend.lock_key();
    loop {
        tokio::time::sleep(renew_every(info.ttl)).await;
        info.renewed = now_secs();
        let body = serde_json::to_string(&info).unwrap_or_default();
        match backend.put_if(&key, body, Some(&etag)).await {
            Ok(Some(t)) => etag = t,
            Ok(None) => {
                tracing::warn!("the state lock was taken over by another run: its lease ran out");
                return;
            }
            Err(e) => tracing::warn!("renewing the state lock's lease failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The S3 lock and conditional state writes against a real `moto_server` (started per
    //! test on a free 127.0.0.1 port, as `tests/it/aws.rs` does; missing moto fails loudly).

    use super::*;
    use crate::state::{Backend, State};

    struct Moto {
        child: std::process::Child,
        url: String,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn moto() -> Moto {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `moto_server` ({e}): install it with `pip install 'moto[server]'`")
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, url }
    }

    /// A backend on moto's bucket `hactl-state` (created), key `s.json`.
    async fn backend(m: &Moto) -> S3Backend {
        backend_with(m, None).await
    }

    /// Loses the answers of the next `n` conditional PUTs (`If-None-Match` / `If-Match`) that
    /// S3 stored: the client sees a 503 instead of the 200, as when a connection drops after
    /// the write, and the SDK retries the PUT.
    #[derive(Debug)]
    struct LoseAnswers {
        left: std::sync::atomic::AtomicUsize,
        lost: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        /// The request being sent is a conditional PUT (seen before transmit: the request is
        /// gone by the time the response is read).
        conditional: std::sync::atomic::AtomicBool,
    }

    impl aws_sdk_s3::config::Intercept for LoseAnswers {
        fn name(&self) -> &'static str {
            "LoseAnswers"
        }

        fn read_before_transmit(
            &self,
            ctx: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
            _rc: &aws_sdk_s3::config::RuntimeComponents,
            _cfg: &mut aws_sdk_s3::config::ConfigBag,
        ) -> Result<(), aws_sdk_s3::error::BoxError> {
            let r = ctx.request();
            let conditional = r.method() == "PUT"
                && (r.headers().contains_key("if-none-match")
                    || r.headers().contains_key("if-match"));
            self.conditional
                .store(conditional, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }

        fn modify_before_deserialization(
            &self,
            ctx: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
                '_,
            >,
            _rc: &aws_sdk_s3::config::RuntimeComponents,
            _cfg: &mut aws_sdk_s3::config::ConfigBag,
        ) -> Result<(), aws_sdk_s3::error::BoxError> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.conditional.load(SeqCst)
                && ctx.response().status().is_success()
                && self
                    .left
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                *ctx.response_mut().status_mut() = 503u16.try_into()?;
                self.lost.fetch_add(1, SeqCst);
            }
            Ok(())
        }
    }

    async fn backend_with(m: &Moto, lose: Option<LoseAnswers>) -> S3Backend {
        let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test");
        let mut conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&m.url)
            .force_path_style(true)
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            );
        if let Some(l) = lose {
            conf = conf.interceptor(l);
        }
        let client = aws_sdk_s3::Client::from_conf(conf.build());
        client
            .create_bucket()
            .bucket("hactl-state")
            .send()
            .await
            .expect("bucket created");
        S3Backend {
            client,
            bucket: "hactl-state".into(),
            key: "s.json".into(),
        }
    }

    fn info(op: &str, ttl: u64) -> LockInfo {
        let mut i = LockInfo::new(op);
        i.ttl = ttl;
        i
    }

    /// Issue 11 §5: a dead holder's S3 lock stayed until `force-unlock`. Now: a second run
    /// fails naming the holder while the lease is live (and renewed past its TTL by the
    /// holder's heartbeat), and takes the lock over once a holder that stopped renewing (as
    /// at SIGKILL) lets it run out.
    #[tokio::test]
    async fn s3_lock_is_renewed_while_held_and_expires_after_its_holder_dies() {
        let m = moto();
        let b = backend(&m).await;
        let a = b
            .lock(info("up", 1), Duration::ZERO)
            .await
            .expect("first lock");
        // Past the TTL, the live holder still has it.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let Err(err) = b.lock(info("up", 1), Duration::ZERO).await else {
            panic!("a second run got a live holder's lock");
        };
        let text = err.to_string();
        assert!(
            matches!(err, StateError::Locked { .. }) && text.contains("`up`"),
            "{text}"
        );
        // The holder dies: nobody renews; the lease runs out and the next run takes over.
        a.abandon().await;
        let t0 = Instant::now();
        let c = b
            .lock(info("down", 1), Duration::from_secs(10))
            .await
            .expect("taken over after the TTL");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(
            b.lock_info().await.unwrap().map(|i| i.operation),
            Some("down".to_string())
        );
        c.release().await;
        assert_eq!(b.lock_info().await.unwrap(), None);
    }

    /// Issue 15 §6: release and force-unlock deleted the lock object without checking that it
    /// was still the one whose id they read. A release by a holder whose lease was taken over
    /// leaves the new holder's lock; force-unlock needs the current id.
    #[tokio::test]
    async fn s3_release_and_force_unlock_only_delete_the_lock_they_name() {
        let m = moto();
        let b = backend(&m).await;
        let old = b.lock(info("up", 1), Duration::ZERO).await.expect("lock");
        let old_id = b.lock_info().await.unwrap().expect("held").id;
        // Its heartbeat stops (a stalled holder); another run takes over after the TTL.
        let stalled = guard(b.clone(), old_id.clone(), tokio::spawn(async {}));
        old.abandon().await;
        let new = b
            .lock(info("deploy", 60), Duration::from_secs(10))
            .await
            .expect("taken over");
        let new_id = b.lock_info().await.unwrap().expect("held").id;
        assert_ne!(old_id, new_id);
        // The stalled holder comes back and releases: the new lock stays.
        stalled.release().await;
        assert_eq!(
            b.lock_info().await.unwrap().map(|i| i.id),
            Some(new_id.clone())
        );
        // force-unlock with the old id is refused and deletes nothing.
        let err = b.force_unlock(&old_id).await.unwrap_err();
        assert!(matches!(err, StateError::UnlockMismatch { .. }), "{err}");
        assert!(b.lock_info().await.unwrap().is_some());
        // A conditional delete of an object that changed since it was read is refused.
        let (_, etag) = b.lock_tagged().await.unwrap().expect("held");
        b.put_if(&b.lock_key(), "{}".into(), Some(&etag))
            .await
            .unwrap()
            .expect("rewritten");
        assert!(!b.delete_lock_if(&etag).await.unwrap());
        assert!(b.get_tagged(&b.lock_key()).await.unwrap().is_some());
        drop(new);
    }

    /// Issue 12 §2: the SDK retried a conditional create whose answer was lost (S3 had stored
    /// it), the retry got 412 from the lock the first attempt wrote, and the run waited on its
    /// own lock until it gave up (`Locked`, naming itself as the holder). Now the lock read
    /// back is recognised by its id, and a first state write retried the same way is not
    /// taken for another writer's.
    #[tokio::test]
    async fn s3_lock_and_state_are_ours_after_a_retried_write_whose_answer_was_lost() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let m = moto();
        let lost = std::sync::Arc::new(AtomicUsize::new(0));
        let b = backend_with(
            &m,
            Some(LoseAnswers {
                left: AtomicUsize::new(2),
                lost: lost.clone(),
                conditional: Default::default(),
            }),
        )
        .await;
        let g = b
            .lock(info("up", 60), Duration::ZERO)
            .await
            .expect("the lock is ours: its first write was stored");
        assert_eq!(lost.load(SeqCst), 1, "the create's answer was not lost");
        let held = b.lock_info().await.unwrap().expect("held");
        assert_eq!(held.operation, "up");
        // The first state write (`If-None-Match`) loses its answer the same way.
        let be = Backend::S3(b.clone());
        let mut st = State::new("x");
        st.outputs = serde_json::json!({"by": "us"});
        be.write(&mut st)
            .await
            .expect("our own state write is not stale");
        assert_eq!(
            lost.load(SeqCst),
            2,
            "the state write's answer was not lost"
        );
        let kept = be.read("x").await.unwrap().expect("state");
        assert_eq!(kept.outputs, serde_json::json!({"by": "us"}));
        g.release().await;
        assert_eq!(b.lock_info().await.unwrap(), None);
        // Another writer's object is still another writer's: a 412 on different text.
        assert!(b
            .put_if(b.key(), "{}".into(), None)
            .await
            .unwrap()
            .is_none());
    }

    /// Issue 15 §6: state writes never compared serials. Two runs read serial 1; the first
    /// writes serial 2; the second is refused instead of overwriting it.
    #[tokio::test]
    async fn s3_state_write_over_a_newer_serial_is_refused() {
        let m = moto();
        let s3 = backend(&m).await;
        let be = Backend::S3(s3.clone());
        let mut st = State::new("x");
        be.write(&mut st).await.expect("first write");
        let mut one = be.read("x").await.unwrap().expect("state");
        let mut two = be.read("x").await.unwrap().expect("state");
        one.outputs = serde_json::json!({"by": "one"});
        be.write(&mut one).await.expect("one writes");
        two.outputs = serde_json::json!({"by": "two"});
        let err = be.write(&mut two).await.unwrap_err();
        assert!(
            matches!(err, StateError::Stale { found: 2, ours: 1 }),
            "{err}"
        );
        let kept = be.read("x").await.unwrap().expect("state");
        assert_eq!(kept.outputs, serde_json::json!({"by": "one"}));
        // A first state is created only where there is none (If-None-Match).
        assert!(s3
            .put_if(s3.key(), "{}".into(), None)
            .await
            .unwrap()
            .is_none());
    }
}
