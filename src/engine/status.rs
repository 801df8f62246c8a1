//! Reading a running stack for `hactl status` and the waits of `up`, `heal` and `deploy`:
//! per host reachability, VRRP state, base and effective priority, check results, services,
//! HA roles and whether it holds the VIP.
//!
//! [`collect`] is the one reader of a running stack: `up`, `heal` and `deploy` wait on it
//! (`engine::serving`) until the stack serves, so what they wait for is exactly what `status`
//! shows.

use futures::StreamExt;
use serde::Serialize;

use crate::onhost::record::{self as script_record, Record};
use crate::provider::hosts::script;
use crate::provider::hosts::{self as hp, Connection};
use crate::services::{redis, Service};
use crate::stack::model::ServiceKind;
use crate::stack::{Host, Stack};

#[derive(Debug, Serialize)]
pub(crate) struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub weight: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct HostStatus {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// MASTER, BACKUP, FAULT or STOPPED (keepalived not running).
    pub vrrp_state: Option<String>,
    pub holds_vip: bool,
    pub base_priority: u8,
    pub effective_priority: Option<i64>,
    /// The last transition the notify hook recorded: `STATE UNIX-TIME`.
    pub last_transition: Option<String>,
    pub checks: Vec<CheckResult>,
    pub services: std::collections::BTreeMap<String, String>,
    /// HA services' roles on this host: `redis:9001` → `primary (2 replicas)`, `syslog` →
    /// `active`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub roles: std::collections::BTreeMap<String, String>,
    /// What keeps this host's HA services from being armed although they run: a redis
    /// replica whose link to its primary is down (its first sync is not done, or its primary
    /// is gone: the data is not on two hosts), a sentinel that does not know every other one
    /// yet (a primary lost now may not reach the quorum).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ha_pending: Vec<String>,
    /// On an `app` host of a stack with `app` and `nginx`: whether the app's health path
    /// (`app.health.path`) answers 2xx through nginx on this host (`curl` on the host, to
    /// `127.0.0.1:nginx.listen`), i.e. the app is healthy behind nginx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_via_nginx: Option<bool>,
}

#[derive(Debug, Serialize)]
pub(crate) struct VipStatus {
    pub address: String,
    pub holders: Vec<String>,
    /// With two or more holders: the stack's election groups (`ha::hearing`) the holders are
    /// in, each group's members. One group: the holders should hear each other (a partition,
    /// a firewall dropping VRRP, a keepalived killed while MASTER); several: the stack's own
    /// peer lists or mode keep them apart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub stack: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<VipStatus>,
    pub split_brain: bool,
    pub hosts: Vec<HostStatus>,
}

/// The name the app-through-nginx probe runs under in the status script. A stack's check
/// names are identifiers (no spaces), so this one cannot collide with them.
const APP_PROBE: &str = "app via nginx";

/// keepalived's arithmetic: a passing check with a positive weight adds it, a failing check
/// with a negative weight subtracts it; a failing check of weight 0 means FAULT.
fn effective(base: u8, checks: &[CheckResult]) -> (i64, bool) {
    let mut p = i64::from(base);
    let mut fault = false;
    for c in checks {
        match (c.ok, c.weight) {
            (true, w) if w > 0 => p += w,
            (false, w) if w < 0 => p += w,
            (false, 0) => fault = true,
            _ => {}
        }
    }
    (p.clamp(1, 254), fault)
}

async fn probe(stack: &Stack, host: &Host, conn: Result<Connection, hp::HostError>) -> HostStatus {
    let mut st = HostStatus {
        name: host.name.clone(),
        address: host.address.to_string(),
        reachable: false,
        error: None,
        vrrp_state: None,
        holds_vip: false,
        base_priority: host.priority,
        effective_priority: None,
        last_transition: None,
        checks: Vec::new(),
        services: Default::default(),
        roles: Default::default(),
        ha_pending: Vec::new(),
        app_via_nginx: None,
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    let vip = stack.file.vip.as_ref().filter(|_| host.has_role("vip"));
    let mut services = Vec::new();
    if stack.file.nginx.is_some() && host.has_role("app") {
        services.push("nginx".to_string());
    }
    if let Some(_v) = vip {
        if stack.file.haproxy.is_some() {
            services.push("haproxy".to_string());
        }
        services.push("keepalived".to_string());
    } else if crate::services::haproxy_client_only(stack, host) {
        services.push("haproxy".to_string());
    }
    let mut checks: Vec<(String, String)> = vip
        .map(|v| {
            v.checks
                .iter()
                .map(|c| (c.name.value.clone(), script::check_command(c)))
                .collect()
        })
        .unwrap_or_default();
    if let (Some(app), Some(nginx), true) =
        (&stack.file.app, &stack.file.nginx, host.has_role("app"))
    {
        checks.push((
            APP_PROBE.to_string(),
            app_probe_command(nginx.listen.value, &app.health.path),
        ));
    }
    let vip_addr = stack.vip.as_ref().map(|v| v.address.to_string());
    let instance = vip.map(|v| v.instance.clone()).unwrap_or_default();
    let svcs: Vec<Service<'_>> = Service::all(stack)
        .into_iter()
        .filter(|s| s.runs_on(&host.name))
        .collect();
    for svc in &svcs {
        services.extend(svc.units());
    }
    let mut text = script::status_script(vip_addr.as_deref(), &instance, &services, &checks);
    // The vault is opened only when a redis password lives there (a missing key only means
    // the instances show as down: status never fails on the vault).
    let secrets = if svcs.iter().any(|s| s.password_secret().is_some()) {
        crate::vault::open(stack).unwrap_or_default()
    } else {
        crate::vault::Secrets::default()
    };
    for svc in svcs.iter().filter(|s| s.kind == ServiceKind::Redis) {
        text.push_str(&redis::probe_script(
            svc,
            svc_password(svc, &secrets).as_deref(),
            true,
        ));
    }
    let out = hp::query(&conn, &text).await;
    conn.close().await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    st.reachable = true;
    let mut transition = None;
    for rec in script_record::parse(&out) {
        match rec {
            Record::Service { name, active, .. } => {
                st.services
                    .insert(name, if active { "active" } else { "inactive" }.into());
            }
            Record::Vip(v) => st.holds_vip = v,
            Record::Check { name, ok } if name == APP_PROBE => st.app_via_nginx = Some(ok),
            Record::Check { name, ok } => {
                let weight = vip
                    .and_then(|v| v.checks.iter().find(|c| c.name.value == name))
                    .map(|c| c.weight.value)
                    .unwrap_or(0);
                st.checks.push(CheckResult { name, ok, weight });
            }
            Record::Transition(t) => transition = Some(t),
            _ => {}
        }
    }
    let probed = redis::parse_probe(&out);
    for svc in &svcs {
        match svc.kind {
            ServiceKind::Redis => {
                for port in &svc.ports {
                    let key = format!("{}:{port}", svc.name);
                    let state = probed.states.get(port);
                    if let Some(redis::State::Replica {
                        master,
                        link_up: false,
                        ..
                    }) = state
                    {
                        // A replica of a dead or wrong primary stays here until `heal`
                        // points it at the live one: the message says which it follows.
                        let of = master.map(|m| m.to_string()).unwrap_or_else(|| "?".into());
                        st.ha_pending.push(format!(
                            "{key}: the replica is not in sync with its primary ({of}) yet \
                             (`hactl heal` repoints a replica whose primary is gone)"
                        ));
                    }
                    if svc.sentinel() {
                        let others = svc.hosts.len().saturating_sub(1);
                        let name = svc.master_name(*port);
                        match probed.sentinel_peers.get(port).map(|&n| n as usize) {
                            Some(n) if n == others => {}
                            Some(n) if n < others => st.ha_pending.push(format!(
                                "{key}: its sentinel knows {n} of the {others} other sentinels"
                            )),
                            // More peers than hosts (a stale entry, or a sentinel outside the
                            // stack watching the same primary): each still votes, so the
                            // majority a failover needs may not form.
                            Some(n) => st.ha_pending.push(format!(
                                "{key}: its sentinel counts {n} other sentinels where the stack \
                                 has {others} (`SENTINEL RESET {name}` on it forgets the ones \
                                 that are gone)"
                            )),
                            None => st
                                .ha_pending
                                .push(format!("{key}: its sentinel gives no answer for `{name}`")),
                        }
                    }
                    let state = state.map(|s| s.describe()).unwrap_or_else(|| "down".into());
                    st.roles.insert(key, state);
                }
            }
            ServiceKind::Syslog => {
                let running = svc
                    .units()
                    .iter()
                    .all(|u| st.services.get(u).map(String::as_str) == Some("active"));
                let role = match (running, st.holds_vip) {
                    (true, true) => "active",
                    (true, false) => "passive",
                    (false, _) => "down",
                };
                st.roles.insert(svc.name.clone(), role.into());
            }
        }
    }
    if vip.is_some() {
        let (p, fault) = effective(host.priority, &st.checks);
        st.effective_priority = Some(p);
        let running = st.services.get("keepalived").map(String::as_str) == Some("active");
        st.vrrp_state = Some(
            if !running {
                "STOPPED"
            } else if st.holds_vip {
                "MASTER"
            } else if fault {
                "FAULT"
            } else {
                "BACKUP"
            }
            .into(),
        );
        st.last_transition = transition;
    }
    st
}

/// The command that asks nginx on this host for the app's health path: 2xx within 2 s.
fn app_probe_command(port: i64, path: &str) -> String {
    format!(
        "curl -fsS -m 2 -o /dev/null {}",
        crate::onhost::sh::q(&format!("http://127.0.0.1:{port}{path}"))
    )
}

/// A redis service's password for the status probe: inline, or from the vault when it opens.
fn svc_password(svc: &Service<'_>, secrets: &crate::vault::Secrets) -> Option<String> {
    match svc.spec.password.as_ref().map(|p| &p.value) {
        Some(crate::stack::model::Value::Plain(p)) => Some(p.clone()),
        Some(crate::stack::model::Value::Secret(r)) => {
            secrets.get(&r.secret).map(|s| s.expose().to_string())
        }
        None => None,
    }
}

/// Asks every host of the stack (in parallel, `ssh.parallelism` at once) and returns what
/// they said, hosts in stack order. Never fails: an unreachable host is a host status.
pub(crate) async fn collect(stack: &Stack) -> Status {
    let hosts: Vec<&Host> = stack.hosts.iter().collect();
    let mut conns = hp::connect_all(stack, &hosts).await;
    let parallelism = stack.file.ssh.parallelism.max(1);
    let mut statuses: Vec<HostStatus> = futures::stream::iter(hosts.iter().map(|h| {
        let conn = conns.remove(&h.name).unwrap_or_else(|| {
            Err(hp::HostError::Remote {
                host: h.name.clone(),
                message: "not connected".into(),
            })
        });
        probe(stack, h, conn)
    }))
    .buffer_unordered(parallelism)
    .collect()
    .await;
    let order = |n: &str| stack.hosts.iter().position(|h| h.name == n);
    statuses.sort_by_key(|s| order(&s.name));
    let holders: Vec<String> = statuses
        .iter()
        .filter(|s| s.holds_vip)
        .map(|s| s.name.clone())
        .collect();
    let groups: Vec<Vec<String>> = if holders.len() > 1 {
        let graph = crate::ha::hearing::from_stack(stack);
        let mut g: Vec<Vec<String>> = Vec::new();
        for h in &holders {
            let mine = graph.as_ref().map(|gr| gr.group_of(h)).unwrap_or_default();
            if !mine.is_empty() && !g.contains(&mine) {
                g.push(mine);
            }
        }
        g
    } else {
        Vec::new()
    };
    Status {
        stack: stack.name().to_string(),
        split_brain: holders.len() > 1,
        vip: stack.vip.as_ref().map(|v| VipStatus {
            address: v.address.to_string(),
            holders: holders.clone(),
            groups,
        }),
        hosts: statuses,
    }
}
