//! Integration tests: `hactl render` on the lab stack, through the real binary. `--check`
//! runs the real keepalived, nginx and haproxy installed on this machine; a missing one makes
//! the test fail with hactl's "install it" message, never skip. The lab stack reads its VRRP
//! password and canary from the demo vault: those files are written 0600 and their content is
//! never printed, by hactl or by these tests' failure messages.

use std::os::unix::fs::PermissionsExt;

use crate::support;

const HOSTS: [&str; 3] = ["host1", "host2", "host3"];
/// The files `--check` checks, on every host.
const FILES: [&str; 3] = [
    "/etc/nginx/nginx.conf",
    "/etc/haproxy/haproxy.cfg",
    "/etc/keepalived/keepalived.conf",
];
const CANARY: &str = "/etc/hactl-lab/canary.conf";

/// Every file a lab host gets, in order, with its mode: keepalived.conf holds the VRRP
/// password and the canary file (host1 only, the `files:` `hosts:` filter) the canary.
fn lab_files(host: &str) -> Vec<(&'static str, u32)> {
    let mut files = vec![
        ("/etc/nginx/nginx.conf", 0o644),
        ("/etc/haproxy/haproxy.cfg", 0o644),
        ("/etc/keepalived/hactl-notify.sh", 0o700),
        ("/etc/keepalived/keepalived.conf", 0o600),
    ];
    if host == "host1" {
        files.push((CANARY, 0o600));
    }
    files
}

/// The lab vault's secret values, to prove an output does not hold them.
fn lab_secrets() -> Vec<(&'static str, String)> {
    ["vrrp_password", "canary"]
        .into_iter()
        .map(|name| {
            let v = support::ok(&["secrets", "get", name, "-f", "stacks/lab.yaml"]);
            let v = v.trim_end_matches('\n').to_string();
            assert!(!v.is_empty(), "the lab vault's `{name}` is empty");
            (name, v)
        })
        .collect()
}

fn assert_no_secret(what: &str, text: &str, secrets: &[(&str, String)]) {
    for (name, value) in secrets {
        // never print `text`: it would show the secret
        assert!(
            !text.contains(value.as_str()),
            "{what} shows the secret `{name}`"
        );
    }
}

#[test]
fn render_check_lab_passes_keepalived_nginx_and_haproxy() {
    let out = support::ok(&["render", "--check", "-f", "stacks/lab.yaml"]);
    for host in HOSTS {
        for path in FILES {
            let line = format!("ok   {host}:{path} (");
            assert!(out.contains(&line), "no `{line}` in:\n{out}");
        }
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert_eq!(out.lines().count(), HOSTS.len() * FILES.len(), "{out}");
}

#[test]
fn render_out_writes_every_file_with_its_mode() {
    let secrets = lab_secrets();
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_string_lossy().into_owned();
    let out = support::ok(&["render", "-f", "stacks/lab.yaml", "--out", &out_arg]);
    assert_no_secret("render --out's report", &out, &secrets);
    let mut expected_count = 0;
    for host in HOSTS {
        for (path, mode) in lab_files(host) {
            expected_count += 1;
            let local = out_dir.join(host).join(path.trim_start_matches('/'));
            let meta = std::fs::metadata(&local)
                .unwrap_or_else(|e| panic!("{} missing: {e}\n{out}", local.display()));
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                mode,
                "{}",
                local.display()
            );
            assert!(
                out.contains(&format!("wrote {} ({mode:04o})", local.display())),
                "{out}"
            );
        }
        let nginx = std::fs::read_to_string(out_dir.join(host).join("etc/nginx/nginx.conf"))
            .expect("nginx.conf");
        // The lab demo relies on GET / answering with the host's own name.
        assert!(
            nginx.contains(&format!("return 200 \"{host}\\n\";")),
            "{nginx}"
        );
        // keepalived.conf holds the VRRP password: its content is never shown here.
        let keepalived =
            std::fs::read_to_string(out_dir.join(host).join("etc/keepalived/keepalived.conf"))
                .expect("keepalived.conf");
        let state = if host == "host1" { "MASTER" } else { "BACKUP" };
        assert!(
            keepalived.contains(&format!("    state {state}\n")),
            "{host}: keepalived.conf is not in state {state}"
        );
        assert!(
            keepalived.contains("    router_id "),
            "{host}: keepalived.conf has no router_id"
        );
        let pass = &secrets[0].1;
        assert!(
            keepalived.contains(&format!("        auth_pass {pass}\n")),
            "{host}: keepalived.conf has no auth_pass with the vault's VRRP password"
        );
        assert_eq!(
            out_dir
                .join(host)
                .join(CANARY.trim_start_matches('/'))
                .exists(),
            host == "host1",
            "{host}: the canary file is for host1 only"
        );
    }
    let canary =
        std::fs::read_to_string(out_dir.join("host1").join(CANARY.trim_start_matches('/')))
            .expect("host1's canary.conf");
    assert!(
        canary.ends_with(&format!("\ncanary={}\n", secrets[1].1)),
        "host1's canary.conf does not end with the vault's canary"
    );
    // Nothing but the hosts' trees, and no temporary files left behind.
    let mut entries: Vec<String> = walk(&out_dir)
        .into_iter()
        .map(|p| {
            p.strip_prefix(&out_dir)
                .expect("under out")
                .display()
                .to_string()
        })
        .collect();
    entries.sort();
    assert_eq!(entries.len(), expected_count, "{entries:?}");
    assert!(
        entries.iter().all(|e| !e.contains("hactl-tmp")),
        "{entries:?}"
    );
}

#[test]
fn render_lists_one_host_with_headers() {
    let secrets = lab_secrets();
    let out = support::ok(&["render", "-f", "stacks/lab.yaml", "--host", "host2"]);
    assert_no_secret("render --host", &out, &secrets);
    assert!(
        out.contains("== host host2: 4 files; services in start order: nginx, haproxy, keepalived"),
        "{out}"
    );
    for (path, mode) in lab_files("host2") {
        assert!(
            out.contains(&format!("--- host2:{path} ({mode:04o}")),
            "{out}"
        );
    }
    // A sensitive file is listed with its size and hash, never its content.
    assert!(
        out.contains("--- host2:/etc/keepalived/keepalived.conf (0600")
            && out.contains("(sensitive, "),
        "{out}"
    );
    assert!(!out.contains("host1:"), "{out}");
    assert!(!out.contains(CANARY), "{out}");
    assert!(out.contains("return 200 \"host2\\n\";"), "{out}");
}

#[test]
fn render_unknown_host_names_the_known_ones() {
    let o = support::run(&["render", "-f", "stacks/lab.yaml", "--host", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let err = support::stderr(&o);
    assert!(err.contains("hactl::render::unknown_host"), "{err}");
    assert!(err.contains("`host1`, `host2`, `host3`"), "{err}");
}

#[test]
fn render_json_lists_files_without_writing() {
    let secrets = lab_secrets();
    let out = support::ok(&["render", "-f", "stacks/lab.yaml", "--json"]);
    assert_no_secret("render --json", &out, &secrets);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["stack"], "lab");
    let hosts = doc["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3);
    for (h, host) in hosts.iter().zip(HOSTS) {
        assert_eq!(h["services"][2], "keepalived");
        let paths: Vec<&str> = h["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .collect();
        let expected: Vec<&str> = lab_files(host).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, expected, "{host}");
    }
    let k = &hosts[0]["files"][3];
    assert_eq!(k["path"], "/etc/keepalived/keepalived.conf");
    assert_eq!(k["check"], "keepalived");
    assert_eq!(k["sensitive"], true);
    assert_eq!(k["mode"], "0600");
    // a secret-bearing file's digest is keyed, never a plain SHA-256 (offline guessing)
    assert!(k.get("sha256").is_none(), "{k}");
    assert!(
        k["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("hmac:") && d.len() == 17),
        "{k}"
    );
    // A sensitive file's content is left out; a plain one's is there.
    assert!(
        k.get("content").is_none(),
        "keepalived.conf content is in the JSON"
    );
    assert!(hosts[0]["files"][0]["content"].is_string());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
