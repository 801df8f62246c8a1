//! Remote commands as data: each function returns the argv of one command a host runs, built
//! from its arguments alone, so a test compares it with the expected list (no SSH, no host),
//! as Kamal's command builders do (`lib/kamal/commands/base.rb`, `test/commands/app_test.rb`).
//! A script writes one into its text with [`super::sh::join`], which quotes every word.

use serde::Serialize;

use super::paths::ctl_path;

/// The real tool that checks a file before it is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// `keepalived -t -f FILE`
    Keepalived,
    /// `nginx -t -q -c FILE`
    Nginx,
    /// `haproxy -c -q -f FILE`
    Haproxy,
}

impl CheckKind {
    /// The binary that does the check.
    pub fn tool(self) -> &'static str {
        match self {
            CheckKind::Keepalived => "keepalived",
            CheckKind::Nginx => "nginx",
            CheckKind::Haproxy => "haproxy",
        }
    }
}

/// The command that checks the file at `path` with the real tool, before it is activated
/// (on a host by the apply script, here by `hactl render --check`). Exit status 0 means the
/// file is valid; anything else (with the tool's stderr) means it must not be activated.
/// Options: keepalived(8) `-t` (config test), nginx(8) `-t -q`, haproxy(1) `-c -q`.
pub fn check(kind: CheckKind, path: &str) -> Vec<String> {
    let args: &[&str] = match kind {
        CheckKind::Keepalived => &["keepalived", "-t", "-f"],
        CheckKind::Nginx => &["nginx", "-t", "-q", "-c"],
        CheckKind::Haproxy => &["haproxy", "-c", "-q", "-f"],
    };
    args.iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(path.to_string()))
        .collect()
}

/// `systemctl VERB SERVICE`.
pub fn systemctl(verb: &str, service: &str) -> Vec<String> {
    vec!["systemctl".into(), verb.into(), service.into()]
}

/// The app's control script with its arguments (`app-ctl deploy green IMAGE`); see
/// [`super::app_ctl`].
pub fn app_ctl(stack: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(ctl_path(stack))
        .chain(args.iter().map(|a| a.to_string()))
        .collect()
}

/// The command that runs `verb` on one of a stack's services. The app is no system unit:
/// hactl runs it with compose through its `app-ctl` script, which takes the same verbs as
/// systemctl.
pub fn service(stack: &str, verb: &str, service: &str) -> Vec<String> {
    if service == "app" {
        return app_ctl(stack, &[verb]);
    }
    systemctl(verb, service)
}

/// Succeeds (status 0, printing nothing) when a stack's service is running: `systemctl
/// is-active --quiet`, or the app's `app-ctl is-active`.
pub fn is_active(stack: &str, service: &str) -> Vec<String> {
    if service == "app" {
        return app_ctl(stack, &["is-active"]);
    }
    vec![
        "systemctl".into(),
        "is-active".into(),
        "--quiet".into(),
        service.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onhost::sh::join;

    #[test]
    fn check_per_tool() {
        assert_eq!(
            check(CheckKind::Keepalived, "/tmp/k.conf"),
            ["keepalived", "-t", "-f", "/tmp/k.conf"]
        );
        assert_eq!(
            check(CheckKind::Nginx, "/tmp/n.conf"),
            ["nginx", "-t", "-q", "-c", "/tmp/n.conf"]
        );
        assert_eq!(
            check(CheckKind::Haproxy, "/tmp/h.cfg"),
            ["haproxy", "-c", "-q", "-f", "/tmp/h.cfg"]
        );
        assert_eq!(
            join(&check(CheckKind::Keepalived, "/etc/a b")),
            "keepalived -t -f '/etc/a b'"
        );
    }

    #[test]
    fn services_go_through_systemctl_and_the_app_through_app_ctl() {
        assert_eq!(
            service("lab", "reload", "nginx"),
            ["systemctl", "reload", "nginx"]
        );
        assert_eq!(
            service("lab", "start", "app"),
            ["/etc/hactl/lab/app-ctl", "start"]
        );
        assert_eq!(
            is_active("lab", "haproxy"),
            ["systemctl", "is-active", "--quiet", "haproxy"]
        );
        assert_eq!(
            is_active("lab", "app"),
            ["/etc/hactl/lab/app-ctl", "is-active"]
        );
        assert_eq!(
            app_ctl("lab", &["deploy", "green", "localhost/hactl-demo:v2"]),
            [
                "/etc/hactl/lab/app-ctl",
                "deploy",
                "green",
                "localhost/hactl-demo:v2"
            ]
        );
    }
}
