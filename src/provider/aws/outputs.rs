//! Outputs of a provisioned stack, computed from what was observed after apply: the
//! balancer's DNS name, the database endpoint and port, the file system's id and DNS name, and
//! every host's addresses. Saved in the state; printed by `hactl outputs`; available to
//! templates as `outputs.*`.

use serde_json::{json, Value};

use super::desired::{DB, EFS, LB};
use super::model::{Observed, ResKind};

/// The outputs as one JSON document.
pub fn outputs(observed: &[Observed]) -> Value {
    let find = |addr: &str| observed.iter().find(|o| o.res.addr == addr);
    let info = |o: &Observed, k: &str| o.info.get(k).cloned().unwrap_or_default();
    let mut out = serde_json::Map::new();
    if let Some(lb) = find(LB) {
        out.insert(
            "balancer".into(),
            json!({"dns_name": info(lb, "dns_name"), "arn": lb.id}),
        );
    }
    if let Some(db) = find(DB) {
        let port: Value = info(db, "port")
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or(Value::Null);
        out.insert(
            "database".into(),
            json!({
                "endpoint": info(db, "endpoint"),
                "port": port,
                "identifier": db.id,
                // The version RDS runs now (it upgrades minor versions by itself).
                "engine_version": db.res.get("engine_version"),
            }),
        );
    }
    if let Some(fs) = find(EFS) {
        out.insert(
            "shared_fs".into(),
            json!({"id": fs.id, "dns_name": info(fs, "dns_name")}),
        );
    }
    let mut hosts: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.res.kind == ResKind::Instance)
        .collect();
    hosts.sort_by_key(|o| index_of(&o.res.addr));
    let hosts: Vec<Value> = hosts
        .iter()
        .map(|o| {
            json!({
                "name": host_name(&o.res.addr),
                "address": info(o, "private_ip"),
                "public_ip": o.info.get("public_ip"),
                "zone": info(o, "zone"),
                "instance_id": o.id,
            })
        })
        .collect();
    out.insert("hosts".into(), Value::Array(hosts));
    Value::Object(out)
}

fn index_of(addr: &str) -> usize {
    addr.rsplit_once('[')
        .and_then(|(_, i)| i.trim_end_matches(']').parse().ok())
        .unwrap_or(usize::MAX)
}

/// `aws_instance.web[0]` → `web-0`: the host's name in plans and templates.
pub fn host_name(addr: &str) -> String {
    format!("web-{}", index_of(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::model::Resource;
    use std::collections::BTreeMap;

    #[test]
    fn outputs_shape() {
        let obs = |kind, addr: &str, id: &str, info: &[(&str, &str)]| Observed {
            res: Resource::new(kind, addr),
            id: id.into(),
            info: info
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        };
        let v = outputs(&[
            obs(ResKind::Lb, LB, "arn:lb", &[("dns_name", "lb.example")]),
            obs(
                ResKind::DbInstance,
                DB,
                "db1",
                &[("endpoint", "db.example"), ("port", "5432")],
            ),
            obs(
                ResKind::EfsFileSystem,
                EFS,
                "fs-1",
                &[("dns_name", "fs-1.efs")],
            ),
            obs(
                ResKind::Instance,
                "aws_instance.web[1]",
                "i-2",
                &[("private_ip", "10.0.1.5")],
            ),
            obs(
                ResKind::Instance,
                "aws_instance.web[0]",
                "i-1",
                &[("private_ip", "10.0.0.5")],
            ),
        ]);
        insta::assert_json_snapshot!(v);
    }
}
