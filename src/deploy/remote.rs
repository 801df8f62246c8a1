//! What the deploy runs on the hosts besides `app-ctl` (which is `crate::onhost::app_ctl`):
//! image load, haproxy drain, the deploy lock and the history, each a script built as data by
//! a pure function (snapshot-tested, no SSH needed) and sent whole on stdin like every other
//! hactl script. Output is `HACTL\t…` records (`crate::onhost::record`).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::onhost::app_ctl::Runtime;
use crate::onhost::app_ctl::{container_cli, runtime_ready};
use crate::onhost::paths::{app_dir, lock_dir, HAPROXY_BACKEND};
use crate::onhost::record;
use crate::onhost::sh::{heredoc_b64, q};

/// Loads an image archive sent inside the script itself (base64 in a here-document, which
/// the shell feeds through a pipe): nothing is written to a world-readable temporary file.
pub fn load_image_script(runtime: Runtime, archive: &[u8], want: &str) -> String {
    let cli = container_cli(runtime);
    let mut s = String::from("set -u\n");
    if runtime == Runtime::Docker {
        let _ = writeln!(
            s,
            "ready() {{\n  {}}}\nready || exit 1",
            runtime_ready(runtime)
        );
    }
    let _ = writeln!(s, "if ! out=$(base64 -d <<'HACTL_EOF' | {cli} load 2>&1");
    let b64 = base64::engine::general_purpose::STANDARD.encode(archive);
    for chunk in b64.as_bytes().chunks(76) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("HACTL_EOF\n); then printf '%s\\n' \"$out\" | sed 's/^/HACTL\\tlog\\t/'; printf 'HACTL\\tfail\\tload\\n'; exit 1; fi\n");
    let _ = writeln!(
        s,
        "if {cli} image inspect {w} >/dev/null 2>&1; then {}; else {}; exit 1; fi",
        record::printf(&["ok", "load"], &[&q(want)]),
        record::printf(&["fail", "load-name"], &[&q(want)]),
        w = q(want)
    );
    s
}

/// The haproxy runtime API through its admin socket: socat when installed, else python3.
fn hapx_fn(socket: &str) -> String {
    format!(
        concat!(
            "SOCK={}\n",
            "hapx() {{\n",
            "  if command -v socat >/dev/null 2>&1; then printf '%s\\n' \"$1\" | socat -t 3 - \"UNIX-CONNECT:$SOCK\"\n",
            "  else python3 -c 'import socket,sys\n",
            "s=socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+\"\\n\").encode())\n",
            "out=b\"\"\n",
            "while True:\n",
            "    d=s.recv(65536)\n",
            "    if not d: break\n",
            "    out+=d\n",
            "sys.stdout.write(out.decode())' \"$SOCK\" \"$1\"; fi\n",
            "}}\n",
            // current sessions and status of one server: `show stat` CSV fields 5 and 18
            // (the status may hold spaces: `UP 1/2`)
            "srv() {{ hapx 'show stat' | awk -F, -v b={} -v s=\"$1\" '$1==b && $2==s {{print $5\" \"$18}}'; }}\n",
        ),
        q(socket),
        HAPROXY_BACKEND
    )
}

/// Drains servers at one haproxy and waits (up to `timeout_s`) until their sessions reach 0.
pub fn drain_script(socket: &str, servers: &[String], timeout_s: f64) -> String {
    let mut s = String::from("set -u\n");
    s.push_str(&hapx_fn(socket));
    let _ = writeln!(
        s,
        "[ -S \"$SOCK\" ] || {{ {}; exit 1; }}",
        record::printf(&["fail", "no-socket"], &["\"$SOCK\""])
    );
    for srv in servers {
        let cmd = format!("set server {HAPROXY_BACKEND}/{srv} state drain");
        let _ = writeln!(s, "hapx {} >/dev/null", q(&cmd));
    }
    let list = servers
        .iter()
        .map(|x| q(x).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(
        s,
        "end=$(( $(date +%s%3N) + {} ))\nwhile :; do\n  busy=0\n  for x in {list}; do set -- $(srv \"$x\"); [ \"${{1:-0}}\" -gt 0 ] 2>/dev/null && busy=1; done\n  [ $busy = 0 ] && break\n  [ \"$(date +%s%3N)\" -ge $end ] && {{ printf 'HACTL\\tlog\\tdrain timeout: sessions still open\\n'; break; }}\n  sleep 0.1\ndone",
        (timeout_s * 1000.0) as u64
    );
    let _ = writeln!(
        s,
        "for x in {list}; do set -- $(srv \"$x\"); printf 'HACTL\\tdrained\\t%s\\t%s\\t%s\\n' \"$x\" \"${{1:-?}}\" \"${{2:-?}}\"; done"
    );
    s
}

/// Puts servers back in rotation at one haproxy.
pub fn ready_script(socket: &str, servers: &[String]) -> String {
    let mut s = String::from("set -u\n");
    s.push_str(&hapx_fn(socket));
    let _ = writeln!(
        s,
        "[ -S \"$SOCK\" ] || {{ {}; exit 1; }}",
        record::printf(&["fail", "no-socket"], &["\"$SOCK\""])
    );
    for srv in servers {
        let cmd = format!("set server {HAPROXY_BACKEND}/{srv} state ready");
        let _ = writeln!(
            s,
            "hapx {} >/dev/null && {}",
            q(&cmd),
            record::printf(&["ready"], &[&q(srv)])
        );
    }
    s
}

/// Lists the servers a haproxy has in drain (a killed deploy leaves them so).
pub fn drained_script(socket: &str) -> String {
    let mut s = String::from("set -u\n");
    s.push_str(&hapx_fn(socket));
    s.push_str("[ -S \"$SOCK\" ] || exit 0\n");
    let _ = writeln!(
        s,
        "hapx 'show stat' | awk -F, -v b={HAPROXY_BACKEND} '$1==b && $18 ~ /^DRAIN/ {{print \"HACTL\\tdrained\\t\" $2}}'"
    );
    s
}

/// Takes the deploy lock: `mkdir`, then the holder. Prints `lock acquired` or `lock held`
/// with the holder's JSON (base64; empty while the holder is still being written).
pub fn lock_script(stack: &str, holder_json: &[u8]) -> String {
    let mut s = String::from("set -u\numask 077\n");
    let _ = writeln!(s, "L={}", q(&lock_dir(stack)));
    s.push_str("mkdir -p \"$(dirname \"$L\")\" || exit 1\n");
    s.push_str("if mkdir \"$L\" 2>/dev/null; then\n  base64 -d > \"$L/holder.json.new\" ");
    heredoc_b64(&mut s, holder_json);
    s.push_str("  mv -f \"$L/holder.json.new\" \"$L/holder.json\" && printf 'HACTL\\tlock\\tacquired\\n'\nelse\n  printf 'HACTL\\tlock\\theld\\t'; base64 -w0 \"$L/holder.json\" 2>/dev/null; printf '\\n'\nfi\n");
    s
}

/// Releases (or breaks, for a stale lock) the lock only if it still holds `token`.
pub fn unlock_script(stack: &str, token: &str) -> String {
    let mut s = String::from("set -u\n");
    let _ = writeln!(s, "L={}", q(&lock_dir(stack)));
    let _ = writeln!(
        s,
        "if grep -q {} \"$L/holder.json\" 2>/dev/null; then rm -rf \"$L\" && {}; else {}; fi",
        q(&format!("\"token\":\"{token}\"")),
        record::printf(&["lock", "released"], &[]),
        record::printf(&["lock", "not-ours"], &[]),
    );
    s
}

/// Appends one history line.
pub fn history_append_script(stack: &str, line: &[u8]) -> String {
    let mut s = String::from("set -u\numask 077\n");
    let _ = writeln!(s, "A={}", q(&app_dir(stack)));
    s.push_str("mkdir -p \"$A\" && base64 -d >> \"$A/history.jsonl\" ");
    heredoc_b64(&mut s, line);
    s
}

/// Prints the history file.
pub fn history_read_script(stack: &str) -> String {
    format!(
        "cat {}/history.jsonl 2>/dev/null; exit 0\n",
        q(&app_dir(stack))
    )
}

/// Records the image the app runs when nothing is recorded yet (first `hactl up`), with a
/// history line, so a later `hactl rollback` knows the version `up` started.
pub fn seed_image_script(stack: &str, image: &str, history_line: &[u8]) -> String {
    let mut s = String::from("set -u\numask 077\n");
    let _ = writeln!(s, "A={}", q(&app_dir(stack)));
    let _ = writeln!(
        s,
        "mkdir -p \"$A\" || exit 1\n[ -s \"$A/image\" ] && exit 0\nprintf '%s\\n' {} > \"$A/image\" && {} || exit 1",
        q(image),
        record::printf(&["ok", "seed"], &[])
    );
    s.push_str("base64 -d >> \"$A/history.jsonl\" ");
    heredoc_b64(&mut s, history_line);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_scripts_snapshot() {
        let servers = vec!["host2".to_string(), "host3".to_string()];
        insta::assert_snapshot!(format!(
            "{}\n----\n{}\n----\n{}",
            drain_script("/run/haproxy/admin.sock", &servers, 30.0),
            ready_script("/run/haproxy/admin.sock", &servers),
            drained_script("/run/haproxy/admin.sock")
        ));
    }

    #[test]
    fn lock_scripts() {
        let s = lock_script("lab", b"{\"token\":\"t1\"}");
        assert!(s.contains("if mkdir \"$L\" 2>/dev/null"));
        assert!(s.contains("L=/var/lib/hactl/lab/deploy.lock"));
        let u = unlock_script("lab", "t1");
        assert!(u.contains("grep -q '\"token\":\"t1\"'"));
    }

    #[test]
    fn load_script_pipes_the_archive_and_checks_the_name() {
        let s = load_image_script(Runtime::Podman, b"archive-bytes", "localhost/hactl-demo:v2");
        assert!(s.contains("base64 -d <<'HACTL_EOF' | podman load"));
        assert!(!s.contains("archive-bytes"));
        assert!(s.contains("podman image inspect 'localhost/hactl-demo:v2'"));
        crate::onhost::sh::assert_parses("the load script", &s);
    }

    #[test]
    fn history_scripts() {
        let s = history_append_script("lab", b"{\"time\":1}\n");
        assert!(s.contains(">> \"$A/history.jsonl\""));
        assert_eq!(
            history_read_script("lab"),
            "cat /var/lib/hactl/lab/app/history.jsonl 2>/dev/null; exit 0\n"
        );
    }

    #[test]
    fn deploy_state_is_private_from_first_use() {
        for script in [
            seed_image_script("lab", "img", b"{}\n"),
            history_append_script("lab", b"{}\n"),
            lock_script("lab", b"{}"),
        ] {
            assert!(script.starts_with("set -u\numask 077\n"), "{script}");
        }
    }

    #[test]
    fn load_script_starts_the_docker_daemon_first() {
        let load = load_image_script(Runtime::Docker, b"x", "localhost/a:1");
        assert!(load.contains("[ -S /run/docker.sock ] || (umask 022; exec systemctl start docker"));
        assert!(
            load.find("ready || exit 1").expect("ready")
                < load.find("| docker load").expect("load")
        );
        crate::onhost::sh::assert_parses("the docker load script", &load);
    }
}
