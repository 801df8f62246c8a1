//! Integration tests: `hactl render` on the lab stack, through the real binary. `--check`
//! runs the real keepalived, nginx and haproxy installed on this machine; a missing one makes
//! the test fail with hactl's "install it" message, never skip.

use std::os::unix::fs::PermissionsExt;

use crate::support;

const HOSTS: [&str; 3] = ["host1", "host2", "host3"];
const FILES: [&str; 3] = [
    "/etc/nginx/nginx.conf",
    "/etc/haproxy/haproxy.cfg",
    "/etc/keepalived/keepalived.conf",
];

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
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_string_lossy().into_owned();
    let out = support::ok(&["render", "-f", "stacks/lab.yaml", "--out", &out_arg]);
    for host in HOSTS {
        for path in FILES {
            let local = out_dir.join(host).join(path.trim_start_matches('/'));
            let meta = std::fs::metadata(&local)
                .unwrap_or_else(|e| panic!("{} missing: {e}\n{out}", local.display()));
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                0o644,
                "{}",
                local.display()
            );
            assert!(
                out.contains(&format!("wrote {} (0644)", local.display())),
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
        let keepalived =
            std::fs::read_to_string(out_dir.join(host).join("etc/keepalived/keepalived.conf"))
                .expect("keepalived.conf");
        let state = if host == "host1" { "MASTER" } else { "BACKUP" };
        assert!(
            keepalived.contains(&format!("    state {state}\n")),
            "{keepalived}"
        );
        assert!(keepalived.contains("    router_id "), "{keepalived}");
    }
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
    assert_eq!(entries.len(), HOSTS.len() * FILES.len(), "{entries:?}");
    assert!(
        entries.iter().all(|e| !e.contains("hactl-tmp")),
        "{entries:?}"
    );
}

#[test]
fn render_lists_one_host_with_headers() {
    let out = support::ok(&["render", "-f", "stacks/lab.yaml", "--host", "host2"]);
    assert!(
        out.contains("== host host2: 3 files; services in start order: nginx, haproxy, keepalived"),
        "{out}"
    );
    for path in FILES {
        assert!(out.contains(&format!("--- host2:{path} (0644")), "{out}");
    }
    assert!(!out.contains("host1:"), "{out}");
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
    let out = support::ok(&["render", "-f", "stacks/lab.yaml", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["stack"], "lab");
    let hosts = doc["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0]["services"][2], "keepalived");
    assert_eq!(
        hosts[0]["files"][2]["path"],
        "/etc/keepalived/keepalived.conf"
    );
    assert_eq!(hosts[0]["files"][2]["check"], "keepalived");
    assert_eq!(
        hosts[0]["files"][2]["sha256"].as_str().map(str::len),
        Some(64)
    );
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
