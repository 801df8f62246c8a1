//! Issue 15 on real lab hosts: a host user who owns a directory hactl writes into, files only
//! root may read, and app secrets. A non-root user (`nobody`) plants links where hactl writes;
//! `up` must leave the root-only target untouched and report the refusal, `plan` must never
//! print what that user (or the operator's CI log) may not see, and the app's secrets must
//! reach the container without passing through `podman run`'s argv or `compose.log`.
//!
//! Everything planted lives in the host's overlay /etc and /var, so nothing outside the lab
//! changes. Every test holds `support::lab_guard()` and leaves the lab down.

use std::path::Path;
use std::process::Output;

use crate::support::{lab_exec, lab_guard, ok, run, stderr, stdout, succeeded};

/// Takes the lab down when dropped, so a failing test does not leave hosts behind.
struct DownOnDrop;

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let o = run(&["lab", "down"]);
        if !o.status.success() {
            eprintln!("lab down after the test failed:\n{}", stderr(&o));
        }
    }
}

/// What the host user wants root to overwrite or print: root's, 0600.
const VICTIM: &str = "/etc/hactl-victim";
const VICTIM_TEXT: &str = "victim-canary-7f3a9c";
/// A file only root may read that the stack also renders (non-sensitive, mode 0600).
const ROOT_ONLY: &str = "/etc/hactl-hostile/root-only.conf";
const ROOT_ONLY_TEXT: &str = "rootonly-canary-51be02";
/// The app user's directory (owned by `nobody`) that the stack writes a file into.
const USER_DIR: &str = "/var/lib/hostile-app/conf";

fn sh(host: &str, script: &str) -> String {
    lab_exec(host, &["sh", "-c", script])
}

/// Runs `script` on host1 as `nobody` (uid 65534, no groups): the hostile host user.
fn as_user(script: &str) -> String {
    lab_exec(
        "host1",
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ],
    )
}

fn stack_yaml(extra_files: &str) -> String {
    format!(
        r#"name: hostile
provider: hosts
ssh:
  user: root
  identity_file: /srv/hactl-lab/id_ed25519
  known_hosts: /srv/hactl-lab/known_hosts
  connect_timeout: 3s
hosts:
  - name: host1
    address: 198.18.0.11
files:
  - template: app.conf.j2
    dest: {USER_DIR}/app.conf
    mode: "0644"
    owner: nobody
  - template: root-only.conf.j2
    dest: {ROOT_ONLY}
    mode: "0600"
{extra_files}"#
    )
}

fn write_stack(dir: &Path, extra_files: &str) -> String {
    std::fs::write(dir.join("app.conf.j2"), "setting = {{ host.name }}\n").expect("template");
    std::fs::write(dir.join("root-only.conf.j2"), "rendered = 1\n").expect("template");
    let path = dir.join("hostile.yaml");
    std::fs::write(&path, stack_yaml(extra_files)).expect("stack");
    path.display().to_string()
}

/// `mode uid size` and content of the victim: it must stay `600 0` with its text.
fn assert_victim_untouched() {
    let out = sh(
        "host1",
        &format!("stat -c '%a %u %F' {VICTIM}; cat {VICTIM}"),
    );
    assert_eq!(out, format!("600 0 regular file\n{VICTIM_TEXT}\n"));
}

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn up_never_writes_through_a_link_a_host_user_planted() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    ok(&["lab", "down"]);
    ok(&["lab", "up", "--hosts", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = write_stack(dir.path(), "");

    sh(
        "host1",
        &format!(
            "umask 077; printf '%s\\n' {VICTIM_TEXT} > {VICTIM} && mkdir -p {USER_DIR} && chown -R nobody /var/lib/hostile-app \
             && mkdir -p /etc/hactl-hostile && printf '%s\\n' {ROOT_ONLY_TEXT} > {ROOT_ONLY}"
        ),
    );
    // The temporary name hactl used to write to, planted as a link to root's file.
    as_user(&format!("ln -s {VICTIM} {USER_DIR}/.app.conf.hactl-new"));

    // plan: the root-only file differs, and is shown as a keyed digest change, never read
    for args in [
        vec!["plan", "-f", &stack],
        vec!["plan", "-f", &stack, "--json"],
    ] {
        let o = run(&args);
        let text = succeeded(&args, &o);
        assert!(
            !text.contains(ROOT_ONLY_TEXT),
            "{args:?} printed a root-only file:\n{text}"
        );
        assert!(text.contains("hmac:"), "{args:?}: no keyed digest:\n{text}");
    }

    let args = ["up", "-f", &stack, "--auto-approve"];
    let o = run(&args);
    succeeded(&args, &o);
    assert_victim_untouched();
    // the file landed where it should, with the mode and owner the stack asked for
    assert_eq!(
        sh(
            "host1",
            &format!("stat -c '%a %U %F' {USER_DIR}/app.conf; cat {USER_DIR}/app.conf")
        ),
        "644 nobody regular file\nsetting = host1\n"
    );
    // the planted link is still the user's link (never followed, never replaced)
    assert_eq!(
        sh("host1", &format!("readlink {USER_DIR}/.app.conf.hactl-new")),
        format!("{VICTIM}\n")
    );
    // hactl's records on the host are root's alone
    assert_eq!(
        sh(
            "host1",
            "stat -c '%a %U' /var/lib/hactl /var/lib/hactl/hostile /var/lib/hactl/hostile/backup"
        ),
        "700 root\n700 root\n700 root\n"
    );

    // `down` removes and restores in the pinned directories: the user's file goes, root's
    // original comes back, the victim stays as it was.
    let args = ["down", "-f", &stack, "--auto-approve"];
    let o = run(&args);
    succeeded(&args, &o);
    assert_eq!(
        sh(
            "host1",
            &format!("ls -A {USER_DIR}; stat -c '%a' {ROOT_ONLY}; cat {ROOT_ONLY}")
        ),
        format!(".app.conf.hactl-new\n600\n{ROOT_ONLY_TEXT}\n")
    );
    assert_victim_untouched();
    let args = ["up", "-f", &stack, "--auto-approve"];
    let o = run(&args);
    succeeded(&args, &o);

    // The user makes a destination a link to root's file: `plan` shows a link, never the
    // target's content; `up` refuses and says so; the target is untouched.
    as_user(&format!("ln -s {VICTIM} {USER_DIR}/linked.conf"));
    let stack = write_stack(
        dir.path(),
        &format!(
            "  - template: app.conf.j2\n    dest: {USER_DIR}/linked.conf\n    mode: \"0644\"\n"
        ),
    );
    let o = run(&["plan", "-f", &stack]);
    let text = both(&o);
    assert!(
        !text.contains(VICTIM_TEXT),
        "plan printed the link's target:\n{text}"
    );
    assert!(text.contains("symbolic link"), "{text}");
    // the digest key lives in the stack's state (made by the first `up`): two plans agree
    let digests = || {
        let args = ["plan", "-f", &stack, "--json"];
        let o = run(&args);
        let v: serde_json::Value =
            serde_json::from_str(&succeeded(&args, &o)).expect("plan --json is JSON");
        v["changes"].to_string()
    };
    let first = digests();
    assert!(first.contains("hmac:"), "{first}");
    assert_eq!(first, digests());
    let o = run(&["up", "-f", &stack, "--auto-approve"]);
    let text = both(&o);
    assert!(!o.status.success(), "up must fail on a link:\n{text}");
    assert!(
        text.contains(&format!("refused to replace `{USER_DIR}/linked.conf`")),
        "up does not report the refusal:\n{text}"
    );
    assert!(!text.contains(VICTIM_TEXT), "{text}");
    assert_victim_untouched();
    assert_eq!(
        sh("host1", &format!("readlink {USER_DIR}/linked.conf")),
        format!("{VICTIM}\n")
    );

    // The user swaps their directory for a link to a root directory: refused as well.
    as_user(&format!(
        "rm -f {USER_DIR}/linked.conf && mv {USER_DIR} {USER_DIR}.old && ln -s /etc/hactl-hostile {USER_DIR}"
    ));
    let stack = write_stack(dir.path(), "");
    let o = run(&["up", "-f", &stack, "--auto-approve"]);
    let text = both(&o);
    assert!(
        !o.status.success(),
        "up must fail on a linked directory:\n{text}"
    );
    assert!(text.contains("its directory is not a plain path"), "{text}");
    assert_eq!(
        sh("host1", "ls -A /etc/hactl-hostile"),
        "root-only.conf\n",
        "nothing may land in the root directory the link points to"
    );
}

#[test]
fn app_secrets_never_reach_podman_argv_or_compose_log() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    ok(&["lab", "down"]);
    ok(&["lab", "up", "--hosts", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("demo-v1.tar").display().to_string();
    ok(&["lab", "demo-image", "--version", "v1", "-o", &archive]);
    let root = crate::support::root();
    // the lab vault is bound to stack `lab`; this stack borrows its name and its canary
    let canary = {
        let o = run(&["secrets", "get", "canary", "-f", "stacks/lab.yaml"]);
        succeeded(&["secrets", "get", "canary"], &o)
            .trim()
            .to_string()
    };
    assert!(canary.len() >= 32);
    let stack = dir.path().join("app.yaml");
    std::fs::write(
        &stack,
        format!(
            r#"name: lab
provider: hosts
ssh:
  user: root
  identity_file: /srv/hactl-lab/id_ed25519
  known_hosts: /srv/hactl-lab/known_hosts
  connect_timeout: 3s
vault:
  file: {root}/secrets/lab.age
  identity_file: {root}/secrets/lab.demo-key
hosts:
  - name: host1
    address: 198.18.0.11
app:
  archive: {archive}
  port: 8080
  host_port: 8000
  replicas: 1
  runtime: podman
  env:
    DB_PASSWORD: {{secret: canary}}
    MODE: plain
"#,
            root = root.display()
        ),
    )
    .expect("stack");
    let stack = stack.display().to_string();
    let args = ["up", "-f", &stack, "--auto-approve"];
    let o = run(&args);
    let text = succeeded(&args, &o);
    assert!(!text.contains(&canary) && !stderr(&o).contains(&canary));

    // compose logged the container's command line: the env file by path, no value
    let log = sh("host1", "cat /var/lib/hactl/lab/app/compose.log");
    assert!(
        log.contains("--env-file /etc/hactl/lab/compose.env"),
        "{log}"
    );
    assert!(!log.contains(&canary), "the secret is in compose.log");
    assert!(!log.contains("DB_PASSWORD"), "{log}");
    assert!(
        !sh("host1", "cat /etc/hactl/lab/docker-compose.yml").contains(&canary),
        "the secret is in the compose file"
    );
    // private from first use: hactl's state directories 0700, its files 0600
    assert_eq!(
        sh(
            "host1",
            "stat -c '%a %n' /var/lib/hactl /var/lib/hactl/lab /var/lib/hactl/lab/app \
             /var/lib/hactl/lab/app/compose.log /etc/hactl/lab/compose.env"
        ),
        "700 /var/lib/hactl\n700 /var/lib/hactl/lab\n700 /var/lib/hactl/lab/app\n\
         600 /var/lib/hactl/lab/app/compose.log\n600 /etc/hactl/lab/compose.env\n"
    );
    // and the container got the value
    let env = sh(
        "host1",
        "for c in $(podman ps -q); do podman inspect --format '{{range .Config.Env}}{{println .}}{{end}}' $c; done",
    );
    assert!(
        env.lines().any(|l| l == format!("DB_PASSWORD={canary}")),
        "the container did not get DB_PASSWORD"
    );
    assert!(env.lines().any(|l| l == "MODE=plain"));
}
