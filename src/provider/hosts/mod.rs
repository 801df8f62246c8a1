//! The hosts provider: existing machines reached over SSH.
//!
//! One SSH connection per host (openssh's native multiplexing: a control master per host,
//! reused by every command), strict host-key checking always, all hosts worked in parallel up
//! to `ssh.parallelism`. What runs on a host is built as data in [`script`]; this module only
//! connects, sends scripts on stdin and turns their records into observations and reports.

pub mod guard;
pub mod script;
mod ssh;

use std::collections::BTreeMap;

use serde::Serialize;

pub use ssh::{Connection, HostError};

use crate::onhost::record::{self, Record};
use crate::plan::hosts::{FileKind, Manifest, ObservedFile, ObservedHost, ObservedService};
use crate::stack::{Host, Stack};
use script::{ApplySteps, Probe};

/// Connects to every host in parallel. Each entry is the host's connection or why not.
pub async fn connect_all(
    stack: &Stack,
    hosts: &[&Host],
) -> BTreeMap<String, Result<Connection, HostError>> {
    use futures::StreamExt;
    let parallelism = stack.file.ssh.parallelism.max(1);
    futures::stream::iter(
        hosts
            .iter()
            .map(|h| async move { (h.name.clone(), Connection::open(stack, h).await) }),
    )
    .buffer_unordered(parallelism)
    .collect()
    .await
}

/// Observes files, services and the manifest on one host, and the content of the files that
/// differ for the plan's diff: one round trip.
///
/// What a plan may show of a file on a host is what every user there may read: content is
/// fetched only for a regular file (not a symbolic link) with the "other" read bit, that the
/// stack does not mark sensitive, read as an unprivileged user (see
/// [`script::observe_script`]), and kept only when hactl did not last write it as sensitive
/// either (the manifest, which the same script reads, records that). Everything else shows as
/// a digest change.
pub async fn observe(
    conn: &Connection,
    stack: &str,
    probes: &[Probe],
    services: &[String],
) -> Result<ObservedHost, HostError> {
    // Read-only: through a reused SSH master it also proves the master (see `ssh`).
    let out = conn
        .run_read_only(&script::observe_script(stack, probes, services))
        .await?;
    if !out.success {
        return Err(HostError::Remote {
            host: conn.host.clone(),
            message: format!("observe script failed: {}", out.stderr.trim()),
        });
    }
    let mut obs = ObservedHost {
        host: conn.host.clone(),
        ..Default::default()
    };
    obs.manifest = script::manifest_from_lines(&out.stdout)
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok());
    let sums: BTreeMap<String, String> = record::parse_sums(&out.stdout).into_iter().collect();
    let mut stats = BTreeMap::new();
    let mut contents = BTreeMap::new();
    for rec in record::parse(&out.stdout) {
        match rec {
            Record::Manifest(bytes) => {
                obs.manifest = serde_json::from_slice::<Manifest>(&bytes).ok();
            }
            Record::Stat { path, mode, kind } => {
                stats.insert(path, (mode, kind));
            }
            Record::Service { name, active, pid } => {
                obs.services.insert(name, ObservedService { active, pid });
            }
            Record::Content { path, bytes } => {
                contents.insert(path, bytes);
            }
            _ => {}
        }
    }
    for p in probes {
        let mut found = stats.get(&p.path).map(|&(mode, kind)| ObservedFile {
            sha256: match kind {
                FileKind::Regular => sums.get(&p.path).cloned().unwrap_or_default(),
                _ => String::new(),
            },
            mode,
            kind,
            content: None,
        });
        let was_sensitive = obs
            .manifest
            .as_ref()
            .is_some_and(|m| m.was_sensitive(&p.path));
        if let (Some(f), Some(want)) = (&mut found, &p.want_sha256) {
            if &f.sha256 != want && may_show(f, p.sensitive, was_sensitive) {
                f.content = contents.remove(&p.path);
            }
        }
        obs.files.insert(p.path.clone(), found);
    }
    Ok(obs)
}

/// Whether a plan may show the content of a file found on a host (see [`observe`]).
pub fn may_show(found: &ObservedFile, sensitive: bool, was_sensitive: bool) -> bool {
    found.world_readable() && !sensitive && !was_sensitive
}

/// What happened on one host during apply.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReport {
    pub host: String,
    pub ok: bool,
    /// Files written or removed.
    pub files: Vec<String>,
    /// `reload nginx`, `start keepalived`, …
    pub services: Vec<String>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tool output that explains a failure (e.g. `nginx -t`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

impl HostReport {
    /// Replaces secret values in the error and the tool output ([`crate::vault::Secrets::redact`]).
    pub fn redact(&mut self, secrets: &crate::vault::Secrets) {
        if let Some(e) = &mut self.error {
            *e = secrets.redact(e);
        }
        for l in &mut self.log {
            *l = secrets.redact(l);
        }
    }
}

/// Runs one host's apply script and reports what it did.
pub async fn apply(conn: &Connection, stack: &str, steps: &ApplySteps) -> HostReport {
    // Fresh for every run: the temporary names on the host cannot be guessed beforehand.
    let nonce = crate::onhost::paths::nonce();
    let out = match conn
        .run_script(&script::apply_script(stack, steps, &nonce))
        .await
    {
        Ok(o) => o,
        Err(e) => {
            return HostReport {
                host: conn.host.clone(),
                error: Some(e.to_string()),
                ..Default::default()
            }
        }
    };
    report_from(
        &conn.host,
        &out.stdout,
        &out.stderr,
        out.success,
        steps,
        &nonce,
    )
}

/// The report of one host's apply script from its output (`success`: exit status 0).
pub fn report_from(
    host: &str,
    stdout: &str,
    stderr: &str,
    success: bool,
    steps: &ApplySteps,
    nonce: &str,
) -> HostReport {
    let mut report = HostReport {
        host: host.to_string(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    for rec in record::parse(stdout) {
        match rec {
            Record::Ok(f) => match f.as_slice() {
                [kind, path] if kind == "file" || kind == "remove" => {
                    report.files.push(path.clone())
                }
                [kind, verb, name] if kind == "service" => {
                    report.services.push(format!("{verb} {name}"))
                }
                _ => {}
            },
            Record::Fail(f) => errors.push(script::describe_fail(&f)),
            Record::CheckFailed(path) => errors.push(format!(
                "`{path}` was refused by its check; nothing was changed on this host"
            )),
            Record::Log(line) => report.log.push(checker_paths(&line, steps, nonce)),
            _ => {}
        }
    }
    if success && errors.is_empty() {
        report.ok = true;
    } else if errors.is_empty() {
        report.error = Some(format!(
            "apply script failed: {}",
            stderr.trim().lines().last().unwrap_or("no output")
        ));
    } else {
        report.error = Some(errors.join("; "));
    }
    report
}

/// A checker reads a new file as `/proc/self/cwd/.NAME.hactl-NONCE` (see
/// [`script::apply_script_at`]); its messages name the destination instead.
fn checker_paths(line: &str, steps: &ApplySteps, nonce: &str) -> String {
    let mut out = line.to_string();
    for w in steps.writes.iter().filter(|w| w.check.is_some()) {
        let tmp = format!(
            "/proc/self/cwd/{}",
            crate::onhost::paths::temp_name(&w.path, nonce)
        );
        out = out.replace(&tmp, &w.path);
    }
    out
}

/// Runs a shell snippet (status probes, mounts, redis fixes: not necessarily read-only, so
/// through a reused master only after the master is proven) and returns its stdout.
pub async fn query(conn: &Connection, script: &str) -> Result<String, HostError> {
    Ok(conn.run_script(script).await?.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onhost::cmd::CheckKind;
    use script::WriteFile;

    #[test]
    fn checker_output_names_the_destination_and_is_redacted_of_secrets() {
        // The real apply script and the real nginx, here: a rendered nginx.conf whose secret
        // nginx quotes when it refuses the file.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test runs the apply script as root, as on a host: run the tests as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir(root.join("etc")).expect("mkdir");
        let dest = root.join("etc/nginx.conf").display().to_string();
        let steps = ApplySteps {
            writes: vec![WriteFile {
                path: dest.clone(),
                content: b"events {}\nhttp { s3cret-canary-value on; }\n".to_vec(),
                mode: 0o600,
                owner: None,
                check: Some(CheckKind::Nginx),
                backup_original: false,
                replace_symlink: false,
                sensitive: true,
            }],
            ..Default::default()
        };
        let state = root.join("state").display().to_string();
        let script = script::apply_script_at(&state, "t", &steps, "feedc0de");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let mut report = report_from(
            "h",
            &stdout,
            &stderr,
            out.status.success(),
            &steps,
            "feedc0de",
        );
        assert!(!report.ok);
        assert!(
            report
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("was refused by its check"),
            "{report:?}"
        );
        let log = report.log.join("\n");
        assert!(
            log.contains("s3cret-canary-value"),
            "nginx quotes it: {log}"
        );
        assert!(
            log.contains(&dest),
            "the destination, not /proc/self/cwd: {log}"
        );
        assert!(!log.contains("/proc/self/cwd"), "{log}");
        let mut secrets = crate::vault::Secrets::default();
        secrets.insert(
            "canary".into(),
            crate::vault::Secret::new("s3cret-canary-value".into()),
        );
        report.redact(&secrets);
        let shown = serde_json::to_string(&report).unwrap_or_default();
        assert!(!shown.contains("s3cret-canary-value"), "{shown}");
        assert!(shown.contains("(secret canary)"), "{shown}");
        assert!(
            !std::path::Path::new(&dest).exists(),
            "a refused file is not activated"
        );
    }
}
