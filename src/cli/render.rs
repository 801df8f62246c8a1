//! `hactl render -f STACK [--host H] [--out DIR] [--check]`: shows (or writes) exactly what
//! `up` would push, and with `--check` runs the real keepalived/nginx/haproxy checks on it
//! here. Sensitive files are never printed: only their size and hash.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::StackArgs;
use crate::render::check;
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
    let (stack, outputs) = crate::engine::layers::for_render(stack).await?;
    // Digests of secret-bearing files are keyed (read-only: `render` writes no state).
    let key = crate::state::digest_key(&stack, false).await;

    let hosts: Vec<&stack::Host> = match &args.host {
        Some(name) => vec![stack
            .host(name)
            .ok_or_else(|| RenderCmdError::UnknownHost {
                name: name.clone(),
                known: view::render::known_hosts(&stack),
            })?],
        None => stack.hosts.iter().collect(),
    };
    let configs = crate::engine::layers::render_hosts(&stack, &secrets, &outputs, &hosts)?;

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
                view::print_out(&view::render::written_report(c, paths));
            }
        }
    } else if !args.check && !args.stack.json {
        for c in &configs {
            view::print_out(&view::render::listing(c, &key));
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
                    view::print_out(&view::render::check_line(&c.host, f, &outcome));
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
            .map(|(c, paths)| {
                view::render::host_json(c, paths.filter(|_| args.out.is_some()), &key)
            })
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
