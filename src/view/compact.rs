//! The compact plan `up` shows: a change that is the same on several hosts (same file or
//! service, same action, same reason, same diff) is shown once under the list of those hosts,
//! and a long diff is cut after [`DIFF_LINES`] lines. Three hosts rendered from one template
//! usually differ in a line or two (their own address, their priority), so the full plan
//! repeats every diff once per host; `up --diff` (and `plan`) still show that full plan
//! ([`super::plan::render_plan`]).

use std::fmt::Write as _;

use crate::plan::{Change, Plan};

/// The most lines of one diff the compact plan shows.
pub const DIFF_LINES: usize = 40;

/// The line (and diff) a change shows; two hosts whose changes show the same text share it.
fn entry(c: &Change, full: bool) -> String {
    let mut out = super::plan::change_line(c);
    if let Some(d) = &c.diff {
        let lines: Vec<&str> = d.lines().collect();
        let shown = if full {
            lines.len()
        } else {
            lines.len().min(DIFF_LINES)
        };
        for line in &lines[..shown] {
            let _ = writeln!(out, "      {line}");
        }
        if shown < lines.len() {
            let _ = writeln!(
                out,
                "      … {} more line(s): `--diff` shows them",
                lines.len() - shown
            );
        }
    }
    out
}

/// The plan with each change shown once for all the hosts it is identical on, hosts in
/// stack order; blocks appear in the order of their first host.
pub fn render_plan(plan: &Plan, hosts_in_order: &[String]) -> String {
    // (hosts, entries shown for exactly those hosts), in order of first appearance.
    let mut entries: Vec<(String, Vec<&str>)> = Vec::new();
    let mut out = String::new();
    let mut quiet = Vec::new();
    for host in hosts_in_order {
        if let Some(f) = plan.failed_hosts.iter().find(|f| &f.host == host) {
            let _ = writeln!(out, "{host}: unreachable\n  ! {}", f.error);
            continue;
        }
        let mut any = false;
        for c in plan.for_host(host) {
            any = true;
            let e = entry(c, false);
            match entries.iter_mut().find(|(text, _)| *text == e) {
                Some((_, hs)) => hs.push(host),
                None => entries.push((e, vec![host])),
            }
        }
        if !any {
            quiet.push(host.as_str());
        }
    }
    // Group the entries by the exact set of hosts they apply to.
    let mut blocks: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    for (text, hs) in &entries {
        match blocks.iter_mut().find(|(bh, _)| bh == hs) {
            Some((_, texts)) => texts.push(text),
            None => blocks.push((hs.clone(), vec![text])),
        }
    }
    for (hs, texts) in blocks {
        let _ = writeln!(out, "{}:", hs.join(", "));
        for t in texts {
            out.push_str(t);
        }
    }
    if !quiet.is_empty() {
        let _ = writeln!(out, "{}: no changes", quiet.join(", "));
    }
    for c in plan.changes.iter().filter(|c| c.addr.host().is_none()) {
        out.push_str(&super::plan::resource_line(c));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Addr, Reason};

    fn file(host: &str, path: &str, diff: &str) -> Change {
        Change {
            before: Some("sha256:aaaaaaaaaaaa".into()),
            after: Some("sha256:bbbbbbbbbbbb".into()),
            diff: Some(diff.into()),
            ..Change::new(
                Addr::file(host, path),
                Action::Update,
                Reason::ContentChanged,
            )
        }
    }

    fn reload(host: &str) -> Change {
        Change {
            before: Some("running".into()),
            after: Some("running".into()),
            ..Change::new(
                Addr::service(host, "nginx"),
                Action::Reload,
                Reason::FilesChanged {
                    files: vec!["nginx.conf".into()],
                },
            )
        }
    }

    /// The nginx.conf diff and the reload are the same on three hosts: shown once, under
    /// `host1, host2, host3`; keepalived.conf differs per host (its priority line) and stays
    /// per host; a long diff is cut with a hint to `--diff`.
    #[test]
    fn identical_changes_on_several_hosts_are_shown_once() {
        let nginx = "--- a\n+++ b\n@@ -1 +1 @@\n-listen 81;\n+listen 80;\n";
        let long: String = (0..60).map(|i| format!("+line {i}\n")).collect();
        let mut changes = Vec::new();
        for (h, prio) in [("host1", 150), ("host2", 100), ("host3", 99)] {
            changes.push(file(h, "/etc/nginx/nginx.conf", nginx));
            changes.push(file(
                h,
                "/etc/keepalived/keepalived.conf",
                &format!("@@ -5 +5 @@\n-    priority 1\n+    priority {prio}\n"),
            ));
            changes.push(reload(h));
        }
        changes.push(file("host4", "/etc/haproxy/haproxy.cfg", &long));
        let plan = Plan::new("lab", changes, 4, vec![]);
        let hosts: Vec<String> = ["host1", "host2", "host3", "host4", "host5"]
            .map(String::from)
            .to_vec();
        let text = render_plan(&plan, &hosts);
        assert_eq!(text.matches("-listen 81;").count(), 1, "{text}");
        assert_eq!(text.matches("priority 150").count(), 1, "{text}");
        insta::assert_snapshot!(text);
    }
}
