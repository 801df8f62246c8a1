//! Integration tests: the lab. Real hosts in network namespaces (needs root and the lab's
//! tools: a missing one fails the test with the install line, nothing is skipped). Every test
//! holds `support::lab_guard()` and leaves the lab down, even when it fails.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use crate::support::{self, lab_guard, ok, run, stderr, stdout};

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

/// Checks (through `hactl lab check`) that traffic to `addr` stays on the lab bridge. Tests
/// call it before sending anything to a lab address.
pub fn require_lab_route(addr: &str) {
    let o = run(&["lab", "check", addr]);
    assert!(
        o.status.success(),
        "{addr} does not route via hactl0; refusing to send traffic to it:\n{}",
        stderr(&o)
    );
}

fn ssh_config() -> String {
    support::lab_dir().join("ssh_config").display().to_string()
}

fn ssh(args: &[&str]) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(ssh_config())
        .args(args)
        .output()
        .expect("ssh runs (package openssh-client)")
}

/// `hactl lab exec HOST -- argv...`
fn lab_exec(host: &str, argv: &[&str]) -> Output {
    let mut args = vec!["lab", "exec", host, "--"];
    args.extend_from_slice(argv);
    run(&args)
}

fn lab_exec_ok(host: &str, argv: &[&str]) -> String {
    let o = lab_exec(host, argv);
    assert!(
        o.status.success(),
        "lab exec {host} {argv:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn timed_up(hosts: usize) -> (String, f64) {
    let t = Instant::now();
    let out = ok(&["lab", "up", "--hosts", &hosts.to_string()]);
    (out, t.elapsed().as_secs_f64())
}

fn host_pids(json: &str) -> Vec<(String, u64, bool)> {
    let v: serde_json::Value = serde_json::from_str(json).expect("lab up --json is JSON");
    v["hosts"]
        .as_array()
        .expect("hosts array")
        .iter()
        .map(|h| {
            (
                h["name"].as_str().expect("name").to_string(),
                h["pid"].as_u64().expect("pid"),
                h["started"].as_bool().expect("started"),
            )
        })
        .collect()
}

#[test]
fn lab_hosts_answer_ssh_with_strict_host_keys() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    ok(&["lab", "down"]);
    let (summary, secs) = timed_up(3);
    eprintln!("lab up --hosts 3 (from nothing): {secs:.2} s");
    assert!(summary.contains("3 host(s)"), "{summary}");
    assert!(secs < 5.0, "lab up --hosts 3 took {secs:.2} s");

    // the safety net is in place, and the check refuses what is not on the bridge
    let routes = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["route", "show"])
            .output()
            .expect("ip runs")
            .stdout,
    )
    .into_owned();
    assert!(routes.contains("unreachable 198.18.0.0/15"), "{routes}");
    for bad in ["198.19.0.5", "127.0.0.1", "192.0.2.1"] {
        let o = run(&["lab", "check", bad]);
        assert!(
            !o.status.success(),
            "{bad} must not pass the lab route check"
        );
        assert!(
            stderr(&o).contains("hactl::lab::not_lab_route"),
            "{}",
            stderr(&o)
        );
    }

    let known = std::fs::read_to_string(support::lab_dir().join("known_hosts"))
        .expect("lab up writes known_hosts");
    assert_eq!(known.lines().count(), 3, "{known}");
    for i in 1..=3 {
        let (name, addr) = (format!("host{i}"), format!("198.18.0.{}", 10 + i));
        let line = known
            .lines()
            .find(|l| l.starts_with(&format!("{name},{addr} ssh-ed25519 AAAA")))
            .unwrap_or_else(|| panic!("no known_hosts line for {name}:\n{known}"));
        assert_eq!(line.split(' ').count(), 3, "{line}");
        require_lab_route(&addr);
        let o = ssh(&[&name, "hostname"]);
        assert!(o.status.success(), "ssh {name}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), name);
    }

    // a wrong key for host1 (host2's) is refused, and so is an empty known_hosts
    let tmp = tempfile::tempdir().expect("tempdir");
    let host2_key = known
        .lines()
        .nth(1)
        .expect("host2 line")
        .split_once(' ')
        .expect("key")
        .1;
    let wrong = tmp.path().join("wrong_known_hosts");
    std::fs::write(&wrong, format!("host1,198.18.0.11 {host2_key}\n")).expect("write");
    let empty = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    for kh in [&wrong, &empty] {
        let o = ssh(&[
            "-o",
            &format!("UserKnownHostsFile={}", kh.display()),
            "host1",
            "hostname",
        ]);
        assert!(!o.status.success(), "ssh with {kh:?} must fail");
        assert!(
            stderr(&o).contains("Host key verification failed"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn lab_hosts_are_isolated_and_exec_passes_exit_codes() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    ok(&["lab", "up", "--hosts", "3"]);

    assert_eq!(lab_exec_ok("host2", &["hostname"]).trim(), "host2");
    // PID 1 of a host is its sshd
    assert_eq!(
        lab_exec_ok("host1", &["cat", "/proc/1/comm"]).trim(),
        "sshd"
    );
    // exit code and both streams pass through
    let o = lab_exec("host1", &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"), "{}", stderr(&o));
    // unknown and absent hosts are clear errors
    let o = lab_exec("nothost", &["true"]);
    assert!(
        stderr(&o).contains("hactl::lab::unknown_host"),
        "{}",
        stderr(&o)
    );
    let o = lab_exec("host9", &["true"]);
    assert!(
        stderr(&o).contains("hactl::lab::host_down"),
        "{}",
        stderr(&o)
    );

    // no default route inside a host: only the lab subnet
    let routes = lab_exec_ok("host1", &["ip", "-4", "route", "show"]);
    assert!(!routes.contains("default"), "{routes}");
    assert!(routes.contains("198.18.0.0/24 dev eth0"), "{routes}");

    // /etc is a per-host overlay: a write lands in that host's upper dir only
    lab_exec_ok("host1", &["sh", "-c", "echo probe > /etc/hactl-lab-probe"]);
    assert!(
        !Path::new("/etc/hactl-lab-probe").exists(),
        "leaked to the machine"
    );
    assert!(!lab_exec("host2", &["test", "-e", "/etc/hactl-lab-probe"])
        .status
        .success());
    assert!(support::lab_dir()
        .join("hosts/host1/etc.upper/hactl-lab-probe")
        .exists());
    assert_eq!(
        lab_exec_ok("host3", &["cat", "/etc/hostname"]).trim(),
        "host3"
    );
    // private /root from /etc/skel
    assert!(lab_exec("host1", &["test", "-f", "/root/.bashrc"])
        .status
        .success());

    let status: serde_json::Value =
        serde_json::from_str(&ok(&["lab", "status", "--json"])).expect("status JSON");
    assert_eq!(status["bridge"], "hactl0 198.18.0.1/24");
    assert_eq!(status["safety_route"], true);
    let hosts = status["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "{status}");
    for h in hosts {
        assert_eq!(h["sshd"], true, "{h}");
        assert!(h["pid"].as_u64().is_some(), "{h}");
        assert!(h["processes"].as_u64().unwrap_or(0) >= 2, "{h}");
    }
}

#[test]
fn lab_up_is_idempotent_and_down_leaves_nothing() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    ok(&["lab", "down"]);
    let first = host_pids(&ok(&["lab", "up", "--hosts", "2", "--json"]));
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|h| h.2), "all started: {first:?}");

    let again = host_pids(&ok(&["lab", "up", "--hosts", "2", "--json"]));
    assert_eq!(
        again.iter().map(|h| (&h.0, h.1)).collect::<Vec<_>>(),
        first.iter().map(|h| (&h.0, h.1)).collect::<Vec<_>>(),
        "a second up leaves running hosts alone"
    );
    assert!(again.iter().all(|h| !h.2), "nothing started: {again:?}");

    let grown = host_pids(&ok(&["lab", "up", "--hosts", "3", "--json"]));
    assert_eq!(grown.len(), 3);
    assert_eq!(
        &grown[..2].iter().map(|h| h.1).collect::<Vec<_>>(),
        &first.iter().map(|h| h.1).collect::<Vec<_>>()
    );
    assert!(grown[2].2 && grown[2].0 == "host3", "{grown:?}");
    assert_eq!(
        std::fs::read_to_string(support::lab_dir().join("known_hosts"))
            .expect("known_hosts")
            .lines()
            .count(),
        3
    );

    let t = Instant::now();
    ok(&["lab", "down"]);
    eprintln!("lab down (3 hosts): {:.2} s", t.elapsed().as_secs_f64());
    assert_nothing_left();
    // down is idempotent
    ok(&["lab", "down"]);
    assert_nothing_left();
    // and up works after down
    let (_, secs) = timed_up(1);
    eprintln!("lab up --hosts 1 after down: {secs:.2} s");
    assert_eq!(ssh(&["host1", "hostname"]).status.code(), Some(0));
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_nothing_left() {
    let netns = sh("ip netns list");
    assert!(
        !netns.lines().any(|l| l.starts_with("host")),
        "namespaces left: {netns}"
    );
    assert!(!Path::new("/sys/class/net/hactl0").exists(), "hactl0 left");
    let links = sh("ip -o link show");
    assert!(
        !links
            .lines()
            .any(|l| l.split(": ").nth(1).is_some_and(|n| n.starts_with("hv"))),
        "veths left: {links}"
    );
    let routes = sh("ip -4 route show table all");
    assert!(
        !routes.contains("198.18.") && !routes.contains("198.19."),
        "routes left: {routes}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains("hactl-lab") && !mounts.contains("/run/netns/host"),
        "mounts left: {mounts}"
    );
    // `ip netns add` made /run/netns a mount point; with no namespace left, down unmounts it
    let netns_empty = std::fs::read_dir("/run/netns").map_or(true, |mut d| d.next().is_none());
    if netns_empty {
        assert!(
            !mounts
                .lines()
                .any(|l| l.split(' ').nth(4) == Some("/run/netns")),
            "/run/netns is still mounted"
        );
    }
    // no process runs from the lab dir (sshd -f /srv/hactl-lab/..., unshare ... __init)
    let lab = support::lab_dir().display().to_string();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(&lab),
            "process {:?} left: {cmdline}",
            e.file_name()
        );
    }
}

#[test]
fn lab_systemctl_stand_in_runs_nginx_per_host() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    ok(&["lab", "up", "--hosts", "3"]);

    lab_exec_ok("host2", &["systemctl", "start", "nginx"]);
    assert_eq!(
        lab_exec_ok("host2", &["systemctl", "is-active", "nginx"]).trim(),
        "active"
    );
    let status = lab_exec_ok("host2", &["systemctl", "status", "nginx.service"]);
    assert!(status.contains("active (running)"), "{status}");
    // only on host2: each host has its own /run
    let o = lab_exec("host1", &["systemctl", "is-active", "nginx"]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(3), "inactive"));

    require_lab_route("198.18.0.12");
    let code = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ])
        .arg("http://198.18.0.12/")
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&code.stdout), "200");

    lab_exec_ok("host2", &["systemctl", "stop", "nginx"]);
    let o = lab_exec("host2", &["systemctl", "is-active", "nginx"]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(3), "inactive"));

    // unknown units answer like systemd's "not found"
    let o = lab_exec("host1", &["systemctl", "is-active", "nosuch"]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(3), "inactive"));
    assert_eq!(
        lab_exec("host1", &["systemctl", "status", "nosuch"])
            .status
            .code(),
        Some(4)
    );
    let o = lab_exec("host1", &["systemctl", "start", "nosuch.service"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    // enable/is-enabled state is per host
    lab_exec_ok("host1", &["systemctl", "enable", "haproxy"]);
    assert_eq!(
        lab_exec_ok("host1", &["systemctl", "is-enabled", "haproxy"]).trim(),
        "enabled"
    );
    assert_eq!(
        lab_exec("host3", &["systemctl", "is-enabled", "haproxy"])
            .status
            .code(),
        Some(1)
    );
    // the machine's own systemctl is untouched
    assert!(!sh("head -c 2 /usr/bin/systemctl").starts_with("#!"));
}

/// A container's IPv4 address inside a lab host, run with `network` (None: podman's default
/// network) and podman's network backend forced to `backend` (None: podman's own choice).
fn container_addr(host: &str, backend: Option<&str>, network: Option<&str>) -> String {
    let mut argv: Vec<String> = Vec::new();
    if let Some(b) = backend {
        // the lab's containers.conf with the backend pinned, read instead of the lab's own
        let conf = format!("/etc/containers/hactl-test-{b}.conf");
        lab_exec_ok(
            host,
            &[
                "sh",
                "-c",
                &format!(
                    "sed 's/^\\[network\\]$/[network]\\nnetwork_backend = \"{b}\"/' \
                     /etc/containers/containers.conf > {conf}"
                ),
            ],
        );
        argv.extend(["env".into(), format!("CONTAINERS_CONF={conf}")]);
    }
    argv.push("podman".into());
    let mut info = argv.clone();
    info.extend(["info", "--format", "{{.Host.NetworkBackend}}"].map(String::from));
    let info: Vec<&str> = info.iter().map(String::as_str).collect();
    let used = lab_exec_ok(host, &info);
    if let Some(b) = backend {
        assert_eq!(
            used.trim(),
            b,
            "podman on {host} did not use the {b} backend"
        );
    }
    if let Some(n) = network {
        let mut create = argv.clone();
        create.extend(["network", "create", n].map(String::from));
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        lab_exec_ok(host, &create);
    }
    argv.extend(["run", "--rm"].map(String::from));
    if let Some(n) = network {
        argv.extend(["--network", n].map(String::from));
    }
    argv.extend(
        [
            "localhost/lab-busybox:test",
            "/bin/busybox",
            "ip",
            "-4",
            "-o",
            "addr",
        ]
        .map(String::from),
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = lab_exec_ok(host, &argv);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .filter(|w| w.contains('/') && !w.starts_with("127."))
        .map(str::to_string)
        .next()
        .unwrap_or_else(|| panic!("no IPv4 address in the container's output: {out}"))
}

/// Regression (issue 16): on a machine where Debian's podman was just installed, its
/// `/etc/cni/net.d/87-podman-bridge.conflist` (10.88.0.0/16) won over the lab's
/// `default_subnet` with the CNI backend, and containers got addresses outside the lab range.
/// Every container network of a lab host, with either network backend, must stay inside
/// 198.18.0.0/15, and nothing of the machine's own podman config or network may change.
#[test]
fn lab_podman_networks_stay_in_the_lab_range_with_both_backends() {
    let _g = lab_guard();
    let _down = DownOnDrop;
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "this test needs a static busybox for its image: apt-get install -y busybox-static"
    );
    let before = support::machine_state();
    let debian_default = Path::new("/etc/cni/net.d/87-podman-bridge.conflist");
    assert!(
        debian_default.exists(),
        "this test needs the condition of a fresh Debian podman install (the CNI default \
         conflist, 10.88.0.0/16): apt-get install --reinstall podman"
    );
    ok(&["lab", "up", "--hosts", "3"]);

    // a one-binary rootfs, imported without any registry (the tar sits in the shared /tmp)
    let tmp = tempfile::Builder::new()
        .prefix("hactl-lab-rootfs")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
    let tar = tmp.path().join("rootfs.tar");
    let o = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .expect("tar runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tar = tar.display().to_string();

    let out = lab_exec_ok(
        "host1",
        &["podman", "import", "-q", &tar, "localhost/lab-busybox:test"],
    );
    assert!(!out.trim().is_empty(), "podman import printed no image id");
    // the image is this host's only: storage is per host
    let o = lab_exec(
        "host2",
        &["podman", "image", "exists", "localhost/lab-busybox:test"],
    );
    assert_eq!(o.status.code(), Some(1));
    let range: ipnet::Ipv4Net = "198.18.0.0/15".parse().expect("range");
    let default_subnet: ipnet::Ipv4Net = "198.19.0.0/24".parse().expect("subnet");
    let pool: ipnet::Ipv4Net = "198.19.64.0/18".parse().expect("pool");
    // host1: podman's own choice of backend; host2: CNI; host3: netavark (one backend per
    // host: podman keeps its choice in the host's storage)
    for (host, backend) in [
        ("host1", None),
        ("host2", Some("cni")),
        ("host3", Some("netavark")),
    ] {
        if host != "host1" {
            lab_exec_ok(
                host,
                &["podman", "import", "-q", &tar, "localhost/lab-busybox:test"],
            );
        }
        // podman's default network, then a named one as podman-compose creates per project
        for (network, expected) in [(None, default_subnet), (Some("hactl-x-blue_default"), pool)] {
            let addr: ipnet::Ipv4Net = container_addr(host, backend, network)
                .parse()
                .expect("an address/prefix");
            assert!(
                expected.contains(&addr.addr()) && range.contains(&addr),
                "{host} ({backend:?}, network {network:?}): container got {addr}, expected \
                 inside {expected}"
            );
        }
    }
    ok(&["lab", "down"]);
    assert_eq!(
        before,
        support::machine_state(),
        "the lab changed the machine's podman config or network"
    );
}

#[test]
fn lab_up_refuses_without_root() {
    let _g = lab_guard();
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_hactl"))
        .args([
            "lab",
            "up",
            "--hosts",
            "1",
            "--dir",
            "/tmp/hactl-lab-nonroot",
        ])
        .output()
        .expect("setpriv runs (package util-linux)");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("hactl::lab::not_root"),
        "{}",
        stderr(&o)
    );
    let o = run(&["lab", "up", "--hosts", "0"]);
    assert!(
        stderr(&o).contains("hactl::lab::host_count"),
        "{}",
        stderr(&o)
    );
    let o = run(&["lab", "up", "--hosts", "1", "--dir", "/etc/hactl-lab"]);
    assert!(stderr(&o).contains("hactl::lab::bad_dir"), "{}", stderr(&o));
}
