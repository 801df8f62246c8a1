//! What a pipeline and a newcomer rely on (issue 16 §2–3): `up` returns once the stack serves
//! (so `up && drill` needs no sleep), `--no-wait` does not wait, a stack that never serves
//! fails with exit 3 naming what is not ready; `hactl init` writes a stack that validates and
//! (for the lab) comes up; completions and man pages come from the binary; docs/ci.md's jobs
//! run as written.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{self, lab_guard, ok, run, status_json, stderr, stdout, vip_holders};

const LAB_STACK: &str = "stacks/lab.yaml";

/// Takes the lab down when a test ends, however it ends.
struct LabDown;
impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = run(&["lab", "down"]);
    }
}

/// Fresh lab hosts: nothing applied yet.
fn fresh_lab(n: u8) -> LabDown {
    let _ = run(&["lab", "down"]);
    ok(&["lab", "up", "--hosts", &n.to_string()]);
    LabDown
}

/// The issue's acceptance: `hactl up … && hactl drill … --scenario service-stop` on fresh hosts,
/// nothing in between. Before, `up` returned ~3.6 s before keepalived elected anyone and the
/// drill failed with "the VIP must have exactly one holder; it has none".
#[test]
fn up_then_drill_needs_no_sleep() {
    let _g = lab_guard();
    let _down = fresh_lab(3);
    support::assert_lab_route("198.18.0.100");
    let up = run(&["up", "-f", LAB_STACK, "--auto-approve"]);
    support::succeeded(&["up"], &up);
    assert!(
        stderr(&up).contains("serving after") && stderr(&up).contains("VIP held by host1"),
        "up reports how its wait ended:\n{}",
        stderr(&up)
    );
    let drill = run(&[
        "drill",
        "-f",
        LAB_STACK,
        "--scenario",
        "service-stop",
        "--json",
    ]);
    let out = support::succeeded(&["drill"], &drill);
    let v: serde_json::Value = serde_json::from_str(&out).expect("drill --json");
    assert_eq!(v["old_holder"], "host1", "{v:#}");
    assert_eq!(v["split_brain"], false, "{v:#}");
}

/// `--no-wait` returns as soon as the files are pushed and the services started: keepalived
/// has not elected anyone yet (its first master waits out Master_Down_Interval, that is
/// 3 × advert_int plus the skew, ≈ 3.4 s here). Then a stack whose check can never pass: `up` waits its
/// `--wait-timeout` and fails with exit 3, naming the failing check and the missing holder.
#[test]
fn up_no_wait_returns_before_the_vip_is_held_and_a_timeout_names_what_is_not_ready() {
    let _g = lab_guard();
    let _down = fresh_lab(3);
    let t0 = std::time::Instant::now();
    let out = ok(&[
        "up",
        "-f",
        LAB_STACK,
        "--auto-approve",
        "--no-wait",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("up --json");
    assert_eq!(v["outcome"], "applied");
    assert!(v.get("serving").is_none(), "--no-wait does not wait: {v:#}");
    let holders = vip_holders(&status_json(LAB_STACK));
    assert!(
        holders.is_empty(),
        "the VIP is already held {:?} after `up --no-wait` returned: the test proves nothing",
        t0.elapsed()
    );

    // The same stack with a check that asks a port nothing listens on.
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = copy_lab_stack(dir.path(), |t| {
        t.replace("http://127.0.0.1:80/healthz", "http://127.0.0.1:81/healthz")
    });
    let t0 = std::time::Instant::now();
    let o = run(&["up", "-f", &stack, "--auto-approve", "--wait-timeout", "3s"]);
    let took = t0.elapsed();
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit 3 when not serving:\n{}",
        stderr(&o)
    );
    let err = stderr(&o);
    for want in [
        "hactl::wait::not_serving",
        "does not serve after 3s",
        "host1: check `nginx` fails",
        "VIP 198.18.0.100: no holder",
    ] {
        assert!(err.contains(want), "`{want}` missing from:\n{err}");
    }
    assert!(took.as_secs() < 30, "the wait is bounded: took {took:?}");
}

/// A copy of stacks/lab.yaml in `dir/stacks/` (with the repo's secrets/ linked and its templates copied
/// beside it, so the vault and `files:` resolve as in the repo), edited by `edit`.
fn copy_lab_stack(dir: &Path, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(support::root().join(LAB_STACK)).expect("lab.yaml");
    let stacks = dir.join("stacks");
    std::fs::create_dir_all(&stacks).expect("mkdir");
    std::os::unix::fs::symlink(support::root().join("secrets"), dir.join("secrets"))
        .expect("link secrets");
    support::copy_stack_templates(&stacks.join("templates"));
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    let path = stacks.join("lab.yaml");
    std::fs::write(&path, edited).expect("write");
    path.to_string_lossy().into_owned()
}

/// `hactl` run in `dir` with `HOME` there (so the age identity `init` creates is the test's).
fn hactl_in(dir: &Path, args: &[&str]) -> std::process::Output {
    support::hactl()
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("HACTL_AGE_KEY")
        .env_remove("HACTL_AGE_KEY_FILE")
        .stdin(Stdio::null())
        .args(args)
        .output()
        .expect("hactl runs")
}

/// Without a terminal `init` asks nothing: the error names every flag that is missing.
#[test]
fn init_without_a_tty_names_the_missing_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = hactl_in(
        dir.path(),
        &["init", "--provider", "aws", "--region", "eu-west-1"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("missing `--ami`, `--ssh-public-key`"), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).expect("ls").next().is_none(),
        "init wrote something although it failed"
    );
}

/// `init --provider aws` writes a stack that `validate` accepts and a vault holding the SSH
/// public key it names; a second `init` does not overwrite them.
#[test]
fn init_aws_stack_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hosts.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO7DwKba4zmEdVVsWOSrRuOkXXA9BURK8d9NAyUP7RMf ci@test\n",
    )
    .expect("write key");
    let args = [
        "init",
        "--provider",
        "aws",
        "--name",
        "shop",
        "--region",
        "eu-west-1",
        "--ami",
        "ami-0abc1234",
        "--ssh-public-key",
        "hosts.pub",
        "--ssh-cidr",
        "203.0.113.0/24",
    ];
    // A private key given as the public one is refused, naming the flag, and never echoed;
    // nothing is written.
    let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("hosts.key"), private).expect("write key");
    let mut wrong = args.to_vec();
    wrong[10] = "hosts.key";
    let o = hactl_in(dir.path(), &wrong);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("--ssh-public-key") && err.contains("private key"),
        "{err}"
    );
    assert!(
        !err.contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
        "{err}"
    );
    assert!(!dir.path().join("stacks").exists() && !dir.path().join("secrets").exists());
    // In a pipeline: one JSON document on stdout saying what was written.
    let o = hactl_in(dir.path(), &[&args[..], &["--json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    assert_eq!(doc["command"], "init", "{doc:#}");
    assert_eq!(doc["stack"], "stacks/shop.yaml", "{doc:#}");
    assert_eq!(doc["vault"], "secrets/shop.age", "{doc:#}");
    assert_eq!(
        doc["secrets"],
        serde_json::json!(["ssh_public_key"]),
        "{doc:#}"
    );
    assert!(dir.path().join("stacks/shop.yaml").exists());
    assert!(dir.path().join("secrets/shop.age").exists());
    let v = hactl_in(dir.path(), &["validate", "-f", "stacks/shop.yaml"]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let list = hactl_in(dir.path(), &["secrets", "list", "-f", "stacks/shop.yaml"]);
    assert!(
        stdout(&list).contains("ssh_public_key"),
        "{}",
        stderr(&list)
    );
    let check = hactl_in(dir.path(), &["secrets", "check", "-f", "stacks/shop.yaml"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let again = hactl_in(dir.path(), &args);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    // Only the vault is left: init refuses before writing the stack, so nothing changes.
    std::fs::remove_file(dir.path().join("stacks/shop.yaml")).expect("rm");
    let again = hactl_in(dir.path(), &args);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("secrets/shop.age` exists"),
        "{}",
        stderr(&again)
    );
    assert!(!dir.path().join("stacks/shop.yaml").exists());
}

/// `init --lab 3` on fresh lab hosts: validate passes and `up` brings it up, serving.
#[test]
fn init_lab_stack_comes_up() {
    let _g = lab_guard();
    let _down = fresh_lab(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let o = hactl_in(dir.path(), &["init", "--lab", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [
        &["validate", "-f", "stacks/lab-init.yaml"][..],
        &["secrets", "check", "-f", "stacks/lab-init.yaml"],
        &["up", "-f", "stacks/lab-init.yaml", "--auto-approve"],
        &["status", "-f", "stacks/lab-init.yaml"],
    ] {
        let o = hactl_in(dir.path(), args);
        assert!(
            o.status.success(),
            "{args:?}:\n{}\n{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

/// The completion scripts are valid shell (bash parses its own), and the man pages are
/// written one per command.
#[test]
fn completions_and_man_pages_come_from_the_binary() {
    let bash = ok(&["completions", "bash"]);
    assert!(bash.contains("_hactl()"), "{bash}");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("hactl.bash");
    std::fs::write(&script, &bash).expect("write");
    let n = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        n.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&n.stderr)
    );
    for shell in ["zsh", "fish", "powershell"] {
        assert!(ok(&["completions", shell]).contains("hactl"), "{shell}");
    }
    // An unknown shell is a usage error: exit 1, like every error.
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(1));
    let man = ok(&["man"]);
    assert!(man.contains(".TH hactl 1"), "{man}");
    ok(&["man", "--dir", &dir.path().to_string_lossy()]);
    for page in [
        "hactl.1",
        "hactl-up.1",
        "hactl-init.1",
        "hactl-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
}

/// One fenced block of docs/ci.md, found by its first line (the file it stands for).
fn ci_block(doc: &str, first_line: &str) -> serde_json::Value {
    let start = doc
        .find(&format!("```yaml\n{first_line}\n"))
        .unwrap_or_else(|| panic!("docs/ci.md has no yaml block starting `{first_line}`"));
    let body = &doc[start + "```yaml\n".len()..];
    let end = body.find("\n```").expect("the block ends");
    serde_saphyr::from_str(&body[..end]).unwrap_or_else(|e| panic!("{first_line}: {e}"))
}

/// The shell commands of a GitHub Actions job, in order, without the install step.
fn github_commands(job: &serde_json::Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["name"] != "install hactl")
        .filter_map(|s| s["run"].as_str().map(|r| r.trim().to_string()))
        .collect()
}

/// docs/ci.md's two jobs as commands, in order: (plan, apply). Checks on the way that GitLab's
/// scripts are exactly GitHub's `run:` steps and that the age key comes from the secret store.
pub(crate) fn ci_jobs() -> (Vec<String>, Vec<String>) {
    let doc = std::fs::read_to_string(support::root().join("docs/ci.md")).expect("docs/ci.md");
    let gh = ci_block(&doc, "# .github/workflows/hactl.yml");
    let gl = ci_block(&doc, "# .gitlab-ci.yml");
    let plan = github_commands(&gh["jobs"]["plan"]);
    let apply = github_commands(&gh["jobs"]["apply"]);
    let script = |job: &str| -> Vec<String> {
        gl[job]["script"]
            .as_array()
            .expect("script")
            .iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        script("plan"),
        plan,
        "GitLab's plan job differs from GitHub's"
    );
    assert_eq!(
        script("apply"),
        apply,
        "GitLab's apply job differs from GitHub's"
    );
    assert!(
        plan.iter().any(|c| c.contains("--detailed-exitcode")),
        "{plan:?}"
    );
    assert!(apply.iter().any(|c| c.contains("up -f")), "{apply:?}");
    assert_eq!(
        gh["env"]["HACTL_AGE_KEY"], "${{ secrets.HACTL_AGE_KEY }}",
        "the age key comes from the secret store"
    );
    (plan, apply)
}

/// Runs one job's commands as CI would: each in `bash -e` (GitHub runs `bash -e {0}`; GitLab
/// stops a job at the first failing line), in `cwd`, with the binary under test first on
/// `PATH` and `env` (STACK, HACTL_AGE_KEY, …) set; stdin is not a terminal.
pub(crate) fn run_ci_job(name: &str, cmds: &[String], cwd: &Path, env: &[(String, String)]) {
    let bin = Path::new(env!("CARGO_BIN_EXE_hactl"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for c in cmds {
        let o = Command::new("bash")
            .args(["-e", "-c", c])
            .current_dir(cwd)
            .env("PATH", &path)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("HACTL_STACK")
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            o.status.success(),
            "{name} job: `{c}` failed ({:?}):\n{}\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
    }
}

/// The JSON documents a job left in `file` (one per command the job ran with `--json`).
pub(crate) fn json_docs(file: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .map(|d| d.unwrap_or_else(|e| panic!("{file:?} is not JSON: {e}\n{text}")))
        .collect()
}

/// docs/ci.md's jobs, run as written against the lab: the plan job on fresh hosts (changes
/// pending, exit 2, the job passes), the apply job (serving when `up` returns), then the plan
/// job again (nothing to change). The commands are read from the doc, so it cannot rot.
#[test]
fn docs_ci_sequence_runs_against_the_lab() {
    let (plan, apply) = ci_jobs();
    let _g = lab_guard();
    let _down = fresh_lab(3);
    let work = tempfile::tempdir().expect("tempdir");
    let key = std::fs::read_to_string(support::root().join("secrets/lab.demo-key"))
        .expect("the lab's demo key");
    let stack = support::root().join(LAB_STACK);
    let env = [
        ("STACK".to_string(), stack.display().to_string()),
        ("HACTL_AGE_KEY".to_string(), key.clone()),
    ];
    run_ci_job("plan", &plan, work.path(), &env);
    let p = &json_docs(&work.path().join("plan.json"))[0];
    assert_ne!(
        p["changes"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "fresh hosts: the plan has changes"
    );
    run_ci_job("apply", &apply, work.path(), &env);
    let up = &json_docs(&work.path().join("up.json"))[0];
    assert_eq!(up["outcome"], "applied", "{up:#}");
    assert_eq!(up["serving"]["serving"], true, "{up:#}");
    run_ci_job("plan", &plan, work.path(), &env);
    let o = Command::new(env!("CARGO_BIN_EXE_hactl"))
        .args(["plan", "-f"])
        .arg(&stack)
        .args(["--detailed-exitcode"])
        .env("HACTL_AGE_KEY", &key)
        .output()
        .expect("hactl runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "nothing left to change after apply"
    );
}
