//! The pure diff: desired resources + observed resources → ordered steps (`+ ~ - -/+`), each
//! with its reason, and the dependency waves they run in. No AWS types, no I/O: everything
//! here is tested with plain values and snapshots.
//!
//! Rules:
//! - Only the attributes and references the stack states are compared (AWS reports many
//!   more); a change to one the API cannot modify ([`ResKind::forces_replace`]) replaces.
//! - A resource replaced makes everything that references it change too: replaced when the
//!   reference itself forces replacement, updated otherwise (e.g. the target group
//!   attachment re-registers a replaced instance).
//! - Two observed resources with one address (a create retried before its first answer came
//!   back) are a duplicate: all but one are deleted.
//! - Waves: a resource's wave is one more than the deepest thing it references. Creates and
//!   updates run waves in order; deletes (and the delete half of a replace) run first, in
//!   reverse order.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::{Action, Addr, AttrChange, Change, Order, Payload, Plan, Reason};

use super::model::{satisfies, Observed, ResKind, Resource, INFO_RETAG};

/// The provider's own view of a change: the address as the AWS provider keys everything (its
/// `type.name` string), the action and the typed reason. [`Step::to_change`] is the one place
/// it becomes a [`crate::plan::Change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub addr: String,
    pub action: Action,
    pub reason: Reason,
    /// The id of what is there now.
    pub before: Option<String>,
}

/// One step of an AWS plan: the change as shown, plus what apply needs to carry it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub change: Planned,
    pub desired: Option<Resource>,
    pub observed: Option<Observed>,
    /// Dependency depth (0 = references nothing managed).
    pub wave: usize,
    /// For a create: the id of a resource that is gone and that this one replaces (a
    /// terminated instance, in `heal`). It salts the idempotency token, because AWS answers a
    /// RunInstances that repeats the first launch's ClientToken with that first instance,
    /// terminated or not.
    pub replaces: Option<String>,
    /// An update whose only purpose is to restore the ownership tags of a resource found
    /// through the state ([`INFO_RETAG`]): apply re-tags it and changes nothing else.
    pub retag_only: bool,
    /// A delete of a second resource at an address that has one (a create retried before its
    /// first answer came back): apply removes it after the creates and updates, and the
    /// address keeps the first one's id.
    pub duplicate: bool,
}

/// The steps and how many resources were checked and found right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub steps: Vec<Step>,
    pub noop: usize,
}

impl Diff {
    /// The steps as the engine's plan: each change says when its delete half runs
    /// ([`create_before_destroy`]) and whether it destroys data ([`destroys_data`]).
    pub fn plan(&self, stack: &str) -> Plan {
        let cbd = create_before_destroy(&self.steps);
        Plan::new(
            stack,
            self.steps.iter().map(|s| s.to_change(&cbd)).collect(),
            self.noop,
            Vec::new(),
        )
    }
}

impl Step {
    /// The provider boundary: this step as the engine's [`Change`], carrying the step itself
    /// as its payload (apply takes it back with `change.payload.get::<Step>()`). It depends on
    /// the managed resources it references, as desired (or, for a delete, as observed).
    /// `cbd`: the addresses replaced create-before-destroy ([`create_before_destroy`]).
    pub fn to_change(&self, cbd: &BTreeSet<String>) -> Change {
        let kind = self
            .observed
            .as_ref()
            .map(|o| o.res.kind)
            .or(self.desired.as_ref().map(|d| d.kind));
        let order = match self.change.action {
            Action::Delete if self.duplicate => Order::CreateFirst,
            Action::Replace if cbd.contains(&self.change.addr) => {
                if kind == Some(ResKind::Instance) {
                    Order::Rolled
                } else {
                    Order::CreateFirst
                }
            }
            _ => Order::DestroyFirst,
        };
        let destroys_data = destroys_data(self)
            .then(|| kind.map(|k| data_loss_note(k).to_string()))
            .flatten();
        let deps = self
            .desired
            .as_ref()
            .or(self.observed.as_ref().map(|o| &o.res))
            .map(|r| r.deps().map(Addr::resource).collect())
            .unwrap_or_default();
        Change {
            before: self.change.before.clone(),
            depends_on: deps,
            wave: self.wave,
            payload: Payload::provider(self.clone()),
            order,
            destroys_data,
            ..Change::new(
                Addr::resource(&self.change.addr),
                self.change.action,
                self.change.reason.clone(),
            )
        }
    }
}

/// The dependency depth of every resource in `all` (unknown references count as depth 0).
pub fn depths<'a>(all: impl IntoIterator<Item = &'a Resource>) -> BTreeMap<String, usize> {
    // The first description of an address wins: callers pass the desired side first, so a
    // resource is ordered by what it will reference, not by what it references now.
    let mut by_addr: BTreeMap<&str, &Resource> = BTreeMap::new();
    for r in all {
        by_addr.entry(r.addr.as_str()).or_insert(r);
    }

    let mut memo = BTreeMap::new();
    fn depth<'a>(
        a: &'a str,
        by: &BTreeMap<&'a str, &'a Resource>,
        memo: &mut BTreeMap<String, usize>,
        seen: &mut BTreeSet<&'a str>,
    ) -> usize {
        if let Some(d) = memo.get(a) {
            return *d;
        }
        let Some(r) = by.get(a) else { return 0 };
        if !seen.insert(a) {
            return 0; // a cycle cannot be ordered; treat it as a root rather than loop
        }
        let d = r
            .deps()
            .filter(|d| by.contains_key(d))
            .map(|d| depth(d, by, memo, seen) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(a.to_string(), d);
        d
    }
    let addrs: Vec<&str> = by_addr.keys().copied().collect();
    for a in addrs {
        let mut seen = BTreeSet::new();
        depth(a, &by_addr, &mut memo, &mut seen);
    }
    memo
}

fn show(v: Option<&str>) -> String {
    match v {
        None | Some("") => "(none)".into(),
        Some(s) => s.to_string(),
    }
}

fn change(addr: &str, action: Action, reason: Reason) -> Planned {
    Planned {
        addr: addr.to_string(),
        action,
        reason,
        before: None,
    }
}

fn attr_changes(diffs: &[(String, String, String, bool)]) -> Vec<AttrChange> {
    diffs
        .iter()
        .map(|(k, b, a, r)| AttrChange {
            key: k.clone(),
            before: b.clone(),
            after: a.clone(),
            forces_replace: *r,
        })
        .collect()
}

/// What differs between a desired resource and its observed self: (key, before, after,
/// forces replacement), for the keys the stack states.
pub fn differences(want: &Resource, have: &Resource) -> Vec<(String, String, String, bool)> {
    let mut out = Vec::new();
    for (k, v) in &want.attrs {
        let h = have.attrs.get(k);
        if !satisfies(want.kind, k, v, h.map(String::as_str)) {
            out.push((
                k.clone(),
                show(h.map(String::as_str)),
                show(Some(v)),
                want.kind.forces_replace(k),
            ));
        }
    }
    for (k, v) in &want.refs {
        let h = have.refs.get(k).cloned().unwrap_or_default();
        if &h != v {
            out.push((
                k.clone(),
                show(Some(&h.join(", "))),
                show(Some(&v.join(", "))),
                want.kind.forces_replace(k),
            ));
        }
    }
    out
}

/// [`differences`] without the attributes AWS does not report yet ([`UNKNOWN`]): RDS has no
/// endpoint and reports port 0 until the instance is available, which is no port change.
pub fn known_differences(want: &Resource, have: &Observed) -> Vec<(String, String, String, bool)> {
    let unknown: Vec<&str> = have
        .info
        .get(UNKNOWN)
        .map(|u| u.split(',').collect())
        .unwrap_or_default();
    differences(want, &have.res)
        .into_iter()
        .filter(|d| !unknown.contains(&d.0.as_str()))
        .collect()
}

/// The `info` key under which `observe` lists (comma-separated) the attributes AWS does not
/// report yet for a resource, e.g. `port` of a database that is still `creating`.
pub const UNKNOWN: &str = "unknown";

/// Desired vs observed → the steps of `up`.
pub fn diff(desired: &[Resource], observed: &[Observed]) -> Diff {
    let mut by_addr: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        by_addr.entry(o.res.addr.as_str()).or_default().push(o);
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|r| r.addr.as_str()).collect();
    let mut depth = depths(desired.iter().chain(observed.iter().map(|o| &o.res)));
    let mut steps = Vec::new();
    let mut noop: usize = 0;
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut changed: BTreeMap<String, usize> = BTreeMap::new();

    for want in desired {
        let wave = depth.get(&want.addr).copied().unwrap_or(0);
        let found = by_addr.get(want.addr.as_str()).cloned().unwrap_or_default();
        // Duplicates: keep the first as read (AWS lists oldest first), delete the rest.
        for extra in found.iter().skip(1) {
            let mut c = change(
                &want.addr,
                Action::Delete,
                Reason::Duplicate {
                    id: extra.id.clone(),
                },
            );
            c.before = Some(extra.id.clone());
            steps.push(Step {
                change: c,
                desired: None,
                observed: Some((*extra).clone()),
                wave,
                replaces: None,
                retag_only: false,
                duplicate: true,
            });
        }
        let Some(have) = found.first() else {
            changed.insert(want.addr.clone(), steps.len());
            steps.push(Step {
                change: change(&want.addr, Action::Create, Reason::NotFound),
                desired: Some(want.clone()),
                observed: None,
                wave,
                replaces: None,
                retag_only: false,
                duplicate: false,
            });
            continue;
        };
        let diffs = known_differences(want, have);
        // Found through the state, without its ownership tags: an in-place re-tag, never a
        // reason to replace it (nor anything that references it).
        let retag = have.info.get(INFO_RETAG).filter(|t| !t.is_empty());
        if diffs.is_empty() && retag.is_none() {
            noop += 1;
            continue;
        }
        let replace = diffs.iter().any(|d| d.3);
        let reason = Reason::Differs {
            attrs: attr_changes(&diffs),
            retag: retag.filter(|_| !replace).cloned(),
            replaced: Vec::new(),
        };
        let mut c = change(
            &want.addr,
            if replace {
                Action::Replace
            } else {
                Action::Update
            },
            reason,
        );
        c.before = Some(have.id.clone());
        if replace {
            replaced.insert(want.addr.clone());
        }
        changed.insert(want.addr.clone(), steps.len());
        steps.push(Step {
            change: c,
            desired: Some(want.clone()),
            observed: Some((*have).clone()),
            wave,
            replaces: None,
            retag_only: diffs.is_empty(),
            duplicate: false,
        });
    }

    // Propagate replacements to whatever references a replaced resource, in wave order so a
    // chain (subnet → instance → attachment) is followed to its end.
    let mut order: Vec<&Resource> = desired.iter().collect();
    order.sort_by_key(|r| depth.get(&r.addr).copied().unwrap_or(0));
    for want in order {
        let hits: Vec<(String, String)> = want
            .refs
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |a| (k.clone(), a.clone())))
            .filter(|(_, a)| replaced.contains(a))
            .collect();
        if hits.is_empty() {
            continue;
        }
        let Some(have) = by_addr.get(want.addr.as_str()).and_then(|v| v.first()) else {
            continue; // being created anyway
        };
        let forces = hits.iter().any(|(k, _)| want.kind.forces_replace(k));
        let why: Vec<String> = hits.iter().map(|(_, a)| a.clone()).collect();
        match changed.get(&want.addr) {
            Some(&i) => {
                let s = &mut steps[i];
                if forces && s.change.action == Action::Update {
                    s.change.action = Action::Replace;
                    replaced.insert(want.addr.clone());
                }
                if let Reason::Differs { replaced, .. } = &mut s.change.reason {
                    replaced.extend(why);
                }
                s.retag_only = false;
            }
            None => {
                let mut c = change(
                    &want.addr,
                    if forces {
                        Action::Replace
                    } else {
                        Action::Update
                    },
                    Reason::Differs {
                        attrs: Vec::new(),
                        retag: None,
                        replaced: why,
                    },
                );
                c.before = Some(have.id.clone());
                if forces {
                    replaced.insert(want.addr.clone());
                }
                noop = noop.saturating_sub(1);
                changed.insert(want.addr.clone(), steps.len());
                steps.push(Step {
                    change: c,
                    desired: Some(want.clone()),
                    observed: Some((*have).clone()),
                    wave: depth.get(&want.addr).copied().unwrap_or(0),
                    replaces: None,
                    retag_only: false,
                    duplicate: false,
                });
            }
        }
    }

    // Observed resources the stack no longer asks for.
    for o in observed {
        if !wanted.contains(o.res.addr.as_str()) {
            let wave = *depth.entry(o.res.addr.clone()).or_insert(0);
            let mut c = change(&o.res.addr, Action::Delete, Reason::NotInStack);
            c.before = Some(o.id.clone());
            steps.push(Step {
                change: c,
                desired: None,
                observed: Some(o.clone()),
                wave,
                replaces: None,
                retag_only: false,
                duplicate: false,
            });
        }
    }
    sort_steps(&mut steps);
    Diff { steps, noop }
}

/// Every observed resource → a delete (`down`).
pub fn destroy(observed: &[Observed]) -> Diff {
    let depth = depths(observed.iter().map(|o| &o.res));
    let mut steps: Vec<Step> = observed
        .iter()
        .map(|o| {
            let mut c = change(&o.res.addr, Action::Delete, Reason::StackDown);
            c.before = Some(o.id.clone());
            Step {
                change: c,
                desired: None,
                observed: Some(o.clone()),
                wave: depth.get(&o.res.addr).copied().unwrap_or(0),
                replaces: None,
                retag_only: false,
                duplicate: false,
            }
        })
        .collect();
    sort_steps(&mut steps);
    Diff { steps, noop: 0 }
}

/// Whether deleting a resource of this kind loses data that only the resource holds: an RDS
/// instance (its database) and an EFS file system (its files). Everything else hactl makes can
/// be made again from the stack.
pub fn holds_data(kind: ResKind) -> bool {
    super::kinds::of(kind).holds_data()
}

/// Whether carrying out `s` deletes a resource that [`holds_data`]: a delete (also `down`'s, or
/// a duplicate's) or a replacement (whose delete half goes first) of a database or file system.
/// `up`, `plan` and `down` refuse such a plan unless the user passes `--allow-data-loss`
/// ([`refuse_data_loss`]).
pub fn destroys_data(s: &Step) -> bool {
    matches!(s.change.action, Action::Delete | Action::Replace)
        && s.observed.as_ref().is_some_and(|o| holds_data(o.res.kind))
}

/// What hactl keeps of a resource it deletes, as the plan says it (RDS `DeleteDBInstance`
/// with a `FinalDBSnapshotIdentifier`; EFS has no final snapshot — AWS Backup is the service
/// that keeps file systems, see docs/stack.md).
fn data_loss_note(kind: ResKind) -> &'static str {
    match kind {
        ResKind::DbInstance => {
            "destroys data: a final DB snapshot is taken first; needs `--allow-data-loss`"
        }
        _ => "destroys data: EFS keeps no final snapshot; needs `--allow-data-loss`",
    }
}

/// A plan that deletes or replaces a database or file system, refused because the user did not
/// pass `--allow-data-loss`. `steps`: one line per such change, `addr (action: reason)`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("refusing a plan that destroys data:\n{}", .steps.iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n"))]
#[diagnostic(
    code(hactl::aws::data_loss),
    help("a database or file system is deleted or replaced by this plan (a replacement starts empty). If that is what you want, re-run with `--allow-data-loss`: hactl then turns the database's deletion protection off and takes a final DB snapshot before deleting it (EFS has none: back it up with AWS Backup first). Otherwise undo the stack change that forces the replacement")
)]
pub struct DataLoss {
    pub steps: Vec<String>,
}

/// The plan's changes that destroy data ([`Change::destroys_data`], set from
/// [`destroys_data`]), refused unless `allowed` (`--allow-data-loss`).
pub fn refuse_data_loss<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
    allowed: bool,
) -> Result<(), DataLoss> {
    let steps: Vec<String> = changes
        .into_iter()
        .filter(|c| c.destroys_data.is_some())
        .map(|c| {
            let what = match c.action {
                Action::Replace => "replace",
                _ => "delete",
            };
            format!("`{}` ({what}: {})", c.addr, c.reason)
        })
        .collect();
    if steps.is_empty() || allowed {
        Ok(())
    } else {
        Err(DataLoss { steps })
    }
}

/// Which replacements are made create-before-destroy: the new resource is created (and what
/// references it repointed) before the old one is deleted, so a listener never forwards to a
/// deleted target group (AWS answers DeleteTargetGroup `ResourceInUse` while one does) and an
/// instance keeps serving until its replacement does. Kinds that can: target groups (their
/// AWS name carries what forces the replacement, so old and new coexist), their registrations,
/// and instances. A replacement is made this way only when nothing it references is deleted
/// first (a subnet replaced under an instance must go before the new instance can exist
/// elsewhere, and cannot go while the old instance is in it). The engine's walk orders by the
/// [`Order`] each change carries ([`Step::to_change`]).
pub fn create_before_destroy(steps: &[Step]) -> BTreeSet<String> {
    let can = |k: ResKind| super::kinds::of(k).create_before_destroy();
    let kind = |s: &Step| s.observed.as_ref().map(|o| o.res.kind);
    let mut first: BTreeSet<&str> = steps
        .iter()
        .filter(|s| match s.change.action {
            Action::Delete => !s.duplicate,
            Action::Replace => !kind(s).is_some_and(can),
            _ => false,
        })
        .map(|s| s.change.addr.as_str())
        .collect();
    let candidates: Vec<&Step> = steps
        .iter()
        .filter(|s| s.change.action == Action::Replace && kind(s).is_some_and(can))
        .collect();
    // A candidate that references something deleted first is not one; that may disqualify
    // what references it in turn, so repeat until nothing changes.
    loop {
        let before = first.len();
        for s in &candidates {
            let deps_go_first = s
                .observed
                .iter()
                .flat_map(|o| o.res.deps())
                .any(|d| first.contains(d));
            if deps_go_first {
                first.insert(s.change.addr.as_str());
            }
        }
        if first.len() == before {
            break;
        }
    }
    candidates
        .iter()
        .filter(|s| !first.contains(s.change.addr.as_str()))
        .map(|s| s.change.addr.clone())
        .collect()
}

/// Why an observed instance of the stack no longer serves, if it does not: stopped or stopping
/// (EC2 keeps it, but it serves nothing until someone starts it), or a failed EC2 status check
/// (`impaired`, read by `observe::instance_status`). Terminated and shutting-down instances are
/// never observed: to the diff they are missing.
pub fn dead(o: &Observed) -> Option<String> {
    if o.res.kind != ResKind::Instance {
        return None;
    }
    if let Some(s @ ("stopped" | "stopping")) = o.info.get("state").map(String::as_str) {
        return Some(s.to_string());
    }
    (o.info.get("status").map(String::as_str) == Some("impaired"))
        .then(|| "impaired (EC2 status check failed)".to_string())
}

/// What `heal` plans: the repairs, and how many other differences `up` would make that are
/// not repairs (left alone, counted so the report can say so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repairs {
    pub diff: Diff,
    pub others: usize,
}

/// Instances `up` creates where the state recorded an earlier one under the same address (it
/// was terminated or deleted outside hactl): their RunInstances ClientToken is salted with that
/// id, as `heal` does — AWS answers a repeated token with the first, terminated instance.
pub fn salt_relaunches(d: &mut Diff, last_ids: &BTreeMap<String, String>) {
    for s in &mut d.steps {
        let instance = s
            .desired
            .as_ref()
            .is_some_and(|r| r.kind == ResKind::Instance);
        if instance && s.change.action == Action::Create && s.replaces.is_none() {
            s.replaces = last_ids.get(&s.change.addr).cloned();
        }
    }
}

/// The part of `up`'s diff that repairs what failed, computed from the same desired and
/// observed resources (`last_ids`: address → id as the state last recorded them):
/// - a desired instance that is missing (terminated, shutting down, gone) is launched again
///   under its address, so in the same subnet and zone, from the same image and type, with the
///   same tags; its idempotency token is salted with the id it replaces;
/// - a [`dead`] one is replaced: terminated (and waited for), then launched again;
/// - the target group registration follows: the new instances in, the dead ones out — also
///   when only the registration drifted (a target deregistered by hand).
///
/// Everything else (a changed stack, drift in other resources) is `up`'s job, not a repair:
/// it is counted in [`Repairs::others`] and not planned.
pub fn repairs(
    desired: &[Resource],
    observed: &[Observed],
    last_ids: &BTreeMap<String, String>,
) -> Repairs {
    let full = diff(desired, observed);
    let depth = depths(desired.iter().chain(observed.iter().map(|o| &o.res)));
    let wave = |addr: &str| depth.get(addr).copied().unwrap_or(0);
    let mut steps = Vec::new();
    let mut others = 0;
    let mut dead_instances: Vec<(&Resource, &Observed, String)> = Vec::new();
    for want in desired.iter().filter(|r| r.kind == ResKind::Instance) {
        let found = observed.iter().find(|o| o.res.addr == want.addr);
        if let Some((o, why)) = found.and_then(|o| dead(o).map(|w| (o, w))) {
            dead_instances.push((want, o, why));
        }
    }
    for s in full.steps {
        let kind = s
            .desired
            .as_ref()
            .map(|d| d.kind)
            .or(s.observed.as_ref().map(|o| o.res.kind));
        let addr = s.change.addr.clone();
        match (kind, s.change.action) {
            (Some(ResKind::Instance), Action::Create) => {
                let was = last_ids.get(&addr).cloned();
                let mut s = s;
                s.change.reason = Reason::Relaunch { was: was.clone() };
                s.replaces = was;
                steps.push(s);
            }
            // Planned below, from the instances repaired and the registrations observed.
            (Some(ResKind::TargetAttachment), Action::Update) => {}
            // A dead instance is replaced from the stack as it is now, whatever else differs.
            (Some(ResKind::Instance), _) if dead_instances.iter().any(|d| d.0.addr == addr) => {}
            _ => others += 1,
        }
    }
    for (want, o, why) in &dead_instances {
        let mut c = change(
            &want.addr,
            Action::Replace,
            Reason::Dead {
                id: o.id.clone(),
                why: why.clone(),
            },
        );
        c.before = Some(o.id.clone());
        steps.push(Step {
            change: c,
            desired: Some((*want).clone()),
            observed: Some((*o).clone()),
            wave: wave(&want.addr),
            replaces: None,
            retag_only: false,
            duplicate: false,
        });
    }
    let repaired: Vec<String> = steps.iter().map(|s| s.change.addr.clone()).collect();
    let want_attach = desired.iter().find(|r| r.kind == ResKind::TargetAttachment);
    let have_attach = want_attach.and_then(|w| observed.iter().find(|o| o.res.addr == w.addr));
    if let (Some(want), Some(have)) = (want_attach, have_attach) {
        let targets: Vec<_> = differences(want, &have.res)
            .into_iter()
            .filter(|(k, ..)| k == "targets")
            .collect();
        let moved: Vec<&String> = repaired
            .iter()
            .filter(|a| want.refs.get("targets").is_some_and(|t| t.contains(a)))
            .collect();
        if !moved.is_empty() || !targets.is_empty() {
            let why = Reason::Differs {
                attrs: attr_changes(&targets),
                retag: None,
                replaced: moved.into_iter().cloned().collect(),
            };
            let mut c = change(&want.addr, Action::Update, why);
            c.before = Some(have.id.clone());
            steps.push(Step {
                change: c,
                desired: Some(want.clone()),
                observed: Some(have.clone()),
                wave: wave(&want.addr),
                replaces: None,
                retag_only: false,
                duplicate: false,
            });
        }
    }
    let touched: BTreeSet<&str> = steps.iter().map(|s| s.change.addr.as_str()).collect();
    let noop = desired
        .iter()
        .filter(|r| !touched.contains(r.addr.as_str()))
        .count();
    sort_steps(&mut steps);
    Repairs {
        diff: Diff { steps, noop },
        others,
    }
}

/// Plan order: deletes first (deepest first), then creates/updates by wave; then address.
fn sort_steps(steps: &mut [Step]) {
    steps.sort_by(|a, b| {
        let ka = (
            a.change.action != Action::Delete,
            key(a),
            a.change.addr.clone(),
        );
        let kb = (
            b.change.action != Action::Delete,
            key(b),
            b.change.addr.clone(),
        );
        ka.cmp(&kb)
    });
    fn key(s: &Step) -> i64 {
        if s.change.action == Action::Delete {
            -(s.wave as i64)
        } else {
            s.wave as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::aws::desired::{self, desired};
    use crate::provider::aws::fixture::observed;

    const STACK: &str = r#"
name: web3
provider: aws
aws:
  region: us-east-1
  zones: [us-east-1a, us-east-1b]
  network:
    vpc_cidr: 10.20.0.0/16
    subnets: [10.20.1.0/24, 10.20.2.0/24]
    ssh_cidr: 203.0.113.0/24
  hosts:
    count: 2
    instance_type: t2.micro
    ami: ami-1e749f67
  balancer:
    kind: alb
    health_check:
      path: /healthz
  shared_fs:
    performance_mode: generalPurpose
  database:
    engine: postgres
    instance_class: db.t3.micro
    username: app
    password: secret-pw
"#;

    fn want() -> Vec<Resource> {
        let file: crate::stack::model::StackFile = serde_saphyr::from_str(STACK).unwrap();
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHactlTestKeyOnlyNotARealOne0000000000000 t@x";
        desired(
            &file,
            &crate::provider::aws::desired::Inputs {
                public_key: Some(key),
                vpc_cidrs: None,
            },
        )
    }

    fn render(d: &Diff) -> String {
        crate::view::plan::render_plan(&d.plan("web3"), &[])
    }

    #[test]
    fn empty_account_creates_everything_in_waves() {
        let d = diff(&want(), &[]);
        assert!(d.steps.iter().all(|s| s.change.action == Action::Create));
        let waves: Vec<String> = d
            .steps
            .iter()
            .map(|s| format!("{} {}", s.wave, s.change.addr))
            .collect();
        insta::assert_snapshot!(waves.join("\n"));
        insta::assert_snapshot!(render(&d));
    }

    #[test]
    fn second_run_has_no_changes() {
        let w = want();
        let d = diff(&w, &observed(&w));
        assert!(d.steps.is_empty(), "{:?}", d.steps);
        assert_eq!(d.noop, w.len());
    }

    /// RDS reports no endpoint and port 0 while `creating`: observe leaves the port out and
    /// marks it unknown, and the plan has no change for it; once known, a real port change
    /// is an update.
    #[test]
    fn creating_database_without_a_port_plans_nothing() {
        let w = want();
        let mut obs = observed(&w);
        let db = obs
            .iter_mut()
            .find(|o| o.res.kind == ResKind::DbInstance)
            .unwrap();
        db.res.attrs.remove("port");
        db.info.insert(UNKNOWN.into(), "port".into());
        let d = diff(&w, &obs);
        assert!(d.steps.is_empty(), "{:?}", d.steps);

        let db = obs
            .iter_mut()
            .find(|o| o.res.kind == ResKind::DbInstance)
            .unwrap();
        db.info.remove(UNKNOWN);
        db.res.attrs.insert("port".into(), "3306".into());
        let d = diff(&w, &obs);
        assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
        assert_eq!(d.steps[0].change.action, Action::Update);
        assert!(
            d.steps[0].change.reason.to_string().contains("port"),
            "{}",
            d.steps[0].change.reason
        );
    }

    #[test]
    fn instance_type_change_replaces_and_reregisters() {
        let w = want();
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::Instance {
                o.res.attrs.insert("instance_type".into(), "t2.nano".into());
            }
        }
        let d = diff(&w, &obs);
        let att = d
            .steps
            .iter()
            .find(|s| s.change.addr == desired::ATTACH)
            .unwrap();
        assert_eq!(att.change.action, Action::Update);
        insta::assert_snapshot!(render(&d));
    }

    #[test]
    fn health_check_path_is_an_in_place_update() {
        let w = want();
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::TargetGroup {
                o.res
                    .attrs
                    .insert("health_check.path".into(), "/old".into());
            }
        }
        let d = diff(&w, &obs);
        assert_eq!(d.steps.len(), 1);
        assert_eq!(d.steps[0].change.action, Action::Update);
        insta::assert_snapshot!(render(&d));
    }

    /// Issue 17 §1: a VPC and a security group that lost their `hactl:*` tags, found through
    /// the state's ids: two in-place re-tags; nothing that references them is replaced.
    #[test]
    fn lost_tags_are_a_retag_not_a_replacement() {
        let w = want();
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.addr == desired::VPC || o.res.addr == desired::SG_HOSTS {
                o.info
                    .insert(INFO_RETAG.into(), "hactl:stack, hactl:address".into());
            }
        }
        let d = diff(&w, &obs);
        assert!(
            d.steps
                .iter()
                .all(|s| s.change.action == Action::Update && s.retag_only),
            "{:?}",
            d.steps
        );
        insta::assert_snapshot!(render(&d));
    }

    /// Issue 17 §3: the health check matcher is compared like the other health check settings.
    #[test]
    fn health_check_matcher_drift_is_an_in_place_update() {
        let w = want();
        let tg = w.iter().find(|r| r.kind == ResKind::TargetGroup).unwrap();
        assert_eq!(
            tg.get("health_check.matcher"),
            Some("200"),
            "AWS's ALB default"
        );
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::TargetGroup {
                o.res
                    .attrs
                    .insert("health_check.matcher".into(), "200-499".into());
            }
        }
        let d = diff(&w, &obs);
        assert_eq!(d.steps.len(), 1);
        assert_eq!(d.steps[0].change.action, Action::Update);
        assert!(!d.steps[0].retag_only);
        insta::assert_snapshot!(render(&d));
    }

    #[test]
    fn duplicates_and_strays_are_deleted() {
        let w = want();
        let mut obs = observed(&w);
        let mut dup = obs
            .iter()
            .find(|o| o.res.addr == desired::instance_addr(0))
            .unwrap()
            .clone();
        dup.id = "i-dup".into();
        obs.push(dup);
        let mut stray = obs
            .iter()
            .find(|o| o.res.addr == desired::instance_addr(1))
            .unwrap()
            .clone();
        stray.res.addr = desired::instance_addr(2);
        stray.id = "i-stray".into();
        obs.push(stray);
        let d = diff(&w, &obs);
        insta::assert_snapshot!(render(&d));
    }

    #[test]
    fn down_deletes_in_reverse_waves() {
        let w = want();
        let d = destroy(&observed(&w));
        let order: Vec<String> = d
            .steps
            .iter()
            .map(|s| format!("{} {}", s.wave, s.change.addr))
            .collect();
        // The VPC goes last, the things that reference others first.
        assert_eq!(order.last().unwrap(), "0 aws_vpc.main");
        insta::assert_snapshot!(order.join("\n"));
    }

    /// `heal`'s plan: web[0] was terminated (gone from the observed set, its id still
    /// registered), web[1] is stopped; the target group's health check drifted, which is `up`'s
    /// job and only counted.
    #[test]
    fn repairs_relaunch_terminated_replace_stopped_and_reregister() {
        let w = want();
        let mut obs = observed(&w);
        obs.retain(|o| o.res.addr != desired::instance_addr(0));
        for o in &mut obs {
            match o.res.kind {
                ResKind::Instance => {
                    o.info.insert("state".into(), "stopped".into());
                }
                ResKind::TargetAttachment => {
                    o.res = o
                        .res
                        .clone()
                        .reference("targets", vec!["i-dead0".into(), desired::instance_addr(1)]);
                }
                ResKind::TargetGroup => {
                    o.res
                        .attrs
                        .insert("health_check.path".into(), "/old".into());
                }
                _ => {}
            }
        }
        let last = BTreeMap::from([(desired::instance_addr(0), "i-dead0".to_string())]);
        let r = repairs(&w, &obs, &last);
        assert_eq!(r.others, 1, "the health check drift is not a repair");
        let addrs: Vec<&str> = r
            .diff
            .steps
            .iter()
            .map(|s| s.change.addr.as_str())
            .collect();
        assert_eq!(
            addrs,
            [
                desired::instance_addr(0).as_str(),
                &desired::instance_addr(1),
                desired::ATTACH
            ]
        );
        let (web0, web1) = (&r.diff.steps[0], &r.diff.steps[1]);
        assert_eq!(web0.change.action, Action::Create);
        assert_eq!(web0.replaces.as_deref(), Some("i-dead0"));
        assert_eq!(web1.change.action, Action::Replace);
        let stopped = obs.iter().find(|o| o.res.addr == desired::instance_addr(1));
        assert_eq!(
            web1.observed.as_ref(),
            stopped,
            "terminated before the launch"
        );
        assert!(web1.wave < r.diff.steps[2].wave, "registered after launch");
        insta::assert_snapshot!(crate::view::plan::render_plan(&r.diff.plan("web3"), &[]));
    }

    /// `up` after an instance was terminated outside hactl: the relaunch carries the dead id in
    /// its token salt; a first launch (no id recorded) does not.
    #[test]
    fn up_salts_the_token_of_a_relaunched_instance() {
        let w = want();
        let mut obs = observed(&w);
        obs.retain(|o| o.res.kind != ResKind::Instance);
        let mut d = diff(&w, &obs);
        let last = BTreeMap::from([(desired::instance_addr(0), "i-dead0".to_string())]);
        salt_relaunches(&mut d, &last);
        let salt = |addr: &str| {
            d.steps
                .iter()
                .find(|s| s.change.addr == addr)
                .map(|s| s.replaces.clone())
                .expect("a create step")
        };
        assert_eq!(
            salt(&desired::instance_addr(0)),
            Some("i-dead0".to_string())
        );
        assert_eq!(salt(&desired::instance_addr(1)), None);
    }

    #[test]
    fn repairs_nothing_when_every_instance_runs() {
        let w = want();
        let mut obs = observed(&w);
        for o in &mut obs {
            o.info.insert("state".into(), "running".into());
        }
        let r = repairs(&w, &obs, &BTreeMap::new());
        assert!(r.diff.steps.is_empty(), "{:?}", r.diff.steps);
        assert_eq!(r.others, 0);
        assert_eq!(r.diff.noop, w.len());
    }

    #[test]
    fn an_impaired_instance_is_dead_a_pending_one_is_not() {
        let w = want();
        let mut o = observed(&w)
            .into_iter()
            .find(|o| o.res.kind == ResKind::Instance)
            .unwrap();
        o.info.insert("state".into(), "pending".into());
        assert_eq!(dead(&o), None);
        o.info.insert("status".into(), "impaired".into());
        assert_eq!(
            dead(&o).as_deref(),
            Some("impaired (EC2 status check failed)")
        );
        o.info.insert("state".into(), "stopping".into());
        assert_eq!(dead(&o).as_deref(), Some("stopping"));
    }

    /// Issue 12 §2 drift the SDK causes: RDS upgraded `16.3` to `16.4` by itself; the plan
    /// must not ask for a downgrade (main planned `engine_version: 16.4 → 16.3` forever). A
    /// major version change is still planned.
    #[test]
    fn engine_version_is_compared_as_a_version_prefix() {
        use crate::provider::aws::model::satisfies;
        let db = ResKind::DbInstance;
        assert!(satisfies(db, "engine_version", "16.3", Some("16.4")));
        assert!(satisfies(db, "engine_version", "16", Some("16.4")));
        assert!(satisfies(db, "engine_version", "8.0.35", Some("8.0.36")));
        assert!(!satisfies(db, "engine_version", "16.3", Some("16.2")));
        assert!(!satisfies(db, "engine_version", "16.3", Some("17.1")));
        assert!(!satisfies(db, "engine_version", "16.3", None));
        assert!(!satisfies(
            ResKind::Instance,
            "ami",
            "ami-1",
            Some("ami-1.2")
        ));

        let w: Vec<Resource> = want()
            .into_iter()
            .map(|r| {
                if r.kind == ResKind::DbInstance {
                    r.attr("engine_version", "16.3")
                } else {
                    r
                }
            })
            .collect();
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::DbInstance {
                o.res.attrs.insert("engine_version".into(), "16.4".into());
            }
        }
        assert!(diff(&w, &obs).steps.is_empty());
    }

    /// Issue 12 §2 settings observed to be repaired: IMDSv1 allowed on an instance, DNS
    /// hostnames off in the VPC and public addresses off in a subnet are in-place updates.
    #[test]
    fn imds_dns_hostnames_and_public_ips_are_repaired_in_place() {
        let w = want();
        let inst = w.iter().find(|r| r.kind == ResKind::Instance).unwrap();
        assert_eq!(inst.get("metadata.http_tokens"), Some("required"));
        assert_eq!(inst.get("metadata.hop_limit"), Some("2"));
        let mut obs = observed(&w);
        for o in &mut obs {
            let (k, v) = match o.res.kind {
                ResKind::Instance => ("metadata.http_tokens", "optional"),
                ResKind::Vpc => ("dns_hostnames", "false"),
                ResKind::Subnet => ("map_public_ip", "false"),
                _ => continue,
            };
            o.res.attrs.insert(k.into(), v.into());
        }
        let d = diff(&w, &obs);
        assert_eq!(d.steps.len(), 2 + 2 + 1, "{:?}", d.steps);
        assert!(d.steps.iter().all(|s| s.change.action == Action::Update));
    }

    /// Issue 12 §2 data safety: a `database.name` change replaces the database (RDS cannot
    /// rename it); the plan marks the step and refuses it without `--allow-data-loss`.
    #[test]
    fn database_name_change_destroys_data_and_is_refused() {
        let w = want();
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::DbInstance {
                o.res.attrs.insert("db_name".into(), "old".into());
            }
        }
        let d = diff(&w, &obs);
        let db = d
            .steps
            .iter()
            .find(|s| s.change.addr == desired::DB)
            .expect("a step for the database");
        assert_eq!(db.change.action, Action::Replace);
        assert!(destroys_data(db));
        let plan = d.plan("web3");
        let change = plan
            .resources()
            .find(|c| c.addr.to_string() == desired::DB)
            .expect("the database's change");
        let note = change.destroys_data.as_deref().unwrap_or_default();
        assert!(note.contains("final DB snapshot"), "{note}");
        assert!(
            crate::view::plan::render_plan(&plan, &[]).contains(note),
            "the plan shows it"
        );
        let err = refuse_data_loss(plan.resources(), false).expect_err("refused without the flag");
        assert_eq!(err.steps.len(), 1, "{:?}", err.steps);
        assert!(refuse_data_loss(plan.resources(), true).is_ok());
        insta::assert_snapshot!(crate::view::format_report(&miette::Report::new(err), false));
    }

    /// `down` deletes the database and the file system: refused without the flag; an
    /// instance replacement or a security group change loses nothing and is not.
    #[test]
    fn only_databases_and_file_systems_destroy_data() {
        let w = want();
        let down = destroy(&observed(&w));
        let lost: Vec<&str> = down
            .steps
            .iter()
            .filter(|s| destroys_data(s))
            .map(|s| s.change.addr.as_str())
            .collect();
        assert_eq!(lost, [desired::DB, desired::EFS]);
        assert!(refuse_data_loss(down.plan("web3").resources(), false).is_err());

        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::Instance {
                o.res.attrs.insert("instance_type".into(), "t2.nano".into());
            }
        }
        let d = diff(&w, &obs);
        assert!(!d.steps.is_empty());
        assert!(d.steps.iter().all(|s| !destroys_data(s)));
        assert!(refuse_data_loss(d.plan("web3").resources(), false).is_ok());
    }

    /// A database created before deletion protection was hactl's default is an in-place
    /// update (ModifyDBInstance DeletionProtection), never a replacement.
    #[test]
    fn deletion_protection_off_is_an_in_place_update() {
        let w = want();
        let mut obs = observed(&w);
        for o in &mut obs {
            if o.res.kind == ResKind::DbInstance {
                o.res
                    .attrs
                    .insert("deletion_protection".into(), "false".into());
            }
        }
        let d = diff(&w, &obs);
        assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
        assert_eq!(d.steps[0].change.action, Action::Update);
        assert!(!destroys_data(&d.steps[0]));
    }

    #[test]
    fn security_groups_are_least_privilege() {
        let rules: Vec<String> = want()
            .iter()
            .filter(|r| r.kind == ResKind::SecurityGroup)
            .map(|r| format!("{}: {}", r.addr, r.get("ingress").unwrap()))
            .collect();
        insta::assert_snapshot!(rules.join("\n"), @r"
        aws_security_group.lb: tcp/80 from 0.0.0.0/0
        aws_security_group.hosts: tcp/22 from 203.0.113.0/24, tcp/80 from aws_security_group.lb
        aws_security_group.efs: tcp/2049 from aws_security_group.hosts
        aws_security_group.db: tcp/5432 from aws_security_group.hosts
        ");
    }

    #[test]
    fn names_fit_aws_limits() {
        let n = desired::aws_name("a-very-long-stack-name-for-testing-limits", "lb", 32);
        assert!(n.len() <= 32, "{n}");
        assert!(n.ends_with("-lb"));
        assert_eq!(desired::aws_name("web3", "lb", 32), "hactl-web3-lb");
    }
}
