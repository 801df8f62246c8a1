//! The hostile-string property test (issue 15 §2): every string field of the schema, and every
//! vault secret a template reads, gets strings built from injection fragments (quotes,
//! newlines, `;`, braces, `#`, `$`, `${…}`, backslash escapes, whole directives); the stack is
//! then loaded and rendered. Each case must end one of three ways: `validate` refuses it,
//! rendering refuses it (an escaping filter that cannot write the value), or every rendered
//! file has the same structure as the base stack's (same files; per line, the same keyword and
//! number of tokens, read with each format's own quoting rules; compose files the same YAML
//! shape). A sample of the accepted cases also goes through the real checkers (`nginx -t`,
//! `haproxy -c`, `keepalived -t`), as `render --check` runs them.
//!
//! The fields come from the JSON Schema (`stack::schema::string_fields`), so a new field is
//! covered without editing this test; a field missing from the base stack is created on the
//! fly (a field that cannot exist in a hosts stack, such as `aws.*`, then makes `validate`
//! refuse the stack, which is a pass: the field reaches no file of a hosts stack).
//!
//! Two fields are exempt from the structure comparison, by design: `nginx.extra` (raw nginx
//! directives the stack owner writes on purpose; `validate` keeps its braces balanced) and the
//! token count of nginx's `server_name` line (a list of names). Run time is bounded: a fixed
//! pass of the issue's payloads over every field, then a fixed number of random cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::Value as Json;

use super::{check, render_host, CheckKind};
use crate::stack::{self, schema};
use crate::vault::{Secret, Secrets};

/// A hosts stack with every section that renders: VIP with every kind of check and hook, nginx,
/// haproxy, the app, a redis service with a password, user files.
const BASE: &str = r#"
name: hostile
description: every section
provider: hosts
ssh:
  user: root
  identity_file: id_ed25519
  known_hosts: known_hosts
  config_file: ssh_config
  proxy_jump: jump@bastion.example.com:22
hosts:
  - name: web1
    address: 198.18.0.11
    ssh_host: web1.example.com
    source_ip: 198.18.0.11
    interface: eth0
    priority: 150
    roles: [vip, app, cache]
  - name: web2
    address: 198.18.0.12
    priority: 100
    roles: [vip, app, cache]
  - name: web3
    address: 198.18.0.13
    priority: 99
    roles: [vip, app, cache]
vip:
  address: 198.18.0.100/24
  interface: eth0
  instance: VI_WEB
  virtual_router_id: 51
  auth_pass: {secret: vrrp_pass}
  # not root: a valid user name then only swaps into the lines that name it (with `root`
  # the notify script has no `runuser` line at all, and any other accepted name added one)
  script_user: keepalived_script
  checks:
    - name: nginx_up
      service: nginx
      weight: -80
    - name: web_http
      http: http://127.0.0.1:80/healthz
      interval: 2s
      timeout: 1s
      weight: -80
    - name: custom
      script: /usr/bin/true --quiet
      weight: -80
    - name: fast
      service: haproxy
      interval: 200ms
      weight: -80
  notify:
    master:
      - command: logger became master
      - webhook: https://hooks.example.com/vrrp
      - email: ops@example.com
    backup:
      - command: logger became backup
    fault:
      - command: logger fault
    stop:
      - command: logger stop
nginx:
  listen: 80
  server_name: example.com www.example.com
  health_path: /healthz
  extra: |
    location /static/ {
        root /srv;
    }
haproxy:
  listen: 8080
  check_path: /healthz
  admin_socket: /run/haproxy/admin.sock
  stats_port: 8404
app:
  name: web
  image: ghcr.io/acme/web:1.4
  port: 8000
  host_port: 9000
  command: [serve, --port, "8000"]
  env:
    MODE: production
    DB_PASSWORD: {secret: db_password}
  volumes: [/srv/data:/data:ro]
  health:
    path: /healthz
services:
  - name: cache
    kind: redis
    mode: primary_replica
    ports: [9001]
    proxy_ports: [8001]
    quorum: 2
    password: {secret: redis_pass}
vault:
  file: vault.age
  identity_file: key.txt
state:
  backend: local
  path: state.json
files:
  - template: motd.j2
    dest: /etc/motd
    owner: root:root
    reload: nginx
"#;

/// The vault the base stack reads.
const SECRETS: &[(&str, &str)] = &[
    ("vrrp_pass", "s3cr3t"),
    ("redis_pass", "redis-pw"),
    ("db_password", "db-pw"),
];

/// The issue's payloads, and the fragments random strings are built from.
const PAYLOADS: &[&str] = &[
    "\"; id >/tmp/x; echo \"",
    " { alias /etc/; autoindex on; }\nlocation /leak",
    " mode 666 level admin",
    "\nlisten evil\n    bind *:1",
    "\"\nvrrp_script evil {\n    script \"/bin/sh -c id\"\n}\n",
    "#comment",
    "}",
    "${HOME}",
    "$(id)",
    "\\x41",
];

const FRAGMENTS: &[&str] = &[
    "\"",
    "'",
    "\n",
    "\r",
    ";",
    "{",
    "}",
    "#",
    "!",
    "$",
    "${X}",
    "$(id)",
    "`id`",
    "\\",
    "\\x41",
    " ",
    "..",
    "/",
    "%",
    "%41",
    ":",
    "@",
    "=",
    "&",
    "|",
    "*",
    "-",
    "_",
    ".",
    "a",
    "Z",
    "9",
    "é",
    "\t",
    "\u{0}",
    " listen 81;",
    "\nserver {",
    " level admin",
];

/// Values that make sense for most fields, so a suffix or prefix is what is tested.
const STEMS: &[&str] = &[
    "",
    "web",
    "/healthz",
    "http://127.0.0.1/x",
    "198.18.0.11",
    "root",
];

fn base_json() -> Json {
    serde_saphyr::from_str(BASE).expect("the base stack parses")
}

/// Sets the string at `path` (schema tokens) to `value`, creating what is missing: a list item
/// is the first one that has the next key (else the first, else a new one), a free map key the
/// first existing one (else `x`).
fn set(doc: &mut Json, path: &[String], value: &str) {
    let Some((head, rest)) = path.split_first() else {
        *doc = Json::String(value.to_string());
        return;
    };
    if head == "[]" {
        if !doc.is_array() {
            *doc = Json::Array(Vec::new());
        }
        let Json::Array(items) = doc else { return };
        let next = rest.first().filter(|k| *k != "[]" && *k != "*");
        let i = next
            .and_then(|k| items.iter().position(|it| it.get(k.as_str()).is_some()))
            .unwrap_or(0);
        if items.is_empty() {
            items.push(Json::Object(Default::default()));
        }
        set(&mut items[i], rest, value);
        return;
    }
    if !doc.is_object() {
        *doc = Json::Object(Default::default());
    }
    let Json::Object(map) = doc else { return };
    let key = if head == "*" {
        map.keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "x".to_string())
    } else {
        head.clone()
    };
    set(map.entry(key).or_insert(Json::Null), rest, value);
}

/// Which real tool and which quoting rules a rendered file follows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Keepalived,
    Haproxy,
    Nginx,
    Redis,
    Shell,
    Yaml,
    Rsyslog,
    /// An environment file: one `NAME=VALUE` per line, the value literal.
    EnvFile,
}

fn format_of(path: &str) -> Option<Format> {
    let name = path.rsplit('/').next().unwrap_or(path);
    Some(match name {
        "keepalived.conf" => Format::Keepalived,
        "haproxy.cfg" => Format::Haproxy,
        "nginx.conf" => Format::Nginx,
        "docker-compose.yml" => Format::Yaml,
        "rsyslog.conf" => Format::Rsyslog,
        "compose.env" => Format::EnvFile,
        n if n.ends_with(".sh") || n.ends_with(".env") || n == "app-ctl" => Format::Shell,
        n if n.starts_with("redis") && n.ends_with(".conf") || n == "sentinel.conf" => {
            Format::Redis
        }
        _ => return None, // the user's own templates
    })
}

/// The logical lines of a file as tokens, read with the format's quoting and comment rules.
fn lines(text: &str, f: Format) -> Vec<Vec<String>> {
    let (dq_escapes, sq) = match f {
        Format::Keepalived => (false, false),
        Format::Haproxy => (true, true),
        Format::Nginx | Format::Redis => (true, true),
        Format::Shell => (true, true),
        Format::Rsyslog | Format::Yaml | Format::EnvFile => (true, false),
    };
    let specials: &[char] = match f {
        Format::Nginx => &[';', '{', '}'],
        Format::Keepalived => &['{', '}'],
        Format::Shell => &[';', '|', '&', '(', ')'],
        _ => &[],
    };
    let bare_escape = matches!(f, Format::Haproxy | Format::Shell);
    let mut out = Vec::new();
    let mut line: Vec<String> = Vec::new();
    let mut tok = String::new();
    let mut in_tok = false;
    let mut chars = text.chars().peekable();
    let flush = |tok: &mut String, in_tok: &mut bool, line: &mut Vec<String>| {
        if *in_tok {
            line.push(std::mem::take(tok));
            *in_tok = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                flush(&mut tok, &mut in_tok, &mut line);
                if !line.is_empty() {
                    out.push(std::mem::take(&mut line));
                }
            }
            c if c.is_whitespace() => flush(&mut tok, &mut in_tok, &mut line),
            '#' | '!' if !in_tok && (c == '#' || f == Format::Keepalived) => {
                while chars.peek().is_some_and(|n| *n != '\n') {
                    chars.next();
                }
            }
            '\\' if bare_escape => match chars.next() {
                Some('\n') => flush(&mut tok, &mut in_tok, &mut line),
                Some(n) => {
                    tok.push(n);
                    in_tok = true;
                }
                None => {}
            },
            '"' | '\'' if c == '"' || sq => {
                in_tok = true;
                tok.push(c);
                let escapes = c == '"' && dq_escapes
                    || c == '\'' && f != Format::Shell && f != Format::Haproxy;
                while let Some(n) = chars.next() {
                    if escapes && n == '\\' {
                        if let Some(e) = chars.next() {
                            tok.push(e);
                        }
                        continue;
                    }
                    tok.push(n);
                    if n == c {
                        break;
                    }
                }
            }
            c if specials.contains(&c) => {
                flush(&mut tok, &mut in_tok, &mut line);
                line.push(c.to_string());
            }
            c => {
                tok.push(c);
                in_tok = true;
            }
        }
    }
    flush(&mut tok, &mut in_tok, &mut line);
    if !line.is_empty() {
        out.push(line);
    }
    out
}

/// A file's structure: per logical line its first token and token count (compose: the YAML
/// shape with every scalar blanked).
fn structure(path: &str, content: &[u8]) -> Option<Vec<String>> {
    let f = format_of(path)?;
    let text = String::from_utf8_lossy(content);
    if f == Format::EnvFile {
        // one variable per line whatever the value holds: the names are the structure
        return Some(
            text.lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.split_once('=').map(|(n, _)| n).unwrap_or(l).to_string())
                .collect(),
        );
    }
    if f == Format::Yaml {
        let doc: Json = match serde_saphyr::from_str(&text) {
            Ok(d) => d,
            Err(e) => return Some(vec![format!("YAML does not parse: {e}")]),
        };
        return Some(vec![shape(&doc)]);
    }
    Some(
        lines(&text, f)
            .into_iter()
            .map(|l| {
                if f == Format::Nginx && l[0] == "server_name" {
                    return "server_name …".to_string();
                }
                // the keyword: the first token up to a value (`NAME=`, a quote)
                let kw: String = l[0]
                    .split_inclusive(['=', '"', '\''])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                format!("{kw} ×{}", l.len())
            })
            .collect(),
    )
}

fn shape(v: &Json) -> String {
    match v {
        Json::Object(m) => {
            let mut parts: Vec<String> = m.values().map(shape).collect();
            parts.sort();
            format!("{{{}}}", parts.join(","))
        }
        Json::Array(a) => format!("[{}]", a.iter().map(shape).collect::<Vec<_>>().join(",")),
        Json::Null => "null".into(),
        _ => "s".into(),
    }
}

/// The files web1 gets (it has every role): (path, content, check).
type Files = Vec<(String, Vec<u8>, Option<CheckKind>)>;

fn render_web1(dir: &Path, doc: &Json, vault: &Secrets) -> Result<Files, String> {
    let text = serde_json::to_string(doc).map_err(|e| e.to_string())?;
    let s = stack::load_bytes(&dir.join("hostile.yaml"), text.as_bytes())
        .map_err(|e| format!("validate: {:?}", e.codes()))?;
    let h = s.host("web1").ok_or("web1 is gone")?;
    let c = render_host(&s, h, vault).map_err(|e| format!("render: {e}"))?;
    Ok(c.files
        .into_iter()
        .map(|f| (f.path, f.content, f.check))
        .collect())
}

fn vault_with(over: Option<(&str, &str)>) -> Secrets {
    let mut s = Secrets::default();
    for (k, v) in SECRETS {
        let v = match over {
            Some((name, value)) if name == *k => value,
            _ => v,
        };
        s.values.insert(k.to_string(), Secret::new(v.to_string()));
    }
    s
}

/// What a target is: a schema field (tokens) or a vault secret.
#[derive(Debug, Clone)]
enum Target {
    Field(String),
    Secret(&'static str),
}

fn targets() -> Vec<Target> {
    let mut t: Vec<Target> = schema::string_fields(&schema::schema())
        .into_iter()
        .filter(|f| f != "nginx.extra")
        .map(Target::Field)
        .collect();
    t.extend(SECRETS.iter().map(|(k, _)| Target::Secret(k)));
    t
}

/// The target's value in the base stack (or vault).
fn own_value(target: &Target) -> String {
    match target {
        Target::Field(f) => lookup(&base_json(), &stack::validate::strings::tokens(f)),
        Target::Secret(name) => SECRETS
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string()),
    }
    .unwrap_or_default()
}

/// Line by line: the same number of tokens and the same keyword, where a keyword built from
/// the value itself (`chk_NAME`, `NAME=`) counts as the same once the value is taken out.
fn same_structure(a: Option<&[String]>, b: Option<&[String]>, value: &str, own: &str) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    let split = |l: &str| match l.rsplit_once(" ×") {
        Some((kw, n)) => (kw.to_string(), n.to_string()),
        None => (l.to_string(), String::new()),
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let ((kx, nx), (ky, ny)) = (split(x), split(y));
            nx == ny && (kx == ky || (!own.is_empty() && swapped(&ky, own, &kx, value)))
        })
}

/// Whether `new` is `base` with one occurrence of `own` replaced by `value`.
fn swapped(base: &str, own: &str, new: &str, value: &str) -> bool {
    base.match_indices(own).any(|(i, _)| {
        let (pre, post) = (&base[..i], &base[i + own.len()..]);
        new.len() == pre.len() + value.len() + post.len()
            && new.starts_with(pre)
            && new.ends_with(post)
            && &new[pre.len()..new.len() - post.len()] == value
    })
}

struct World {
    dir: tempfile::TempDir,
    base: Files,
    /// How many accepted files went through a real checker (bounded).
    checked: AtomicUsize,
}

const MAX_REAL_CHECKS: usize = 40;

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("motd.j2"), "welcome to {{ host.name }}\n")
            .expect("template");
        let base = render_web1(dir.path(), &base_json(), &vault_with(None))
            .unwrap_or_else(|e| panic!("the base stack must render: {e}"));
        World {
            dir,
            base,
            checked: AtomicUsize::new(0),
        }
    }

    /// One case: Ok when refused or structurally equal; Err says what changed.
    fn case(&self, target: &Target, value: &str) -> Result<bool, String> {
        let (doc, vault) = match target {
            Target::Field(f) => {
                let mut doc = base_json();
                set(&mut doc, &stack::validate::strings::tokens(f), value);
                (doc, vault_with(None))
            }
            Target::Secret(name) => (base_json(), vault_with(Some((name, value)))),
        };
        let files = match render_web1(self.dir.path(), &doc, &vault) {
            Ok(f) => f,
            Err(_) => return Ok(false), // refused: validate or an escaping filter
        };
        if files.len() != self.base.len() {
            return Err(format!(
                "{} files instead of {}",
                files.len(),
                self.base.len()
            ));
        }
        for ((path, content, kind), (bpath, bcontent, _)) in files.iter().zip(&self.base) {
            if path.split('/').any(|s| s == "..") || !path.starts_with('/') {
                return Err(format!("destination `{path}` escapes"));
            }
            let (a, b) = (structure(path, content), structure(bpath, bcontent));
            if !same_structure(a.as_deref(), b.as_deref(), value, &own_value(target)) {
                let diff = similar::TextDiff::from_lines(
                    &b.unwrap_or_default().join("\n"),
                    &a.unwrap_or_default().join("\n"),
                )
                .unified_diff()
                .to_string();
                return Err(format!("{path} changed structure:\n{diff}"));
            }
            if let Some(kind) = kind {
                if content != bcontent
                    && self.checked.fetch_add(1, Ordering::Relaxed) < MAX_REAL_CHECKS
                {
                    self.real_check(*kind, content)?;
                }
            }
        }
        Ok(true)
    }

    fn real_check(&self, kind: CheckKind, content: &[u8]) -> Result<(), String> {
        let path = self.dir.path().join(format!("check-{}", kind.tool()));
        std::fs::write(&path, content).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let o = rt
            .block_on(check::run_check(kind, &path))
            .map_err(|e| format!("cannot run {}: {e} (install it)", kind.tool()))?;
        // What keepalived -t says about this machine rather than the file: a script user, a
        // check program or an interface that exists on the hosts but not here.
        let host_facts = [
            "Error setting global script uid/gid",
            "Unable to set default user",
            "not found/accessible",
            "not found, ignoring",
            "doesn't exist",
            "Non-existent interface specified",
        ];
        let only_host_facts = kind == CheckKind::Keepalived
            && o.output
                .lines()
                .all(|l| host_facts.iter().any(|f| l.contains(f)));
        if o.ok || only_host_facts {
            Ok(())
        } else {
            Err(format!(
                "{:?} refused an accepted file:\n{}",
                o.argv, o.output
            ))
        }
    }
}

fn hostile() -> impl Strategy<Value = String> {
    (
        prop::sample::select(STEMS),
        prop::collection::vec(prop::sample::select(FRAGMENTS), 1..5),
        any::<bool>(),
    )
        .prop_map(|(stem, frags, prefix)| {
            let f = frags.concat();
            if prefix {
                format!("{f}{stem}")
            } else {
                format!("{stem}{f}")
            }
        })
}

/// Every field and secret × the issue's payloads, appended to the field's own base value (so
/// the value is otherwise plausible; the random test below tries them alone too).
#[test]
fn hostile_strings_in_every_field_are_refused_or_inert() {
    let w = World::new();
    let base = base_json();
    let mut accepted = 0;
    let mut failures = Vec::new();
    for t in targets() {
        let own = match &t {
            Target::Field(f) => lookup(&base, &stack::validate::strings::tokens(f)),
            Target::Secret(name) => SECRETS
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string()),
        }
        .unwrap_or_default();
        for p in PAYLOADS {
            let v = format!("{own}{p}");
            match w.case(&t, &v) {
                Ok(true) => accepted += 1,
                Ok(false) => {}
                Err(e) => failures.push(format!("{t:?} = {v:?}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Some payloads are harmless where they land (a secret in a JSON string, `#` in a
    // quoted haproxy argument): the comparison must actually have run on accepted values.
    assert!(
        accepted > 0,
        "every case was refused: the test compared nothing"
    );
}

fn lookup(doc: &Json, path: &[String]) -> Option<String> {
    let mut cur = doc;
    for (i, t) in path.iter().enumerate() {
        cur = match t.as_str() {
            "[]" => {
                let next = path.get(i + 1);
                let items = cur.as_array()?;
                items
                    .iter()
                    .find(|it| next.is_some_and(|k| it.get(k.as_str()).is_some()))
                    .or_else(|| items.first())?
            }
            "*" => cur.as_object()?.values().next()?,
            k => cur.get(k)?,
        };
    }
    cur.as_str().map(String::from)
}

proptest! {
    // 256 cases in the suite (~5 s of CPU in a debug build); `HACTL_PROPTEST_CASES=N` runs
    // more, for a long local soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("HACTL_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Random strings of injection fragments in a random field or secret.
    #[test]
    fn random_hostile_strings_are_refused_or_inert(
        i in any::<prop::sample::Index>(),
        v in hostile(),
    ) {
        thread_local! { static W: World = World::new(); }
        let targets = targets();
        let t = &targets[i.index(targets.len())];
        let r = W.with(|w| w.case(t, &v));
        prop_assert!(r.is_ok(), "{:?} = {:?}: {}", t, v, r.err().unwrap_or_default());
    }
}

#[test]
fn a_keyword_made_of_the_value_is_the_same_structure() {
    // found by a soak: check name `_` makes `chk__`, check name `root-` makes `chk_root-`
    let b = vec!["chk_nginx_up ×1".to_string()];
    for v in ["_", "root-", "1"] {
        let a = vec![format!("chk_{v} ×1")];
        assert!(same_structure(Some(&a), Some(&b), v, "nginx_up"), "{v}");
    }
    let extra = vec!["chk_x ×2".to_string()];
    assert!(!same_structure(Some(&extra), Some(&b), "x", "nginx_up"));
    let other = vec!["vrrp_script ×1".to_string()];
    assert!(!same_structure(Some(&other), Some(&b), "x", "nginx_up"));
}

#[test]
fn the_base_stack_covers_the_files_that_matter() {
    let w = World::new();
    let paths: BTreeMap<&str, ()> = w.base.iter().map(|(p, _, _)| (p.as_str(), ())).collect();
    for p in [
        "/etc/keepalived/keepalived.conf",
        "/etc/keepalived/hactl-notify.sh",
        "/etc/keepalived/hactl-check.sh",
        "/etc/haproxy/haproxy.cfg",
        "/etc/nginx/nginx.conf",
        "/etc/hactl/hostile/docker-compose.yml",
        "/etc/hactl/hostile/compose.env",
        "/etc/motd",
    ] {
        assert!(paths.contains_key(p), "web1 has no {p}: {paths:?}");
    }
    for (path, content, _) in &w.base {
        if let Some(s) = structure(path, content) {
            assert!(!s.is_empty(), "{path}: no structure read");
        }
    }
}

/// Regression (issue 15 §2): a redis password with `"`, a newline and `\x41` broke redis.conf,
/// injected lines into haproxy.cfg and was decoded by redis into something else. Each file now
/// writes it as data for its own format.
#[test]
fn redis_password_is_written_as_data_in_every_file() {
    let w = World::new();
    let pw = "p\"w\nx\\x41 y";
    let vault = vault_with(Some(("redis_pass", pw)));
    let files = render_web1(w.dir.path(), &base_json(), &vault).expect("renders");
    let text = |p: &str| {
        files
            .iter()
            .find(|(path, _, _)| path.ends_with(p))
            .map(|(_, c, _)| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_else(|| panic!("no {p}"))
    };
    let redis = text("redis-9001.conf");
    assert!(
        redis.contains(r#"requirepass "p\"w\x0ax\\x41 y""#),
        "redis.conf does not hold the escaped password"
    );
    assert!(text("sentinel.conf").contains(r#"auth-pass cache-9001 "p\"w\x0ax\\x41 y""#));
    let haproxy = text("haproxy.cfg");
    assert!(
        !haproxy.contains("p\"w"),
        "the raw password reached haproxy.cfg"
    );
    let resp = hex::encode(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()));
    assert!(haproxy.contains(&format!("tcp-check send-binary {resp}")));
    assert!(text("prestart.sh").contains("REDISCLI_AUTH='p\"w\nx\\x41 y'"));
    let (_, content, _) = files
        .iter()
        .find(|(p, _, _)| p.ends_with("haproxy.cfg"))
        .expect("haproxy.cfg");
    w.real_check(CheckKind::Haproxy, content)
        .unwrap_or_else(|e| panic!("haproxy -c: {e}"));
}

/// Regression (issue 15 §2): keepalived cut a vault `auth_pass` longer than 8 characters
/// silently; a value it cannot write (a newline, a quote) broke the file. Both are refused when
/// rendering, with a message that never shows the secret.
#[test]
fn keepalived_auth_pass_from_the_vault_is_checked_when_rendering() {
    let w = World::new();
    for (pass, why) in [
        ("123456789", "at most 8"),
        ("ab\ncd", "newline"),
        ("ab\"cd", "`\"`"),
    ] {
        let vault = vault_with(Some(("vrrp_pass", pass)));
        let e = render_web1(w.dir.path(), &base_json(), &vault).expect_err("refused");
        assert!(e.contains("keepalived.conf (`vip.auth_pass`)"), "{e}");
        assert!(e.contains("cannot write a value for host `web1`"), "{e}");
        assert!(e.contains(why), "{e}");
        assert!(!e.contains(pass), "the secret is in the message: {e}");
    }
}

/// Regression (issue 15 §2): `app.health.path` went unquoted into the root `app-ctl` script.
/// Validation refuses such a path; the script quotes it anyway, as one shell word.
#[test]
fn app_ctl_quotes_the_health_path() {
    let path = "/healthz\"; id >/tmp/x; echo \"";
    let p = crate::onhost::app_ctl::AppParams {
        stack: "s".into(),
        runtime: crate::stack::model::Runtime::Podman,
        host_port: 8000,
        replicas: 1,
        health_path: path.into(),
        health_interval_s: 0.5,
        health_timeout_s: 1.0,
        healthy_threshold: 2,
        health_deadline_s: 10,
        stop_grace_s: 5,
        nginx: true,
    };
    let script = crate::onhost::app_ctl::ctl_script(&p);
    assert!(
        script.contains("$h_i)\"'/healthz\"; id >/tmp/x; echo \"' 2>/dev/null"),
        "{script}"
    );
    let words = lines(&script, Format::Shell);
    let curl = words
        .iter()
        .find(|l| l.first().is_some_and(|w| w == "curl"))
        .expect("the curl line");
    assert!(!curl.iter().any(|w| w == "id"), "{curl:?}");
}

/// Regression (issue 15 §4): a `files:` template (or an `{% include %}` in one) read any local
/// file into the output. Templates now resolve inside the stack's folder, symlinks followed,
/// unless the stack opts out with `allow_templates_outside_stack_dir: true`.
#[test]
fn templates_stay_in_the_stack_folder_unless_the_stack_opts_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let secret_file = outside.path().join("secret.txt");
    std::fs::write(&secret_file, "outside-content\n").expect("write");
    std::os::unix::fs::symlink(&secret_file, dir.path().join("link.j2")).expect("symlink");
    std::fs::write(
        dir.path().join("inc.j2"),
        format!("{{% include {:?} %}}\n", secret_file.display().to_string()),
    )
    .expect("write");
    let stack_text = |template: &str, opt_out: bool| {
        format!(
            "name: t\nprovider: hosts\nallow_templates_outside_stack_dir: {opt_out}\nhosts:\n  - {{name: a, address: 192.0.2.11, roles: [app]}}\nfiles:\n  - {{template: {template}, dest: /etc/x}}\n"
        )
    };
    for template in ["link.j2", "inc.j2"] {
        let s = stack::load_bytes(
            &dir.path().join("s.yaml"),
            stack_text(template, false).as_bytes(),
        )
        .expect("valid");
        let h = s.host("a").expect("host");
        let e = render_host(&s, h, &Secrets::default()).expect_err("refused");
        let msg = e.to_string();
        assert!(msg.contains("outside"), "{template}: {msg}");
        assert!(!msg.contains("outside-content"), "{template}: {msg}");

        let s = stack::load_bytes(
            &dir.path().join("s.yaml"),
            stack_text(template, true).as_bytes(),
        )
        .expect("valid");
        let h = s.host("a").expect("host");
        let c = render_host(&s, h, &Secrets::default()).expect("the stack opted out");
        assert_eq!(c.files[0].content, b"outside-content\n");
    }
    // and validate refuses the plain spellings with file:line:col
    let e = stack::load_bytes(
        &dir.path().join("s.yaml"),
        stack_text("/etc/hostname", false).as_bytes(),
    )
    .expect_err("refused");
    assert_eq!(e.codes(), ["hactl::stack::outside_stack_dir"]);
}

/// The redis password round trip, end to end on this machine: redis-server reads the rendered
/// `requirepass` line, and the exact bytes haproxy's check sends (`tcp-check send-binary`) are
/// answered `+OK`, while the password with `\x41` decoded is refused. Loopback only; needs
/// `redis-server` (installed by scripts/deps.sh) and fails loudly without it.
#[test]
fn redis_accepts_exactly_the_rendered_password() {
    use std::io::{Read, Write};
    let w = World::new();
    let pw = "p\"w\nx\\x41 y";
    let files = render_web1(
        w.dir.path(),
        &base_json(),
        &vault_with(Some(("redis_pass", pw))),
    )
    .expect("renders");
    let text = |p: &str| {
        files
            .iter()
            .find(|(path, _, _)| path.ends_with(p))
            .map(|(_, c, _)| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_else(|| panic!("no {p}"))
    };
    let requirepass = text("redis-9001.conf")
        .lines()
        .find(|l| l.starts_with("requirepass "))
        .expect("requirepass")
        .to_string();
    let send = text("haproxy.cfg")
        .lines()
        .find_map(|l| l.trim().strip_prefix("tcp-check send-binary "))
        .map(|h| hex::decode(h.trim()).expect("hex"))
        .expect("send-binary");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("r.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n{requirepass}\n",
            dir.path().display()
        ),
    )
    .expect("conf");
    let mut server = match std::process::Command::new("redis-server")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run redis-server: {e} (install it: scripts/deps.sh)"),
    };
    let auth = |bytes: &[u8]| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => {
                    s.write_all(bytes).expect("send");
                    let mut buf = [0u8; 128];
                    let n = s.read(&mut buf).expect("answer");
                    return String::from_utf8_lossy(&buf[..n]).into_owned();
                }
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return format!("no answer: {e}"),
            }
        }
    };
    let exact = auth(&send);
    let decoded = "p\"w\nxA y";
    let wrong = auth(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{decoded}\r\n", decoded.len()).as_bytes());
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        exact, "+OK\r\n",
        "haproxy's AUTH was refused: {requirepass}"
    );
    assert!(
        wrong.starts_with("-WRONGPASS"),
        "redis decoded `\\x41`: {wrong}"
    );
}
