//! The local lab: real hosts as network namespaces on this machine, each with its own mount,
//! UTS and PID namespace, sshd as PID 1, overlay /etc and /var, private /run and /root, a
//! `systemctl` stand-in for nginx/keepalived/haproxy, podman ready to use, and addresses from
//! 198.18.0.0/15 behind an `unreachable` safety route.
//!
//! This module owns everything `hactl lab` does and the small API other code and tests use:
//! [`Lab::open`], [`Lab::host_pid`], [`Lab::exec`], and [`ensure_lab_route`], which every
//! caller must pass before sending traffic to a lab address. `net` holds the address plan and
//! the `ip` calls, `host` one host's files and processes, `init` what runs inside a host before
//! it becomes sshd, `balancer` the stand-in ALB/NLB in front of lab hosts for an AWS stack on
//! moto.
//!
//! Layout of the lab dir (default `/srv/hactl-lab`, `HACTL_LAB_DIR` overrides; it may not be
//! under /etc or /var, which the hosts overlay): `id_ed25519` (client key, root on every
//! host), `known_hosts`, `ssh_config`, `authorized_keys`, `systemctl` (the stand-in),
//! `hosts/hostN/` (host key, sshd_config, logs, init.pid, overlay upper/work dirs, podman
//! storage). Keys survive `down`, so `known_hosts` stays valid across restarts; per-boot
//! state (overlays, /root, podman storage) is wiped so each start is a clean host.

pub mod balancer;
pub mod host;
pub mod init;
pub mod net;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use net::ensure_lab_route;
use net::{host_addr, host_index, HostAddr, BRIDGE, GATEWAY, PREFIX};

/// The systemctl stand-in each host bind-mounts over /usr/bin/systemctl.
const SYSTEMCTL: &str = include_str!("systemctl.sh");

/// Where the lab lives unless `HACTL_LAB_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/srv/hactl-lab";

/// How long `up` waits for one host's sshd.
const SSHD_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LabError {
    #[error(
        "`hactl lab` must run as root: it creates network namespaces, links, routes and mounts"
    )]
    #[diagnostic(
        code(hactl::lab::not_root),
        help("run it as root (for example with sudo)")
    )]
    NotRoot,

    #[error("the lab needs tools that are not installed: {tools}")]
    #[diagnostic(code(hactl::lab::missing_tools), help("install them: {install}"))]
    MissingTools { tools: String, install: String },

    #[error("routes on this machine overlap the lab range 198.18.0.0/15: {routes}")]
    #[diagnostic(
        code(hactl::lab::route_overlap),
        help(
            "the lab will not share its range with a network it did not make; remove those routes or use another machine"
        )
    )]
    RouteOverlap { routes: String },

    #[error("{addr} does not resolve to the lab bridge `hactl0`: {detail}")]
    #[diagnostic(
        code(hactl::lab::not_lab_route),
        help(
            "lab traffic may only go to lab hosts on `hactl0`; is the lab up (`hactl lab up --hosts N`)?"
        )
    )]
    NotLabRoute { addr: Ipv4Addr, detail: String },

    #[error("`{command}` failed: {}", stderr.trim())]
    #[diagnostic(code(hactl::lab::command))]
    Command { command: String, stderr: String },

    #[error("cannot run `{program}`: {source}")]
    #[diagnostic(code(hactl::lab::spawn))]
    Spawn {
        program: String,
        source: std::io::Error,
    },

    #[error("{}: {source}", path.display())]
    #[diagnostic(code(hactl::lab::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot parse {what}: {detail}")]
    #[diagnostic(code(hactl::lab::parse))]
    Parse { what: String, detail: String },

    #[error("`{0}` is not a lab host name")]
    #[diagnostic(
        code(hactl::lab::unknown_host),
        help("lab hosts are named host1 .. host80")
    )]
    UnknownHost(String),

    #[error("lab host `{0}` is not running")]
    #[diagnostic(
        code(hactl::lab::host_down),
        help("`hactl lab up --hosts N` starts it; `hactl lab status` lists the running hosts")
    )]
    HostDown(String),

    #[error("lab host `{host}` did not start: {detail}")]
    #[diagnostic(
        code(hactl::lab::host_start),
        help("its logs are in the lab dir under hosts/{host}/ (init.log, sshd.log)")
    )]
    HostStart { host: String, detail: String },

    #[error("cannot mount {target}: {detail}")]
    #[diagnostic(code(hactl::lab::mount))]
    Mount { target: String, detail: String },

    #[error("the lab dir `{}` cannot be used: {reason}", path.display())]
    #[diagnostic(
        code(hactl::lab::bad_dir),
        help("use an absolute path outside /etc, /var, /run, /proc, /sys, /dev and /root (HACTL_LAB_DIR)")
    )]
    BadDir { path: PathBuf, reason: String },

    #[error("a lab has 1 to {max} hosts, not {count}", max = net::MAX_HOSTS)]
    #[diagnostic(code(hactl::lab::host_count))]
    HostCount { count: usize },

    #[error("another `hactl lab` command holds the lab lock ({})", path.display())]
    #[diagnostic(
        code(hactl::lab::busy),
        help("wait for it to finish; the lock is released when that process exits")
    )]
    Busy { path: PathBuf },

    #[error("{count} lab host(s) failed to start:\n{details}")]
    #[diagnostic(
        code(hactl::lab::hosts_failed),
        help("the other hosts are up; `hactl lab down` removes everything")
    )]
    HostsFailed { count: usize, details: String },

    #[error("`hactl lab down` left something behind: {0}")]
    #[diagnostic(
        code(hactl::lab::leftovers),
        help(
            "run `hactl lab down` again; if it persists, look at `ip netns pids` for those hosts"
        )
    )]
    Leftovers(String),

    #[error("internal lab error: {0}")]
    #[diagnostic(code(hactl::lab::internal))]
    Internal(String),
}

/// The tools the lab runs, each with the Debian package that provides it.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("keepalived", "keepalived"),
    ("nginx", "nginx"),
    ("haproxy", "haproxy"),
    ("podman", "podman"),
    ("runc", "runc"),
];

/// Directories searched for tools besides `$PATH` (sshd and ip live in sbin, which a non-login
/// root shell may not have on its PATH).
const EXTRA_BIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The absolute path of a tool, if installed.
pub fn tool_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The missing tools (pure over `installed`) as the error to show, if any.
pub fn missing_tools_error(installed: impl Fn(&str) -> bool) -> Option<LabError> {
    let missing: Vec<(&str, &str)> = TOOLS
        .iter()
        .copied()
        .filter(|(t, _)| !installed(t))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let tools = missing
        .iter()
        .map(|(t, p)| format!("`{t}` (package {p})"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    Some(LabError::MissingTools {
        tools,
        install: format!("apt-get install -y {}", pkgs.join(" ")),
    })
}

/// Checks that we are root and that every tool the lab runs is installed.
pub fn preflight() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    match missing_tools_error(|t| tool_path(t).is_some()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs a tool to completion and returns its stdout; a non-zero exit is an error with stderr.
pub(crate) async fn run_cmd(program: &str, args: &[&str]) -> Result<String, LabError> {
    let exe = tool_path(program).unwrap_or_else(|| PathBuf::from(program));
    let out = tokio::process::Command::new(&exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| LabError::Spawn {
            program: program.to_string(),
            source: e,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// One host in a report.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: Ipv4Addr,
    /// Root-namespace pid of the host's PID 1 (its sshd).
    pub pid: u32,
    /// Whether this `up` started it (false: it was already running).
    pub started: bool,
}

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub dir: PathBuf,
    pub bridge: String,
    pub gateway: String,
    pub hosts: Vec<HostReport>,
    pub known_hosts: PathBuf,
    pub identity_file: PathBuf,
    pub ssh_config: PathBuf,
    pub elapsed_ms: u128,
}

/// One host in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub address: Ipv4Addr,
    pub pid: Option<u32>,
    pub processes: usize,
    pub sshd: bool,
}

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub dir: PathBuf,
    pub bridge: Option<String>,
    pub safety_route: bool,
    pub hosts: Vec<HostStatus>,
}

/// What `down` removed.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub hosts: Vec<String>,
    pub processes_killed: usize,
    pub elapsed_ms: u128,
}

/// A lab dir and what lives in it.
#[derive(Debug, Clone)]
pub struct Lab {
    dir: PathBuf,
}

/// Mount points a lab dir may not live under: the hosts overlay /etc and /var and get private
/// /run and /root, so a lab dir there would be shadowed (or overlay itself).
const FORBIDDEN_PREFIXES: &[&str] = &["/etc", "/var", "/run", "/root", "/proc", "/sys", "/dev"];

impl Lab {
    /// The lab dir from `HACTL_LAB_DIR`, or `/srv/hactl-lab`.
    #[allow(dead_code)] // API for other modules (the CLI gets the same default from clap)
    pub fn default_dir() -> PathBuf {
        std::env::var_os("HACTL_LAB_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
    }

    /// A lab at `dir` (checked, not created: `up` creates it).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Lab, LabError> {
        let dir: PathBuf = dir.into();
        let bad = |reason: &str| LabError::BadDir {
            path: dir.clone(),
            reason: reason.to_string(),
        };
        if !dir.is_absolute() {
            return Err(bad("it is not an absolute path"));
        }
        if dir
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(bad("it contains `..`"));
        }
        if dir == Path::new("/") {
            return Err(bad("it is the root directory"));
        }
        if let Some(p) = FORBIDDEN_PREFIXES.iter().find(|p| dir.starts_with(p)) {
            return Err(bad(&format!(
                "it is under {p}, which every lab host replaces with its own"
            )));
        }
        Ok(Lab { dir })
    }

    #[allow(dead_code)] // API for other modules
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }
    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }
    fn systemctl(&self) -> PathBuf {
        self.dir.join("systemctl")
    }
    fn host_paths(&self, name: &str) -> host::HostPaths {
        host::HostPaths::new(&self.dir, name)
    }

    /// The address plan entry of a host name.
    pub fn host(&self, name: &str) -> Result<HostAddr, LabError> {
        host_index(name)
            .and_then(host_addr)
            .ok_or_else(|| LabError::UnknownHost(name.to_string()))
    }

    /// The root-namespace pid of a running host's PID 1 (its sshd).
    pub fn host_pid(&self, name: &str) -> Result<u32, LabError> {
        let h = self.host(name)?;
        host::live_init_pid(&self.host_paths(&h.name), &h.name)
            .ok_or_else(|| LabError::HostDown(h.name.clone()))
    }

    /// The argv that runs `argv` inside a host's namespaces (pure).
    pub fn nsenter_argv(pid: u32, argv: &[String]) -> Vec<String> {
        let mut v: Vec<String> = [
            "nsenter",
            "-t",
            &pid.to_string(),
            "-n",
            "-m",
            "-u",
            "-p",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(argv.iter().cloned());
        v
    }

    /// A command that runs `argv` inside a host (network, mount, UTS and PID namespaces of its
    /// PID 1), for callers that want to exec it or wire its stdio themselves.
    pub fn exec_command(
        &self,
        name: &str,
        argv: &[String],
    ) -> Result<std::process::Command, LabError> {
        if argv.is_empty() {
            return Err(LabError::Internal("no command to run in the host".into()));
        }
        let pid = self.host_pid(name)?;
        let full = Self::nsenter_argv(pid, argv);
        let nsenter = tool_path("nsenter").unwrap_or_else(|| PathBuf::from("nsenter"));
        let mut c = std::process::Command::new(nsenter);
        c.args(&full[1..]);
        Ok(c)
    }

    /// Runs `argv` inside a host and returns its output (exit status included, not an error).
    #[allow(dead_code)] // API for other modules (the CLI execs `exec_command` instead)
    pub async fn exec(
        &self,
        name: &str,
        argv: &[String],
    ) -> Result<std::process::Output, LabError> {
        let cmd = self.exec_command(name, argv)?;
        tokio::process::Command::from(cmd)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| LabError::Spawn {
                program: "nsenter".into(),
                source: e,
            })
    }

    /// Takes the lab lock (one `up`/`down` at a time, across processes).
    async fn lock(&self) -> Result<std::fs::File, LabError> {
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LabError::Io {
                path: path.clone(),
                source: e,
            })?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            // fs4, not std's File::try_lock: the crate's MSRV predates it
            match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
                Ok(true) => return Ok(file),
                Ok(false) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(false) => return Err(LabError::Busy { path }),
                Err(e) => return Err(LabError::Io { path, source: e }),
            }
        }
    }

    /// Hosts whose init is alive, by index.
    fn running(&self) -> Vec<(usize, u32)> {
        net::lab_netns()
            .into_iter()
            .filter_map(|i| {
                let h = host_addr(i)?;
                host::live_init_pid(&self.host_paths(&h.name), &h.name).map(|p| (i, p))
            })
            .collect()
    }

    /// Creates (or completes) the lab with hosts host1..host`count`. Running hosts are left
    /// alone; hosts beyond `count` that already run stay. `exe` is the hactl binary the hosts
    /// start as their init.
    pub async fn up(&self, count: usize, exe: &Path) -> Result<UpReport, LabError> {
        let t0 = Instant::now();
        preflight()?;
        if count == 0 || count > net::MAX_HOSTS {
            return Err(LabError::HostCount { count });
        }
        mkdir(&self.dir).await?;
        let _lock = self.lock().await?;

        // the safety net goes in before anything else exists in the range
        net::check_no_foreign_routes().await?;
        net::install_safety_route().await?;
        net::ensure_bridge().await?;

        write_file(&self.systemctl(), SYSTEMCTL, 0o755).await?;
        host::ensure_key(&self.identity_file(), "hactl-lab-client").await?;
        let pubkey = read(&self.identity_file().with_extension("pub")).await?;
        write_file(&self.authorized_keys(), &pubkey, 0o600).await?;

        let running: Vec<(usize, u32)> = self.running();
        let starts = (1..=count)
            .filter(|i| !running.iter().any(|(r, _)| r == i))
            .filter_map(host_addr)
            .map(|h| async move {
                let r = self.start_host(&h, exe).await;
                (h, r)
            });
        let results = futures::future::join_all(starts).await;
        let mut hosts: Vec<HostReport> = running
            .iter()
            .filter_map(|&(i, pid)| {
                host_addr(i).map(|h| HostReport {
                    name: h.name,
                    address: h.address,
                    pid,
                    started: false,
                })
            })
            .collect();
        let mut failures = Vec::new();
        for (h, r) in results {
            match r {
                Ok(pid) => hosts.push(HostReport {
                    name: h.name,
                    address: h.address,
                    pid,
                    started: true,
                }),
                Err(e) => failures.push(format!("  {}: {e}", h.name)),
            }
        }
        hosts.sort_by_key(|h| h.address);
        self.write_client_files(&hosts).await?;
        if !failures.is_empty() {
            return Err(LabError::HostsFailed {
                count: failures.len(),
                details: failures.join("\n"),
            });
        }
        Ok(UpReport {
            dir: self.dir.clone(),
            bridge: BRIDGE.into(),
            gateway: format!("{GATEWAY}/{PREFIX}"),
            hosts,
            known_hosts: self.known_hosts(),
            identity_file: self.identity_file(),
            ssh_config: self.ssh_config(),
            elapsed_ms: t0.elapsed().as_millis(),
        })
    }

    /// Starts one host from nothing (cleaning up a dead previous one first).
    async fn start_host(&self, h: &HostAddr, exe: &Path) -> Result<u32, LabError> {
        let paths = self.host_paths(&h.name);
        // a dead or half-made host: remove its leftovers first
        if net::netns_exists(&h.name) {
            kill_hosts(std::slice::from_ref(&h.name), &[]).await?;
            net::del_netns(&h.name).await?;
        }
        net::del_link(&h.veth).await?;

        self.reset_host_state(&paths).await?;
        for d in ["etc.upper", "etc.work", "var.upper", "var.work", "ssh"] {
            mkdir(&paths.dir.join(d)).await?;
        }
        mkdir(&paths.storage()).await?;
        copy_skel(paths.root_home()).await?;
        host::ensure_key(&paths.host_key(), &h.name).await?;
        write_file(
            &paths.sshd_config(),
            &host::render_sshd_config(h, &paths, &self.authorized_keys()),
            0o644,
        )
        .await?;

        net::add_host_links(h).await?;
        ensure_lab_route(h.address).await?;
        let pid = host::spawn_init(exe, &self.dir, h, &paths).await?;
        host::wait_sshd(h, pid, &paths, SSHD_TIMEOUT).await?;
        Ok(pid)
    }

    /// Wipes a host's per-boot state (never its keys or logs).
    async fn reset_host_state(&self, paths: &host::HostPaths) -> Result<(), LabError> {
        let _ = tokio::fs::remove_file(paths.init_pid()).await;
        for d in paths.state_dirs() {
            match tokio::fs::remove_dir_all(&d).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LabError::Io { path: d, source: e }),
            }
        }
        Ok(())
    }

    /// Writes known_hosts (one line per running host) and ssh_config (one block per host).
    async fn write_client_files(&self, hosts: &[HostReport]) -> Result<(), LabError> {
        let mut kh = String::new();
        let mut cfg = format!(
            "# Written by `hactl lab up`: ssh -F {} host1 hostname\n\n",
            self.ssh_config().display()
        );
        for r in hosts {
            let h = self.host(&r.name)?;
            let pubkey = read(&self.host_paths(&h.name).host_pub()).await?;
            let line = host::known_hosts_line(&h, &pubkey).ok_or_else(|| LabError::Parse {
                what: format!("the host key of {}", h.name),
                detail: "not `TYPE KEY [COMMENT]`".into(),
            })?;
            kh.push_str(&line);
            kh.push('\n');
            cfg.push_str(&host::ssh_config_block(
                &h,
                &self.identity_file(),
                &self.known_hosts(),
            ));
            cfg.push('\n');
        }
        write_file(&self.known_hosts(), &kh, 0o644).await?;
        write_file(&self.ssh_config(), &cfg, 0o644).await
    }

    /// The bridge, the safety route and every host with its processes.
    pub async fn status(&self) -> Result<StatusReport, LabError> {
        let names: Vec<String> = net::lab_netns()
            .into_iter()
            .filter_map(|i| host_addr(i).map(|h| h.name))
            .collect();
        let pids = host::host_pids(names.clone()).await?;
        let checks = names.iter().map(|n| async move {
            let h = self.host(n)?;
            let pid = host::live_init_pid(&self.host_paths(n), n);
            let sshd = pid.is_some()
                && ensure_lab_route(h.address).await.is_ok()
                && host::sshd_accepts(h.address, Duration::from_millis(500)).await;
            Ok::<_, LabError>((h, pid, sshd))
        });
        let mut hosts = Vec::new();
        for r in futures::future::join_all(checks).await {
            let (h, pid, sshd) = r?;
            let processes = pids
                .iter()
                .find(|(n, _)| *n == h.name)
                .map_or(0, |(_, p)| p.len());
            hosts.push(HostStatus {
                name: h.name,
                address: h.address,
                pid,
                processes,
                sshd,
            });
        }
        Ok(StatusReport {
            dir: self.dir.clone(),
            bridge: net::link_exists(BRIDGE).then(|| format!("{BRIDGE} {GATEWAY}/{PREFIX}")),
            safety_route: net::safety_route_present().await?,
            hosts,
        })
    }

    /// Removes every host (processes by pid, TERM then KILL), namespace, veth, the bridge and,
    /// last, the safety route; then checks that nothing is left. Idempotent.
    pub async fn down(&self) -> Result<DownReport, LabError> {
        let t0 = Instant::now();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LabError::NotRoot);
        }
        let _lock = if self.dir.exists() {
            Some(self.lock().await?)
        } else {
            None
        };
        let names: Vec<String> = net::lab_netns()
            .into_iter()
            .filter_map(|i| host_addr(i).map(|h| h.name))
            .collect();
        // hosts whose netns someone deleted by hand still have a recorded init
        let orphans: Vec<u32> = self.recorded_inits();
        let killed = kill_hosts(&names, &orphans).await?;
        futures::future::try_join_all(names.iter().map(|n| net::del_netns(n))).await?;
        let veths = net::lab_veths();
        futures::future::try_join_all(veths.iter().map(|v| net::del_link(v))).await?;
        net::del_link(BRIDGE).await?;
        net::remove_safety_route().await?;
        net::release_netns_dir();

        let mut dirs = Vec::new();
        if let Ok(mut rd) = tokio::fs::read_dir(self.dir.join("hosts")).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                if let Some(n) = e.file_name().to_str().filter(|n| host_index(n).is_some()) {
                    dirs.push(self.host_paths(n));
                }
            }
        }
        futures::future::try_join_all(dirs.iter().map(|p| self.reset_host_state(p))).await?;

        self.check_nothing_left().await?;
        Ok(DownReport {
            hosts: names,
            processes_killed: killed,
            elapsed_ms: t0.elapsed().as_millis(),
        })
    }

    /// Init pids recorded in hosts/*/init.pid whose process is alive in another PID namespace.
    fn recorded_inits(&self) -> Vec<u32> {
        let own = std::fs::read_link("/proc/self/ns/pid").ok();
        let Ok(rd) = std::fs::read_dir(self.dir.join("hosts")) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("init.pid")).ok())
            .filter_map(|s| s.trim().parse::<u32>().ok())
            .filter(|p| {
                let ns = std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
                ns.is_some() && ns != own
            })
            .collect()
    }

    async fn check_nothing_left(&self) -> Result<(), LabError> {
        let mut left = Vec::new();
        let ns = net::lab_netns();
        if !ns.is_empty() {
            left.push(format!("namespaces {ns:?}"));
        }
        let veths = net::lab_veths();
        if !veths.is_empty() {
            left.push(format!("links {veths:?}"));
        }
        if net::link_exists(BRIDGE) {
            left.push(format!("bridge {BRIDGE}"));
        }
        let routes = run_cmd("ip", &["-4", "-j", "route", "show", "table", "all"]).await?;
        let range = net::lab_range();
        let in_range: Vec<String> = net::parse_routes(&routes)?
            .iter()
            .filter(|r| {
                r.net().is_some_and(|n| {
                    n.prefix_len() > 0
                        && (range.contains(&n.network()) || n.contains(&range.network()))
                })
            })
            .map(net::Route::describe)
            .collect();
        if !in_range.is_empty() {
            left.push(format!("routes {}", in_range.join("; ")));
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(LabError::Leftovers(left.join(", ")))
        }
    }
}

/// Kills every process of the named hosts (and of the PID namespaces of `extra_inits`): TERM,
/// up to 1 s of grace, then KILL until none is left. Returns how many processes there were.
async fn kill_hosts(names: &[String], extra_inits: &[u32]) -> Result<usize, LabError> {
    let scan = |names: Vec<String>, extra: Vec<u32>| async move {
        let mut all: BTreeSet<u32> = host::host_pids(names)
            .await?
            .into_iter()
            .flat_map(|(_, p)| p)
            .collect();
        let extra_ns: Vec<String> = extra
            .iter()
            .filter_map(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if !extra_ns.is_empty() {
            all.extend(extra.iter().copied());
            all.extend(pids_in_pidns(extra_ns).await?);
        }
        Ok::<_, LabError>(all)
    };
    let first = scan(names.to_vec(), extra_inits.to_vec()).await?;
    if first.is_empty() {
        return Ok(0);
    }
    host::signal_all(&first, libc::SIGTERM);
    let grace = Instant::now() + Duration::from_secs(1);
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let left = scan(names.to_vec(), extra_inits.to_vec()).await?;
        if left.is_empty() {
            return Ok(first.len());
        }
        if Instant::now() > give_up {
            return Err(LabError::Leftovers(format!(
                "processes {left:?} survived SIGKILL"
            )));
        }
        if Instant::now() > grace {
            host::signal_all(&left, libc::SIGKILL);
        } else {
            // a process that appeared after the first round (a fork racing us) gets TERM too
            host::signal_all(&left.difference(&first).copied().collect(), libc::SIGTERM);
        }
    }
}

/// The pids whose PID namespace is one of `ns` (as `readlink /proc/PID/ns/pid` spells it).
async fn pids_in_pidns(ns: Vec<String>) -> Result<BTreeSet<u32>, LabError> {
    tokio::task::spawn_blocking(move || {
        std::fs::read_dir("/proc")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|p| {
                        std::fs::read_link(format!("/proc/{p}/ns/pid"))
                            .map(|l| ns.contains(&l.to_string_lossy().into_owned()))
                            .unwrap_or(false)
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
    .await
    .map_err(|e| LabError::Internal(format!("process scan failed: {e}")))
}

async fn mkdir(p: &Path) -> Result<(), LabError> {
    tokio::fs::create_dir_all(p)
        .await
        .map_err(|e| LabError::Io {
            path: p.to_path_buf(),
            source: e,
        })
}

async fn read(p: &Path) -> Result<String, LabError> {
    tokio::fs::read_to_string(p)
        .await
        .map_err(|e| LabError::Io {
            path: p.to_path_buf(),
            source: e,
        })
}

/// Writes a file atomically (temp + rename) with a mode: a host starting in parallel never
/// reads half a file.
async fn write_file(p: &Path, text: &str, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| LabError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    tokio::fs::write(&tmp, text).await.map_err(io)?;
    tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io)?;
    tokio::fs::rename(&tmp, p).await.map_err(io)
}

/// A fresh home for a host's root: a copy of /etc/skel (the machine's /root may have slow
/// shell start-up files).
async fn copy_skel(home: PathBuf) -> Result<(), LabError> {
    tokio::task::spawn_blocking(move || {
        fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
            std::fs::create_dir_all(to)?;
            for e in std::fs::read_dir(from)? {
                let e = e?;
                let ft = e.file_type()?;
                let dest = to.join(e.file_name());
                if ft.is_dir() {
                    copy(&e.path(), &dest)?;
                } else if ft.is_file() {
                    std::fs::copy(e.path(), &dest)?;
                }
            }
            Ok(())
        }
        let skel = Path::new("/etc/skel");
        let r = if skel.is_dir() {
            copy(skel, &home)
        } else {
            std::fs::create_dir_all(&home)
        };
        r.map_err(|e| LabError::Io {
            path: home.clone(),
            source: e,
        })
    })
    .await
    .map_err(|e| LabError::Internal(format!("copying /etc/skel failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_dir_rules() {
        assert!(Lab::open("/srv/hactl-lab").is_ok());
        assert!(Lab::open("/tmp/lab-x").is_ok());
        for bad in [
            "relative/lab",
            "/etc/lab",
            "/var/lib/lab",
            "/run/lab",
            "/root/lab",
            "/",
            "/srv/../etc/x",
        ] {
            assert!(Lab::open(bad).is_err(), "{bad} should be refused");
        }
        // a prefix that merely shares letters is fine
        assert!(Lab::open("/etcetera/lab").is_ok());
    }

    #[test]
    fn missing_tools_name_packages() {
        assert!(missing_tools_error(|_| true).is_none());
        let e = missing_tools_error(|t| !matches!(t, "sshd" | "haproxy" | "unshare" | "nsenter"))
            .expect("some are missing");
        let LabError::MissingTools { tools, install } = &e else {
            panic!("wrong error: {e:?}");
        };
        assert_eq!(
            tools,
            "`unshare` (package util-linux), `nsenter` (package util-linux), `sshd` (package openssh-server), `haproxy` (package haproxy)"
        );
        assert_eq!(
            install,
            "apt-get install -y util-linux openssh-server haproxy"
        );
    }

    #[test]
    fn nsenter_argv_enters_every_namespace() {
        let argv = Lab::nsenter_argv(42, &["hostname".to_string()]);
        assert_eq!(
            argv,
            ["nsenter", "-t", "42", "-n", "-m", "-u", "-p", "--", "hostname"]
        );
    }

    #[test]
    fn systemctl_stand_in_knows_its_units() {
        for unit in ["nginx)", "keepalived)", "haproxy)", "is-active)", "status)"] {
            assert!(SYSTEMCTL.contains(unit), "{unit}");
        }
        assert!(SYSTEMCTL.contains("/var/log/keepalived.log"));
    }
}
