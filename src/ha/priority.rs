//! keepalived's priority arithmetic and the VRRP state machine, worked out for every
//! single-failure case.
//!
//! The arithmetic (keepalived.conf(5), `vrrp_script` / `track_script`): a check with a positive
//! weight adds it to the base priority while it passes; a check with a negative weight
//! subtracts it while it fails; a failing check of weight 0 puts the instance in FAULT (it
//! gives up the VIP and takes no part in elections). The effective priority is clamped to
//! 1–254.
//!
//! Who holds the VIP is not simply "the highest priority": it follows the state machine of
//! RFC 5798 §6.4, so it depends on who holds it going in ([`settle`]):
//!
//! - a BACKUP that hears an advert of priority **≥** its own resets its Master_Down_Timer and
//!   stays BACKUP (§6.4.2), so it never takes over from a master of the same effective
//!   priority, whatever the addresses;
//! - it takes over only when it hears no master for Master_Down_Interval, or, with preemption
//!   on, when every master it hears advertises a **lower** priority (after `preempt_delay`,
//!   when set); with `nopreempt` only the first;
//! - a MASTER that hears a higher priority, or the same priority from a higher primary
//!   address, becomes BACKUP (§6.4.3): the address breaks ties between two masters only (two
//!   backups whose timers run out together, or two groups that start hearing each other).
//!
//! Adverts reach only the members the hearing graph says ([`super::hearing`]): each connected
//! group runs its own election, and a group whose members do not all hear each other can have
//! two masters. Every case lists the holders per group.
//!
//! [`explain`] evaluates the healthy case (keepalived starting with every check passing), then
//! from its holders "every check failing everywhere", each host's checks failing (one check at
//! a time when there are several), each host down, and any extra cases the caller asks for, and
//! collects the warnings from the same evaluation: `validate`, `plan`, `up` and `explain` print
//! them ([`Warning::risk`] ones everywhere, notes in `explain` only).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use super::hearing::Graph;
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
    /// Who hears whom; its names are `members`' names in the same order.
    pub hearing: Graph,
}

impl Model {
    /// The election model of a validated stack; `None` when it has no VIP.
    pub fn from_stack(stack: &Stack) -> Option<Model> {
        let spec = stack.file.vip.as_ref()?;
        let vip = stack.vip.as_ref()?;
        let hearing = super::hearing::from_stack(stack)?;
        let members: Vec<Member> = hearing
            .names
            .iter()
            .filter_map(|n| stack.host(n))
            .map(|h| Member {
                name: h.name.clone(),
                address: h.address,
                base: i64::from(h.priority),
            })
            .collect();
        if members.len() != hearing.len() {
            return None;
        }
        Some(Model {
            instance: spec.instance.clone(),
            vip: format!("{}/{}", vip.address, vip.prefix),
            vrrp_version: vip.vrrp_version,
            advert_int_s: spec.advert_int.value.as_secs_f64(),
            preempt: spec.preempt,
            preempt_delay_s: spec.preempt_delay.as_ref().map(|d| d.value.as_secs_f64()),
            members,
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
            hearing,
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

impl Standing {
    fn priority(self) -> Option<i64> {
        match self {
            Standing::Up(p) => Some(p),
            _ => None,
        }
    }
}

/// What fails in one case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Hosts that are down.
    pub down: BTreeSet<String>,
    /// (host, check) pairs that fail.
    pub failing: BTreeSet<(String, String)>,
    /// Hosts cut off the network while keepalived runs on (a link down): they hear nobody
    /// and nobody hears them.
    pub cut: BTreeSet<String>,
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

/// One election group's outcome: the members that hear each other (directly or through
/// others) and the ones that end up MASTER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Election {
    pub members: Vec<String>,
    pub holders: Vec<String>,
}

/// One evaluated case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub label: String,
    #[serde(skip)]
    pub failure: Failure,
    /// Per member, in stack order.
    pub standings: Vec<(String, Standing)>,
    /// Who held the VIP going into the case: nobody for the healthy case (keepalived
    /// starting, every member BACKUP), the healthy holders for every other case.
    pub before: Vec<String>,
    /// One election per connected group of live members, each with its holders.
    pub groups: Vec<Election>,
    /// Every holder, in stack order (more than one: the VIP is split).
    pub holders: Vec<String>,
    /// The holder when there is exactly one.
    pub holder: Option<String>,
    /// The holders differ from the ones going in (for the healthy case: always false).
    pub moved: bool,
    /// Two masters with the same priority met: the higher address decided.
    pub tie: bool,
    /// Why the holder is what it is, when it is not simply "highest priority".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How loud a warning is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The VIP splits, never moves, flaps or moves by accident: `validate`, `plan`, `up` and
    /// `explain` all print it.
    Risk,
    /// How a setting behaves, for `explain` only.
    Note,
}

/// One finding about the election.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// Stable code, `hactl::vrrp::<what>`.
    pub code: &'static str,
    pub level: Level,
    pub message: String,
    /// The stack key it is about (`vip.checks.0.weight`), for a location in `validate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Warning {
    fn risk(code: &'static str, message: String, key: Option<String>) -> Warning {
        Warning {
            code,
            level: Level::Risk,
            message,
            key,
        }
    }

    fn note(code: &'static str, message: String, key: Option<String>) -> Warning {
        Warning {
            code,
            level: Level::Note,
            message,
            key,
        }
    }
}

/// The whole explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub model: Model,
    pub cases: Vec<Case>,
    pub warnings: Vec<Warning>,
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

/// What the state machine did on its way to a steady state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Members in MASTER, by index.
    pub masters: BTreeSet<usize>,
    /// (winner, loser): two masters of equal priority met and the higher address stayed.
    pub address_ties: Vec<(usize, usize)>,
    /// (master, backup): a backup of the same priority (and a higher address) that stays
    /// BACKUP, because an equal advert resets its timer.
    pub kept_on_equal: Vec<(usize, usize)>,
    /// (master, backup): with `nopreempt`, a higher-priority backup that stays BACKUP.
    pub kept_by_nopreempt: Vec<(usize, usize)>,
    /// (new, old): a backup that preempted a lower-priority master it hears.
    pub preempted: Vec<(usize, usize)>,
}

/// Runs the RFC 5798 §6.4 state machine from `start` (the masters going in) to a steady state.
/// `prio[i]` is member `i`'s effective priority, `None` when it is down or in FAULT (it sends
/// nothing, or a priority-0 advert, and takes no part). Timers are modelled by their order
/// only: among backups whose Master_Down_Timer runs out, the highest priority (shortest
/// Skew_Time) goes first; equal priorities go together and the masters then settle by address.
/// `g` is the hearing graph: the model's, or one with members cut off.
pub fn settle(model: &Model, g: &Graph, prio: &[Option<i64>], start: &BTreeSet<usize>) -> Settled {
    let n = model.members.len().min(prio.len());
    let key = |i: usize| (prio[i].unwrap_or(0), model.members[i].address);
    let mut out = Settled {
        masters: start
            .iter()
            .copied()
            .filter(|&i| i < n && prio[i].is_some())
            .collect(),
        ..Settled::default()
    };
    // Every step either demotes a master or promotes a backup that outranks every master it
    // hears; the bound is generous and only guards against a modelling mistake.
    for _ in 0..(4 * n + 4) {
        // §6.4.3: a master that hears a better master steps down.
        let demoted: Vec<(usize, usize)> = out
            .masters
            .iter()
            .filter_map(|&m| {
                out.masters
                    .iter()
                    .copied()
                    .filter(|&k| k != m && g.hears(m, k) && key(k) > key(m))
                    .max_by_key(|&k| key(k))
                    .map(|k| (k, m))
            })
            .collect();
        if !demoted.is_empty() {
            for (k, m) in demoted {
                if prio[k] == prio[m] {
                    out.address_ties.push((k, m));
                }
                out.masters.remove(&m);
            }
            continue;
        }
        // §6.4.2: a backup whose Master_Down_Timer runs out becomes master.
        let candidates: Vec<usize> = (0..n)
            .filter(|&b| prio[b].is_some() && !out.masters.contains(&b))
            .filter(|&b| {
                let heard: Vec<usize> = out
                    .masters
                    .iter()
                    .copied()
                    .filter(|&m| g.hears(b, m))
                    .collect();
                heard.is_empty() || (model.preempt && heard.iter().all(|&m| prio[m] < prio[b]))
            })
            .collect();
        let Some(top) = candidates.iter().map(|&b| prio[b]).max() else {
            break;
        };
        for b in candidates.into_iter().filter(|&b| prio[b] == top) {
            for &m in out.masters.iter().filter(|&&m| g.hears(b, m)) {
                out.preempted.push((b, m));
            }
            out.masters.insert(b);
        }
    }
    // The backups that a plain "highest priority wins" reading would get wrong.
    for b in (0..n).filter(|&b| prio[b].is_some() && !out.masters.contains(&b)) {
        for &m in out.masters.iter().filter(|&&m| g.hears(b, m)) {
            if prio[m] == prio[b] && key(b) > key(m) {
                out.kept_on_equal.push((m, b));
            } else if !model.preempt && prio[m] < prio[b] {
                out.kept_by_nopreempt.push((m, b));
            }
        }
    }
    out
}

/// Seconds as keepalived's docs write them: `1s`, `0.1s`.
pub fn secs(s: f64) -> String {
    let r = (s * 1000.0).round() / 1000.0;
    format!("{r}s")
}

/// Evaluates one case from the masters `before` (names).
fn evaluate(model: &Model, label: String, failure: Failure, before: &[String]) -> Case {
    let standings: Vec<(String, Standing)> = model
        .members
        .iter()
        .map(|m| (m.name.clone(), standing(model, m, &failure)))
        .collect();
    let prio: Vec<Option<i64>> = standings.iter().map(|(_, s)| s.priority()).collect();
    let index = |n: &String| model.members.iter().position(|m| &m.name == n);
    let start: BTreeSet<usize> = before.iter().filter_map(index).collect();
    let cut: BTreeSet<usize> = failure.cut.iter().filter_map(index).collect();
    let cut_graph;
    let graph = if cut.is_empty() {
        &model.hearing
    } else {
        cut_graph = model.hearing.with_cut(&cut);
        &cut_graph
    };
    let s = settle(model, graph, &prio, &start);
    let name = |i: usize| model.members[i].name.clone();
    let holders: Vec<String> = s.masters.iter().map(|&i| name(i)).collect();
    let groups: Vec<Election> = graph
        .groups(&|i| prio.get(i).copied().flatten().is_some())
        .into_iter()
        .map(|g| Election {
            holders: g
                .iter()
                .filter(|i| s.masters.contains(i))
                .map(|&i| name(i))
                .collect(),
            members: g.into_iter().map(name).collect(),
        })
        .collect();
    let mut notes = Vec::new();
    for &(m, b) in &s.kept_on_equal {
        notes.push(format!(
            "{} keeps the VIP: {} has the same priority {}, and a backup only takes over from a \
             lower one (RFC 5798 §6.4.2)",
            name(m),
            name(b),
            prio[b].unwrap_or_default()
        ));
    }
    for &(m, b) in &s.kept_by_nopreempt {
        notes.push(format!(
            "nopreempt: {} keeps the VIP although {} has a higher priority",
            name(m),
            name(b)
        ));
    }
    if let Some(d) = model.preempt_delay_s {
        for &(b, m) in &s.preempted {
            notes.push(format!(
                "preempt_delay: {} takes over {} after {}'s priority drops",
                name(b),
                secs(d),
                name(m)
            ));
        }
    }
    for &(w, l) in &s.address_ties {
        notes.push(format!(
            "tie at {} between masters {} and {}: the higher address wins",
            prio[w].unwrap_or_default(),
            name(w),
            name(l)
        ));
    }
    if holders.len() > 1 {
        notes.push(format!(
            "SPLIT: {} never hear each other's adverts, so each is MASTER",
            holders.join(" and ")
        ));
    }
    let moved = !before.is_empty() && holders.as_slice() != before;
    Case {
        label,
        failure,
        standings,
        before: before.to_vec(),
        groups,
        holder: (holders.len() == 1).then(|| holders[0].clone()),
        holders,
        moved,
        tie: !s.address_ties.is_empty(),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// Evaluates the standard cases plus `extra` (label, failure) and collects warnings.
pub fn explain(model: &Model, extra: Vec<(String, Failure)>) -> Explanation {
    let healthy_case = evaluate(model, "all healthy".into(), Failure::default(), &[]);
    let healthy = healthy_case.holders.clone();
    let mut cases = vec![healthy_case];
    let names: Vec<String> = model.members.iter().map(|m| m.name.clone()).collect();

    if !model.checks.is_empty() {
        cases.push(evaluate(
            model,
            "every check failing".into(),
            Failure::checks_of(model, &names),
            &healthy,
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
                    &healthy,
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
                &healthy,
            ));
        }
    }
    for m in &model.members {
        let mut f = Failure::default();
        f.down.insert(m.name.clone());
        cases.push(evaluate(model, format!("{} down", m.name), f, &healthy));
    }
    for (label, f) in extra {
        cases.push(evaluate(model, label, f, &healthy));
    }
    let warnings = warnings(model, &cases);
    Explanation {
        model: model.clone(),
        cases,
        warnings,
    }
}

/// The risks of a stack's election, for `validate`, `plan` and `up` (the same list `explain`
/// prints, without its notes). Empty without a VIP.
pub fn risks(stack: &Stack) -> Vec<Warning> {
    // With `provider: aws` the members are the instances `up` creates: none are known yet.
    if stack.file.provider.value != crate::stack::model::ProviderKind::Hosts {
        return Vec::new();
    }
    let Some(model) = Model::from_stack(stack) else {
        return Vec::new();
    };
    explain(&model, Vec::new())
        .warnings
        .into_iter()
        .filter(|w| w.level == Level::Risk)
        .collect()
}

/// The warnings, in the order an operator should read them.
fn warnings(model: &Model, cases: &[Case]) -> Vec<Warning> {
    let mut out = Vec::new();
    let check_key = |name: &str, field: &str| {
        model
            .checks
            .iter()
            .position(|c| c.name == name)
            .map(|i| format!("vip.checks.{i}.{field}"))
    };
    if model.members.len() < 2 {
        out.push(Warning::risk(
            "hactl::vrrp::single_member",
            format!(
                "only {} VRRP member(s): there is nowhere for the VIP to go",
                model.members.len()
            ),
            Some("vip".into()),
        ));
    }
    let mut split_seen = BTreeSet::new();
    for c in cases {
        if c.holders.len() > 1 && split_seen.insert(c.holders.clone()) {
            let groups: Vec<String> = c
                .groups
                .iter()
                .map(|g| format!("[{}]", g.members.join(", ")))
                .collect();
            out.push(Warning::risk(
                "hactl::vrrp::split",
                format!(
                    "case `{}`: the VIP is held by {} at once (election groups {}): members that \
                     do not hear each other each become MASTER",
                    c.label,
                    c.holders.join(" and "),
                    groups.join(" ")
                ),
                None,
            ));
        }
    }
    let mut tied = BTreeSet::new();
    for c in cases {
        if c.tie && tied.insert(c.label.clone()) {
            out.push(Warning::risk(
                "hactl::vrrp::tie",
                format!(
                    "tie in case `{}`: two masters share the top priority, so the higher address \
                     decides; give each host a distinct priority",
                    c.label
                ),
                None,
            ));
        }
    }
    if let [holder] = cases.first().map(|c| c.holders.as_slice()).unwrap_or(&[]) {
        for c in cases {
            let holder_fails = c.failure.failing.iter().any(|(host, _)| host == holder);
            let only_holder = c.failure.failing.iter().all(|(host, _)| host == holder)
                && c.failure.down.is_empty()
                && c.failure.cut.is_empty();
            if !(holder_fails && only_holder && !c.moved) {
                continue;
            }
            let key = c
                .failure
                .failing
                .iter()
                .next()
                .and_then(|(_, chk)| check_key(chk, "weight"));
            let why = if !model.preempt {
                "with `nopreempt` a lower priority never hands the VIP over; only FAULT \
                 (a weight-0 check) or the master going away does"
                    .to_string()
            } else {
                let eff = c
                    .standings
                    .iter()
                    .find(|(n, _)| n == holder)
                    .and_then(|(_, s)| s.priority());
                let runner = c
                    .standings
                    .iter()
                    .filter(|(n, _)| n != holder)
                    .filter_map(|(n, s)| s.priority().map(|p| (n.clone(), p)))
                    .max_by_key(|(_, p)| *p);
                match (eff, runner) {
                    (Some(p), Some((n, q))) if p == q => format!(
                        "{holder} drops to {p}, the same as {n}'s {q}, and a backup never takes \
                         over from a master of equal priority (RFC 5798 §6.4.2)"
                    ),
                    (Some(p), Some((n, q))) => format!(
                        "{holder} still has {p}, not below {n}'s {q}: the weight is too small \
                         to move the VIP"
                    ),
                    _ => "the weight is too small to move the VIP".to_string(),
                }
            };
            out.push(Warning::risk(
                "hactl::vrrp::never_moves",
                format!("`{}` moves nothing: {why}", c.label),
                key,
            ));
        }
    }
    if model.preempt {
        let flappy: Vec<(usize, &Check)> = model
            .checks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.weight != 0 && (c.fall < 2 || c.rise < 2))
            .collect();
        if !flappy.is_empty() && model.preempt_delay_s.is_none() && model.members.len() > 1 {
            out.push(Warning::risk(
                "hactl::vrrp::flapping",
                format!(
                    "preemption flapping risk: {} change(s) the priority after a single result \
                     (fall/rise 1) and preemption is on, so a check that flaps moves the VIP \
                     away and back each time (two outages per flap); raise `rise` or set \
                     `preempt_delay`",
                    flappy
                        .iter()
                        .map(|(_, c)| format!("`{}`", c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                flappy.first().map(|(i, c)| {
                    format!(
                        "vip.checks.{i}.{}",
                        if c.rise < 2 { "rise" } else { "fall" }
                    )
                }),
            ));
        }
        if model.members.len() > 1 && model.preempt_delay_s.is_none() {
            out.push(Warning::note(
                "hactl::vrrp::failback",
                "preempt is on: when the failed host recovers the VIP moves back to it \
                 (failback: a second, usually shorter outage); set `preempt: false` to stay put"
                    .into(),
                None,
            ));
        }
        if let Some(d) = model.preempt_delay_s {
            out.push(Warning::note(
                "hactl::vrrp::preempt_delay",
                format!(
                    "preempt_delay {}: a higher-priority host waits that long after startup or \
                     after seeing a lower-priority master before it takes the VIP; check-based \
                     failovers are that much slower, host-down failovers are not",
                    secs(d)
                ),
                None,
            ));
        }
    } else {
        out.push(Warning::note(
            "hactl::vrrp::nopreempt",
            "nopreempt: the VIP stays where it is until its holder goes away or enters FAULT; \
             check weights only decide the first election and who takes over"
                .into(),
            None,
        ));
        if model.preempt_delay_s.is_some() {
            out.push(Warning::risk(
                "hactl::vrrp::preempt_delay_unused",
                "`preempt_delay` has no effect with `preempt: false`".into(),
                Some("vip.preempt_delay".into()),
            ));
        }
    }
    for c in &model.checks {
        if c.weight == 0 {
            out.push(Warning::note(
                "hactl::vrrp::fault",
                format!(
                    "check `{}` has weight 0: when it fails the host enters FAULT and drops out \
                     whatever its priority",
                    c.name
                ),
                None,
            ));
        }
    }
    out.extend(super::timing::risks(model));
    out
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
            hearing: Graph::complete(bases.iter().map(|(n, _, _)| n.to_string()).collect()),
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
            .any(|w| w.message.starts_with("tie in case `all healthy`")));
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
            .any(|w| w.message.contains("a still has 140, not below b's 100")));
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
        assert!(e.warnings.iter().any(|w| w.message.contains("flapping")));
        m.preempt_delay_s = Some(5.0);
        let e = explain(&m, vec![]);
        assert!(!e.warnings.iter().any(|w| w.message.contains("flapping")));
        assert!(e
            .warnings
            .iter()
            .any(|w| w.message.starts_with("preempt_delay 5s")));
    }

    /// RFC 5798 §6.4.2: a backup hearing an advert of its own priority stays BACKUP, so a
    /// master whose priority drops to a backup's keeps the VIP, even though the backup has the
    /// higher address (the old "tie goes to the higher address" reading moved it).
    #[test]
    fn backup_never_takes_over_from_an_equal_master() {
        let m = model(
            &[
                ("n1", "10.0.0.1", 150),
                ("n2", "10.0.0.2", 100),
                ("n3", "10.0.0.3", 90),
            ],
            -60,
            true,
        );
        let e = explain(
            &m,
            vec![(
                "n1+n2".into(),
                Failure::checks_of(&m, &["n1".into(), "n2".into()]),
            )],
        );
        let c = e.cases.last().expect("case");
        assert_eq!(
            eff(c),
            vec![Standing::Up(90), Standing::Up(40), Standing::Up(90)]
        );
        assert_eq!(c.before, vec!["n1".to_string()]);
        assert_eq!(c.holders, vec!["n1".to_string()]);
        assert!(!c.moved && !c.tie);
        assert!(
            c.note
                .as_deref()
                .unwrap_or("")
                .contains("n1 keeps the VIP: n3 has the same priority 90"),
            "{:?}",
            c.note
        );
        // Going in with nobody (keepalived starting) the same priorities are a tie between two
        // masters, which the address breaks.
        let prio = [Some(90), Some(40), Some(90)];
        let s = settle(&m, &m.hearing, &prio, &BTreeSet::new());
        assert_eq!(s.masters, BTreeSet::from([2]));
        assert_eq!(s.address_ties, vec![(2, 0)]);
    }

    /// The chain: node1 and node3 each hear only node2, so both are MASTER.
    #[test]
    fn a_chain_of_peers_elects_both_ends() {
        let mut m = model(
            &[
                ("node1", "10.0.0.1", 150),
                ("node2", "10.0.0.2", 100),
                ("node3", "10.0.0.3", 120),
            ],
            -100,
            true,
        );
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        m.hearing = Graph::unicast(
            ["node1", "node2", "node3"].map(String::from).to_vec(),
            &[
                list(&["node2"]),
                list(&["node1", "node3"]),
                list(&["node2"]),
            ],
        );
        let e = explain(&m, vec![]);
        let healthy = &e.cases[0];
        assert_eq!(healthy.holders, vec!["node1".to_string(), "node3".into()]);
        assert_eq!(healthy.holder, None);
        assert!(e.warnings.iter().any(|w| w.code == "hactl::vrrp::split"));
        // node2 down: two separate groups, one holder each.
        let down = e
            .cases
            .iter()
            .find(|c| c.label == "node2 down")
            .expect("case");
        assert_eq!(
            down.groups,
            vec![
                Election {
                    members: vec!["node1".into()],
                    holders: vec!["node1".into()]
                },
                Election {
                    members: vec!["node3".into()],
                    holders: vec!["node3".into()]
                },
            ]
        );
    }

    /// With nopreempt a higher-priority backup stays BACKUP; preempt takes over; both from the
    /// same state going in.
    #[test]
    fn preempt_and_nopreempt_in_one_state_machine() {
        let m = model(&[("a", "10.0.0.1", 100), ("b", "10.0.0.2", 150)], 0, false);
        let prio = [Some(100), Some(150)];
        let s = settle(&m, &m.hearing, &prio, &BTreeSet::from([0]));
        assert_eq!(s.masters, BTreeSet::from([0]));
        assert_eq!(s.kept_by_nopreempt, vec![(0, 1)]);
        let mut m = m;
        m.preempt = true;
        let s = settle(&m, &m.hearing, &prio, &BTreeSet::from([0]));
        assert_eq!(s.masters, BTreeSet::from([1]));
        assert_eq!(s.preempted, vec![(1, 0)]);
        // A master in FAULT sends nothing: the backup takes over even with nopreempt.
        m.preempt = false;
        let s = settle(&m, &m.hearing, &[None, Some(150)], &BTreeSet::from([0]));
        assert_eq!(s.masters, BTreeSet::from([1]));
    }

    /// A host cut off the network while keepalived runs on (a link down) keeps the VIP, and
    /// the others elect their own: two groups, two holders.
    #[test]
    fn a_cut_off_master_keeps_the_vip_beside_the_new_one() {
        let m = model(
            &[
                ("a", "10.0.0.1", 150),
                ("b", "10.0.0.2", 100),
                ("c", "10.0.0.3", 90),
            ],
            -100,
            true,
        );
        let mut f = Failure::default();
        f.cut.insert("a".into());
        let e = explain(&m, vec![("a cut off".into(), f)]);
        let c = e.cases.last().expect("case");
        assert_eq!(c.before, vec!["a".to_string()]);
        assert_eq!(c.holders, vec!["a".to_string(), "b".into()]);
        assert_eq!(
            c.groups,
            vec![
                Election {
                    members: vec!["a".into()],
                    holders: vec!["a".into()]
                },
                Election {
                    members: vec!["b".into(), "c".into()],
                    holders: vec!["b".into()]
                },
            ]
        );
        // A backup cut off becomes MASTER on its own.
        let mut f = Failure::default();
        f.cut.insert("c".into());
        let e = explain(&m, vec![("c cut off".into(), f)]);
        let c = e.cases.last().expect("case");
        assert_eq!(c.holders, vec!["a".to_string(), "c".into()]);
    }
}
