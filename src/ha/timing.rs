//! How long VRRP says a failover takes, from the stack's own numbers.
//!
//! RFC 5798 §6.1 and keepalived: `Skew_Time = ((256 - Priority) × Advert_Interval) / 256` (for
//! VRRP v2 keepalived uses whole seconds: `(256 - Priority) / 256` s) and
//! `Master_Down_Interval = 3 × Advert_Interval + Skew_Time`, both for the backup that takes
//! over. Per scenario:
//!
//! - **keepalived-stop** (SIGTERM): the master sends a priority-0 advert as it leaves, so the
//!   backup takes over after its `Skew_Time`.
//! - **keepalived-kill**, **host-down**, **link-down**: the adverts just stop; the backup waits
//!   the full `Master_Down_Interval`. After a SIGKILL the old master keeps the address, so
//!   this is when the *second* holder appears (split brain), not when service resumes.
//! - **service-stop**: the guarding check must fail `fall` times `interval` apart. With a
//!   weight-0 check the master then enters FAULT and leaves with a priority-0 advert (the
//!   backup follows after its `Skew_Time`); with a negative weight the master's next advert
//!   (at most `advert_int` later) carries the lower priority and the backup preempts at once
//!   (after `preempt_delay`, if set).
//!
//! Every figure is an upper bound measured from the fault: a fault lands at a random phase of
//! the advert and check timers, so real outages are usually shorter.

use serde::Serialize;

use super::priority::{self, Failure, Model, Standing, Warning};

/// The fault a drill injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Stop the service the VRRP check guards (nginx by default) on the holder.
    ServiceStop,
    /// Stop keepalived cleanly (SIGTERM): it hands the VIP over.
    KeepalivedStop,
    /// SIGKILL keepalived: it dies holding the VIP (split brain until repaired).
    KeepalivedKill,
    /// Kill the whole holder host (lab only).
    HostDown,
    /// Take the holder's network link down (lab only).
    LinkDown,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::ServiceStop => "service-stop",
            Scenario::KeepalivedStop => "keepalived-stop",
            Scenario::KeepalivedKill => "keepalived-kill",
            Scenario::HostDown => "host-down",
            Scenario::LinkDown => "link-down",
        }
    }
}

/// `Skew_Time` in seconds for a backup of `priority`.
pub fn skew_s(vrrp_version: u8, advert_int_s: f64, priority: i64) -> f64 {
    let p = priority.clamp(priority::MIN_PRIORITY, 255) as f64;
    if vrrp_version == 2 {
        (256.0 - p) / 256.0
    } else {
        (256.0 - p) * advert_int_s / 256.0
    }
}

/// `Master_Down_Interval` in seconds for a backup of `priority`.
pub fn master_down_s(vrrp_version: u8, advert_int_s: f64, priority: i64) -> f64 {
    3.0 * advert_int_s + skew_s(vrrp_version, advert_int_s, priority)
}

/// What VRRP promises for one fault on one holder.
#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    /// Who should hold the VIP once the fault has taken effect.
    pub new_holder: Option<String>,
    /// Upper bound on the time from the fault to the new holder, when one is expected.
    pub expected_ms: Option<u64>,
    /// The formula with the stack's numbers, for the report.
    pub basis: String,
}

/// The expectation for `scenario` injected on `holder`. `failing_checks` are the checks the
/// stopped service makes fail (service-stop only).
pub fn expect(
    model: &Model,
    scenario: Scenario,
    holder: &str,
    failing_checks: &[String],
) -> Expectation {
    let mut failure = Failure::default();
    match scenario {
        Scenario::ServiceStop => {
            for c in failing_checks {
                failure.failing.insert((holder.to_string(), c.clone()));
            }
        }
        _ => {
            failure.down.insert(holder.to_string());
        }
    }
    let mut e = priority::explain(model, vec![("drill".into(), failure)]);
    let case = e.cases.pop();
    let new_holder = case.as_ref().and_then(|c| c.holder.clone());
    let new_prio = case
        .as_ref()
        .and_then(|c| {
            c.standings
                .iter()
                .find(|(n, _)| Some(n) == new_holder.as_ref())
                .map(|(_, s)| *s)
        })
        .and_then(|s| match s {
            Standing::Up(p) => Some(p),
            _ => None,
        });
    let (v, a) = (model.vrrp_version, model.advert_int_s);
    let Some(p) = new_prio.filter(|_| new_holder.as_deref() != Some(holder)) else {
        return Expectation {
            new_holder,
            expected_ms: None,
            basis: "no other host should take the VIP in this case (see `hactl explain`)".into(),
        };
    };
    let ms = |s: f64| (s * 1000.0).round() as u64;
    let (secs, basis) = match scenario {
        Scenario::KeepalivedStop => {
            let s = skew_s(v, a, p);
            (
                s,
                format!(
                    "priority-0 advert, then Skew_Time (256 - {p}) {} / 256 = {} ms",
                    if v == 2 {
                        "× 1s".to_string()
                    } else {
                        format!("× {}", priority::secs(a))
                    },
                    ms(s)
                ),
            )
        }
        Scenario::KeepalivedKill | Scenario::HostDown | Scenario::LinkDown => {
            let s = master_down_s(v, a, p);
            (
                s,
                format!(
                    "Master_Down_Interval 3 × {} + Skew_Time ({} ms, priority {p}) = {} ms",
                    priority::secs(a),
                    ms(skew_s(v, a, p)),
                    ms(s)
                ),
            )
        }
        Scenario::ServiceStop => {
            let checks: Vec<_> = model
                .checks
                .iter()
                .filter(|c| failing_checks.contains(&c.name))
                .collect();
            let detect = checks
                .iter()
                .map(|c| c.interval_s * c.fall.max(1) as f64)
                .fold(0.0, f64::max);
            let fault = checks.iter().any(|c| c.weight == 0);
            let mut basis = format!("check interval × fall = {} ms", ms(detect));
            let s = if fault {
                // FAULT: the master leaves with a priority-0 advert, as on a clean stop.
                let skew = skew_s(v, a, p);
                basis.push_str(&format!(
                    ", FAULT sends a priority-0 advert, + Skew_Time {} ms",
                    ms(skew)
                ));
                detect + skew
            } else {
                let delay = model.preempt_delay_s.unwrap_or(0.0);
                basis.push_str(&format!(", + one advert {} ms", ms(a)));
                if delay > 0.0 {
                    basis.push_str(&format!(", + preempt_delay {} ms", ms(delay)));
                }
                detect + a + delay
            };
            basis.push_str(&format!(" = {} ms", ms(s)));
            (s, basis)
        }
    };
    Expectation {
        new_holder,
        expected_ms: Some(ms(secs)),
        basis,
    }
}

/// The lowest `down_after` that rides out one lost packet: a dropped SYN is retransmitted
/// after the initial RTO of 1 s (RFC 6298 §2.1), and sentinel pings each instance once a
/// second, so a `down_after` of 1 s or less turns one lost packet into a failover.
pub const SENTINEL_MIN_DOWN_AFTER_S: f64 = 1.0;

/// Timing risks of the election: checks that notice a failure later than VRRP notices a dead
/// host (the service-stop failover is then the slow one). Computed with the figures
/// [`expect`] uses.
pub fn risks(model: &Model) -> Vec<Warning> {
    let mut out = Vec::new();
    // The backup that takes over is the second-highest base priority: its Master_Down_Interval
    // is what a dead host costs.
    let mut bases: Vec<i64> = model.members.iter().map(|m| m.base).collect();
    bases.sort_unstable_by(|a, b| b.cmp(a));
    let Some(&backup) = bases.get(1) else {
        return out;
    };
    let down = master_down_s(model.vrrp_version, model.advert_int_s, backup);
    for (i, c) in model.checks.iter().enumerate() {
        let detect = c.interval_s * c.fall.max(1) as f64;
        if detect > down {
            out.push(Warning {
                code: "hactl::vrrp::slow_check",
                level: priority::Level::Risk,
                message: format!(
                    "check `{}` notices a failure after fall × interval = {} × {} = {}, later \
                     than VRRP notices a dead host (Master_Down_Interval {}): a stopped service \
                     keeps the VIP {} longer than a dead host does; lower `fall` or `interval`",
                    c.name,
                    c.fall,
                    priority::secs(c.interval_s),
                    priority::secs(detect),
                    priority::secs(down),
                    priority::secs(detect - down)
                ),
                key: Some(format!("vip.checks.{i}.fall")),
            });
        }
    }
    out
}

/// Timing risks of the stack's redis services: a sentinel `down_after` so short that one lost
/// packet starts a failover (each one drops the writes in flight and flips every client).
pub fn service_risks(stack: &crate::stack::Stack) -> Vec<Warning> {
    use crate::stack::model::{Promotion, ServiceKind};
    let mut out = Vec::new();
    for (i, s) in stack.file.services.iter().enumerate() {
        if s.kind.value != ServiceKind::Redis {
            continue;
        }
        let sentinel = s
            .promotion
            .as_ref()
            .is_none_or(|p| p.value == Promotion::Sentinel);
        let Some(d) = s.down_after.as_ref().filter(|_| sentinel) else {
            continue;
        };
        let secs = d.value.as_secs_f64();
        if secs <= SENTINEL_MIN_DOWN_AFTER_S {
            out.push(Warning {
                code: "hactl::redis::down_after_short",
                level: priority::Level::Risk,
                message: format!(
                    "service `{}`: sentinel `down_after` {} is within one lost packet (a dropped \
                     SYN is resent after 1 s, RFC 6298 §2.1; sentinel pings once a second): a \
                     network hiccup of {} marks the primary down and promotes a replica, \
                     dropping the writes in flight; use 2s or more",
                    s.name.value,
                    priority::secs(secs),
                    priority::secs(secs)
                ),
                key: Some(format!("services.{i}.down_after")),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::priority::{Check, Member};

    fn lab(advert: f64, version: u8) -> Model {
        Model {
            instance: "VI_1".into(),
            vip: "198.18.0.100/24".into(),
            vrrp_version: version,
            advert_int_s: advert,
            preempt: true,
            preempt_delay_s: None,
            members: [("host1", 11, 150), ("host2", 12, 100), ("host3", 13, 99)]
                .iter()
                .map(|(n, a, b)| Member {
                    name: n.to_string(),
                    address: format!("198.18.0.{a}").parse().expect("address"),
                    base: *b,
                })
                .collect(),
            checks: vec![Check {
                name: "nginx".into(),
                weight: -100,
                interval_s: 1.0,
                fall: 1,
                rise: 1,
            }],
            hearing: crate::ha::hearing::Graph::complete(
                ["host1", "host2", "host3"].map(String::from).to_vec(),
            ),
        }
    }

    #[test]
    fn rfc_timers() {
        assert!((skew_s(2, 1.0, 100) - 0.609375).abs() < 1e-9);
        assert!((master_down_s(2, 1.0, 100) - 3.609375).abs() < 1e-9);
        assert!((skew_s(3, 0.1, 100) - 0.0609375).abs() < 1e-9);
        assert!((master_down_s(3, 0.1, 100) - 0.3609375).abs() < 1e-9);
    }

    #[test]
    fn lab_expectations() {
        let m = lab(1.0, 2);
        let e = expect(&m, Scenario::ServiceStop, "host1", &["nginx".into()]);
        assert_eq!(e.new_holder.as_deref(), Some("host2"));
        assert_eq!(e.expected_ms, Some(2000));
        let e = expect(&m, Scenario::KeepalivedStop, "host1", &[]);
        assert_eq!(e.expected_ms, Some(609));
        let e = expect(&m, Scenario::LinkDown, "host1", &[]);
        assert_eq!(e.expected_ms, Some(3609));
        let m = lab(0.1, 3);
        let e = expect(&m, Scenario::HostDown, "host1", &[]);
        assert_eq!(e.expected_ms, Some(361));
        let e = expect(&m, Scenario::ServiceStop, "host1", &["nginx".into()]);
        assert_eq!(e.expected_ms, Some(1100));
        // Weight 0: FAULT hands over like a clean stop, after the check's detection time.
        let mut m = lab(1.0, 2);
        m.checks[0].weight = 0;
        let e = expect(&m, Scenario::ServiceStop, "host1", &["nginx".into()]);
        assert_eq!(e.new_holder.as_deref(), Some("host2"));
        assert_eq!(e.expected_ms, Some(1609));
        // A weight too small to move the VIP: no failover is expected.
        let mut m = lab(1.0, 2);
        m.checks[0].weight = -10;
        let e = expect(&m, Scenario::ServiceStop, "host1", &["nginx".into()]);
        assert_eq!(e.new_holder.as_deref(), Some("host1"));
        assert_eq!(e.expected_ms, None);
    }
}
