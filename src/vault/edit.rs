//! `secrets edit`: the one place plaintext touches disk, for as short a time as possible.
//!
//! The plaintext goes into a 0600 file inside a fresh 0700 directory (under
//! `$XDG_RUNTIME_DIR`, a per-user tmpfs, when there is one; else the temp dir). A guard
//! overwrites every file in that directory with zeros and removes the directory when it is
//! dropped, which happens on success, on error and on panic (unwinding). SIGINT, SIGTERM,
//! SIGHUP and SIGQUIT (every signal a terminal or a supervisor sends to stop a program) are
//! caught from *before* the file is written until the guard is gone: they stop the editor
//! (SIGTERM, so a terminal editor restores the screen) and return [`VaultError::Interrupted`],
//! so the guard runs instead of the process dying with the file on disk. SIGQUIT's default
//! action would also write a core file holding the plaintext; core dumps are off anyway from
//! the moment the vault is read ([`super::no_core_dumps`]). Only SIGKILL (or a power cut) can
//! leave the file behind; the tmpfs makes even that short-lived.
//!
//! The whole directory is wiped, not just the file, because editors put swap and backup copies
//! beside the file they edit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use zeroize::Zeroizing;

use super::VaultError;

/// The private directory holding the plaintext; wiped and removed on drop.
struct PlainDir {
    dir: Option<tempfile::TempDir>,
}

impl Drop for PlainDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            wipe_dir(dir.path());
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                super::io::note(&format!(
                    "warning: could not remove `{}`: {e}; delete it by hand",
                    path.display()
                ));
            }
        }
    }
}

/// Overwrites every regular file below `dir` with zeros (best effort: the directory is removed
/// right after).
fn wipe_dir(dir: &Path) {
    use std::io::Write;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            wipe_dir(&path);
        } else if meta.is_file() {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
                let zeros = vec![0u8; 64 * 1024];
                let mut left = meta.len();
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    if f.write_all(&zeros[..n]).is_err() {
                        break;
                    }
                    left -= n as u64;
                }
                let _ = f.sync_all();
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Where the private directory goes: a per-user tmpfs when available.
fn temp_base() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() && p.is_dir() => p,
        _ => std::env::temp_dir(),
    }
}

/// The signals that would otherwise kill hactl with the plaintext on disk.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    fn install() -> Result<Self, VaultError> {
        let mk = |k: SignalKind| {
            signal(k).map_err(|e| VaultError::Editor {
                reason: format!("cannot install a signal handler: {e}"),
            })
        };
        Ok(Signals {
            int: mk(SignalKind::interrupt())?,
            term: mk(SignalKind::terminate())?,
            hup: mk(SignalKind::hangup())?,
            quit: mk(SignalKind::quit())?,
        })
    }

    async fn any(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
            _ = self.quit.recv() => {}
        }
    }
}

/// Runs `$EDITOR` on `initial` (as `<stack>.secrets.yaml`) until `accept` takes the result.
/// When the result is refused and a person is at the terminal, they may edit again (their
/// changes are kept in the file); otherwise the refusal is the error.
pub(crate) async fn edit_plaintext<T>(
    stack_name: &str,
    initial: &str,
    accept: impl Fn(&str) -> Result<T, VaultError>,
) -> Result<T, VaultError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    super::no_core_dumps();
    let mut signals = Signals::install()?;

    let base = temp_base();
    let dir = tempfile::Builder::new()
        .prefix("hactl-edit-")
        .tempdir_in(&base)
        .map_err(|e| VaultError::io("create a private directory in", &base, e))?;
    let guard = PlainDir { dir: Some(dir) };
    let dir_path = guard
        .dir
        .as_ref()
        .map(|d| d.path().to_path_buf())
        .unwrap_or_default();
    std::fs::set_permissions(&dir_path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| VaultError::io("protect", &dir_path, e))?;
    let file = dir_path.join(format!("{stack_name}.secrets.yaml"));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| VaultError::io("create", &file, e))?;
        f.write_all(initial.as_bytes())
            .map_err(|e| VaultError::io("write", &file, e))?;
    }
    tracing::debug!(dir = %dir_path.display(), "plaintext copy for the editor");

    loop {
        run_editor(&file, &mut signals).await?;
        let text = Zeroizing::new(
            tokio::fs::read_to_string(&file)
                .await
                .map_err(|e| VaultError::io("read back", &file, e))?,
        );
        match accept(&text) {
            Ok(v) => {
                drop(guard);
                return Ok(v);
            }
            Err(e) if super::io::interactive() => {
                super::io::note(&format!("error: {e}"));
                if !ask_again(&mut signals).await? {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `$EDITOR` (or `$VISUAL`, else `vi`), run by `sh` so that `EDITOR="code --wait"` works;
/// `exec` makes the editor the child itself, so stopping the child stops the editor.
async fn run_editor(file: &Path, signals: &mut Signals) -> Result<(), VaultError> {
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("VISUAL")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".into());
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {editor} \"$1\""))
        .arg("hactl-secrets-edit")
        .arg(file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| VaultError::Editor {
            reason: format!("cannot start `{editor}`: {e}"),
        })?;
    tokio::select! {
        status = child.wait() => {
            let status = status.map_err(|e| VaultError::Editor { reason: e.to_string() })?;
            if status.success() {
                Ok(())
            } else {
                Err(VaultError::Editor {
                    reason: format!("`{editor}` exited with {status}"),
                })
            }
        }
        _ = signals.any() => {
            stop(&mut child).await;
            Err(VaultError::Interrupted)
        }
    }
}

/// SIGTERM first (a terminal editor then restores the screen), SIGKILL after a grace period.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: sending a signal to our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

async fn ask_again(signals: &mut Signals) -> Result<bool, VaultError> {
    super::io::note("edit again? [Y/n] ");
    // A plain thread, not spawn_blocking: the runtime waits for blocking tasks at exit, and a
    // read stuck on the terminal after a SIGINT must not keep hactl alive.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    tokio::select! {
        answer = rx => {
            let answer = answer
                .map_err(|e| VaultError::Editor { reason: e.to_string() })?
                .map_err(|e| VaultError::Editor { reason: e.to_string() })?;
            Ok(!answer.trim().eq_ignore_ascii_case("n"))
        }
        _ = signals.any() => Err(VaultError::Interrupted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_wipes_and_removes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("a.yaml"), "secret").unwrap();
        std::fs::create_dir(path.join("sub")).unwrap();
        std::fs::write(path.join("sub/.a.yaml.swp"), "secret").unwrap();
        drop(PlainDir { dir: Some(dir) });
        assert!(!path.exists());
    }

    #[test]
    fn guard_runs_on_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("a.yaml"), "secret").unwrap();
        let r = std::panic::catch_unwind(move || {
            let _g = PlainDir { dir: Some(dir) };
            panic!("boom");
        });
        assert!(r.is_err());
        assert!(!path.exists());
    }
}
