//! One lab host: its files under `<lab>/hosts/hostN/`, its rendered sshd_config (pure), its
//! processes (found through /proc by network and PID namespace), and starting it.
//!
//! A host is started as `ip netns exec hostN unshare --mount --uts --pid --fork --mount-proc --
//! hactl lab __init ...`: `unshare` forks, and the forked child becomes PID 1 of the new PID
//! namespace and finally `exec`s `sshd -D`. That child's pid in the root namespace ("init pid")
//! is what `exec` enters with nsenter, and what `down` kills last (killing a PID namespace's
//! init kills everything in it, containers included, which may sit in other netns).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::net::HostAddr;
use super::{run_cmd, LabError};

/// The files of one host under the lab dir.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub dir: PathBuf,
}

impl HostPaths {
    pub fn new(lab_dir: &Path, name: &str) -> HostPaths {
        HostPaths {
            dir: lab_dir.join("hosts").join(name),
        }
    }
    pub fn host_key(&self) -> PathBuf {
        self.dir.join("ssh").join("ssh_host_ed25519_key")
    }
    pub fn host_pub(&self) -> PathBuf {
        self.dir.join("ssh").join("ssh_host_ed25519_key.pub")
    }
    pub fn sshd_config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }
    pub fn sshd_log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }
    pub fn init_log(&self) -> PathBuf {
        self.dir.join("init.log")
    }
    pub fn init_pid(&self) -> PathBuf {
        self.dir.join("init.pid")
    }
    pub fn root_home(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn storage(&self) -> PathBuf {
        self.dir.join("containers-storage")
    }
    /// dockerd's data-root (ext4, like podman's storage: overlay2 cannot sit on the /var
    /// overlay).
    pub fn docker_root(&self) -> PathBuf {
        self.dir.join("docker")
    }
    /// Per-boot state: overlay upper/work dirs, the private /root, podman's and docker's storage. Wiped
    /// before a host starts so every host starts as the lab makes it.
    pub fn state_dirs(&self) -> Vec<PathBuf> {
        ["etc.upper", "etc.work", "var.upper", "var.work"]
            .iter()
            .map(|d| self.dir.join(d))
            .chain([self.root_home(), self.storage(), self.docker_root()])
            .collect()
    }
}

/// The sshd_config of a host (pure). sshd listens on the host's lab address only; root logs in
/// with the lab client key only; no PAM, DNS or motd so a command costs one round trip.
pub fn render_sshd_config(h: &HostAddr, paths: &HostPaths, authorized_keys: &Path) -> String {
    format!(
        "# Written by `hactl lab up` for {name} ({addr}); rewritten on every start.\n\
         ListenAddress {addr}:22\n\
         HostKey {key}\n\
         PidFile /run/sshd.pid\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile {ak}\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         # the lab dir's modes are not sshd's business\n\
         StrictModes no\n\
         # many parallel pushes (one multiplexed connection per host, many sessions)\n\
         MaxStartups 100:30:200\n\
         # OpenSSH 9.2's default key exchange (sntrup761x25519) costs ~0.12 s of client CPU per\n\
         # connection here, half of a cold `ssh host true`; every client of the lab (hactl,\n\
         # Ansible in bench/) gets classic X25519 instead.\n\
         KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n\
         MaxSessions 100\n\
         Subsystem sftp internal-sftp\n\
         LogLevel INFO\n",
        name = h.name,
        addr = h.address,
        key = paths.host_key().display(),
        ak = authorized_keys.display(),
    )
}

/// The `known_hosts` line of a host from its public key file's text (pure).
pub fn known_hosts_line(h: &HostAddr, pubkey: &str) -> Option<String> {
    let mut it = pubkey.split_whitespace();
    let kind = it.next()?;
    let key = it.next()?;
    Some(format!("{},{} {kind} {key}", h.name, h.address))
}

/// The ssh_config block of a host (pure).
pub fn ssh_config_block(h: &HostAddr, identity: &Path, known_hosts: &Path) -> String {
    format!(
        "Host {name}\n  HostName {addr}\n  User root\n  IdentityFile {id}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 5\n  LogLevel ERROR\n",
        name = h.name,
        addr = h.address,
        id = identity.display(),
        kh = known_hosts.display(),
    )
}

/// Generates an ed25519 key pair at `path` unless it exists.
pub async fn ensure_key(path: &Path, comment: &str) -> Result<(), LabError> {
    if path.exists() && path.with_extension("pub").exists() {
        return Ok(());
    }
    let _ = tokio::fs::remove_file(path).await;
    let p = path.display().to_string();
    run_cmd(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &p],
    )
    .await?;
    Ok(())
}

/// The namespace identity of a process (`readlink /proc/PID/ns/KIND`, e.g. `net:[4026532]`).
fn ns_id(pid: u32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The identity of a named network namespace, as `/proc/PID/ns/net` spells it.
fn netns_id(name: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(super::net::netns_path(name)).ok()?;
    Some(format!("net:[{}]", md.ino()))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process of every named lab host: those in its network namespace, and those in any
/// PID namespace one of them opened (containers have their own netns but share the host's PID
/// namespace). Blocking (reads /proc): call through `spawn_blocking`.
pub fn host_pids_blocking(names: &[String]) -> Vec<(String, BTreeSet<u32>)> {
    let own_pidns = ns_id(std::process::id(), "pid");
    let nets: Vec<(String, Option<String>)> =
        names.iter().map(|n| (n.clone(), netns_id(n))).collect();
    let procs: Vec<(u32, Option<String>, Option<String>)> = all_pids()
        .into_iter()
        .map(|p| (p, ns_id(p, "net"), ns_id(p, "pid")))
        .collect();
    nets.into_iter()
        .map(|(name, net)| {
            let mut pids = BTreeSet::new();
            let mut pidns = BTreeSet::new();
            if let Some(net) = &net {
                for (p, n, pn) in &procs {
                    if n.as_ref() == Some(net) {
                        pids.insert(*p);
                        if let Some(pn) = pn {
                            if Some(pn) != own_pidns.as_ref() {
                                pidns.insert(pn.clone());
                            }
                        }
                    }
                }
            }
            for (p, _, pn) in &procs {
                if pn.as_ref().is_some_and(|pn| pidns.contains(pn)) {
                    pids.insert(*p);
                }
            }
            (name, pids)
        })
        .collect()
}

/// The processes of the named hosts (see [`host_pids_blocking`]).
pub async fn host_pids(names: Vec<String>) -> Result<Vec<(String, BTreeSet<u32>)>, LabError> {
    tokio::task::spawn_blocking(move || host_pids_blocking(&names))
        .await
        .map_err(|e| LabError::Internal(format!("process scan failed: {e}")))
}

/// The recorded init pid of a host if that process is alive and still in the host's netns.
pub fn live_init_pid(paths: &HostPaths, name: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(paths.init_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let net = netns_id(name)?;
    if ns_id(pid, "net")? != net {
        return None;
    }
    // a zombie keeps its pid but is no host
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    (state != 'Z' && state != 'X').then_some(pid)
}

/// The children of a process (root-namespace pids).
fn children(pid: u32) -> Vec<u32> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return s
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    // kernels without CONFIG_PROC_CHILDREN: scan parents
    all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                })
                == Some(pid)
        })
        .collect()
}

/// Starts a host's init (the netns and links must exist) and returns its root-namespace pid.
pub async fn spawn_init(
    exe: &Path,
    lab_dir: &Path,
    h: &HostAddr,
    paths: &HostPaths,
) -> Result<u32, LabError> {
    let log = tokio::fs::File::create(paths.init_log())
        .await
        .map_err(|e| LabError::Io {
            path: paths.init_log(),
            source: e,
        })?
        .into_std()
        .await;
    let log2 = log.try_clone().map_err(|e| LabError::Io {
        path: paths.init_log(),
        source: e,
    })?;
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", &h.name])
        .args([
            "unshare",
            "--mount",
            "--uts",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .arg("--")
        .arg(exe)
        .args(["lab", "__init", "--dir"])
        .arg(lab_dir)
        .arg(&h.name)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        // the host outlives this command: no kill on drop
        .kill_on_drop(false);
    // SAFETY: setsid is async-signal-safe; a new session detaches the host from our terminal
    // (no SIGINT/SIGHUP from the shell that ran `lab up`).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| LabError::Spawn {
        program: "ip netns exec".into(),
        source: e,
    })?;
    let upid = child
        .id()
        .ok_or_else(|| LabError::Internal("the host launcher exited at once".into()))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(&init) = children(upid).first() {
            // the launcher (`unshare`) waits for its child forever; nobody here needs its
            // status, and tokio reaps it if this process is still around when it exits
            drop(child);
            tokio::fs::write(paths.init_pid(), format!("{init}\n"))
                .await
                .map_err(|e| LabError::Io {
                    path: paths.init_pid(),
                    source: e,
                })?;
            return Ok(init);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::HostStart {
                host: h.name.clone(),
                detail: format!(
                    "its launcher exited ({status}): {}",
                    tail(&paths.init_log())
                ),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::HostStart {
                host: h.name.clone(),
                detail: "its init process did not appear within 5 s".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the host's sshd accepts TCP connections (the route must already go via the
/// bridge, see [`super::net::ensure_lab_route`]).
pub async fn wait_sshd(
    h: &HostAddr,
    init_pid: u32,
    paths: &HostPaths,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        if sshd_accepts(h.address, Duration::from_millis(200)).await {
            return Ok(());
        }
        if !Path::new(&format!("/proc/{init_pid}")).exists() {
            return Err(LabError::HostStart {
                host: h.name.clone(),
                detail: format!(
                    "its init exited: {} {}",
                    tail(&paths.init_log()),
                    tail(&paths.sshd_log())
                ),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::HostStart {
                host: h.name.clone(),
                detail: format!(
                    "sshd did not accept connections within {} s: {}",
                    timeout.as_secs(),
                    tail(&paths.sshd_log())
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether something accepts TCP on ADDR:22 (the caller has checked the route).
pub async fn sshd_accepts(addr: Ipv4Addr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((addr, 22))).await,
        Ok(Ok(_))
    )
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(5);
    let t = lines[from..].join(" | ");
    if t.is_empty() {
        format!("({} is empty)", path.display())
    } else {
        format!("{}: {t}", path.display())
    }
}

/// Sends `sig` to each pid (gone ones are fine).
pub fn signal_all(pids: &BTreeSet<u32>, sig: libc::c_int) {
    for &p in pids {
        if let Ok(p) = libc::pid_t::try_from(p) {
            // SAFETY: kill(2) with a pid we found in a lab namespace; ESRCH is harmless.
            unsafe {
                libc::kill(p, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::net::host_addr;

    #[test]
    fn sshd_config_snapshot() {
        let h = host_addr(1).expect("host1");
        let lab = Path::new("/srv/hactl-lab");
        let p = HostPaths::new(lab, &h.name);
        insta::assert_snapshot!(render_sshd_config(&h, &p, &lab.join("authorized_keys")));
    }

    #[test]
    fn ssh_config_and_known_hosts() {
        let h = host_addr(3).expect("host3");
        let lab = Path::new("/srv/hactl-lab");
        insta::assert_snapshot!(ssh_config_block(
            &h,
            &lab.join("id_ed25519"),
            &lab.join("known_hosts")
        ));
        assert_eq!(
            known_hosts_line(&h, "ssh-ed25519 AAAAC3Nza host3\n").as_deref(),
            Some("host3,198.18.0.13 ssh-ed25519 AAAAC3Nza")
        );
        assert_eq!(known_hosts_line(&h, "garbage"), None);
    }

    #[test]
    fn state_dirs_stay_under_the_host_dir() {
        let p = HostPaths::new(Path::new("/srv/hactl-lab"), "host2");
        for d in p.state_dirs() {
            assert!(d.starts_with("/srv/hactl-lab/hosts/host2/"), "{d:?}");
        }
        assert!(!p.state_dirs().contains(&p.host_key()));
    }
}
