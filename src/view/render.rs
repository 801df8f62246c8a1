//! `hactl render` output: each host's files (mode, owner, size, a digest for sensitive ones),
//! where `--out` wrote them, each `--check` result, and the `--json` form of a host.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::render::check;
use crate::render::{HostConfig, RenderedFile};

/// The stack's host names, quoted, for an error that names a host the stack lacks.
pub fn known_hosts(stack: &crate::stack::Stack) -> String {
    stack
        .hosts
        .iter()
        .map(|h| format!("`{}`", h.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn mode(f: &RenderedFile) -> String {
    format!("{:04o}", f.mode)
}

/// What the header line says about a file: mode, owner, service, check.
pub fn describe(f: &RenderedFile) -> String {
    let mut parts = vec![mode(f)];
    if let Some(o) = &f.owner {
        parts.push(format!("owner {o}"));
    }
    if let Some(s) = &f.service {
        parts.push(format!("reloads {s}"));
    }
    if let Some(k) = f.check {
        parts.push(format!(
            "checked by `{}`",
            crate::onhost::cmd::check(k, "FILE").join(" ")
        ));
    }
    parts.join(", ")
}

/// A sensitive file's size and keyed digest: a plain SHA-256 prefix would let a reader of
/// the output guess a short secret offline.
pub fn sensitive_summary(f: &RenderedFile, key: &crate::plan::DigestKey) -> String {
    format!(
        "(sensitive, {} bytes, {})",
        f.content.len(),
        key.show(&f.sha256())
    )
}

/// The human listing of one host's files: a header per file, then its content.
pub fn listing(c: &HostConfig, key: &crate::plan::DigestKey) -> String {
    let mut out = format!(
        "== host {}: {} files; services in start order: {}\n",
        c.host,
        c.files.len(),
        if c.services.is_empty() {
            "none".to_string()
        } else {
            c.services.join(", ")
        }
    );
    for f in &c.files {
        out.push_str(&format!("\n--- {}:{} ({})\n", c.host, f.path, describe(f)));
        if f.sensitive {
            out.push_str(&sensitive_summary(f, key));
            out.push('\n');
        } else {
            let text = String::from_utf8_lossy(&f.content);
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out.push('\n');
    out
}

pub fn written_report(c: &HostConfig, paths: &[PathBuf]) -> String {
    let mut out = String::new();
    for (f, p) in c.files.iter().zip(paths) {
        let note = if f.sensitive {
            " (sensitive: readable by the owner only)"
        } else {
            ""
        };
        out.push_str(&format!("wrote {} ({}){note}\n", p.display(), mode(f)));
    }
    out
}

pub fn check_line(host: &str, f: &RenderedFile, o: &check::CheckOutcome) -> String {
    let verdict = if o.ok { "ok  " } else { "FAIL" };
    let mut line = format!("{verdict} {host}:{} ({})\n", f.path, o.argv.join(" "));
    if !o.ok || !o.output.is_empty() {
        for l in o.output.lines() {
            line.push_str(&format!("     | {l}\n"));
        }
    }
    line
}

pub fn host_json(
    c: &HostConfig,
    written: Option<&Vec<PathBuf>>,
    key: &crate::plan::DigestKey,
) -> serde_json::Value {
    let files: Vec<_> = c
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut v = json!({
                "path": f.path,
                "mode": mode(f),
                "owner": f.owner,
                "service": f.service,
                "check": f.check,
                "sensitive": f.sensitive,
                "size": f.content.len(),
            });
            if f.sensitive {
                v["digest"] = key.show(&f.sha256()).into();
            } else {
                v["sha256"] = f.sha256().into();
                v["content"] = String::from_utf8_lossy(&f.content).into_owned().into();
            }
            if let Some(p) = written.and_then(|w| w.get(i)) {
                v["written"] = Path::new(p).display().to_string().into();
            }
            v
        })
        .collect();
    json!({ "host": c.host, "services": c.services, "files": files })
}
