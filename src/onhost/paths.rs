//! Where hactl keeps things on a host. Every path here is also written in docs/security.md
//! (who may read it) and, for the app, in templates/docker-compose.yml.j2 and nginx.conf.j2
//! through the render context; these functions are the one source of each name.
//!
//! | path | what |
//! |---|---|
//! | `/var/lib/hactl/STACK/` | [`state_dir`]: the manifest, kept originals (`backup/`), root's alone |
//! | `/var/lib/hactl/STACK/manifest.json` | the files and services hactl manages (`plan::hosts::Manifest`) |
//! | `/var/lib/hactl/STACK/app/` | [`app_dir`]: the active slot, the image, the deploy history |
//! | `/var/lib/hactl/STACK/deploy.lock/` | [`lock_dir`]: the deploy lock (one atomic `mkdir`) |
//! | `/etc/hactl/STACK/app-ctl` | [`ctl_path`]: the app's control script |
//! | `/etc/hactl/STACK/docker-compose.yml` | [`compose_path`] |
//! | `/etc/hactl/STACK/compose.env` | [`env_path`]: the app's environment, 0600 |
//! | `/etc/hactl/STACK/app-upstream.conf` | [`upstream_path`]: nginx's slot choice |
//! | `/run/hactl/vrrp-INSTANCE.state` | [`vrrp_state_file`]: the last VRRP transition |

/// Where hactl keeps its per-stack records on a host.
pub fn state_dir(stack: &str) -> String {
    format!("/var/lib/hactl/{stack}")
}

/// The app's state directory on a host (active slot, image, history).
pub fn app_dir(stack: &str) -> String {
    format!("{}/app", state_dir(stack))
}

/// The deploy lock: a directory, so taking it is one atomic `mkdir` (as Kamal does).
pub fn lock_dir(stack: &str) -> String {
    format!("{}/deploy.lock", state_dir(stack))
}

/// The control script `hactl up` renders onto every app host.
pub fn ctl_path(stack: &str) -> String {
    format!("/etc/hactl/{stack}/app-ctl")
}

/// The compose file `hactl up` renders (templates/docker-compose.yml.j2).
pub fn compose_path(stack: &str) -> String {
    format!("/etc/hactl/{stack}/docker-compose.yml")
}

/// The app's environment file (0600): `app.env` from the stack, secrets included. compose
/// hands it to the runtime by path (`env_file:`), so no value is ever on `podman run`'s argv
/// (which every host user sees in `ps`) or in `compose.log`, which logs that argv.
pub fn env_path(stack: &str) -> String {
    format!("/etc/hactl/{stack}/compose.env")
}

/// The nginx include that picks the slot: `set $hactl_app hactl_app_green;`.
pub fn upstream_path(stack: &str) -> String {
    format!("/etc/hactl/{stack}/app-upstream.conf")
}

/// Where the notify hook records the last VRRP transition (`STATE EPOCH`).
pub fn vrrp_state_file(instance: &str) -> String {
    format!("/run/hactl/vrrp-{instance}.state")
}

/// The pid file each known service writes (Debian's defaults, and the lab's stand-in).
pub fn pid_file(service: &str) -> Option<&'static str> {
    match service {
        "nginx" => Some("/run/nginx.pid"),
        "haproxy" => Some("/run/haproxy.pid"),
        "keepalived" => Some("/run/keepalived.pid"),
        _ => None,
    }
}

/// The temporary name a file is written to before it is checked and renamed into place: in
/// the same directory (so the rename is atomic), hidden, and ending in this run's `nonce`
/// (random per run), so a host user cannot plant anything at the name beforehand.
pub fn temp_name(dest: &str, nonce: &str) -> String {
    let name = dest.rsplit_once('/').map_or(dest, |(_, n)| n);
    format!(".{name}.hactl-{nonce}")
}

/// A fresh run nonce for [`temp_name`]: 128 random bits as 32 hex digits.
pub fn nonce() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

/// The unprivileged user a plan reads file contents as (`nobody` on Debian and most Linux
/// distributions).
pub const READER_UID: u32 = 65534;

/// The haproxy backend hactl's template defines (templates/haproxy.cfg.j2).
pub const HAPROXY_BACKEND: &str = "hactl_web";

/// The environment variable that carries replica `i`'s host port into the compose file.
pub fn port_var(i: u16) -> String {
    format!("HACTL_APP_PORT_{}", i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_a_stack() {
        assert_eq!(state_dir("lab"), "/var/lib/hactl/lab");
        assert_eq!(app_dir("lab"), "/var/lib/hactl/lab/app");
        assert_eq!(lock_dir("lab"), "/var/lib/hactl/lab/deploy.lock");
        assert_eq!(ctl_path("lab"), "/etc/hactl/lab/app-ctl");
        assert_eq!(compose_path("lab"), "/etc/hactl/lab/docker-compose.yml");
        assert_eq!(env_path("lab"), "/etc/hactl/lab/compose.env");
        assert_eq!(upstream_path("lab"), "/etc/hactl/lab/app-upstream.conf");
        assert_eq!(vrrp_state_file("VI_1"), "/run/hactl/vrrp-VI_1.state");
        assert_eq!(pid_file("nginx"), Some("/run/nginx.pid"));
        assert_eq!(pid_file("app"), None);
        assert_eq!(port_var(0), "HACTL_APP_PORT_1");
    }

    #[test]
    fn temp_names_are_hidden_beside_the_destination() {
        assert_eq!(
            temp_name("/etc/nginx/nginx.conf", "0123abcd"),
            ".nginx.conf.hactl-0123abcd"
        );
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
