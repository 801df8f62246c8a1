//! Operating HA, the pure part: who hears whose VRRP adverts ([`hearing`]), keepalived's
//! priority arithmetic and the RFC 5798 state machine ([`priority`]), the failover time VRRP
//! promises for a given configuration ([`timing`]), and the analysis of a drill's probe samples
//! ([`probe`]). [`risks`] is the one list of warnings every command prints.
//!
//! Nothing here does I/O: `hactl explain`, `hactl drill` and `hactl status` feed it what they
//! read from the stack and from the hosts, and print what it returns. Keeping the maths here
//! lets the unit tests pin it against keepalived's documented behaviour and seed 004's worked
//! examples without a lab.

pub mod cases;
/// Who hears whose adverts: the graph lives with the stack, whose validation refuses a VIP
/// with two elections; HA reads it from there.
pub use crate::stack::hearing;
pub mod logs;
pub mod priority;
pub mod probe;
pub mod timing;

/// Every risk `validate`, `plan`, `up` and `explain` print for a stack: the election's (splits,
/// checks that move nothing, flapping, slow checks) and the services' timing.
pub fn risks(stack: &crate::stack::Stack) -> Vec<priority::Warning> {
    let mut out = priority::risks(stack);
    out.extend(timing::service_risks(stack));
    out.extend(check_risks(stack));
    out
}

/// [`risks`] as located warnings after the stack's own (each at the key it is about): the
/// list `validate`, `plan` and `up` print.
pub fn problems(stack: &crate::stack::Stack) -> Vec<crate::stack::diag::Problem> {
    let risks = risks(stack)
        .into_iter()
        .map(|w| (w.code, w.message, w.key))
        .collect();
    crate::stack::located_warnings(stack, risks)
}

/// Commands that succeed whatever the host's state.
const ALWAYS_TRUE: &[&str] = &["true", "/bin/true", "/usr/bin/true", ":", "exit 0"];

/// Checks that can only ever pass: a VRRP check whose script is `true` (or `exit 0`, `:`)
/// never fails, so it never moves the VIP whatever breaks.
pub fn check_risks(stack: &crate::stack::Stack) -> Vec<priority::Warning> {
    let Some(vip) = &stack.file.vip else {
        return Vec::new();
    };
    vip.checks
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let script = c.script.as_ref()?;
            let words = script
                .value
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            ALWAYS_TRUE
                .contains(&words.as_str())
                .then(|| priority::Warning {
                    code: "hactl::vrrp::check_always_passes",
                    level: priority::Level::Risk,
                    message: format!(
                    "check `{}` runs `{}`, which always succeeds: it can never fail, so it never \
                     moves the VIP; check the service itself (`service:`, or `http:` on the \
                     app's health endpoint)",
                    c.name.value, script.value
                ),
                    key: Some(format!("vip.checks.{i}.script")),
                })
        })
        .collect()
}
