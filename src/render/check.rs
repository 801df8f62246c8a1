//! Rendered files on this machine: writing them under a directory (`hactl render --out`) and
//! checking them with the real tools installed here (`hactl render --check`).
//!
//! The check runs exactly the command lines of [`cmd::check`], the same ones the apply engine
//! runs on each host, so a file that passes here fails on a host only because of the host
//! (a missing interface, a missing check script), not because of the template.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CheckKind, HostConfig, RenderedFile};
use crate::onhost::cmd;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CheckError {
    #[error("cannot write {}: {source}", path.display())]
    #[diagnostic(
        code(hactl::render::write),
        help("check that the directory is writable")
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("file `{path}` of host `{host}` would be written outside the output directory")]
    #[diagnostic(
        code(hactl::render::outside_out),
        help("host names are one path component and destinations have no `..` segment; `hactl validate` says where")
    )]
    Outside { host: String, path: String },

    #[error("`{tool}` is not installed on this machine, so `{tool}` files cannot be checked")]
    #[diagnostic(
        code(hactl::render::tool_missing),
        help("install it: `apt-get install {tool}`")
    )]
    ToolMissing { tool: String },

    #[error("cannot run `{tool}`: {source}")]
    #[diagnostic(code(hactl::render::tool_failed))]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{tool}` did not finish within {} s", TIMEOUT.as_secs())]
    #[diagnostic(code(hactl::render::tool_timeout))]
    Timeout { tool: String },
}

/// A hung checker must not hang `hactl`.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a host's file lands under `dir`: `dir/<host>/<absolute path without its leading />`,
/// normalized on its text. A host name that is not one plain path component (`..`, `a/b`) or
/// a destination with a `..` segment is refused, so nothing is ever written outside `dir`
/// whatever the stack says (`validate` refuses both too; this is the second fence).
pub fn local_path(dir: &Path, host: &str, file: &RenderedFile) -> Result<PathBuf, CheckError> {
    let outside = || CheckError::Outside {
        host: host.to_string(),
        path: file.path.clone(),
    };
    if host.is_empty() || host == "." || host == ".." || host.contains(['/', '\0']) {
        return Err(outside());
    }
    let mut out = dir.join(host);
    let mut any = false;
    for seg in file.path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(outside()),
            s if s.contains('\0') => return Err(outside()),
            s => {
                out.push(s);
                any = true;
            }
        }
    }
    if !any {
        return Err(outside());
    }
    Ok(out)
}

/// Writes every file of `config` under `dir/<host>/`, with the file's permission bits (so
/// sensitive files are 0600 here too) but never setuid, setgid or sticky: these are copies
/// to read, not programs to run. Returns the local paths, in the config's file order.
pub async fn write_host(dir: &Path, config: &HostConfig) -> Result<Vec<PathBuf>, CheckError> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::with_capacity(config.files.len());
    for file in &config.files {
        let path = local_path(dir, &config.host, file)?;
        let err = |source| CheckError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(err)?;
        }
        // Create it private first, so a sensitive file is never readable, even for a moment.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.hactl-tmp"));
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true).mode(0o600);
        let mut f = opts.open(&tmp).await.map_err(err)?;
        tokio::io::AsyncWriteExt::write_all(&mut f, &file.content)
            .await
            .map_err(err)?;
        // tokio's `write_all` returns with the last chunk still being written in the
        // background: wait for it (and its error) before the rename publishes the file.
        tokio::io::AsyncWriteExt::flush(&mut f).await.map_err(err)?;
        drop(f);
        tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(file.mode & 0o777))
            .await
            .map_err(err)?;
        tokio::fs::rename(&tmp, &path).await.map_err(err)?;
        out.push(path);
    }
    Ok(out)
}

/// The result of checking one file.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub argv: Vec<String>,
    pub ok: bool,
    /// The tool's stdout and stderr, trimmed.
    pub output: String,
}

/// Runs the real tool on the file at `path` on this machine.
pub async fn run_check(kind: CheckKind, path: &Path) -> Result<CheckOutcome, CheckError> {
    let argv = cmd::check(kind, &path.to_string_lossy());
    let tool = kind.tool().to_string();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Err(_) => return Err(CheckError::Timeout { tool }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CheckError::ToolMissing { tool })
        }
        Ok(Err(source)) => return Err(CheckError::Spawn { tool, source }),
        Ok(Ok(o)) => o,
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(CheckOutcome {
        argv,
        ok: output.status.success(),
        output: text.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_nest_under_the_host() {
        let f = RenderedFile {
            path: "/etc/nginx/nginx.conf".into(),
            content: Vec::new(),
            mode: 0o644,
            owner: None,
            service: None,
            check: None,
            sensitive: false,
        };
        assert_eq!(
            local_path(Path::new("/out"), "host1", &f).expect("inside"),
            Path::new("/out/host1/etc/nginx/nginx.conf")
        );
    }

    #[test]
    fn render_out_never_leaves_the_output_directory() {
        let f = |path: &str| RenderedFile {
            path: path.into(),
            content: Vec::new(),
            mode: 0o4755,
            owner: None,
            service: None,
            check: None,
            sensitive: false,
        };
        let out = Path::new("/out");
        for (host, dest) in [
            ("..", "/x"),
            (".", "/x"),
            ("a/b", "/x"),
            ("", "/x"),
            ("web1", "/../../x"),
            ("web1", "/etc/../../x"),
            ("web1", "/"),
        ] {
            assert!(
                matches!(
                    local_path(out, host, &f(dest)),
                    Err(CheckError::Outside { .. })
                ),
                "{host} {dest} was allowed"
            );
        }
        assert_eq!(
            local_path(out, "web1", &f("/etc//./app.conf")).expect("inside"),
            Path::new("/out/web1/etc/app.conf")
        );
    }

    #[tokio::test]
    async fn render_out_drops_setuid_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = HostConfig {
            host: "web1".into(),
            files: vec![RenderedFile {
                path: "/usr/local/bin/tool".into(),
                content: b"#!/bin/sh\n".to_vec(),
                mode: 0o4755,
                owner: None,
                service: None,
                check: None,
                sensitive: false,
            }],
            services: Vec::new(),
        };
        let paths = write_host(dir.path(), &config).await.expect("written");
        let mode = std::fs::metadata(&paths[0])
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[tokio::test]
    async fn sensitive_files_are_written_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |path: &str, mode, sensitive| RenderedFile {
            path: path.into(),
            content: b"x\n".to_vec(),
            mode,
            owner: None,
            service: None,
            check: None,
            sensitive,
        };
        let config = HostConfig {
            host: "h".into(),
            files: vec![
                file("/etc/a.conf", 0o644, false),
                file("/etc/secret.conf", 0o600, true),
            ],
            services: Vec::new(),
        };
        let paths = write_host(dir.path(), &config).await.expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("written").permissions().mode() & 0o7777;
        assert_eq!(mode(&paths[0]), 0o644);
        assert_eq!(mode(&paths[1]), 0o600);
        assert_eq!(std::fs::read(&paths[1]).expect("read"), b"x\n");
    }
}
