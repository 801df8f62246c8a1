//! The rollout's decisions, as pure functions over plain data: host order and batches, what
//! each host needs (skip, clean up, blue/green), when to stop and roll back (canary, failure
//! budget, probe budget), which version `rollback` returns to, whether a lock is stale, and
//! the probe's statistics. No SSH, no clock, no I/O: `exec` feeds these what it observed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One of the two app slots on a host. Blue runs on `host_port + i`, green on
/// `host_port + 100 + i` (replica `i`; `crate::onhost::app_ctl::GREEN_PORT_OFFSET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Blue,
    Green,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }
    pub fn parse(s: &str) -> Option<Slot> {
        match s.trim() {
            "blue" => Some(Slot::Blue),
            "green" => Some(Slot::Green),
            _ => None,
        }
    }
}

/// The tag of an image reference: `localhost/hactl-demo:v2` → `v2`; no tag → `latest`;
/// a digest reference → the digest.
pub fn version_of(image: &str) -> String {
    if let Some((_, digest)) = image.split_once('@') {
        return digest.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag.to_string(),
        None => "latest".to_string(),
    }
}

/// The app as observed on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostApp {
    pub host: String,
    /// The slot nginx sends traffic to (none before the first start).
    pub active: Option<Slot>,
    /// The image the active slot runs.
    pub image: Option<String>,
    /// Slots with containers running.
    pub running: BTreeSet<Slot>,
    /// The active slot answers its health check.
    pub healthy: bool,
    /// The target image is already in the host's image store.
    pub has_target_image: bool,
}

/// What one host needs for the deploy to reach `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum HostStep {
    /// Already serving the target from one healthy slot.
    Skip,
    /// Serving the target, but a leftover slot (a killed deploy) still runs: stop it.
    StopStray { slot: Slot },
    /// Start the target in `to`, gate on health, switch nginx, stop `from`.
    BlueGreen { from: Option<Slot>, to: Slot },
}

/// Decides one host's step. A host that serves the target but is unhealthy is redeployed
/// into the other slot (a fresh start) rather than skipped.
pub fn host_step(h: &HostApp, target: &str) -> HostStep {
    let serving_target = h.active.is_some() && h.image.as_deref() == Some(target);
    match h.active {
        Some(active) if serving_target && h.healthy && h.running.contains(&active) => {
            match h.running.iter().find(|s| **s != active) {
                Some(stray) => HostStep::StopStray { slot: *stray },
                None => HostStep::Skip,
            }
        }
        Some(active) => HostStep::BlueGreen {
            from: Some(active),
            to: active.other(),
        },
        None => HostStep::BlueGreen {
            from: None,
            to: Slot::Blue,
        },
    }
}

/// The order hosts are updated in: lowest base priority first, so the likely VIP holder goes
/// last and the VIP moves at most once; file order breaks ties.
pub fn order_hosts(hosts: &[(String, u8)]) -> Vec<String> {
    let mut v: Vec<(usize, &String, u8)> = hosts
        .iter()
        .enumerate()
        .map(|(i, (n, p))| (i, n, *p))
        .collect();
    v.sort_by_key(|(i, _, p)| (*p, *i));
    v.into_iter().map(|(_, n, _)| n.clone()).collect()
}

/// Splits the ordered hosts into batches of `size` (at least 1). The first batch is the
/// canary: nothing else starts until every host in it is healthy.
pub fn batches(order: &[String], size: usize) -> Vec<Vec<String>> {
    order.chunks(size.max(1)).map(|c| c.to_vec()).collect()
}

/// The limits a rollout runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Hosts that may fail (outside the canary) before the deploy rolls back.
    pub max_failed_hosts: usize,
    /// Failed probe requests tolerated; `None` when the probe does not gate the deploy.
    pub probe_failures: Option<u64>,
}

/// Why a rollout stopped and rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// A host of the first batch failed its health gate.
    CanaryFailed { hosts: Vec<String> },
    /// More hosts failed than `--max-failed-hosts` allows.
    TooManyFailedHosts { failed: usize, max: usize },
    /// The probe saw more failed requests than `--probe-budget` allows.
    ProbeFailures { failed: u64, budget: u64 },
    /// The balancer did not take a batch out of rotation (`DeregisterTargets` failed, or the
    /// drain did not end in time): the batch was put back unchanged.
    NotDrained { hosts: Vec<String>, error: String },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::CanaryFailed { hosts } => {
                write!(f, "the canary ({}) failed its health gate", hosts.join(", "))
            }
            StopReason::TooManyFailedHosts { failed, max } => write!(
                f,
                "{failed} host(s) failed, more than `--max-failed-hosts {max}` allows"
            ),
            StopReason::ProbeFailures { failed, budget } => write!(
                f,
                "the probe saw {failed} failed request(s), more than `--probe-budget {budget}` allows"
            ),
            StopReason::NotDrained { hosts, error } => write!(
                f,
                "the target group did not take {} out of rotation ({error}); they were put back unchanged",
                hosts.join(", ")
            ),
        }
    }
}

/// After a batch: go on, or stop and roll back. `failed_in_batch` are this batch's failed
/// hosts, `failed_total` counts every failed host so far.
pub fn after_batch(
    batch_index: usize,
    failed_in_batch: &[String],
    failed_total: usize,
    probe_failed: u64,
    budget: Budget,
) -> Option<StopReason> {
    if batch_index == 0 && !failed_in_batch.is_empty() {
        return Some(StopReason::CanaryFailed {
            hosts: failed_in_batch.to_vec(),
        });
    }
    if failed_total > budget.max_failed_hosts {
        return Some(StopReason::TooManyFailedHosts {
            failed: failed_total,
            max: budget.max_failed_hosts,
        });
    }
    match budget.probe_failures {
        Some(b) if probe_failed > b => Some(StopReason::ProbeFailures {
            failed: probe_failed,
            budget: b,
        }),
        _ => None,
    }
}

/// How a deploy (or rollback) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Deployed,
    RolledBack,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
        }
    }
}

/// One line of the deploy history kept on every app host (`history.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix seconds when the deploy finished.
    pub time: u64,
    pub version: String,
    pub image: String,
    /// `user@machine`.
    pub who: String,
    pub outcome: Outcome,
    /// `deploy`, `rollback` or `up`.
    pub op: String,
    /// Unique per run: the same run is recorded once per host.
    pub id: String,
}

/// Parses history lines; bad lines are skipped (a half-written line from a killed run).
pub fn parse_history(text: &str) -> Vec<HistoryEntry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

/// Every host's history merged: one entry per run, oldest first.
pub fn merge_history(per_host: Vec<Vec<HistoryEntry>>) -> Vec<HistoryEntry> {
    let mut all: Vec<HistoryEntry> = per_host.into_iter().flatten().collect();
    all.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    let mut seen = BTreeSet::new();
    all.retain(|e| seen.insert(e.id.clone()));
    all
}

/// The version `hactl rollback` returns to: the last good image before `current`.
pub fn previous_good(history: &[HistoryEntry], current: &str) -> Option<String> {
    history
        .iter()
        .rev()
        .filter(|e| e.outcome == Outcome::Deployed)
        .map(|e| &e.image)
        .find(|img| img.as_str() != current)
        .cloned()
}

/// Who holds the deploy lock (written into the lock directory on the lock host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub who: String,
    /// The machine hactl ran on.
    pub machine: String,
    pub pid: u32,
    pub op: String,
    /// Unix seconds when taken.
    pub since: u64,
    /// Random token: only the holder releases it.
    pub token: String,
}

impl LockHolder {
    /// A lock is stale when it was taken on this machine by a process that is gone (a killed
    /// hactl). Locks from other machines are never broken automatically.
    pub fn is_stale(&self, this_machine: &str, alive: impl Fn(u32) -> bool) -> bool {
        self.machine == this_machine && !alive(self.pid)
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} on {}, pid {}, since unix time {})",
            self.who, self.op, self.machine, self.pid, self.since
        )
    }
}

/// The probe's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProbeStats {
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Statistics over every request's latency (ms) and the number that failed.
pub fn probe_stats(latencies_ms: &[f64], failed: u64) -> ProbeStats {
    let mut v = latencies_ms.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    ProbeStats {
        requests: v.len() as u64,
        failed,
        p50_ms: round2(percentile(&v, 50.0)),
        p99_ms: round2(percentile(&v, 99.0)),
        max_ms: round2(v.last().copied().unwrap_or(0.0)),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(active: Option<Slot>, image: &str, running: &[Slot], healthy: bool) -> HostApp {
        HostApp {
            host: "h".into(),
            active,
            image: Some(image.into()),
            running: running.iter().copied().collect(),
            healthy,
            has_target_image: true,
        }
    }

    #[test]
    fn versions_from_references() {
        assert_eq!(version_of("localhost/hactl-demo:v2"), "v2");
        assert_eq!(version_of("registry:5000/acme/web"), "latest");
        assert_eq!(version_of("registry:5000/acme/web:1.4"), "1.4");
        assert_eq!(version_of("web@sha256:abc"), "sha256:abc");
    }

    #[test]
    fn slots() {
        assert_eq!(Slot::Blue.other(), Slot::Green);
        assert_eq!(Slot::parse("green\n"), Some(Slot::Green));
    }

    #[test]
    fn host_steps() {
        use Slot::*;
        let t = "img:v2";
        assert_eq!(
            host_step(&app(Some(Blue), t, &[Blue], true), t),
            HostStep::Skip
        );
        assert_eq!(
            host_step(&app(Some(Blue), t, &[Blue, Green], true), t),
            HostStep::StopStray { slot: Green }
        );
        assert_eq!(
            host_step(&app(Some(Blue), "img:v1", &[Blue], true), t),
            HostStep::BlueGreen {
                from: Some(Blue),
                to: Green
            }
        );
        // killed after starting green, before switching: green is reused, blue still serves
        assert_eq!(
            host_step(&app(Some(Blue), "img:v1", &[Blue, Green], true), t),
            HostStep::BlueGreen {
                from: Some(Blue),
                to: Green
            }
        );
        // the target but unhealthy: a fresh start in the other slot
        assert_eq!(
            host_step(&app(Some(Green), t, &[Green], false), t),
            HostStep::BlueGreen {
                from: Some(Green),
                to: Blue
            }
        );
        let fresh = HostApp::default();
        assert_eq!(
            host_step(&fresh, t),
            HostStep::BlueGreen {
                from: None,
                to: Blue
            }
        );
    }

    #[test]
    fn order_puts_the_likely_vip_holder_last() {
        let hosts = vec![
            ("host1".to_string(), 150),
            ("host2".to_string(), 100),
            ("host3".to_string(), 99),
            ("host4".to_string(), 100),
        ];
        assert_eq!(order_hosts(&hosts), ["host3", "host2", "host4", "host1"]);
    }

    #[test]
    fn batching() {
        let order: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(batches(&order, 1).len(), 3);
        assert_eq!(
            batches(&order, 2),
            vec![vec!["a".to_string(), "b".into()], vec!["c".to_string()]]
        );
        assert_eq!(batches(&order, 0).len(), 3, "0 is treated as 1");
        assert_eq!(batches(&order, 10).len(), 1);
    }

    #[test]
    fn stop_rules() {
        let b = Budget {
            max_failed_hosts: 1,
            probe_failures: Some(0),
        };
        let fail = vec!["host3".to_string()];
        assert_eq!(
            after_batch(0, &fail, 1, 0, b),
            Some(StopReason::CanaryFailed {
                hosts: fail.clone()
            }),
            "the canary never spends the budget"
        );
        assert_eq!(after_batch(1, &fail, 1, 0, b), None, "within the budget");
        assert_eq!(
            after_batch(2, &fail, 2, 0, b),
            Some(StopReason::TooManyFailedHosts { failed: 2, max: 1 })
        );
        assert_eq!(
            after_batch(1, &[], 0, 1, b),
            Some(StopReason::ProbeFailures {
                failed: 1,
                budget: 0
            })
        );
        let no_probe_gate = Budget {
            max_failed_hosts: 0,
            probe_failures: None,
        };
        assert_eq!(after_batch(1, &[], 0, 99, no_probe_gate), None);
    }

    fn entry(time: u64, image: &str, outcome: Outcome, id: &str) -> HistoryEntry {
        HistoryEntry {
            time,
            version: version_of(image),
            image: image.into(),
            who: "root@ci".into(),
            outcome,
            op: "deploy".into(),
            id: id.into(),
        }
    }

    #[test]
    fn history_merge_and_previous_good() {
        let h1 = vec![
            entry(1, "i:v1", Outcome::Deployed, "a"),
            entry(2, "i:v2", Outcome::Deployed, "b"),
        ];
        let h2 = vec![
            entry(1, "i:v1", Outcome::Deployed, "a"),
            entry(2, "i:v2", Outcome::Deployed, "b"),
            entry(3, "i:v3", Outcome::RolledBack, "c"),
        ];
        let all = merge_history(vec![h1, h2]);
        assert_eq!(all.len(), 3);
        assert_eq!(previous_good(&all, "i:v2").as_deref(), Some("i:v1"));
        assert_eq!(previous_good(&all, "i:v1").as_deref(), Some("i:v2"));
        assert_eq!(previous_good(&all[..1], "i:v1"), None);
    }

    #[test]
    fn history_lines_survive_a_torn_write() {
        let line = serde_json::to_string(&entry(5, "i:v1", Outcome::Failed, "x")).unwrap();
        let text = format!("{line}\n{{\"time\": 6, \"vers\n");
        assert_eq!(parse_history(&text).len(), 1);
    }

    #[test]
    fn stale_locks() {
        let l = LockHolder {
            who: "root@m1".into(),
            machine: "m1".into(),
            pid: 42,
            op: "deploy".into(),
            since: 0,
            token: "t".into(),
        };
        assert!(l.is_stale("m1", |_| false));
        assert!(!l.is_stale("m1", |_| true));
        assert!(
            !l.is_stale("m2", |_| false),
            "never break another machine's lock"
        );
        assert!(l.to_string().contains("pid 42"));
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let s = probe_stats(&[3.0, 1.0, 2.0], 1);
        assert_eq!((s.requests, s.failed, s.p50_ms, s.max_ms), (3, 1, 2.0, 3.0));
    }
}
