//! Integration tests: `hactl deploy` and `hactl rollback` refuse bad flags before anything is
//! connected (issue 13 review). The stack's one host is a loopback listener that counts the
//! connections it accepts and never answers: a flag checked only after SSH would show up as an
//! accepted connection (and a wait in the handshake). No lab, nothing leaves loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::support;

/// A scratch directory with a one-host stack (an app, no VIP) whose SSH port is a silent,
/// counting listener.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    accepted: Arc<AtomicUsize>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().to_path_buf();
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a loopback port");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for s in listener.incoming().flatten() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.push(s);
                }
            });
        }
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::write(root.join("garbage.pem"), "not a certificate\n").unwrap();
        std::fs::write(
            root.join("s.yaml"),
            format!(
                "name: flagtest\nprovider: hosts\nssh:\n  port: {port}\n  connect_timeout: 3s\n  known_hosts: {}/known_hosts\nhosts:\n  - name: h1\n    address: 127.0.0.1\n    roles: [app]\nnginx:\n  listen: 80\napp:\n  image: registry.example/app:v1\n  port: 8080\n",
                root.display()
            ),
        )
        .unwrap();
        World {
            _dir: dir,
            root,
            accepted,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        support::hactl()
            .current_dir(&self.root)
            .args(args)
            .args(["-f", "s.yaml", "--auto-approve"])
            .env("HOME", self.root.join("home"))
            .stdin(Stdio::null())
            .output()
            .expect("hactl runs")
    }
}

/// Each bad flag is a clear error naming the flag, and no connection was made to the host:
/// `--stop-first` on a hosts stack, a probe URL that is not http(s), `--probe` with no URL on
/// a stack without VIP or balancer, a `--probe-resolve` that is not `NAME=IP`, a missing
/// `--probe-ca` file and one that holds no PEM certificate. For `deploy` and `rollback`.
#[test]
fn bad_deploy_flags_are_refused_before_any_connection() {
    let w = World::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--stop-first"], "--stop-first"),
        (&["--probe", "ftp://example.test/"], "ftp://example.test/"),
        (&["--probe"], "--probe URL"),
        (
            &[
                "--probe",
                "http://app.test/",
                "--probe-resolve",
                "app.test=nowhere",
            ],
            "--probe-resolve",
        ),
        (
            &["--probe", "https://app.test/", "--probe-ca", "missing.pem"],
            "--probe-ca",
        ),
        (
            &["--probe", "https://app.test/", "--probe-ca", "garbage.pem"],
            "--probe-ca",
        ),
    ];
    for op in [
        &["deploy", "--image", "registry.example/app:v2"][..],
        &["rollback"][..],
    ] {
        for (flags, named) in cases {
            let mut args = op.to_vec();
            args.extend_from_slice(flags);
            let t0 = std::time::Instant::now();
            let o = w.run(&args);
            let err = support::stderr(&o);
            assert!(!o.status.success(), "{args:?} must fail:\n{err}");
            assert!(
                err.contains(named),
                "{args:?}: the error names `{named}`:\n{err}"
            );
            assert!(
                !err.contains("bad probe URL") || !named.starts_with("--probe-"),
                "{args:?}: not blamed on the URL:\n{err}"
            );
            assert_eq!(
                w.accepted.load(Ordering::SeqCst),
                0,
                "{args:?}: refused before any connection:\n{err}"
            );
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(3),
                "{args:?}: refused at once, not after an SSH timeout ({:?})",
                t0.elapsed()
            );
        }
    }
    // the control: with good flags the deploy does reach for the host (so the count above
    // would have seen a connection)
    let o = w.run(&["deploy", "--image", "registry.example/app:v2"]);
    assert!(!o.status.success(), "{}", support::stderr(&o));
    assert!(
        w.accepted.load(Ordering::SeqCst) >= 1,
        "a good deploy connects: {}",
        support::stderr(&o)
    );
}

/// Values that used to be fixed up silently are refused by the argument parser (exit 2, the
/// flag named): `--batch 0`, `--probe-rate` nan/0/-1/over 1000, `--probe-max 0s`, and
/// `--probe-resolve`/`--probe-ca` without `--probe`. Nothing is connected.
#[test]
fn out_of_range_deploy_flags_are_refused_by_the_parser() {
    let w = World::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--batch", "0"], "--batch"),
        (&["--probe", "--probe-rate", "nan"], "--probe-rate"),
        (&["--probe", "--probe-rate", "0"], "--probe-rate"),
        (&["--probe", "--probe-rate=-1"], "--probe-rate"),
        (&["--probe", "--probe-rate", "1001"], "--probe-rate"),
        (&["--probe", "--probe-max", "0s"], "--probe-max"),
        (&["--probe-resolve", "app.test=127.0.0.1"], "--probe"),
        (&["--probe-ca", "garbage.pem"], "--probe"),
    ];
    for op in [
        &["deploy", "--image", "registry.example/app:v2"][..],
        &["rollback"][..],
    ] {
        for (flags, named) in cases {
            let mut args = op.to_vec();
            args.extend_from_slice(flags);
            let o = w.run(&args);
            let err = support::stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: a usage error:\n{err}");
            assert!(
                err.contains(named),
                "{args:?}: the error names `{named}`:\n{err}"
            );
        }
    }
    assert_eq!(w.accepted.load(Ordering::SeqCst), 0);
}
