//! The built-in load probe: steady, bounded HTTP traffic to the stack's public endpoint for the
//! whole deploy, counting failed requests and latencies.
//!
//! One `GET` every `1/rate` seconds, each on its own connection (`Connection: close`), so a
//! request refused or cut by the rollout is seen as such, not hidden by a pooled connection
//! that happened to survive. A request fails when it cannot connect, times out, or does not
//! answer 2xx. The probe is bounded twice: at most `max_requests` and at most `max_duration`,
//! whatever happens to the deploy. Targets are IP literals only (no DNS); an address in the
//! lab range must route through the lab bridge (`ip route get`) before anything is sent.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rollout::{probe_stats, ProbeStats};
use super::DeployError;

/// Where and how hard to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
    /// Requests per second.
    pub rate: f64,
    pub max_requests: u64,
    pub max_duration: Duration,
    pub timeout: Duration,
}

/// Parses `http://IP[:PORT][/PATH][?QUERY]` with the `url` crate (WHATWG URL rules): the
/// address to connect to, the `Host` header (the URL's host and explicit port) and the request
/// target (path and query). Only `http` and IP literals: the probe resolves no names.
pub fn parse_url(text: &str) -> Result<(SocketAddr, String, String), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}`: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("`{text}`: only `http://` URLs can be probed"));
    }
    let ip: IpAddr = match url.host() {
        Some(url::Host::Ipv4(a)) => a.into(),
        Some(url::Host::Ipv6(a)) => a.into(),
        Some(url::Host::Domain(d)) => {
            return Err(format!(
                "`{text}`: the probe needs an IP address, not `{d}`"
            ))
        }
        None => return Err(format!("`{text}`: no host")),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str().unwrap_or_default();
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    Ok((SocketAddr::new(ip, port), host_header, target))
}

/// What the probe saw: the statistics, plus which versions answered (the first word of
/// each 2xx body) and a few failure samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    #[serde(flatten)]
    pub stats: ProbeStats,
    pub url: String,
    pub rate: f64,
    pub duration_ms: u64,
    /// Answers per version seen (`v1`, `v2`, ...).
    pub versions: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

#[derive(Default)]
struct Shared {
    latencies_ms: Vec<f64>,
    failed: u64,
    versions: BTreeMap<String, u64>,
    failures: Vec<String>,
}

/// A running probe.
pub struct Probe {
    cfg: ProbeConfig,
    shared: Arc<Mutex<Shared>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

/// Checks that sending to `ip` is allowed: loopback, or a lab address that routes through the
/// lab bridge. Any other address is the user's own endpoint and is left to them.
pub async fn check_target(ip: IpAddr) -> Result<(), DeployError> {
    if let IpAddr::V4(v4) = ip {
        if crate::lab::net::lab_range().contains(&v4) {
            return crate::lab::ensure_lab_route(v4)
                .await
                .map_err(|e| DeployError::ProbeTarget {
                    addr: ip.to_string(),
                    detail: e.to_string(),
                });
        }
    }
    Ok(())
}

async fn one_request(cfg: &ProbeConfig) -> Result<String, String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(cfg.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hactl-probe\r\nConnection: close\r\n\r\n",
            cfg.path, cfg.host_header
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(512);
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(cfg.timeout, io)
        .await
        .map_err(|_| format!("timeout after {:?}", cfg.timeout))??;
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') {
        return Err(if status_line.is_empty() {
            "empty answer (connection closed)".to_string()
        } else {
            status_line.to_string()
        });
    }
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(body.split_whitespace().next().unwrap_or("").to_string())
}

impl Probe {
    /// Checks the target, waits (up to `ready_within`) until it answers 2xx once, and starts
    /// sending. An endpoint that does not serve before the deploy would blame the deploy for
    /// failures that are not its own (a VIP still being claimed just after `hactl up`).
    pub async fn start(cfg: ProbeConfig, ready_within: Duration) -> Result<Probe, DeployError> {
        check_target(cfg.addr.ip()).await?;
        let t0 = Instant::now();
        loop {
            match one_request(&cfg).await {
                Ok(_) => break,
                Err(e) if t0.elapsed() >= ready_within => {
                    return Err(DeployError::ProbeTarget {
                        addr: cfg.addr.to_string(),
                        detail: format!(
                            "it does not answer before the deploy (last: {e}); nothing was changed"
                        ),
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let task = {
            let cfg = cfg.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let period = Duration::from_secs_f64(1.0 / cfg.rate.max(0.1));
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent = 0u64;
                let mut inflight = tokio::task::JoinSet::new();
                while sent < cfg.max_requests && started.elapsed() < cfg.max_duration {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    sent += 1;
                    let cfg = cfg.clone();
                    let shared = shared.clone();
                    inflight.spawn(async move {
                        let t0 = Instant::now();
                        let r = one_request(&cfg).await;
                        let ms = t0.elapsed().as_secs_f64() * 1000.0;
                        let mut sh = shared.lock().unwrap_or_else(|e| e.into_inner());
                        sh.latencies_ms.push(ms);
                        match r {
                            Ok(version) => *sh.versions.entry(version).or_insert(0) += 1,
                            Err(e) => {
                                sh.failed += 1;
                                if sh.failures.len() < 10 {
                                    sh.failures.push(e);
                                }
                            }
                        }
                    });
                    while inflight.try_join_next().is_some() {}
                }
                while inflight.join_next().await.is_some() {}
            })
        };
        Ok(Probe {
            cfg,
            shared,
            stop,
            task,
            started,
        })
    }

    /// Failed requests so far (the deploy checks its probe budget with this).
    pub fn failed(&self) -> u64 {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).failed
    }

    /// Stops sending, waits for the requests in flight, and reports.
    pub async fn finish(self, url: &str) -> ProbeReport {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let sh = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        ProbeReport {
            stats: probe_stats(&sh.latencies_ms, sh.failed),
            url: url.to_string(),
            rate: self.cfg.rate,
            duration_ms: self.started.elapsed().as_millis() as u64,
            versions: sh.versions.clone(),
            failures: sh.failures.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (a, h, p) = parse_url("http://198.18.0.100:8080/").unwrap();
        assert_eq!(
            (a.to_string(), h.as_str(), p.as_str()),
            ("198.18.0.100:8080".into(), "198.18.0.100:8080", "/")
        );
        let (a, _, p) = parse_url("http://127.0.0.1").unwrap();
        assert_eq!((a.port(), p.as_str()), (80, "/"));
        let (a, _, p) = parse_url("http://[::1]:81/x?y").unwrap();
        assert_eq!((a.to_string(), p.as_str()), ("[::1]:81".into(), "/x?y"));
        assert!(parse_url("https://1.2.3.4/").is_err());
        assert!(parse_url("http://1.2.3.4:99999/").is_err());
        assert!(parse_url("198.18.0.100:8080").is_err());
        assert!(parse_url("http://example.com/")
            .unwrap_err()
            .contains("IP address"));
    }

    /// A loopback server: answers 200 with a version, or (every 3rd) 503.
    #[tokio::test]
    async fn counts_requests_failures_and_versions_against_a_loopback_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                n += 1;
                let fail = n % 3 == 0;
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let resp = if fail {
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_string()
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nv7 host1".to_string()
                    };
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        let cfg = ProbeConfig {
            addr,
            host_header: addr.to_string(),
            path: "/".into(),
            rate: 200.0,
            max_requests: 30,
            max_duration: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        };
        let p = Probe::start(cfg, Duration::from_secs(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = p.finish("http://x/").await;
        assert_eq!(r.stats.requests, 30, "bounded by max_requests");
        assert_eq!(r.stats.failed, 10);
        assert_eq!(r.versions.get("v7"), Some(&20));
        assert!(r.failures[0].contains("503"));
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_refused_before_the_deploy() {
        // bind then drop: nothing listens on this port
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = ProbeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host_header: "x".into(),
            path: "/".into(),
            rate: 100.0,
            max_requests: 5,
            max_duration: Duration::from_secs(3),
            timeout: Duration::from_secs(1),
        };
        let err = Probe::start(cfg, Duration::from_millis(300))
            .await
            .err()
            .expect("a dead endpoint is refused before the deploy");
        assert!(
            err.to_string()
                .contains("does not answer before the deploy"),
            "{err}"
        );
    }
}
