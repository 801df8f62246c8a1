//! `aws_db_instance`: an RDS instance. It holds data: a delete or replacement is refused unless
//! allowed, deletion protection is on, and a final snapshot is taken ([`crate::provider::aws::diff::destroys_data`]).
//! `creating → backing-up → available` takes 10–40 minutes (Multi-AZ the longest); `failed`
//! and `incompatible-*` are final ([`crate::provider::aws::wait::db_available`]). The engine
//! version is a prefix RDS may move up by itself. Created with the vault's master credentials,
//! encrypted and private; a retried create finds the first one by its identifier (derived
//! from the stack, `DBInstanceAlreadyExists`). RDS reports no endpoint and port 0 until it is
//! available: the read marks the port unknown then, and no change is planned from it.
//!
//! The master password: RDS never shows it back, so hactl keeps a keyed hash of the one it
//! last gave in the instance's [`TAG_PASSWORD_HMAC`] tag ([`password_hmac`]) and compares
//! that as the `master_password` attribute: a password rotated in the vault (`hactl secrets
//! set`) plans an in-place update (ModifyDBInstance `MasterUserPassword`, applied
//! immediately, then the tag rewritten), shown without the secret ([`Kind::masked`]). An
//! instance without the tag (made before hactl kept it) plans that update once.
//!
//! The key is the stack's digest key (`crate::state::digest_key`, kept in the state, the same
//! key that hides secret files' digests in plans), derived for this purpose. Not a key of the
//! vault's: each person and CI opens the vault with their own age identity, so a key derived
//! from an identity would differ between them and every run would re-set the password; and a
//! key that `up` wrote into the vault would be lost by every CI checkout that does not commit
//! it back. The state is what every run of the stack shares. Without the key the tag tells
//! nothing (an unkeyed hash of an 8-character password can be guessed offline); with a new
//! key (a state rebuilt by `state refresh`) the password is set once more, to the same value.

use std::time::Duration;

use super::shared::{api, Ctx};
use super::{get, parse, reference, Kind, MissingAttr};
use crate::plan::DigestKey;
use crate::provider::aws::diff::UNKNOWN;
use crate::provider::aws::model::{
    Observed, ResKind, Resource, TAG_ADDRESS, TAG_PASSWORD_HMAC, TAG_STACK,
};
use crate::provider::aws::observe::{owned, Scan};
use crate::provider::aws::wait::{call_err, Poll, Timeouts};
use crate::provider::aws::{sdk_code, AwsError};

pub struct DbInstance;

#[async_trait::async_trait]
impl Kind for DbInstance {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "engine" | "db_name" | "identifier")
    }

    /// `engine_version`: `16.3` is satisfied by the `16.4` RDS upgraded to by itself (auto
    /// minor version upgrade), never by a lower or another major version.
    fn satisfies(&self, key: &str, want: &str, have: &str) -> bool {
        want == have || (key == "engine_version" && version_satisfies(want, have))
    }

    /// `master_password` is a keyed hash: the plan says that it changed (or that the tag was
    /// missing), never the hash.
    fn masked(&self, key: &str, have: Option<&str>) -> Option<(String, String)> {
        (key == MASTER_PASSWORD).then(|| match have {
            Some(_) => ("(sensitive)".into(), "(changed in the vault)".into()),
            None => (
                format!("(not recorded: no `{TAG_PASSWORD_HMAC}` tag, the instance predates it)"),
                "(set from the vault)".into(),
            ),
        })
    }

    fn holds_data(&self) -> bool {
        true
    }

    fn ready(&self, status: &str) -> Poll {
        crate::provider::aws::wait::db_available(status)
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        t.database
    }

    /// Its identifier is its subnet group's name too: it must not shadow the group.
    fn referred_to(&self) -> bool {
        false
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        // Region-wide: every page (RDS pages by 100 by default).
        let dbs: Vec<_> = scan
            .c
            .rds
            .describe_db_instances()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(api("DescribeDBInstances", "(read)"))?;
        let mut out = Vec::new();
        for d in &dbs {
            let tag = |k: &str| {
                d.tag_list()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
            };
            if d.db_instance_status() == Some("deleting") {
                continue;
            }
            let id = d.db_instance_identifier().unwrap_or_default();
            let Some(who) = scan.who(ResKind::DbInstance, id, tag(TAG_STACK), tag(TAG_ADDRESS))
            else {
                continue;
            };
            let mut o = owned(ResKind::DbInstance, who, id);
            if let Some(arn) = d.db_instance_arn() {
                o.info.insert("arn".into(), arn.into());
            }
            o.res = o
                .res
                .attr("identifier", id)
                .attr("engine", d.engine().unwrap_or_default())
                .attr("engine_version", d.engine_version().unwrap_or_default())
                .attr("instance_class", d.db_instance_class().unwrap_or_default())
                .attr("storage_gb", d.allocated_storage().unwrap_or_default())
                .attr("multi_az", d.multi_az().unwrap_or(false))
                .attr("db_name", d.db_name().unwrap_or_default())
                .attr(
                    "deletion_protection",
                    d.deletion_protection().unwrap_or(false),
                )
                .reference(
                    "subnet_group",
                    d.db_subnet_group()
                        .and_then(|g| g.db_subnet_group_name())
                        .map(str::to_string)
                        .into_iter()
                        .collect(),
                )
                .reference(
                    "security_groups",
                    d.vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                        .collect(),
                );
            // The password RDS never shows back: the keyed hash hactl tagged it with, if any;
            // no tag plans the password update once.
            if let Some(h) = tag(TAG_PASSWORD_HMAC).filter(|h| !h.is_empty()) {
                o.res = o.res.attr(MASTER_PASSWORD, h);
            }
            // The port is known from the endpoint only: until the instance is available RDS
            // has none and reports `DbInstancePort` 0, which must not plan a port change.
            match d.endpoint().and_then(|e| e.port()) {
                Some(port) => o.res = o.res.attr("port", port),
                None => {
                    o.info.insert(UNKNOWN.into(), "port".into());
                }
            }
            if let Some(e) = d.endpoint() {
                o.info
                    .insert("endpoint".into(), e.address().unwrap_or_default().into());
                o.info
                    .insert("port".into(), e.port().unwrap_or_default().to_string());
            }
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let (user, pass) = ctx
            .db_credentials
            .as_ref()
            .ok_or_else(|| AwsError::Credentials("database.username/password".into()))?;
        let c = &ctx.c;
        let a = r.addr.as_str();
        let ident = at.identifier.clone();
        let req = c
            .rds
            .create_db_instance()
            .db_instance_identifier(&ident)
            .db_instance_class(&at.instance_class)
            .engine(&at.engine)
            .set_engine_version(at.engine_version.clone())
            .allocated_storage(at.storage_gb)
            .master_username(user.expose())
            .master_user_password(pass.expose())
            .db_name(&at.db_name)
            .multi_az(at.multi_az)
            .port(at.port)
            .db_subnet_group_name(ctx.id(a, &at.subnet_group).await?)
            .set_vpc_security_group_ids(Some(ctx.ref_ids(r, "security_groups").await?))
            .publicly_accessible(false)
            .storage_encrypted(true)
            .deletion_protection(at.deletion_protection)
            .set_tags(Some(db_tags(ctx, r, &at)));
        // The subnet group may be new to RDS still (DBSubnetGroupNotFoundFault): settle.
        ctx.settle("CreateDBInstance", a, || async {
            match req.clone().send().await {
                Ok(_) => Ok(()),
                // The identifier is ours (it is derived from the stack name) and tagged at
                // creation: a retried create finds the first one.
                Err(e) if sdk_code(&e).as_deref() == Some("DBInstanceAlreadyExists") => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        ctx.wait(a, "available", self.timeout(&ctx.timeouts), || async {
            let o = c
                .rds
                .describe_db_instances()
                .db_instance_identifier(&ident)
                .send()
                .await
                .map_err(call_err("DescribeDBInstances", a))?;
            Ok(
                match o
                    .db_instances()
                    .first()
                    .and_then(|d| d.db_instance_status())
                {
                    Some(status) => self.ready(status),
                    None => Poll::Pending("not listed".into()),
                },
            )
        })
        .await?;
        Ok(ident)
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        let c = &ctx.c;
        let (a, id) = (want.addr.as_str(), have.id.as_str());
        let security_groups_ids = ctx.ref_ids(want, "security_groups").await?;
        // The vault's password, when it is not the one the instance's tag records (or there
        // is no tag): sent, then the tag rewritten.
        let password = match &at.master_password {
            Some(h) if have.res.get(MASTER_PASSWORD) != Some(h.as_str()) => {
                let (_, pass) = ctx
                    .db_credentials
                    .as_ref()
                    .ok_or_else(|| AwsError::Credentials("database.username/password".into()))?;
                Some(pass.expose())
            }
            _ => None,
        };
        ctx.settle("ModifyDBInstance", a, || {
            c.rds
                .modify_db_instance()
                .db_instance_identifier(id)
                .apply_immediately(true)
                .set_master_user_password(password.map(str::to_string))
                .db_instance_class(&at.instance_class)
                .allocated_storage(at.storage_gb)
                .multi_az(at.multi_az)
                .set_engine_version(at.engine_version.clone())
                .db_port_number(at.port)
                .deletion_protection(at.deletion_protection)
                .set_vpc_security_group_ids(Some(security_groups_ids.clone()))
                .send()
        })
        .await?;
        if let (Some(h), Some(_)) = (&at.master_password, &password) {
            let arn = have.info.get("arn").cloned().unwrap_or_default();
            let tag = aws_sdk_rds::types::Tag::builder()
                .key(TAG_PASSWORD_HMAC)
                .value(h)
                .build();
            ctx.settle("AddTagsToResource", a, || {
                c.rds
                    .add_tags_to_resource()
                    .resource_name(&arn)
                    .tags(tag.clone())
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.retag_rds(o).await
    }

    /// Only a plan the user allowed (`--allow-data-loss`, checked at plan time) gets here:
    /// deletion protection comes off, and RDS takes a final snapshot first. The automated
    /// backups go with the instance, as Terraform's default (`delete_automated_backups`): the
    /// final snapshot is the copy that is kept. Waits until it is gone: the subnet group and
    /// security group can only go after.
    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let c = &ctx.c;
        let (a, id) = (o.res.addr.as_str(), o.id.as_str());
        if o.res.get("deletion_protection") != Some("false") {
            ctx.retry_busy("ModifyDBInstance", a, || {
                c.rds
                    .modify_db_instance()
                    .db_instance_identifier(id)
                    .deletion_protection(false)
                    .apply_immediately(true)
                    .send()
            })
            .await?;
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let snapshot = final_snapshot_id(id, unix);
        ctx.retry_busy("DeleteDBInstance", a, || {
            c.rds
                .delete_db_instance()
                .db_instance_identifier(id)
                .skip_final_snapshot(false)
                .final_db_snapshot_identifier(&snapshot)
                .delete_automated_backups(true)
                .send()
        })
        .await?;
        ctx.wait_gone(
            a,
            "deleted",
            "DescribeDBInstances",
            "DBInstanceNotFound",
            self.timeout(&ctx.timeouts),
            || async {
                let o = c
                    .rds
                    .describe_db_instances()
                    .db_instance_identifier(id)
                    .send()
                    .await;
                o.map(|o| match o.db_instances().first() {
                    Some(d) => Poll::Pending(d.db_instance_status().unwrap_or("?").into()),
                    None => Poll::Ready,
                })
            },
        )
        .await
    }
}
/// A new database's tags: the ownership tags and, when the vault's password is known, its
/// keyed hash ([`TAG_PASSWORD_HMAC`]).
fn db_tags(ctx: &Ctx, r: &Resource, at: &Attrs) -> Vec<aws_sdk_rds::types::Tag> {
    let mut tags = ctx.rds_tags(&r.addr);
    if let Some(h) = &at.master_password {
        tags.push(
            aws_sdk_rds::types::Tag::builder()
                .key(TAG_PASSWORD_HMAC)
                .value(h)
                .build(),
        );
    }
    tags
}

/// The identifier of the final snapshot RDS takes when hactl deletes the database `db` at
/// `unix` seconds: `<db>-final-<unix>`. RDS's rules for `FinalDBSnapshotIdentifier` (1–255
/// letters, digits and hyphens, a letter first, no trailing or double hyphen; RDS API
/// reference, DeleteDBInstance) hold for any identifier hactl derives
/// ([`crate::provider::aws::desired::aws_name`]).
pub fn final_snapshot_id(db: &str, unix: u64) -> String {
    format!("{}-final-{unix}", db.trim_end_matches('-'))
}

/// The attribute that stands for the master password: [`password_hmac`] on the desired side,
/// the [`TAG_PASSWORD_HMAC`] tag on the observed side.
pub const MASTER_PASSWORD: &str = "master_password";

/// The keyed hash of the master password `password` of the database of stack `stack`, as the
/// [`TAG_PASSWORD_HMAC`] tag keeps it: HMAC-SHA256 (RFC 2104) under `key` derived for this
/// purpose ([`DigestKey::mac`]), over the stack name and the password; 64 hex digits (RDS tag
/// values take 256 characters).
pub fn password_hmac(key: &DigestKey, stack: &str, password: &str) -> String {
    key.mac(
        "hactl rds master password v1",
        format!("{stack}\0{password}").as_bytes(),
    )
}

/// Whether the running `have` satisfies the configured `want` version: a prefix of it, or the
/// same major version with the rest moved up (terraform-provider-aws compares the same way,
/// `internal/service/rds/instance.go`, `compareActualEngineVersion`).
pub fn version_satisfies(want: &str, have: &str) -> bool {
    if want == have {
        return true;
    }
    let parts = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    let (Some(w), Some(h)) = (parts(want), parts(have)) else {
        return have.starts_with(&format!("{want}."));
    };
    w.first() == h.first() && h.len() >= w.len() && h[..w.len()] >= w[..]
}

/// The database as the create call needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    /// The DB subnet group (an address, or a name the stack gives).
    pub subnet_group: String,
    pub identifier: String,
    pub engine: String,
    pub engine_version: Option<String>,
    pub instance_class: String,
    /// GiB.
    pub storage_gb: i32,
    pub multi_az: bool,
    pub db_name: String,
    pub port: i32,
    pub deletion_protection: bool,
    /// The keyed hash of the vault's master password ([`password_hmac`]), when it is known.
    pub master_password: Option<String>,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            subnet_group: reference(r, "subnet_group")?.to_string(),
            identifier: get(r, "identifier")?.to_string(),
            engine: get(r, "engine")?.to_string(),
            engine_version: r.get("engine_version").map(str::to_string),
            instance_class: get(r, "instance_class")?.to_string(),
            storage_gb: parse(r, "storage_gb")?,
            multi_az: parse(r, "multi_az")?,
            db_name: get(r, "db_name")?.to_string(),
            port: parse(r, "port")?,
            deletion_protection: parse(r, "deletion_protection")?,
            master_password: r
                .get(MASTER_PASSWORD)
                .filter(|h| !h.is_empty())
                .map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Resource {
        Resource::new(ResKind::DbInstance, "aws_db_instance.main")
            .reference("subnet_group", vec!["aws_db_subnet_group.main".into()])
            .attr("identifier", "hactl-web-db")
            .attr("engine", "postgres")
            .attr("instance_class", "db.t3.micro")
            .attr("storage_gb", 20)
            .attr("multi_az", false)
            .attr("db_name", "app")
            .attr("deletion_protection", true)
    }

    /// A database without its port is refused before CreateDBInstance, naming it (never port
    /// 0 sent to RDS); without a vault password hash there is no hash tag, never an empty one.
    #[test]
    fn a_database_needs_its_port_and_keeps_no_empty_hash() {
        assert_eq!(Attrs::of(&db()).map_err(|e| e.key), Err("port".to_string()));
        let at = Attrs::of(&db().attr("port", 5432).attr(MASTER_PASSWORD, "")).expect("complete");
        assert_eq!(
            (at.port, at.master_password, at.engine_version),
            (5432, None, None)
        );
        let no_group = Resource {
            refs: Default::default(),
            ..db()
        };
        assert_eq!(
            Attrs::of(&no_group).map_err(|e| e.key),
            Err("subnet_group".to_string())
        );
    }

    /// Engine, name and identifier replace the database (refused unless data loss is
    /// allowed); class, storage, port and version change in place. `available` is ready;
    /// `failed` and every `incompatible-*` end the wait with the status.
    #[test]
    fn a_database_is_replaced_only_for_engine_name_or_identifier() {
        for k in ["engine", "db_name", "identifier"] {
            assert!(DbInstance.forces_replace(k), "{k}");
        }
        for k in [
            "instance_class",
            "storage_gb",
            "port",
            "engine_version",
            "multi_az",
        ] {
            assert!(!DbInstance.forces_replace(k), "{k}");
        }
        assert!(DbInstance.holds_data());
        assert_eq!(
            DbInstance.ready("backing-up"),
            Poll::Pending("backing-up".into())
        );
        assert_eq!(DbInstance.ready("available"), Poll::Ready);
        assert_eq!(DbInstance.ready("failed"), Poll::Failed("failed".into()));
        assert_eq!(
            DbInstance.ready("incompatible-network"),
            Poll::Failed("incompatible-network".into())
        );
        assert_eq!(
            DbInstance.timeout(&Timeouts::default()),
            Duration::from_secs(40 * 60)
        );
    }

    /// The final snapshot's name follows RDS's identifier rules for any derived DB name.
    #[test]
    fn final_snapshot_ids_follow_rds_rules() {
        let id = final_snapshot_id("hactl-web3-db", 1_764_550_000);
        assert_eq!(id, "hactl-web3-db-final-1764550000");
        let long = crate::provider::aws::desired::aws_name(&"x".repeat(80), "db", 63);
        let id = final_snapshot_id(&long, 1);
        assert!(
            id.len() <= 255 && !id.contains("--") && !id.ends_with('-'),
            "{id}"
        );
        assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
    }
}
