//! The app's control script on a host, `app-ctl`, and the call that runs one of its verbs.
//!
//! Each app host gets one control script (rendered with the host's other files by `hactl up`,
//! mode 0700), that knows the stack's compose project, its two slots and its health check.
//! `hactl up` starts and stops the app through it (it stands where `systemctl VERB app`
//! would), and every deploy step is one `app-ctl` call over SSH. Keeping the sequence on the
//! host means a slow link never stretches the window between "new slot healthy" and "nginx
//! switched", and the host's state stays consistent if hactl is killed mid-call:
//!
//! - `$A/active` (the slot nginx serves) and `$A/image` (what it runs) change only together,
//!   after the new slot passed its health gate and nginx accepted the switch;
//! - nginx's slot choice lives in its own include file (`app-upstream.conf`), written
//!   atomically and checked with `nginx -t`, so `hactl up` and deploys never fight over
//!   `nginx.conf`; the compose file takes the image and ports from the environment, so `up`
//!   renders it once and deploys never rewrite it.
//!
//! Its output is [`record`] lines (`rec` is [`record::REC_FN`]); `deploy::exec` reads them.
//! The script is built here, not in `render` or `deploy`, because both need it: `render`
//! writes it onto the host, `deploy` calls its verbs.

use std::fmt::Write as _;

use super::paths::{app_dir, compose_path, ctl_path, port_var, upstream_path};
use super::sh::{join, q};
use super::{cmd, record};

/// The container runtime on the app hosts (`app.runtime` in the stack), which decides the
/// container CLI, the compose command and the project label compose sets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Podman,
}

/// How far the green slot's host ports are from the blue slot's: blue serves replica `i` on
/// `host_port + i`, green on `host_port + 100 + i` (the stack's `app.host_port` documents it).
pub const GREEN_PORT_OFFSET: u16 = 100;

/// Everything `app-ctl` needs, resolved from the stack (`AppParams::from_stack`, in `render`,
/// which is where the stack meets the hosts' files).
#[derive(Debug, Clone, PartialEq)]
pub struct AppParams {
    pub stack: String,
    pub runtime: Runtime,
    pub host_port: u16,
    pub replicas: u16,
    pub health_path: String,
    pub health_interval_s: f64,
    pub health_timeout_s: f64,
    pub healthy_threshold: u32,
    pub health_deadline_s: u64,
    pub stop_grace_s: u64,
    /// nginx fronts the app on this host (so switching means rewriting its include).
    pub nginx: bool,
}

/// The runtime's container CLI (`podman` / `docker`).
pub fn container_cli(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Podman => "podman",
        Runtime::Docker => "docker",
    }
}

/// The label compose puts on a project's containers.
fn project_label(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Podman => "io.podman.compose.project",
        Runtime::Docker => "com.docker.compose.project",
    }
}

/// Shell that makes sure the runtime's daemon answers before a container command. podman has
/// no daemon. Docker's does, and on a host where it is installed but stopped (a fresh lab
/// host, a host after `systemctl stop docker`) every `docker` call fails: start the unit
/// (`docker.service`, Debian's docker.io and Docker's own packages alike) when its socket is
/// missing (with the usual umask 022: app-ctl's own 077 is for hactl's files, not the daemon's).
/// Stopping is left to the operator.
pub fn runtime_ready(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Podman => "",
        Runtime::Docker => {
            "[ -S /run/docker.sock ] || (umask 022; exec systemctl start docker >/dev/null) || { echo 'docker.service is not running and did not start' >&2; return 1; }\n"
        }
    }
}

/// The compose command of a runtime. Docker's Compose v2 plugin (`docker compose`) where it is
/// installed, else the standalone Compose v1 (`docker-compose`), which is all Debian 12's
/// packages offer (docker.io ships no compose plugin). Both label containers with
/// `com.docker.compose.project`.
fn compose_cmd(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Podman => "podman-compose",
        Runtime::Docker => "$DOCKER_COMPOSE",
    }
}

fn secs(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The `app-ctl` script. Verbs:
///
/// - `start` / `reload`: bring the active slot (blue at first) up with the recorded image and
///   gate on its health; `stop`: bring both slots down; `is-active`: the active slot is healthy.
/// - `inspect IMAGE`: records for the deploy (active slot, image, running slots, health,
///   whether IMAGE is present).
/// - `deploy SLOT IMAGE`: start IMAGE in SLOT, gate on health, switch nginx, drain, stop the
///   old slot; on a failed gate the new slot is stopped and nothing else changes.
/// - `down SLOT`: stop one slot (a leftover of a killed deploy).
pub fn ctl_script(p: &AppParams) -> String {
    let mut s = String::new();
    let cli = container_cli(p.runtime);
    let compose = compose_cmd(p.runtime);
    let _ = writeln!(
        s,
        "#!/bin/sh\n# Written by hactl for stack `{}`. Do not edit: `hactl up` overwrites it.\n# The app's compose project in two slots (blue/green) behind nginx; see `hactl deploy`.",
        p.stack
    );
    s.push_str("set -u\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    let _ = writeln!(s, "A={}", q(&app_dir(&p.stack)));
    let _ = writeln!(s, "C={}", q(&compose_path(&p.stack)));
    let _ = writeln!(s, "U={}", q(&upstream_path(&p.stack)));
    let _ = writeln!(s, "STACK={}", q(&p.stack));
    // hactl's own files (image, active slot, compose.log, which logs compose's commands) are
    // root's alone: 0700 directories and 0600 files from their first use. compose itself runs
    // with the usual 022 (see `compose`), so what it creates for the app (bind-mount sources)
    // stays readable to the app's own user.
    s.push_str("umask 077\n[ -d \"$A\" ] || mkdir -p \"$A\" || exit 1\n");
    // only the verbs that change containers start the daemon (compose); queries (inspect,
    // is-active) report what runs without starting anything
    if p.runtime == Runtime::Docker {
        let _ = writeln!(s, "ready() {{\n  {}}}", runtime_ready(p.runtime));
        s.push_str("compose_cmd() {\n  [ -n \"${DOCKER_COMPOSE:-}\" ] && return 0\n  if docker compose version >/dev/null 2>&1; then DOCKER_COMPOSE='docker compose'; else DOCKER_COMPOSE=docker-compose; fi\n}\n");
    } else {
        s.push_str("ready() { :; }\ncompose_cmd() { :; }\n");
    }
    s.push_str(record::REC_FN);
    s.push_str("now_ms() { date +%s%3N; }\n");
    s.push_str("active() { if [ \"$(cat \"$A/active\" 2>/dev/null)\" = green ]; then echo green; else echo blue; fi; }\n");
    s.push_str("image() { cat \"$A/image\" 2>/dev/null; }\n");
    // Ports of replica i per slot.
    s.push_str("port() { if [ \"$1\" = green ]; then echo $((");
    let _ = writeln!(
        s,
        "{} + $2)); else echo $(({} + $2)); fi; }}",
        u32::from(p.host_port) + u32::from(GREEN_PORT_OFFSET),
        p.host_port
    );
    // compose SLOT IMAGE ARGS...: the slot's project with its image and ports.
    // (sh has no locals: helpers use prefixed names so they never clobber the caller's)
    s.push_str(
        "compose() {
  ready || return 1
  compose_cmd
  c_sl=$1; c_im=$2; shift 2
",
    );
    let _ = write!(
        s,
        "  (umask 022; exec env HACTL_APP_IMAGE=\"$c_im\" HACTL_SLOT=\"$c_sl\""
    );
    for i in 0..p.replicas {
        let _ = write!(s, " {}=\"$(port \"$c_sl\" {i})\"", port_var(i));
    }
    let _ = writeln!(
        s,
        " {compose} -p \"hactl-$STACK-$c_sl\" -f \"$C\" \"$@\")\n}}"
    );
    // healthy SLOT: every replica answers 2xx once. The path is the stack's: quoted as its
    // own shell word (validation allows only URL path characters, this is the second fence).
    let _ = writeln!(
        s,
        "healthy() {{\n  h_i=0\n  while [ $h_i -lt {n} ]; do\n    curl -fsS -m {t} -o /dev/null \"http://127.0.0.1:$(port \"$1\" $h_i)\"{path} 2>/dev/null || return 1\n    h_i=$((h_i + 1))\n  done\n}}",
        n = p.replicas,
        t = secs(p.health_timeout_s),
        path = q(&p.health_path)
    );
    // gate SLOT: `healthy_threshold` passes in a row before the deadline.
    let _ = writeln!(
        s,
        "gate() {{\n  g_ok=0; g_end=$(( $(date +%s) + {deadline} ))\n  while :; do\n    if healthy \"$1\"; then g_ok=$((g_ok + 1)); [ $g_ok -ge {th} ] && return 0; else g_ok=0; fi\n    [ \"$(date +%s)\" -ge $g_end ] && return 1\n    sleep {iv}\n  done\n}}",
        deadline = p.health_deadline_s,
        th = p.healthy_threshold,
        iv = secs(p.health_interval_s)
    );
    let _ = writeln!(
        s,
        "running() {{\n  for r_sl in blue green; do\n    [ -n \"$({cli} ps -q --filter label={label}=hactl-$STACK-$r_sl 2>/dev/null)\" ] && echo $r_sl\n  done\n}}",
        label = project_label(p.runtime)
    );
    // point nginx at SLOT: atomic include, nginx -t, graceful reload; undo on failure.
    if p.nginx {
        s.push_str(concat!(
            "point() {\n",
            "  want=\"set \\$hactl_app hactl_app_$1;\"\n",
            "  [ \"$(cat \"$U\" 2>/dev/null)\" = \"$want\" ] && return 0\n",
            "  [ -f \"$U\" ] && cp -p \"$U\" \"$U.prev\"\n",
            "  printf '%s\\n' \"$want\" > \"$U.new\" && mv -f \"$U.new\" \"$U\" || return 1\n",
            "  systemctl is-active --quiet nginx >/dev/null 2>&1 || return 0\n",
            "  if ! out=$(nginx -t -q 2>&1); then\n",
            "    if [ -f \"$U.prev\" ]; then mv -f \"$U.prev\" \"$U\"; else rm -f \"$U\"; fi\n",
            "    printf '%s\\n' \"$out\" | sed 's/^/HACTL\\tlog\\t/'; return 1\n",
            "  fi\n",
            "  systemctl reload nginx || return 1\n",
            "}\n",
            // old workers finish their in-flight requests, then exit
            "drain_nginx() {\n",
            "  d_end=$(( $(date +%s) + $1 ))\n",
            "  sleep 0.2\n",
            "  while pgrep -f 'nginx: worker process is shutting down' >/dev/null 2>&1; do\n",
            "    [ \"$(date +%s)\" -ge $d_end ] && return 1\n",
            "    sleep 0.1\n",
            "  done\n",
            "}\n",
        ));
    } else {
        s.push_str("point() { :; }\ndrain_nginx() { :; }\n");
    }
    let grace = p.stop_grace_s;
    let _ = writeln!(s, "GRACE={grace}");
    s.push_str(concat!(
        "cmd=${1:-}\n",
        "case $cmd in\n",
        "start|reload|restart)\n",
        "  sl=$(active); im=$(image)\n",
        "  [ -n \"$im\" ] || { echo \"app-ctl: no image recorded in $A/image (hactl deploy or hactl up writes it)\" >&2; exit 2; }\n",
        "  compose \"$sl\" \"$im\" up -d >\"$A/compose.log\" 2>&1 || { cat \"$A/compose.log\" >&2; exit 1; }\n",
        "  gate \"$sl\" || { echo \"app-ctl: slot $sl ($im) did not become healthy\" >&2; exit 1; }\n",
        "  [ -f \"$A/active\" ] || echo \"$sl\" > \"$A/active\"\n",
        "  point \"$sl\" ;;\n",
        "stop)\n",
        "  for s_sl in blue green; do compose \"$s_sl\" \"$(image)\" down -t \"$GRACE\" >>\"$A/compose.log\" 2>&1; done; : ;;\n",
        "is-active)\n",
        "  [ -f \"$A/active\" ] && healthy \"$(active)\" ;;\n",
        "inspect)\n",
        "  [ -f \"$A/active\" ] && rec app active \"$(active)\"\n",
        "  rec app image \"$(image)\"\n",
        "  for sl in $(running); do rec app running \"$sl\"; done\n",
        "  if [ -f \"$A/active\" ] && healthy \"$(active)\"; then rec app healthy yes; else rec app healthy no; fi\n",
    ));
    let _ = writeln!(
        s,
        "  if [ -n \"${{2:-}}\" ] && {cli} image inspect \"$2\" >/dev/null 2>&1; then rec app has-image yes; else rec app has-image no; fi ;;"
    );
    s.push_str(concat!(
        "deploy)\n",
        "  sl=$2; im=$3; t0=$(now_ms); old=\"\"\n",
        "  [ -f \"$A/active\" ] && old=$(active)\n",
        "  [ \"$old\" = \"$sl\" ] && { rec fail deploy \"slot $sl is the active one\"; exit 2; }\n",
        "  if ! compose \"$sl\" \"$im\" up -d >\"$A/compose.log\" 2>&1; then\n",
        "    sed 's/^/HACTL\\tlog\\t/' \"$A/compose.log\"; compose \"$sl\" \"$im\" down -t 1 >/dev/null 2>&1\n",
        "    rec fail start \"$sl\"; exit 4\n",
        "  fi\n",
        "  rec step started \"$(( $(now_ms) - t0 ))\"\n",
        "  if ! gate \"$sl\"; then\n",
        "    rec step unhealthy \"$(( $(now_ms) - t0 ))\"\n",
        "    compose \"$sl\" \"$im\" down -t 1 >/dev/null 2>&1\n",
        "    rec step stopped \"$(( $(now_ms) - t0 ))\"\n",
        "    rec fail health \"$sl\"; exit 5\n",
        "  fi\n",
        "  rec step healthy \"$(( $(now_ms) - t0 ))\"\n",
        "  if ! point \"$sl\"; then compose \"$sl\" \"$im\" down -t 1 >/dev/null 2>&1; rec fail switch \"$sl\"; exit 6; fi\n",
        "  printf '%s\\n' \"$im\" > \"$A/image.new\" && printf '%s\\n' \"$sl\" > \"$A/active.new\" && mv -f \"$A/image.new\" \"$A/image\" && mv -f \"$A/active.new\" \"$A/active\"\n",
        "  rec step switched \"$(( $(now_ms) - t0 ))\"\n",
        "  drain_nginx \"$GRACE\" || rec log \"old nginx workers still busy after ${GRACE}s\"\n",
        "  rec step drained \"$(( $(now_ms) - t0 ))\"\n",
        "  if [ -n \"$old\" ]; then compose \"$old\" \"$im\" down -t \"$GRACE\" >>\"$A/compose.log\" 2>&1 || rec log \"stopping slot $old failed\"; fi\n",
        "  rec step stopped \"$(( $(now_ms) - t0 ))\"\n",
        "  rec ok deploy \"$sl\" ;;\n",
        "down)\n",
        "  [ \"$2\" = \"$(active)\" ] && [ -f \"$A/active\" ] && { rec fail down \"slot $2 is the active one\"; exit 2; }\n",
        "  compose \"$2\" \"$(image)\" down -t \"$GRACE\" >>\"$A/compose.log\" 2>&1 && rec ok down \"$2\" ;;\n",
        "*) echo \"usage: app-ctl start|stop|reload|is-active|inspect [IMAGE]|deploy SLOT IMAGE|down SLOT\" >&2; exit 2 ;;\n",
        "esac\n",
    ));
    s
}

/// Runs one `app-ctl` verb (the deploy's per-host call).
pub fn ctl_call(stack: &str, args: &[&str]) -> String {
    let mut s = String::from("set -u\n");
    let ctl = ctl_path(stack);
    let _ = writeln!(
        s,
        "[ -x {c} ] || {{ {}; exit 7; }}",
        record::printf(&["fail", "no-ctl"], &[&q(&ctl)]),
        c = q(&ctl)
    );
    let _ = writeln!(s, "{}", join(&cmd::app_ctl(stack, args)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AppParams {
        AppParams {
            stack: "lab".into(),
            runtime: Runtime::Podman,
            host_port: 8000,
            replicas: 2,
            health_path: "/healthz".into(),
            health_interval_s: 0.5,
            health_timeout_s: 1.0,
            healthy_threshold: 2,
            health_deadline_s: 10,
            stop_grace_s: 5,
            nginx: true,
        }
    }

    #[test]
    fn ctl_script_snapshot() {
        insta::assert_snapshot!(ctl_script(&params()));
    }

    #[test]
    fn ctl_script_docker_snapshot() {
        insta::assert_snapshot!(ctl_script(&AppParams {
            runtime: Runtime::Docker,
            ..params()
        }));
    }

    #[test]
    fn app_state_is_private_from_first_use() {
        let s = ctl_script(&params());
        // hactl's files under umask 077 (compose.log logs compose's commands); compose itself
        // with 022, in a subshell
        assert!(s.contains("umask 077\n[ -d \"$A\" ] || mkdir -p \"$A\" || exit 1\n"));
        assert!(s.contains("(umask 022; exec env HACTL_APP_IMAGE="));
    }

    #[test]
    fn ctl_script_docker_without_nginx() {
        let p = AppParams {
            runtime: Runtime::Docker,
            nginx: false,
            replicas: 1,
            ..params()
        };
        let s = ctl_script(&p);
        assert!(s.contains("$DOCKER_COMPOSE -p \"hactl-$STACK-$c_sl\""));
        // the v2 plugin where it exists, else Debian 12's docker-compose (v1)
        assert!(s.contains(
            "if docker compose version >/dev/null 2>&1; then DOCKER_COMPOSE='docker compose'; else DOCKER_COMPOSE=docker-compose; fi\n"
        ));
        // compose (the verbs that change containers) starts the daemon when its socket is
        // missing; queries do not
        assert!(s.contains(
            "ready() {\n  [ -S /run/docker.sock ] || (umask 022; exec systemctl start docker >/dev/null)"
        ));
        assert!(s.contains("compose() {\n  ready || return 1\n  compose_cmd\n"));
        crate::onhost::sh::assert_parses("the docker app-ctl", &s);
        assert!(s.contains("label=com.docker.compose.project="));
        assert!(s.contains("point() { :; }"));
        assert!(!s.contains("HACTL_APP_PORT_2"));
    }

    #[test]
    fn slot_ports() {
        // blue replica i on host_port + i, green on host_port + 100 + i
        let s = ctl_script(&params());
        assert!(s.contains(
            "port() { if [ \"$1\" = green ]; then echo $((8100 + $2)); else echo $((8000 + $2)); fi; }\n"
        ));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{}port green 1; port blue 0",
                s.lines()
                    .find(|l| l.starts_with("port()"))
                    .unwrap_or_default()
                    .to_owned()
                    + "\n"
            ))
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "8101\n8000\n");
    }

    #[test]
    fn ctl_script_is_valid_sh() {
        crate::onhost::sh::assert_parses("app-ctl", &ctl_script(&params()));
    }

    #[test]
    fn call_quotes_arguments() {
        assert_eq!(
            ctl_call("lab", &["deploy", "green", "localhost/hactl-demo:v2"]),
            "set -u\n[ -x /etc/hactl/lab/app-ctl ] || { printf 'HACTL\\tfail\\tno-ctl\\t%s\\n' /etc/hactl/lab/app-ctl; exit 7; }\n/etc/hactl/lab/app-ctl deploy green 'localhost/hactl-demo:v2'\n"
        );
        assert!(ctl_call("lab", &["inspect", "a b;rm"]).contains("'a b;rm'"));
    }
}
