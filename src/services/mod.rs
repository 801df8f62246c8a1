//! HA services beyond the web app (seeds 000 and 002): the stack's `services:` entries resolved
//! for the rest of hactl, and the pure decisions about them.
//!
//! This module owns what a service *is* on the hosts (which hosts run it, its ports, its
//! systemd units, its sentinel master names), the failover figure its timings predict, and —
//! in [`redis`] — reading a redis instance's replication state and deciding what `hactl heal`
//! must do so that each port has exactly one primary and every other live instance follows it.
//! Nothing here does I/O: scripts are built as data and their output parsed back, so all of it
//! is tested without a host. Rendering lives in `render::services`, the command in `cli::heal`.

pub mod redis;

use std::time::Duration;

use crate::stack::model::{Promotion, ServiceKind, ServiceSpec, Value};
use crate::stack::{Host, Stack};

/// The port every sentinel listens on (redis' default).
pub const SENTINEL_PORT: u16 = 26379;
/// syslog's port when the stack gives none.
pub const SYSLOG_PORT: u16 = 514;
/// redis' port when the stack gives none.
pub const REDIS_PORT: u16 = 6379;
/// The sentinels' election and promotion after `down_after`: a budget, measured at well under
/// a second in the lab (leader vote, `REPLICAOF NO ONE`, the next INFO refresh).
pub const SENTINEL_ELECTION: Duration = Duration::from_millis(1500);
/// How long a failover may take before the sentinels try again (`failover-timeout`).
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// The hosts whose haproxy serves the services' `proxy_ports`: every `vip` host, in stack
/// order. A client host's haproxy sends to the first and keeps the others as backups.
pub fn front_hosts(stack: &Stack) -> Vec<&Host> {
    stack.hosts.iter().filter(|h| h.has_role("vip")).collect()
}

/// Whether `host` runs haproxy only as a client of the front hosts: it is a client of some
/// service and not a `vip` host itself (validation refuses a host that is both).
pub fn haproxy_client_only(stack: &Stack, host: &Host) -> bool {
    stack.file.haproxy.is_some()
        && !host.has_role("vip")
        && Service::all(stack).iter().any(|s| s.has_client(&host.name))
}

/// One `services:` entry with every default resolved.
#[derive(Debug, Clone)]
pub struct Service<'a> {
    pub spec: &'a ServiceSpec,
    pub name: String,
    pub kind: ServiceKind,
    /// The hosts that run it, in stack order; the first is the initial primary/active.
    pub hosts: Vec<&'a Host>,
    pub ports: Vec<u16>,
    /// The `vip` hosts' haproxy ports, one per port (empty: not proxied).
    pub proxy_ports: Vec<u16>,
    /// Hosts outside the service with a local haproxy in front of the `vip` hosts' (seed
    /// 002's `app`), in stack order, and their local ports, one per proxy port.
    pub clients: Vec<&'a Host>,
    pub client_ports: Vec<u16>,
    pub udp: bool,
    pub tcp: bool,
    pub promotion: Promotion,
    pub quorum: u32,
    pub down_after: Duration,
}

fn port(v: i64) -> u16 {
    // validation bounds every port to 1..=65535
    u16::try_from(v).unwrap_or(0)
}

impl<'a> Service<'a> {
    pub fn resolve(stack: &'a Stack, spec: &'a ServiceSpec) -> Service<'a> {
        let kind = spec.kind.value;
        let hosts: Vec<&Host> = match &spec.hosts {
            Some(names) => stack
                .hosts
                .iter()
                .filter(|h| names.value.contains(&h.name))
                .collect(),
            None => stack.hosts.iter().collect(),
        };
        let mut ports: Vec<u16> = spec.ports.iter().map(|p| port(p.value)).collect();
        if ports.is_empty() {
            ports.push(match kind {
                ServiceKind::Syslog => SYSLOG_PORT,
                ServiceKind::Redis => REDIS_PORT,
            });
        }
        let clients: Vec<&Host> = match &spec.clients {
            Some(names) => stack
                .hosts
                .iter()
                .filter(|h| names.value.contains(&h.name))
                .collect(),
            None => Vec::new(),
        };
        let protocols: Vec<&str> = spec.protocols.iter().map(String::as_str).collect();
        // no protocols given: syslog clients use both, so the receiver takes both
        let both = protocols.is_empty();
        Service {
            spec,
            name: spec.name.value.clone(),
            kind,
            hosts,
            ports,
            proxy_ports: spec.proxy_ports.iter().map(|p| port(p.value)).collect(),
            clients,
            client_ports: spec.client_ports.iter().map(|p| port(p.value)).collect(),
            udp: both || protocols.contains(&"udp"),
            tcp: both || protocols.contains(&"tcp"),
            promotion: spec
                .promotion
                .as_ref()
                .map(|p| p.value)
                .unwrap_or(Promotion::Sentinel),
            quorum: spec
                .quorum
                .as_ref()
                .and_then(|q| u32::try_from(q.value).ok())
                .unwrap_or(2),
            down_after: spec
                .down_after
                .as_ref()
                .map(|d| d.value.0)
                .unwrap_or(Duration::from_secs(5)),
        }
    }

    /// Every service of the stack, resolved.
    pub fn all(stack: &'a Stack) -> Vec<Service<'a>> {
        stack
            .file
            .services
            .iter()
            .map(|s| Service::resolve(stack, s))
            .collect()
    }

    pub fn runs_on(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.name == host)
    }

    /// Whether `host` is one of the service's client hosts (it gets the client haproxy).
    pub fn has_client(&self, host: &str) -> bool {
        !self.client_ports.is_empty() && self.clients.iter().any(|h| h.name == host)
    }

    /// The host that is primary (or active) when nothing is running yet.
    pub fn initial_primary(&self) -> Option<&'a Host> {
        self.hosts.first().copied()
    }

    pub fn sentinel(&self) -> bool {
        self.kind == ServiceKind::Redis && self.promotion == Promotion::Sentinel
    }

    /// The systemd units on each of its hosts, in start order: the instances, then the
    /// sentinel (it needs the instances to find the primaries).
    pub fn units(&self) -> Vec<String> {
        match self.kind {
            ServiceKind::Syslog => vec!["rsyslog".into()],
            ServiceKind::Redis => {
                let mut v: Vec<String> = self
                    .ports
                    .iter()
                    .map(|p| format!("redis-server@{p}"))
                    .collect();
                if self.sentinel() {
                    v.push("redis-sentinel".into());
                }
                v
            }
        }
    }

    /// The sentinels' name for the primary of one port: `redis-9001`.
    pub fn master_name(&self, port: u16) -> String {
        format!("{}-{port}", self.name)
    }

    /// The secret this service's password comes from, if any.
    pub fn password_secret(&self) -> Option<&str> {
        match self.spec.password.as_ref().map(|p| &p.value) {
            Some(Value::Secret(r)) => Some(&r.secret),
            _ => None,
        }
    }

    /// Where the syslog receiver writes what it gets.
    pub fn log_file(&self) -> String {
        format!("/var/log/hactl/{}.log", self.name)
    }

    /// The failover figure the stack's timings predict when the primary (or active) host dies.
    pub fn predicted_failover(&self, stack: &Stack) -> Prediction {
        match self.kind {
            ServiceKind::Redis => {
                let (inter, fall, rise) = haproxy_timing(stack);
                let detect = self.down_after;
                let (detect, promote) = if self.sentinel() {
                    (detect, SENTINEL_ELECTION)
                } else {
                    // `hactl heal --watch` promotes: its round waits out the SSH connect
                    // timeout to the dead host (plus the round's `--interval`, not known here).
                    (stack.file.ssh.connect_timeout.value.0, Duration::ZERO)
                };
                // haproxy: the new primary's check must pass `rise` times, and the first of
                // those can start up to one interval after the promotion.
                let route = inter * (rise + 1);
                Prediction {
                    detect,
                    promote,
                    route,
                    total: detect + promote + route,
                    note: format!(
                        "{} {} + election {} + haproxy (rise {rise} + 1) x {} ms; the old primary's server is down after fall {fall} x {} ms, which overlaps",
                        if self.sentinel() { "down_after" } else { "heal's ssh connect_timeout (+ its --interval)" },
                        fmt_dur(detect),
                        fmt_dur(promote),
                        inter.as_millis(),
                        inter.as_millis()
                    ),
                }
            }
            ServiceKind::Syslog => {
                // The VIP follows the service's check: it fails within `fall` intervals (plus
                // one interval of phase), then the FAULT advert moves the VIP after the
                // backup's skew time, at most one advert interval.
                let (interval, fall) = stack
                    .file
                    .vip
                    .as_ref()
                    .and_then(|v| {
                        v.checks.iter().find(|c| {
                            c.service.as_ref().map(|s| s.value.as_str()) == Some(&self.name)
                        })
                    })
                    .map(|c| {
                        (
                            c.interval.value.0,
                            u32::try_from(c.fall.value).unwrap_or(1).max(1),
                        )
                    })
                    .unwrap_or((Duration::from_secs(1), 2));
                let advert = stack
                    .file
                    .vip
                    .as_ref()
                    .map(|v| v.advert_int.value.0)
                    .unwrap_or(Duration::from_secs(1));
                let detect = interval * (fall + 1);
                Prediction {
                    detect,
                    promote: Duration::ZERO,
                    route: advert,
                    total: detect + advert,
                    note: format!(
                        "check (fall {fall} + 1) x {} + one advert interval {}",
                        fmt_dur(interval),
                        fmt_dur(advert)
                    ),
                }
            }
        }
    }
}

/// haproxy's check interval, fall and rise (the stack's, or haproxy's defaults).
fn haproxy_timing(stack: &Stack) -> (Duration, u32, u32) {
    match &stack.file.haproxy {
        Some(h) => (
            h.check_interval.value.0,
            u32::try_from(h.fall.value).unwrap_or(3),
            u32::try_from(h.rise.value).unwrap_or(2),
        ),
        None => (Duration::from_secs(2), 3, 2),
    }
}

fn fmt_dur(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A predicted failover time and how it adds up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prediction {
    pub detect: Duration,
    pub promote: Duration,
    pub route: Duration,
    pub total: Duration,
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Stack {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        crate::stack::load(&path).expect("the example stack is valid")
    }

    #[test]
    fn redis_lab_stack_resolves() {
        let stack = load("stacks/lab-redis.yaml");
        let all = Service::all(&stack);
        let s = &all[0];
        assert_eq!(s.ports, vec![9001, 9002]);
        assert_eq!(s.quorum, 2);
        assert!(s.sentinel());
        assert_eq!(
            s.units(),
            vec!["redis-server@9001", "redis-server@9002", "redis-sentinel"]
        );
        assert_eq!(s.initial_primary().map(|h| h.name.as_str()), Some("host1"));
        assert_eq!(s.master_name(9001), "redis-9001");
        // 2 s down_after + 1.5 s election + (1 + 1) x 500 ms
        assert_eq!(
            s.predicted_failover(&stack).total,
            Duration::from_millis(4500)
        );
    }

    #[test]
    fn syslog_lab_stack_resolves() {
        let stack = load("stacks/lab-syslog.yaml");
        let s = &Service::all(&stack)[0];
        assert_eq!(s.units(), vec!["rsyslog"]);
        assert!(s.udp && s.tcp);
        assert_eq!(s.ports, vec![514]);
        assert_eq!(s.log_file(), "/var/log/hactl/syslog.log");
        // check 1 s x (fall 1 + 1) + advert 1 s
        assert_eq!(s.predicted_failover(&stack).total, Duration::from_secs(3));
        assert!(s.runs_on("host3") && !s.runs_on("host4"));
    }

    #[test]
    fn seed_002_password_comes_from_the_vault() {
        let stack = load("stacks/seed-002-redis-failover.yaml");
        let s = &Service::all(&stack)[0];
        assert_eq!(s.password_secret(), Some("redis_password"));
        // 5 s + 1.5 s + (2 + 1) x 5 s
        assert_eq!(
            s.predicted_failover(&stack).total,
            Duration::from_millis(21_500)
        );
    }
}
