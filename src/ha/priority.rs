//! keepalived's priority arithmetic, worked out for every single-failure case.
//!
//! The rules (keepalived.conf(5), `vrrp_script` / `track_script`): a check with a positive
//! weight adds it to the base priority while it passes; a check with a negative weight
//! subtracts it while it fails; a failing check of weight 0 puts the instance in FAULT (it
//! gives up the VIP and takes no part in elections). The effective priority is clamped to
//! 1–254. The eligible host with the highest effective priority holds the VIP; a tie goes to
//! the higher primary IP address (RFC 5798 §6.4.3). With `nopreempt` a backup never takes the
//! VIP from a live master, whatever the priorities say, so only FAULT or the master going away
//! moves it; `preempt_delay` delays a preemption by that long.
//!
//! [`explain`] evaluates the healthy case, "every check failing everywhere", each host's
//! checks failing (one check at a time when there are several), each host down, and any extra
//! cases the caller asks for, and collects the warnings an operator should read before
//! trusting the VIP.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::stack::Stack;

/// keepalived clamps effective priorities to this range (255 is the address owner's).
pub const MIN_PRIORITY: i64 = 1;
pub const MAX_PRIORITY: i64 = 254;

/// One VRRP member as the election sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
    pub base: i64,
}

/// One tracked check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub weight: i64,
    /// Seconds between runs.
    pub interval_s: f64,
    pub fall: i64,
    pub rise: i64,
}

/// Everything the election depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub instance: String,
    pub vip: String,
    pub vrrp_version: u8,
    pub advert_int_s: f64,
    pub preempt: bool,
    pub preempt_delay_s: Option<f64>,
    pub members: Vec<Member>,
    pub checks: Vec<Check>,
}

impl Model {
    /// The election model of a validated stack; `None` when it has no VIP.
    pub fn from_stack(stack: &Stack) -> Option<Model> {
        let spec = stack.file.vip.as_ref()?;
        let vip = stack.vip.as_ref()?;
        Some(Model {
            instance: spec.instance.clone(),
            vip: format!("{}/{}", vip.address, vip.prefix),
            vrrp_version: vip.vrrp_version,
            advert_int_s: spec.advert_int.value.as_secs_f64(),
            preempt: spec.preempt,
            preempt_delay_s: spec.preempt_delay.as_ref().map(|d| d.value.as_secs_f64()),
            members: stack
                .hosts
                .iter()
                .filter(|h| h.has_role("vip"))
                .map(|h| Member {
                    name: h.name.clone(),
                    address: h.address,
                    base: i64::from(h.priority),
                })
                .collect(),
            checks: spec
                .checks
                .iter()
                .map(|c| Check {
                    name: c.name.value.clone(),
                    weight: c.weight.value,
                    interval_s: c.interval.value.as_secs_f64(),
                    fall: c.fall.value,
                    rise: c.rise.value,
                })
                .collect(),
        })
    }
}

/// A host's standing in one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "priority", rename_all = "lowercase")]
pub enum Standing {
    /// Running, with this effective priority.
    Up(i64),
    /// A weight-0 check fails: FAULT, out of the election.
    Fault,
    /// The host (or its keepalived) is gone.
    Down,
}

/// What fails in one case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Hosts that are down.
    pub down: BTreeSet<String>,
    /// (host, check) pairs that fail.
    pub failing: BTreeSet<(String, String)>,
}

impl Failure {
    /// Every check of each named host fails.
    pub fn checks_of(model: &Model, hosts: &[String]) -> Failure {
        let mut f = Failure::default();
        for h in hosts {
            for c in &model.checks {
                f.failing.insert((h.clone(), c.name.clone()));
            }
        }
        f
    }
}

/// One evaluated case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub label: String,
    #[serde(skip)]
    pub failure: Failure,
    /// Per member, in stack order.
    pub standings: Vec<(String, Standing)>,
    pub holder: Option<String>,
    /// The holder differs from the all-healthy holder.
    pub moved: bool,
    /// Two eligible hosts shared the top priority: the address decided.
    pub tie: bool,
    /// Why the holder is what it is, when it is not simply "highest priority".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub model: Model,
    pub cases: Vec<Case>,
    pub warnings: Vec<String>,
}

/// The effective priority of one member under a failure.
pub fn standing(model: &Model, member: &Member, failure: &Failure) -> Standing {
    if failure.down.contains(&member.name) {
        return Standing::Down;
    }
    let mut p = member.base;
    for c in &model.checks {
        let fails = failure
            .failing
            .contains(&(member.name.clone(), c.name.clone()));
        match (fails, c.weight) {
            (true, 0) => return Standing::Fault,
            (false, w) if w > 0 => p += w,
            (true, w) if w < 0 => p += w,
            _ => {}
        }
    }
    Standing::Up(p.clamp(MIN_PRIORITY, MAX_PRIORITY))
}

/// Who holds the VIP under `failure`, given who held it before (for `nopreempt`).
fn elect(model: &Model, failure: &Failure, previous: Option<&str>) -> Case {
    let standings: Vec<(String, Standing)> = model
        .members
        .iter()
        .map(|m| (m.name.clone(), standing(model, m, failure)))
        .collect();
    let eligible: Vec<(&Member, i64)> = model
        .members
        .iter()
        .zip(&standings)
        .filter_map(|(m, (_, s))| match s {
            Standing::Up(p) => Some((m, *p)),
            _ => None,
        })
        .collect();
    let top = eligible.iter().map(|(_, p)| *p).max();
    let best = eligible
        .iter()
        .filter(|(_, p)| Some(*p) == top)
        .max_by_key(|(m, _)| m.address)
        .map(|(m, _)| m.name.clone());
    let tie = eligible.iter().filter(|(_, p)| Some(*p) == top).count() > 1;
    let mut note = None;
    let mut holder = best.clone();
    if !model.preempt {
        if let Some(prev) = previous {
            let prev_alive = eligible.iter().any(|(m, _)| m.name == prev);
            if prev_alive && best.as_deref() != Some(prev) {
                note = Some(format!(
                    "nopreempt: {prev} keeps the VIP although {} has a higher priority",
                    best.as_deref().unwrap_or("another host")
                ));
                holder = Some(prev.to_string());
            }
        }
    } else if let (Some(delay), Some(prev)) = (model.preempt_delay_s, previous) {
        let prev_alive = eligible.iter().any(|(m, _)| m.name == prev);
        if prev_alive && best.as_deref() != Some(prev) {
            note = Some(format!(
                "preempt_delay: {} takes over {} after {prev}'s priority drops",
                best.as_deref().unwrap_or("another host"),
                secs(delay)
            ));
        }
    }
    if tie && note.is_none() {
        note = Some(format!(
            "tie at {}: the higher address wins",
            top.unwrap_or_default()
        ));
    }
    Case {
        label: String::new(),
        failure: failure.clone(),
        standings,
        moved: false,
        holder,
        tie,
        note,
    }
}

/// Seconds as keepalived's docs write them: `1s`, `0.1s`.
pub fn secs(s: f64) -> String {
    let r = (s * 1000.0).round() / 1000.0;
    format!("{r}s")
}

fn evaluate(model: &Model, label: String, failure: Failure, healthy: Option<&str>) -> Case {
    let mut c = elect(model, &failure, healthy);
    c.label = label;
    c.moved = c.holder.as_deref() != healthy;
    c
}

/// Evaluates the standard cases plus `extra` (label, failure) and collects warnings.
pub fn explain(model: &Model, extra: Vec<(String, Failure)>) -> Explanation {
    let mut healthy_case = evaluate(model, "all healthy".into(), Failure::default(), None);
    healthy_case.moved = false;
    let healthy = healthy_case.holder.clone();
    let h = healthy.as_deref();
    let mut cases = vec![healthy_case];
    let names: Vec<String> = model.members.iter().map(|m| m.name.clone()).collect();
    let mut warnings = Vec::new();

    if !model.checks.is_empty() {
        cases.push(evaluate(
            model,
            "every check failing".into(),
            Failure::checks_of(model, &names),
            h,
        ));
    }
    for m in &model.members {
        if model.checks.len() > 1 {
            for c in &model.checks {
                let mut f = Failure::default();
                f.failing.insert((m.name.clone(), c.name.clone()));
                cases.push(evaluate(
                    model,
                    format!("{}: {} failing", m.name, c.name),
                    f,
                    h,
                ));
            }
        }
        if !model.checks.is_empty() {
            let label = if model.checks.len() == 1 {
                format!("{}: {} failing", m.name, model.checks[0].name)
            } else {
                format!("{}: all checks failing", m.name)
            };
            cases.push(evaluate(
                model,
                label,
                Failure::checks_of(model, std::slice::from_ref(&m.name)),
                h,
            ));
        }
    }
    for m in &model.members {
        let mut f = Failure::default();
        f.down.insert(m.name.clone());
        cases.push(evaluate(model, format!("{} down", m.name), f, h));
    }
    for (label, f) in extra {
        cases.push(evaluate(model, label, f, h));
    }

    // Warnings, in the order an operator should read them.
    if model.members.len() < 2 {
        warnings.push(format!(
            "only {} VRRP member(s): there is nowhere for the VIP to go",
            model.members.len()
        ));
    }
    let mut tied = BTreeSet::new();
    for c in &cases {
        if c.tie && tied.insert(c.label.clone()) {
            warnings.push(format!(
                "tie in case `{}`: two hosts share the top priority, so the higher address \
                 decides; give each host a distinct priority",
                c.label
            ));
        }
    }
    if let Some(holder) = h {
        for c in &cases {
            let holder_fails = c.failure.failing.iter().any(|(host, _)| host == holder);
            let only_holder = c.failure.failing.iter().all(|(host, _)| host == holder)
                && c.failure.down.is_empty();
            if holder_fails && only_holder && !c.moved {
                let why = if !model.preempt {
                    "with `nopreempt` a lower priority never hands the VIP over; only FAULT \
                     (a weight-0 check) or the master going away does"
                        .to_string()
                } else {
                    let eff = c
                        .standings
                        .iter()
                        .find(|(n, _)| n == holder)
                        .map(|(_, s)| *s);
                    let runner = c
                        .standings
                        .iter()
                        .filter(|(n, _)| n != holder)
                        .filter_map(|(n, s)| match s {
                            Standing::Up(p) => Some((n.clone(), *p)),
                            _ => None,
                        })
                        .max_by_key(|(_, p)| *p);
                    match (eff, runner) {
                        (Some(Standing::Up(p)), Some((n, q))) => format!(
                            "{holder} still has {p}, not below {n}'s {q}: the weight is too small \
                             to move the VIP"
                        ),
                        _ => "the weight is too small to move the VIP".to_string(),
                    }
                };
                warnings.push(format!("`{}` moves nothing: {why}", c.label));
            }
        }
    }
    if model.preempt {
        let flappy: Vec<&Check> = model
            .checks
            .iter()
            .filter(|c| c.weight != 0 && (c.fall < 2 || c.rise < 2))
            .collect();
        if !flappy.is_empty() && model.preempt_delay_s.is_none() {
            warnings.push(format!(
                "preemption flapping risk: {} change(s) the priority after a single result \
                 (fall/rise 1) and preemption is on, so a check that flaps moves the VIP away and \
                 back each time (two outages per flap); raise `rise` or set `preempt_delay`",
                flappy
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if model.members.len() > 1 && model.preempt_delay_s.is_none() {
            warnings.push(
                "preempt is on: when the failed host recovers the VIP moves back to it \
                 (failback: a second, usually shorter outage); set `preempt: false` to stay put"
                    .into(),
            );
        }
        if let Some(d) = model.preempt_delay_s {
            warnings.push(format!(
                "preempt_delay {}: a higher-priority host waits that long after startup or after \
                 seeing a lower-priority master before it takes the VIP; check-based failovers \
                 are that much slower, host-down failovers are not",
                secs(d)
            ));
        }
    } else {
        warnings.push(
            "nopreempt: the VIP stays where it is until its holder goes away or enters FAULT; \
             check weights only decide the first election and who takes over"
                .into(),
        );
        if model.preempt_delay_s.is_some() {
            warnings.push("preempt_delay has no effect with nopreempt".into());
        }
    }
    for c in &model.checks {
        if c.weight == 0 {
            warnings.push(format!(
                "check `{}` has weight 0: when it fails the host enters FAULT and drops out \
                 whatever its priority",
                c.name
            ));
        }
    }
    Explanation {
        model: model.clone(),
        cases,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(bases: &[(&str, &str, i64)], weight: i64, preempt: bool) -> Model {
        Model {
            instance: "VI_1".into(),
            vip: "10.0.0.100/24".into(),
            vrrp_version: 2,
            advert_int_s: 1.0,
            preempt,
            preempt_delay_s: None,
            members: bases
                .iter()
                .map(|(n, a, b)| Member {
                    name: n.to_string(),
                    address: a.parse().expect("address"),
                    base: *b,
                })
                .collect(),
            checks: vec![Check {
                name: "nginx".into(),
                weight,
                interval_s: 2.0,
                fall: 2,
                rise: 2,
            }],
        }
    }

    fn eff(c: &Case) -> Vec<Standing> {
        c.standings.iter().map(|(_, s)| *s).collect()
    }

    #[test]
    fn seed_004_three_nodes() {
        let m = model(
            &[
                ("n1", "10.0.0.1", 50),
                ("n2", "10.0.0.2", 1),
                ("n3", "10.0.0.3", 2),
            ],
            100,
            true,
        );
        let e = explain(
            &m,
            vec![(
                "n1 and n3 failing".into(),
                Failure::checks_of(&m, &["n1".into(), "n3".into()]),
            )],
        );
        let by = |l: &str| e.cases.iter().find(|c| c.label == l).expect(l);
        let all_fail = by("every check failing");
        assert_eq!(
            eff(all_fail),
            vec![Standing::Up(50), Standing::Up(1), Standing::Up(2)]
        );
        assert_eq!(all_fail.holder.as_deref(), Some("n1"));
        let ok = by("all healthy");
        assert_eq!(
            eff(ok),
            vec![Standing::Up(150), Standing::Up(101), Standing::Up(102)]
        );
        assert_eq!(ok.holder.as_deref(), Some("n1"));
        let n1 = by("n1: nginx failing");
        assert_eq!(
            eff(n1),
            vec![Standing::Up(50), Standing::Up(101), Standing::Up(102)]
        );
        assert_eq!(n1.holder.as_deref(), Some("n3"));
        let two = by("n1 and n3 failing");
        assert_eq!(
            eff(two),
            vec![Standing::Up(50), Standing::Up(101), Standing::Up(2)]
        );
        assert_eq!(two.holder.as_deref(), Some("n2"));
    }

    #[test]
    fn ties_go_to_the_higher_address() {
        let m = model(
            &[("a", "10.0.0.9", 100), ("b", "10.0.0.10", 100)],
            -10,
            true,
        );
        let e = explain(&m, vec![]);
        assert_eq!(e.cases[0].holder.as_deref(), Some("b"));
        assert!(e.cases[0].tie);
        assert!(e
            .warnings
            .iter()
            .any(|w| w.starts_with("tie in case `all healthy`")));
    }

    #[test]
    fn small_weight_moves_nothing() {
        let m = model(&[("a", "10.0.0.1", 150), ("b", "10.0.0.2", 100)], -10, true);
        let e = explain(&m, vec![]);
        let c = e
            .cases
            .iter()
            .find(|c| c.label == "a: nginx failing")
            .expect("case");
        assert_eq!(c.holder.as_deref(), Some("a"));
        assert!(!c.moved);
        assert!(e
            .warnings
            .iter()
            .any(|w| w.contains("a still has 140, not below b's 100")));
    }

    #[test]
    fn weight_zero_is_fault_and_clamps_apply() {
        let m = model(&[("a", "10.0.0.1", 150), ("b", "10.0.0.2", 100)], 0, true);
        let mut f = Failure::default();
        f.failing.insert(("a".into(), "nginx".into()));
        assert_eq!(standing(&m, &m.members[0], &f), Standing::Fault);
        let m = model(&[("a", "10.0.0.1", 200), ("b", "10.0.0.2", 5)], 100, true);
        assert_eq!(
            standing(&m, &m.members[0], &Failure::default()),
            Standing::Up(254)
        );
        let m = model(&[("a", "10.0.0.1", 200), ("b", "10.0.0.2", 5)], -100, true);
        let f = Failure::checks_of(&m, &["b".into()]);
        assert_eq!(standing(&m, &m.members[1], &f), Standing::Up(1));
    }

    #[test]
    fn nopreempt_keeps_the_live_master() {
        let m = model(
            &[("a", "10.0.0.1", 150), ("b", "10.0.0.2", 100)],
            -100,
            false,
        );
        let e = explain(&m, vec![]);
        let c = e
            .cases
            .iter()
            .find(|c| c.label == "a: nginx failing")
            .expect("case");
        assert_eq!(c.holder.as_deref(), Some("a"));
        assert!(c.note.as_deref().unwrap_or("").starts_with("nopreempt"));
        let d = e.cases.iter().find(|c| c.label == "a down").expect("case");
        assert_eq!(d.holder.as_deref(), Some("b"));
    }

    #[test]
    fn flapping_warning_needs_preempt_and_single_results() {
        let mut m = model(
            &[("a", "10.0.0.1", 150), ("b", "10.0.0.2", 100)],
            -100,
            true,
        );
        m.checks[0].rise = 1;
        let e = explain(&m, vec![]);
        assert!(e.warnings.iter().any(|w| w.contains("flapping")));
        m.preempt_delay_s = Some(5.0);
        let e = explain(&m, vec![]);
        assert!(!e.warnings.iter().any(|w| w.contains("flapping")));
        assert!(e.warnings.iter().any(|w| w.starts_with("preempt_delay 5s")));
    }
}
