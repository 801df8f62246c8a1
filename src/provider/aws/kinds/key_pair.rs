//! `aws_key_pair`: the hosts' SSH public key, imported (ImportKeyPair) under a name derived
//! from the stack. EC2 cannot change an imported key's material, so a new key is a new pair;
//! the fingerprint hactl compares lives in a tag (`hactl:public-key-sha256`), as EC2 reports
//! only its own MD5/SHA-1 fingerprint. The name is the id RunInstances and DeleteKeyPair take;
//! EC2 tags a pair by its `key-…` id. Ready when imported.

use aws_sdk_ec2::types as ec2t;

use super::shared::{api, Ctx};
use super::{get, Kind, MissingAttr};
use crate::provider::aws::desired;
use crate::provider::aws::model::{Observed, ResKind, Resource, INFO_RETAG, TAG_PUBLIC_KEY};
use crate::provider::aws::observe::{ec2_tag, Scan};
use crate::provider::aws::{sdk_code, AwsError};

pub struct KeyPair;

/// The key pair as ImportKeyPair needs it (the material itself comes from the vault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub name: String,
    /// SHA-256 of the public key line, hex ([`desired::public_key_sha256`]).
    pub public_key_sha256: String,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            name: get(r, "name")?.to_string(),
            public_key_sha256: get(r, "public_key_sha256")?.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Kind for KeyPair {
    fn forces_replace(&self, key: &str) -> bool {
        matches!(key, "name" | "public_key_sha256")
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let keys = scan
            .ec2(
                ResKind::KeyPair,
                "DescribeKeyPairs",
                "key-name",
                |k: &ec2t::KeyPairInfo| (k.key_name(), k.tags()),
                // Read by id, the material too: a pair that lost its tags lost the
                // fingerprint tag as well.
                |f, by_id| async move {
                    let o = c
                        .ec2
                        .describe_key_pairs()
                        .filters(f)
                        .set_include_public_key(by_id.then_some(true))
                        .send()
                        .await;
                    o.map(|o| o.key_pairs().to_vec())
                },
            )
            .await?;
        let mut out = Vec::new();
        for (k, mut o) in keys {
            // The name is the id: RunInstances and DeleteKeyPair take it.
            let name = o.id.clone();
            // The fingerprint hactl compares lives in a tag; a pair read by id brings its
            // material (and lacks that tag when it lost the others).
            let sha = match (ec2_tag(k.tags(), TAG_PUBLIC_KEY), k.public_key()) {
                (Some(t), _) => t.to_string(),
                (None, Some(material)) => {
                    let retag = o.info.entry(INFO_RETAG.into()).or_default();
                    if !retag.is_empty() {
                        retag.push_str(", ");
                    }
                    retag.push_str(TAG_PUBLIC_KEY);
                    desired::public_key_sha256(material)
                }
                (None, None) => String::new(),
            };
            o.res = o.res.attr("name", &name).attr("public_key_sha256", sha);
            if let Some(id) = k.key_pair_id() {
                o.info.insert("key_pair_id".into(), id.into());
            }
            out.push(o);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let material = ctx
            .public_key
            .as_ref()
            .ok_or_else(|| AwsError::PublicKey("aws.hosts.public_key".into()))?;
        let mut tags = ctx.ec2_tags(ec2t::ResourceType::KeyPair, a);
        tags.tags.get_or_insert_with(Vec::new).push(
            ec2t::Tag::builder()
                .key(TAG_PUBLIC_KEY)
                .value(&at.public_key_sha256)
                .build(),
        );
        match ctx
            .c
            .ec2
            .import_key_pair()
            .key_name(&at.name)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(
                material.expose().trim().as_bytes(),
            ))
            .tag_specifications(tags)
            .send()
            .await
        {
            Ok(_) => {}
            // A retried import whose first answer was lost: the pair exists, tagged.
            Err(e) if sdk_code(&e).as_deref() == Some("InvalidKeyPair.Duplicate") => {}
            Err(e) => return Err(api("ImportKeyPair", a)(e)),
        }
        Ok(at.name)
    }

    /// The ownership tags and the fingerprint tag, on the pair's `key-…` id.
    async fn retag(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        let id = o.info.get("key_pair_id").unwrap_or(&o.id);
        let sha = o.res.get("public_key_sha256").filter(|s| !s.is_empty());
        let extra: Vec<(&str, &str)> = sha.map(|s| (TAG_PUBLIC_KEY, s)).into_iter().collect();
        ctx.retag_ec2(&o.res.addr, id, &extra).await
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteKeyPair", &o.res.addr, || {
            ctx.c.ec2.delete_key_pair().key_name(&o.id).send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair without its fingerprint is refused before ImportKeyPair (the tag would be
    /// empty, and the next plan would replace it); a new key or name is a new pair.
    #[test]
    fn a_key_pair_needs_name_and_fingerprint() {
        let r = Resource::new(ResKind::KeyPair, "aws_key_pair.hosts").attr("name", "hactl-web");
        assert_eq!(
            Attrs::of(&r).map_err(|e| e.key),
            Err("public_key_sha256".to_string())
        );
        assert!(KeyPair.forces_replace("public_key_sha256"));
        assert!(KeyPair.forces_replace("name"));
    }
}
