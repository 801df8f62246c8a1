//! The HTTP check of a `vip.checks` entry with an `http://` URL, as a bash program: keepalived
//! runs it every interval on every host for as long as the stack lives, so its cost is paid
//! forever (curl's start-up was most of an idle lab's CPU). Rendering writes it into
//! keepalived.conf and the sub-second check loop; nothing here runs it, but the tests do, with
//! the real bash against a local server.

/// The HTTP check keepalived runs for an `http://` URL: a bash program (bash's `/dev/tcp`
/// redirection: no process besides bash itself) that sends an HTTP/1.0 `GET` and passes on a
/// `2xx` or `3xx` status line, as `curl -f` would (RFC 9110 §15: 4xx and 5xx are failures).
/// Arguments: `$1` host (an IPv6 address without brackets), `$2` port, `$3` the request target
/// (path and query, percent-encoded by the `url` crate), `$4` the `Host` header, `$5` seconds
/// to wait for the status line. keepalived kills it at the check's `timeout` (a connect has no
/// timeout of its own in bash). It replaced `curl -fsS`: keepalived runs a check every
/// interval on every host for as long as the stack lives, and curl costs 13.9 ms of CPU per
/// run on the lab machine (its libraries' start-up) against 3.1 ms for bash (200 runs each).
/// `https://` checks still run curl: bash has no TLS. The program holds no `'` (keepalived
/// groups an argument in single quotes); keepalived.conf gets it as [`for_keepalived`]
/// writes it, the sub-second loop as one shell word.
pub const PROGRAM: &str = r#"exec 3<>"/dev/tcp/$1/$2" && printf "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: hactl-check\r\nConnection: close\r\n\r\n" "$3" "$4" >&3 && IFS= read -r -t "$5" s <&3 && case $s in "HTTP/1."[01]" "[23][0-9][0-9] | "HTTP/1."[01]" "[23][0-9][0-9][[:space:]]*) exit 0 ;; esac; exit 1"#;

/// [`PROGRAM`] inside a keepalived quoted string, which reads `\\` as `\` and `\"` as `"`
/// (keepalived.conf(5), "Quoted strings"); `$1` and the like pass unchanged, since keepalived
/// substitutes only parameters the file defines (`$NAME=...`), and hactl defines none.
pub fn for_keepalived() -> String {
    PROGRAM.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The arguments of [`PROGRAM`] for a plain `http://` URL (host, port, request target,
/// `Host` header), or `None` for any other URL (an `https://` one runs curl).
pub fn args(url: &str) -> Option<[String; 4]> {
    let u = url::Url::parse(url).ok()?;
    if u.scheme() != "http" {
        return None;
    }
    let host = u.host_str()?;
    let port = u.port_or_known_default()?;
    // bash hands `/dev/tcp/HOST/PORT` to getaddrinfo: an IPv6 literal goes without brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let header = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Some([bare.to_string(), port.to_string(), target, header])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::process::Command;

    #[test]
    fn args_split_a_url_into_host_port_target_and_host_header() {
        let a = |u: &str| args(u).map(|a| a.to_vec());
        assert_eq!(
            a("http://127.0.0.1/healthz"),
            Some(vec![
                "127.0.0.1".into(),
                "80".into(),
                "/healthz".into(),
                "127.0.0.1".into()
            ])
        );
        assert_eq!(
            a("http://[::1]:8080/a%20b?x=1&y=%2F"),
            Some(vec![
                "::1".into(),
                "8080".into(),
                "/a%20b?x=1&y=%2F".into(),
                "[::1]:8080".into()
            ])
        );
        // a space is percent-encoded by the URL parser: the target stays one word
        assert_eq!(a("http://web1:81/a b").unwrap()[2], "/a%20b");
        assert_eq!(a("http://web1").unwrap()[2], "/");
        // bash has no TLS: https (and anything else) keeps curl
        assert_eq!(a("https://127.0.0.1/healthz"), None);
        assert_eq!(a("ftp://127.0.0.1/x"), None);
        assert_eq!(a("not a url"), None);
    }

    /// keepalved.conf(5)'s quoted string reads `\\` as `\` and `\"` as `"`: undone, the text
    /// is the program itself, and it holds no `'`, which would end keepalived's argument.
    #[test]
    fn the_keepalived_form_reads_back_as_the_program() {
        let k = for_keepalived();
        let mut back = String::new();
        let mut it = k.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                back.push(it.next().expect("an escape ends the text"));
            } else {
                assert_ne!(c, '"', "an unescaped quote in {k}");
                back.push(c);
            }
        }
        assert_eq!(back, PROGRAM);
        assert!(!PROGRAM.contains('\''));
    }

    /// Runs the program with the real bash against a one-shot server answering `reply`;
    /// returns bash's exit code and the request the server read.
    fn probe(reply: &'static [u8], target: &str) -> (i32, String) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(reply);
            String::from_utf8_lossy(&req).into_owned()
        });
        let url = format!("http://127.0.0.1:{port}{target}");
        let [h, p, t, host] = args(&url).expect("http");
        let out = Command::new("/bin/bash")
            .args(["-c", PROGRAM, "hactl-http-check", &h, &p, &t, &host, "2"])
            .output()
            .expect("bash runs");
        (
            out.status.code().unwrap_or(-1),
            server.join().expect("server"),
        )
    }

    #[test]
    fn the_program_passes_2xx_and_3xx_and_fails_the_rest() {
        for (reply, rc) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..], 0),
            (b"HTTP/1.0 204 No Content\r\n\r\n", 0),
            (b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n", 0),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", 1),
            (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 1),
            (b"HTTP/1.1 2000 what\r\n\r\n", 1),
            (b"HTTP/1.1 200\r\n\r\n", 0),
            (b"HTTP/1.1 200\n\n", 0),
            (b"HTTP/1.1 302 \r\n\r\n", 0),
            (b"SSH-2.0-OpenSSH_9.2\r\n", 1),
            (b"", 1),
        ] {
            let (code, req) = probe(reply, "/healthz?a=1");
            assert_eq!(code, rc, "{:?}", String::from_utf8_lossy(reply));
            assert!(
                req.starts_with("GET /healthz?a=1 HTTP/1.0\r\nHost: 127.0.0.1:"),
                "{req}"
            );
            assert!(req.ends_with("\r\nConnection: close\r\n\r\n"), "{req}");
        }
    }

    #[test]
    fn the_program_fails_when_nothing_listens() {
        // a port just closed: connect is refused at once
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("/bin/bash")
            .args([
                "-c",
                PROGRAM,
                "hactl-http-check",
                "127.0.0.1",
                &port.to_string(),
                "/",
                "x",
                "1",
            ])
            .output()
            .expect("bash runs");
        assert_eq!(out.status.code(), Some(1));
    }
}
