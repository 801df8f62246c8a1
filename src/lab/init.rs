//! `hactl lab __init`: what runs as PID 1 of a lab host, inside its network namespace and its
//! fresh mount, UTS and PID namespaces. It mounts the host's private view of the machine and
//! then `exec`s `sshd -D`, which stays PID 1 (and reaps orphans) until `lab down`.
//!
//! This is plain blocking code on purpose: it runs before anything else in a process that is
//! about to be replaced by sshd, and every step is a system call or a small file write.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::host::HostPaths;
use super::net::host_addr;
use super::LabError;

/// The podman engine settings every host gets (runc, ulimits, lab-range subnets).
const CONTAINERS_CONF: &str = include_str!("containers.conf");

/// podman's default network for the CNI backend, in the lab range. Debian's podman package
/// ships `/etc/cni/net.d/87-podman-bridge.conflist` (10.88.0.0/16), and with the CNI backend
/// that file wins over `containers.conf`'s `default_subnet`: a host would hand its containers
/// addresses outside the lab range. Each host gets this one in its /etc overlay instead.
const CNI_DEFAULT_CONFLIST: &str = include_str!("podman-bridge.conflist");

/// Where podman keeps network definitions: the CNI backend's and netavark's. The machine's
/// definitions there are the machine's networks, not the host's (and their subnets are
/// outside the lab range), so a host starts with neither.
const NETWORK_CONFIG_DIRS: &[&str] = &["/etc/cni/net.d", "/etc/containers/networks"];

/// The cgroup v1 controllers podman/runc expect in this machine's hybrid layout.
const CGROUP_V1: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

/// podman's storage.conf for a host: graphroot on the lab dir (ext4: the overlay driver
/// cannot sit on the /var overlay), runroot on the host's private /run.
pub fn render_storage_conf(graphroot: &Path) -> String {
    format!(
        "# Written by hactl lab for this host.\n[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"/run/containers/storage\"\n",
        graphroot.display()
    )
}

/// dockerd's daemon.json for a host: storage on the lab dir, its bridge and the pool compose
/// networks come from inside the lab range (Docker's defaults, 172.17.0.0/16 and the
/// 172.x/192.168.x pools, are outside it), ulimits within the lab's hard limit (as podman's).
pub fn render_docker_daemon_json(data_root: &Path) -> String {
    let v = serde_json::json!({
        "data-root": data_root.display().to_string(),
        "bip": "198.19.128.1/24",
        "default-address-pools": [{"base": "198.19.192.0/18", "size": 24}],
        "storage-driver": "overlay2",
        "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 20000, "Soft": 20000}},
    });
    format!("{v:#}\n")
}

/// /etc/hosts of a host.
pub fn render_etc_hosts(name: &str, addr: std::net::Ipv4Addr) -> String {
    format!("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{addr} {name}\n")
}

fn cstr(s: &str) -> Result<CString, LabError> {
    CString::new(s).map_err(|_| LabError::Internal(format!("NUL byte in {s:?}")))
}

/// mount(2) with a clear error.
fn mount(
    source: &str,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), LabError> {
    let src = cstr(source)?;
    let tgt = cstr(target)?;
    let fst = fstype.map(cstr).transpose()?;
    let dat = data.map(cstr).transpose()?;
    // SAFETY: every pointer is a valid NUL-terminated string (or NULL) for the call's duration.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast::<libc::c_void>()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(LabError::Mount {
            target: target.to_string(),
            detail: format!(
                "{} ({source}, {})",
                std::io::Error::last_os_error(),
                data.unwrap_or("")
            ),
        })
    }
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, LabError> {
    r.map_err(|e| LabError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn write(path: &str, text: &str) -> Result<(), LabError> {
    let p = Path::new(path);
    if let Some(parent) = p.parent() {
        io(parent, std::fs::create_dir_all(parent))?;
    }
    io(p, std::fs::write(p, text))
}

/// Removes every entry of `dir` (a directory of the host's /etc overlay), if it exists.
fn clear_dir(dir: &str) -> Result<(), LabError> {
    let p = Path::new(dir);
    let entries = match std::fs::read_dir(p) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(LabError::Io {
                path: p.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let path = io(p, entry)?.path();
        let r = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        io(&path, r)?;
    }
    Ok(())
}

/// Sets up the host's mounts and files, then becomes its sshd. Returns only on failure.
/// `warn` gets each mount that failed without stopping the host (a missing cgroup hierarchy).
pub fn run(lab_dir: &Path, name: &str, sshd: &Path, warn: &dyn Fn(&str)) -> LabError {
    match setup(lab_dir, name, warn) {
        Ok(paths) => {
            let err = std::process::Command::new(sshd)
                .arg("-D")
                .arg("-f")
                .arg(paths.sshd_config())
                .arg("-E")
                .arg(paths.sshd_log())
                .exec();
            LabError::Spawn {
                program: sshd.display().to_string(),
                source: err,
            }
        }
        Err(e) => e,
    }
}

fn setup(lab_dir: &Path, name: &str, warn: &dyn Fn(&str)) -> Result<HostPaths, LabError> {
    let index =
        super::net::host_index(name).ok_or_else(|| LabError::UnknownHost(name.to_string()))?;
    let h = host_addr(index).ok_or_else(|| LabError::UnknownHost(name.to_string()))?;
    let paths = HostPaths::new(lab_dir, name);
    let d = |s: &str| -> String { paths.dir.join(s).display().to_string() };

    // SAFETY: sethostname with a valid buffer and its length; we own this UTS namespace.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(LabError::Mount {
            target: "hostname".into(),
            detail: std::io::Error::last_os_error().to_string(),
        });
    }
    // nothing we mount may propagate back to the machine (unshare already does this; be sure)
    mount("none", "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    // copy-on-write /etc and /var: a host's writes land in hosts/hostN/{etc,var}.upper
    for (what, target) in [("etc", "/etc"), ("var", "/var")] {
        mount(
            &format!("lab-{what}"),
            target,
            Some("overlay"),
            0,
            Some(&format!(
                "lowerdir={target},upperdir={},workdir={}",
                d(&format!("{what}.upper")),
                d(&format!("{what}.work"))
            )),
        )?;
    }
    // private /run: pid files, sockets, podman's runroot
    mount("lab-run", "/run", Some("tmpfs"), 0, Some("mode=755"))?;
    for dir in ["/run/sshd", "/run/lock", "/run/shm"] {
        io(Path::new(dir), std::fs::create_dir_all(dir))?;
    }
    // private home (a copy of /etc/skel made by `lab up`): the machine's /root dotfiles are slow
    mount(
        &paths.root_home().display().to_string(),
        "/root",
        None,
        libc::MS_BIND,
        None,
    )?;
    // the systemctl stand-in, only inside this host's mount namespace
    let stand_in: PathBuf = lab_dir.join("systemctl");
    mount(
        &stand_in.display().to_string(),
        "/usr/bin/systemctl",
        None,
        libc::MS_BIND,
        None,
    )?;
    // `ip netns exec` remounted /sys: re-create the cgroup v1/v2 hybrid layout podman and runc
    // need. A controller this kernel lacks is not fatal (podman only needs the common ones).
    mount(
        "lab-cgroup",
        "/sys/fs/cgroup",
        Some("tmpfs"),
        0,
        Some("mode=755"),
    )?;
    let mut warnings = Vec::new();
    for c in CGROUP_V1 {
        let target = format!("/sys/fs/cgroup/{c}");
        io(Path::new(&target), std::fs::create_dir_all(&target))?;
        if let Err(e) = mount("cgroup", &target, Some("cgroup"), 0, Some(c)) {
            warnings.push(e.to_string());
        }
    }
    for (target, fstype, data) in [
        (
            "/sys/fs/cgroup/systemd",
            "cgroup",
            Some("none,name=systemd"),
        ),
        ("/sys/fs/cgroup/unified", "cgroup2", None),
    ] {
        io(Path::new(target), std::fs::create_dir_all(target))?;
        if let Err(e) = mount(fstype, target, Some(fstype), 0, data) {
            warnings.push(e.to_string());
        }
    }
    for w in warnings {
        warn(&w);
    }

    // identity files and podman's settings, written through the /etc overlay
    write("/etc/hostname", &format!("{name}\n"))?;
    write("/etc/hosts", &render_etc_hosts(name, h.address))?;
    write("/etc/containers/containers.conf", CONTAINERS_CONF)?;
    // Removing a file through the overlay leaves a whiteout in the host's upper dir: the
    // machine's own /etc keeps its files, the host no longer sees them.
    for dir in NETWORK_CONFIG_DIRS {
        clear_dir(dir)?;
    }
    write(
        "/etc/cni/net.d/87-podman-bridge.conflist",
        CNI_DEFAULT_CONFLIST,
    )?;
    write(
        "/etc/docker/daemon.json",
        &render_docker_daemon_json(&paths.docker_root()),
    )?;
    write(
        "/etc/containers/storage.conf",
        &render_storage_conf(&paths.storage()),
    )?;
    io(Path::new("/"), std::env::set_current_dir("/"))?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_conf() {
        insta::assert_snapshot!(
            render_storage_conf(Path::new("/srv/hactl-lab/hosts/host1/containers-storage")),
            @r#"
        # Written by hactl lab for this host.
        [storage]
        driver = "overlay"
        graphroot = "/srv/hactl-lab/hosts/host1/containers-storage"
        runroot = "/run/containers/storage"
        "#
        );
    }

    #[test]
    fn containers_conf_stays_in_the_lab_range() {
        let range = crate::lab::net::lab_range();
        let mut subnets = 0;
        for line in CONTAINERS_CONF
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
        {
            for part in line.split('"') {
                if let Ok(n) = part.parse::<ipnet::Ipv4Net>() {
                    assert!(range.contains(&n), "{n} is outside {range}");
                    subnets += 1;
                }
            }
        }
        assert_eq!(subnets, 2, "default_subnet and one pool");
        assert!(CONTAINERS_CONF.contains("runtime = \"runc\""));
    }

    #[test]
    fn docker_networks_stay_in_the_lab_range() {
        let range = crate::lab::net::lab_range();
        let text = render_docker_daemon_json(Path::new("/srv/hactl-lab/hosts/host1/docker"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["data-root"], "/srv/hactl-lab/hosts/host1/docker");
        let bip: ipnet::Ipv4Net = v["bip"].as_str().and_then(|s| s.parse().ok()).expect("bip");
        let pool: ipnet::Ipv4Net = v["default-address-pools"][0]["base"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("pool");
        for n in [bip, pool] {
            assert!(range.contains(&n), "{n} is outside {range}");
        }
        // apart from podman's default network and pool
        for podman in ["198.19.0.0/24", "198.19.64.0/18"] {
            let p: ipnet::Ipv4Net = podman.parse().expect("net");
            assert!(!p.contains(&bip.trunc()) && !pool.contains(&p) && !p.contains(&pool));
        }
    }

    #[test]
    fn cni_default_network_stays_in_the_lab_range() {
        let range = crate::lab::net::lab_range();
        let v: serde_json::Value =
            serde_json::from_str(CNI_DEFAULT_CONFLIST).expect("the conflist is JSON");
        // podman looks the default network up by this name
        assert_eq!(v["name"], "podman");
        let ranges = &v["plugins"][0]["ipam"]["ranges"];
        let subnet: ipnet::Ipv4Net = ranges[0][0]["subnet"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("one subnet");
        assert!(range.contains(&subnet), "{subnet} is outside {range}");
        // the same subnet as containers.conf's default_subnet (the netavark backend's default)
        assert!(CONTAINERS_CONF.contains(&format!("default_subnet = \"{subnet}\"")));
    }

    #[test]
    fn etc_hosts() {
        assert_eq!(
            render_etc_hosts("host2", std::net::Ipv4Addr::new(198, 18, 0, 12)),
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n198.18.0.12 host2\n"
        );
    }
}
