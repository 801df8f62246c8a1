//! Shared test support: running the binary, and the one lab that lab tests take turns on.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// The crate root (where `stacks/` and `templates/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` for the hactl binary under test, run from the crate root.
pub fn hactl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hactl"));
    c.current_dir(root());
    c.env_remove("HACTL_STACK");
    c
}

/// Runs hactl with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    hactl().args(args).output().expect("the hactl binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout, showing both streams on failure.
pub fn ok(args: &[&str]) -> String {
    succeeded(args, &run(args))
}

/// Asserts that the hactl run `args` gave `o` succeeded; returns its stdout, and shows both
/// streams and the exit code when it did not. Every test module's "must succeed" helper.
pub fn succeeded(args: &[&str], o: &Output) -> String {
    assert!(
        o.status.success(),
        "hactl {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

static LAB: Mutex<()> = Mutex::new(());

/// Held by a lab test for its whole run (see [`lab_guard`]).
pub struct LabGuard {
    _in_process: MutexGuard<'static, ()>,
    _across_processes: std::fs::File,
}

/// A background hactl (or load) a test started: killed when the test ends, also by a panic,
/// so it cannot act on the next test's lab. Declare it after the lab guard (it drops first).
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    pub fn new(child: std::process::Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The running process.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not finished yet")
    }

    /// Kills the process (nothing, when it already exited) and returns what it printed.
    pub fn finish(mut self) -> Output {
        let mut child = self.0.take().expect("finished once");
        let _ = child.kill();
        child.wait_with_output().expect("the child is reaped")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A lab test that fails leaves its lab as it was (hosts, their services and state), and `lab
/// up` keeps hosts that already run: the next lab test would start on that and could fail for
/// the first one's reason. A failing test takes its lab down before it lets the next one in.
impl Drop for LabGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            match hactl().args(["lab", "down"]).output() {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "the failed test's `hactl lab down` failed too: {}",
                    stderr(&o)
                ),
                Err(e) => eprintln!("the failed test's `hactl lab down` did not run: {e}"),
            }
        }
    }
}

/// Lab tests share one set of namespaces: they take this guard so they run one at a time,
/// within this test binary (a mutex) and across test processes on the machine (an flock on
/// /run/lock/hactl-lab-tests.lock, released when the guard drops or the process dies).
pub fn lab_guard() -> LabGuard {
    use std::os::fd::AsRawFd;
    let m = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::fs::create_dir_all("/run/lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/lock/hactl-lab-tests.lock")
        .expect("the lab test lock file opens (lab tests run as root)");
    // SAFETY: flock on a file descriptor we own; it blocks until the other test run is done.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock on the lab test lock failed");
    LabGuard {
        _in_process: m,
        _across_processes: f,
    }
}

/// The lab directory the tests use (the default one, as the stacks name it).
pub fn lab_dir() -> &'static Path {
    Path::new("/srv/hactl-lab")
}

/// Refuses to send traffic anywhere but the lab: the address must route through `hactl0`.
pub fn assert_lab_route(addr: &str) {
    let out = Command::new("ip")
        .args(["route", "get", addr])
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dev hactl0"),
        "{addr} does not route through the lab bridge: {text}"
    );
}

/// Runs a command inside a lab host and returns its stdout (it must succeed).
pub fn lab_exec(host: &str, cmd: &[&str]) -> String {
    let mut args = vec!["lab", "exec", host, "--"];
    args.extend_from_slice(cmd);
    ok(&args)
}

/// `hactl status --json` for a stack (whatever its exit code: split brain exits 1).
pub fn status_json(stack: &str) -> serde_json::Value {
    let o = run(&["status", "-f", stack, "--json"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}):\n{}\n{}",
            stdout(&o),
            stderr(&o)
        )
    })
}

/// The VIP holders in a `status --json` document.
pub fn vip_holders(v: &serde_json::Value) -> Vec<String> {
    v["vip"]["holders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// What the lab, the tests and the benchmarks must leave as they found it on the machine (issue
/// 16): the content of podman's machine-wide config dirs (`/etc/cni`, `/etc/containers`) and
/// the machine's links and routes. One text, so a test can compare it before and after and
/// show what changed. `scripts/machine-state.sh` computes the same for the whole suite.
pub fn machine_state() -> String {
    let mut out = String::new();
    for dir in ["/etc/cni", "/etc/containers"] {
        let mut files = Vec::new();
        collect_files(Path::new(dir), &mut files);
        files.sort();
        for f in files {
            let digest = match std::fs::read(&f) {
                Ok(bytes) => {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(&bytes))
                }
                Err(e) => format!("unreadable: {e}"),
            };
            out.push_str(&format!("{digest}  {}\n", f.display()));
        }
    }
    for argv in [
        &["ip", "-br", "link"][..],
        &["ip", "route"][..],
        &["ip", "rule"][..],
    ] {
        let o = Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .expect("ip runs");
        out.push_str(&format!("$ {}\n", argv.join(" ")));
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Copies the repo's stack templates (`stacks/templates/`) into `to`. A copy, not a link:
/// templates must stay inside the stack's folder, and a link resolving outside it is refused
/// (issue 15 §4), as it should be.
pub fn copy_stack_templates(to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir templates");
    for e in std::fs::read_dir(root().join("stacks/templates")).expect("stacks/templates") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy template");
        }
    }
}
