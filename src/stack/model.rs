//! The stack file's schema as Rust types: what `stack::load` deserializes a YAML file into.
//!
//! One schema serves both HA models (`provider: hosts` with a keepalived VIP, `provider: aws`
//! with an ELB) and everything later issues need (`app`, `services`, `vault`, `state`). Every
//! struct rejects unknown keys. Values that later semantic checks point at are wrapped in
//! [`Spanned`] so a diagnostic can name their exact line and column; enums are wrapped whole
//! because serde-saphyr loses spans inside them. `Spanned<T>` serializes as `T`, so the same
//! types feed the template context unchanged.
//!
//! Field documentation here doubles as the schema reference in `docs/stack.md`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use serde_saphyr::Spanned;

use super::duration::Dur;

/// The whole stack file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackFile {
    /// Stack name: `[a-z0-9-]`, 1–40 chars. Tags, state file and vault names derive from it.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `hosts` (existing machines reached by SSH) or `aws`.
    #[schemars(with = "ProviderKind")]
    pub provider: Spanned<ProviderKind>,
    /// How hactl reaches every host over SSH.
    #[serde(default)]
    pub ssh: SshSpec,
    /// Existing hosts (`provider: hosts`). With `provider: aws` the hosts come from `aws.hosts`.
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
    /// AWS resources (`provider: aws` only).
    #[serde(default)]
    pub aws: Option<AwsSpec>,
    /// The keepalived virtual IP (`provider: hosts`; on AWS only for active/passive services).
    #[serde(default)]
    pub vip: Option<VipSpec>,
    /// nginx on every host: reverse proxy to the app, `/healthz`.
    #[serde(default)]
    pub nginx: Option<NginxSpec>,
    /// haproxy on the VIP hosts: balances across every host's nginx, admin socket for drains.
    #[serde(default)]
    pub haproxy: Option<HaproxySpec>,
    /// The web application, run by compose on every host.
    #[serde(default)]
    pub app: Option<AppSpec>,
    /// Other HA services: active/passive syslog, primary/replica redis.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Where the age vault lives and which identity opens it.
    #[serde(default)]
    pub vault: Option<VaultSpec>,
    /// Where hactl keeps its state (AWS resource ids, outputs) and its lock.
    #[serde(default)]
    pub state: Option<StateSpec>,
    /// Extra files rendered from user templates onto every host.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Free values for templates: `{{ vars.NAME }}`.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// A directory of templates that override the embedded ones (same file names).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub templates_dir: Option<Spanned<String>>,
    /// Let `files[].template` and `templates_dir` name files outside the stack file's folder
    /// (absolute paths, `..`, symlinks that lead out). Off by default, so that rendering a stack
    /// from an untrusted pull request cannot read a file such as `/etc/shadow` into its output.
    #[serde(default)]
    pub allow_templates_outside_stack_dir: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Hosts,
    Aws,
}

/// A secret name: what `{{ secret.NAME }}` and `secret: NAME` can spell (letters, digits and
/// `_`, not starting with a digit, at most 128). The vault holds only such names.
pub fn valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// A string given inline or taken from the vault: `password: {secret: db_password}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    Secret(SecretRef),
    Plain(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    #[serde(default = "default_ssh_user")]
    pub user: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Private key; relative paths are relative to the stack file. Defaults to ssh's own.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub identity_file: Option<Spanned<String>>,
    /// A known_hosts file checked strictly. Defaults to `~/.ssh/known_hosts`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub known_hosts: Option<Spanned<String>>,
    /// An ssh_config file (HostName / ProxyCommand mappings, bastions).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub config_file: Option<Spanned<String>>,
    /// A bastion: `user@host:port`.
    #[serde(default)]
    pub proxy_jump: Option<String>,
    #[serde(default = "default_connect_timeout")]
    #[schemars(with = "Dur")]
    pub connect_timeout: Spanned<Dur>,
    /// How many hosts are worked on at once (1–1024; default 100). Each is one SSH connection
    /// from this machine; pyinfra's default is every host at once, Ansible's `forks` is 5.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
}

impl Default for SshSpec {
    fn default() -> Self {
        SshSpec {
            user: default_ssh_user(),
            port: default_ssh_port(),
            identity_file: None,
            known_hosts: None,
            config_file: None,
            proxy_jump: None,
            connect_timeout: default_connect_timeout(),
            parallelism: default_parallelism(),
        }
    }
}

fn default_ssh_user() -> String {
    "root".into()
}
fn default_ssh_port() -> u16 {
    22
}
fn default_connect_timeout() -> Spanned<Dur> {
    unspanned(Dur::from_secs(5))
}
/// 100, not fewer: hosts started in an earlier wave run their checks while the next wave is
/// pushed, so on a 50-host lab 32 at once took 5.8–6.3 s against 4.8–5.9 s for all of them
/// (`docs/benchmarks.md`).
fn default_parallelism() -> usize {
    100
}

/// A value with no source location, for defaults.
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// One existing host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Unique name (also the SSH host alias when `ssh.config_file` is set).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The address VRRP and the balancers use (IPv4 or IPv6).
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    /// Where SSH connects, if not `address` (a name from `ssh.config_file`, a NAT address).
    #[serde(default)]
    pub ssh_host: Option<String>,
    /// Base VRRP priority, 1–254. Default: 150 for the first host, then 100, 99, 98, …
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub priority: Option<Spanned<i64>>,
    /// Source address of this host's VRRP adverts (`unicast_src_ip`, or `mcast_src_ip` in
    /// multicast mode); default: `address`. Seed 001 had it hard-coded.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub source_ip: Option<Spanned<String>>,
    /// Network interface for VRRP; defaults to `vip.interface`.
    #[serde(default)]
    pub interface: Option<String>,
    /// Unicast peers by host name; default: every other `vip` host. Must be complete: every
    /// `vip` host hears every other (see `ha::hearing`).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub peers: Option<Spanned<Vec<String>>>,
    /// What runs here: any of `vip`, `app`, or a service name. Default: `vip` and `app`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub roles: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VrrpMode {
    Unicast,
    Multicast,
}

/// The keepalived virtual IP.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VipSpec {
    /// The virtual address with its prefix, e.g. `198.18.0.100/24`; it must lie inside the
    /// hosts' subnet.
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    #[serde(default = "default_interface")]
    pub interface: String,
    /// VRRP instance name.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// 1–255, the same on every host, unique on the LAN.
    #[schemars(with = "i64")]
    pub virtual_router_id: Spanned<i64>,
    /// Advert interval: `1s`, `100ms`. Sub-second needs VRRP v3 (chosen automatically).
    #[serde(default = "default_advert")]
    #[schemars(with = "Dur")]
    pub advert_int: Spanned<Dur>,
    /// 2 or 3; default 3 when `advert_int` is sub-second, else 2.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub vrrp_version: Option<Spanned<i64>>,
    #[serde(default = "default_mode")]
    #[schemars(with = "VrrpMode")]
    pub mode: Spanned<VrrpMode>,
    /// PASS authentication (VRRP v2 only); at most 8 characters.
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub auth_pass: Option<Spanned<Value>>,
    /// Take the VIP back when a higher-priority host returns.
    #[serde(default = "default_true")]
    pub preempt: bool,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub preempt_delay: Option<Spanned<Dur>>,
    /// Gratuitous ARP settings.
    #[serde(default)]
    pub garp: GarpSpec,
    /// Health checks; each failing check changes the host's priority by its weight.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Hooks run on state transitions.
    #[serde(default)]
    pub notify: NotifySpec,
    /// User that runs check and notify scripts (`enable_script_security`).
    #[serde(default = "default_script_user")]
    pub script_user: String,
    /// On AWS: move the VIP with the EC2 API from the notify hook.
    #[serde(default)]
    pub aws: Option<VipAwsSpec>,
}

fn default_interface() -> String {
    "eth0".into()
}
fn default_instance() -> String {
    "VI_1".into()
}
fn default_advert() -> Spanned<Dur> {
    unspanned(Dur::from_secs(1))
}
fn default_mode() -> Spanned<VrrpMode> {
    unspanned(VrrpMode::Unicast)
}
fn default_true() -> bool {
    true
}
fn default_script_user() -> String {
    "root".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GarpSpec {
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub master_delay: Option<Spanned<Dur>>,
    #[serde(default)]
    pub master_repeat: Option<u32>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub master_refresh: Option<Spanned<Dur>>,
}

/// A VRRP health check (keepalived `vrrp_script`). Exactly one of `service`, `http`, `script`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// A service that must be running: `nginx`, `haproxy`, `app`, or a service's name.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub service: Option<Spanned<String>>,
    /// A URL that must answer 2xx or 3xx: an HTTP/1.0 `GET` from the host (bash's `/dev/tcp` for
    /// `http://`, see `render/http_probe.rs`; curl for `https://`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub http: Option<Spanned<String>>,
    /// A command line.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub script: Option<Spanned<String>>,
    /// Whole seconds, or under a second (`100ms`): keepalived's `vrrp_script` counts whole
    /// seconds, so a sub-second check runs as a loop that reports through a `track_file`.
    #[serde(default = "default_check_interval")]
    #[schemars(with = "Dur")]
    pub interval: Spanned<Dur>,
    #[serde(default = "default_check_timeout")]
    #[schemars(with = "Dur")]
    pub timeout: Spanned<Dur>,
    #[serde(default = "default_fall")]
    #[schemars(with = "i64")]
    pub fall: Spanned<i64>,
    #[serde(default = "default_rise")]
    #[schemars(with = "i64")]
    pub rise: Spanned<i64>,
    /// −253…253: added to the priority while the check passes (positive) or subtracted while
    /// it fails (negative). 0 means a failing check puts the instance in FAULT.
    #[serde(default = "default_weight")]
    #[schemars(with = "i64")]
    pub weight: Spanned<i64>,
}

impl CheckSpec {
    /// Whether the check runs more often than keepalived's `vrrp_script` can (once a second).
    pub fn sub_second(&self) -> bool {
        self.interval.value < Dur::from_secs(1)
    }

    /// The timeout a run gets: as written, or — when the stack leaves it to the default —
    /// never longer than the interval (the 1 s default would not fit a `100ms` check).
    pub fn run_timeout(&self) -> Dur {
        if self.timeout.referenced.line() == 0 {
            self.timeout.value.min(self.interval.value)
        } else {
            self.timeout.value
        }
    }
}

fn default_check_interval() -> Spanned<Dur> {
    unspanned(Dur::from_secs(1))
}
fn default_check_timeout() -> Spanned<Dur> {
    unspanned(Dur::from_secs(1))
}
fn default_weight() -> Spanned<i64> {
    unspanned(0)
}
fn default_fall() -> Spanned<i64> {
    unspanned(2)
}
fn default_rise() -> Spanned<i64> {
    unspanned(2)
}

/// Hooks run on VRRP transitions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    #[serde(default)]
    pub master: Vec<HookSpec>,
    #[serde(default)]
    pub backup: Vec<HookSpec>,
    #[serde(default)]
    pub fault: Vec<HookSpec>,
    #[serde(default)]
    pub stop: Vec<HookSpec>,
}

/// One hook: exactly one of `command`, `webhook`, `email`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    #[serde(default)]
    pub command: Option<String>,
    /// POSTs `{"host","instance","state","time"}` as JSON.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub webhook: Option<Spanned<String>>,
    /// Sends a mail through the host's sendmail.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub email: Option<Spanned<String>>,
}

/// Seed 000: on AWS (or hosts on EC2), the VIP is a secondary private IP, or an Elastic IP on
/// that private IP, that the new master's notify hook moves with the EC2 API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VipAwsSpec {
    /// `secondary_ip` (AssignPrivateIpAddresses with reassignment) or `elastic_ip` (the same,
    /// then AssociateAddress of `allocation_id` to that private IP).
    #[schemars(with = "String")]
    pub mode: Spanned<String>,
    /// The Elastic IP's allocation id (`eipalloc-…`), `elastic_ip` only.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub allocation_id: Option<Spanned<String>>,
    /// The hosts' region; default `aws.region` with `provider: aws`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<Spanned<String>>,
    /// The EC2 API endpoint (a VPC endpoint, a test server); default
    /// `https://ec2.REGION.amazonaws.com/`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<Spanned<String>>,
    /// Each VIP host's network interface id (`host: eni-…`). Empty: each host asks the instance
    /// metadata service for its primary interface.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub interfaces: BTreeMap<String, Spanned<String>>,
    /// API credentials, both or neither; without them the hook uses the instance role's.
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub access_key_id: Option<Spanned<Value>>,
    /// Must be `{secret: NAME}`.
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub secret_access_key: Option<Spanned<Value>>,
    /// The instance metadata service (IMDSv2); `http://[fd00:ec2::254]` on IPv6-only instances.
    #[serde(default = "default_metadata_endpoint")]
    #[schemars(with = "String")]
    pub metadata_endpoint: Spanned<String>,
    /// API calls per move before the hook gives up (1–20).
    #[serde(default = "default_aws_attempts")]
    #[schemars(with = "i64")]
    pub attempts: Spanned<i64>,
    /// The longest one move may take, retries included (1 s–5 min).
    #[serde(default = "default_aws_deadline")]
    #[schemars(with = "Dur")]
    pub deadline: Spanned<Dur>,
}

fn default_metadata_endpoint() -> Spanned<String> {
    unspanned("http://169.254.169.254".into())
}
fn default_aws_attempts() -> Spanned<i64> {
    unspanned(5)
}
fn default_aws_deadline() -> Spanned<Dur> {
    unspanned(Dur::from_secs(20))
}

/// nginx on every app host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NginxSpec {
    #[serde(default = "default_http_port")]
    #[schemars(with = "i64")]
    pub listen: Spanned<i64>,
    #[serde(default = "default_server_name")]
    pub server_name: String,
    #[serde(default = "default_health_path")]
    pub health_path: String,
    #[serde(default = "default_worker_connections")]
    pub worker_connections: u32,
    /// Extra `location` blocks or directives placed inside `server { }`.
    #[serde(default)]
    pub extra: Option<String>,
}

fn default_http_port() -> Spanned<i64> {
    unspanned(80)
}
fn default_server_name() -> String {
    "_".into()
}
fn default_health_path() -> String {
    "/healthz".into()
}
fn default_worker_connections() -> u32 {
    1024
}

/// haproxy on the VIP hosts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaproxySpec {
    #[serde(default = "default_http_port")]
    #[schemars(with = "i64")]
    pub listen: Spanned<i64>,
    /// Port of the backends (every app host's nginx); default `nginx.listen`.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub backend_port: Option<Spanned<i64>>,
    #[serde(default = "default_health_path")]
    pub check_path: String,
    #[serde(default = "default_haproxy_inter")]
    #[schemars(with = "Dur")]
    pub check_interval: Spanned<Dur>,
    #[serde(default = "default_fall")]
    #[schemars(with = "i64")]
    pub fall: Spanned<i64>,
    #[serde(default = "default_rise")]
    #[schemars(with = "i64")]
    pub rise: Spanned<i64>,
    #[serde(default = "default_admin_socket")]
    pub admin_socket: String,
    /// Longest wait for a drained server's sessions to reach 0.
    #[serde(default = "default_drain_timeout")]
    #[schemars(with = "Dur")]
    pub drain_timeout: Spanned<Dur>,
    /// Stats page port (0 = off).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub stats_port: Option<Spanned<i64>>,
}

fn default_haproxy_inter() -> Spanned<Dur> {
    unspanned(Dur::from_secs(2))
}
fn default_admin_socket() -> String {
    "/run/haproxy/admin.sock".into()
}
fn default_drain_timeout() -> Spanned<Dur> {
    unspanned(Dur::from_secs(30))
}

/// `app.runtime`: the container runtime on the app hosts (defined with the on-host
/// vocabulary, which builds its commands).
pub use crate::onhost::app_ctl::Runtime;

/// The web app, run by compose on every app host behind nginx.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    #[serde(default = "default_app_name")]
    pub name: String,
    /// Registry reference (`ghcr.io/acme/web:1.4`). One of `image`, `archive`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub image: Option<Spanned<String>>,
    /// A local image tarball copied over SSH and loaded (air-gapped hosts, the lab).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub archive: Option<Spanned<String>>,
    /// Port the app listens on inside the container.
    #[schemars(with = "i64")]
    pub port: Spanned<i64>,
    /// First host port; blue/green uses `host_port` and `host_port + 100`.
    #[serde(default = "default_app_host_port")]
    #[schemars(with = "i64")]
    pub host_port: Spanned<i64>,
    #[serde(default = "default_one")]
    #[schemars(with = "i64")]
    pub replicas: Spanned<i64>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Value>")]
    pub env: BTreeMap<String, Spanned<Value>>,
    /// `host_path:container_path[:ro]`.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub health: AppHealthSpec,
    #[serde(default = "default_grace")]
    #[schemars(with = "Dur")]
    pub stop_grace_period: Spanned<Dur>,
    #[serde(default = "default_runtime")]
    #[schemars(with = "Runtime")]
    pub runtime: Spanned<Runtime>,
}

fn default_app_name() -> String {
    "app".into()
}
fn default_app_host_port() -> Spanned<i64> {
    unspanned(8000)
}
fn default_one() -> Spanned<i64> {
    unspanned(1)
}
fn default_grace() -> Spanned<Dur> {
    unspanned(Dur::from_secs(10))
}
fn default_runtime() -> Spanned<Runtime> {
    unspanned(Runtime::Docker)
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppHealthSpec {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_app_health_interval")]
    #[schemars(with = "Dur")]
    pub interval: Spanned<Dur>,
    #[serde(default = "default_check_timeout")]
    #[schemars(with = "Dur")]
    pub timeout: Spanned<Dur>,
    #[serde(default = "default_healthy_threshold")]
    #[schemars(with = "i64")]
    pub healthy_threshold: Spanned<i64>,
    /// Longest wait for a new version to become healthy before rolling back.
    #[serde(default = "default_health_deadline")]
    #[schemars(with = "Dur")]
    pub deadline: Spanned<Dur>,
}

impl Default for AppHealthSpec {
    fn default() -> Self {
        AppHealthSpec {
            path: default_health_path(),
            interval: default_app_health_interval(),
            timeout: default_check_timeout(),
            healthy_threshold: default_healthy_threshold(),
            deadline: default_health_deadline(),
        }
    }
}

fn default_app_health_interval() -> Spanned<Dur> {
    unspanned(Dur::from_millis(500))
}
fn default_healthy_threshold() -> Spanned<i64> {
    unspanned(2)
}
fn default_health_deadline() -> Spanned<Dur> {
    unspanned(Dur::from_secs(60))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Syslog,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HaMode {
    ActivePassive,
    PrimaryReplica,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Promotion {
    Sentinel,
    Hactl,
}

/// An HA service beyond the web app (seeds 000 and 002).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "ServiceKind")]
    pub kind: Spanned<ServiceKind>,
    #[schemars(with = "HaMode")]
    pub mode: Spanned<HaMode>,
    /// Hosts that run it; default: every host.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub hosts: Option<Spanned<Vec<String>>>,
    /// Listening ports (syslog: 514; redis: one instance per port, e.g. 9001, 9002).
    #[serde(default)]
    #[schemars(with = "Vec<i64>")]
    pub ports: Vec<Spanned<i64>>,
    /// Ports haproxy (on the `vip` hosts) listens on for this service, one per entry of
    /// `ports`, each routed to the current primary/active instance (seed 002: 8001 → 9001).
    #[serde(default)]
    #[schemars(with = "Vec<i64>")]
    pub proxy_ports: Vec<Spanned<i64>>,
    /// redis: hosts outside the service (app servers, seed 002's `app`) that get a local
    /// haproxy: each of `client_ports` on 127.0.0.1 forwards to the first `vip` host's proxy
    /// port, with the other `vip` hosts as `backup` servers used only while it is down.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub clients: Option<Spanned<Vec<String>>>,
    /// The client hosts' local ports, one per entry of `proxy_ports`, same order (seed 002:
    /// 7001 → 8001 on the front hosts → the primary on 9001).
    #[serde(default)]
    #[schemars(with = "Vec<i64>")]
    pub client_ports: Vec<Spanned<i64>>,
    /// syslog: `udp`, `tcp` or both.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// redis: who promotes a replica.
    #[serde(default)]
    #[schemars(with = "Option<Promotion>")]
    pub promotion: Option<Spanned<Promotion>>,
    /// redis sentinel quorum.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub quorum: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub down_after: Option<Spanned<Dur>>,
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub password: Option<Spanned<Value>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultSpec {
    /// Vault file; default `secrets/<stack>.age` beside the stack's repo root.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// Identity file to open it with (after `HACTL_AGE_KEY`/`HACTL_AGE_KEY_FILE`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub identity_file: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// `local` (default) or `s3`.
    #[serde(default = "default_backend")]
    #[schemars(with = "String")]
    pub backend: Spanned<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

fn default_backend() -> Spanned<String> {
    unspanned("local".into())
}

/// A user file rendered from a template onto hosts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Template path (relative to the stack file) or name in `templates_dir`.
    #[schemars(with = "String")]
    pub template: Spanned<String>,
    /// Absolute destination path on the host.
    #[schemars(with = "String")]
    pub dest: Spanned<String>,
    /// Octal mode, e.g. `"0644"`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    /// Service reloaded when this file changes.
    #[serde(default)]
    pub reload: Option<String>,
    /// Only these hosts get the file; default: every host.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub hosts: Option<Spanned<Vec<String>>>,
    /// `dest` may be a symbolic link on the host, which `up` then replaces by the file (the
    /// rename replaces the link itself; nothing is written through it). Without it a link at
    /// `dest` is refused: a host user who owns the directory could point it anywhere.
    #[serde(default)]
    pub replace_symlink: bool,
}

/// AWS resources for `provider: aws` (seed 003).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSpec {
    #[schemars(with = "String")]
    pub region: Spanned<String>,
    /// At least two availability zones, e.g. `[eu-west-1a, eu-west-1b]`.
    #[schemars(with = "Vec<String>")]
    pub zones: Spanned<Vec<String>>,
    pub network: AwsNetworkSpec,
    pub hosts: AwsHostsSpec,
    #[serde(default)]
    pub balancer: Option<AwsBalancerSpec>,
    #[serde(default)]
    pub shared_fs: Option<AwsSharedFsSpec>,
    #[serde(default)]
    pub database: Option<AwsDatabaseSpec>,
    /// How long each kind may take to become ready or gone; unset: Terraform's defaults.
    #[serde(default)]
    pub timeouts: AwsTimeoutsSpec,
}

/// Per-kind wait limits (`aws.timeouts`). Defaults (terraform-provider-aws's): instances,
/// load balancers and EFS 10 min, databases 40 min (a Multi-AZ create takes that long),
/// 2 min for a new id to become known everywhere (`propagation`), and 5 min for a new
/// instance's sshd to answer before its host key is pinned (`ssh`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsTimeoutsSpec {
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub instance: Option<Spanned<Dur>>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub load_balancer: Option<Spanned<Dur>>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub file_system: Option<Spanned<Dur>>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub database: Option<Spanned<Dur>>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub propagation: Option<Spanned<Dur>>,
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub ssh: Option<Spanned<Dur>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsNetworkSpec {
    /// New VPC's CIDR; or `vpc_id` + `subnet_ids` of an existing one.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub vpc_cidr: Option<Spanned<String>>,
    /// One public subnet CIDR per zone, in zone order.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub subnets: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub subnet_ids: Option<Vec<String>>,
    /// Who may SSH to the hosts.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ssh_cidr: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsHostsSpec {
    /// Spread round-robin over the zones.
    #[schemars(with = "i64")]
    pub count: Spanned<i64>,
    #[schemars(with = "String")]
    pub instance_type: Spanned<String>,
    #[schemars(with = "String")]
    pub ami: Spanned<String>,
    /// An existing EC2 key pair name, or a public key (from the vault) to import.
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<Value>")]
    pub public_key: Option<Spanned<Value>>,
    #[serde(default = "default_root_gb")]
    #[schemars(with = "i64")]
    pub root_volume_gb: Spanned<i64>,
}

fn default_root_gb() -> Spanned<i64> {
    unspanned(20)
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsBalancerSpec {
    /// `alb` or `nlb`.
    #[serde(default = "default_lb_kind")]
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerSpec>,
    /// Port on the hosts the balancer forwards to (their nginx).
    #[serde(default = "default_http_port")]
    #[schemars(with = "i64")]
    pub target_port: Spanned<i64>,
    #[serde(default)]
    pub health_check: LbHealthSpec,
    /// Default 30 s, not AWS's 300 s.
    #[serde(default = "default_dereg")]
    #[schemars(with = "Dur")]
    pub deregistration_delay: Spanned<Dur>,
}

fn default_lb_kind() -> Spanned<String> {
    unspanned("alb".into())
}
fn default_listeners() -> Vec<ListenerSpec> {
    vec![ListenerSpec {
        port: unspanned(80),
        protocol: "HTTP".into(),
        certificate_arn: None,
    }]
}
fn default_dereg() -> Spanned<Dur> {
    unspanned(Dur::from_secs(30))
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    #[schemars(with = "i64")]
    pub port: Spanned<i64>,
    /// ALB: `HTTP` or `HTTPS`; NLB: `TCP` or `TLS`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The certificate an `HTTPS` (ALB) or `TLS` (NLB) listener presents, required with those
    /// protocols and refused with others: an ACM certificate of the stack's region
    /// (`arn:aws:acm:REGION:ACCOUNT:certificate/ID`) or an IAM server certificate
    /// (`arn:aws:iam::ACCOUNT:server-certificate/NAME`). ELB picks its default security policy.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub certificate_arn: Option<Spanned<String>>,
}

fn default_protocol() -> String {
    "HTTP".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LbHealthSpec {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_lb_interval")]
    #[schemars(with = "Dur")]
    pub interval: Spanned<Dur>,
    #[serde(default = "default_lb_timeout")]
    #[schemars(with = "Dur")]
    pub timeout: Spanned<Dur>,
    #[serde(default = "default_lb_threshold")]
    #[schemars(with = "i64")]
    pub healthy_threshold: Spanned<i64>,
    #[serde(default = "default_lb_threshold")]
    #[schemars(with = "i64")]
    pub unhealthy_threshold: Spanned<i64>,
    /// The HTTP codes that count as healthy: `200`, `200,202` or `200-299` (ELB `Matcher`).
    /// Default: AWS's own, `200` for an ALB and `200-399` for an NLB.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub matcher: Option<Spanned<String>>,
}

impl LbHealthSpec {
    /// The matcher as sent to ELB: the stack's, or AWS's default for the balancer kind
    /// (ELB `CreateTargetGroup`: "200" for HTTP target groups, "200-399" for an NLB's HTTP
    /// health checks).
    pub fn matcher_or_default(&self, kind: &str) -> String {
        match &self.matcher {
            Some(m) => m.value.clone(),
            None if kind == "nlb" => "200-399".into(),
            None => "200".into(),
        }
    }
}

impl Default for LbHealthSpec {
    fn default() -> Self {
        LbHealthSpec {
            path: default_health_path(),
            interval: default_lb_interval(),
            timeout: default_lb_timeout(),
            healthy_threshold: default_lb_threshold(),
            unhealthy_threshold: default_lb_threshold(),
            matcher: None,
        }
    }
}

fn default_lb_interval() -> Spanned<Dur> {
    unspanned(Dur::from_secs(10))
}
fn default_lb_timeout() -> Spanned<Dur> {
    unspanned(Dur::from_secs(5))
}
fn default_lb_threshold() -> Spanned<i64> {
    unspanned(2)
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSharedFsSpec {
    /// `generalPurpose` or `maxIO`.
    #[serde(default = "default_perf_mode")]
    #[schemars(with = "String")]
    pub performance_mode: Spanned<String>,
    /// Where hosts mount it.
    #[serde(default = "default_mount_path")]
    pub mount_path: String,
    #[serde(default = "default_true")]
    pub encrypted: bool,
}

fn default_perf_mode() -> Spanned<String> {
    unspanned("generalPurpose".into())
}
fn default_mount_path() -> String {
    "/mnt/shared".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsDatabaseSpec {
    /// `postgres`, `mysql`, `mariadb`.
    #[schemars(with = "String")]
    pub engine: Spanned<String>,
    #[serde(default)]
    pub engine_version: Option<String>,
    #[schemars(with = "String")]
    pub instance_class: Spanned<String>,
    #[serde(default = "default_storage")]
    #[schemars(with = "i64")]
    pub storage_gb: Spanned<i64>,
    #[serde(default = "default_true")]
    pub multi_az: bool,
    #[serde(default = "default_db_name")]
    pub name: String,
    #[schemars(with = "Value")]
    pub username: Spanned<Value>,
    #[schemars(with = "Value")]
    pub password: Spanned<Value>,
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub port: Option<Spanned<i64>>,
}

fn default_storage() -> Spanned<i64> {
    unspanned(20)
}
fn default_db_name() -> String {
    "app".into()
}
