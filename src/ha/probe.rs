//! What a drill's probe saw: outage, failed requests and when another host started answering.
//!
//! The probe sends requests at a fixed rate against the VIP; each [`Sample`] says when it was
//! sent (ms after the probe started), whether it got a 2xx answer, and who answered (the lab's
//! nginx answers with its host name). The outage of a window is measured the way the lab
//! recipe measured it: from the first failed request to the first successful one after the
//! last failure, both by send time, so the figure is comparable with an independent probe.

use serde::Serialize;

/// One probe request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When it was sent, ms after the probe started.
    pub sent_ms: u64,
    pub ok: bool,
    /// Who answered (response body), or the error kind.
    pub who: String,
}

/// One window of samples (e.g. from the fault to the restore).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Window {
    pub total: usize,
    pub failed: usize,
    /// First failure → first success after the last failure; 0 with no failure; `None` when
    /// the service never came back inside the window.
    pub outage_ms: Option<u64>,
    /// When the first failure was sent, ms after the window started.
    pub first_failure_ms: Option<u64>,
    /// When the first successful answer from a host other than `before` was sent, ms after
    /// the window started.
    pub switch_ms: Option<u64>,
    /// That host.
    pub switched_to: Option<String>,
}

/// Analyses the samples sent in `[from_ms, to_ms)`; `before` answered until then.
pub fn window(samples: &[Sample], from_ms: u64, to_ms: u64, before: &str) -> Window {
    let win: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent_ms >= from_ms && s.sent_ms < to_ms)
        .collect();
    let mut w = Window {
        total: win.len(),
        failed: win.iter().filter(|s| !s.ok).count(),
        ..Default::default()
    };
    let first_fail = win.iter().find(|s| !s.ok).map(|s| s.sent_ms);
    let last_fail = win.iter().rev().find(|s| !s.ok).map(|s| s.sent_ms);
    w.first_failure_ms = first_fail.map(|t| t - from_ms);
    w.outage_ms = match (first_fail, last_fail) {
        (Some(first), Some(last)) => win
            .iter()
            .find(|s| s.ok && s.sent_ms > last)
            .map(|s| s.sent_ms - first),
        _ => Some(0),
    };
    if let Some(s) = win.iter().find(|s| s.ok && s.who != before) {
        w.switch_ms = Some(s.sent_ms - from_ms);
        w.switched_to = Some(s.who.clone());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u64, ok: bool, who: &str) -> Sample {
        Sample {
            sent_ms: t,
            ok,
            who: who.into(),
        }
    }

    #[test]
    fn outage_from_first_failure_to_first_success_after_the_last() {
        let samples = vec![
            s(0, true, "host1"),
            s(50, true, "host1"),
            s(100, false, "refused"),
            s(150, true, "host1"),
            s(200, false, "timeout"),
            s(250, true, "host2"),
            s(300, true, "host2"),
        ];
        let w = window(&samples, 60, 1000, "host1");
        assert_eq!(w.total, 5);
        assert_eq!(w.failed, 2);
        assert_eq!(w.outage_ms, Some(150));
        assert_eq!(w.first_failure_ms, Some(40));
        assert_eq!(w.switch_ms, Some(190));
        assert_eq!(w.switched_to.as_deref(), Some("host2"));
    }

    #[test]
    fn no_failure_is_zero_and_no_recovery_is_none() {
        let ok = vec![s(0, true, "a"), s(10, true, "b")];
        assert_eq!(window(&ok, 0, 100, "a").outage_ms, Some(0));
        let dead = vec![s(0, true, "a"), s(10, false, "refused")];
        let w = window(&dead, 0, 100, "a");
        assert_eq!(w.outage_ms, None);
        assert_eq!(w.switch_ms, None);
    }
}
