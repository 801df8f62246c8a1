//! The lab's network: the address plan (pure), the route-overlap check (pure parsing of
//! `ip -j route` output), and the `ip` invocations that make and remove the safety route, the
//! bridge and each host's veth pair.
//!
//! Why an `unreachable` route: a lab-range address that is not on the bridge (a podman network
//! inside a host, a typo) would otherwise follow the machine's default route out of it. The
//! route covers the whole 198.18.0.0/15; the bridge's connected /24 is more specific and wins for
//! the hosts themselves. It goes in first on `up` and comes out last on `down`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

use super::{run_cmd, LabError};

/// The whole lab range (RFC 2544 benchmark networks): nothing real uses it.
pub const LAB_RANGE: &str = "198.18.0.0/15";
/// The bridge in the root namespace.
pub const BRIDGE: &str = "hactl0";
/// The bridge's own address (the hosts' gateway, though hosts get no default route).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The hosts' subnet prefix length.
pub const PREFIX: u8 = 24;
/// The most hosts a lab can have (198.18.0.11 ..= 198.18.0.90; .100 is the demo VIP).
pub const MAX_HOSTS: usize = 80;

/// The lab range as a network.
pub fn lab_range() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 15).unwrap_or_default()
}

/// The hosts' subnet on the bridge, 198.18.0.0/24.
#[cfg(test)]
pub fn host_subnet() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), PREFIX).unwrap_or_default()
}

/// One host of the address plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostAddr {
    /// 1-based index.
    pub index: usize,
    /// `host{index}`: netns name, hostname and ssh alias.
    pub name: String,
    /// 198.18.0.(10 + index).
    pub address: Ipv4Addr,
    /// The root-namespace side of the veth pair (`hv{index}`); inside, it is `eth0`.
    pub veth: String,
}

/// The address plan entry for host `index` (1..=MAX_HOSTS).
pub fn host_addr(index: usize) -> Option<HostAddr> {
    if index == 0 || index > MAX_HOSTS {
        return None;
    }
    let last = u8::try_from(10 + index).ok()?;
    Some(HostAddr {
        index,
        name: format!("host{index}"),
        address: Ipv4Addr::new(198, 18, 0, last),
        veth: format!("hv{index}"),
    })
}

/// The index of a lab host name (`host7` → 7), if it is one.
pub fn host_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("host")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let i: usize = digits.parse().ok()?;
    host_addr(i).map(|_| i)
}

/// One route as `ip -j route show table all` prints it (only the fields we read).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub dst: String,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
}

impl Route {
    /// The destination as a network (`default` is 0.0.0.0/0, a bare address is a /32).
    pub fn net(&self) -> Option<Ipv4Net> {
        if self.dst == "default" {
            return Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).ok();
        }
        if let Ok(n) = self.dst.parse::<Ipv4Net>() {
            return Some(n);
        }
        self.dst
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(|a| Ipv4Net::new(a, 32).ok())
    }

    /// Routes the lab made itself: anything on its bridge, and its unreachable safety net.
    pub fn is_lab_own(&self) -> bool {
        if self.dev.as_deref() == Some(BRIDGE) {
            return true;
        }
        self.kind.as_deref() == Some("unreachable")
            && self.dst == LAB_RANGE
            && matches!(self.table.as_deref(), None | Some("main"))
    }

    /// `ip route`-like one-line description for error messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(k) = &self.kind {
            s.push_str(k);
            s.push(' ');
        }
        s.push_str(&self.dst);
        if let Some(d) = &self.dev {
            s.push_str(" dev ");
            s.push_str(d);
        }
        if let Some(t) = &self.table {
            s.push_str(" table ");
            s.push_str(t);
        }
        s
    }
}

/// Parses `ip -4 -j route show table all`.
pub fn parse_routes(json: &str) -> Result<Vec<Route>, LabError> {
    let trimmed = json.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(trimmed).map_err(|e| LabError::Parse {
        what: "`ip -j route` output".into(),
        detail: e.to_string(),
    })
}

/// The routes that overlap the lab range and that the lab did not make. A default route
/// (prefix 0) is not an overlap: the lab's more specific routes win over it, which is the point.
pub fn foreign_overlaps(routes: &[Route]) -> Vec<Route> {
    let range = lab_range();
    routes
        .iter()
        .filter(|r| !r.is_lab_own())
        .filter(|r| match r.net() {
            Some(n) if n.prefix_len() > 0 => {
                range.contains(&n.network()) || n.contains(&range.network())
            }
            _ => false,
        })
        .cloned()
        .collect()
}

/// One answer of `ip -j route get ADDR`.
#[derive(Debug, Deserialize)]
struct RouteGet {
    #[serde(default)]
    dev: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// The device `ip -j route get` names (pure): `None` if the answer has no device.
pub fn parse_route_get(json: &str) -> Result<Option<String>, LabError> {
    let v: Vec<RouteGet> = serde_json::from_str(json.trim()).map_err(|e| LabError::Parse {
        what: "`ip -j route get` output".into(),
        detail: e.to_string(),
    })?;
    Ok(v.into_iter()
        .next()
        .filter(|r| r.kind.as_deref().is_none_or(|k| k == "unicast"))
        .and_then(|r| r.dev))
}

/// Checks that traffic to `addr` stays on the lab: the address is inside 198.18.0.0/15 and
/// `ip route get` sends it out of the lab bridge. Call it before sending anything to a lab
/// address (tests before load, the lab before probing sshd).
pub async fn ensure_lab_route(addr: Ipv4Addr) -> Result<(), LabError> {
    if !lab_range().contains(&addr) {
        return Err(LabError::NotLabRoute {
            addr,
            detail: format!("it is outside the lab range {LAB_RANGE}"),
        });
    }
    let out = run_cmd("ip", &["-4", "-j", "route", "get", &addr.to_string()]).await;
    let out = match out {
        Ok(o) => o,
        Err(LabError::Command { stderr, .. }) => {
            return Err(LabError::NotLabRoute {
                addr,
                detail: format!("`ip route get` refused it: {}", stderr.trim()),
            })
        }
        Err(e) => return Err(e),
    };
    match parse_route_get(&out)? {
        Some(dev) if dev == BRIDGE => Ok(()),
        Some(dev) => Err(LabError::NotLabRoute {
            addr,
            detail: format!("it routes via `{dev}`, not `{BRIDGE}`"),
        }),
        None => Err(LabError::NotLabRoute {
            addr,
            detail: "it has no route through a device (is the lab up?)".into(),
        }),
    }
}

/// Refuses if a route the lab did not make overlaps its range.
pub async fn check_no_foreign_routes() -> Result<(), LabError> {
    let out = run_cmd("ip", &["-4", "-j", "route", "show", "table", "all"]).await?;
    let foreign = foreign_overlaps(&parse_routes(&out)?);
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(LabError::RouteOverlap {
            routes: foreign
                .iter()
                .map(Route::describe)
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

/// Installs the safety net: anything in the lab range without a more specific lab route fails
/// locally instead of leaving the machine.
pub async fn install_safety_route() -> Result<(), LabError> {
    run_cmd("ip", &["route", "replace", "unreachable", LAB_RANGE]).await?;
    Ok(())
}

/// Whether the safety route is present.
pub async fn safety_route_present() -> Result<bool, LabError> {
    let out = run_cmd("ip", &["-4", "-j", "route", "show", "table", "main"]).await?;
    Ok(parse_routes(&out)?
        .iter()
        .any(|r| r.kind.as_deref() == Some("unreachable") && r.dst == LAB_RANGE))
}

/// Removes the safety route (absent is fine).
pub async fn remove_safety_route() -> Result<(), LabError> {
    if safety_route_present().await? {
        run_cmd("ip", &["route", "del", "unreachable", LAB_RANGE]).await?;
    }
    Ok(())
}

/// Whether a network device exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Creates the bridge (if missing) with the gateway address, multicast snooping off (VRRP in
/// multicast mode must reach every host), and brings it up.
pub async fn ensure_bridge() -> Result<(), LabError> {
    let mut batch = String::new();
    if !link_exists(BRIDGE) {
        batch.push_str(&format!("link add {BRIDGE} type bridge mcast_snooping 0\n"));
    }
    batch.push_str(&format!("addr replace {GATEWAY}/{PREFIX} dev {BRIDGE}\n"));
    batch.push_str(&format!("link set {BRIDGE} up\n"));
    ip_batch(None, &batch).await
}

/// The `ip -batch` lines (root namespace) that create host `h`'s namespace and veth pair.
pub fn host_root_batch(h: &HostAddr) -> String {
    format!(
        "netns add {name}\nlink add {veth} type veth peer name eth0 netns {name}\nlink set {veth} master {BRIDGE} up\n",
        name = h.name,
        veth = h.veth
    )
}

/// The `ip -batch` lines run inside host `h`'s namespace: its address and links. No default
/// route: a host can reach the lab subnet and nothing else. The MAC address is fixed per host
/// (locally administered, `02:68:63:00:00:<index>`) like a real machine's NIC: a host that is
/// killed and started again keeps it, so the neighbour caches of the machine and of the other
/// hosts stay right (a new random MAC left them pointing at the dead one for seconds, and an
/// SSH connect right after the restart timed out).
pub fn host_ns_batch(h: &HostAddr) -> String {
    format!(
        "addr add {addr}/{PREFIX} dev eth0\nlink set eth0 address {mac}\nlink set lo up\nlink set eth0 up\n",
        addr = h.address,
        mac = host_mac(h.index)
    )
}

/// The fixed MAC address of host `index`'s `eth0`.
pub fn host_mac(index: usize) -> String {
    format!(
        "02:68:63:00:{:02x}:{:02x}",
        (index >> 8) & 0xff,
        index & 0xff
    )
}

/// Creates host `h`'s namespace and network.
pub async fn add_host_links(h: &HostAddr) -> Result<(), LabError> {
    ip_batch(None, &host_root_batch(h)).await?;
    ip_batch(Some(&h.name), &host_ns_batch(h)).await
}

/// Deletes a network namespace (absent is fine).
pub async fn del_netns(name: &str) -> Result<(), LabError> {
    if netns_exists(name) {
        run_cmd("ip", &["netns", "del", name]).await?;
    }
    Ok(())
}

/// Deletes a link in the root namespace (absent is fine). The kernel removes a veth when its
/// namespace goes away, but asynchronously: deleting it ourselves makes `down` deterministic.
pub async fn del_link(name: &str) -> Result<(), LabError> {
    if link_exists(name) {
        match run_cmd("ip", &["link", "del", name]).await {
            Ok(_) => {}
            // it vanished between the check and the delete (its netns was just torn down)
            Err(_) if !link_exists(name) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The path `ip netns` keeps a namespace at.
pub fn netns_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/run/netns").join(name)
}

pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Unmounts /run/netns once it is empty: `ip netns add` turns it into a (shared) bind mount of
/// itself on first use, and `down` promises to leave no mount behind. A directory with any
/// namespace left in it (someone else's) is left alone; a busy mount is not an error.
pub fn release_netns_dir() {
    for _ in 0..4 {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some("/run/netns")))
            .unwrap_or(false);
        let empty = std::fs::read_dir("/run/netns")
            .map(|mut rd| rd.next().is_none())
            .unwrap_or(false);
        if !mounted || !empty {
            return;
        }
        // SAFETY: umount2 with a valid NUL-terminated path; failure (EBUSY) is harmless.
        let rc = unsafe { libc::umount2(c"/run/netns".as_ptr(), 0) };
        if rc != 0 {
            return;
        }
    }
}

/// The lab host namespaces that exist (`host{N}` names only), sorted by index.
pub fn lab_netns() -> Vec<usize> {
    let mut v: Vec<usize> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(host_index))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The lab veths that exist in the root namespace (`hv{N}`), sorted by index.
pub fn lab_veths() -> Vec<String> {
    let mut v: Vec<(usize, String)> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.to_string();
                    let i = host_index(&format!("host{}", n.strip_prefix("hv")?))?;
                    Some((i, n))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

/// Runs `ip [-n NS] -batch -` with `lines` on stdin.
async fn ip_batch(netns: Option<&str>, lines: &str) -> Result<(), LabError> {
    use tokio::io::AsyncWriteExt;
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    let mut child = tokio::process::Command::new("ip")
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Spawn {
            program: "ip".into(),
            source: e,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.as_bytes())
            .await
            .map_err(|e| LabError::Spawn {
                program: "ip".into(),
                source: e,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| LabError::Spawn {
            program: "ip".into(),
            source: e,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("ip {} <<< {:?}", args.join(" "), lines),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_plan() {
        let h = host_addr(1).expect("host1");
        assert_eq!(h.name, "host1");
        assert_eq!(h.address, Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(h.veth, "hv1");
        let last = host_addr(MAX_HOSTS).expect("last host");
        assert_eq!(last.address, Ipv4Addr::new(198, 18, 0, 90));
        assert!(host_addr(0).is_none());
        assert!(host_addr(MAX_HOSTS + 1).is_none());
        // every host is on the bridge's subnet, none collides with the gateway or the demo VIP
        for i in 1..=MAX_HOSTS {
            let a = host_addr(i).expect("in plan").address;
            assert!(host_subnet().contains(&a));
            assert_ne!(a, GATEWAY);
            assert_ne!(a, Ipv4Addr::new(198, 18, 0, 100));
        }
    }

    #[test]
    fn host_names_parse_strictly() {
        assert_eq!(host_index("host3"), Some(3));
        assert_eq!(host_index("host80"), Some(80));
        assert_eq!(host_index("host81"), None);
        assert_eq!(host_index("host0"), None);
        assert_eq!(host_index("host03"), None);
        assert_eq!(host_index("host"), None);
        assert_eq!(host_index("hostx"), None);
        assert_eq!(host_index("myhost1"), None);
    }

    #[test]
    fn own_routes_are_not_overlaps() {
        let json = r#"[
          {"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
          {"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","flags":[]},
          {"type":"unreachable","dst":"198.18.0.0/15","flags":[]},
          {"dst":"198.18.0.0/24","dev":"hactl0","protocol":"kernel","scope":"link","prefsrc":"198.18.0.1","flags":[]},
          {"type":"local","dst":"198.18.0.1","dev":"hactl0","table":"local","protocol":"kernel","scope":"host","flags":[]},
          {"type":"broadcast","dst":"198.18.0.255","dev":"hactl0","table":"local","protocol":"kernel","scope":"link","flags":[]},
          {"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host","flags":[]}
        ]"#;
        let routes = parse_routes(json).expect("parses");
        assert_eq!(routes.len(), 7);
        assert!(foreign_overlaps(&routes).is_empty());
    }

    #[test]
    fn foreign_routes_overlap() {
        let json = r#"[
          {"dst":"198.19.4.0/24","dev":"podman0","protocol":"kernel","flags":[]},
          {"dst":"198.0.0.0/8","gateway":"192.0.2.1","dev":"eth0","flags":[]},
          {"dst":"198.18.7.7","gateway":"192.0.2.1","dev":"eth0","flags":[]},
          {"type":"unreachable","dst":"198.18.0.0/15","table":"100","flags":[]},
          {"dst":"198.20.0.0/16","dev":"eth0","flags":[]},
          {"dst":"198.16.0.0/15","dev":"eth0","flags":[]}
        ]"#;
        let found: Vec<String> = foreign_overlaps(&parse_routes(json).expect("parses"))
            .iter()
            .map(Route::describe)
            .collect();
        assert_eq!(
            found,
            vec![
                "198.19.4.0/24 dev podman0",
                "198.0.0.0/8 dev eth0",
                "198.18.7.7 dev eth0",
                "unreachable 198.18.0.0/15 table 100",
            ]
        );
    }

    #[test]
    fn empty_route_table() {
        assert!(parse_routes("").expect("empty ok").is_empty());
        assert!(parse_routes("[]").expect("empty ok").is_empty());
        assert!(parse_routes("not json").is_err());
    }

    #[test]
    fn route_get_device() {
        let lab = r#"[{"dst":"198.18.0.11","dev":"hactl0","prefsrc":"198.18.0.1","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(
            parse_route_get(lab).expect("parses").as_deref(),
            Some("hactl0")
        );
        let out = r#"[{"dst":"198.18.0.11","gateway":"192.0.2.1","dev":"eth0","flags":[]}]"#;
        assert_eq!(
            parse_route_get(out).expect("parses").as_deref(),
            Some("eth0")
        );
        let unreachable = r#"[{"type":"unreachable","dst":"198.18.5.5","flags":[]}]"#;
        assert_eq!(parse_route_get(unreachable).expect("parses"), None);
    }

    #[test]
    fn batches() {
        let h = host_addr(2).expect("host2");
        insta::assert_snapshot!(host_root_batch(&h), @r"
        netns add host2
        link add hv2 type veth peer name eth0 netns host2
        link set hv2 master hactl0 up
        ");
        insta::assert_snapshot!(host_ns_batch(&h), @r"
        addr add 198.18.0.12/24 dev eth0
        link set eth0 address 02:68:63:00:00:02
        link set lo up
        link set eth0 up
        ");
    }
}
