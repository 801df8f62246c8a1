//! `hactl render -f STACK [--host H] [--out DIR] [--check]`: shows (or writes) exactly what
//! `up` would push, and with `--check` runs the real keepalived/nginx/haproxy checks on it
//! here. Sensitive files are never printed: only their size and hash.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::StackArgs;
use crate::render::check;
use crate::render::{self, HostConfig, RenderedFile};
use crate::{stack, view, ExitStatus};

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Write the files under DIR/<host>/<path> instead of listing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Check every file with the real tool installed here (`keepalived -t`, `nginx -t`,
    /// `haproxy -c`); the files go to a private temporary directory unless `--out` is given.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
enum RenderCmdError {
    #[error("the stack has no host `{name}`")]
    #[diagnostic(
        code(hactl::render::unknown_host),
        help("hosts in this stack: {known}")
    )]
    UnknownHost { name: String, known: String },

    #[error("cannot create a temporary directory for the checks: {0}")]
    #[diagnostic(code(hactl::render::tempdir))]
    TempDir(std::io::Error),
}

pub async fn run(args: RenderArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&args.stack.file)?;
    let secrets = crate::vault::open_checked(&stack)?;
    // Digests of secret-bearing files are keyed (read-only: `render` writes no state).
    let key = crate::state::digest_key(&stack, false).await;

    let hosts: Vec<&stack::Host> = match &args.host {
        Some(name) => match stack.host(name) {
            Some(h) => vec![h],
            None => {
                let known = stack
                    .hosts
                    .iter()
                    .map(|h| format!("`{}`", h.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(RenderCmdError::UnknownHost {
                    name: name.clone(),
                    known,
                }
                .into());
            }
        },
        None => stack.hosts.iter().collect(),
    };
    let configs = hosts
        .iter()
        .map(|h| render::render_host(&stack, h, &secrets))
        .collect::<Result<Vec<_>, _>>()?;

    // Files land in --out, or (for --check alone) in a private temporary directory that is
    // removed when `tmp` drops.
    let mut tmp = None;
    let dir: Option<PathBuf> = match (&args.out, args.check) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => {
            let t = tempfile::Builder::new()
                .prefix("hactl-render-")
                .tempdir()
                .map_err(RenderCmdError::TempDir)?;
            let p = t.path().to_path_buf();
            tmp = Some(t);
            Some(p)
        }
        (None, false) => None,
    };

    let mut written: Vec<Vec<PathBuf>> = Vec::new();
    if let Some(dir) = &dir {
        for c in &configs {
            written.push(check::write_host(dir, c).await?);
        }
    }

    if args.out.is_some() {
        for (c, paths) in configs.iter().zip(&written) {
            if !args.stack.json {
                view::print_out(&written_report(c, paths));
            }
        }
    } else if !args.check && !args.stack.json {
        for c in &configs {
            view::print_out(&listing(c, &key));
        }
    }

    let mut status = ExitStatus::Success;
    let mut results = Vec::new();
    if args.check {
        for (c, paths) in configs.iter().zip(&written) {
            for (f, local) in c.files.iter().zip(paths) {
                let Some(kind) = f.check else { continue };
                let mut outcome = check::run_check(kind, local).await?;
                outcome.output = secrets.redact(&outcome.output);
                if !outcome.ok {
                    status = ExitStatus::Failure;
                }
                if !args.stack.json {
                    view::print_out(&check_line(&c.host, f, &outcome));
                }
                results.push(json!({
                    "host": c.host,
                    "path": f.path,
                    "argv": outcome.argv,
                    "ok": outcome.ok,
                    "output": outcome.output,
                }));
            }
        }
        if status == ExitStatus::Failure && !args.stack.json {
            view::note("error: some rendered files fail their checks (see above)");
        }
    }

    if args.stack.json {
        let hosts: Vec<_> = configs
            .iter()
            .zip(written.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(c, paths)| host_json(c, paths.filter(|_| args.out.is_some()), &key))
            .collect();
        view::print_json(&json!({
            "stack": stack.name(),
            "hosts": hosts,
            "checks": if args.check { Some(results) } else { None },
        }))?;
    }
    drop(tmp);
    Ok(status)
}

fn mode(f: &RenderedFile) -> String {
    format!("{:04o}", f.mode)
}

/// What the header line says about a file: mode, owner, service, check.
fn describe(f: &RenderedFile) -> String {
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
fn sensitive_summary(f: &RenderedFile, key: &crate::plan::DigestKey) -> String {
    format!(
        "(sensitive, {} bytes, {})",
        f.content.len(),
        key.show(&f.sha256())
    )
}

/// The human listing of one host's files: a header per file, then its content.
fn listing(c: &HostConfig, key: &crate::plan::DigestKey) -> String {
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

fn written_report(c: &HostConfig, paths: &[PathBuf]) -> String {
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

fn check_line(host: &str, f: &RenderedFile, o: &check::CheckOutcome) -> String {
    let verdict = if o.ok { "ok  " } else { "FAIL" };
    let mut line = format!("{verdict} {host}:{} ({})\n", f.path, o.argv.join(" "));
    if !o.ok || !o.output.is_empty() {
        for l in o.output.lines() {
            line.push_str(&format!("     | {l}\n"));
        }
    }
    line
}

fn host_json(
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
