//! Human rendering of plans and apply reports: Terraform's symbols, one block per host, diffs
//! indented under their file, sensitive files as digests only.

use std::fmt::Write as _;

use crate::plan::{Action, Change, Kind, Plan};
use crate::provider::hosts::HostReport;

/// The plan as a person reads it, hosts in stack order.
pub fn render_plan(plan: &Plan, hosts_in_order: &[String]) -> String {
    let mut out = String::new();
    // The cloud layer first: the hosts are configured after it, with its outputs.
    for c in plan.resources() {
        out.push_str(&resource_line(c));
    }
    for host in hosts_in_order {
        if let Some(f) = plan.failed_hosts.iter().find(|f| &f.host == host) {
            let _ = writeln!(out, "{host}: unreachable\n  ! {}", f.error);
            continue;
        }
        let changes: Vec<_> = plan.for_host(host).collect();
        if changes.is_empty() {
            let _ = writeln!(out, "{host}: no changes");
            continue;
        }
        let _ = writeln!(out, "{host}:");
        for c in changes {
            out.push_str(&change_line(c));
            if let Some(d) = &c.diff {
                for line in d.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let s = plan.summary;
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to delete, {} unchanged.",
        s.create, s.update, s.delete, s.noop
    );
    if !plan.failed_hosts.is_empty() {
        let _ = writeln!(
            out,
            "{} host(s) could not be observed: their changes are unknown.",
            plan.failed_hosts.len()
        );
    }
    out
}

/// The per-host report after an apply.
pub fn render_reports(reports: &[HostReport], plan: &Plan) -> String {
    let mut out = String::new();
    for r in reports {
        if r.ok {
            let mut parts = Vec::new();
            if !r.files.is_empty() {
                parts.push(format!("{} file(s): {}", r.files.len(), r.files.join(", ")));
            }
            if !r.services.is_empty() {
                parts.push(r.services.join(", "));
            }
            let _ = writeln!(out, "{}: ok — {}", r.host, parts.join("; "));
        } else {
            let _ = writeln!(
                out,
                "{}: FAILED — {}",
                r.host,
                r.error.as_deref().unwrap_or("unknown error")
            );
            for l in &r.log {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    for f in &plan.failed_hosts {
        let _ = writeln!(out, "{}: FAILED — {}", f.host, f.error);
    }
    out
}

/// One cloud resource change as a plan line, `  -/+ aws_db_instance.main  (db_name changed:
/// app → app2: replace)`; a change that destroys data says so after it, in red at a terminal
/// (unless `NO_COLOR` is set, <https://no-color.org>).
pub(super) fn resource_line(c: &Change) -> String {
    let mut out = format!("  {} {}  ({})", c.action.symbol(), c.addr, c.reason);
    if let Some(note) = &c.destroys_data {
        if super::stdout_is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            let _ = write!(out, "  \x1b[31m{note}\x1b[0m");
        } else {
            let _ = write!(out, "  {note}");
        }
    }
    out.push('\n');
    out
}

/// One host change as a plan line, `  ~ /etc/nginx/nginx.conf  (content changed)`, with the
/// digests when the content is not shown (a sensitive file; one hactl may not read or diff).
pub(super) fn change_line(c: &Change) -> String {
    let mut out = format!("  {} {}  ({})", c.action.symbol(), c.addr.local(), c.reason);
    if c.sensitive {
        let _ = write!(
            out,
            "  (sensitive) {} → {}",
            c.before.as_deref().unwrap_or("none"),
            c.after.as_deref().unwrap_or("none")
        );
    } else if c.kind() == Kind::Redis
        || (c.kind() == Kind::File && c.action == Action::Update && c.diff.is_none())
    {
        // a redis instance's role before and after; a file whose content hactl may not
        // show (another user's file, a link): the digests
        let _ = write!(
            out,
            "  {} → {}",
            c.before.as_deref().unwrap_or("none"),
            c.after.as_deref().unwrap_or("none")
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Addr, Change, HostFailure, Reason};

    #[test]
    fn plan_rendering() {
        let changes = vec![
            Change {
                before: Some("sha256:aaaaaaaaaaaa".into()),
                after: Some("sha256:bbbbbbbbbbbb".into()),
                diff: Some("--- a\n+++ b\n@@ -1 +1 @@\n-listen 81;\n+listen 80;\n".into()),
                ..Change::new(
                    Addr::file("host1", "/etc/nginx/nginx.conf"),
                    Action::Update,
                    Reason::ContentChanged,
                )
            },
            Change {
                before: Some("sha256:a1b2c3d4e5f6".into()),
                after: Some("sha256:c3d4e5f6a7b8".into()),
                sensitive: true,
                ..Change::new(
                    Addr::file("host1", "/etc/keepalived/keepalived.conf"),
                    Action::Update,
                    Reason::ContentChanged,
                )
            },
            Change {
                before: Some("running".into()),
                after: Some("running".into()),
                ..Change::new(
                    Addr::service("host1", "nginx"),
                    Action::Reload,
                    Reason::FilesChanged {
                        files: vec!["nginx.conf".into()],
                    },
                )
            },
        ];
        let plan = Plan::new(
            "lab",
            changes,
            4,
            vec![HostFailure {
                host: "host3".into(),
                error: "host3: cannot connect to `198.18.0.13`: connection refused".into(),
            }],
        );
        let hosts = vec![
            "host1".to_string(),
            "host2".to_string(),
            "host3".to_string(),
        ];
        insta::assert_snapshot!(render_plan(&plan, &hosts));
        insta::assert_json_snapshot!(plan);
    }
}
