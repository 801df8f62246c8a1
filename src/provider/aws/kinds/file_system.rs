//! `aws_efs_file_system`: the shared file system. It holds data: a delete or replacement is
//! refused unless allowed (no final snapshot exists for EFS; AWS Backup keeps file systems).
//! Its performance mode and encryption cannot change in place. Created with a CreationToken
//! derived from the journal, so a retried create finds the first one
//! (`FileSystemAlreadyExists`); `creating → available`, `error` final
//! ([`crate::provider::aws::wait::efs_available`]); it can only go once its mount targets
//! are gone (`FileSystemInUse`).

use std::time::Duration;

use super::shared::{api, Ctx};
use super::{get, parse, Kind, MissingAttr};
use crate::provider::aws::model::{Observed, ResKind, Resource, TAG_ADDRESS, TAG_STACK};
use crate::provider::aws::observe::Scan;
use crate::provider::aws::wait::{self, call_err, Poll, Timeouts};
use crate::provider::aws::{sdk_code, AwsError};

pub struct FileSystem;

/// The file system as CreateFileSystem needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    /// `generalPurpose` or `maxIO`.
    pub performance_mode: String,
    pub encrypted: bool,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            performance_mode: get(r, "performance_mode")?.to_string(),
            encrypted: parse(r, "encrypted")?,
        })
    }
}

/// Whether a listed file system is on its way out (not observed: it is going).
fn going(state: &aws_sdk_efs::types::LifeCycleState) -> bool {
    use aws_sdk_efs::types::LifeCycleState;
    matches!(state, LifeCycleState::Deleted | LifeCycleState::Deleting)
}

#[async_trait::async_trait]
impl Kind for FileSystem {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "performance_mode" | "encrypted")
    }

    fn holds_data(&self) -> bool {
        true
    }

    fn ready(&self, status: &str) -> Poll {
        wait::efs_available(status)
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        t.file_system
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        // Region-wide: every page (EFS pages by 100 by default).
        let fss: Vec<_> = c
            .efs
            .describe_file_systems()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(api("DescribeFileSystems", "(read)"))?;
        let mut out = Vec::new();
        for f in &fss {
            let tag = |k: &str| {
                f.tags()
                    .iter()
                    .find(|t| t.key() == k)
                    .map(|t| t.value().to_string())
            };
            if going(f.life_cycle_state()) {
                continue;
            }
            let id = f.file_system_id();
            let Some(who) = scan.who(
                ResKind::EfsFileSystem,
                id,
                tag(TAG_STACK).as_deref(),
                tag(TAG_ADDRESS).as_deref(),
            ) else {
                continue;
            };
            let mut o = crate::provider::aws::observe::owned(ResKind::EfsFileSystem, who, id);
            o.res = o
                .res
                .attr("performance_mode", f.performance_mode().as_str())
                .attr("encrypted", f.encrypted().unwrap_or(false));
            o.info.insert(
                "dns_name".into(),
                format!("{id}.efs.{}.amazonaws.com", c.region),
            );
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let c = &ctx.c;
        let a = r.addr.as_str();
        let id = match c
            .efs
            .create_file_system()
            .creation_token(token)
            .performance_mode(aws_sdk_efs::types::PerformanceMode::from(
                at.performance_mode.as_str(),
            ))
            .encrypted(at.encrypted)
            .set_tags(Some(ctx.efs_tags(a)))
            .send()
            .await
        {
            Ok(o) => o.file_system_id().to_string(),
            Err(e) if sdk_code(&e).as_deref() == Some("FileSystemAlreadyExists") => {
                // A retried create: the token finds the first one.
                let o = ctx
                    .settle("DescribeFileSystems", a, || {
                        c.efs.describe_file_systems().creation_token(token).send()
                    })
                    .await?;
                o.file_systems()
                    .first()
                    .map(|f| f.file_system_id().to_string())
                    .ok_or_else(|| api("CreateFileSystem", a)(e))?
            }
            Err(e) => return Err(api("CreateFileSystem", a)(e)),
        };
        ctx.wait(a, "available", self.timeout(&ctx.timeouts), || async {
            let o = c
                .efs
                .describe_file_systems()
                .file_system_id(&id)
                .send()
                .await
                .map_err(call_err("DescribeFileSystems", a))?;
            Ok(match o.file_systems().first() {
                Some(f) => self.ready(f.life_cycle_state().as_str()),
                None => Poll::Pending("not listed".into()),
            })
        })
        .await?;
        Ok(id)
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let a = o.res.addr.as_str();
        ctx.c
            .efs
            .tag_resource()
            .resource_id(&o.id)
            .set_tags(Some(ctx.efs_tags(a)))
            .send()
            .await
            .map_err(api("TagResource", a))?;
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteFileSystem", &o.res.addr, || {
            ctx.c.efs.delete_file_system().file_system_id(&o.id).send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file system without its performance mode is refused before any call; it holds data,
    /// is ready when `available`, fails on `error`, and encryption replaces it.
    #[test]
    fn a_file_system_holds_data_and_fails_on_error() {
        let r = Resource::new(ResKind::EfsFileSystem, "aws_efs_file_system.shared")
            .attr("encrypted", true);
        assert_eq!(
            Attrs::of(&r).map_err(|e| e.key),
            Err("performance_mode".to_string())
        );
        assert!(FileSystem.holds_data());
        assert_eq!(FileSystem.ready("available"), Poll::Ready);
        assert_eq!(
            FileSystem.ready("creating"),
            Poll::Pending("creating".into())
        );
        assert_eq!(FileSystem.ready("error"), Poll::Failed("error".into()));
        assert!(FileSystem.forces_replace("encrypted"));
        assert!(going(&aws_sdk_efs::types::LifeCycleState::Deleting));
        assert!(!going(&aws_sdk_efs::types::LifeCycleState::Available));
    }
}
