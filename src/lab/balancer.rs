//! The stand-in balancer (`hactl lab balancer`): what an ALB/NLB does with a target group,
//! for an AWS stack whose instances are lab hosts (moto has no data plane). It listens on
//! loopback (or the lab's gateway address) and forwards each connection to one of the target
//! group's registered, `healthy` targets, as moto (or the AWS-like layer in front of it)
//! reports them — read with `DescribeTargetHealth` every `poll` (100 ms by default).
//!
//! - A target that turns `draining` gets no new connection; the connections it already has
//!   run to their end (their requests finish), as ELB's deregistration delay lets them.
//! - A target that is not registered, `initial`, `unhealthy` or `unused` gets nothing. With no
//!   healthy target a connection is closed at once (a real ALB answers 503 and may fail open
//!   to unhealthy targets; a closed connection is the same failure for a probe).
//! - Balancing is per connection, round robin: like an NLB, and like an ALB for clients that
//!   open one connection per request (hactl's probe does, keep-alive off).
//!
//! Each change of the backend set is one JSON line (`event: backends`, with the unix ms
//! time), so a test can show that a host was draining and then gone before its swap.
//!
//! Safety: every backend must be loopback or a lab address routed through the lab bridge,
//! and the listener loopback or in the lab range, checked before anything is sent; the run
//! ends after `max_time` whatever happens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::LabError;
use crate::provider::aws::client::Clients;
use crate::provider::aws::health::{targets, TargetHealth};

/// What the stand-in serves and reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub region: String,
    pub target_group_arn: String,
    /// Target id (instance id) → where that instance really is (a lab host's nginx).
    pub backends: BTreeMap<String, SocketAddr>,
    pub poll: Duration,
    pub max_time: Duration,
}

/// One line of the stand-in's log.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The listener is up (first line: a test learns the port from it).
    Listening { t: u64, addr: String },
    /// The backend set changed: where new connections go, and which targets drain.
    Backends {
        t: u64,
        active: Vec<String>,
        draining: Vec<String>,
        /// Every listed target and its state.
        states: BTreeMap<String, String>,
    },
    /// Reading the target group failed (the last set stays in force).
    Error { t: u64, message: String },
    /// The end: connections per target, and those that found no target or no backend.
    Done {
        t: u64,
        connections: BTreeMap<String, u64>,
        no_target: u64,
        backend_failed: u64,
    },
}

/// Where new connections go: active (healthy) and draining targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    pub active: Vec<String>,
    pub draining: Vec<String>,
    pub states: BTreeMap<String, String>,
}

/// The backend set a `DescribeTargetHealth` listing makes: `healthy` targets that have a
/// backend address are active, `draining` ones drain; the rest get nothing.
pub fn backend_set(list: &[TargetHealth], known: &BTreeMap<String, SocketAddr>) -> Set {
    let mut s = Set::default();
    for t in list {
        s.states.insert(t.id.clone(), t.state.clone());
        if !known.contains_key(&t.id) {
            continue;
        }
        match t.state.as_str() {
            "healthy" => s.active.push(t.id.clone()),
            "draining" => s.draining.push(t.id.clone()),
            _ => {}
        }
    }
    s.active.sort();
    s.draining.sort();
    s
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Refuses a backend or listener outside loopback and the lab.
async fn check_addr(addr: SocketAddr) -> Result<(), LabError> {
    match addr.ip() {
        ip if ip.is_loopback() => Ok(()),
        std::net::IpAddr::V4(v4) => super::ensure_lab_route(v4).await,
        std::net::IpAddr::V6(_) => Err(LabError::NotLabRoute {
            addr: std::net::Ipv4Addr::UNSPECIFIED,
            detail: format!("{addr} is neither loopback nor a lab address"),
        }),
    }
}

/// Runs the stand-in until `max_time`, calling `emit` for each log line.
pub async fn run(
    cfg: Config,
    emit: impl Fn(&Event) + Send + Sync + 'static,
) -> Result<(), LabError> {
    for a in cfg.backends.values() {
        check_addr(*a).await?;
    }
    if !cfg.listen.ip().is_loopback() {
        check_addr(cfg.listen).await?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| LabError::Io {
            path: cfg.listen.to_string().into(),
            source: e,
        })?;
    let local = listener.local_addr().map_err(|e| LabError::Io {
        path: cfg.listen.to_string().into(),
        source: e,
    })?;
    let emit = Arc::new(emit);
    emit(&Event::Listening {
        t: unix_ms(),
        addr: local.to_string(),
    });
    let clients = Clients::new(&cfg.region).await;
    let set: Arc<Mutex<Set>> = Arc::new(Mutex::new(Set::default()));
    let deadline = Instant::now() + cfg.max_time;

    // The reader: the target group every `poll`, one line per change.
    let reader = {
        let (set, emit, cfg) = (set.clone(), emit.clone(), cfg.clone());
        tokio::spawn(async move {
            let mut last_err = String::new();
            while Instant::now() < deadline {
                match targets(&clients, &cfg.target_group_arn).await {
                    Ok(list) => {
                        let now = backend_set(&list, &cfg.backends);
                        let changed = {
                            let mut cur = set.lock().unwrap_or_else(|e| e.into_inner());
                            let changed = *cur != now;
                            *cur = now.clone();
                            changed
                        };
                        if changed {
                            emit(&Event::Backends {
                                t: unix_ms(),
                                active: now.active,
                                draining: now.draining,
                                states: now.states,
                            });
                        }
                        last_err.clear();
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if message != last_err {
                            emit(&Event::Error {
                                t: unix_ms(),
                                message: message.clone(),
                            });
                            last_err = message;
                        }
                    }
                }
                tokio::time::sleep(cfg.poll).await;
            }
        })
    };

    let next = Arc::new(AtomicUsize::new(0));
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let no_target = Arc::new(AtomicU64::new(0));
    let backend_failed = Arc::new(AtomicU64::new(0));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::time::sleep(left) => break,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let pick = {
            let cur = set.lock().unwrap_or_else(|e| e.into_inner());
            if cur.active.is_empty() {
                None
            } else {
                let i = next.fetch_add(1, Ordering::Relaxed) % cur.active.len();
                let id = cur.active[i].clone();
                cfg.backends.get(&id).map(|a| (id, *a))
            }
        };
        let Some((id, addr)) = pick else {
            no_target.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        };
        *counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_insert(0) += 1;
        let backend_failed = backend_failed.clone();
        conns.spawn(async move {
            let up =
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await;
            match up {
                Ok(Ok(mut server)) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                _ => {
                    backend_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    reader.abort();
    // connections in flight finish (bounded: a request is seconds at most)
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    let connections = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    emit(&Event::Done {
        t: unix_ms(),
        connections,
        no_target: no_target.load(Ordering::Relaxed),
        backend_failed: backend_failed.load(Ordering::Relaxed),
    });
    Ok(())
}

/// Parses `ID=ADDR:PORT` (`--backend i-0abc=198.18.0.11:80`).
pub fn parse_backend(text: &str) -> Result<(String, SocketAddr), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write it as `TARGET_ID=ADDRESS:PORT`"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("`{text}`: `{addr}` is not ADDRESS:PORT"))?;
    if id.is_empty() {
        return Err(format!("`{text}`: no target id before `=`"));
    }
    Ok((id.to_string(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, state: &str) -> TargetHealth {
        TargetHealth {
            id: id.into(),
            state: state.into(),
            reason: None,
        }
    }

    #[test]
    fn only_healthy_known_targets_get_new_connections() {
        let known: BTreeMap<String, SocketAddr> = [
            ("i-1".to_string(), "198.18.0.11:80".parse().unwrap()),
            ("i-2".to_string(), "198.18.0.12:80".parse().unwrap()),
            ("i-3".to_string(), "198.18.0.13:80".parse().unwrap()),
        ]
        .into();
        let s = backend_set(
            &[
                t("i-2", "healthy"),
                t("i-1", "draining"),
                t("i-3", "initial"),
                t("i-9", "healthy"),
            ],
            &known,
        );
        assert_eq!(s.active, ["i-2"], "i-9 has no backend address");
        assert_eq!(s.draining, ["i-1"]);
        assert_eq!(s.states.len(), 4);
    }

    #[test]
    fn backends_parse() {
        assert_eq!(
            parse_backend("i-0ab=198.18.0.11:80").unwrap(),
            ("i-0ab".to_string(), "198.18.0.11:80".parse().unwrap())
        );
        assert!(parse_backend("i-0ab").is_err());
        assert!(
            parse_backend("i-0ab=198.18.0.11").is_err(),
            "a port is needed"
        );
        assert!(parse_backend("=1.2.3.4:5").is_err());
    }

    #[test]
    fn events_are_one_json_line_each() {
        let e = Event::Backends {
            t: 5,
            active: vec!["i-2".into()],
            draining: vec!["i-1".into()],
            states: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"backends","t":5,"active":["i-2"],"draining":["i-1"],"states":{}}"#
        );
    }
}
