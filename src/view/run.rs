//! Human and JSON rendering of a run (`up`, `down`, `heal`): the plan of both layers before
//! the approval, then what the apply did — the cloud layer's outcome and outputs, the host
//! layer as planned again with those outputs and each host's report, the EFS mount step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::run::{Applied, Command, Session};
use crate::plan::Plan;

/// The one JSON document of `up`, `down` and `heal` (`--json`).
#[derive(Serialize)]
pub struct Document<'a> {
    pub plan: &'a Plan,
    #[serde(flatten)]
    pub applied: &'a Applied,
    /// `down`: what the state recorded that AWS no longer has, as `{addr: id}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub not_found: &'a BTreeMap<String, String>,
    /// `heal`: differences `up` would make that are not repairs (left alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_repairs: Option<usize>,
    /// How the wait for the stack to serve ended (absent with `--no-wait` or on failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<&'a crate::engine::serving::Serving>,
}

/// Before `s` changes anything: a plan that destroys data without `--allow-data-loss` is
/// refused ([`Session::refusal`]) before anyone is asked; then, unless `approved`, a plan with
/// changes is confirmed at the terminal ([`super::confirm`]).
pub fn approve(s: &Session, approved: bool) -> miette::Result<()> {
    s.refusal()?;
    if !s.plan.has_changes() || approved {
        return Ok(());
    }
    super::confirm(match s.command {
        Command::Down => "remove these",
        _ => "apply these changes",
    })
}

/// The plan as shown before the approval, with `heal`'s count of what is not a repair.
/// `full_diff` shows every host's diffs; otherwise the compact plan ([`super::compact`]).
pub fn render_planned(s: &Session, full_diff: bool) -> String {
    let mut text = if full_diff {
        super::plan::render_plan(&s.plan, &s.host_order)
    } else {
        super::compact::render_plan(&s.plan, &s.host_order)
    };
    if let Some(n @ 1..) = s.not_repairs {
        let _ = writeln!(
            text,
            "{n} other difference(s) are not repairs: `hactl plan` shows them, `hactl up` applies them."
        );
    }
    text
}

fn host_outcome(failed: bool, changed: bool) -> &'static str {
    match (failed, changed) {
        (true, _) => "\nSome hosts failed: see above. The others were applied.\n",
        (false, true) => "\nApplied.\n",
        (false, false) => "\nNothing to do.\n",
    }
}

/// What the apply did, after the progress lines. `outputs` is the outputs as `hactl outputs`
/// shows them (a cloud stack; empty otherwise).
pub fn render_applied(
    plan: &Plan,
    a: &Applied,
    command: Command,
    not_found: &BTreeMap<String, String>,
    outputs: &str,
    full_diff: bool,
) -> String {
    let mut text = String::new();
    let cloud = !a.outputs.is_null();
    if !cloud {
        text.push_str(&super::plan::render_reports(&a.hosts, plan));
        text.push_str(host_outcome(a.failed(), plan.has_changes()));
        return text;
    }
    for e in &a.state_errors {
        let _ = writeln!(text, "state: {e}");
    }
    if !not_found.is_empty() {
        text.push_str("\nNot found in AWS (recorded in the state, deleted outside hactl?):\n");
        for (addr, id) in not_found {
            let _ = writeln!(text, "  {addr}  {id}");
        }
    }
    let cloud_failed = !a.walked.ok() || !a.state_errors.is_empty();
    let cloud_changed = plan.resources().next().is_some();
    text.push_str(match (cloud_failed, cloud_changed, command) {
        (true, ..) => "\nFailed: see above. Re-run to resume from what exists.\n",
        (false, true, Command::Heal) => "\nHealed.\n",
        (false, true, _) => "\nApplied.\n",
        (false, false, Command::Heal) => "\nNothing to heal.\n",
        _ => "\nNothing to do.\n",
    });
    if command != Command::Down {
        let _ = write!(text, "\nOutputs:\n{outputs}");
    }
    if let (Some(hp), Some(s)) = (&a.host_plan, &a.configured) {
        let order: Vec<String> = s.hosts.iter().map(|h| h.name.clone()).collect();
        let _ = writeln!(text, "\nConfiguring {} instance(s) over SSH:", order.len());
        text.push_str(&if full_diff {
            super::plan::render_plan(hp, &order)
        } else {
            super::compact::render_plan(hp, &order)
        });
        text.push_str(&super::plan::render_reports(&a.hosts, hp));
        let hosts_failed = !hp.failed_hosts.is_empty() || a.hosts.iter().any(|r| !r.ok);
        text.push_str(host_outcome(hosts_failed, hp.has_changes()));
    } else if a.hosts_skipped && !cloud_failed {
        text.push_str("\nHosts: not configured (`--provision-only`), so not waited on to serve.\n");
    }
    if !a.mounts.is_empty() {
        text.push('\n');
        for m in &a.mounts {
            use crate::provider::aws::hosts::MountOutcome as M;
            let line = match &m.mount {
                M::Mounted => "mounted".to_string(),
                M::AlreadyMounted => "already mounted".to_string(),
                M::NotRun(r) => format!("not run: {r}"),
                M::Failed(r) => format!("FAILED: {r}"),
            };
            let _ = writeln!(text, "{}: mount EFS on {}: {line}", m.host, m.path);
        }
    }
    text
}

/// `heal --dry-run` of a cloud stack: the repairs it would make (`pending`), changing nothing.
pub fn show_heal_dry_run(s: &Session, json: bool, pending: bool) -> miette::Result<()> {
    if json {
        return super::print_json(&serde_json::json!({
            "outcome": if pending { "repairs_pending" } else { "no_changes" },
            "plan": &s.plan,
            "not_repairs": s.not_repairs,
        }));
    }
    super::print_out(&render_planned(s, true));
    super::print_out(if pending {
        "\nDry run: nothing was changed.\n"
    } else {
        "\nNothing to heal.\n"
    });
    Ok(())
}
