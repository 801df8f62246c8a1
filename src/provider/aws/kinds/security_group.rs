//! `aws_security_group`: what may reach the hosts, the balancer, EFS and RDS. Its VPC and name
//! cannot change in place; its ingress rules can (authorized and revoked as a set). Ready when
//! created; a delete waits out the ENIs of a deleted load balancer or terminated instance
//! (`DependencyViolation`).

use super::shared::Ctx;
use super::Kind;
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::{Ids, Scan};
use crate::provider::aws::AwsError;

pub struct SecurityGroup;

#[async_trait::async_trait]
impl Kind for SecurityGroup {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "vpc" | "name")
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        crate::provider::aws::observe::legacy_read(scan, ResKind::SecurityGroup).await
    }

    fn resolve(&self, o: &mut Observed, ids: &Ids<'_>) {
        crate::provider::aws::observe::legacy_resolve(o, ids)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, token: &str) -> Result<String, AwsError> {
        crate::provider::aws::apply::legacy_create(ctx, r, token).await
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        crate::provider::aws::apply::legacy_update(ctx, want, have).await
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_ec2(&o.res.addr, &o.id, &[]).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        crate::provider::aws::apply::legacy_delete(ctx, o).await
    }
}
