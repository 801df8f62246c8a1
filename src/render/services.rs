//! The files of the HA services (`services:` in the stack) for one host: rsyslog's receiver
//! configuration for syslog, and for redis each instance's base configuration, the sentinel's
//! seed and the pre-start script that picks an instance's role from what is live.
//!
//! Each template sees the usual context plus one object for its service (`syslog` or `redis`)
//! with every default resolved (ports, log file, sentinel settings, the initial primary), so the
//! templates hold no defaults of their own. The haproxy side of redis (one `listen` per proxied
//! port, routing to `role:master` only) is `haproxy-redis.cfg.j2`, included by `haproxy.cfg.j2`.
//!
//! A client host of a redis service (`clients:`) gets `haproxy-client.cfg.j2` as its whole
//! haproxy.cfg instead: one `listen` per client port, the front (`vip`) hosts as its servers,
//! the first active and the rest `backup` ([`render_client_haproxy`]).
//!
//! What these files never hold is an instance's role: a primary that came back must not be
//! told by a file that it is the primary. See `templates/redis-prestart.sh.j2`.

use minijinja::Value;
use serde_json::json;

use super::{context, FileJob, RenderError, RenderedFile, Renderer};
use crate::services::{front_hosts, Service, FAILOVER_TIMEOUT, SENTINEL_PORT};
use crate::stack::model::{ServiceKind, Value as StackValue};

/// Where the redis pre-start script goes; the units (systemd `ExecStartPre`, the lab's
/// stand-in) run it before every start.
pub const REDIS_PRESTART: &str = "/etc/redis/hactl/prestart.sh";

fn job(template: &str, path: String, mode: u32, service: Option<String>) -> FileJob {
    FileJob {
        template: template.to_string(),
        path,
        mode,
        owner: Some("root".to_string()),
        service,
        check: None,
    }
}

/// The service's password as the templates see it: a `{secret: NAME}` stays a reference, which
/// the converter resolves (and records, so the file becomes sensitive) when a template reads it.
fn password(conv: &context::Converter, svc: &Service<'_>) -> Value {
    match svc.spec.password.as_ref().map(|p| &p.value) {
        Some(StackValue::Secret(r)) => {
            // the converter turns a map holding {secret: NAME} into a tracked slot
            let holder = conv.convert(&json!({ "password": { "secret": r.secret } }));
            holder.get_attr("password").unwrap_or(Value::from(()))
        }
        Some(StackValue::Plain(p)) => Value::from(p.clone()),
        None => Value::from(()),
    }
}

/// Appends the files and units of every service that runs on the renderer's host.
pub(super) fn render(
    r: &Renderer<'_>,
    files: &mut Vec<RenderedFile>,
    services: &mut Vec<String>,
) -> Result<(), RenderError> {
    for svc in Service::all(r.stack) {
        if !svc.runs_on(&r.host.name) {
            continue;
        }
        match svc.kind {
            ServiceKind::Syslog => {
                let extra = |_: &context::Converter| {
                    Value::from_serialize(json!({
                        "syslog": {
                            "name": svc.name,
                            "ports": svc.ports,
                            "udp": svc.udp,
                            "tcp": svc.tcp,
                            "log_file": svc.log_file(),
                        }
                    }))
                };
                files.push(r.render_with(
                    job(
                        "rsyslog-hactl.conf.j2",
                        "/etc/rsyslog.conf".into(),
                        0o644,
                        Some("rsyslog".into()),
                    ),
                    extra,
                )?);
            }
            ServiceKind::Redis => render_redis(r, &svc, files)?,
        }
        for unit in svc.units() {
            if !services.contains(&unit) {
                services.push(unit);
            }
        }
    }
    Ok(())
}

fn render_redis(
    r: &Renderer<'_>,
    svc: &Service<'_>,
    files: &mut Vec<RenderedFile>,
) -> Result<(), RenderError> {
    let addresses: Vec<String> = svc.hosts.iter().map(|h| h.address.to_string()).collect();
    let initial = svc
        .initial_primary()
        .map(|h| h.address.to_string())
        .unwrap_or_default();
    // the pre-start wait: the sentinels need down_after, then their election
    let wait = svc.down_after + crate::services::SENTINEL_ELECTION * 2;
    let object = |port: Option<u16>, conv: &context::Converter| -> Value {
        let mut m = std::collections::BTreeMap::<&str, Value>::new();
        m.insert("name", Value::from(svc.name.clone()));
        m.insert("ports", Value::from_serialize(&svc.ports));
        m.insert("addresses", Value::from_serialize(&addresses));
        m.insert("initial_primary", Value::from(initial.clone()));
        m.insert("sentinel_port", Value::from(SENTINEL_PORT));
        m.insert("quorum", Value::from(svc.quorum));
        m.insert(
            "down_after_ms",
            Value::from(u64::try_from(svc.down_after.as_millis()).unwrap_or(u64::MAX)),
        );
        m.insert(
            "failover_timeout_ms",
            Value::from(u64::try_from(FAILOVER_TIMEOUT.as_millis()).unwrap_or(u64::MAX)),
        );
        m.insert(
            "prestart_wait_tenths",
            Value::from(u64::try_from(wait.as_millis() / 100).unwrap_or(u64::MAX)),
        );
        m.insert("prestart", Value::from(REDIS_PRESTART));
        m.insert("data_root", Value::from("/var/lib/redis"));
        m.insert(
            "sentinel_runtime_conf",
            Value::from("/etc/redis/sentinel.conf"),
        );
        m.insert("replica_priority", Value::from(100));
        // With three or more hosts a primary that lost every replica is the isolated side of a
        // partition: it stops taking writes. With two, the survivor of a failure has no replica
        // by definition, so the guard would refuse every write after any failover.
        m.insert(
            "min_replicas_to_write",
            Value::from(u8::from(svc.hosts.len() >= 3)),
        );
        m.insert("min_replicas_max_lag", Value::from(10));
        m.insert(
            "replicas_expected",
            Value::from(svc.hosts.len().saturating_sub(1)),
        );
        m.insert("password", password(conv, svc));
        if let Some(p) = port {
            m.insert("port", Value::from(p));
            m.insert("data_dir", Value::from(format!("/var/lib/redis/{p}")));
            m.insert(
                "runtime_conf",
                Value::from(format!("/etc/redis/redis-{p}.conf")),
            );
        }
        let mut outer = std::collections::BTreeMap::new();
        outer.insert("redis", Value::from_iter(m));
        Value::from_iter(outer)
    };
    // The pre-start script first: every unit runs it.
    files.push(r.render_with(
        job("redis-prestart.sh.j2", REDIS_PRESTART.into(), 0o755, None),
        |c| object(None, c),
    )?);
    for &port in &svc.ports {
        files.push(r.render_with(
            job(
                "redis.conf.j2",
                format!("/etc/redis/hactl/redis-{port}.conf"),
                0o644,
                Some(format!("redis-server@{port}")),
            ),
            |c| object(Some(port), c),
        )?);
    }
    if svc.sentinel() {
        files.push(r.render_with(
            job(
                "sentinel.conf.j2",
                "/etc/redis/hactl/sentinel.conf".into(),
                0o644,
                Some("redis-sentinel".into()),
            ),
            |c| object(None, c),
        )?);
    }
    Ok(())
}

/// The haproxy.cfg of a client host (see [`crate::services::haproxy_client_only`]). The
/// template gets `client_listens`: one entry per client port of every service this host is a
/// client of, `{name, service, port, proxy_port, client_port, servers: [{name, address,
/// backup}]}`, with the front hosts in stack order so the first is the active server.
pub(super) fn render_client_haproxy(r: &Renderer<'_>) -> Result<RenderedFile, RenderError> {
    let fronts = front_hosts(r.stack);
    let servers: Vec<serde_json::Value> = fronts
        .iter()
        .enumerate()
        .map(|(i, h)| json!({ "name": h.name, "address": h.address.to_string(), "backup": i > 0 }))
        .collect();
    let mut listens = Vec::new();
    for svc in Service::all(r.stack) {
        if !svc.has_client(&r.host.name) {
            continue;
        }
        // validation makes the three lists the same length
        for ((&port, &proxy_port), &client_port) in svc
            .ports
            .iter()
            .zip(&svc.proxy_ports)
            .zip(&svc.client_ports)
        {
            listens.push(json!({
                "name": format!("{}_{client_port}", svc.name),
                "service": svc.name,
                "port": port,
                "proxy_port": proxy_port,
                "client_port": client_port,
                "servers": servers,
            }));
        }
    }
    let job = FileJob {
        template: "haproxy-client.cfg.j2".to_string(),
        path: "/etc/haproxy/haproxy.cfg".to_string(),
        mode: 0o644,
        owner: Some("root".to_string()),
        service: Some("haproxy".to_string()),
        check: Some(super::CheckKind::Haproxy),
    };
    r.render_with(job, |_| {
        Value::from_serialize(json!({ "client_listens": listens }))
    })
}
