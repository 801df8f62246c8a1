//! SSH connections: openssh with native multiplexing and strict host keys.
//!
//! Host keys are always checked strictly against the stack's `known_hosts` (or the user's):
//! hactl never turns checking off. The control sockets live in a private temporary directory
//! that disappears with the process.

use openssh::Stdio;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;

use crate::stack::{Host, Stack};

#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum HostError {
    #[error("{host}: host key verification failed for `{target}`")]
    #[diagnostic(
        code(hactl::ssh::host_key),
        help("the host's key does not match the known_hosts file; if the host was rebuilt, verify its new key out of band and update the file")
    )]
    HostKey { host: String, target: String },
    #[error("{host}: cannot connect to `{target}`: {message}")]
    #[diagnostic(code(hactl::ssh::connect))]
    Connect {
        host: String,
        target: String,
        message: String,
    },
    #[error("{host}: {message}")]
    #[diagnostic(code(hactl::ssh::remote))]
    Remote { host: String, message: String },
}

/// An open connection to one host.
pub struct Connection {
    pub host: String,
    session: Session,
    _control_dir: tempfile::TempDir,
}

/// A finished remote script.
pub struct ScriptOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn classify(host: &str, target: &str, err: &openssh::Error) -> HostError {
    let mut text = err.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(e) = src {
        text.push_str(": ");
        text.push_str(&e.to_string());
        src = e.source();
    }
    if text.contains("Host key verification failed")
        || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || text.contains("No ED25519 host key is known")
        || text.contains("host key for")
    {
        return HostError::HostKey {
            host: host.into(),
            target: target.into(),
        };
    }
    HostError::Connect {
        host: host.into(),
        target: target.into(),
        message: text.trim().replace('\n', " "),
    }
}

impl Connection {
    /// Opens the host's control master with the stack's SSH settings.
    pub async fn open(stack: &Stack, host: &Host) -> Result<Connection, HostError> {
        let ssh = &stack.file.ssh;
        let control_dir = tempfile::Builder::new()
            .prefix("hactl-ssh-")
            .tempdir()
            .map_err(|e| HostError::Connect {
                host: host.name.clone(),
                target: host.ssh_target.clone(),
                message: format!("cannot create a private control directory: {e}"),
            })?;
        let mut b = SessionBuilder::default();
        b.user(ssh.user.clone())
            .port(ssh.port)
            .known_hosts_check(KnownHosts::Strict)
            .connect_timeout(ssh.connect_timeout.value.0)
            .server_alive_interval(Duration::from_secs(5))
            .control_directory(control_dir.path());
        if let Some(k) = &ssh.identity_file {
            b.keyfile(stack.resolve_path(&k.value));
        }
        if let Some(k) = &ssh.known_hosts {
            b.user_known_hosts_file(stack.resolve_path(&k.value));
        }
        if let Some(c) = &ssh.config_file {
            b.config_file(stack.resolve_path(&c.value));
        }
        if let Some(j) = &ssh.proxy_jump {
            b.jump_hosts([j.as_str()]);
        }
        let session = b
            .connect_mux(&host.ssh_target)
            .await
            .map_err(|e| classify(&host.name, &host.ssh_target, &e))?;
        Ok(Connection {
            host: host.name.clone(),
            session,
            _control_dir: control_dir,
        })
    }

    /// Sends a script to `sh -s` on the host's stdin and waits for it.
    pub async fn run_script(&self, script: &str) -> Result<ScriptOutput, HostError> {
        let remote = |message: String| HostError::Remote {
            host: self.host.clone(),
            message,
        };
        let mut child = self
            .session
            .command("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| remote(format!("cannot start a remote shell: {e}")))?;
        if let Some(mut stdin) = child.stdin().take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(|e| remote(format!("cannot send the script: {e}")))?;
            stdin
                .shutdown()
                .await
                .map_err(|e| remote(format!("cannot send the script: {e}")))?;
            drop(stdin);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| remote(format!("the remote shell failed: {e}")))?;
        Ok(ScriptOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}
