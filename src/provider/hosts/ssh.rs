//! SSH connections: openssh with native multiplexing and strict host keys.
//!
//! Host keys are always checked strictly against the stack's `known_hosts` (or the user's):
//! hactl never turns checking off. The one exception is [`Connection::pin`], first contact
//! with a host hactl itself created (an EC2 instance): `accept-new` records the key into the
//! stack's own known_hosts file and still refuses a key that differs from one already there;
//! every later connection is strict against that file.
//!
//! Control masters persist between runs for a minute (like ssh's `ControlPersist`), in a
//! private per-user directory, keyed by every setting that shaped the connection: a no-op
//! `hactl plan` on 20 hosts then costs one round trip per host instead of 20 handshakes. A
//! reused master is trusted only after a real command went through it: a master whose host
//! went away (a lab torn down and rebuilt within the minute) still answers its socket, and a
//! command through it would hang until ssh's keepalive gives up. The proof costs nothing
//! extra when the first command is read-only ([`Connection::run_read_only`], the observe):
//! it goes through the reused master under a deadline and, if that master turns out dead, is
//! run again through a fresh connection. Any other first command is preceded by a `true`
//! round trip. The same minute also runs within one long run: a master left idle past it
//! exits under hactl, so one idle for half of it is checked before the next command and
//! replaced when gone (a rolling deploy through a target group leaves hosts idle for minutes).

use openssh::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
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
    target: String,
    /// Replaced (under the write lock) when a reused master turns out dead.
    session: tokio::sync::RwLock<Session>,
    /// How to connect afresh: the builder with every setting, and the control directory.
    fresh: SessionBuilder,
    /// Whether a command went through this session (a fresh master is proven by its
    /// handshake; a reused one by its first command).
    proven: AtomicBool,
    /// The deadline for the first command through a reused master.
    first_deadline: Duration,
    /// When the last command through the master ended: the master's idle clock (see
    /// `Connection::revive_if_idle`).
    last_used: std::sync::Mutex<std::time::Instant>,
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
        Self::open_checked(stack, host, KnownHosts::Strict).await
    }

    /// First contact with a host hactl created: connects with `accept-new` (the key goes into
    /// the stack's known_hosts file; a different key already there is still refused), then
    /// closes. Only for hosts whose key the state has not pinned yet.
    ///
    /// Always a new master, ended at once: first contact must read *this* host's key. A master
    /// kept from an earlier pin under the same name and known_hosts content (an instance
    /// replaced within a minute, reached by its ssh_config alias) would answer without ssh ever
    /// writing the new key, and the strict connection that follows would then be refused.
    pub async fn pin(stack: &Stack, host: &Host) -> Result<(), HostError> {
        let c = Self::open_checked(stack, host, KnownHosts::Add).await?;
        let _ = c.session.into_inner().close().await;
        Ok(())
    }

    async fn open_checked(
        stack: &Stack,
        host: &Host,
        check: KnownHosts,
    ) -> Result<Connection, HostError> {
        let ssh = &stack.file.ssh;
        let connect_err = |message: String| HostError::Connect {
            host: host.name.clone(),
            target: host.ssh_target.clone(),
            message,
        };
        let identity = ssh
            .identity_file
            .as_ref()
            .map(|k| stack.resolve_path(&k.value));
        let known_hosts = ssh
            .known_hosts
            .as_ref()
            .map(|k| stack.resolve_path(&k.value));
        let config = ssh
            .config_file
            .as_ref()
            .map(|c| stack.resolve_path(&c.value));
        // Masters persist between runs (like ssh's ControlPersist), keyed by everything that
        // decides how the connection was made — including the known_hosts *content*, so
        // editing that file (a rotated or revoked key) never lets a master made under the old
        // one be reused — and the checking mode.
        let known_hosts_text = known_hosts
            .as_ref()
            .map(|p| std::fs::read(p).unwrap_or_default())
            .unwrap_or_default();
        let key = crate::plan::sha256_hex(
            format!(
                "{}\0{}\0{}\0{:?}\0{:?}\0{}\0{:?}\0{:?}\0{}",
                ssh.user,
                ssh.port,
                host.ssh_target,
                identity,
                known_hosts,
                crate::plan::sha256_hex(&known_hosts_text),
                config,
                ssh.proxy_jump,
                matches!(check, KnownHosts::Strict)
            )
            .as_bytes(),
        );
        let dir = control_root()
            .map_err(|e| connect_err(format!("cannot prepare the SSH control directory: {e}")))?
            .join(&key[..16]);
        std::fs::create_dir_all(&dir)
            .map_err(|e| connect_err(format!("cannot create `{}`: {e}", dir.display())))?;
        super::guard::check(stack, &host.ssh_target)
            .await
            .map_err(connect_err)?;
        let mut b = SessionBuilder::default();
        b.user(ssh.user.clone())
            .port(ssh.port)
            .known_hosts_check(check.clone())
            .connect_timeout(ssh.connect_timeout.value.0)
            .server_alive_interval(Duration::from_secs(5))
            .control_persist(ControlPersist::IdleFor(persist_secs()))
            .control_directory(&dir);
        if let Some(k) = &identity {
            b.keyfile(k);
        }
        if let Some(k) = &known_hosts {
            b.user_known_hosts_file(k);
        }
        if let Some(c) = &config {
            b.config_file(c);
        }
        if let Some(j) = &ssh.proxy_jump {
            b.jump_hosts([j.as_str()]);
        }
        // The first command through a reused master gets as long as a new connection would,
        // and at least the 2 s the old probe had.
        let first_deadline = ssh.connect_timeout.value.0.max(Duration::from_secs(2));
        // First contact never reuses a master (see `pin`).
        let reused = if matches!(check, KnownHosts::Add) {
            None
        } else {
            resume(&dir).await
        };
        let (session, proven) = match reused {
            Some(session) => {
                tracing::debug!(host = %host.name, "reusing a live SSH master (unproven)");
                (session, false)
            }
            None => {
                let session = b
                    .connect_mux(&host.ssh_target)
                    .await
                    .map_err(|e| classify(&host.name, &host.ssh_target, &e))?;
                tracing::debug!(host = %host.name, "new SSH master");
                (session, true)
            }
        };
        Ok(Connection {
            host: host.name.clone(),
            target: host.ssh_target.clone(),
            session: tokio::sync::RwLock::new(session),
            fresh: b,
            proven: AtomicBool::new(proven),
            first_deadline,
            last_used: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    /// Replaces a reused master that did not answer with a new connection. The old master is
    /// told to exit (it holds a dead connection, or one too slow to trust).
    async fn reconnect(&self) -> Result<(), HostError> {
        let mut guard = self.session.write().await;
        if self.proven.load(Ordering::Acquire) {
            // another command already proved or replaced it
            return Ok(());
        }
        let new = self
            .fresh
            .connect_mux(&self.target)
            .await
            .map_err(|e| classify(&self.host, &self.target, &e))?;
        tracing::debug!(host = %self.host, "reused SSH master did not answer: new SSH master");
        let old = std::mem::replace(&mut *guard, new);
        self.proven.store(true, Ordering::Release);
        drop(guard);
        let _ = tokio::time::timeout(Duration::from_secs(1), old.close()).await;
        Ok(())
    }

    /// Proves a reused master with a `true` round trip before a command that must not run
    /// twice (see the module doc); a master that fails it is replaced.
    async fn prove(&self) -> Result<(), HostError> {
        if self.proven.load(Ordering::Acquire) {
            return Ok(());
        }
        let ok = {
            let session = self.session.read().await;
            let probe =
                tokio::time::timeout(self.first_deadline, session.command("true").status()).await;
            matches!(probe, Ok(Ok(s)) if s.success())
        };
        if ok {
            self.proven.store(true, Ordering::Release);
            Ok(())
        } else {
            self.reconnect().await
        }
    }

    /// Runs a read-only script (one that may safely run twice, e.g. the observe). Through a
    /// reused master not yet proven, the script itself is the proof: if it fails to go
    /// through within the deadline, the master is replaced and the script run again.
    pub async fn run_read_only(&self, script: &str) -> Result<ScriptOutput, HostError> {
        if !self.proven.load(Ordering::Acquire) {
            let first = tokio::time::timeout(self.first_deadline, self.run(script)).await;
            match first {
                Ok(Ok(out)) => {
                    self.proven.store(true, Ordering::Release);
                    return Ok(out);
                }
                Ok(Err(e)) => {
                    tracing::debug!(host = %self.host, error = %e, "reused master failed")
                }
                Err(_) => tracing::debug!(host = %self.host, "reused master timed out"),
            }
            self.reconnect().await?;
        }
        self.run(script).await
    }

    /// Sends a script to `sh -s` on the host's stdin and waits for it.
    pub async fn run_script(&self, script: &str) -> Result<ScriptOutput, HostError> {
        self.prove().await?;
        self.run(script).await
    }

    /// A master this run made or proved still exits under it after [`persist`] idle seconds
    /// (`ControlPersist` counts from the last command's end): a rolling deploy leaves a host
    /// idle for longer than that between its first and its own batch (10 hosts through a
    /// target group with a 30 s deregistration delay). A master idle for half that time is
    /// asked whether it is still there (`ssh -O check`: local, no round trip); one that is
    /// not, or is too close to exiting to trust, is replaced with a new connection. Short
    /// runs never pay for the check.
    async fn revive_if_idle(&self) -> Result<(), HostError> {
        let idle = self
            .last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        // Checked from half the persist time; replaced outright in its last twelfth (5 s of
        // 60), where it could exit between the check and the command.
        let check_from = persist() / 2;
        if idle < check_from {
            return Ok(());
        }
        let mut guard = self.session.write().await;
        let idle = self
            .last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if idle < check_from {
            // another command revived or used it meanwhile
            return Ok(());
        }
        let trusted = persist() - persist() / 12;
        if idle < trusted
            && matches!(
                tokio::time::timeout(Duration::from_secs(1), guard.check()).await,
                Ok(Ok(()))
            )
        {
            return Ok(());
        }
        let new = self
            .fresh
            .connect_mux(&self.target)
            .await
            .map_err(|e| classify(&self.host, &self.target, &e))?;
        tracing::debug!(host = %self.host, idle_s = idle.as_secs(), "idle SSH master replaced");
        let old = std::mem::replace(&mut *guard, new);
        self.proven.store(true, Ordering::Release);
        self.touch();
        drop(guard);
        let _ = tokio::time::timeout(Duration::from_secs(1), old.close()).await;
        Ok(())
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = std::time::Instant::now();
        }
    }

    async fn run(&self, script: &str) -> Result<ScriptOutput, HostError> {
        self.revive_if_idle().await?;
        let out = self.run_once(script).await;
        self.touch();
        out
    }

    async fn run_once(&self, script: &str) -> Result<ScriptOutput, HostError> {
        let remote = |message: String| HostError::Remote {
            host: self.host.clone(),
            message,
        };
        let session = self.session.read().await;
        let mut child = session
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

    /// Ends this run's use of the connection. The master stays up for the next run (it exits
    /// by itself after [`persist`] idle seconds).
    pub async fn close(self) {
        let _ = self.session.into_inner().detach();
    }
}

/// How long an idle master waits for the next command before it exits: 60 s, or
/// `HACTL_SSH_PERSIST` seconds (the tests shorten it so that masters expire in the middle of
/// a deploy, which [`Connection::revive_if_idle`] must survive).
fn persist() -> Duration {
    static SECS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let secs = *SECS.get_or_init(|| {
        std::env::var("HACTL_SSH_PERSIST")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| (2..=3600).contains(s))
            .unwrap_or(60)
    });
    Duration::from_secs(secs)
}

/// [`persist`] as openssh takes it.
fn persist_secs() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(persist().as_secs() as usize).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// The private directory for control sockets: `$XDG_RUNTIME_DIR/hactl-ssh`, else
/// `$TMPDIR/hactl-ssh-UID`; created 0700 and refused when someone else owns it.
fn control_root() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let root = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("hactl-ssh"),
        _ => std::env::temp_dir().join(format!("hactl-ssh-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&root)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "`{}` is not a private directory of this user",
            root.display()
        )));
    }
    Ok(root)
}

/// A master left by an earlier run in `dir` that still answers on its socket (a local check:
/// no round trip to the host, which the first command proves; see [`Connection`]); dead
/// ones are told to exit and their directories removed.
async fn resume(dir: &std::path::Path) -> Option<Session> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found = None;
    for e in entries.flatten() {
        let sock = e.path().join("master");
        if found.is_none() && sock.exists() {
            let session = Session::resume_mux(sock.into_boxed_path(), None);
            let alive = tokio::time::timeout(Duration::from_secs(1), session.check()).await;
            if matches!(alive, Ok(Ok(()))) {
                found = Some(session);
                continue;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), session.close()).await;
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
    found
}
