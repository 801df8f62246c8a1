//! The S3 state backend: the state object at `key`, its lock at `key.lock`.
//!
//! The lock is a conditional create (`If-None-Match: *`): S3 answers 412 to every writer but
//! the first, so two runs can never both believe they hold it. The lock object holds the
//! holder's [`LockInfo`]; it is deleted on release, only if it is still ours.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use super::lock::{LockGuard, LockInfo, POLL};
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

    pub async fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let bytes = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.err("read", key, e.to_string()))?
                    .into_bytes();
                Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
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

    pub async fn put(&self, key: &str, text: String) -> Result<(), StateError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(text.into_bytes()))
            .send()
            .await
            .map_err(|e| self.err("PutObject", key, message(&e.into_service_error())))?;
        Ok(())
    }

    pub async fn lock(&self, info: LockInfo, wait: Duration) -> Result<LockGuard, StateError> {
        let deadline = Instant::now() + wait;
        let key = self.lock_key();
        let body = serde_json::to_string(&info).unwrap_or_default();
        loop {
            let r = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from(body.clone().into_bytes()))
                .send()
                .await;
            match r {
                Ok(_) => {
                    return Ok(LockGuard::S3 {
                        backend: self.clone(),
                        id: info.id,
                    })
                }
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let se = e.into_service_error();
                    let taken = status == Some(412)
                        || status == Some(409)
                        || se.code() == Some("PreconditionFailed");
                    if !taken {
                        return Err(self.err("PutObject (lock)", &key, message(&se)));
                    }
                }
            }
            if Instant::now() >= deadline {
                let holder = self.lock_info().await?;
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

    pub async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        let key = self.lock_key();
        Ok(self
            .get(&key)
            .await?
            .and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn delete_lock(&self) -> Result<(), StateError> {
        let key = self.lock_key();
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.err("DeleteObject", &key, message(&e.into_service_error())))?;
        Ok(())
    }

    /// Deletes the lock if it is still the one with `id`.
    pub async fn release(&self, id: &str) -> Result<(), StateError> {
        match self.lock_info().await? {
            Some(i) if i.id == id => self.delete_lock().await,
            _ => Ok(()),
        }
    }

    pub async fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        match self.lock_info().await? {
            Some(i) if i.id == id => self.delete_lock().await,
            Some(i) => Err(StateError::UnlockMismatch {
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
