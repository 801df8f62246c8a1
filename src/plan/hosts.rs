//! Host diffs: what a host has (observed over SSH) against what the stack renders for it.
//!
//! Pure functions only. A file is created when missing, updated when its digest or mode
//! differs, and deleted when hactl wrote it before (it is in the host's manifest) but the stack
//! no longer renders it. A service is reloaded when one of its files changes while it runs,
//! and started when it is not running. `diff_down` plans the removal of exactly what the
//! manifest says hactl wrote and started, and nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{sha256_hex, short_digest, Action, Addr, Change, DigestKey, Reason};
use crate::render::HostConfig;

pub use crate::onhost::record::FileKind;

/// A file as found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedFile {
    /// Hex SHA-256 of a regular file's content; empty for anything else (hactl never reads
    /// through a symbolic link).
    pub sha256: String,
    pub mode: u32,
    pub kind: FileKind,
    /// The current content, fetched only when it differs and any user on the host may read
    /// it (see `crate::provider::hosts::observe`), for diffs.
    pub content: Option<Vec<u8>>,
}

impl ObservedFile {
    /// Every user on the host may read it: a regular file with the "other" read bit.
    pub fn world_readable(&self) -> bool {
        self.kind == FileKind::Regular && self.mode & 0o004 != 0
    }
}

/// A service as found on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ObservedService {
    pub active: bool,
    pub pid: Option<u32>,
}

/// What hactl wrote and started on a host, kept on the host itself
/// (`/var/lib/hactl/<stack>/manifest.json`) so `down` removes only that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub stack: String,
    pub files: Vec<ManifestFile>,
    /// Services hactl started (not ones that were already running).
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    /// The file existed before hactl wrote it; its original is kept and restored by `down`.
    pub backup: bool,
    /// hactl wrote it holding a secret: never fetched, its digest shown keyed, even after the
    /// stack stops marking it sensitive. (Absent in manifests of older hactl versions.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl Manifest {
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// hactl last wrote `path` holding a secret.
    pub fn was_sensitive(&self, path: &str) -> bool {
        self.file(path).is_some_and(|f| f.sensitive)
    }
}

/// Everything observed on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedHost {
    pub host: String,
    /// Every path asked about: `None` when missing.
    pub files: BTreeMap<String, Option<ObservedFile>>,
    pub services: BTreeMap<String, ObservedService>,
    pub manifest: Option<Manifest>,
}

/// The file name shown in reasons (`nginx.conf changed`).
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn unified_diff(path: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let old = std::str::from_utf8(old).ok()?;
    let new = std::str::from_utf8(new).ok()?;
    Some(
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{path} (on host)"), &format!("{path} (rendered)"))
            .to_string(),
    )
}

/// Plans one host for `up`. Returns the changes and the number of things already right.
///
/// What a plan may show of a file: its content (as a diff) only when it is not sensitive,
/// hactl did not last write it sensitive, and it was fetched (see
/// `crate::provider::hosts::observe`: only regular files every host user may read); its
/// digests keyed with `key` ([`DigestKey::show`]) whenever one of those does not hold or the
/// rendered file is not world-readable, plain `sha256:` prefixes otherwise.
pub fn diff(
    desired: &HostConfig,
    observed: &ObservedHost,
    key: &DigestKey,
) -> (Vec<Change>, usize) {
    let host = &desired.host;
    let mut changes = Vec::new();
    let mut noop = 0;
    // service → names of its files that change
    let mut touched: BTreeMap<&str, Vec<&str>> = BTreeMap::new();

    let was_sensitive = |path: &str| {
        observed
            .manifest
            .as_ref()
            .is_some_and(|m| m.was_sensitive(path))
    };
    for f in &desired.files {
        let want = sha256_hex(&f.content);
        let found = observed.files.get(&f.path).cloned().flatten();
        let private = f.sensitive
            || was_sensitive(&f.path)
            || f.mode & 0o004 == 0
            || found.as_ref().is_some_and(|o| !o.world_readable());
        let show = |sha: &str| {
            if private {
                key.show(sha)
            } else {
                short_digest(sha)
            }
        };
        let (action, reason, before) = match &found {
            None => (Some(Action::Create), Reason::Missing, None),
            Some(o) if o.kind == FileKind::Symlink => (
                Some(Action::Update),
                Reason::Symlink,
                Some("symlink".to_string()),
            ),
            Some(o) if o.kind == FileKind::Other => (
                Some(Action::Update),
                Reason::NotRegularFile,
                Some("not a file".to_string()),
            ),
            Some(o) if o.sha256 != want => (
                Some(Action::Update),
                if o.mode != f.mode {
                    Reason::ContentAndMode {
                        from: o.mode,
                        to: f.mode,
                    }
                } else {
                    Reason::ContentChanged
                },
                Some(show(&o.sha256)),
            ),
            Some(o) if o.mode != f.mode => (
                Some(Action::Update),
                Reason::Mode {
                    from: o.mode,
                    to: f.mode,
                },
                Some(show(&o.sha256)),
            ),
            Some(_) => (None, Reason::Missing, None),
        };
        let Some(action) = action else {
            noop += 1;
            continue;
        };
        if let Some(svc) = &f.service {
            touched.entry(svc).or_default().push(base_name(&f.path));
        }
        let diff = if f.sensitive || was_sensitive(&f.path) {
            None
        } else {
            let old = found
                .as_ref()
                .and_then(|o| o.content.clone())
                .unwrap_or_default();
            if found.is_some() && found.as_ref().and_then(|o| o.content.as_ref()).is_none() {
                None
            } else {
                unified_diff(&f.path, &old, &f.content)
            }
        };
        changes.push(Change {
            before,
            after: Some(show(&want)),
            diff,
            sensitive: f.sensitive,
            ..Change::new(Addr::file(host, &f.path), action, reason)
        });
    }

    // Files hactl wrote before that the stack no longer renders.
    if let Some(m) = &observed.manifest {
        for mf in &m.files {
            if desired.files.iter().any(|f| f.path == mf.path) {
                continue;
            }
            let reason = Reason::NoLongerInStack {
                restored: mf.backup,
            };
            changes.push(Change {
                before: Some(manifest_digest(mf, key)),
                sensitive: mf.sensitive,
                ..Change::new(Addr::file(host, &mf.path), Action::Delete, reason)
            });
        }
    }

    for svc in &desired.services {
        let state = observed.services.get(svc).copied().unwrap_or_default();
        let changed = touched.get(svc.as_str());
        let (action, reason) = match (state.active, changed) {
            (true, Some(files)) => (
                Action::Reload,
                Reason::FilesChanged {
                    files: files.iter().map(|f| f.to_string()).collect(),
                },
            ),
            (false, _) => (Action::Start, Reason::NotRunning),
            (true, None) => {
                noop += 1;
                continue;
            }
        };
        changes.push(Change {
            before: Some(if state.active { "running" } else { "stopped" }.into()),
            after: Some("running".into()),
            ..Change::new(Addr::service(host, svc), action, reason)
        });
    }
    (changes, noop)
}

/// The digest of a file the manifest records: keyed when hactl wrote it holding a secret.
fn manifest_digest(f: &ManifestFile, key: &DigestKey) -> String {
    if f.sensitive {
        key.show(&f.sha256)
    } else {
        short_digest(&f.sha256)
    }
}

/// Plans one host for `down`: stop what hactl started, remove or restore what it wrote.
pub fn diff_down(host: &str, observed: &ObservedHost, key: &DigestKey) -> Vec<Change> {
    let Some(m) = &observed.manifest else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for svc in m.services.iter().rev() {
        let active = observed.services.get(svc).is_some_and(|s| s.active);
        if !active {
            continue;
        }
        changes.push(Change {
            before: Some("running".into()),
            after: Some("stopped".into()),
            ..Change::new(
                Addr::service(host, svc),
                Action::Stop,
                Reason::StartedByHactl,
            )
        });
    }
    for f in &m.files {
        changes.push(Change {
            before: Some(manifest_digest(f, key)),
            sensitive: f.sensitive,
            ..Change::new(
                Addr::file(host, &f.path),
                Action::Delete,
                Reason::WrittenByHactl { restored: f.backup },
            )
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onhost::cmd::CheckKind;
    use crate::render::RenderedFile;

    fn file(path: &str, content: &str, service: &str) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode: 0o644,
            owner: None,
            service: Some(service.into()),
            check: Some(CheckKind::Nginx),
            sensitive: false,
        }
    }

    fn key() -> DigestKey {
        DigestKey::from_hex(&"5a".repeat(32)).expect("64 hex digits")
    }

    fn desired() -> HostConfig {
        HostConfig {
            host: "host1".into(),
            files: vec![
                file("/etc/nginx/nginx.conf", "listen 80;\n", "nginx"),
                file("/etc/keepalived/keepalived.conf", "vrrp\n", "keepalived"),
            ],
            services: vec!["nginx".into(), "keepalived".into()],
        }
    }

    fn observed_same(d: &HostConfig) -> ObservedHost {
        let mut o = ObservedHost {
            host: d.host.clone(),
            ..Default::default()
        };
        for f in &d.files {
            o.files.insert(
                f.path.clone(),
                Some(ObservedFile {
                    sha256: sha256_hex(&f.content),
                    mode: f.mode,
                    kind: FileKind::Regular,
                    content: None,
                }),
            );
        }
        for s in &d.services {
            o.services.insert(
                s.clone(),
                ObservedService {
                    active: true,
                    pid: Some(10),
                },
            );
        }
        o
    }

    #[test]
    fn fresh_host_creates_files_and_starts_services() {
        let d = desired();
        let o = ObservedHost {
            host: "host1".into(),
            ..Default::default()
        };
        let (changes, noop) = diff(&d, &o, &key());
        assert_eq!(noop, 0);
        let actions: Vec<_> = changes
            .iter()
            .map(|c| (c.addr.to_string(), c.action))
            .collect();
        assert_eq!(
            actions
                .iter()
                .map(|(a, x)| (a.as_str(), *x))
                .collect::<Vec<_>>(),
            vec![
                ("host1:/etc/nginx/nginx.conf", Action::Create),
                ("host1:/etc/keepalived/keepalived.conf", Action::Create),
                ("host1:service/nginx", Action::Start),
                ("host1:service/keepalived", Action::Start),
            ]
        );
        insta::assert_snapshot!(changes[0].diff.clone().unwrap_or_default());
    }

    #[test]
    fn converged_host_has_no_changes() {
        let d = desired();
        let (changes, noop) = diff(&d, &observed_same(&d), &key());
        assert!(changes.is_empty(), "{changes:#?}");
        assert_eq!(noop, 4);
    }

    #[test]
    fn one_changed_file_reloads_only_its_service() {
        let d = desired();
        let mut o = observed_same(&d);
        o.files.insert(
            "/etc/nginx/nginx.conf".into(),
            Some(ObservedFile {
                sha256: sha256_hex(b"listen 81;\n"),
                mode: 0o644,
                kind: FileKind::Regular,
                content: Some(b"listen 81;\n".to_vec()),
            }),
        );
        let (changes, noop) = diff(&d, &o, &key());
        assert_eq!(noop, 2);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].action, Action::Update);
        assert_eq!(changes[1].addr.to_string(), "host1:service/nginx");
        assert_eq!(changes[1].action, Action::Reload);
        assert_eq!(changes[1].reason.to_string(), "nginx.conf changed");
        insta::assert_snapshot!(changes[0].diff.clone().unwrap_or_default());
    }

    #[test]
    fn sensitive_file_has_no_diff() {
        let mut d = desired();
        d.files[1].sensitive = true;
        d.files[1].mode = 0o600;
        let mut o = observed_same(&d);
        o.files.insert(
            "/etc/keepalived/keepalived.conf".into(),
            Some(ObservedFile {
                sha256: sha256_hex(b"old secret"),
                mode: 0o600,
                kind: FileKind::Regular,
                content: Some(b"old secret".to_vec()),
            }),
        );
        let (changes, _) = diff(&d, &o, &key());
        assert!(changes[0].sensitive);
        assert!(changes[0].diff.is_none());
        let json = serde_json::to_string(&changes).unwrap_or_default();
        assert!(!json.contains("old secret"));
    }

    #[test]
    fn sensitive_file_digests_are_keyed_not_plain_sha256() {
        let mut d = desired();
        d.files[1].sensitive = true;
        d.files[1].mode = 0o600;
        let mut o = observed_same(&d);
        let old = sha256_hex(b"auth_pass hunter22\n");
        o.files.insert(
            "/etc/keepalived/keepalived.conf".into(),
            Some(ObservedFile {
                sha256: old.clone(),
                mode: 0o600,
                kind: FileKind::Regular,
                content: None,
            }),
        );
        let (changes, _) = diff(&d, &o, &key());
        let c = &changes[0];
        let want = sha256_hex(&d.files[1].content);
        assert_eq!(c.before.as_deref(), Some(key().show(&old).as_str()));
        assert_eq!(c.after.as_deref(), Some(key().show(&want).as_str()));
        let json = serde_json::to_string(&changes).unwrap_or_default();
        assert!(
            !json.contains(&old[..12]) && !json.contains(&want[..12]),
            "{json}"
        );
    }

    #[test]
    fn plan_never_shows_old_content_hactl_last_wrote_as_sensitive() {
        // The template stopped reading a secret: the file on the host still holds the old one.
        let d = desired();
        let mut o = observed_same(&d);
        let old = sha256_hex(b"auth_pass old-secret\n");
        o.files.insert(
            "/etc/keepalived/keepalived.conf".into(),
            Some(ObservedFile {
                sha256: old.clone(),
                mode: 0o644,
                kind: FileKind::Regular,
                content: Some(b"auth_pass old-secret\n".to_vec()),
            }),
        );
        o.manifest = Some(Manifest {
            stack: "lab".into(),
            files: vec![ManifestFile {
                path: "/etc/keepalived/keepalived.conf".into(),
                sha256: old.clone(),
                backup: false,
                sensitive: true,
            }],
            services: Vec::new(),
        });
        let (changes, _) = diff(&d, &o, &key());
        assert!(changes[0].diff.is_none(), "{changes:#?}");
        assert_eq!(
            changes[0].before.as_deref(),
            Some(key().show(&old).as_str())
        );
        let json = serde_json::to_string(&changes).unwrap_or_default();
        assert!(
            !json.contains("old-secret") && !json.contains(&old[..12]),
            "{json}"
        );
        // and dropping it from the stack, or `down`, shows the keyed digest too
        let none = HostConfig {
            files: Vec::new(),
            ..desired()
        };
        let (gone, _) = diff(&none, &o, &key());
        assert_eq!(gone[0].before.as_deref(), Some(key().show(&old).as_str()));
        let down = diff_down("host1", &o, &key());
        assert_eq!(down[0].before.as_deref(), Some(key().show(&old).as_str()));
    }

    #[test]
    fn root_only_file_on_the_host_shows_a_keyed_digest() {
        let d = desired();
        let mut o = observed_same(&d);
        let old = sha256_hex(b"listen 81;\n");
        o.files.insert(
            "/etc/nginx/nginx.conf".into(),
            Some(ObservedFile {
                sha256: old.clone(),
                mode: 0o600,
                kind: FileKind::Regular,
                content: None,
            }),
        );
        let (changes, _) = diff(&d, &o, &key());
        assert_eq!(
            changes[0].before.as_deref(),
            Some(key().show(&old).as_str())
        );
        assert!(changes[0].diff.is_none());
    }

    #[test]
    fn symlink_on_the_host_is_reported_and_never_read() {
        let d = desired();
        let mut o = observed_same(&d);
        o.files.insert(
            "/etc/nginx/nginx.conf".into(),
            Some(ObservedFile {
                sha256: String::new(),
                mode: 0o777,
                kind: FileKind::Symlink,
                content: None,
            }),
        );
        let (changes, _) = diff(&d, &o, &key());
        assert_eq!(changes[0].action, Action::Update);
        assert_eq!(changes[0].before.as_deref(), Some("symlink"));
        assert!(
            changes[0].reason.to_string().contains("refuses"),
            "{}",
            changes[0].reason
        );
        assert!(changes[0].diff.is_none());
    }

    #[test]
    fn files_dropped_from_the_stack_are_deleted_and_down_removes_only_the_manifest() {
        let d = desired();
        let mut o = observed_same(&d);
        o.manifest = Some(Manifest {
            stack: "lab".into(),
            files: vec![
                ManifestFile {
                    path: "/etc/nginx/nginx.conf".into(),
                    sha256: sha256_hex(b"listen 80;\n"),
                    backup: true,
                    sensitive: false,
                },
                ManifestFile {
                    path: "/etc/old.conf".into(),
                    sha256: sha256_hex(b"x"),
                    backup: false,
                    sensitive: false,
                },
            ],
            services: vec!["nginx".into()],
        });
        let (changes, _) = diff(&d, &o, &key());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].addr.to_string(), "host1:/etc/old.conf");
        assert_eq!(changes[0].action, Action::Delete);

        let down = diff_down("host1", &o, &key());
        let actions: Vec<_> = down
            .iter()
            .map(|c| (c.addr.to_string(), c.action))
            .collect();
        assert_eq!(
            actions
                .iter()
                .map(|(a, x)| (a.as_str(), *x))
                .collect::<Vec<_>>(),
            vec![
                ("host1:service/nginx", Action::Stop),
                ("host1:/etc/nginx/nginx.conf", Action::Delete),
                ("host1:/etc/old.conf", Action::Delete),
            ]
        );
    }
}
