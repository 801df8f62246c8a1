//! Rolling deploys of the stack's app: batches, drain, health gate, rollback and the load
//! probe.
//!
//! - [`rollout`]: the decisions, pure (host order, batches, canary, failure budget, rollback
//!   target, lock staleness, probe statistics) with unit tests beside them;
//! - [`remote`]: what runs on the hosts, built as data (the `app-ctl` script `hactl up`
//!   renders, the image load, haproxy drains, the lock, the history);
//! - [`probe`]: the load probe (HTTP(S) to the VIP or LB, bounded in count and time);
//! - [`balancer`]: an AWS stack's instances as the hosts, and its target group as the place a
//!   batch leaves and rejoins rotation;
//! - [`exec`]: the one place that drives hosts over SSH, in the order `rollout` decides;
//! - [`command`]: what `deploy`/`rollback` decide around a rollout from their settings (the
//!   stack, the probe's target and limits, the version a rollback returns to);
//! - [`demo_image`]: the lab's demo app image, built with no registry.

pub mod balancer;
pub mod command;
pub mod demo_image;
pub mod exec;
pub mod probe;
pub mod remote;
pub mod rollout;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DeployError {
    #[error("stack `{0}` has no `app` section: there is nothing to deploy")]
    #[diagnostic(
        code(hactl::deploy::no_app),
        help("add an `app:` section (image or archive, port, health) to the stack file")
    )]
    NoApp(String),

    #[error("`--stop-first` on stack `{0}`, which has no target group to drain its hosts")]
    #[diagnostic(
        code(hactl::deploy::stop_first),
        help("stopping the running version first is only safe where the balancer has stopped sending to the host: an AWS stack's target group; on hosts the app's health drives the VRRP checks, so stopping it moves the VIP. Leave it out: the new version then starts beside the old one and no request is lost")
    )]
    StopFirst(String),

    #[error("the balancer: {0}")]
    #[diagnostic(
        code(hactl::deploy::balancer),
        help("the hosts of the batch were put back in the target group; `hactl status -f STACK` shows the targets' health")
    )]
    Balancer(String),

    #[error("cannot read the image archive `{path}`: {message}")]
    #[diagnostic(
        code(hactl::deploy::archive),
        help("the archive must be a docker-archive (`docker save`, `podman save`, or `hactl lab demo-image`) with a name in its manifest.json")
    )]
    Archive { path: String, message: String },

    #[error("{host}: cannot connect: {message}")]
    #[diagnostic(
        code(hactl::deploy::connect),
        help("every app host must be reachable before a deploy starts; nothing was changed")
    )]
    Connect { host: String, message: String },

    #[error("the app is not set up on {hosts}")]
    #[diagnostic(
        code(hactl::deploy::not_up),
        help("run `hactl up -f STACK` first: it renders the compose file, nginx's slot switch and `app-ctl`")
    )]
    NotUp { hosts: String },

    #[error("the deploy lock of stack `{stack}` is held by {holder}")]
    #[diagnostic(
        code(hactl::deploy::locked),
        help("wait for it with `--lock-wait 5m`; if that hactl is gone (another machine), remove `{lock}` on {host} by hand")
    )]
    Locked {
        stack: String,
        holder: String,
        host: String,
        lock: String,
    },

    #[error("{host}: {message}")]
    #[diagnostic(code(hactl::deploy::remote))]
    Remote { host: String, message: String },

    #[error("the probe will not send to {addr}: {detail}")]
    #[diagnostic(
        code(hactl::deploy::probe_target),
        help("the probe only sends to loopback, to lab addresses routed through the lab bridge, or to your own endpoint; is the lab up?")
    )]
    ProbeTarget { addr: String, detail: String },

    #[error("bad probe URL: {0}")]
    #[diagnostic(
        code(hactl::deploy::probe_url),
        help("write it as `http[s]://HOST[:PORT]/PATH`, e.g. `http://198.18.0.100:8080/`; `--probe-resolve NAME=ADDR` maps a name by hand, `--probe-ca FILE` trusts a CA")
    )]
    ProbeUrl(String),

    #[error("bad `{flag}`: {detail}")]
    #[diagnostic(
        code(hactl::deploy::probe_flag),
        help("`--probe-resolve NAME=ADDR[:PORT]` (an IP address, like curl's `--resolve`); `--probe-ca FILE.pem` (PEM certificates, `-----BEGIN CERTIFICATE-----`)")
    )]
    ProbeFlag { flag: &'static str, detail: String },

    #[error(
        "no version to roll back to: the deploy history has no earlier good version than `{0}`"
    )]
    #[diagnostic(
        code(hactl::deploy::no_previous),
        help("see `hactl deploy history -f STACK`; deploy a version explicitly with `--image` or `--archive`")
    )]
    NoPrevious(String),
}
