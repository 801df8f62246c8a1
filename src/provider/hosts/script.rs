//! Remote command scripts, built as data by pure functions.
//!
//! Every interaction with a host is one POSIX `sh` script sent on the SSH session's stdin
//! (`sh -s`), never in argv or the environment: file contents — secrets included — travel
//! base64-encoded inside here-documents, which dash feeds through pipes, not temp files. One
//! script per phase keeps a host to one round trip for observing and one for applying. Every
//! argument is quoted with `shell-escape`, never by hand. The output is line-oriented,
//! tab-separated records prefixed `HACTL` that `parse_*` read back.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;

use crate::plan::hosts::Manifest;
use crate::render::CheckKind;

/// Quotes one shell word.
pub fn q(s: &str) -> Cow<'_, str> {
    shell_escape::unix::escape(Cow::Borrowed(s))
}

/// Joins an argv into one shell command line.
pub fn join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| q(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where hactl keeps its per-stack records on a host.
pub fn state_dir(stack: &str) -> String {
    format!("/var/lib/hactl/{stack}")
}

/// The pid file each known service writes (Debian's defaults, and the lab's stand-in).
pub fn pid_file(service: &str) -> Option<&'static str> {
    match service {
        "nginx" => Some("/run/nginx.pid"),
        "haproxy" => Some("/run/haproxy.pid"),
        "keepalived" => Some("/run/keepalived.pid"),
        _ => None,
    }
}

/// The argv that checks a file with the real binary before it is activated.
pub fn check_argv(kind: CheckKind, path: &str) -> Vec<String> {
    let v: &[&str] = match kind {
        CheckKind::Keepalived => &["keepalived", "-t", "-f", path],
        CheckKind::Nginx => &["nginx", "-t", "-q", "-c", path],
        CheckKind::Haproxy => &["haproxy", "-c", "-q", "-f", path],
    };
    v.iter().map(|s| s.to_string()).collect()
}

pub fn service_argv(verb: &str, service: &str) -> Vec<String> {
    vec!["systemctl".into(), verb.into(), service.into()]
}

/// The command that runs `verb` on one of a stack's services. The app is no system unit:
/// hactl runs it with compose through the `app-ctl` script `hactl up` renders (see
/// `crate::deploy::remote`), which takes the same verbs as systemctl.
pub fn stack_service_argv(stack: &str, verb: &str, service: &str) -> Vec<String> {
    if service == "app" {
        return vec![crate::deploy::remote::ctl_path(stack), verb.into()];
    }
    service_argv(verb, service)
}

/// `is-active` for a stack's service, quiet.
fn is_active_cmd(stack: &str, service: &str) -> String {
    if service == "app" {
        return join(&stack_service_argv(stack, "is-active", service));
    }
    format!("systemctl is-active --quiet {}", q(service))
}

/// The temporary path a file is written to before it is checked and renamed into place: same
/// directory (so the rename is atomic), hidden, and recognisable.
pub fn temp_path(dest: &str) -> String {
    match dest.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.hactl-new"),
        None => format!(".{dest}.hactl-new"),
    }
}

/// Where the original of a replaced file is kept: `"$S/backup"` + the quoted path, so the
/// variable expands and the path stays one word.
fn backup_path(path: &str) -> String {
    format!("\"$S/backup\"{}", q(path))
}

fn dir_of(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

fn heredoc(out: &mut String, bytes: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    out.push_str("<<'HACTL_EOF'\n");
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("HACTL_EOF\n");
}

/// One file to ask about while observing.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    /// Digest the stack wants; content is fetched (for a diff) only when it differs.
    pub want_sha256: Option<String>,
    /// Never fetch the content (it may hold a secret).
    pub sensitive: bool,
}

/// The observe script: digests and modes of files, contents of changed non-sensitive files,
/// service states and pids, and the manifest.
pub fn observe_script(stack: &str, probes: &[Probe], services: &[String]) -> String {
    // Process spawns dominate a host's cost on a small machine, so the common case forks
    // little: one `sha256sum` and one `stat` for every file together, and services whose pid
    // file names a live process are known without asking systemctl (shell builtins only).
    let mut s = String::from("set -u\n");
    let _ = writeln!(s, "S={}", q(&state_dir(stack)));
    s.push_str(
        "if [ -f \"$S/manifest.json\" ]; then printf 'HACTL\\tmanifest\\t'; base64 -w0 \"$S/manifest.json\"; echo; fi\n",
    );
    if !probes.is_empty() {
        let paths = probes
            .iter()
            .map(|p| q(&p.path).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            s,
            "echo HACTL-SUMS; sha256sum -- {paths} 2>/dev/null; echo HACTL-END"
        );
        let _ = writeln!(
            s,
            "stat --printf 'HACTL\\tmode\\t%a\\t%n\\n' -- {paths} 2>/dev/null"
        );
    }
    for svc in services {
        let name = q(svc);
        let by_pid = match pid_file(svc) {
            Some(f) => format!(
                "if read p < {f} 2>/dev/null && [ -n \"$p\" ] && kill -0 \"$p\" 2>/dev/null; then printf 'HACTL\\tservice\\t%s\\tactive\\t%s\\n' {name} \"$p\"; el",
                f = q(f)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "{by_pid}if {active} >/dev/null 2>&1; then printf 'HACTL\\tservice\\t%s\\tactive\\t\\n' {name}; else printf 'HACTL\\tservice\\t%s\\tinactive\\t\\n' {name}; fi",
            active = is_active_cmd(stack, svc)
        );
    }
    s
}

/// Fetches the current content of files (for diffs), only when they differ and are not
/// sensitive: the second, rarer round trip of an observe.
pub fn fetch_script(paths: &[String]) -> String {
    let mut s = String::from("set -u\n");
    for p in paths {
        let path = q(p);
        let _ = writeln!(
            s,
            "printf 'HACTL\\tcontent\\t%s\\t' {path}; base64 -w0 {path}; echo"
        );
    }
    s
}

/// Reads `sha256sum` lines between the `HACTL-SUMS`/`HACTL-END` markers: path → digest.
pub fn parse_sums(stdout: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        match line {
            "HACTL-SUMS" => inside = true,
            "HACTL-END" => inside = false,
            _ if inside => {
                if let Some((h, p)) = line.split_once("  ") {
                    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        out.push((p.to_string(), h.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A file to write during apply.
#[derive(Debug, Clone)]
pub struct WriteFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    pub check: Option<CheckKind>,
    /// The file exists and hactl did not write it: keep the original for `down`.
    pub backup_original: bool,
}

/// A file to remove during apply or down.
#[derive(Debug, Clone)]
pub struct RemoveFile {
    pub path: String,
    /// Put the original (kept at first write) back instead of deleting.
    pub restore: bool,
}

/// Everything one host's apply does, in order.
#[derive(Debug, Clone, Default)]
pub struct ApplySteps {
    pub writes: Vec<WriteFile>,
    pub removes: Vec<RemoveFile>,
    /// (verb, service): `start`, `reload`, `stop`. Stops run before any file is touched,
    /// starts and reloads after every file is in place.
    pub services: Vec<(String, String)>,
    pub manifest: ManifestOp,
}

/// What happens to hactl's record on the host.
#[derive(Debug, Clone, Default)]
pub enum ManifestOp {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Record this manifest.
    Write(Manifest),
    /// Remove hactl's records and kept originals (after `down` restored them).
    Remove,
}

/// The apply script. Phases: stop services (down); write every new file beside its
/// destination; check each with its real binary; only if all pass, keep originals and rename
/// into place; remove; record the manifest; then start/reload services. A failed check removes
/// the new files and leaves the host untouched.
pub fn apply_script(stack: &str, steps: &ApplySteps) -> String {
    let mut s = String::from("set -u\numask 077\n");
    let _ = writeln!(s, "S={}", q(&state_dir(stack)));
    s.push_str(
        "mkdir -p \"$S/backup\" || { printf 'HACTL\\tfail\\tstate\\t%s\\n' \"$S\"; exit 1; }\n",
    );
    let temps: Vec<String> = steps.writes.iter().map(|w| temp_path(&w.path)).collect();
    let cleanup = if temps.is_empty() {
        ":".to_string()
    } else {
        format!(
            "rm -f {}",
            temps
                .iter()
                .map(|t| q(t).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let _ = writeln!(s, "cleanup() {{ {cleanup}; }}");
    s.push_str("rc=0\n");
    let (stops, others): (Vec<_>, Vec<_>) =
        steps.services.iter().partition(|(verb, _)| verb == "stop");
    service_steps(&mut s, stack, &stops);
    // Phase 1: new files beside their destinations.
    for (w, tmp) in steps.writes.iter().zip(&temps) {
        let t = q(tmp);
        // Forks are most of a first run's cost on the host: test before `mkdir`.
        let _ = write!(
            s,
            "{{ [ -d {dir} ] || mkdir -p {dir}; }} && base64 -d > {t} ",
            dir = q(dir_of(&w.path))
        );
        heredoc(&mut s, &w.content);
        let _ = writeln!(
            s,
            "[ $? -eq 0 ] && chmod {mode:o} {t} || {{ cleanup; printf 'HACTL\\tfail\\twrite\\t%s\\n' {p}; exit 1; }}",
            mode = w.mode,
            p = q(&w.path)
        );
        if let Some(owner) = &w.owner {
            let _ = writeln!(
                s,
                "chown {o} {t} || {{ cleanup; printf 'HACTL\\tfail\\tchown\\t%s\\n' {p}; exit 1; }}",
                o = q(owner),
                p = q(&w.path)
            );
        }
    }
    // Phase 2: every check must pass before anything is activated.
    for (w, tmp) in steps.writes.iter().zip(&temps) {
        if let Some(kind) = w.check {
            let _ = writeln!(
                s,
                "if ! out=$({} 2>&1); then cleanup; printf 'HACTL\\tcheck-failed\\t%s\\n' {}; printf '%s\\n' \"$out\" | sed 's/^/HACTL\\tlog\\t/'; exit 3; fi",
                join(&check_argv(kind, tmp)),
                q(&w.path)
            );
        }
    }
    // Phase 3: keep originals, rename into place.
    for (w, tmp) in steps.writes.iter().zip(&temps) {
        let p = q(&w.path);
        if w.backup_original {
            let b = backup_path(&w.path);
            let bd = backup_path(dir_of(&w.path));
            let _ = writeln!(
                s,
                "if [ -e {p} ] && [ ! -e {b} ]; then {{ [ -d {bd} ] || mkdir -p {bd}; }} && cp -a {p} {b}; fi"
            );
        }
        let _ = writeln!(
            s,
            "mv -f {} {p} && printf 'HACTL\\tok\\tfile\\t%s\\n' {p} || {{ cleanup; printf 'HACTL\\tfail\\trename\\t%s\\n' {p}; exit 1; }}",
            q(tmp)
        );
    }
    for r in &steps.removes {
        let p = q(&r.path);
        let b = backup_path(&r.path);
        if r.restore {
            let _ = writeln!(
                s,
                "if [ -e {b} ]; then mv -f {b} {p}; else rm -f {p}; fi && printf 'HACTL\\tok\\tremove\\t%s\\n' {p}"
            );
        } else {
            let _ = writeln!(s, "rm -f {p} && printf 'HACTL\\tok\\tremove\\t%s\\n' {p}");
        }
    }
    match &steps.manifest {
        ManifestOp::Write(m) => {
            let json = serde_json::to_vec_pretty(m).unwrap_or_default();
            s.push_str("base64 -d > \"$S/manifest.json.new\" ");
            heredoc(&mut s, &json);
            s.push_str("mv -f \"$S/manifest.json.new\" \"$S/manifest.json\"\n");
        }
        ManifestOp::Remove => s.push_str("rm -rf \"$S\"\n"),
        ManifestOp::Keep => {}
    }
    service_steps(&mut s, stack, &others);
    s.push_str("exit $rc\n");
    s
}

/// Services in order; a failure is reported and the rest still run.
fn service_steps(s: &mut String, stack: &str, services: &[&(String, String)]) {
    for (verb, svc) in services {
        let _ = writeln!(
            s,
            "if out=$({} 2>&1); then printf 'HACTL\\tok\\tservice\\t%s\\t%s\\n' {v} {n}; else rc=1; printf 'HACTL\\tfail\\tservice\\t%s\\t%s\\n' {v} {n}; printf '%s\\n' \"$out\" | sed 's/^/HACTL\\tlog\\t/'; fi",
            join(&stack_service_argv(stack, verb, svc)),
            v = q(verb),
            n = q(svc)
        );
    }
}

/// The shell command a VRRP check runs (the same command keepalived's `vrrp_script` runs),
/// used by `status` to report check results and the effective priority.
pub fn check_command(check: &crate::stack::model::CheckSpec) -> String {
    if let Some(svc) = &check.service {
        join(&service_argv("is-active", &svc.value)) + " --quiet"
    } else if let Some(url) = &check.http {
        let secs = check.run_timeout().as_secs_f64().max(0.01);
        join(&[
            "curl".into(),
            "-fsS".into(),
            "-m".into(),
            format!("{secs}"),
            "-o".into(),
            "/dev/null".into(),
            url.value.clone(),
        ])
    } else if let Some(script) = &check.script {
        script.value.clone()
    } else {
        "false".into()
    }
}

/// Where the notify hook records the last VRRP transition (`STATE EPOCH`).
pub fn vrrp_state_file(instance: &str) -> String {
    format!("/run/hactl/vrrp-{instance}.state")
}

/// The status probe: services, whether the VIP is on the host, each check's result, and the
/// last recorded VRRP transition. Read-only.
pub fn status_script(
    vip: Option<&str>,
    instance: &str,
    services: &[String],
    checks: &[(String, String)],
) -> String {
    let mut s = String::from("set -u\n");
    for svc in services {
        let name = q(svc);
        let _ = writeln!(
            s,
            "if systemctl is-active --quiet {name} >/dev/null 2>&1; then printf 'HACTL\\tservice\\t%s\\tactive\\t\\n' {name}; else printf 'HACTL\\tservice\\t%s\\tinactive\\t\\n' {name}; fi"
        );
    }
    if let Some(vip) = vip {
        let _ = writeln!(
            s,
            "if ip -o addr show | grep -q \" inet6\\? {}/\"; then printf 'HACTL\\tvip\\tyes\\n'; else printf 'HACTL\\tvip\\tno\\n'; fi",
            vip.replace('.', "\\.")
        );
    }
    for (name, cmd) in checks {
        let _ = writeln!(
            s,
            "if timeout 3 sh -c {} >/dev/null 2>&1; then printf 'HACTL\\tcheck\\t%s\\tok\\n' {n}; else printf 'HACTL\\tcheck\\t%s\\tfail\\n' {n}; fi",
            q(cmd),
            n = q(name)
        );
    }
    let f = q(&vrrp_state_file(instance)).into_owned();
    let _ = writeln!(
        s,
        "if [ -f {f} ]; then printf 'HACTL\\ttransition\\t%s\\n' \"$(head -n1 {f})\"; fi"
    );
    s
}

/// One record of a script's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Manifest(Vec<u8>),
    File {
        path: String,
        sha256: String,
        mode: u32,
    },
    Content {
        path: String,
        bytes: Vec<u8>,
    },
    Missing(String),
    Mode {
        path: String,
        mode: u32,
    },
    Service {
        name: String,
        active: bool,
        pid: Option<u32>,
    },
    Ok(Vec<String>),
    Fail(Vec<String>),
    CheckFailed(String),
    Log(String),
    Vip(bool),
    Check {
        name: String,
        ok: bool,
    },
    Transition(String),
}

/// Reads the `HACTL\t…` records of a script's stdout; other lines are ignored.
pub fn parse(stdout: &str) -> Vec<Record> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("HACTL\t") else {
            continue;
        };
        let f: Vec<&str> = rest.split('\t').collect();
        let rec = match f.as_slice() {
            ["manifest", data] => b64.decode(data).ok().map(Record::Manifest),
            ["file", path, sha, mode] => Some(Record::File {
                path: path.to_string(),
                sha256: sha.to_string(),
                mode: u32::from_str_radix(mode, 8).unwrap_or(0),
            }),
            ["content", path, data] => b64.decode(data).ok().map(|bytes| Record::Content {
                path: path.to_string(),
                bytes,
            }),
            ["missing", path] => Some(Record::Missing(path.to_string())),
            ["service", name, state, pid] => Some(Record::Service {
                name: name.to_string(),
                active: *state == "active",
                pid: pid.trim().parse().ok(),
            }),
            ["ok", rest @ ..] => Some(Record::Ok(rest.iter().map(|s| s.to_string()).collect())),
            ["fail", rest @ ..] => Some(Record::Fail(rest.iter().map(|s| s.to_string()).collect())),
            ["check-failed", path] => Some(Record::CheckFailed(path.to_string())),
            ["log", text @ ..] => Some(Record::Log(text.join("\t"))),
            ["mode", mode, path] => Some(Record::Mode {
                path: path.to_string(),
                mode: u32::from_str_radix(mode, 8).unwrap_or(0),
            }),
            ["vip", v] => Some(Record::Vip(*v == "yes")),
            ["check", name, r] => Some(Record::Check {
                name: name.to_string(),
                ok: *r == "ok",
            }),
            ["transition", t] => Some(Record::Transition(t.to_string())),
            _ => None,
        };
        out.extend(rec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::hosts::ManifestFile;

    #[test]
    fn observe_script_snapshot() {
        let probes = vec![
            Probe {
                path: "/etc/nginx/nginx.conf".into(),
                want_sha256: Some("ab".repeat(32)),
                sensitive: false,
            },
            Probe {
                path: "/etc/keepalived/keepalived.conf".into(),
                want_sha256: Some("cd".repeat(32)),
                sensitive: true,
            },
        ];
        insta::assert_snapshot!(observe_script(
            "lab",
            &probes,
            &["nginx".into(), "keepalived".into()]
        ));
    }

    #[test]
    fn apply_script_snapshot() {
        let steps = ApplySteps {
            writes: vec![
                WriteFile {
                    path: "/etc/nginx/nginx.conf".into(),
                    content: b"events {}\n".to_vec(),
                    mode: 0o644,
                    owner: None,
                    check: Some(CheckKind::Nginx),
                    backup_original: true,
                },
                WriteFile {
                    path: "/etc/keepalived/keepalived.conf".into(),
                    content: b"vrrp_instance VI_1 {}\n".to_vec(),
                    mode: 0o600,
                    owner: Some("root".into()),
                    check: Some(CheckKind::Keepalived),
                    backup_original: false,
                },
            ],
            removes: vec![RemoveFile {
                path: "/etc/old file.conf".into(),
                restore: true,
            }],
            services: vec![
                ("reload".into(), "nginx".into()),
                ("start".into(), "keepalived".into()),
            ],
            manifest: ManifestOp::Write(Manifest {
                stack: "lab".into(),
                files: vec![ManifestFile {
                    path: "/etc/nginx/nginx.conf".into(),
                    sha256: "00".repeat(32),
                    backup: true,
                }],
                services: vec!["keepalived".into()],
            }),
        };
        insta::assert_snapshot!(apply_script("lab", &steps));
    }

    #[test]
    fn secrets_never_appear_in_the_script_in_clear() {
        let steps = ApplySteps {
            writes: vec![WriteFile {
                path: "/etc/app.env".into(),
                content: b"PASSWORD=hunter2-canary\n".to_vec(),
                mode: 0o600,
                owner: None,
                check: None,
                backup_original: false,
            }],
            ..Default::default()
        };
        let script = apply_script("lab", &steps);
        assert!(!script.contains("hunter2-canary"));
    }

    #[test]
    fn status_script_snapshot() {
        insta::assert_snapshot!(status_script(
            Some("198.18.0.100"),
            "VI_1",
            &["nginx".into(), "keepalived".into()],
            &[(
                "nginx".into(),
                "curl -fsS -m 1 -o /dev/null http://127.0.0.1:80/healthz".into()
            )]
        ));
    }

    #[test]
    fn check_commands() {
        assert_eq!(
            join(&check_argv(
                CheckKind::Nginx,
                "/etc/nginx/.nginx.conf.hactl-new"
            )),
            "nginx -t -q -c /etc/nginx/.nginx.conf.hactl-new"
        );
        assert_eq!(
            join(&check_argv(CheckKind::Keepalived, "/etc/a b")),
            "keepalived -t -f '/etc/a b'"
        );
        assert_eq!(
            join(&check_argv(CheckKind::Haproxy, "/x")),
            "haproxy -c -q -f /x"
        );
    }

    #[test]
    fn parses_records() {
        let out = "noise\nHACTL\tfile\t/etc/x\tabc\t644\nHACTL\tmissing\t/etc/y\nHACTL\tservice\tnginx\tactive\t42\nHACTL\tservice\thaproxy\tinactive\t\nHACTL\tcontent\t/etc/x\taGk=\n";
        assert_eq!(
            parse(out),
            vec![
                Record::File {
                    path: "/etc/x".into(),
                    sha256: "abc".into(),
                    mode: 0o644
                },
                Record::Missing("/etc/y".into()),
                Record::Service {
                    name: "nginx".into(),
                    active: true,
                    pid: Some(42)
                },
                Record::Service {
                    name: "haproxy".into(),
                    active: false,
                    pid: None
                },
                Record::Content {
                    path: "/etc/x".into(),
                    bytes: b"hi".to_vec()
                },
            ]
        );
    }
}
