//! The built-in load probe: steady, bounded HTTP(S) traffic to the stack's public endpoint for
//! the whole deploy, counting failed requests and latencies.
//!
//! The HTTP client is hyper's (`hyper-util`'s pooled client, `hyper-rustls` with rustls and
//! aws-lc-rs: the crates the AWS SDK already uses, so they are built once): DNS names, HTTPS
//! checked against the system's roots (`rustls-native-certs`) or only against a CA the user
//! gives (`--probe-ca`), and names mapped to addresses by hand (`--probe-resolve`, like
//! curl's `--resolve`, used by the tests to reach a local server by name). Keep-alive is off
//! by default: each request goes on its own connection (`Connection: close`, no idle pool), so
//! a request refused or cut by the rollout is seen as such, not hidden by a pooled connection
//! that happened to survive. A request fails when it cannot connect, times out, or does not
//! answer 2xx; redirects are not followed (a 3xx is a failure: the endpoint moved).
//!
//! The probe is bounded twice: at most `max_requests` and at most `max_duration`, whatever
//! happens to the deploy. Before anything is sent, every address the target stands for (the
//! IP literal, the `--probe-resolve` mapping, or what DNS answers) is checked: an address in
//! the lab range must route through the lab bridge (`ip route get`). Other addresses are the
//! stack's own endpoint (the balancer's DNS name, the VIP) or one the user named with
//! `--probe URL`: the probe sends nowhere else.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::rollout::{probe_stats, ProbeStats};
use super::DeployError;

/// Where and how hard to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// `http://` or `https://` URL, host by name or IP literal.
    pub url: url::Url,
    /// Requests per second.
    pub rate: f64,
    pub max_requests: u64,
    pub max_duration: Duration,
    /// Per request, connect to last body byte.
    pub timeout: Duration,
    /// PEM bundle: when set, HTTPS trusts only these roots (not the system's).
    pub ca_pem: Option<Vec<u8>>,
    /// Names answered without DNS: `(name, address)`; the address's port wins over the URL's
    /// ([`Mapped`]), port 0 means the URL's.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Reuse connections (off by default: a cut connection must be seen).
    pub keep_alive: bool,
}

impl ProbeConfig {
    /// A config for `url` with the defaults the CLI uses: 5 s per request, no CA, no mapping,
    /// keep-alive off.
    pub fn new(url: url::Url, rate: f64, max_duration: Duration) -> ProbeConfig {
        let rate = rate.clamp(0.1, 1000.0);
        ProbeConfig {
            url,
            rate,
            max_requests: (rate * max_duration.as_secs_f64()).ceil() as u64,
            max_duration,
            timeout: Duration::from_secs(5),
            ca_pem: None,
            resolve: Vec::new(),
            keep_alive: false,
        }
    }
}

/// The probe as `hactl deploy --probe[=URL]` asks for it: `asked` is the URL given (empty:
/// the stack's `endpoint`, see `balancer::prepare`), `rate` requests a second for at most
/// `max`, `keep_alive`, `resolve` mappings (`NAME=ADDR[:PORT]`) and a CA bundle to trust
/// instead of the system's roots. Returns the config and the URL. Errors name the value that
/// is wrong; nothing is sent here.
pub fn config(
    asked: &str,
    endpoint: Option<String>,
    (rate, max): (f64, Duration),
    keep_alive: bool,
    resolve: &[String],
    ca: Option<&std::path::Path>,
) -> Result<(ProbeConfig, String), DeployError> {
    let url = match (asked, endpoint) {
        ("", Some(e)) => e,
        ("", None) => {
            return Err(DeployError::ProbeUrl(
                "the stack has no VIP and no balancer DNS name: give `--probe URL`".into(),
            ))
        }
        (u, _) => u.to_string(),
    };
    let mut cfg = ProbeConfig::new(parse_url(&url).map_err(DeployError::ProbeUrl)?, rate, max);
    cfg.keep_alive = keep_alive;
    cfg.resolve = resolve
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<_, _>>()
        .map_err(|detail| DeployError::ProbeFlag {
            flag: "--probe-resolve",
            detail,
        })?;
    if let Some(path) = ca {
        let flag = |detail| DeployError::ProbeFlag {
            flag: "--probe-ca",
            detail,
        };
        let pem = std::fs::read(path)
            .map_err(|e| flag(format!("cannot read `{}`: {e}", path.display())))?;
        // parsed now, so a bad file is refused before anything is connected
        roots(Some(&pem)).map_err(|e| flag(format!("`{}`: {e}", path.display())))?;
        cfg.ca_pem = Some(pem);
    }
    Ok((cfg, url))
}

/// Parses a probe URL with the `url` crate (WHATWG URL rules): `http` or `https`, with a host
/// (a DNS name or an IP literal).
pub fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}`: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "`{text}`: only `http://` and `https://` URLs can be probed"
        ));
    }
    if url.host().is_none() {
        return Err(format!("`{text}`: no host"));
    }
    if url.port_or_known_default().is_none() {
        return Err(format!("`{text}`: no port"));
    }
    Ok(url)
}

/// Parses `NAME=ADDR[:PORT]` (a `--probe-resolve` mapping). Without a port the URL's port is
/// used (port 0 tells the connector so).
pub fn parse_resolve(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write it as `NAME=ADDRESS[:PORT]`"))?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        return Err(format!("`{text}`: no name before `=`"));
    }
    let addr = addr.trim();
    let sock = addr
        .parse::<SocketAddr>()
        .or_else(|_| addr.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| format!("`{text}`: `{addr}` is not an IP address (with an optional port)"))?;
    Ok((name, sock))
}

/// The probe's HTTP client: hyper's client over rustls (aws-lc-rs), HTTP/1.1, its own
/// resolver for the `resolve` mappings.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<Mapped>,
    http_body_util::Empty<hyper::body::Bytes>,
>;

type Http = hyper_util::client::legacy::connect::HttpConnector<Resolver>;

/// hyper's TCP connector, with the port of a `NAME=ADDR:PORT` mapping winning over the URL's.
///
/// hyper-util's `HttpConnector` puts the URL's explicit port on every address the resolver
/// answers (`set_port` in its `connect/http.rs`: only a port-0 answer is left to the URL's
/// default otherwise), so `https://name:8443/` with `name=127.0.0.1:9000` would connect to
/// :8443. This layer rewrites the connect destination's port for mapped names (the TCP
/// connection only: the request's `Host` header and TLS's server name stay the URL's, as
/// curl's `--resolve` does).
#[derive(Clone)]
pub struct Mapped {
    inner: Http,
    /// Names whose mapping gives a port (lowercase), with that port.
    ports: Arc<Vec<(String, u16)>>,
}

impl Mapped {
    /// `dst` with a mapped name's port, else `dst` unchanged.
    fn route(&self, dst: hyper::Uri) -> hyper::Uri {
        let Some(host) = dst.host() else {
            return dst;
        };
        let lower = host.to_ascii_lowercase();
        let Some(port) = self
            .ports
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, p)| *p)
        else {
            return dst;
        };
        let Ok(authority) = format!("{host}:{port}").parse::<http::uri::Authority>() else {
            return dst;
        };
        let mut parts = dst.clone().into_parts();
        parts.authority = Some(authority);
        hyper::Uri::from_parts(parts).unwrap_or(dst)
    }
}

impl tower_service::Service<hyper::Uri> for Mapped {
    type Response = <Http as tower_service::Service<hyper::Uri>>::Response;
    type Error = <Http as tower_service::Service<hyper::Uri>>::Error;
    type Future = <Http as tower_service::Service<hyper::Uri>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: hyper::Uri) -> Self::Future {
        let dst = self.route(dst);
        self.inner.call(dst)
    }
}

/// Names from the mappings first, then the system resolver. A mapped address with port 0 takes
/// the URL's port (hyper's connector sets it).
#[derive(Clone, Default)]
pub struct Resolver {
    map: Arc<Vec<(String, SocketAddr)>>,
}

type Resolving = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>,
>;

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let host = name.as_str().to_ascii_lowercase();
        let mapped: Vec<SocketAddr> = self
            .map
            .iter()
            .filter(|(n, _)| *n == host)
            .map(|(_, a)| *a)
            .collect();
        Box::pin(async move {
            if !mapped.is_empty() {
                return Ok(mapped.into_iter());
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(found.into_iter())
        })
    }
}

/// Builds the client the probe (and `hactl drill`) sends with: HTTP/1.1, no redirects (hyper
/// follows none), no proxy, `timeout` to connect, keep-alive only when asked, HTTPS against
/// the system's roots or only the PEM certificates of `ca_pem`, and the `resolve` mappings.
/// The per-request timeout is [`get`]'s.
pub fn client(
    timeout: Duration,
    keep_alive: bool,
    ca_pem: Option<&[u8]>,
    resolve: &[(String, SocketAddr)],
) -> Result<HttpClient, String> {
    let roots = roots(ca_pem)?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http =
        hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(Resolver {
            map: Arc::new(
                resolve
                    .iter()
                    .map(|(n, a)| (n.to_ascii_lowercase(), *a))
                    .collect(),
            ),
        });
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    let http = Mapped {
        inner: http,
        ports: Arc::new(
            resolve
                .iter()
                .filter(|(_, a)| a.port() != 0)
                .map(|(n, a)| (n.to_ascii_lowercase(), a.port()))
                .collect(),
        ),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(if keep_alive { usize::MAX } else { 0 })
            .build(https),
    )
}

/// The roots HTTPS trusts: only the certificates of the PEM bundle `ca_pem` when given
/// (an error when it holds no certificate or a malformed one), else the system's.
fn roots(ca_pem: Option<&[u8]>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for der in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let der = der.map_err(|e| format!("not PEM certificates: {e}"))?;
                roots
                    .add(der)
                    .map_err(|e| format!("a bad certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("no PEM certificate in it".into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

/// An error and its sources on one line (hyper's own text is only "client error (Connect)").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

/// One `GET` within `timeout`: the body on a 2xx, else why not. `close` adds
/// `Connection: close`.
pub async fn get(
    client: &HttpClient,
    url: &url::Url,
    close: bool,
    timeout: Duration,
) -> Result<String, String> {
    use http_body_util::BodyExt as _;
    let uri: hyper::Uri = url.as_str().parse().map_err(|e| format!("`{url}`: {e}"))?;
    let mut req = http::Request::get(uri).header(http::header::USER_AGENT, "hactl-probe");
    if close {
        req = req.header(http::header::CONNECTION, "close");
    }
    let req = req
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let io = async {
        let resp = client.request(req).await.map_err(|e| chain(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| chain(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| format!("timeout after {timeout:?}"))?
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

/// The addresses the probe would send to: the URL's IP literal, the `resolve` mapping of its
/// name, or what the system resolver answers for the name.
pub async fn addresses(cfg: &ProbeConfig) -> Result<Vec<IpAddr>, DeployError> {
    let port = cfg.url.port_or_known_default().unwrap_or(80);
    match cfg.url.host() {
        Some(url::Host::Ipv4(a)) => Ok(vec![a.into()]),
        Some(url::Host::Ipv6(a)) => Ok(vec![a.into()]),
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            let mapped: Vec<IpAddr> = cfg
                .resolve
                .iter()
                .filter(|(n, _)| *n == d)
                .map(|(_, a)| a.ip())
                .collect();
            if !mapped.is_empty() {
                return Ok(mapped);
            }
            let found = tokio::net::lookup_host((d.as_str(), port))
                .await
                .map_err(|e| DeployError::ProbeTarget {
                    addr: d.clone(),
                    detail: format!("its name does not resolve: {e}"),
                })?;
            Ok(found.map(|s| s.ip()).collect())
        }
        None => Err(DeployError::ProbeUrl(format!("`{}`: no host", cfg.url))),
    }
}

/// Checks that sending to `ip` is allowed: an address in the lab range must route through
/// the lab bridge; under the network guard (`HACTL_NETWORK_GUARD=lab`, set by the tests and
/// benchmarks) nothing outside loopback and the lab is. Other addresses (the stack's
/// endpoint, or the one the user named) are left to the user.
pub async fn check_target(ip: IpAddr) -> Result<(), DeployError> {
    let guard =
        crate::provider::hosts::guard::active().map_err(|detail| DeployError::ProbeTarget {
            addr: ip.to_string(),
            detail,
        })?;
    check_target_guarded(ip, guard).await
}

/// [`check_target`] with the guard's state given.
async fn check_target_guarded(ip: IpAddr, guard: bool) -> Result<(), DeployError> {
    if guard && !crate::provider::hosts::guard::allowed(ip) {
        return Err(DeployError::ProbeTarget {
            addr: ip.to_string(),
            detail: format!(
                "{}=lab: it is outside loopback and the lab's 198.18.0.0/15",
                crate::provider::hosts::guard::VAR
            ),
        });
    }
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

/// [`check_target`] for every address of the probe's target.
pub async fn check(cfg: &ProbeConfig) -> Result<(), DeployError> {
    for ip in addresses(cfg).await? {
        check_target(ip).await?;
    }
    Ok(())
}

impl Probe {
    /// Checks the target, waits (up to `ready_within`) until it answers 2xx once, and starts
    /// sending. An endpoint that does not serve before the deploy would blame the deploy for
    /// failures that are not its own (a VIP still being claimed just after `hactl up`).
    pub async fn start(cfg: ProbeConfig, ready_within: Duration) -> Result<Probe, DeployError> {
        check(&cfg).await?;
        let client = client(
            cfg.timeout,
            cfg.keep_alive,
            cfg.ca_pem.as_deref(),
            &cfg.resolve,
        )
        .map_err(DeployError::ProbeUrl)?;
        let close = !cfg.keep_alive;
        let t0 = Instant::now();
        loop {
            match get(&client, &cfg.url, close, cfg.timeout).await {
                Ok(_) => break,
                Err(e) if t0.elapsed() >= ready_within => {
                    return Err(DeployError::ProbeTarget {
                        addr: cfg.url.to_string(),
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
                    let client = client.clone();
                    let url = cfg.url.clone();
                    let timeout = cfg.timeout;
                    let shared = shared.clone();
                    inflight.spawn(async move {
                        let t0 = Instant::now();
                        let r = get(&client, &url, close, timeout).await;
                        let ms = t0.elapsed().as_secs_f64() * 1000.0;
                        let mut sh = shared.lock().unwrap_or_else(|e| e.into_inner());
                        sh.latencies_ms.push(ms);
                        match r {
                            Ok(body) => {
                                let version = body.split_whitespace().next().unwrap_or("");
                                *sh.versions.entry(version.to_string()).or_insert(0) += 1
                            }
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

    /// `(answered, failed)` so far: requests that finished, and how many of them failed. A
    /// batch's window is the difference of two readings.
    pub fn counts(&self) -> (u64, u64) {
        let sh = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (sh.latencies_ms.len() as u64, sh.failed)
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
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls() {
        let u = parse_url("http://198.18.0.100:8080/").unwrap();
        assert_eq!(
            (u.host_str(), u.port_or_known_default(), u.path()),
            (Some("198.18.0.100"), Some(8080), "/")
        );
        let u = parse_url("https://web-lb-1.us-east-1.elb.amazonaws.com/healthz?x=1").unwrap();
        assert_eq!(u.port_or_known_default(), Some(443));
        assert_eq!(u.query(), Some("x=1"));
        assert!(parse_url("http://[::1]:81/x?y").is_ok());
        assert!(parse_url("ftp://1.2.3.4/")
            .unwrap_err()
            .contains("https://"));
        assert!(parse_url("http://1.2.3.4:99999/").is_err());
        assert!(parse_url("198.18.0.100:8080").is_err());
    }

    #[test]
    fn resolve_mappings() {
        assert_eq!(
            parse_resolve("Web.Example=127.0.0.1:8443").unwrap(),
            ("web.example".to_string(), "127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(
            parse_resolve("a.test=198.18.0.11").unwrap().1,
            "198.18.0.11:0".parse::<SocketAddr>().unwrap(),
            "no port: the URL's port is used"
        );
        assert!(parse_resolve("a.test")
            .unwrap_err()
            .contains("NAME=ADDRESS"));
        assert!(parse_resolve("=1.2.3.4").is_err());
        assert!(parse_resolve("a.test=not-an-ip").is_err());
    }

    fn cfg(url: &str, rate: f64, max_requests: u64) -> ProbeConfig {
        let mut c = ProbeConfig::new(parse_url(url).unwrap(), rate, Duration::from_secs(5));
        c.max_requests = max_requests;
        c.timeout = Duration::from_secs(2);
        c
    }

    /// Answers one request on `s` with `status` and `body`, then closes.
    async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut s: S,
        status: &str,
        body: &str,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    /// A loopback server: answers 200 with a version, or (every 3rd) 503.
    #[tokio::test]
    async fn counts_requests_failures_and_versions_against_a_loopback_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                let (s, _) = listener.accept().await.unwrap();
                n += 1;
                let fail = n % 3 == 0;
                tokio::spawn(async move {
                    if fail {
                        answer(s, "503 Service Unavailable", "").await
                    } else {
                        answer(s, "200 OK", "v7 host1").await
                    }
                });
            }
        });
        // the readiness request is the first connection: 30 more make 31, every 3rd fails
        let p = Probe::start(
            cfg(&format!("http://{addr}/"), 200.0, 30),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = p.finish("http://x/").await;
        assert_eq!(r.stats.requests, 30, "bounded by max_requests");
        assert_eq!(r.stats.failed, 10);
        assert_eq!(r.versions.get("v7"), Some(&20));
        assert!(r.failures[0].contains("503"), "{:?}", r.failures);
    }

    /// A test CA, and a server certificate it signed for `name`: (CA PEM, cert DER, key DER).
    fn test_pki(
        name: &str,
    ) -> (
        String,
        tokio_rustls::rustls::pki_types::CertificateDer<'static>,
        tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hactl probe test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        (
            ca_cert.pem(),
            leaf_cert.der().clone(),
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
    }

    /// An HTTPS server on loopback for `name`, answering `200 v9`; counts TCP connections.
    async fn https_server(name: &str) -> (SocketAddr, String, Arc<AtomicU64>) {
        use tokio_rustls::rustls;
        let (ca_pem, cert, key) = test_pki(name);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicU64::new(0));
        let n = conns.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                n.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        answer(tls, "200 OK", "v9 tls-host").await;
                    }
                });
            }
        });
        (addr, ca_pem, conns)
    }

    /// HTTPS to a DNS name mapped to loopback, trusting only the test CA: every request
    /// answers, each on its own connection (keep-alive off), and no DNS server is asked.
    #[tokio::test]
    async fn https_to_a_name_mapped_to_loopback_with_a_test_ca() {
        let (addr, ca_pem, conns) = https_server("probe.hactl.test").await;
        let mut c = cfg(
            &format!("https://probe.hactl.test:{}/", addr.port()),
            100.0,
            20,
        );
        c.ca_pem = Some(ca_pem.into_bytes());
        c.resolve = vec![("probe.hactl.test".into(), addr)];
        assert_eq!(
            addresses(&c).await.unwrap(),
            vec![addr.ip()],
            "the mapping, not DNS"
        );
        let p = Probe::start(c, Duration::from_secs(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = p.finish("https://probe.hactl.test/").await;
        assert_eq!(
            (r.stats.requests, r.stats.failed),
            (20, 0),
            "{:?}",
            r.failures
        );
        assert_eq!(r.versions.get("v9"), Some(&20));
        assert_eq!(
            conns.load(Ordering::SeqCst),
            21,
            "one connection per request (20 + the readiness check): keep-alive is off"
        );
    }

    /// `--probe-resolve NAME=ADDR:PORT` wins over the URL's explicit port (hyper's connector
    /// would put the URL's port on the mapped address): the URL says :8443, the mapping sends
    /// to a loopback server on another port. Over HTTPS the certificate for the URL's name is
    /// accepted (TLS's server name is still the URL's); over HTTP the `Host` header still
    /// carries the URL's name and port.
    #[tokio::test]
    async fn a_mapped_port_wins_over_the_urls_port() {
        let (addr, ca_pem, conns) = https_server("probe.hactl.test").await;
        assert_ne!(addr.port(), 8443);
        let mut c = cfg("https://probe.hactl.test:8443/", 100.0, 5);
        c.ca_pem = Some(ca_pem.into_bytes());
        c.resolve = vec![("probe.hactl.test".into(), addr)];
        let p = Probe::start(c, Duration::from_secs(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = p.finish("https://probe.hactl.test:8443/").await;
        assert_eq!(
            (r.stats.requests, r.stats.failed),
            (5, 0),
            "{:?}",
            r.failures
        );
        assert_eq!(
            conns.load(Ordering::SeqCst),
            6,
            "all went to the mapped port"
        );

        // plain HTTP: the request head as the server saw it
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = listener.local_addr().unwrap();
        let head = Arc::new(Mutex::new(String::new()));
        let seen = head.clone();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            *seen.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv1")
                .await;
        });
        let client = client(
            Duration::from_secs(2),
            false,
            None,
            &[("Plain.Hactl.Test".into(), plain)],
        )
        .unwrap();
        let url = parse_url("http://plain.hactl.test:8443/x").unwrap();
        let body = get(&client, &url, true, Duration::from_secs(2)).await;
        assert_eq!(body.as_deref(), Ok("v1"));
        let head = head.lock().unwrap().to_ascii_lowercase();
        assert!(head.contains("host: plain.hactl.test:8443\r\n"), "{head}");
    }

    /// The same server without its CA: the system roots do not know the test CA, so the probe
    /// refuses to start (certificate error), having sent no request over HTTP.
    #[tokio::test]
    async fn https_with_an_unknown_ca_is_refused() {
        let (addr, _ca, _) = https_server("probe.hactl.test").await;
        let mut c = cfg(
            &format!("https://probe.hactl.test:{}/", addr.port()),
            100.0,
            5,
        );
        c.resolve = vec![("probe.hactl.test".into(), addr)];
        let err = Probe::start(c, Duration::from_millis(300))
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("does not answer before the deploy"), "{text}");
        assert!(text.to_lowercase().contains("certificate"), "{text}");
    }

    /// With keep-alive on, requests share connections: the switch really changes the client.
    #[tokio::test]
    async fn keep_alive_reuses_connections_when_asked() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicU64::new(0));
        let n = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    // answer each request on this connection until the client closes it
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv1")
                            .await;
                    }
                });
            }
        });
        let mut c = cfg(&format!("http://{addr}/"), 20.0, 10);
        c.keep_alive = true;
        let p = Probe::start(c, Duration::from_secs(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = p.finish("x").await;
        assert_eq!((r.stats.requests, r.stats.failed), (10, 0));
        assert!(conns.load(Ordering::SeqCst) < 5, "{conns:?}");
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_refused_before_the_deploy() {
        // bind then drop: nothing listens on this port
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = Probe::start(
            cfg(&format!("http://127.0.0.1:{port}/"), 100.0, 5),
            Duration::from_millis(300),
        )
        .await
        .err()
        .expect("a dead endpoint is refused before the deploy");
        assert!(
            err.to_string()
                .contains("does not answer before the deploy"),
            "{err}"
        );
    }

    /// Under the network guard (which `.cargo/config.toml` sets for every test run) an
    /// address outside loopback and the lab is refused before anything is sent, by address
    /// and by a name mapped to it; loopback passes. Without the guard it is the user's.
    #[tokio::test]
    async fn the_network_guard_keeps_the_probe_in_the_lab() {
        let doc: IpAddr = "192.0.2.10".parse().unwrap(); // TEST-NET-1 (RFC 5737)
        let err = check_target_guarded(doc, true).await.err().unwrap();
        assert!(
            matches!(err, DeployError::ProbeTarget { ref addr, ref detail }
                if addr == "192.0.2.10" && detail.contains("HACTL_NETWORK_GUARD=lab")),
            "{err}"
        );
        assert!(check_target_guarded("127.0.0.1".parse().unwrap(), true)
            .await
            .is_ok());
        assert!(check_target_guarded(doc, false).await.is_ok());
        assert_eq!(
            std::env::var(crate::provider::hosts::guard::VAR).as_deref(),
            Ok("lab"),
            "cargo sets the guard for tests (.cargo/config.toml)"
        );
        let mut c = cfg("http://far.hactl.test/", 10.0, 1);
        c.resolve = vec![("far.hactl.test".into(), "192.0.2.10:80".parse().unwrap())];
        let err = Probe::start(c, Duration::from_millis(100))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, DeployError::ProbeTarget { ref addr, .. } if addr == "192.0.2.10"),
            "{err}"
        );
    }

    /// 198.19.200.7 is in the lab range but outside the bridge's subnet: whether the lab is up
    /// or not, it does not route through `hactl0`, so the probe refuses it, by address and by
    /// a name mapped to it, before sending anything.
    #[tokio::test]
    async fn a_lab_address_off_the_bridge_is_refused() {
        for url in ["http://198.19.200.7/", "http://off-bridge.hactl.test:8080/"] {
            let mut c = cfg(url, 10.0, 1);
            c.resolve = vec![(
                "off-bridge.hactl.test".into(),
                "198.19.200.7:0".parse().unwrap(),
            )];
            let err = Probe::start(c, Duration::from_millis(100))
                .await
                .err()
                .unwrap();
            assert!(
                matches!(err, DeployError::ProbeTarget { ref addr, .. } if addr == "198.19.200.7"),
                "{url}: {err}"
            );
        }
    }
}
