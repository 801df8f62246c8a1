//! The network guard for test and benchmark runs: with `HACTL_NETWORK_GUARD=lab` in the
//! environment, hactl refuses to open SSH to any address outside loopback and the lab's range
//! (198.18.0.0/15, RFC 2544's benchmarking block, which the lab routes as `unreachable` except
//! through its own bridge).
//!
//! Why: moto invents public addresses for the instances it "launches" (54.214.x.x), and an
//! `up` on a moto fixture without `--provision-only` or a lab-mapped ssh_config would try SSH
//! to them. The project's tests, benchmarks and CI set the variable (`.cargo/config.toml`
//! `[env]`, `scripts/test.sh`, every `bench/*.sh`), so such a slip fails before a packet
//! leaves instead of timing out against someone else's address. Outside those runs it is unset
//! and costs nothing.
//!
//! The target is resolved the way ssh will resolve it. ssh_config (ssh_config(5)) can send a
//! name elsewhere only through `HostName`, `ProxyJump`, `ProxyCommand` and hostname
//! canonicalization, in a `Host` block that matches the name or a `Match` block. The guard
//! reads the files ssh reads (the stack's `-F` file, else the user's `~/.ssh/config` and
//! `/etc/ssh/ssh_config`, following `Include`) once per run: a target that no such block can
//! apply to (judged generously: negated patterns and `Match` criteria count as matching) goes
//! to its own name, with no process. Any other target, a stack `proxy_jump`, or a file the
//! reader does not follow to the end is resolved by `ssh -G` as before (~4 ms of client CPU
//! per host, which a 50-host no-op paid on every run). Either way the name is then looked up
//! and every address checked; a `ProxyCommand` cannot be checked and is refused.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

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
    let config = ssh
        .config_file
        .as_ref()
        .map(|c| stack.resolve_path(&c.value));
    let names =
        if ssh.proxy_jump.is_none() && !SshConfig::cached(config.as_deref()).may_redirect(target) {
            vec![target.to_string()]
        } else {
            ask_ssh(stack, target).await?
        };
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

/// The names ssh will connect to for `target` (its `HostName` and every jump host), as `ssh
/// -G` prints them with the stack's port, config file and jump host; a `ProxyCommand` is an
/// error.
async fn ask_ssh(stack: &Stack, target: &str) -> Result<Vec<String>, String> {
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
                    names.push(jump_host(hop).to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// The host of one `ssh -G` proxyjump hop: `user@host:port` → `host`; ssh prints an address
/// in brackets (`[198.51.100.9]`, `[::1]:22`).
fn jump_host(hop: &str) -> &str {
    let hop = hop.rsplit_once('@').map_or(hop, |(_, h)| h);
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hop.split(':').next().unwrap_or(hop)
}

/// What the guard needs from ssh's configuration files (ssh_config(5)): under which `Host`
/// patterns a keyword that can send a name elsewhere appears.
#[derive(Debug, Default, PartialEq)]
struct SshConfig {
    /// One entry per such keyword: the pattern lists that must all match the name for it to
    /// apply (the `Host` line of its block, and of every block an `Include` of it sits in; a
    /// `Match` block counts as `*`). An empty entry applies to every name.
    redirects: Vec<Vec<Vec<String>>>,
    /// Something the reader did not follow (an unreadable file, a quoted argument, an
    /// `Include` pattern with a wildcard before its last component, nesting past ssh's 16
    /// levels): every target is asked of `ssh -G`.
    unknown: bool,
}

/// The keywords that change where ssh connects: `HostName`, `ProxyJump`, `ProxyCommand`, and
/// `CanonicalizeHostname` (which may replace the name with another found through DNS).
const REDIRECTS: &[&str] = &[
    "hostname",
    "proxyjump",
    "proxycommand",
    "canonicalizehostname",
];

impl SshConfig {
    /// The files ssh reads for this run, read once per process: with `-F`, that file only;
    /// otherwise the user's `~/.ssh/config` (home from the password database, as ssh takes it,
    /// and `$HOME` when it differs) and `/etc/ssh/ssh_config`.
    fn cached(config_file: Option<&Path>) -> std::sync::Arc<SshConfig> {
        type Cache = std::sync::Mutex<Vec<(Option<PathBuf>, std::sync::Arc<SshConfig>)>>;
        static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = config_file.map(Path::to_path_buf);
        if let Ok(c) = cache.lock() {
            if let Some((_, hit)) = c.iter().find(|(k, _)| *k == key) {
                return hit.clone();
            }
        }
        let homes = homes();
        let config = std::sync::Arc::new(SshConfig::read(config_file, &homes));
        if let Ok(mut c) = cache.lock() {
            c.push((key, config.clone()));
        }
        config
    }

    /// Reads the configuration ssh would read: `config_file` (ssh's `-F`) alone, or the
    /// user configuration in each of `homes` and the system one.
    fn read(config_file: Option<&Path>, homes: &[PathBuf]) -> SshConfig {
        let mut c = SshConfig::default();
        if homes.is_empty() {
            // relative Includes of a user file could not be placed
            c.unknown = true;
        }
        match config_file {
            Some(f) => {
                // ssh refuses to start without it; `ssh -G` reports that
                if !f.is_file() {
                    c.unknown = true;
                }
                for home in homes {
                    c.file(f, &home.join(".ssh"), &[], 0);
                }
            }
            None => {
                for home in homes {
                    c.file(&home.join(".ssh/config"), &home.join(".ssh"), &[], 0);
                }
                c.file(
                    Path::new("/etc/ssh/ssh_config"),
                    Path::new("/etc/ssh"),
                    &[],
                    0,
                );
            }
        }
        c
    }

    /// Reads one file; a missing file is no configuration (as for ssh), an unreadable one is
    /// unknown.
    fn file(&mut self, path: &Path, base: &Path, outer: &[Vec<String>], depth: usize) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.text(&text, base, outer, depth),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => self.unknown = true,
        }
    }

    /// Reads the text of one file, whose blocks apply under `outer` (the conditions of the
    /// block that included it).
    fn text(&mut self, text: &str, base: &Path, outer: &[Vec<String>], depth: usize) {
        // ssh's own limit (READCONF_MAX_DEPTH)
        if depth > 16 {
            self.unknown = true;
            return;
        }
        let mut block: Vec<Vec<String>> = outer.to_vec();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.contains('"') {
                self.unknown = true;
                return;
            }
            let split = line
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(line.len());
            let keyword = line[..split].to_ascii_lowercase();
            let rest = line[split..].trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            let args: Vec<&str> = rest.split_whitespace().collect();
            match keyword.as_str() {
                "host" => {
                    if args.is_empty() {
                        self.unknown = true;
                    }
                    block = outer.to_vec();
                    // one pattern per argument; commas split them further (a pattern list
                    // elsewhere in ssh_config): more patterns can only match more names
                    block.push(
                        args.iter()
                            .flat_map(|a| a.split(','))
                            .map(str::to_ascii_lowercase)
                            .collect(),
                    );
                }
                "match" => {
                    block = outer.to_vec();
                    block.push(vec!["*".into()]);
                }
                "include" => {
                    for arg in args {
                        let here = block.clone();
                        self.include(arg, base, &here, depth);
                    }
                }
                k if REDIRECTS.contains(&k) => {
                    if k == "canonicalizehostname"
                        && args.first().is_some_and(|a| a.eq_ignore_ascii_case("no"))
                    {
                        continue;
                    }
                    self.redirects.push(block.clone());
                }
                _ => {}
            }
        }
    }

    /// An `Include` argument: `~/` is the home, a relative path is under `base` (`~/.ssh` for
    /// user files, `/etc/ssh` for the system file); wildcards (glob(7)'s `*`, `?`) in the last
    /// component only, files in name order as glob sorts them.
    fn include(&mut self, arg: &str, base: &Path, outer: &[Vec<String>], depth: usize) {
        let path = if let Some(rest) = arg.strip_prefix("~/") {
            match base.parent() {
                Some(home) if base.ends_with(".ssh") => home.join(rest),
                _ => {
                    self.unknown = true;
                    return;
                }
            }
        } else if arg.starts_with('/') {
            PathBuf::from(arg)
        } else {
            base.join(arg)
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            self.unknown = true;
            return;
        };
        let wild = |s: &str| s.contains(['*', '?', '['].as_slice());
        if wild(&dir.to_string_lossy()) || name.contains('[') {
            self.unknown = true;
            return;
        }
        if !wild(name) {
            self.file(&path, base, outer, depth + 1);
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => {
                self.unknown = true;
                return;
            }
        };
        let mut names: Vec<String> = Vec::new();
        for e in entries {
            let Ok(e) = e else {
                self.unknown = true;
                return;
            };
            match e.file_name().into_string() {
                // glob(7): a leading dot is matched only by a leading dot
                Ok(n) if wildcard(name, &n) && (!n.starts_with('.') || name.starts_with('.')) => {
                    names.push(n)
                }
                Ok(_) => {}
                Err(_) => self.unknown = true,
            }
        }
        names.sort();
        for n in names {
            self.file(&dir.join(n), base, outer, depth + 1);
        }
    }

    /// Whether ssh may connect somewhere other than `target` itself: a redirecting keyword
    /// whose every `Host` line has a pattern matching the name (negations ignored, so more
    /// names count than ssh's own matching takes), or anything unknown.
    fn may_redirect(&self, target: &str) -> bool {
        if self.unknown || target.contains(['@', '%'].as_slice()) {
            return true;
        }
        let name = target.to_ascii_lowercase();
        self.redirects.iter().any(|conds| {
            conds.iter().all(|patterns| {
                patterns
                    .iter()
                    .any(|p| wildcard(p.strip_prefix('!').unwrap_or(p), &name))
            })
        })
    }
}

/// ssh's pattern match (match_pattern in OpenSSH's match.c): `*` any run, `?` one character.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The home directories whose `.ssh` ssh may read: the password database's (ssh's own
/// choice) and `$HOME` when it differs.
fn homes() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(h) = passwd_home() {
        out.push(h);
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let h = PathBuf::from(h);
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

/// The user's home from the password database (getpwuid_r(3)).
fn passwd_home() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes into it and into
    // `buf` (whose length we pass) and sets `result` to it on success or to null.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getuid has no preconditions; the pointers are valid for the call (see above).
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points to a NUL-terminated string inside `buf`, alive here.
    let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

#[cfg(test)]
mod tests {
    use super::{allowed, wildcard, SshConfig};
    use std::path::Path;

    fn config(text: &str) -> SshConfig {
        let mut c = SshConfig::default();
        c.text(text, Path::new("/nonexistent/.ssh"), &[], 0);
        c
    }

    #[test]
    fn debians_default_ssh_config_leaves_every_name_alone() {
        let c = config(
            "Include /nonexistent/ssh_config.d/*.conf\nHost *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n    GSSAPIAuthentication yes\n",
        );
        assert_eq!(c, SshConfig::default());
        assert!(!c.may_redirect("198.18.0.11"));
    }

    #[test]
    fn a_block_that_can_rename_the_target_sends_it_to_ssh_g() {
        for (text, hit, miss) in [
            (
                "Host 198.18.0.11\n  HostName 54.1.2.3\n",
                "198.18.0.11",
                Some("198.18.0.12"),
            ),
            (
                "Host 198.18.*\n  ProxyJump 54.1.2.3\n",
                "198.18.0.11",
                Some("127.0.0.1"),
            ),
            (
                "Host = web?,198.18.0.1?\n  ProxyCommand nc %h 22\n",
                "198.18.0.12",
                Some("198.18.0.123"),
            ),
            // negations are not evaluated: counted as matching, which only asks ssh more often
            (
                "Host * !198.18.0.11\n  HostName elsewhere\n",
                "198.18.0.11",
                None,
            ),
            (
                "Match exec true\n  HostName elsewhere\n",
                "198.18.0.11",
                None,
            ),
            ("HostName elsewhere\nHost x\n", "198.18.0.11", None),
            ("Host *\n  CanonicalizeHostname yes\n", "lab1", None),
            (
                "Host x\n  HOSTNAME=elsewhere\nHost y\nHost *\n  HostName y\n",
                "lab1",
                None,
            ),
        ] {
            let c = config(text);
            assert!(c.may_redirect(hit), "{text:?} must redirect {hit}");
            if let Some(miss) = miss {
                assert!(!c.may_redirect(miss), "{text:?} must leave {miss} alone");
            }
        }
        assert!(!config("Host *\n  CanonicalizeHostname no\n").may_redirect("lab1"));
        // a user@ or %-token target is not matched here
        assert!(config("").may_redirect("root@198.18.0.11"));
    }

    #[test]
    fn what_the_reader_does_not_follow_asks_ssh_for_every_name() {
        for text in [
            "Host \"my host\"\n",
            "Host\n",
            "Include /nonexistent/*/x.conf\n",
        ] {
            assert!(config(text).may_redirect("198.18.0.11"), "{text:?}");
        }
    }

    #[test]
    fn includes_are_read_under_the_block_they_sit_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).expect("mkdir");
        std::fs::write(ssh.join("conf.d/a.conf"), "ProxyJump 54.1.2.3\n").expect("write");
        std::fs::write(ssh.join("conf.d/.hidden.conf"), "HostName 54.1.2.3\n").expect("write");
        std::fs::write(
            ssh.join("config"),
            "Host 198.18.0.1?\n  Include conf.d/*.conf\nHost 198.18.0.2*\n  Include ~/.ssh/conf.d/.hidden.conf\n",
        )
        .expect("write");
        let c = SshConfig::read(None, &[dir.path().to_path_buf()]);
        assert!(!c.unknown);
        assert!(c.may_redirect("198.18.0.11"));
        assert!(c.may_redirect("198.18.0.21"));
        assert!(!c.may_redirect("198.18.0.31"));
        // -F names the only file; a missing one is left to ssh's own error
        assert!(
            SshConfig::read(Some(&dir.path().join("nope")), &[dir.path().to_path_buf()])
                .may_redirect("198.18.0.31")
        );
        assert!(
            !SshConfig::read(Some(&ssh.join("config")), &[dir.path().to_path_buf()])
                .may_redirect("198.18.0.31")
        );
    }

    #[test]
    fn jump_hosts_are_read_as_ssh_g_prints_them() {
        for (hop, host) in [
            ("[198.51.100.9]", "198.51.100.9"),
            ("ops@[198.51.100.9]:2222", "198.51.100.9"),
            ("[::1]:22", "::1"),
            ("jump.example:22", "jump.example"),
            ("ops@jump", "jump"),
        ] {
            assert_eq!(super::jump_host(hop), host, "{hop}");
        }
    }

    #[test]
    fn patterns_match_like_ssh() {
        for (p, n, m) in [
            ("*", "a", true),
            ("198.18.*", "198.18.0.1", true),
            ("198.18.*", "198.19.0.1", false),
            ("web?", "web1", true),
            ("web?", "web12", false),
            ("*.lab", "a.b.lab", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
        ] {
            assert_eq!(wildcard(p, n), m, "{p} vs {n}");
        }
    }

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
