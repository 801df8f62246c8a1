//! Integration tests: the age vault (`hactl secrets …`), driving the binary in a temp dir.
//!
//! Every test gets its own HOME, TMPDIR and XDG_RUNTIME_DIR under a temp dir, and none of the
//! identity variables of the caller, so the real `~/.config/hactl` and `~/.ssh` are never read
//! or written.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;

use super::support;

const STACK: &str = "\
name: demo
provider: hosts
hosts:
  - name: host1
    address: 198.18.0.11
  - name: host2
    address: 198.18.0.12
";

/// A long random-looking value whose every appearance in output is a leak.
const CANARY: &str = "canary-7f3a9c1e5b2d8f4a6c0e9b7d3f1a5c8e2b4d6f0a9c7e5b3d1f8a6c4e2b0d9f7";

/// A scratch world: a repo with `stacks/<name>.yaml` and `secrets/`, a private HOME and temp.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    repo: PathBuf,
    tmp: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        let repo = root.join("repo");
        let tmp = root.join("tmp");
        for d in [&home, &repo.join("stacks"), &tmp, &root.join("bin")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(repo.join("stacks/demo.yaml"), STACK).unwrap();
        World {
            _dir: dir,
            root,
            home,
            repo,
            tmp,
        }
    }

    fn stack(&self) -> PathBuf {
        self.repo.join("stacks/demo.yaml")
    }

    fn vault(&self) -> PathBuf {
        self.repo.join("secrets/demo.age")
    }

    fn vault_bytes(&self) -> Vec<u8> {
        std::fs::read(self.vault()).expect("the vault exists")
    }

    /// An executable script in the world's `bin/`.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.root.join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// hactl in the repo, with only this world's environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = support::hactl();
        c.current_dir(&self.repo)
            .args(args)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env("XDG_RUNTIME_DIR", &self.tmp)
            .env("RUST_LOG", "trace")
            .env("EDITOR", "false")
            .env_remove("VISUAL")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("HACTL_AGE_KEY")
            .env_remove("HACTL_AGE_KEY_FILE")
            .env_remove("HACTL_STACK");
        c
    }

    /// Runs `hactl secrets ARGS -f <stack>` with `stdin` (empty when None) and extra env.
    fn secrets(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
        self.secrets_for(&self.stack(), args, stdin, env)
    }

    fn secrets_for(
        &self,
        stack: &Path,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &Path)],
    ) -> Output {
        let stack = stack.display().to_string();
        let mut all = vec!["secrets"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-f", &stack]);
        let mut c = self.cmd(&all);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("hactl runs");
        {
            let mut si = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                si.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().expect("hactl finishes")
    }

    /// The files left in the world's temp dirs (the edit copies must all be gone).
    fn temp_leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        support::stdout(o),
        support::stderr(o)
    )
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "expected success\n{}", show(o));
    support::stdout(o)
}

/// Text with miette's wrapping undone: box-drawing gutters dropped, whitespace collapsed.
fn unwrap_lines(s: &str) -> String {
    s.replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts exit 1 with `needle` in stderr (ignoring how the report wrapped its lines).
#[track_caller]
fn fails_with(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "expected exit 1\n{}", show(o));
    assert!(
        unwrap_lines(&support::stderr(o)).contains(&unwrap_lines(needle)),
        "stderr lacks {needle:?}\n{}",
        show(o)
    );
}

/// A new age identity file; returns (path, public key).
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (p, id.to_public().to_string())
}

/// A new unencrypted ssh-ed25519 key in `home/.ssh/id_ed25519`; returns the public key line.
fn ssh_key(home: &Path) -> String {
    let dir = home.join(".ssh");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "second@test", "-f"])
        .arg(&key)
        .output()
        .expect(
            "ssh-keygen is installed (openssh-client); it is needed for the SSH recipient test",
        );
    assert!(out.status.success(), "ssh-keygen failed: {out:?}");
    std::fs::read_to_string(dir.join("id_ed25519.pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// init → set → get → list → edit → recipients add (age and SSH) → rekey: each recipient opens
/// the vault alone; a removed one no longer can. Everything runs with RUST_LOG=trace and the
/// canary value appears in no output except `get`'s stdout.
#[test]
fn round_trip_with_several_recipients() {
    let w = World::new();
    let mut outputs: Vec<(String, Output)> = Vec::new();

    // init makes the identity (0600) and the vault.
    let o = rec(&mut outputs, "init", w.secrets(&["init"], None, &[]));
    ok(&o);
    let key = w.home.join(".config/hactl/age.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the identity is private");
    let recipients = std::fs::read_to_string(w.repo.join("secrets/demo.recipients")).unwrap();
    assert_eq!(
        recipients.lines().filter(|l| l.starts_with("age1")).count(),
        1
    );
    assert!(w
        .vault_bytes()
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    fails_with(&w.secrets(&["init"], None, &[]), "already exists");

    // set from stdin; get prints only the value.
    ok(&rec(
        &mut outputs,
        "set",
        w.secrets(&["set", "db_password"], Some(&format!("{CANARY}\n")), &[]),
    ));
    let multi = "-----BEGIN KEY-----\nline one\nline two\n-----END KEY-----\n";
    ok(&rec(
        &mut outputs,
        "set multi",
        w.secrets(&["set", "tls_key"], Some(multi), &[]),
    ));
    let got = w.secrets(&["get", "db_password"], None, &[]);
    assert_eq!(ok(&got), CANARY, "get prints exactly the value");
    assert_eq!(ok(&w.secrets(&["get", "tls_key"], None, &[])), multi);
    // With --json the value is in the one document on stdout, and nowhere on stderr (a CI
    // log): before, it was written to stderr beside a document without it.
    let o = w.secrets(&["get", "db_password", "--json"], None, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let doc: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("one document");
    assert_eq!(doc["value"], CANARY);
    assert_eq!(doc["name"], "db_password");
    assert!(!support::stderr(&o).contains(CANARY), "{}", show(&o));
    assert_eq!(
        ok(&rec(&mut outputs, "list", w.secrets(&["list"], None, &[]))),
        "db_password\ntls_key\n"
    );
    fails_with(
        &rec(
            &mut outputs,
            "get missing",
            w.secrets(&["get", "db_pasword"], None, &[]),
        ),
        "did you mean `db_password`?",
    );
    fails_with(
        &rec(
            &mut outputs,
            "set empty",
            w.secrets(&["set", "x"], Some(""), &[]),
        ),
        "stdin was empty",
    );
    fails_with(
        &rec(
            &mut outputs,
            "bad name",
            w.secrets(&["set", "a-b"], Some("v"), &[]),
        ),
        "not a valid secret name",
    );

    // edit: the script checks the copy is private, then adds one secret and drops another.
    let modes = w.root.join("modes");
    let editor = w.script(
        "edit.sh",
        &format!(
            "stat -c '%a' \"$1\" \"$(dirname \"$1\")\" > {modes}\n\
             grep -q '^db_password:' \"$1\" || exit 3\n\
             sed -i '/^tls_key:/,/^  -----END KEY-----$/d' \"$1\"\n\
             printf 'api_token: \"tok-123\"\\n' >> \"$1\"",
            modes = modes.display()
        ),
    );
    let o = rec(
        &mut outputs,
        "edit",
        w.secrets(&["edit"], None, &[("EDITOR", &editor)]),
    );
    ok(&o);
    assert_eq!(std::fs::read_to_string(&modes).unwrap(), "600\n700\n");
    assert!(
        support::stderr(&o).contains("added `api_token`"),
        "{}",
        show(&o)
    );
    assert!(
        support::stderr(&o).contains("removed `tls_key`"),
        "{}",
        show(&o)
    );
    assert_eq!(
        ok(&w.secrets(&["list"], None, &[])),
        "api_token\ndb_password\n"
    );
    assert_eq!(ok(&w.secrets(&["get", "api_token"], None, &[])), "tok-123");
    assert!(w.temp_leftovers().is_empty(), "{:?}", w.temp_leftovers());

    // A second (age) and a third (SSH) recipient.
    let keys = w.root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (second, second_pub) = age_key(&keys, "second.key");
    let ssh_home = w.root.join("ssh-home");
    let ssh_pub = ssh_key(&ssh_home);
    ok(&rec(
        &mut outputs,
        "add age",
        w.secrets(&["recipients", "add", &second_pub, "--no-rekey"], None, &[]),
    ));
    let words: Vec<&str> = ssh_pub.split(' ').collect();
    let mut args = vec!["recipients", "add", "--no-rekey"];
    args.extend(&words);
    ok(&rec(&mut outputs, "add ssh", w.secrets(&args, None, &[])));
    // Not yet re-encrypted: the new ones cannot open it.
    let empty_home = w.root.join("empty-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    fails_with(
        &w.secrets(
            &["get", "db_password"],
            None,
            &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &second)],
        ),
        "not a recipient of this vault",
    );
    ok(&rec(
        &mut outputs,
        "rekey",
        w.secrets(&["rekey"], None, &[]),
    ));
    assert_eq!(
        ok(&rec(
            &mut outputs,
            "list recipients",
            w.secrets(&["recipients", "list"], None, &[])
        ))
        .lines()
        .count(),
        3
    );

    // Each recipient alone: the init key, the age key, the SSH key.
    assert_eq!(
        ok(&w.secrets(
            &["get", "db_password"],
            None,
            &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &key)]
        )),
        CANARY
    );
    assert_eq!(
        ok(&w.secrets(
            &["get", "db_password"],
            None,
            &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &second)]
        )),
        CANARY
    );
    assert_eq!(
        ok(&w.secrets(&["get", "db_password"], None, &[("HOME", &ssh_home)])),
        CANARY
    );
    // HACTL_AGE_KEY holds the key itself (CI).
    let key_text = std::fs::read_to_string(&second).unwrap();
    let mut c = w.cmd(&["secrets", "list", "-f", &w.stack().display().to_string()]);
    c.env("HOME", &empty_home)
        .env("HACTL_AGE_KEY", key_text.trim());
    let o = c.output().unwrap();
    assert_eq!(ok(&o), "api_token\ndb_password\n");
    outputs.push(("list with HACTL_AGE_KEY".into(), o));

    // Remove the age recipient: it can no longer open the vault; the others still can.
    let o = rec(
        &mut outputs,
        "remove",
        w.secrets(&["recipients", "remove", &second_pub], None, &[]),
    );
    ok(&o);
    assert!(support::stderr(&o).contains("git history"), "{}", show(&o));
    assert!(support::stderr(&o).contains("rotate"), "{}", show(&o));
    let o = w.secrets(
        &["get", "db_password"],
        None,
        &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &second)],
    );
    fails_with(&o, "no identity can open the vault");
    assert!(support::stdout(&o).is_empty());
    assert_eq!(
        ok(&w.secrets(&["get", "db_password"], None, &[("HOME", &ssh_home)])),
        CANARY
    );
    assert_eq!(ok(&w.secrets(&["get", "db_password"], None, &[])), CANARY);
    outputs.push(("get removed".into(), o));

    // The canary shows up nowhere but `get`'s stdout (never in any stderr, logs at trace).
    for (what, o) in &outputs {
        for (stream, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            let text = String::from_utf8_lossy(text);
            assert!(
                !text.contains(CANARY) && !text.contains("tok-123"),
                "a secret leaked into the {stream} of `{what}`:\n{text}"
            );
        }
    }
    // The vault itself holds no plaintext.
    let vault = String::from_utf8_lossy(&w.vault_bytes()).into_owned();
    assert!(!vault.contains(CANARY) && !vault.contains("db_password"));
    assert!(w.temp_leftovers().is_empty(), "{:?}", w.temp_leftovers());
}

/// A world with an initialised vault holding the canary.
fn world_with_secret() -> World {
    let w = World::new();
    ok(&w.secrets(&["init"], None, &[]));
    ok(&w.secrets(&["set", "db_password"], Some(CANARY), &[]));
    w
}

/// Runs `get` and `set` (both must fail the same way) and checks the vault is byte-identical.
#[track_caller]
fn refused_without_change(w: &World, env: &[(&str, &Path)], needle: &str) {
    let before = w.vault_bytes();
    for args in [
        &["get", "db_password"][..],
        &["set", "other"][..],
        &["rekey"][..],
    ] {
        let o = w.secrets(args, Some("new-value"), env);
        fails_with(&o, needle);
        assert!(support::stdout(&o).is_empty(), "{}", show(&o));
        assert!(!support::stderr(&o).contains(CANARY), "{}", show(&o));
        assert_eq!(w.vault_bytes(), before, "`{args:?}` changed the vault");
    }
}

#[test]
fn wrong_key_is_one_clear_error_naming_what_was_tried() {
    let w = world_with_secret();
    let (other, _) = age_key(&w.root, "other.key");
    let empty_home = w.root.join("empty-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    refused_without_change(
        &w,
        &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &other)],
        "no identity can open the vault",
    );
    let o = w.secrets(
        &["get", "db_password"],
        None,
        &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &other)],
    );
    let err = support::stderr(&o);
    for tried in [
        "HACTL_AGE_KEY: not set",
        "not a recipient of this vault",
        ".config/hactl/age.key`: no such file",
        ".ssh/id_ed25519`: no such file",
        ".ssh/id_rsa`: no such file",
    ] {
        assert!(err.contains(tried), "the error lacks {tried:?}:\n{err}");
    }
    // A public key where the private key belongs is explained.
    let public = w.root.join("public.key");
    std::fs::write(
        &public,
        "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n",
    )
    .unwrap();
    let o = w.secrets(
        &["get", "db_password"],
        None,
        &[("HOME", &empty_home), ("HACTL_AGE_KEY_FILE", &public)],
    );
    fails_with(&o, "is a public key");
}

#[test]
fn truncated_vault_is_refused_unchanged() {
    let w = world_with_secret();
    let bytes = w.vault_bytes();
    std::fs::write(w.vault(), &bytes[..bytes.len() / 2]).unwrap();
    refused_without_change(&w, &[], "is damaged or was tampered with");
    std::fs::write(w.vault(), &bytes[..40]).unwrap();
    refused_without_change(&w, &[], "is damaged or was tampered with");
}

#[test]
fn tampered_ciphertext_is_refused_unchanged() {
    let w = world_with_secret();
    let text = String::from_utf8(w.vault_bytes()).unwrap();
    // Change one base64 character of the last full line of the body: payload, not header.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let last_body = lines.len() - 3;
    let line = &mut lines[last_body];
    let c = line.remove(10);
    line.insert(10, if c == 'A' { 'B' } else { 'A' });
    std::fs::write(w.vault(), lines.join("\n") + "\n").unwrap();
    refused_without_change(&w, &[], "is damaged or was tampered with");
}

#[test]
fn vault_of_another_stack_is_refused_unchanged() {
    let w = world_with_secret();
    // A stack named `other` whose vault file is demo's.
    let other = w.repo.join("stacks/other.yaml");
    std::fs::write(
        &other,
        STACK.replace("name: demo", "name: other") + "vault:\n  file: ../secrets/demo.age\n",
    )
    .unwrap();
    let before = w.vault_bytes();
    for args in [
        &["get", "db_password"][..],
        &["set", "x"][..],
        &["rekey"][..],
    ] {
        let o = w.secrets_for(&other, args, Some("v"), &[]);
        fails_with(&o, "belongs to the stack `demo`, not to `other`");
        assert_eq!(w.vault_bytes(), before);
    }
}

#[test]
fn yaml_error_inside_the_vault_is_refused_without_quoting_it() {
    let w = world_with_secret();
    // Encrypt broken YAML (holding the canary) to the user's own key.
    let key_text = std::fs::read_to_string(w.home.join(".config/hactl/age.key")).unwrap();
    let id: age::x25519::Identity = key_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .parse()
        .unwrap();
    let plain = format!("stack: demo\nsecrets:\n  db_password: [\"{CANARY}\"\n  x: y\n");
    let ct = age::encrypt_and_armor(&id.to_public(), plain.as_bytes()).unwrap();
    std::fs::write(w.vault(), ct).unwrap();
    refused_without_change(&w, &[], "the YAML inside the vault");
    let o = w.secrets(&["get", "db_password"], None, &[]);
    assert!(support::stderr(&o).contains("line "), "{}", show(&o));
}

#[test]
fn edit_with_invalid_yaml_leaves_the_vault_unchanged() {
    let w = world_with_secret();
    let before = w.vault_bytes();
    let editor = w.script("bad.sh", "printf 'a: [unclosed\\n' >> \"$1\"");
    let o = w.secrets(&["edit"], None, &[("EDITOR", &editor)]);
    fails_with(&o, "the YAML inside the vault");
    assert!(!support::stderr(&o).contains(CANARY));
    assert_eq!(w.vault_bytes(), before);
    assert!(w.temp_leftovers().is_empty(), "{:?}", w.temp_leftovers());
    // An editor that fails: unchanged too.
    let o = w.secrets(&["edit"], None, &[("EDITOR", Path::new("false"))]);
    fails_with(&o, "the editor failed");
    assert_eq!(w.vault_bytes(), before);
    assert!(w.temp_leftovers().is_empty(), "{:?}", w.temp_leftovers());
    // An editor that changes nothing: no rewrite.
    let o = w.secrets(&["edit"], None, &[("EDITOR", Path::new("true"))]);
    assert!(support::stderr(&ok_out(o)).contains("no changes"));
    assert_eq!(w.vault_bytes(), before);
}

/// `secrets edit` where no person is at a terminal (a CI job, a pipe): without EDITOR or
/// VISUAL it refuses to start `vi`, which would draw every secret on the redirected stdout; an
/// editor that writes the file to its stdout (as a terminal editor draws it) never reaches
/// hactl's stdout, which is not a terminal here.
#[test]
fn edit_without_a_terminal_never_draws_the_secrets_on_stdout() {
    let w = world_with_secret();
    let before = w.vault_bytes();
    let mut c = w.cmd(&["secrets", "edit", "-f", &w.stack().display().to_string()]);
    c.env_remove("EDITOR")
        .env_remove("VISUAL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = c.output().expect("hactl runs");
    fails_with(&o, "needs a terminal");
    assert!(
        support::stderr(&o).contains("hactl::vault::no_terminal"),
        "{}",
        show(&o)
    );
    assert_eq!(w.vault_bytes(), before);
    assert!(w.temp_leftovers().is_empty(), "{:?}", w.temp_leftovers());
    for json in [false, true] {
        let drawer = w.script("draw.sh", "cat \"$1\"");
        let mut args = vec!["edit"];
        if json {
            args.push("--json");
        }
        let o = w.secrets(&args, None, &[("EDITOR", &drawer)]);
        assert!(o.status.success(), "{}", show(&o));
        assert!(
            !support::stdout(&o).contains(CANARY),
            "json={json}: {}",
            show(&o)
        );
        assert!(
            !support::stderr(&o).contains(CANARY),
            "json={json}: {}",
            show(&o)
        );
    }
}

/// The vault of a stack file is the same however its path is written: `-f NAME.yaml` run
/// inside `stacks/` finds `secrets/NAME.age` beside `stacks/` (before, it looked for
/// `./secrets/` inside `stacks/`, and `secrets init` there would have made a second vault).
#[test]
fn the_vault_does_not_depend_on_how_the_stack_path_is_written() {
    let w = world_with_secret();
    let stack = w.stack();
    let name = stack.file_name().unwrap().to_str().unwrap().to_string();
    for (cwd, file) in [
        (w.repo.join("stacks"), name.clone()),
        (w.repo.join("stacks"), format!("./{name}")),
        (w.repo.join("secrets"), format!("../stacks/{name}")),
        (w.repo.clone(), stack.display().to_string()),
    ] {
        let mut c = w.cmd(&["secrets", "get", "db_password", "-f", &file]);
        c.current_dir(&cwd);
        let o = c.output().expect("hactl runs");
        assert!(o.status.success(), "{cwd:?} -f {file}: {}", show(&o));
        assert_eq!(support::stdout(&o), CANARY, "{cwd:?} -f {file}");
    }
    assert!(!w.repo.join("stacks/secrets").exists());
}

/// Keeps an output for the final leak check and returns it.
fn rec(outputs: &mut Vec<(String, Output)>, what: &str, o: Output) -> Output {
    outputs.push((what.to_string(), o.clone()));
    o
}

fn ok_out(o: Output) -> Output {
    assert!(o.status.success(), "expected success\n{}", show(&o));
    o
}

/// `secrets edit` interrupted by `signal` while the editor runs: the plaintext copy and its
/// private directory are gone, the vault is unchanged, exit 1; and while the plaintext was in
/// memory, core dumps were off (a core file would be a copy of it).
fn edit_interrupted_leaves_no_plaintext(signal: i32, name: &str) {
    let w = world_with_secret();
    let before = w.vault_bytes();
    let marker = w.root.join("editing");
    let editor = w.script(
        "slow.sh",
        &format!("echo \"$1\" > {}\nexec sleep 60", marker.display()),
    );
    // killed if the test fails before hactl exits (so it, and its editor, are not left running)
    let mut guard = support::KillOnDrop::new(
        w.cmd(&["secrets", "edit", "-f", &w.stack().display().to_string()])
            .env("EDITOR", &editor)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hactl runs"),
    );
    let child = guard.child();
    let deadline = Instant::now() + Duration::from_secs(30);
    let file = loop {
        if let Ok(t) = std::fs::read_to_string(&marker) {
            if !t.trim().is_empty() {
                break PathBuf::from(t.trim());
            }
        }
        assert!(Instant::now() < deadline, "the editor never started");
        assert!(child.try_wait().unwrap().is_none(), "hactl exited early");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        file.starts_with(&w.tmp),
        "{file:?} is not under the private temp dir"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir = file.parent().unwrap().to_path_buf();
    let pid = i32::try_from(child.id()).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line")
        .to_string();
    // SAFETY: signalling the child we spawned.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "hactl did not stop after {name}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!file.exists(), "the plaintext file survived {name}");
    assert!(!dir.exists(), "the private directory survived {name}");
    assert!(w.temp_leftovers().is_empty(), "{:?}", w.temp_leftovers());
    let o = guard.finish();
    fails_with(&o, "interrupted");
    assert_eq!(w.vault_bytes(), before);
    // Soft and hard limit 0: the editor (which inherits them) cannot raise it either.
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "core dumps were on while the plaintext was in memory: {core}"
    );
}

#[test]
fn edit_interrupted_by_sigint_leaves_no_plaintext() {
    edit_interrupted_leaves_no_plaintext(libc::SIGINT, "SIGINT");
}

#[test]
fn edit_interrupted_by_sigterm_leaves_no_plaintext() {
    edit_interrupted_leaves_no_plaintext(libc::SIGTERM, "SIGTERM");
}

#[test]
fn edit_interrupted_by_sighup_leaves_no_plaintext() {
    edit_interrupted_leaves_no_plaintext(libc::SIGHUP, "SIGHUP");
}

/// Regression (issue 15 §6): SIGQUIT (Ctrl-\\) killed hactl with its default action, leaving
/// the plaintext copy on disk and, where core dumps were enabled, a core file holding it.
#[test]
fn edit_interrupted_by_sigquit_leaves_no_plaintext() {
    edit_interrupted_leaves_no_plaintext(libc::SIGQUIT, "SIGQUIT");
}

/// The lab's committed vault opens with the committed demo key, holds what the lab stack
/// needs, and hactl warns that the key lives inside a git repository.
#[test]
fn lab_vault_opens_with_the_demo_key_and_warns() {
    let w = World::new();
    let root = support::root();
    let demo_key = root.join("secrets/lab.demo-key");
    let first = std::fs::read_to_string(&demo_key).expect("secrets/lab.demo-key exists");
    assert!(
        first
            .lines()
            .next()
            .unwrap()
            .contains("DEMO KEY FOR THE LAB ONLY"),
        "the demo key says what it is on its first line"
    );
    let stack = w.repo.join("stacks/lab.yaml");
    std::fs::write(
        &stack,
        format!(
            "{}vault:\n  file: {}\n  identity_file: {}\n",
            STACK.replace("name: demo", "name: lab"),
            root.join("secrets/lab.age").display(),
            demo_key.display()
        ),
    )
    .unwrap();
    let o = w.secrets_for(&stack, &["list"], None, &[]);
    let names = ok(&o);
    assert!(names.lines().any(|n| n == "vrrp_password"), "{names}");
    assert!(names.lines().any(|n| n == "canary"), "{names}");
    assert!(
        support::stderr(&o).contains("lives inside the git repository"),
        "{}",
        show(&o)
    );
    let vrrp = ok(&w.secrets_for(&stack, &["get", "vrrp_password"], None, &[]));
    assert!(
        !vrrp.is_empty() && vrrp.len() <= 8,
        "VRRP PASS is at most 8 characters"
    );
    let canary = ok(&w.secrets_for(&stack, &["get", "canary"], None, &[]));
    assert!(canary.len() >= 32, "the canary is long");
    let recipients = std::fs::read_to_string(root.join("secrets/lab.recipients")).unwrap();
    assert!(recipients.lines().any(|l| l.starts_with("age1")));
    // The real lab stack names the demo key itself: its references all resolve.
    let o = w.secrets_for(&root.join("stacks/lab.yaml"), &["check"], None, &[]);
    ok(&o);
    assert!(support::stderr(&o).contains("lives inside the git repository"));
}

/// `secret: NAME` values that the vault lacks are errors at their line:col, all at once, with
/// a suggestion; the ones it has pass.
#[test]
fn unknown_secret_references_are_reported_with_positions() {
    let w = world_with_secret();
    let stack = format!(
        "{STACK}vip:\n  address: 198.18.0.100/24\n  virtual_router_id: 51\n  \
         auth_pass: {{secret: db_pasword}}\n\
         app:\n  image: nginx\n  port: 8000\n  env:\n    DB: {{secret: db_password}}\n    \
         TOKEN: {{secret: api_token}}\n"
    );
    std::fs::write(w.stack(), &stack).unwrap();
    let o = w.secrets(&["check"], None, &[]);
    fails_with(&o, "2 problems");
    let err = support::stderr(&o);
    assert!(
        err.contains("unknown secret `db_pasword` in `vip.auth_pass`"),
        "{err}"
    );
    assert!(err.contains("did you mean `db_password`?"), "{err}");
    assert!(
        err.contains("unknown secret `api_token` in `app.env.TOKEN`"),
        "{err}"
    );
    assert!(err.contains("demo.yaml:11:14"), "{err}");
    assert!(err.contains("demo.yaml:17:12"), "{err}");
    assert!(!err.contains(CANARY));
    ok(&w.secrets(&["set", "api_token"], Some("t"), &[]));
    std::fs::write(w.stack(), stack.replace("db_pasword", "db_password")).unwrap();
    ok(&w.secrets(&["check"], None, &[]));
}
