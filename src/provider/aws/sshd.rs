//! Waiting for a new instance's sshd before hactl first contacts it (to pin its host key).
//!
//! EC2 reports an instance `running` as soon as it boots; its sshd answers tens of seconds
//! later (cloud-init generates the host keys first). A first contact in between fails, and
//! the host layer then had nothing to configure. So before pinning, each instance not pinned
//! yet is probed until its port accepts a TCP connection AND sends an SSH identification
//! string (RFC 4253 §4.2: `SSH-protoversion-softwareversion`, possibly after other lines; a
//! port that accepts but says nothing is a firewall or a half-started daemon), bounded by
//! `aws.timeouts.ssh` ([`super::wait::Timeouts::ssh`]). A timeout is an error naming each
//! instance, its id and the address probed.
//!
//! Only a direct connection is probed: an instance reached through `ssh.config_file` (a
//! `HostName`/`ProxyCommand` ssh resolves) or `ssh.proxy_jump` (a bastion) is not reachable by
//! a plain TCP connection from here, and its first contact is left to ssh as before.
//!
//! The decisions ([`probe`] against a listener, [`wait`]'s bound) are tested here against
//! listeners on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// What one probe of an SSH port found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The identification string (`SSH-2.0-OpenSSH_9.6`): sshd answers.
    Banner(String),
    /// The port accepted the connection but sent no SSH identification string before it
    /// closed or before the probe's time was up (what it sent instead, if anything).
    NoBanner(String),
    /// Nothing listens (RST): the daemon is not started yet.
    Refused,
    /// No answer at all, or another network error (the instance's network is not up yet, or
    /// a security group drops the packets).
    Unreachable(String),
}

impl Probe {
    /// What a progress line and a timeout say about it.
    pub fn status(&self) -> String {
        match self {
            Probe::Banner(b) => format!("answers ({b})"),
            Probe::NoBanner(why) => format!("port open, no SSH banner ({why})"),
            Probe::Refused => "connection refused".into(),
            Probe::Unreachable(why) => format!("no answer ({why})"),
        }
    }
}

/// How long each part of a probe may take, and the pause between probes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub connect: Duration,
    pub banner: Duration,
    pub interval: Duration,
}

impl Default for Pace {
    /// 5 s to connect and 5 s for the banner (OpenSSH sends it at once), a probe every 2 s.
    fn default() -> Self {
        Pace {
            connect: Duration::from_secs(5),
            banner: Duration::from_secs(5),
            interval: Duration::from_secs(2),
        }
    }
}

/// The longest identification exchange read: RFC 4253 §4.2 allows lines before the version
/// line and limits each to 255 characters; 4 KiB is plenty and bounds a talkative port.
const BANNER_MAX: usize = 4096;

/// Whether `line` is an SSH 2 identification string (RFC 4253 §4.2), or that of a server
/// that also speaks the old protocol, which announces `1.99` (§5.1).
fn is_ssh2(line: &str) -> bool {
    line.starts_with("SSH-2.0-") || line.starts_with("SSH-1.99-")
}

/// One probe of `addr`: connect (at most `pace.connect`), then read lines (at most
/// `pace.banner` in all) until one is an SSH identification string.
pub async fn probe(addr: SocketAddr, pace: Pace) -> Probe {
    let mut stream = match tokio::time::timeout(pace.connect, TcpStream::connect(addr)).await {
        Err(_) => return Probe::Unreachable(format!("no TCP answer in {:?}", pace.connect)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
        Ok(Err(e)) => return Probe::Unreachable(e.to_string()),
        Ok(Ok(s)) => s,
    };
    let mut got: Vec<u8> = Vec::new();
    let read = async {
        let mut buf = [0u8; 512];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(line) = text
                .lines()
                .map(str::trim_end)
                .find(|l| l.starts_with("SSH-"))
            {
                // A complete line only: the version string ends with CR LF.
                if text.contains(&format!("{line}\n")) || text.contains(&format!("{line}\r")) {
                    return Some(line.to_string());
                }
            }
            if got.len() >= BANNER_MAX {
                return None;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let found = tokio::time::timeout(pace.banner, read).await;
    let first_line = || {
        let text = String::from_utf8_lossy(&got);
        let line: String = text.lines().next().unwrap_or("").chars().take(60).collect();
        if line.is_empty() {
            "it sent nothing".to_string()
        } else {
            format!("it sent `{}`", line.escape_debug())
        }
    };
    match found {
        Ok(Some(line)) if is_ssh2(&line) => Probe::Banner(line),
        Ok(Some(line)) => Probe::NoBanner(format!("not SSH 2: `{}`", line.escape_debug())),
        Ok(None) => Probe::NoBanner(format!("closed; {}", first_line())),
        Err(_) => Probe::NoBanner(format!("{} in {:?}", first_line(), pace.banner)),
    }
}

/// Probes `addr` every `pace.interval` until sshd answers, for at most `timeout` (the last
/// probe is cut to what is left). `progress` gets each failed probe's status and the time
/// since the wait started. Ok: the banner and how long it took; Err: the last status.
pub async fn wait(
    addr: SocketAddr,
    timeout: Duration,
    pace: Pace,
    mut progress: impl FnMut(&str, Duration),
) -> Result<(String, Duration), String> {
    let t0 = Instant::now();
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        let cut = Pace {
            connect: pace.connect.min(left),
            banner: pace.banner.min(left),
            interval: pace.interval,
        };
        let p = probe(addr, cut).await;
        if let Probe::Banner(b) = p {
            return Ok((b, t0.elapsed()));
        }
        let status = p.status();
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Err(status);
        }
        progress(&status, t0.elapsed());
        tokio::time::sleep(pace.interval.min(left)).await;
        if t0.elapsed() >= timeout {
            return Err(status);
        }
    }
}

/// Instances whose sshd did not answer in time; each line names the instance, its id, the
/// address probed and what the last probe found.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("sshd did not answer within {after} on {}:\n{}", if .hosts.len() == 1 { "a new instance".to_string() } else { format!("{} new instances", .hosts.len()) }, .hosts.iter().map(|h| format!("  {h}")).collect::<Vec<_>>().join("\n"))]
#[diagnostic(
    code(hactl::aws::sshd),
    help("the instance runs but its SSH port does not answer from here: check that its security group admits port 22 from this machine (`aws.network.ssh_cidr`), that the image starts sshd, and the instance's console output (`aws ec2 get-console-output --instance-id ID`). A slow image needs a longer `aws.timeouts.ssh`; `hactl up` again picks up where this stopped")
)]
pub struct NotAnswering {
    pub after: String,
    /// `web-0 (i-0abc at 203.0.113.10:22): last seen: connection refused`.
    pub hosts: Vec<String>,
}

/// One line of [`NotAnswering`].
pub fn not_answering_line(host: &str, instance_id: &str, addr: SocketAddr, last: &str) -> String {
    format!("{host} ({instance_id} at {addr}): last seen: {last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn quick() -> Pace {
        Pace {
            connect: Duration::from_millis(500),
            banner: Duration::from_millis(300),
            interval: Duration::from_millis(100),
        }
    }

    /// A listener on 127.0.0.1 that sends `greeting` to each connection, then holds it open
    /// for a second (or closes at once with `close`).
    async fn serve(greeting: &'static [u8], close: bool) -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(greeting).await;
                    if !close {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            }
        });
        addr
    }

    /// A 127.0.0.1 port nothing listens on (bound, then released).
    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        l.local_addr().unwrap()
    }

    /// sshd answers with its identification string, possibly after other lines (RFC 4253
    /// §4.2); `SSH-1.99-` is a server that also speaks SSH 2 (§5.1).
    #[tokio::test]
    async fn a_banner_is_ready() {
        let a = serve(b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n", false).await;
        assert_eq!(
            probe(a, quick()).await,
            Probe::Banner("SSH-2.0-OpenSSH_9.6p1 Debian-3".into())
        );
        let a = serve(b"welcome to the host\r\nSSH-2.0-dropbear\r\n", true).await;
        assert_eq!(
            probe(a, quick()).await,
            Probe::Banner("SSH-2.0-dropbear".into())
        );
        let a = serve(b"SSH-1.99-OpenSSH_3.9\n", false).await;
        assert!(matches!(probe(a, quick()).await, Probe::Banner(_)));
    }

    /// A port that accepts but is not sshd (yet): silence, another protocol, an SSH 1 only
    /// server, or a half line — never ready.
    #[tokio::test]
    async fn an_open_port_without_a_banner_is_not_ready() {
        let silent = serve(b"", false).await;
        let t0 = Instant::now();
        let p = probe(silent, quick()).await;
        assert!(
            matches!(&p, Probe::NoBanner(w) if w.contains("it sent nothing")),
            "{p:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "bounded by the banner time"
        );
        let http = serve(b"HTTP/1.1 400 Bad Request\r\n\r\n", true).await;
        let p = probe(http, quick()).await;
        assert!(
            matches!(&p, Probe::NoBanner(w) if w.contains("HTTP/1.1 400")),
            "{p:?}"
        );
        let v1 = serve(b"SSH-1.5-old\r\n", true).await;
        assert!(matches!(probe(v1, quick()).await, Probe::NoBanner(w) if w.contains("not SSH 2")));
        let half = serve(b"SSH-2.0-Open", false).await;
        assert!(!matches!(probe(half, quick()).await, Probe::Banner(_)));
    }

    #[tokio::test]
    async fn nothing_listening_is_refused() {
        let a = closed_port().await;
        assert_eq!(probe(a, quick()).await, Probe::Refused);
        assert_eq!(Probe::Refused.status(), "connection refused");
    }

    /// The wait goes on through refused connections (reported as progress) until sshd starts
    /// on the port, and returns its banner.
    #[tokio::test]
    async fn the_wait_ends_when_sshd_starts() {
        let a = closed_port().await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let l = TcpListener::bind(a).await.unwrap();
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
        });
        let mut seen = Vec::new();
        let r = wait(a, Duration::from_secs(10), quick(), |s, _| {
            seen.push(s.to_string())
        })
        .await;
        let (banner, took) = r.unwrap();
        assert_eq!(banner, "SSH-2.0-OpenSSH_9.6");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(seen.iter().any(|s| s == "connection refused"), "{seen:?}");
    }

    /// A port that never sends a banner ends the wait at its bound with the last status; a
    /// ready one ends it at once, without progress.
    #[tokio::test]
    async fn the_wait_is_bounded() {
        let silent = serve(b"", false).await;
        let t0 = Instant::now();
        let r = wait(silent, Duration::from_millis(900), quick(), |_, _| {}).await;
        let took = t0.elapsed();
        let last = r.unwrap_err();
        assert!(last.starts_with("port open, no SSH banner"), "{last}");
        assert!(took >= Duration::from_millis(800), "{took:?}");
        assert!(took < Duration::from_millis(1800), "{took:?}");

        let a = serve(b"SSH-2.0-x\r\n", false).await;
        let mut progress = 0;
        let r = wait(a, Duration::from_secs(5), quick(), |_, _| progress += 1).await;
        assert_eq!(r.map(|(b, _)| b), Ok("SSH-2.0-x".to_string()));
        assert_eq!(progress, 0);
    }

    #[test]
    fn the_timeout_names_the_instance_and_address() {
        let e = NotAnswering {
            after: "5m".into(),
            hosts: vec![not_answering_line(
                "web-0",
                "i-0abc",
                "127.0.0.1:22".parse().unwrap(),
                "connection refused",
            )],
        };
        assert_eq!(
            e.to_string(),
            "sshd did not answer within 5m on a new instance:\n  web-0 (i-0abc at 127.0.0.1:22): last seen: connection refused"
        );
    }
}
