//! Integration tests: the stack's lock on `provider: hosts` runs (issue 11 §5, issue 15 §6),
//! and `hactl logs --since` with non-ASCII input (issue 15 §6).
//!
//! The lock tests need an `up` that holds the lock for a while: its one host's SSH target is a
//! loopback listener that accepts connections and never answers, so `up` waits in the SSH
//! handshake (up to `ssh.connect_timeout`) holding the lock. Nothing leaves loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support;

/// A scratch directory with a one-host stack whose SSH target is a silent listener.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Accepts and holds connections without a byte of SSH.
    _listener: std::thread::JoinHandle<()>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().to_path_buf();
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("a loopback port");
        let port = listener.local_addr().expect("addr").port();
        let handle = std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::write(
            root.join("s.yaml"),
            format!(
                "name: locktest\nprovider: hosts\nssh:\n  port: {port}\n  connect_timeout: 60s\n  known_hosts: {}/known_hosts\nhosts:\n  - name: h1\n    address: 198.18.0.250\n    ssh_host: 127.0.0.1\n    roles: [app]\nnginx:\n  listen: 80\n",
                root.display()
            ),
        )
        .unwrap();
        World {
            _dir: dir,
            root,
            _listener: handle,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = support::hactl();
        c.current_dir(&self.root)
            .args(args)
            .args(["-f", "s.yaml"])
            .env("HOME", self.root.join("home"))
            .env("HACTL_LOCK_TTL", "2s")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn_up(&self, extra: &[&str]) -> Killed {
        let mut args = vec!["up", "--auto-approve"];
        args.extend_from_slice(extra);
        Killed(Some(self.cmd(&args).spawn().expect("hactl runs")))
    }

    /// The holder record, if the lock is held.
    fn holder(&self) -> Option<serde_json::Value> {
        let o = self
            .cmd(&["state", "lock-info", "--json"])
            .output()
            .expect("hactl runs");
        assert!(o.status.success(), "{}", show(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert_eq!(v["command"], "state lock-info", "{v}");
        let lock = v
            .get("lock")
            .expect("the document has `lock`, null when free");
        (!lock.is_null()).then(|| lock.clone())
    }

    /// Waits until `pid` holds the lock; panics after `limit`.
    fn wait_holder(&self, pid: u32, limit: Duration) -> (serde_json::Value, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(h) = self.holder() {
                if h["pid"] == pid {
                    return (h, t0.elapsed());
                }
            }
            assert!(
                t0.elapsed() < limit,
                "pid {pid} did not get the lock in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A spawned hactl, SIGKILLed when dropped (a failing test leaves nothing running).
struct Killed(Option<Child>);

impl Killed {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }
    fn sigkill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.sigkill();
    }
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Regression (issue 11 §5, issue 15 §6): `up` on a `provider: hosts` stack took no lock
/// (its `--lock-wait` was accepted and ignored), so two runs wrote the same hosts at once.
/// Now: a second `up` fails at once naming the holder (pid, operation); a live holder renews
/// its lease past the TTL; one waiting with `--lock-wait` gets the lock when the holder is
/// killed with SIGKILL, within the TTL (the local lock is also an OS lock that dies with its
/// holder), and a killed holder leaves no lock behind.
#[test]
fn two_ups_on_a_hosts_stack_exclude_each_other_and_a_killed_holder_frees_the_lock() {
    let w = World::new();
    let mut a = w.spawn_up(&[]);
    let (first, _) = w.wait_holder(a.pid(), Duration::from_secs(30));
    assert_eq!(first["operation"], "up");
    assert_eq!(first["ttl"], 2);

    // A second run without --lock-wait fails at once, naming the holder.
    let t0 = Instant::now();
    let o = w
        .cmd(&["up", "--auto-approve"])
        .output()
        .expect("hactl runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        err.contains("locked by")
            && err.contains(&format!("pid {}", a.pid()))
            && err.contains("`up`"),
        "{}",
        show(&o)
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());

    // The live holder renews its lease past the TTL.
    std::thread::sleep(Duration::from_millis(3000));
    let later = w.holder().expect("still held");
    assert_eq!(later["id"], first["id"]);
    assert!(
        later["renewed"].as_u64() > first["renewed"].as_u64(),
        "{first} then {later}"
    );

    // A waiter queues behind it, and gets it once the holder is SIGKILLed.
    let mut b = w.spawn_up(&["--lock-wait", "60s"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(b.running(), "the waiter gave up while the holder was alive");
    assert_eq!(w.holder().expect("held")["pid"], a.pid());
    a.sigkill();
    let (h, took) = w.wait_holder(b.pid(), Duration::from_secs(10));
    assert!(
        took <= Duration::from_secs(2 + 2),
        "took {took:?} (TTL 2 s)"
    );
    assert_eq!(h["operation"], "up");

    // A SIGKILLed holder leaves no lock.
    b.sigkill();
    let t0 = Instant::now();
    while w.holder().is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "the lock outlived its holder"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Regression (issue 15 §6): `hactl logs --since` sliced its argument at byte 10, so a value
/// with a multi-byte character there panicked. Now it is a clear error, before any host is
/// contacted.
#[test]
fn logs_since_with_non_ascii_is_an_error_not_a_panic() {
    let w = World::new();
    for since in [
        "2026-11-2é01:31:24Z",
        "ééééééééééééééééééééé",
        "10 minutes ago",
    ] {
        let o = w
            .cmd(&["logs", "--since", since])
            .output()
            .expect("hactl runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{since}: {}", show(&o));
        assert!(!err.contains("panicked"), "{since}: {}", show(&o));
        assert!(
            err.contains("hactl::logs::since") && err.contains(since),
            "{since}: {}",
            show(&o)
        );
    }
}
