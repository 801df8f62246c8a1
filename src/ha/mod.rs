//! Operating HA, the pure part: keepalived's priority arithmetic ([`priority`]), the failover
//! time VRRP promises for a given configuration ([`timing`]), and the analysis of a drill's
//! probe samples ([`probe`]).
//!
//! Nothing here does I/O: `hactl explain`, `hactl drill` and `hactl status` feed it what they
//! read from the stack and from the hosts, and print what it returns. Keeping the maths here
//! lets the unit tests pin it against keepalived's documented behaviour and seed 004's worked
//! examples without a lab.

pub mod logs;
pub mod priority;
pub mod probe;
pub mod timing;
