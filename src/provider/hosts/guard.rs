//! The network guard for test and benchmark runs: with `HACTL_NETWORK_GUARD=lab` in the
//! environment, hactl refuses to open SSH to any address outside loopback and the lab's range
//! (198.18.0.0/15, RFC 2544's benchmarking block, which the lab routes as `unreachable` except
//! through its own bridge).
//!
//! Why: moto invents public addresses for the instances it "launches" (54.214.x.x), and an
//! `up` on a moto fixture without `--provision-only` or a lab-mapped ssh_config would try SSH
//! to them. The project's tests, benchmarks and CI set the variable (`.cargo/config.toml`
//! `[env]`, `scripts/test.sh`, `bench/*.sh` except `bench/push.sh`, which measures hactl's
//! cost per host and proves every address routes to the lab with `hactl lab check` instead),
//! so such a slip fails before a packet leaves instead of timing out against someone else's
//! address. Outside those runs it is unset and costs nothing; set, it costs one `ssh -G` per
//! connection (~4 ms of client CPU per host).
//!
//! The target is resolved the way ssh will resolve it: `ssh -G` applies the stack's
//! ssh_config (`HostName`, `ProxyJump`), then the name is looked up. A `ProxyCommand` cannot
//! be checked and is refused under the guard.

use std::net::IpAddr;

use crate::stack::Stack;

/// The environment variable that turns the guard on; its one accepted value is `lab`.
pub const VAR: &str = "HACTL_NETWORK_GUARD";

/// Whether `ip` is loopback or inside 198.18.0.0/15.
pub fn allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Whether the guard is on (`HACTL_NETWORK_GUARD=lab`); an unknown value is an error rather
/// than "off", so a typo cannot switch the guard off. The deploy probe asks it too.
pub fn active() -> Result<bool, String> {
    match std::env::var(VAR) {
        Ok(v) if v == "lab" => Ok(true),
        Ok(v) if v.is_empty() => Ok(false),
        Ok(v) => Err(format!(
            "{VAR}={v:?} is not understood (the one value is `lab`)"
        )),
        Err(_) => Ok(false),
    }
}

/// Checks an SSH target under the guard. `Ok(())` when the guard is off or every address the
/// target (and any jump host) resolves to is allowed; otherwise the reason, naming the address.
pub async fn check(stack: &Stack, target: &str) -> Result<(), String> {
    if !active()? {
        return Ok(());
    }
    let ssh = &stack.file.ssh;
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-G").arg("-p").arg(ssh.port.to_string());
    if let Some(c) = &ssh.config_file {
        cmd.arg("-F").arg(stack.resolve_path(&c.value));
    }
    if let Some(j) = &ssh.proxy_jump {
        cmd.arg("-J").arg(j);
    }
    cmd.arg("--").arg(target);
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("{VAR}: cannot run `ssh -G` to resolve `{target}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{VAR}: `ssh -G` cannot resolve `{target}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names = Vec::new();
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "hostname" => names.push(value.to_string()),
            "proxycommand" if value != "none" => {
                return Err(format!(
                    "{VAR}=lab: `{target}` uses a ProxyCommand, which the guard cannot check"
                ))
            }
            "proxyjump" if value != "none" => {
                for hop in value.split(',') {
                    // user@host:port → host
                    let hop = hop.rsplit_once('@').map_or(hop, |(_, h)| h);
                    let hop = hop.split(':').next().unwrap_or(hop);
                    names.push(hop.to_string());
                }
            }
            _ => {}
        }
    }
    for name in names {
        let addrs: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| format!("{VAR}=lab: cannot resolve `{name}`: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        if let Some(bad) = addrs.iter().find(|ip| !allowed(**ip)) {
            return Err(format!(
                "{VAR}=lab: `{target}` resolves to {bad}, outside loopback and the lab's \
                 198.18.0.0/15; refusing to connect"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn only_loopback_and_the_lab_range_are_allowed() {
        for ok in [
            "127.0.0.1",
            "127.5.5.5",
            "::1",
            "198.18.0.11",
            "198.19.255.254",
        ] {
            assert!(allowed(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "54.214.72.195",
            "198.17.255.255",
            "198.20.0.1",
            "10.0.0.1",
            "::ffff:198.18.0.1",
            "2001:db8::1",
        ] {
            assert!(!allowed(bad.parse().unwrap()), "{bad}");
        }
    }
}
