//! Issue 7's canary: the lab vault holds a long random `canary` secret that `stacks/lab.yaml`
//! renders into one file for host1 only. A whole run — lab up, render, plan, up, plan again,
//! status, a failing command, down — in human and `--json` forms, once plainly and once with
//! `RUST_LOG=trace`, must show the canary nowhere: not on stdout or stderr, not in files hactl
//! leaves in its temp dir or under the home's `.local/state` and `.cache`, not in `.hactl/`,
//! and on the hosts only in `/etc/hactl-lab/canary.conf` on host1, mode 0600.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{self, lab_guard};

const STACK: &str = "stacks/lab.yaml";

/// The canary's value, read through hactl itself (`secrets get` prints only the value).
fn canary() -> String {
    let o = support::hactl()
        .args(["secrets", "get", "canary", "-f", STACK])
        .output()
        .expect("hactl runs");
    assert!(o.status.success(), "{}", support::stderr(&o));
    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(v.len() >= 32, "the canary should be a long random string");
    v
}

/// Every regular file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                if let Ok(bytes) = std::fs::read(&p) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(p);
                    }
                }
            }
        }
    }
    found.sort();
    found
}

struct Run {
    tmp: tempfile::TempDir,
    home: tempfile::TempDir,
    outputs: Vec<(String, Output)>,
    trace: bool,
}

impl Run {
    fn new(trace: bool) -> Run {
        Run {
            tmp: tempfile::tempdir().expect("tmp"),
            home: tempfile::tempdir().expect("home"),
            outputs: Vec::new(),
            trace,
        }
    }

    fn hactl(&mut self, args: &[&str]) -> &Output {
        let mut c = support::hactl();
        c.args(args)
            .env("TMPDIR", self.tmp.path())
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", self.tmp.path());
        if self.trace {
            c.env("RUST_LOG", "trace");
        } else {
            c.env_remove("RUST_LOG");
        }
        let o = c.output().expect("hactl runs");
        self.outputs.push((args.join(" "), o));
        &self.outputs.last().expect("just pushed").1
    }

    fn assert_ok(&mut self, args: &[&str]) {
        let o = self.hactl(args);
        assert!(
            o.status.success(),
            "hactl {args:?} failed:\n{}\n{}",
            support::stdout(o),
            support::stderr(o)
        );
    }

    /// No output, no temp file, nothing under the home has the canary.
    fn assert_clean(&self, canary: &str) {
        for (cmd, o) in &self.outputs {
            for (stream, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                assert!(
                    !String::from_utf8_lossy(bytes).contains(canary),
                    "the canary leaked on the {stream} of `hactl {cmd}` (trace={})",
                    self.trace
                );
            }
        }
        let mut leaked = files_containing(self.tmp.path(), canary.as_bytes());
        leaked.extend(files_containing(self.home.path(), canary.as_bytes()));
        leaked.extend(files_containing(
            &support::root().join(".hactl"),
            canary.as_bytes(),
        ));
        assert!(leaked.is_empty(), "the canary is in {leaked:?}");
    }
}

/// Where the lab keeps each host's writable layers: the canary may be in exactly one file.
fn host_files_with(canary: &str) -> Vec<PathBuf> {
    files_containing(&support::lab_dir().join("hosts"), canary.as_bytes())
}

fn whole_run(trace: bool) {
    let canary = canary();
    let mut run = Run::new(trace);
    run.assert_ok(&["lab", "down"]);
    run.assert_ok(&["lab", "up", "--hosts", "3"]);
    let out = tempfile::tempdir().expect("out");
    let out_dir = out.path().display().to_string();
    run.assert_ok(&["render", "-f", STACK]);
    run.assert_ok(&["render", "-f", STACK, "--json"]);
    run.assert_ok(&["plan", "-f", STACK]);
    run.assert_ok(&["plan", "-f", STACK, "--json"]);
    run.assert_ok(&["up", "-f", STACK, "--auto-approve"]);
    run.assert_ok(&["plan", "-f", STACK, "--json", "--detailed-exitcode"]);
    run.assert_ok(&["up", "-f", STACK, "--auto-approve", "--json"]);
    // The VIP takes a moment to settle after the first up; status may exit 1 meanwhile, but
    // its output is what matters here.
    run.hactl(&["status", "-f", STACK, "--json"]);
    run.hactl(&["status", "-f", STACK]);
    // An error path: a host that does not exist.
    let o = run.hactl(&["render", "-f", STACK, "--host", "nosuchhost"]);
    assert!(!o.status.success());

    // On the hosts: exactly one file, host1's, mode 0600.
    let found = host_files_with(&canary);
    assert_eq!(found.len(), 1, "canary on the hosts in {found:?}");
    let f = &found[0];
    assert!(
        f.ends_with("hosts/host1/etc.upper/hactl-lab/canary.conf"),
        "{f:?}"
    );
    let mode = support::ok(&[
        "lab",
        "exec",
        "host1",
        "--",
        "stat",
        "-c",
        "%a",
        "/etc/hactl-lab/canary.conf",
    ]);
    assert_eq!(mode.trim(), "600");

    // `render --out` writes the file 0600 and says it is sensitive; outside this test's own
    // output dir, nothing else.
    run.assert_ok(&["render", "-f", STACK, "--host", "host1", "--out", &out_dir]);
    let written = out.path().join("host1/etc/hactl-lab/canary.conf");
    let meta = std::fs::metadata(&written).expect("render --out wrote the canary file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        String::from_utf8_lossy(&run.outputs.last().expect("out").1.stdout).contains("sensitive")
    );

    run.assert_ok(&["down", "-f", STACK, "--auto-approve"]);
    assert!(
        host_files_with(&canary).is_empty(),
        "the canary stayed on a host after down"
    );
    run.assert_ok(&["lab", "down"]);
    run.assert_clean(&canary);
}

#[test]
fn canary_reaches_only_its_file_in_a_whole_run() {
    let _g = lab_guard();
    whole_run(false);
}

#[test]
fn canary_reaches_only_its_file_with_rust_log_trace() {
    let _g = lab_guard();
    whole_run(true);
}
