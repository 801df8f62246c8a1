//! Snapshot tests: every template × fixture stack, plus the rules around them (which files a
//! host gets, start order, sensitivity, unknown secrets, template overrides).
//!
//! Fixtures are YAML text loaded through `stack::load_bytes`, so they go through the same
//! validation and resolution as a real stack file. The lab stack is the real
//! `stacks/lab.yaml` with its real vault (the committed demo key): snapshots redact every
//! secret value, and failure messages never print a file that holds one.

use std::path::{Path, PathBuf};

use super::context::CHECK_SCRIPT;
use super::*;
use crate::stack;
use crate::vault::Secret;

/// The real lab stack file: its vault and its `files:` templates resolve from its directory.
fn lab_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/lab.yaml")
}

/// Two hosts, multicast, sub-second adverts (so VRRP v3), no preemption, a service check.
const MULTICAST_V3: &str = r#"
name: fast
provider: hosts
hosts:
  - name: lb1
    address: 198.18.0.21
    priority: 120
  - name: lb2
    address: 198.18.0.22
    priority: 110
vip:
  address: 198.18.0.200/24
  interface: eth0
  virtual_router_id: 77
  advert_int: 100ms
  mode: multicast
  preempt: false
  garp:
    master_refresh: 60s
  checks:
    - name: nginx_up
      service: nginx
      interval: 2s
      timeout: 1s
      fall: 3
      rise: 2
      weight: 0
nginx:
  listen: 80
"#;

/// Sub-second checks of each kind and weight sign beside a whole-second one.
const FAST_CHECKS: &str = r#"
name: quick
provider: hosts
hosts:
  - name: q1
    address: 198.18.0.41
    priority: 150
  - name: q2
    address: 198.18.0.42
    priority: 100
vip:
  address: 198.18.0.201/24
  interface: eth0
  virtual_router_id: 78
  advert_int: 100ms
  checks:
    - name: nginx
      http: http://127.0.0.1:80/healthz
      interval: 100ms
      fall: 1
      rise: 1
      weight: 0
    - name: haproxy
      service: haproxy
      interval: 200ms
      weight: -60
    - name: disk
      script: /usr/local/bin/disk-ok
      interval: 500ms
      timeout: 250ms
      fall: 2
      rise: 3
      weight: 60
    - name: slow
      script: /usr/local/bin/slow-ok
      interval: 5s
      timeout: 2s
nginx:
  listen: 80
"#;

/// Notify hooks of every kind, a preempt delay and an auth password from the vault.
const NOTIFY: &str = r#"
name: hooks
provider: hosts
hosts:
  - name: n1
    address: 198.18.0.31
    priority: 200
  - name: n2
    address: 198.18.0.32
    priority: 100
vip:
  address: 198.18.0.210/24
  virtual_router_id: 9
  advert_int: 1s
  auth_pass: {secret: vrrp_pass}
  preempt_delay: 5s
  checks:
    - name: probe
      script: /usr/bin/test -e /run/nginx.pid
      weight: -150
  notify:
    master:
      - command: echo "now master" >> /var/log/hactl-vrrp.log
      - webhook: http://127.0.0.1:9000/hook
    backup:
      - command: logger backup
    fault:
      - email: ops@example.com
    stop:
      - webhook: http://127.0.0.1:9000/hook
"#;

/// Seed 000 on EC2: a secondary private IP moved by the notify hook with keys from the vault,
/// through an explicit endpoint, a master hook besides.
const AWS_SECONDARY: &str = r#"
name: syslog-aws
provider: hosts
hosts:
  - name: s1
    address: 10.20.1.11
    priority: 150
  - name: s2
    address: 10.20.1.12
    priority: 100
vip:
  address: 10.20.1.50/24
  virtual_router_id: 60
  aws:
    mode: secondary_ip
    region: eu-west-1
    endpoint: https://vpce-0a1b2c3d.ec2.eu-west-1.vpce.amazonaws.com/
    interfaces:
      s1: eni-0a1b2c3d4e5f60718
      s2: eni-0b2c3d4e5f6071829
    access_key_id: {secret: vip_key_id}
    secret_access_key: {secret: vip_secret_key}
    attempts: 3
    deadline: 15s
  notify:
    master:
      - webhook: http://127.0.0.1:9000/hook
"#;

/// An Elastic IP on the VIP, the instance role's credentials and interfaces from IMDSv2.
const AWS_ELASTIC: &str = r#"
name: eip
provider: hosts
hosts:
  - name: e1
    address: 10.30.1.11
  - name: e2
    address: 10.30.1.12
vip:
  address: 10.30.1.50/24
  virtual_router_id: 61
  aws:
    mode: elastic_ip
    allocation_id: eipalloc-0123456789abcdef0
    region: us-east-2
"#;

/// The app behind nginx, two replicas, env with a secret, a user file from the stack dir.
const APP: &str = r#"
name: shop
provider: hosts
hosts:
  - name: web1
    address: 198.18.0.41
  - name: web2
    address: 198.18.0.42
nginx:
  listen: 80
  health_path: /healthz
app:
  image: ghcr.io/acme/shop:1.4
  port: 8080
  host_port: 8000
  replicas: 2
  command: [gunicorn, "-b", "0.0.0.0:8080", "shop:app"]
  env:
    MODE: production
    DB_PASSWORD: {secret: db_password}
  volumes:
    - /srv/shop/media:/app/media
  health:
    path: /ping
    interval: 500ms
    timeout: 2s
  stop_grace_period: 20s
vars:
  greeting: hello
files:
  - template: motd.j2
    dest: /etc/motd
    mode: "0644"
  - template: db.env.j2
    dest: /etc/shop/db.env
"#;

fn load(name: &str, yaml: &str) -> Stack {
    match stack::load_bytes(Path::new(name), yaml.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("fixture {name} is invalid: {e:?}"),
    }
}

/// The lab stack and its decrypted vault (`vault.identity_file` names the demo key).
fn lab() -> (Stack, Secrets) {
    let s = match stack::load(&lab_path()) {
        Ok(s) => s,
        Err(e) => panic!("stacks/lab.yaml is invalid: {e:?}"),
    };
    let vault = match crate::vault::open(&s) {
        Ok(v) => v,
        Err(e) => panic!("the lab vault does not open with its demo key: {e}"),
    };
    for name in ["vrrp_password", "canary"] {
        assert!(vault.contains(name), "the lab vault has no `{name}`");
    }
    (s, vault)
}

/// `text` with every secret value replaced by `<secret NAME>`: what snapshots and failure
/// messages show. Longer values go first so one value inside another is never half-replaced.
fn redact(text: &str, secrets: &Secrets) -> String {
    let mut values: Vec<(&str, &str)> = secrets
        .values
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(value, &format!("<secret {name}>"));
    }
    out
}

fn secrets(pairs: &[(&str, &str)]) -> Secrets {
    let mut s = Secrets::default();
    for (k, v) in pairs {
        s.values.insert(k.to_string(), Secret::new(v.to_string()));
    }
    s
}

fn render(stack: &Stack, host: &str, secrets: &Secrets) -> HostConfig {
    let h = stack.host(host).expect("fixture host exists");
    match render_host(stack, h, secrets) {
        Ok(c) => c,
        Err(e) => panic!("render {host}: {e}"),
    }
}

fn file<'a>(c: &'a HostConfig, path: &str) -> &'a RenderedFile {
    c.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{} has no {path}: {:?}", c.host, paths(c)))
}

fn text(f: &RenderedFile) -> &str {
    std::str::from_utf8(&f.content).expect("utf-8")
}

fn paths(c: &HostConfig) -> Vec<&str> {
    c.files.iter().map(|f| f.path.as_str()).collect()
}

/// Snapshots every file of a host, named `<fixture>__<host>__<file name>`, with every secret
/// value redacted: no snapshot ever holds one.
fn snapshot_all(fixture: &str, c: &HostConfig, secrets: &Secrets) {
    for f in &c.files {
        // app-ctl is built as data by `onhost::app_ctl` and snapshotted there.
        if f.path.ends_with("/app-ctl") {
            continue;
        }
        let shown = redact(text(f), secrets);
        for (name, value) in &secrets.values {
            assert!(
                value.expose().is_empty() || !shown.contains(value.expose()),
                "{}: secret `{name}` survived redaction",
                f.path
            );
        }
        let base = f.path.rsplit('/').next().unwrap_or(&f.path);
        let name = format!("{fixture}__{}__{base}", c.host);
        let header = format!(
            "{} mode={:04o} service={:?} check={:?} sensitive={}",
            f.path, f.mode, f.service, f.check, f.sensitive
        );
        insta::with_settings!({ description => header, omit_expression => true }, {
            insta::assert_snapshot!(name, shown);
        });
    }
}

#[test]
fn lab_snapshots() {
    let (s, vault) = lab();
    for host in ["host1", "host2", "host3"] {
        let c = render(&s, host, &vault);
        let mut expected = vec![
            "/etc/nginx/nginx.conf",
            "/etc/haproxy/haproxy.cfg",
            NOTIFY_SCRIPT,
            "/etc/keepalived/keepalived.conf",
        ];
        if host == "host1" {
            expected.push("/etc/hactl-lab/canary.conf");
        }
        assert_eq!(paths(&c), expected);
        assert_eq!(c.services, ["nginx", "haproxy", "keepalived"]);
        // keepalived.conf reads the VRRP password from the vault: owner-only.
        let k = file(&c, "/etc/keepalived/keepalived.conf");
        assert!(k.sensitive, "auth_pass comes from the vault");
        assert_eq!(k.mode, 0o600);
        for plain in [
            "/etc/nginx/nginx.conf",
            "/etc/haproxy/haproxy.cfg",
            NOTIFY_SCRIPT,
        ] {
            assert!(!file(&c, plain).sensitive, "{plain} reads no secret");
        }
        snapshot_all("lab", &c, &vault);
    }
}

#[test]
fn lab_vrrp_password_comes_from_the_vault() {
    let (s, vault) = lab();
    let pass = vault
        .get("vrrp_password")
        .expect("checked by lab()")
        .expose();
    for host in ["host1", "host2", "host3"] {
        let c = render(&s, host, &vault);
        let k = text(file(&c, "/etc/keepalived/keepalived.conf"));
        // The message shows the redacted file, never the password.
        assert!(
            k.contains(&format!("        auth_pass {pass}\n")),
            "{host}: no auth_pass line with the vault's password:\n{}",
            redact(k, &vault)
        );
    }
}

#[test]
fn lab_files_hosts_filter_and_sensitive_canary() {
    const CANARY: &str = "/etc/hactl-lab/canary.conf";
    let (s, vault) = lab();
    let canary = vault.get("canary").expect("checked by lab()").expose();
    let c1 = render(&s, "host1", &vault);
    let f = file(&c1, CANARY);
    assert!(f.sensitive, "the canary file reads `secret.canary`");
    assert_eq!(f.mode, 0o600);
    assert_eq!(f.owner, None, "no owner in the stack: the default");
    assert_eq!(f.service, None, "no reload in the stack");
    assert!(
        text(f).ends_with(&format!("\ncanary={canary}\n")),
        "host1's canary file does not end with the vault's canary:\n{}",
        redact(text(f), &vault)
    );
    // `hosts: [host1]`: no other host gets the file, and no other file holds the canary.
    for host in ["host1", "host2", "host3"] {
        let c = render(&s, host, &vault);
        assert_eq!(
            c.files.iter().any(|f| f.path == CANARY),
            host == "host1",
            "{host}: {:?}",
            paths(&c)
        );
        for f in c.files.iter().filter(|f| f.path != CANARY) {
            assert!(
                !text(f).contains(canary),
                "{host} {}: holds the canary",
                f.path
            );
        }
    }
}

/// Without the `hosts:` filter the same entry reaches every host.
#[test]
fn files_without_hosts_go_to_every_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("note.j2"), "{{ host.name }}\n").expect("write");
    let yaml = format!("{MULTICAST_V3}files:\n  - template: note.j2\n    dest: /etc/note\n");
    let s = match stack::load_bytes(&dir.path().join("fast.yaml"), yaml.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("invalid: {e:?}"),
    };
    for host in ["lb1", "lb2"] {
        let c = render(&s, host, &Secrets::default());
        let f = file(&c, "/etc/note");
        assert_eq!(text(f), format!("{host}\n"));
        assert!(!f.sensitive);
        assert_eq!(f.mode, 0o644);
    }
}

#[test]
fn lab_master_is_the_highest_priority_host() {
    let (s, vault) = lab();
    let k1 = render(&s, "host1", &vault);
    let k2 = render(&s, "host2", &vault);
    let k1 = redact(text(file(&k1, "/etc/keepalived/keepalived.conf")), &vault);
    let k2 = redact(text(file(&k2, "/etc/keepalived/keepalived.conf")), &vault);
    assert!(k1.contains("    state MASTER\n"), "{k1}");
    assert!(k2.contains("    state BACKUP\n"), "{k2}");
    assert!(k1.contains("    priority 150\n") && k2.contains("    priority 100\n"));
    // keepalived 2.2.7 refuses two statements on one line: every `{` ends its line.
    for line in k1.lines() {
        if let Some(i) = line.find('{') {
            assert_eq!(line[i..].trim(), "{", "statement after `{{`: {line}");
        }
    }
}

#[test]
fn lab_nginx_answers_with_the_host_name() {
    let (s, vault) = lab();
    let c = render(&s, "host2", &vault);
    let n = text(file(&c, "/etc/nginx/nginx.conf"));
    assert!(n.contains("return 200 \"host2\\n\";"), "{n}");
    assert!(n.contains("location = /healthz {"), "{n}");
    assert!(!n.contains("sites-enabled"), "{n}");
}

#[test]
fn multicast_v3_snapshots() {
    let s = load("fast.yaml", MULTICAST_V3);
    for host in ["lb1", "lb2"] {
        let c = render(&s, host, &Secrets::default());
        let k = text(file(&c, "/etc/keepalived/keepalived.conf"));
        assert!(k.contains("    vrrp_version 3\n"), "{k}");
        assert!(k.contains("    advert_int 0.1\n"), "{k}");
        assert!(k.contains("    nopreempt\n"), "{k}");
        // nopreempt only works on an instance that starts as BACKUP: on every host.
        assert!(k.contains("    state BACKUP\n"), "{k}");
        assert!(!k.contains("unicast"), "{k}");
        assert!(!k.contains("authentication"), "{k}");
        snapshot_all("multicast_v3", &c, &Secrets::default());
    }
}

#[test]
fn sub_second_checks_run_as_a_loop_reporting_through_track_files() {
    let s = load("quick.yaml", FAST_CHECKS);
    let c = render(&s, "q1", &Secrets::default());
    assert_eq!(
        paths(&c),
        [
            "/etc/nginx/nginx.conf",
            NOTIFY_SCRIPT,
            CHECK_SCRIPT,
            "/etc/keepalived/keepalived.conf"
        ],
        "the check loop is written before the config that names it"
    );
    assert_eq!(file(&c, CHECK_SCRIPT).mode, 0o700);
    let k = text(file(&c, "/etc/keepalived/keepalived.conf"));
    // keepalived starts each sub-second loop once a second; the loop reports via the file.
    assert!(
        k.contains("    script \"/bin/sh /etc/keepalived/hactl-check.sh nginx\"\n    user root\n    interval 1\n"),
        "{k}"
    );
    assert!(k.contains("track_file trk_nginx {\n    file \"/run/hactl-check-VI_1-nginx\"\n    weight 0\n    init_file 0 overwrite\n"), "{k}");
    assert!(k.contains("track_file trk_haproxy {\n    file \"/run/hactl-check-VI_1-haproxy\"\n    weight -60\n    init_file 0 overwrite\n"), "{k}");
    // A positive weight counts while the check passes: the file holds 1 when OK.
    assert!(
        k.contains("    weight 60\n    init_file 1 overwrite\n"),
        "{k}"
    );
    assert!(
        k.contains(
            "    track_file {\n        trk_nginx\n        trk_haproxy\n        trk_disk\n    }\n"
        ),
        "{k}"
    );
    // The whole-second check stays a plain vrrp_script.
    assert!(
        k.contains("    script \"/usr/local/bin/slow-ok\"\n    interval 5\n    timeout 2\n"),
        "{k}"
    );
    assert!(!k.contains("trk_slow"), "{k}");
    let loop_ = text(file(&c, CHECK_SCRIPT));
    // The default timeout (1 s) shrinks to the interval; a written one is kept.
    // an http:// check is bash's /dev/tcp (render/http_probe.rs), bounded by timeout(1)
    assert!(
        loop_.contains("run() { /usr/bin/timeout -s KILL 0.1 /bin/bash -c 'exec 3<>"),
        "{loop_}"
    );
    assert!(
        loop_.contains("hactl-http-check 127.0.0.1 80 /healthz 127.0.0.1 0.1; }"),
        "{loop_}"
    );
    assert!(!loop_.contains("curl"), "{loop_}");
    assert!(
        loop_.contains("timeout -s KILL 0.25 /usr/local/bin/disk-ok"),
        "{loop_}"
    );
    assert!(loop_.contains("STEP=0.2 STEP_CS=20"), "{loop_}");
    assert!(!loop_.contains("slow"), "{loop_}");
    snapshot_all("fast_checks", &c, &Secrets::default());
}

/// A non-root `script_user` (seed 004's `keepalived_script`, here `nobody`): keepalived runs
/// the user's own whole-second check as that user (the global `script_user`), hactl's own
/// checks, check loop and notify script as root (`user root`, `notify … root`: they write
/// root-only state files), and inside them the user's commands drop to `script_user` with
/// runuser. With `script_user: root` nothing is wrapped (the other snapshots).
#[test]
fn non_root_script_user_runs_only_the_users_commands_as_that_user() {
    let yaml = FAST_CHECKS
        .replace(
            "  advert_int: 100ms\n",
            "  advert_int: 100ms\n  script_user: nobody\n  notify:\n    master:\n      - command: logger now master\n",
        );
    let s = load("script-user.yaml", &yaml);
    let c = render(&s, "q1", &Secrets::default());
    let k = text(file(&c, "/etc/keepalived/keepalived.conf"));
    assert!(k.contains("    script_user nobody\n"), "{k}");
    assert!(
        k.contains("    notify /etc/keepalived/hactl-notify.sh root\n"),
        "{k}"
    );
    // Every sub-second loop and hactl's own whole-second checks: root.
    for name in ["nginx", "haproxy", "disk"] {
        assert!(
            k.contains(&format!(
                "    script \"/bin/sh /etc/keepalived/hactl-check.sh {name}\"\n    user root\n"
            )),
            "{k}"
        );
    }
    // The user's whole-second script: keepalived's default, the script_user.
    assert!(
        k.contains("    script \"/usr/local/bin/slow-ok\"\n    interval 5\n"),
        "{k}"
    );
    let loop_ = text(file(&c, CHECK_SCRIPT));
    assert!(
        loop_.contains("/usr/sbin/runuser -u nobody -- /usr/bin/timeout -s KILL 0.25 /bin/sh -c /usr/local/bin/disk-ok;"),
        "{loop_}"
    );
    // hactl's own checks in the loop stay root's.
    assert!(
        loop_.contains("run() { /usr/bin/systemctl is-active --quiet haproxy; }"),
        "{loop_}"
    );
    let notify = text(file(&c, NOTIFY_SCRIPT));
    assert!(
        notify.contains(
            "/usr/sbin/runuser -u nobody -- /bin/sh -c 'logger now master' || failed command"
        ),
        "{notify}"
    );
    snapshot_all("script_user", &c, &Secrets::default());
}

#[test]
fn notify_hooks_snapshots() {
    let s = load("hooks.yaml", NOTIFY);
    let vault = secrets(&[("vrrp_pass", "s3cr3t")]);
    for host in ["n1", "n2"] {
        let c = render(&s, host, &vault);
        assert_eq!(
            paths(&c),
            [NOTIFY_SCRIPT, "/etc/keepalived/keepalived.conf"],
            "the notify script is written before the config that names it"
        );
        let script = file(&c, NOTIFY_SCRIPT);
        assert_eq!(script.mode, 0o700);
        assert!(!script.sensitive);
        let k = file(&c, "/etc/keepalived/keepalived.conf");
        assert!(k.sensitive, "auth_pass comes from the vault");
        assert_eq!(k.mode, 0o600);
        assert!(text(k).contains("        auth_pass s3cr3t\n"));
        // hactl's notify script runs as root whatever `script_user` is: it writes root-only state.
        assert!(text(k).contains("    notify /etc/keepalived/hactl-notify.sh root\n"));
        // preempt_delay is ignored by keepalived on an instance that starts as MASTER.
        assert!(text(k).contains("    state BACKUP\n"));
        assert!(text(k).contains("    preempt_delay 5\n"));
        snapshot_all("notify", &c, &vault);
    }
}

#[test]
fn notify_script_is_valid_shell() {
    let s = load("hooks.yaml", NOTIFY);
    let vault = secrets(&[("vrrp_pass", "x")]);
    let c = render(&s, "n1", &vault);
    let script = String::from_utf8_lossy(&file(&c, NOTIFY_SCRIPT).content).into_owned();
    crate::onhost::sh::assert_parses("the notify script", &script);
}

#[test]
fn aws_vip_secondary_ip_snapshots() {
    let s = load("syslog-aws.yaml", AWS_SECONDARY);
    let vault = secrets(&[
        ("vip_key_id", "AKIAFIXTUREKEYID0001"),
        ("vip_secret_key", "fixture/Secret+Key=never-in-the-script"),
    ]);
    for (host, eni) in [
        ("s1", "eni-0a1b2c3d4e5f60718"),
        ("s2", "eni-0b2c3d4e5f6071829"),
    ] {
        let c = render(&s, host, &vault);
        assert_eq!(
            paths(&c),
            [
                NOTIFY_SCRIPT,
                AWS_CREDENTIALS,
                "/etc/keepalived/keepalived.conf"
            ],
            "the script and its credentials are in place before keepalived reloads"
        );
        let keys = file(&c, AWS_CREDENTIALS);
        assert!(keys.sensitive && keys.mode == 0o600, "{:o}", keys.mode);
        assert!(text(keys)
            .lines()
            .any(|l| l.starts_with("HACTL_AWS_SECRET_ACCESS_KEY=")
                && l.contains("fixture/Secret+Key=never-in-the-script")));
        let script = file(&c, NOTIFY_SCRIPT);
        assert!(
            !script.sensitive,
            "the script reads the keys, it does not hold them"
        );
        let t = text(script);
        assert!(!t.contains("AKIAFIXTUREKEYID0001") && !t.contains("fixture/Secret"));
        assert!(t.contains(&format!("AWS_ENI={eni}\n")), "{t}");
        assert!(t.contains("    aws_move assign || failed aws-vip\n"), "{t}");
        assert!(
            t.contains("    aws_move unassign || failed aws-vip\n"),
            "{t}"
        );
        assert!(!t.contains("AssociateAddress&"), "{t}");
        // The move comes before the user's master hook.
        let (mv, hook) = (t.find("aws_move assign"), t.find("failed webhook"));
        assert!(mv < hook, "{t}");
        snapshot_all("aws_secondary", &c, &vault);
    }
}

#[test]
fn aws_vip_elastic_ip_with_instance_role_snapshots() {
    let s = load("eip.yaml", AWS_ELASTIC);
    let c = render(&s, "e1", &Secrets::default());
    assert_eq!(
        paths(&c),
        [NOTIFY_SCRIPT, "/etc/keepalived/keepalived.conf"],
        "no credentials file without keys: the instance role signs"
    );
    let t = text(file(&c, NOTIFY_SCRIPT));
    assert!(
        t.contains("AWS_ENI=''\n"),
        "asks IMDSv2 for the interface: {t}"
    );
    assert!(
        t.contains("AWS_ENDPOINT='https://ec2.us-east-2.amazonaws.com/'\n"),
        "{t}"
    );
    assert!(
        t.contains("    aws_move assign associate || failed aws-vip\n"),
        "{t}"
    );
    assert!(t.contains("iam/security-credentials/"), "{t}");
    snapshot_all("aws_elastic", &c, &Secrets::default());
}

/// Every variant of the AWS part of the notify script parses as POSIX sh (dash).
#[test]
fn aws_vip_notify_scripts_are_valid_shell() {
    let vault = secrets(&[("vip_key_id", "k"), ("vip_secret_key", "s")]);
    for (name, yaml) in [("a.yaml", AWS_SECONDARY), ("b.yaml", AWS_ELASTIC)] {
        let s = load(name, yaml);
        let host = &s.hosts[0].name;
        let c = render(&s, host, &vault);
        let script = String::from_utf8_lossy(&file(&c, NOTIFY_SCRIPT).content).into_owned();
        crate::onhost::sh::assert_parses(name, &script);
    }
}

#[test]
fn unknown_secret_names_template_and_secret() {
    let s = load("hooks.yaml", NOTIFY);
    let h = s.host("n1").expect("host");
    match render_host(&s, h, &Secrets::default()) {
        Err(RenderError::UnknownSecret { template, name, .. }) => {
            assert_eq!(template, "keepalived.conf.j2");
            assert_eq!(name, "vrrp_pass");
        }
        other => panic!("expected an unknown secret error, got {other:?}"),
    }
}

/// The app fixture lives in a temp dir with its user templates beside it.
fn app_stack(dir: &Path) -> Stack {
    std::fs::write(
        dir.join("motd.j2"),
        "{{ vars.greeting }} from {{ host.name }} ({{ stack.name }})\n",
    )
    .expect("write motd.j2");
    std::fs::write(
        dir.join("db.env.j2"),
        "DB_PASSWORD={{ secret.db_password }}\n",
    )
    .expect("write db.env.j2");
    let path = dir.join("shop.yaml");
    match stack::load_bytes(&path, APP.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("app fixture is invalid: {e:?}"),
    }
}

#[test]
fn app_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = app_stack(dir.path());
    let vault = secrets(&[("db_password", "hunter2")]);
    let c = render(&s, "web1", &vault);
    assert_eq!(
        paths(&c),
        [
            "/etc/hactl/shop/compose.env",
            "/etc/hactl/shop/docker-compose.yml",
            "/etc/hactl/shop/app-ctl",
            "/etc/nginx/nginx.conf",
            "/etc/motd",
            "/etc/shop/db.env"
        ]
    );
    assert_eq!(c.services, ["app", "nginx"]);
    // app.env (a secret included) is in its own 0600 file, which compose names by path: the
    // values never reach `podman run`'s argv, compose.log or the compose file.
    let env = file(&c, "/etc/hactl/shop/compose.env");
    assert!(env.sensitive, "env has a secret");
    assert_eq!(env.mode, 0o600);
    assert_eq!(env.service.as_deref(), Some("app"));
    assert!(
        text(env).contains("\nDB_PASSWORD='hunter2'\n"),
        "{}",
        text(env)
    );
    assert!(text(env).contains("\nMODE='production'\n"), "{}", text(env));
    let compose = file(&c, "/etc/hactl/shop/docker-compose.yml");
    assert!(!compose.sensitive, "the compose file holds no secret");
    assert!(!text(compose).contains("hunter2"));
    assert_eq!(compose.mode, 0o644);
    // app-ctl drives the compose project (blue/green slots): owner-only executable, no secret.
    let ctl = file(&c, "/etc/hactl/shop/app-ctl");
    assert_eq!(ctl.mode, 0o700);
    assert!(!ctl.sensitive);
    assert_eq!(ctl.service.as_deref(), Some("app"));
    let nginx = file(&c, "/etc/nginx/nginx.conf");
    assert!(!nginx.sensitive);
    // Loopback replicas are never benched (a blip of all of them must not leave 10 s of 502s).
    assert!(text(nginx).contains("server 127.0.0.1:8001 max_fails=0;"));
    // The balancers' health path (/healthz) reaches the app's own (/ping), not a fixed 200.
    let health = text(nginx)
        .split("location = /healthz {")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .expect("the health location");
    assert!(
        health.contains("proxy_pass http://$hactl_app/ping;"),
        "{health}"
    );
    assert!(!health.contains("return 200"), "{health}");
    let motd = file(&c, "/etc/motd");
    assert_eq!(text(motd), "hello from web1 (shop)\n");
    assert!(!motd.sensitive);
    let db = file(&c, "/etc/shop/db.env");
    assert!(db.sensitive);
    assert_eq!(db.mode, 0o600);
    snapshot_all("app", &c, &vault);
}

#[test]
fn compose_is_valid_yaml_with_the_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = app_stack(dir.path());
    let vault = secrets(&[("db_password", "hunter2")]);
    let c = render(&s, "web2", &vault);
    let compose = text(file(&c, "/etc/hactl/shop/docker-compose.yml"));
    let doc: serde_json::Value = serde_saphyr::from_str(compose).expect("compose is YAML");
    let services = doc["services"].as_object().expect("services map");
    assert_eq!(services.len(), 2);
    // app-ctl sets the port per slot; the default is the first (blue) slot's.
    assert_eq!(
        doc["services"]["app-2"]["ports"][0],
        "127.0.0.1:${HACTL_APP_PORT_2:-8001}:8080"
    );
    assert_eq!(
        doc["services"]["app-1"]["image"],
        "${HACTL_APP_IMAGE:-ghcr.io/acme/shop:1.4}"
    );
    assert_eq!(doc["services"]["app-1"]["restart"], "unless-stopped");
    assert_eq!(doc["services"]["app-1"]["command"][1], "-b");
    // the environment comes from the 0600 file, by path; nothing of app.env is inline
    assert_eq!(
        doc["services"]["app-1"]["env_file"][0],
        "/etc/hactl/shop/compose.env"
    );
    let inline = doc["services"]["app-1"]["environment"]
        .as_object()
        .expect("environment map");
    assert_eq!(inline.keys().collect::<Vec<_>>(), ["HACTL_HOST"]);
}

#[test]
fn app_secrets_that_an_env_file_cannot_carry_are_refused_at_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = app_stack(dir.path());
    let h = s.host("web1").expect("host");
    for bad in ["two\nlines", "it's"] {
        let vault = secrets(&[("db_password", bad)]);
        match render_host(&s, h, &vault) {
            Err(RenderError::EnvFile { name, reason }) => {
                assert_eq!(name, "DB_PASSWORD");
                assert!(!reason.contains(bad), "the error must not quote the secret");
            }
            other => panic!("expected an env file error for {bad:?}, got {other:?}"),
        }
    }
}

#[test]
fn templates_dir_overrides_an_embedded_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tdir = dir.path().join("tpl");
    std::fs::create_dir(&tdir).expect("mkdir");
    std::fs::write(tdir.join("nginx.conf.j2"), "# custom for {{ host.name }}\n").expect("write");
    let yaml = format!("{MULTICAST_V3}templates_dir: tpl\n");
    let path = dir.path().join("fast.yaml");
    let s = match stack::load_bytes(&path, yaml.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("invalid: {e:?}"),
    };
    let c = render(&s, "lb1", &Secrets::default());
    assert_eq!(
        text(file(&c, "/etc/nginx/nginx.conf")),
        "# custom for lb1\n"
    );
    // The others still come from the embedded set.
    assert!(text(file(&c, "/etc/keepalived/keepalived.conf")).contains("vrrp_instance VI_1 {"));
}

#[test]
fn a_typo_in_a_template_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // minijinja names the line, not the expression: the message quotes the line, cut at 120
    // characters (the second file's line is longer).
    let long = format!("# {}\n{{{{ vars.nosuch }}}} {}\n", "x", "y".repeat(200));
    std::fs::write(
        dir.path().join("bad.j2"),
        "line one\nport = {{ host.nmae }}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("long.j2"), long).expect("write");
    let mut messages = Vec::new();
    for t in ["bad.j2", "long.j2"] {
        let yaml = format!("{MULTICAST_V3}files:\n  - template: {t}\n    dest: /etc/bad\n");
        let s = match stack::load_bytes(&dir.path().join("fast.yaml"), yaml.as_bytes()) {
            Ok(s) => s,
            Err(e) => panic!("invalid: {e:?}"),
        };
        let h = s.host("lb1").expect("host");
        match render_host(&s, h, &Secrets::default()) {
            Err(e @ RenderError::Template { .. }) => {
                let RenderError::Template { template, host, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(template, t);
                assert_eq!(host, "lb1");
                messages.push(e.to_string());
            }
            other => panic!("expected a template error, got {other:?}"),
        }
    }
    insta::assert_snapshot!(messages.join("\n"));
}

#[test]
fn building_the_context_reads_no_secret() {
    // Only what a template touches counts: the context holds `app.env.DB_PASSWORD`, but a
    // file that does not use it must not be marked sensitive.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = app_stack(dir.path());
    let vault = Arc::new(secrets(&[("db_password", "hunter2")]));
    let tracker = Arc::new(context::Tracker::default());
    let conv = context::Converter::new(vault.clone(), tracker.clone());
    let h = s.host("web1").expect("host");
    let hosts = context::hosts_value(&s, &conv).expect("hosts");
    let ctx = context::build(
        &s,
        h,
        &hosts,
        &serde_json::Value::Null,
        &conv,
        &vault,
        &tracker,
    )
    .expect("context");
    assert!(ctx.get_attr("app").is_ok());
    assert!(tracker.touched().used.is_empty());
    let env = env::environment(None, s.dir().to_path_buf(), true);
    let out = env
        .render_str("{{ app.env.MODE }}", ctx.clone())
        .expect("renders");
    assert_eq!(out, "production");
    // Reading a plain key of a map that holds a secret does not count as reading the secret.
    assert!(tracker.touched().used.is_empty());
    let out = env
        .render_str("{{ app.env.DB_PASSWORD }}", ctx)
        .expect("renders");
    assert_eq!(out, "hunter2");
    assert_eq!(
        tracker.touched().used.into_iter().collect::<Vec<_>>(),
        ["db_password"]
    );
}

/// Every fixture's checked files pass the real tools installed here (the lab stack is checked
/// end to end through the binary in tests/it/render.rs).
#[tokio::test]
async fn fixtures_pass_the_real_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app_dir = tempfile::tempdir().expect("tempdir");
    let stacks = [
        (load("fast.yaml", MULTICAST_V3), Secrets::default()),
        (
            load("hooks.yaml", NOTIFY),
            secrets(&[("vrrp_pass", "s3cr3t")]),
        ),
        (app_stack(app_dir.path()), secrets(&[("db_password", "x")])),
        (
            load("syslog-aws.yaml", AWS_SECONDARY),
            secrets(&[("vip_key_id", "k"), ("vip_secret_key", "s")]),
        ),
    ];
    let mut checked = 0;
    for (s, vault) in &stacks {
        for h in &s.hosts {
            let c = render(s, &h.name, vault);
            let local = check::write_host(dir.path(), &c).await.expect("write");
            for (f, path) in c.files.iter().zip(&local) {
                let Some(kind) = f.check else { continue };
                let o = match check::run_check(kind, path).await {
                    Ok(o) => o,
                    Err(e) => panic!("{}: cannot run the real check: {e} (install it)", f.path),
                };
                assert!(
                    o.ok,
                    "{} {}: {:?} failed:\n{}",
                    h.name, f.path, o.argv, o.output
                );
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        2 * 2 + 2 + 2 + 2,
        "nginx+keepalived on 2 hosts, keepalived on 2, nginx on 2, keepalived on 2"
    );
}

/// The HA services' files (rsyslog, redis, sentinel, their pre-start script and haproxy's
/// redis proxies) for the lab stacks, one host each.
#[test]
fn services_snapshots() {
    for (fixture, file_name) in [
        ("lab_redis", "lab-redis.yaml"),
        ("lab_syslog", "lab-syslog.yaml"),
    ] {
        let path = lab_path().with_file_name(file_name);
        let s = match stack::load(&path) {
            Ok(s) => s,
            Err(e) => panic!("stacks/{file_name} is invalid: {e:?}"),
        };
        let c = render(&s, "host2", &Secrets::default());
        snapshot_all(fixture, &c, &Secrets::default());
    }
    let s = stack::load(&lab_path().with_file_name("lab-redis.yaml")).expect("lab-redis.yaml");
    let c = render(&s, "host2", &Secrets::default());
    let pre = c
        .files
        .iter()
        .find(|f| f.path.ends_with("prestart.sh"))
        .unwrap_or_else(|| panic!("no prestart script: {:?}", paths(&c)));
    // A fresh sentinel knows the replicas at once (not from the primary's next INFO).
    assert!(text(pre).contains("echo \"sentinel known-replica $NAME-9001 $h 9001\""));
}

/// Seed 002's client host: haproxy alone (no redis, no keepalived), checked and reloaded like
/// the front hosts', the first `vip` host active and the others `backup`; the front hosts'
/// haproxy.cfg is the one of the same stack without clients.
#[test]
fn redis_client_host_gets_the_backup_pattern_haproxy() {
    let path = lab_path().with_file_name("lab-redis-client.yaml");
    let s = stack::load(&path).unwrap_or_else(|e| panic!("lab-redis-client.yaml: {e:?}"));
    let c = render(&s, "host4", &Secrets::default());
    assert_eq!(paths(&c), ["/etc/haproxy/haproxy.cfg"]);
    assert_eq!(c.services, ["haproxy"]);
    let f = &c.files[0];
    assert_eq!(f.check, Some(CheckKind::Haproxy));
    assert_eq!(f.service.as_deref(), Some("haproxy"));
    snapshot_all("lab_redis_client", &c, &Secrets::default());

    let plain = stack::load(&path.with_file_name("lab-redis.yaml")).expect("lab-redis.yaml");
    let front = |s: &Stack| {
        let c = render(s, "host1", &Secrets::default());
        let f = c
            .files
            .iter()
            .find(|f| f.path == "/etc/haproxy/haproxy.cfg");
        // the header names the stack; the rest must not change
        text(f.expect("host1 has haproxy")).replace("lab-redis-client", "lab-redis")
    };
    assert_eq!(front(&s), front(&plain));
}
