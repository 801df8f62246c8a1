//! The semantic checks: everything a well-typed stack file can still get wrong, checked over
//! the whole file so that every problem is reported at once, plus the resolution of hosts and
//! the VIP that the rest of hactl uses.
//!
//! Each check pushes a [`Problem`] with a stable code and a hint and carries on. Checks that
//! depend on something already found wrong (the VIP subnet when an address does not parse,
//! priority ties when a priority is out of range) skip quietly, so one mistake gives one
//! diagnostic. Locations come from the model's `Spanned` values, or, for what the model keeps
//! no span for (list items, keys), from the tree by path.
//!
//! The VRRP rules follow keepalived: priorities 1–254 (255 belongs to an address owner);
//! `advert_int` in whole seconds up to 255 for VRRP v2, in centiseconds up to 40.95 s for v3;
//! PASS authentication only in v2 and only 8 characters (keepalived silently truncates);
//! `vrrp_script` intervals and timeouts in whole seconds (or under a second, run as a loop); script weights −253…253; effective
//! priorities clamped to 1…254.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use miette::SourceSpan;
use serde_saphyr::Spanned;

use super::super::diag::{Problem, SourceMap};
use super::super::duration::Dur;
use super::super::model::{
    CheckSpec, HaMode, HookSpec, ProviderKind, ServiceKind, StackFile, Value, VrrpMode,
};
use super::super::{Host, Vip};
use super::did_you_mean;
use super::tree::Node;

/// AWS's own rules (CIDRs, listeners, matcher), in their own file.
#[path = "aws.rs"]
mod aws;
mod hearing;

/// What the checks resolve for the rest of hactl.
pub(super) struct Resolved {
    pub hosts: Vec<Host>,
    pub vip: Option<Vip>,
}

/// Roles every stack knows; service names are roles too.
const BUILTIN_ROLES: &[&str] = &["vip", "app", "nginx", "haproxy"];
/// Services a check or a file's `reload` can name, besides the stack's own services.
const BUILTIN_SERVICES: &[&str] = &["nginx", "haproxy", "app", "keepalived"];

/// Most hosts worked on at once (`ssh.parallelism`): each holds an SSH master and its
/// processes, so more would run into the file descriptor limit before it saved any time.
const MAX_PARALLELISM: usize = 1024;

const MIN_VRRP_PRIORITY: i64 = 1;
const MAX_VRRP_PRIORITY: i64 = 254;

/// Runs every check. Returns the problems and what could be resolved (meaningful only when
/// there are no problems).
pub(super) fn check(file: &StackFile, tree: &Node, map: &SourceMap) -> (Vec<Problem>, Resolved) {
    let mut by_name = HashMap::with_capacity(file.hosts.len());
    for (i, h) in file.hosts.iter().enumerate() {
        by_name.entry(h.name.value.as_str()).or_insert(i);
    }
    let mut c = Checker {
        f: file,
        tree,
        map,
        out: Vec::new(),
        addrs: Vec::new(),
        vip_net: None,
        by_name,
        suggestion_budget: Cell::new(SUGGESTION_BUDGET),
    };
    c.name();
    c.provider();
    c.ssh();
    c.hosts();
    c.vip();
    c.hearing();
    c.priorities();
    c.nginx_haproxy();
    c.app();
    c.services();
    c.roles();
    c.ports();
    c.files_state_vault();
    c.aws();
    c.aws_rules();
    c.vip_aws();
    // Resolving is for stacks that load: it lists each VIP host's peers, which is quadratic
    // in the hosts, and a valid stack has at most 254 VIP hosts (their priorities differ)
    // while an invalid one may have thousands. Warnings do not stop a stack from loading, and
    // `explain` loads one whose only errors are in its hearing graph: both need the hosts.
    let loads = c.out.iter().all(|p| {
        p.severity == miette::Severity::Warning || crate::stack::hearing::CODES.contains(&p.code)
    });
    let resolved = if loads {
        c.resolve()
    } else {
        Resolved {
            hosts: Vec::new(),
            vip: None,
        }
    };
    (c.out, resolved)
}

/// How many name comparisons "did you mean" suggestions may cost in one file. Each unknown
/// name is compared with every candidate (every host, for a peer), so a file with thousands
/// of unknown names among thousands of hosts would be quadratic; past this budget the hint
/// says where the names are instead of guessing. Far above what a hand-written file with a
/// few typos needs.
const SUGGESTION_BUDGET: usize = 200_000;

struct Checker<'a> {
    f: &'a StackFile,
    tree: &'a Node,
    map: &'a SourceMap<'a>,
    out: Vec<Problem>,
    /// Each host's parsed address (None when it does not parse).
    addrs: Vec<Option<IpAddr>>,
    vip_net: Option<IpNet>,
    /// Host name → index of its first entry (lookups by name are constant time, so checks
    /// that name hosts stay linear with thousands of hosts).
    by_name: HashMap<&'a str, usize>,
    /// What is left of [`SUGGESTION_BUDGET`].
    suggestion_budget: Cell<usize>,
}

impl Checker<'_> {
    fn push(&mut self, p: Problem) {
        self.out.push(p);
    }

    /// [`did_you_mean`] within the file's [`SUGGESTION_BUDGET`].
    fn suggest<'c>(&self, word: &str, candidates: &[&'c str]) -> Option<&'c str> {
        let left = self.suggestion_budget.get();
        if candidates.len() > left {
            return None;
        }
        self.suggestion_budget.set(left - candidates.len());
        did_you_mean(word, candidates.iter().copied())
    }

    /// The span of a spanned value (None for defaults, which have no location).
    fn loc<T>(&self, s: &Spanned<T>) -> Option<SourceSpan> {
        let l = s.referenced;
        if l.line() == 0 {
            return None;
        }
        Some(self.map.span(
            l.line() as usize,
            l.column() as usize,
            l.span().len() as usize,
        ))
    }

    /// The span of the value at a tree path, e.g. `hosts.0.peers.1`.
    fn at(&self, path: &str) -> Option<SourceSpan> {
        self.tree.span(path)
    }

    /// The span of the key that ends a tree path.
    fn key(&self, path: &str) -> Option<SourceSpan> {
        self.tree.key_span(path)
    }

    /// The span of a spanned value, or of the key at `path` when the value is a default.
    fn loc_or<T>(&self, s: &Spanned<T>, path: &str) -> Option<SourceSpan> {
        self.loc(s).or_else(|| self.key(path))
    }

    fn line_of(&self, span: Option<SourceSpan>) -> String {
        match span {
            Some(s) => format!("line {}", self.map.line_col(s.offset()).0),
            None => "its default".into(),
        }
    }

    /// `lo..=hi` for an integer; returns whether it was in range.
    fn int_range(
        &mut self,
        v: &Spanned<i64>,
        path: &str,
        lo: i64,
        hi: i64,
        code: &'static str,
        help: &str,
    ) -> bool {
        if (lo..=hi).contains(&v.value) {
            return true;
        }
        let span = self.loc_or(v, path);
        self.push(
            Problem::new(
                code,
                format!("`{}` is {}, outside {lo}–{hi}", shown(path), v.value),
            )
            .at(span, format!("must be {lo}–{hi}"))
            .help(help),
        );
        false
    }

    fn port(&mut self, v: &Spanned<i64>, path: &str) -> bool {
        self.int_range(
            v,
            path,
            1,
            65535,
            "hactl::stack::port",
            "TCP/UDP ports are 1–65535",
        )
    }

    /// A duration within `lo..=hi`.
    fn dur_range(&mut self, v: &Spanned<Dur>, path: &str, lo: Dur, hi: Dur) -> bool {
        self.dur_range_why(v, path, lo, hi, None)
    }

    /// A duration within `lo..=hi`, with a hint saying why the bounds are what they are.
    fn dur_range_why(
        &mut self,
        v: &Spanned<Dur>,
        path: &str,
        lo: Dur,
        hi: Dur,
        why: Option<&str>,
    ) -> bool {
        if v.value >= lo && v.value <= hi {
            return true;
        }
        let span = self.loc_or(v, path);
        let (label, bound) = if v.value < lo {
            ("too short", format!("the shortest allowed is `{lo}`"))
        } else {
            ("too long", format!("the longest allowed is `{hi}`"))
        };
        let help = match why {
            Some(w) => format!("{w}; {bound}"),
            None => bound,
        };
        self.push(
            Problem::new(
                "hactl::stack::duration",
                format!("`{}` is {}, outside {lo}–{hi}", shown(path), v.value),
            )
            .at(span, label)
            .help(help),
        );
        false
    }

    fn whole_seconds(&mut self, v: &Spanned<Dur>, path: &str, why: &str) -> bool {
        if v.value.is_whole_seconds() {
            return true;
        }
        let span = self.loc_or(v, path);
        self.push(
            Problem::new(
                "hactl::stack::duration",
                format!(
                    "`{}` is {}, not a whole number of seconds",
                    shown(path),
                    v.value
                ),
            )
            .at(span, "whole seconds only")
            .help(why.to_string()),
        );
        false
    }

    fn plain_secret(&mut self, v: &Spanned<Value>, path: &str) {
        if let Value::Plain(_) = v.value {
            let span = self.loc_or(v, path);
            self.push(
                Problem::new(
                    "hactl::stack::plain_secret",
                    format!("`{}` is written in the stack file in clear text", shown(path)),
                )
                .at(span, "a secret in clear text")
                .help(format!(
                    "put it in the vault (`hactl secrets set NAME`) and write `{}: {{secret: NAME}}`",
                    path.rsplit('.').next().unwrap_or(path)
                )),
            );
        }
    }

    fn name(&mut self) {
        let n = &self.f.name;
        if let Err(why) = name_ok(&n.value, 40, false) {
            let span = self.loc(n);
            self.push(
                Problem::new(
                    "hactl::stack::name",
                    format!("stack name `{}` {why}", n.value),
                )
                .at(span, "invalid stack name")
                .help(
                    "use 1–40 lowercase letters, digits and `-` (not first or last): \
                     tags, the state file and the vault are named after it",
                ),
            );
        }
    }

    fn provider(&mut self) {
        let p = self.f.provider.value;
        let pspan = self.loc(&self.f.provider);
        match p {
            ProviderKind::Hosts => {
                if self.f.hosts.is_empty() {
                    self.push(
                        Problem::new(
                            "hactl::stack::provider",
                            "`provider: hosts` needs at least one entry in `hosts`",
                        )
                        .at(pspan, "no hosts listed")
                        .help("list the machines: `hosts: [{name: web1, address: 192.0.2.11}]`"),
                    );
                }
                if self.f.aws.is_some() {
                    let span = self.key("aws");
                    self.push(
                        Problem::new(
                            "hactl::stack::provider",
                            "the `aws` section is only used with `provider: aws`",
                        )
                        .at(span, "ignored with `provider: hosts`")
                        .help("remove `aws:` or set `provider: aws`"),
                    );
                }
            }
            ProviderKind::Aws => {
                if self.f.aws.is_none() {
                    self.push(
                        Problem::new(
                            "hactl::stack::provider",
                            "`provider: aws` needs an `aws` section",
                        )
                        .at(pspan, "no `aws:` section")
                        .help("add `aws:` with `region`, `zones`, `network` and `hosts`"),
                    );
                }
                if !self.f.hosts.is_empty() {
                    let span = self.key("hosts");
                    self.push(
                        Problem::new(
                            "hactl::stack::provider",
                            "with `provider: aws` hosts are created from `aws.hosts`, not listed",
                        )
                        .at(span, "only for `provider: hosts`")
                        .help("remove `hosts:` and set `aws.hosts.count`"),
                    );
                }
                if let Some(vip) = &self.f.vip {
                    if vip.aws.is_none() {
                        let span = self.key("vip");
                        self.push(
                            Problem::new(
                                "hactl::stack::provider",
                                "a VIP on AWS must say how the API moves it",
                            )
                            .at(span, "no `vip.aws`")
                            .help(
                                "gratuitous ARP does not move addresses in a VPC: add \
                                 `aws: {mode: secondary_ip}` (or `elastic_ip`) under `vip`",
                            ),
                        );
                    }
                }
            }
        }
    }

    fn ssh(&mut self) {
        let s = &self.f.ssh;
        if s.port == 0 {
            let span = self.at("ssh.port");
            self.push(
                Problem::new("hactl::stack::port", "`ssh.port` is 0")
                    .at(span, "must be 1–65535")
                    .help("sshd listens on 22 unless configured otherwise"),
            );
        }
        if s.user.trim().is_empty() {
            let span = self.at("ssh.user");
            self.push(
                Problem::new("hactl::stack::ssh", "`ssh.user` is empty")
                    .at(span, "empty")
                    .help("name the remote user, e.g. `root`"),
            );
        }
        if s.parallelism == 0 {
            let span = self.at("ssh.parallelism");
            self.push(
                Problem::new(
                    "hactl::stack::ssh",
                    "`ssh.parallelism` is 0: no host would be worked on",
                )
                .at(span, "must be at least 1")
                .help("the default is 32"),
            );
        } else if s.parallelism > MAX_PARALLELISM {
            let span = self.at("ssh.parallelism");
            self.push(
                Problem::new(
                    "hactl::stack::ssh",
                    format!(
                        "`ssh.parallelism` is {}, more than {MAX_PARALLELISM}",
                        s.parallelism
                    ),
                )
                .at(span, "too many at once")
                .help(format!(
                    "each host worked on at once holds an SSH connection and its processes; \
                     use at most {MAX_PARALLELISM} (the default is 32)"
                )),
            );
        }
        self.dur_range(
            &s.connect_timeout,
            "ssh.connect_timeout",
            Dur::from_millis(100),
            Dur::from_secs(300),
        );
    }

    fn hosts(&mut self) {
        let hosts = &self.f.hosts;
        let mut names: HashMap<&str, Option<SourceSpan>> = HashMap::new();
        let mut seen_addr: HashMap<IpAddr, (String, Option<SourceSpan>)> = HashMap::new();
        for (i, h) in hosts.iter().enumerate() {
            let nspan = self.loc(&h.name);
            if let Err(why) = name_ok(&h.name.value, 63, true) {
                self.push(
                    Problem::new(
                        "hactl::stack::host_name",
                        format!("host name `{}` {why}", h.name.value),
                    )
                    .at(nspan, "invalid host name")
                    .help("use letters, digits, `.`, `_` and `-`, at most 63 characters"),
                );
            }
            if let Some(first) = names.get(h.name.value.as_str()) {
                let first_line = self.line_of(*first);
                self.push(
                    Problem::new(
                        "hactl::stack::duplicate_host",
                        format!("host name `{}` is used twice", h.name.value),
                    )
                    .at(nspan, "second host with this name")
                    .help(format!(
                        "the first `{}` is on {first_line}; every host needs its own name",
                        h.name.value
                    )),
                );
            } else {
                names.insert(&h.name.value, nspan);
            }

            let aspan = self.loc(&h.address);
            let addr = parse_host_addr(&h.address.value);
            match &addr {
                Ok(a) => {
                    if let Some((other, first)) = seen_addr.get(a) {
                        let first_line = self.line_of(*first);
                        self.push(
                            Problem::new(
                                "hactl::stack::duplicate_address",
                                format!(
                                    "hosts `{other}` and `{}` have the same address {a}",
                                    h.name.value
                                ),
                            )
                            .at(aspan, "address already used")
                            .help(format!(
                                "`{other}` has it on {first_line}; each host needs its own address"
                            )),
                        );
                    } else {
                        seen_addr.insert(*a, (h.name.value.clone(), aspan));
                    }
                }
                Err(why) => {
                    self.push(
                        Problem::new(
                            "hactl::stack::bad_address",
                            format!(
                                "address `{}` of host `{}` {why}",
                                h.address.value, h.name.value
                            ),
                        )
                        .at(aspan, "not an IP address")
                        .help("write an IPv4 or IPv6 address without a prefix, e.g. `192.0.2.11`"),
                    );
                }
            }
            self.addrs.push(addr.ok());

            if let Some(p) = &h.priority {
                self.int_range(
                    p,
                    &format!("hosts.{i}.priority"),
                    MIN_VRRP_PRIORITY,
                    MAX_VRRP_PRIORITY,
                    "hactl::stack::priority",
                    "VRRP priorities are 1–254 (255 is reserved for the address owner)",
                );
            }
            if let Some(iface) = &h.interface {
                if iface.trim().is_empty() || iface.contains(char::is_whitespace) {
                    let span = self.at(&format!("hosts.{i}.interface"));
                    self.push(
                        Problem::new(
                            "hactl::stack::interface",
                            format!(
                                "interface `{iface}` of host `{}` is not a name",
                                h.name.value
                            ),
                        )
                        .at(span, "invalid interface")
                        .help("name a network interface, e.g. `eth0`"),
                    );
                }
            }
        }
        self.peers();
    }

    fn host_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn host_names(&self) -> Vec<&str> {
        self.f.hosts.iter().map(|h| h.name.value.as_str()).collect()
    }

    fn unknown_host_help(&self, name: &str) -> String {
        let names = self.host_names();
        match self.suggest(name, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "this stack lists no hosts".into(),
            None => format!("the hosts are {}", ticks(&names)),
        }
    }

    fn peers(&mut self) {
        let multicast = self
            .f
            .vip
            .as_ref()
            .is_some_and(|v| v.mode.value == VrrpMode::Multicast);
        let mut lists: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for (i, h) in self.f.hosts.iter().enumerate() {
            let Some(peers) = &h.peers else { continue };
            if multicast {
                let span = self.key(&format!("hosts.{i}.peers"));
                self.push(
                    Problem::new(
                        "hactl::stack::peers_multicast",
                        format!(
                            "host `{}` lists unicast peers but `vip.mode` is multicast",
                            h.name.value
                        ),
                    )
                    .at(span, "unused with multicast")
                    .help("remove `peers` or set `vip.mode: unicast`"),
                );
            }
            let mut set = BTreeSet::new();
            for (j, p) in peers.value.iter().enumerate() {
                let span = self.at(&format!("hosts.{i}.peers.{j}"));
                if *p == h.name.value {
                    self.push(
                        Problem::new(
                            "hactl::stack::peer_self",
                            format!("host `{}` lists itself as a peer", h.name.value),
                        )
                        .at(span, "itself")
                        .help("peers are the other hosts; keepalived adds the host's own address as the source"),
                    );
                    continue;
                }
                match self.host_index(p) {
                    None => {
                        let help = self.unknown_host_help(p);
                        self.push(
                            Problem::new(
                                "hactl::stack::peer_unknown",
                                format!(
                                    "peer `{p}` of host `{}` is not a host of this stack",
                                    h.name.value
                                ),
                            )
                            .at(span, "unknown host")
                            .help(help),
                        );
                    }
                    Some(k) => {
                        if !set.insert(k) {
                            self.push(
                                Problem::new(
                                    "hactl::stack::peer_duplicate",
                                    format!("host `{}` lists peer `{p}` twice", h.name.value),
                                )
                                .at(span, "listed before")
                                .help("list each peer once"),
                            );
                        }
                    }
                }
            }
            lists.insert(i, set);
        }
        // Symmetry: if A names B, B must name A (explicitly, or by the default "everyone").
        for (&a, set) in &lists {
            for &b in set {
                let b_lists_a = match lists.get(&b) {
                    Some(bs) => bs.contains(&a),
                    None => self.f.hosts[b].peers.is_none(),
                };
                if !b_lists_a {
                    let an = &self.f.hosts[a].name.value;
                    let bn = &self.f.hosts[b].name.value;
                    let j = self.f.hosts[a]
                        .peers
                        .as_ref()
                        .and_then(|p| p.value.iter().position(|x| x == bn));
                    let span = j.and_then(|j| self.at(&format!("hosts.{a}.peers.{j}")));
                    self.push(
                        Problem::new(
                            "hactl::stack::peer_asymmetric",
                            format!("host `{an}` lists `{bn}` as a peer, but `{bn}` does not list `{an}`"),
                        )
                        .at(span, "one-way peer")
                        .help(format!(
                            "unicast VRRP only works both ways: add `{an}` to the peers of `{bn}` \
                             (or drop `peers` everywhere to let every host peer with every other)"
                        )),
                    );
                }
            }
        }
    }

    fn vrrp_version(&self) -> Option<u8> {
        let vip = self.f.vip.as_ref()?;
        match &vip.vrrp_version {
            Some(v) if v.value == 2 || v.value == 3 => Some(v.value as u8),
            Some(_) => None,
            None if vip.advert_int.value.is_whole_seconds() => Some(2),
            None => Some(3),
        }
    }

    fn vip(&mut self) {
        let Some(vip) = &self.f.vip else {
            for (i, h) in self.f.hosts.iter().enumerate() {
                if h.peers.is_some() {
                    let span = self.key(&format!("hosts.{i}.peers"));
                    self.push(
                        Problem::new(
                            "hactl::stack::vip_missing",
                            format!(
                                "host `{}` lists VRRP peers but the stack has no `vip`",
                                h.name.value
                            ),
                        )
                        .at(span, "unused without a VIP")
                        .help("add a `vip:` section or remove `peers`"),
                    );
                }
            }
            return;
        };
        let aspan = self.loc(&vip.address);
        match parse_vip(&vip.address.value) {
            Err(why) => self.push(
                Problem::new(
                    "hactl::stack::vip_address",
                    format!("VIP `{}` {why}", vip.address.value),
                )
                .at(aspan, "not address/prefix")
                .help("write the address with the hosts' prefix length, e.g. `198.51.100.100/24`"),
            ),
            Ok(net) => {
                self.vip_net = Some(net);
                // keepalived adds the VIP with this prefix, so the whole range becomes on-link
                // on the holder: `/0` takes over the default route. Nothing a VRRP LAN uses is
                // wider than a /8 (IPv4) or a /48 (IPv6).
                let (min, family) = match net {
                    IpNet::V4(_) => (8, "IPv4"),
                    IpNet::V6(_) => (48, "IPv6"),
                };
                if net.prefix_len() < min {
                    self.push(
                        Problem::new(
                            "hactl::stack::vip_address",
                            format!(
                                "the VIP's prefix /{} is wider than any {family} LAN: the holder \
                                 would treat {} as on-link",
                                net.prefix_len(),
                                net.trunc()
                            ),
                        )
                        .at(aspan, "prefix too short")
                        .help(format!(
                            "write the hosts' own prefix length (/{min} or longer), e.g. `198.51.100.100/24`"
                        )),
                    );
                }
                let is_v4_edge = match net {
                    IpNet::V4(n) if n.prefix_len() <= 30 => {
                        n.addr() == n.network() || n.addr() == n.broadcast()
                    }
                    _ => false,
                };
                if is_v4_edge {
                    self.push(
                        Problem::new(
                            "hactl::stack::vip_address",
                            format!(
                                "VIP {} is the network or broadcast address of {}",
                                net.addr(),
                                net.trunc()
                            ),
                        )
                        .at(aspan, "not a host address")
                        .help("pick a free host address inside the subnet"),
                    );
                }
                if self.f.provider.value == ProviderKind::Hosts {
                    for (i, h) in self.f.hosts.iter().enumerate() {
                        let Some(addr) = self.addrs.get(i).copied().flatten() else {
                            continue;
                        };
                        if !host_roles(h).contains("vip") {
                            continue;
                        }
                        let hspan = self.loc(&h.address);
                        if addr == net.addr() {
                            self.push(
                                Problem::new(
                                    "hactl::stack::vip_is_host",
                                    format!(
                                        "the VIP {addr} is also the address of host `{}`",
                                        h.name.value
                                    ),
                                )
                                .at(hspan, "same as the VIP")
                                .help("the VIP must be a free address that moves between hosts"),
                            );
                        } else if !net.contains(&addr) {
                            let vline = self.line_of(aspan);
                            self.push(
                                Problem::new(
                                    "hactl::stack::vip_subnet",
                                    format!(
                                        "host `{}` ({addr}) is not in the VIP's network {}",
                                        h.name.value,
                                        net.trunc()
                                    ),
                                )
                                .at(hspan, "outside the VIP's subnet")
                                .help(format!(
                                    "VRRP moves the VIP between hosts on one subnet: put the VIP \
                                     (on {vline}) in the hosts' subnet, or fix its prefix length"
                                )),
                            );
                        }
                    }
                }
            }
        }
        self.int_range(
            &vip.virtual_router_id,
            "vip.virtual_router_id",
            1,
            255,
            "hactl::stack::virtual_router_id",
            "pick a VRID 1–255 that no other VRRP router on this LAN uses",
        );
        if let Some(v) = &vip.vrrp_version {
            if v.value != 2 && v.value != 3 {
                let span = self.loc(v);
                self.push(
                    Problem::new(
                        "hactl::stack::vrrp_version",
                        format!("VRRP version {} does not exist", v.value),
                    )
                    .at(span, "must be 2 or 3")
                    .help("leave it out: hactl picks 3 for a sub-second `advert_int`, else 2"),
                );
            }
        }
        self.advert_int();
        self.auth_pass();
        if vip.instance.trim().is_empty() || vip.instance.contains(char::is_whitespace) {
            let span = self.at("vip.instance");
            self.push(
                Problem::new(
                    "hactl::stack::vip_instance",
                    format!("instance name `{}` is not one word", vip.instance),
                )
                .at(span, "invalid instance name")
                .help("use letters, digits and `_`, e.g. `VI_1`"),
            );
        }
        if vip.interface.trim().is_empty() || vip.interface.contains(char::is_whitespace) {
            let span = self.at("vip.interface");
            self.push(
                Problem::new(
                    "hactl::stack::interface",
                    format!("interface `{}` is not a name", vip.interface),
                )
                .at(span, "invalid interface")
                .help("name a network interface, e.g. `eth0`"),
            );
        }
        for (d, path, hi, kw) in [
            (
                &vip.preempt_delay,
                "vip.preempt_delay",
                1000,
                "preempt_delay",
            ),
            (
                &vip.garp.master_delay,
                "vip.garp.master_delay",
                1000,
                "garp_master_delay",
            ),
            (
                &vip.garp.master_refresh,
                "vip.garp.master_refresh",
                3600,
                "garp_master_refresh",
            ),
        ] {
            if let Some(d) = d {
                if self.dur_range(d, path, Dur::from_secs(0), Dur::from_secs(hi)) {
                    self.whole_seconds(
                        d,
                        path,
                        &format!("keepalived's `{kw}` takes whole seconds"),
                    );
                }
            }
        }
        if let Some(r) = vip.garp.master_repeat {
            if !(1..=100).contains(&r) {
                let span = self.at("vip.garp.master_repeat");
                self.push(
                    Problem::new(
                        "hactl::stack::garp",
                        format!("`vip.garp.master_repeat` is {r}, outside 1–100"),
                    )
                    .at(span, "must be 1–100")
                    .help("a handful of gratuitous ARPs (3–5) is plenty"),
                );
            }
        }
        if vip.script_user.trim().is_empty() {
            let span = self.at("vip.script_user");
            self.push(
                Problem::new("hactl::stack::vip_script_user", "`vip.script_user` is empty")
                    .at(span, "empty")
                    .help("keepalived's `enable_script_security` needs a user to run scripts, e.g. `root`"),
            );
        }
        for (i, c) in vip.checks.iter().enumerate() {
            self.check_spec(i, c);
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, c) in vip.checks.iter().enumerate() {
            if names.insert(&c.name.value, i).is_some() {
                let span = self.loc(&c.name);
                self.push(
                    Problem::new(
                        "hactl::stack::check_name",
                        format!("check name `{}` is used twice", c.name.value),
                    )
                    .at(span, "duplicate check name")
                    .help("each check becomes a keepalived `vrrp_script` and needs its own name"),
                );
            }
        }
        let notify = &vip.notify;
        for (event, hooks) in [
            ("master", &notify.master),
            ("backup", &notify.backup),
            ("fault", &notify.fault),
            ("stop", &notify.stop),
        ] {
            for (i, h) in hooks.iter().enumerate() {
                self.hook(&format!("vip.notify.{event}.{i}"), h);
            }
        }
    }

    fn advert_int(&mut self) {
        let Some(vip) = &self.f.vip else { return };
        let a = &vip.advert_int;
        let span = self.loc_or(a, "vip.advert_int");
        let ms = a.value.0.as_micros();
        if a.value < Dur::from_millis(10) {
            self.push(
                Problem::new("hactl::stack::advert_int", format!("`vip.advert_int` is {}, below 10ms", a.value))
                    .at(span, "too short")
                    .help("VRRP v3 counts in centiseconds: the shortest interval is `10ms`; `100ms`–`1s` is usual"),
            );
            return;
        }
        let Some(version) = self.vrrp_version() else {
            return;
        };
        let explicit = vip.vrrp_version.is_some();
        if version == 2 {
            if !a.value.is_whole_seconds() {
                self.push(
                    Problem::new(
                        "hactl::stack::advert_int",
                        format!(
                            "`vip.advert_int` is {}: VRRP v2 only counts whole seconds",
                            a.value
                        ),
                    )
                    .at(span, "sub-second needs VRRP v3")
                    .help(if explicit {
                        "remove `vrrp_version: 2` (hactl then uses v3) or use whole seconds"
                    } else {
                        "use whole seconds, or VRRP v3"
                    }),
                );
            } else if a.value > Dur::from_secs(255) {
                self.push(
                    Problem::new(
                        "hactl::stack::advert_int",
                        format!("`vip.advert_int` is {}, above 255s", a.value),
                    )
                    .at(span, "too long for VRRP v2")
                    .help("VRRP v2 allows 1–255 s; 1s is usual"),
                );
            }
        } else if ms % 10_000 != 0 {
            self.push(
                Problem::new(
                    "hactl::stack::advert_int",
                    format!("`vip.advert_int` is {}, not a multiple of 10ms", a.value),
                )
                .at(span, "VRRP v3 counts centiseconds")
                .help("round it to a multiple of 10ms, e.g. `100ms`"),
            );
        } else if a.value > Dur::from_millis(40_950) {
            self.push(
                Problem::new(
                    "hactl::stack::advert_int",
                    format!("`vip.advert_int` is {}, above 40.95s", a.value),
                )
                .at(span, "too long for VRRP v3")
                .help("VRRP v3 allows 10ms–40.95s"),
            );
        }
    }

    fn auth_pass(&mut self) {
        let Some(vip) = &self.f.vip else { return };
        let Some(pass) = &vip.auth_pass else { return };
        let span = self.loc_or(pass, "vip.auth_pass");
        if self.vrrp_version() == Some(3) {
            let why = if vip.vrrp_version.is_some() {
                "`vrrp_version: 3`"
            } else {
                "a sub-second `advert_int` (which needs VRRP v3)"
            };
            self.push(
                Problem::new(
                    "hactl::stack::auth_pass",
                    format!("`auth_pass` cannot be used with {why}"),
                )
                .at(span, "VRRP v3 has no authentication")
                .help("remove `auth_pass`, or use VRRP v2 with a whole-second `advert_int`"),
            );
        }
        if let Value::Plain(p) = &pass.value {
            let n = p.chars().count();
            if n > 8 || n == 0 {
                self.push(
                    Problem::new(
                        "hactl::stack::auth_pass",
                        format!(
                            "`auth_pass` has {n} characters; VRRP PASS authentication takes 1–8"
                        ),
                    )
                    .at(span, "must be 1–8 characters")
                    .help("keepalived silently cuts it to 8 characters; write at most 8"),
                );
            }
        }
    }

    fn check_spec(&mut self, i: usize, c: &CheckSpec) {
        let base = format!("vip.checks.{i}");
        let nspan = self.loc(&c.name);
        if c.name.value.is_empty()
            || !c
                .name
                .value
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            self.push(
                Problem::new(
                    "hactl::stack::check_name",
                    format!("check name `{}` is not one word", c.name.value),
                )
                .at(nspan, "invalid check name")
                .help(
                    "use letters, digits, `_` and `-`: it becomes a keepalived `vrrp_script` name",
                ),
            );
        }
        let kinds = [c.service.is_some(), c.http.is_some(), c.script.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if kinds != 1 {
            self.push(
                Problem::new(
                    "hactl::stack::check_kind",
                    format!(
                        "check `{}` has {} of `service`, `http`, `script`; it needs exactly one",
                        c.name.value,
                        if kinds == 0 { "none" } else { "more than one" }
                    ),
                )
                .at(nspan, "one of service/http/script")
                .help("`service: nginx` (running), `http: http://127.0.0.1/healthz` (2xx) or `script: /path/cmd`"),
            );
        }
        if let Some(s) = &c.service {
            let known = self.known_services();
            if !known.iter().any(|k| k == &s.value) {
                let span = self.loc(s);
                let hint = match did_you_mean(&s.value, known.iter().map(String::as_str)) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("the services are {}", ticks(&known)),
                };
                self.push(
                    Problem::new(
                        "hactl::stack::check_service",
                        format!(
                            "check `{}` watches unknown service `{}`",
                            c.name.value, s.value
                        ),
                    )
                    .at(span, "unknown service")
                    .help(hint),
                );
            }
        }
        if let Some(u) = &c.http {
            if !http_url(&u.value) {
                let span = self.loc(u);
                self.push(
                    Problem::new(
                        "hactl::stack::check_http",
                        format!("`{}` is not an http(s) URL", u.value),
                    )
                    .at(span, "not a URL")
                    .help("e.g. `http://127.0.0.1:80/healthz` (a GET from the host; 2xx or 3xx passes)"),
                );
            }
        }
        if let Some(s) = &c.script {
            if s.value.trim().is_empty() {
                let span = self.loc(s);
                self.push(
                    Problem::new(
                        "hactl::stack::check_kind",
                        format!("check `{}` has an empty script", c.name.value),
                    )
                    .at(span, "empty")
                    .help("give a command line, e.g. `/usr/local/bin/healthcheck.sh`"),
                );
            }
        }
        // keepalived's `vrrp_script` counts whole seconds; under a second hactl runs the check
        // as a loop that keeps a `track_file` current (see templates/hactl-check.sh.j2),
        // down to 50 ms (each run forks the check command).
        let why = "keepalived's `vrrp_script` counts whole seconds; under 1s hactl runs the check in a loop, down to 50ms";
        let ipath = format!("{base}.interval");
        let interval_ok = self.dur_range_why(
            &c.interval,
            &ipath,
            Dur::from_millis(50),
            Dur::from_secs(3600),
            Some(why),
        ) && (c.sub_second() || self.whole_seconds(&c.interval, &ipath, why));
        let tpath = format!("{base}.timeout");
        let timeout = Spanned::new(c.run_timeout(), c.timeout.referenced, c.timeout.defined);
        let timeout_ok = if c.sub_second() {
            self.dur_range_why(
                &timeout,
                &tpath,
                Dur::from_millis(10),
                Dur::from_secs(3600),
                None,
            )
        } else {
            self.dur_range_why(
                &timeout,
                &tpath,
                Dur::from_secs(1),
                Dur::from_secs(3600),
                Some(why),
            ) && self.whole_seconds(&timeout, &tpath, why)
        };
        if interval_ok && timeout_ok && timeout.value > c.interval.value {
            let span = self.loc_or(&c.timeout, &tpath);
            self.push(
                Problem::new(
                    "hactl::stack::check_timeout",
                    format!(
                        "check `{}` times out after {} but runs every {}",
                        c.name.value, timeout.value, c.interval.value
                    ),
                )
                .at(span, "longer than the interval")
                .help(
                    "a check must finish before the next one starts: make `timeout` ≤ `interval`",
                ),
            );
        }
        for (v, key) in [(&c.fall, "fall"), (&c.rise, "rise")] {
            self.int_range(
                v,
                &format!("{base}.{key}"),
                1,
                255,
                "hactl::stack::check_fall_rise",
                "`fall`/`rise` count consecutive results before the state changes: 1 or more",
            );
        }
        self.int_range(
            &c.weight,
            &format!("{base}.weight"),
            -253,
            253,
            "hactl::stack::check_weight",
            "keepalived weights are −253…253 (0 means a failing check puts the host in FAULT)",
        );
    }

    fn hook(&mut self, path: &str, h: &HookSpec) {
        let n = [h.command.is_some(), h.webhook.is_some(), h.email.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if n != 1 {
            let span = self.at(path);
            self.push(
                Problem::new("hactl::stack::hook", format!("hook `{}` needs exactly one of `command`, `webhook`, `email`", shown(path)))
                    .at(span, if n == 0 { "nothing to run" } else { "more than one" })
                    .help("write one hook per list item: `- command: …`, `- webhook: https://…` or `- email: ops@example.com`"),
            );
        }
        if let Some(w) = &h.webhook {
            if !http_url(&w.value) {
                let span = self.loc(w);
                self.push(
                    Problem::new(
                        "hactl::stack::hook",
                        format!("webhook `{}` is not an http(s) URL", w.value),
                    )
                    .at(span, "not a URL")
                    .help("e.g. `https://hooks.example.com/vrrp`"),
                );
            }
        }
        if let Some(e) = &h.email {
            let v = &e.value;
            let ok = v
                .split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
                && !v.contains(char::is_whitespace);
            if !ok {
                let span = self.loc(e);
                self.push(
                    Problem::new(
                        "hactl::stack::hook",
                        format!("`{v}` is not an e-mail address"),
                    )
                    .at(span, "not an address")
                    .help("e.g. `ops@example.com`"),
                );
            }
        }
    }

    /// Base priority of host `i`: explicit, else 150 for the first host and 100, 99, … after.
    fn base_priority(&self, i: usize) -> i64 {
        match &self.f.hosts[i].priority {
            Some(p) => p.value,
            None if i == 0 => 150,
            None => (101 - i as i64).max(MIN_VRRP_PRIORITY),
        }
    }

    /// Ties and checks that cannot move the VIP, computed as keepalived does: a passing check
    /// with a positive weight adds it, a failing one with a negative weight subtracts it, and
    /// the result is clamped to 1–254.
    fn priorities(&mut self) {
        let Some(vip) = &self.f.vip else { return };
        if self.f.provider.value != ProviderKind::Hosts {
            return;
        }
        let members: Vec<usize> = (0..self.f.hosts.len())
            .filter(|&i| host_roles(&self.f.hosts[i]).contains("vip"))
            .collect();
        let base: Vec<i64> = members.iter().map(|&i| self.base_priority(i)).collect();
        if members.len() < 2
            || base
                .iter()
                .any(|p| !(MIN_VRRP_PRIORITY..=MAX_VRRP_PRIORITY).contains(p))
            || vip
                .checks
                .iter()
                .any(|c| !(-253..=253).contains(&c.weight.value))
        {
            return;
        }
        let clamp = |p: i64| p.clamp(MIN_VRRP_PRIORITY, MAX_VRRP_PRIORITY);
        let bonus: i64 = vip.checks.iter().map(|c| c.weight.value.max(0)).sum();
        let all_pass: Vec<i64> = base.iter().map(|b| clamp(b + bonus)).collect();

        // The first member with each priority: a tie is found by lookup, not by comparing
        // every pair (a stack may list thousands of hosts).
        let mut first_with: HashMap<i64, usize> = HashMap::new();
        let mut reported_base_tie = false;
        for (k, &i) in members.iter().enumerate() {
            if let Some(j) = first_seen(&mut first_with, base[k], k) {
                reported_base_tie = true;
                let (a, b) = (
                    &self.f.hosts[members[j]].name.value,
                    &self.f.hosts[i].name.value,
                );
                let span = match &self.f.hosts[i].priority {
                    Some(p) => self.loc(p),
                    None => self.loc(&self.f.hosts[i].name),
                };
                let explicit = self.f.hosts[i].priority.is_some();
                self.push(
                    Problem::new(
                        "hactl::stack::priority_tie",
                        format!("hosts `{a}` and `{b}` have the same priority {}", base[k]),
                    )
                    .at(
                        span,
                        if explicit {
                            "same priority as another host"
                        } else {
                            "default priority ties"
                        },
                    )
                    .help(
                        "with equal priorities the master is decided by the higher IP address, \
                         not by you: give each host its own priority",
                    ),
                );
            }
        }
        if !reported_base_tie {
            let mut first_with: HashMap<i64, usize> = HashMap::new();
            for k in 0..members.len() {
                if let Some(j) = first_seen(&mut first_with, all_pass[k], k) {
                    let (a, b) = (
                        &self.f.hosts[members[j]].name.value,
                        &self.f.hosts[members[k]].name.value,
                    );
                    let span = self.f.hosts[members[k]]
                        .priority
                        .as_ref()
                        .and_then(|p| self.loc(p))
                        .or_else(|| self.loc(&self.f.hosts[members[k]].name));
                    self.push(
                        Problem::new(
                            "hactl::stack::priority_tie",
                            format!(
                                "when every check passes, hosts `{a}` and `{b}` both reach priority {}",
                                all_pass[k]
                            ),
                        )
                        .at(span, "ties after check weights")
                        .help(
                            "effective priorities are capped at 254: lower the base priorities or \
                             the positive weights so the hosts stay apart",
                        ),
                    );
                }
            }
            self.failover(vip.checks.as_slice(), &members, &base, &all_pass, bonus);
        }
    }

    /// A check whose failure on the master leaves it still the highest cannot move the VIP.
    fn failover(
        &mut self,
        checks: &[CheckSpec],
        members: &[usize],
        base: &[i64],
        all_pass: &[i64],
        bonus: i64,
    ) {
        let Some((top, &top_p)) = all_pass.iter().enumerate().max_by_key(|(_, p)| **p) else {
            return;
        };
        let runner_up = all_pass
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != top)
            .map(|(_, p)| *p)
            .max()
            .unwrap_or(MIN_VRRP_PRIORITY);
        for (ci, c) in checks.iter().enumerate() {
            let w = c.weight.value;
            if w == 0 {
                continue; // a failing weight-0 check puts the host in FAULT: it always gives up
            }
            let failed = if w > 0 {
                base[top] + bonus - w
            } else {
                base[top] + bonus + w
            };
            let failed = failed.clamp(MIN_VRRP_PRIORITY, MAX_VRRP_PRIORITY);
            if failed >= runner_up {
                let master = &self.f.hosts[members[top]].name.value;
                let span = self.loc_or(&c.weight, &format!("vip.checks.{ci}.weight"));
                let need = top_p - runner_up + 1;
                self.push(
                    Problem::new(
                        "hactl::stack::no_failover",
                        format!(
                            "when check `{}` fails on `{master}` (the master, {top_p}), its priority only drops to {failed}, not below the next host's {runner_up}",
                            c.name.value
                        ),
                    )
                    .at(span, "too small to move the VIP")
                    .help(format!(
                        "make the weight at least {need} in size ({}{need}), or 0 to put a failing host in FAULT",
                        if w > 0 { "+" } else { "-" }
                    )),
                );
            }
        }
    }

    fn known_services(&self) -> Vec<String> {
        let mut v: Vec<String> = BUILTIN_SERVICES.iter().map(|s| s.to_string()).collect();
        v.extend(self.f.services.iter().map(|s| s.name.value.clone()));
        v
    }

    fn nginx_haproxy(&mut self) {
        if let Some(n) = &self.f.nginx {
            self.port(&n.listen, "nginx.listen");
            if !n.health_path.starts_with('/') {
                let span = self.at("nginx.health_path");
                self.push(
                    Problem::new(
                        "hactl::stack::path",
                        format!(
                            "`nginx.health_path` `{}` does not start with `/`",
                            n.health_path
                        ),
                    )
                    .at(span, "not a URL path")
                    .help("e.g. `/healthz`"),
                );
            }
            if n.worker_connections == 0 {
                let span = self.at("nginx.worker_connections");
                self.push(
                    Problem::new("hactl::stack::nginx", "`nginx.worker_connections` is 0")
                        .at(span, "must be at least 1")
                        .help("the default is 1024"),
                );
            }
        }
        if let Some(h) = &self.f.haproxy {
            self.port(&h.listen, "haproxy.listen");
            if let Some(p) = &h.backend_port {
                self.port(p, "haproxy.backend_port");
            }
            if let Some(p) = &h.stats_port {
                if p.value != 0 {
                    self.port(p, "haproxy.stats_port");
                }
            }
            self.dur_range(
                &h.check_interval,
                "haproxy.check_interval",
                Dur::from_millis(100),
                Dur::from_secs(3600),
            );
            self.int_range(
                &h.fall,
                "haproxy.fall",
                1,
                100,
                "hactl::stack::haproxy",
                "haproxy marks a server down after `fall` failed checks: 1 or more",
            );
            self.int_range(
                &h.rise,
                "haproxy.rise",
                1,
                100,
                "hactl::stack::haproxy",
                "haproxy marks a server up after `rise` passed checks: 1 or more",
            );
            self.dur_range(
                &h.drain_timeout,
                "haproxy.drain_timeout",
                Dur::from_secs(1),
                Dur::from_secs(3600),
            );
            if !h.check_path.starts_with('/') {
                let span = self.at("haproxy.check_path");
                self.push(
                    Problem::new(
                        "hactl::stack::path",
                        format!(
                            "`haproxy.check_path` `{}` does not start with `/`",
                            h.check_path
                        ),
                    )
                    .at(span, "not a URL path")
                    .help("e.g. `/healthz`"),
                );
            }
            if !h.admin_socket.starts_with('/') {
                let span = self.at("haproxy.admin_socket");
                self.push(
                    Problem::new(
                        "hactl::stack::path",
                        "`haproxy.admin_socket` must be an absolute path",
                    )
                    .at(span, "not absolute")
                    .help("the default is `/run/haproxy/admin.sock`"),
                );
            }
        }
    }

    fn app(&mut self) {
        let Some(app) = &self.f.app else { return };
        if app.image.is_some() == app.archive.is_some() {
            let span = self.key("app");
            self.push(
                Problem::new(
                    "hactl::stack::app_source",
                    if app.image.is_some() {
                        "`app` has both `image` and `archive`"
                    } else {
                        "`app` has neither `image` nor `archive`"
                    },
                )
                .at(span, "exactly one of image/archive")
                .help("`image: ghcr.io/acme/web:1.4` pulls from a registry; `archive: app.tar` copies a saved image"),
            );
        }
        self.port(&app.port, "app.port");
        self.int_range(
            &app.host_port,
            "app.host_port",
            1,
            65435,
            "hactl::stack::port",
            "blue/green deploys use `host_port` and `host_port + 100`: keep it at most 65435",
        );
        self.int_range(
            &app.replicas,
            "app.replicas",
            1,
            64,
            "hactl::stack::app",
            "run 1–64 replicas per host",
        );
        for (i, v) in app.volumes.iter().enumerate() {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = (parts.len() == 2
                || (parts.len() == 3 && (parts[2] == "ro" || parts[2] == "rw")))
                && parts[..2].iter().all(|p| !p.is_empty())
                && parts[1].starts_with('/');
            if !ok {
                let span = self.at(&format!("app.volumes.{i}"));
                self.push(
                    Problem::new(
                        "hactl::stack::app",
                        format!("volume `{v}` is not `host_path:container_path[:ro]`"),
                    )
                    .at(span, "bad volume")
                    .help("e.g. `/mnt/shared/uploads:/app/uploads` or `/etc/app:/config:ro`"),
                );
            }
        }
        let h = &app.health;
        if !h.path.starts_with('/') {
            let span = self.at("app.health.path");
            self.push(
                Problem::new(
                    "hactl::stack::path",
                    format!("`app.health.path` `{}` does not start with `/`", h.path),
                )
                .at(span, "not a URL path")
                .help("e.g. `/healthz`"),
            );
        }
        self.dur_range(
            &h.interval,
            "app.health.interval",
            Dur::from_millis(100),
            Dur::from_secs(300),
        );
        self.dur_range(
            &h.timeout,
            "app.health.timeout",
            Dur::from_millis(100),
            Dur::from_secs(300),
        );
        self.dur_range(
            &h.deadline,
            "app.health.deadline",
            Dur::from_secs(1),
            Dur::from_secs(3600),
        );
        self.int_range(
            &h.healthy_threshold,
            "app.health.healthy_threshold",
            1,
            100,
            "hactl::stack::app",
            "how many passing checks in a row make a new version healthy: 1 or more",
        );
        self.dur_range(
            &app.stop_grace_period,
            "app.stop_grace_period",
            Dur::from_secs(0),
            Dur::from_secs(600),
        );
    }

    /// Hosts a service runs on: `hosts`, else hosts with its name as a role, else every host.
    fn service_hosts(&self, si: usize) -> Vec<usize> {
        let s = &self.f.services[si];
        if let Some(hs) = &s.hosts {
            return hs.value.iter().filter_map(|n| self.host_index(n)).collect();
        }
        let by_role: Vec<usize> = (0..self.f.hosts.len())
            .filter(|&i| host_roles(&self.f.hosts[i]).contains(&s.name.value))
            .collect();
        if by_role.is_empty() {
            (0..self.f.hosts.len()).collect()
        } else {
            by_role
        }
    }

    fn services(&mut self) {
        let mut names: HashMap<&str, ()> = HashMap::new();
        for (si, s) in self.f.services.iter().enumerate() {
            let base = format!("services.{si}");
            let nspan = self.loc(&s.name);
            if let Err(why) = name_ok(&s.name.value, 40, false) {
                self.push(
                    Problem::new(
                        "hactl::stack::service",
                        format!("service name `{}` {why}", s.name.value),
                    )
                    .at(nspan, "invalid service name")
                    .help("use lowercase letters, digits and `-`"),
                );
            }
            if BUILTIN_ROLES.contains(&s.name.value.as_str())
                || BUILTIN_SERVICES.contains(&s.name.value.as_str())
            {
                self.push(
                    Problem::new(
                        "hactl::stack::service",
                        format!("service name `{}` is reserved", s.name.value),
                    )
                    .at(nspan, "reserved name")
                    .help(format!(
                        "{} and {} name hactl's own parts; pick another name",
                        ticks(BUILTIN_ROLES),
                        ticks(BUILTIN_SERVICES)
                    )),
                );
            }
            if names.insert(&s.name.value, ()).is_some() {
                self.push(
                    Problem::new(
                        "hactl::stack::service",
                        format!("service name `{}` is used twice", s.name.value),
                    )
                    .at(nspan, "duplicate service")
                    .help("every service needs its own name"),
                );
            }
            let (kind, mode) = (s.kind.value, s.mode.value);
            let expected = match kind {
                ServiceKind::Syslog => HaMode::ActivePassive,
                ServiceKind::Redis => HaMode::PrimaryReplica,
            };
            if mode != expected {
                let span = self.loc_or(&s.mode, &format!("{base}.mode"));
                let (k, m) = match kind {
                    ServiceKind::Syslog => ("syslog", "active_passive"),
                    ServiceKind::Redis => ("redis", "primary_replica"),
                };
                self.push(
                    Problem::new(
                        "hactl::stack::service_mode",
                        format!("a `{k}` service runs as `{m}`"),
                    )
                    .at(span, format!("not supported for {k}"))
                    .help(format!("set `mode: {m}`")),
                );
            }
            if mode == HaMode::ActivePassive && self.f.vip.is_none() {
                let span = self.loc_or(&s.mode, &format!("{base}.mode"));
                self.push(
                    Problem::new(
                        "hactl::stack::service_vip",
                        format!(
                            "active/passive service `{}` needs a `vip` to live behind",
                            s.name.value
                        ),
                    )
                    .at(span, "no VIP in this stack")
                    .help("add a `vip:` section; clients reach the active host through it"),
                );
            }
            // Hosts named explicitly.
            if let Some(hs) = &s.hosts {
                let mut seen = BTreeSet::new();
                for (j, n) in hs.value.iter().enumerate() {
                    let span = self.at(&format!("{base}.hosts.{j}"));
                    if self.host_index(n).is_none() {
                        let help = self.unknown_host_help(n);
                        self.push(
                            Problem::new(
                                "hactl::stack::service_host",
                                format!("service `{}` names unknown host `{n}`", s.name.value),
                            )
                            .at(span, "unknown host")
                            .help(help),
                        );
                    } else if !seen.insert(n) {
                        self.push(
                            Problem::new(
                                "hactl::stack::service_host",
                                format!("service `{}` names host `{n}` twice", s.name.value),
                            )
                            .at(span, "listed before")
                            .help("list each host once"),
                        );
                    }
                }
            }
            let count = self.service_hosts(si).len() as i64;
            let mut seen_ports = BTreeSet::new();
            for (j, p) in s.ports.iter().enumerate() {
                if self.port(p, &format!("{base}.ports.{j}")) && !seen_ports.insert(p.value) {
                    let span = self.loc(p);
                    self.push(
                        Problem::new(
                            "hactl::stack::service_ports",
                            format!("service `{}` lists port {} twice", s.name.value, p.value),
                        )
                        .at(span, "listed before")
                        .help("list each port once"),
                    );
                }
            }
            for (j, proto) in s.protocols.iter().enumerate() {
                let span = self.at(&format!("{base}.protocols.{j}"));
                if kind != ServiceKind::Syslog {
                    self.push(
                        Problem::new(
                            "hactl::stack::service",
                            "`protocols` is only for syslog services",
                        )
                        .at(span, "not used by redis")
                        .help("remove `protocols`"),
                    );
                    break;
                }
                if proto != "udp" && proto != "tcp" {
                    self.push(
                        Problem::new(
                            "hactl::stack::service",
                            format!("unknown syslog protocol `{proto}`"),
                        )
                        .at(span, "not `udp` or `tcp`")
                        .help("syslog listens on `udp`, `tcp` or both"),
                    );
                }
            }
            if !s.proxy_ports.is_empty() && s.proxy_ports.len() != s.ports.len() {
                let span = self.key(&format!("{base}.proxy_ports"));
                self.push(
                    Problem::new(
                        "hactl::stack::service_ports",
                        format!(
                            "service `{}` has {} proxy port(s) for {} port(s)",
                            s.name.value,
                            s.proxy_ports.len(),
                            s.ports.len()
                        ),
                    )
                    .at(span, "one proxy port per port")
                    .help("list one haproxy port per entry of `ports`, in the same order"),
                );
            }
            if !s.proxy_ports.is_empty() && self.f.haproxy.is_none() {
                let span = self.key(&format!("{base}.proxy_ports"));
                self.push(
                    Problem::new(
                        "hactl::stack::service_ports",
                        format!(
                            "service `{}` has `proxy_ports` but the stack has no `haproxy`",
                            s.name.value
                        ),
                    )
                    .at(span, "nothing listens here")
                    .help("add a `haproxy:` section, or remove `proxy_ports`"),
                );
            }
            for (j, p) in s.proxy_ports.iter().enumerate() {
                self.port(p, &format!("{base}.proxy_ports.{j}"));
            }
            self.service_clients(si);
            // Promotion and quorum (redis only).
            if kind != ServiceKind::Redis {
                for (set, key) in [
                    (s.promotion.is_some(), "promotion"),
                    (s.quorum.is_some(), "quorum"),
                    (s.down_after.is_some(), "down_after"),
                ] {
                    if set {
                        let span = self.key(&format!("{base}.{key}"));
                        self.push(
                            Problem::new(
                                "hactl::stack::service",
                                format!("`{key}` is only for redis services"),
                            )
                            .at(span, "not used by this service")
                            .help(format!("remove `{key}`")),
                        );
                    }
                }
            } else {
                let sentinel = s
                    .promotion
                    .as_ref()
                    .is_none_or(|p| p.value == super::super::model::Promotion::Sentinel);
                if let Some(q) = &s.quorum {
                    let span = self.loc(q);
                    if !sentinel {
                        self.push(
                            Problem::new(
                                "hactl::stack::service_quorum",
                                "`quorum` is only used with `promotion: sentinel`",
                            )
                            .at(span, "no sentinels to vote")
                            .help("remove `quorum` or set `promotion: sentinel`"),
                        );
                    } else if q.value < 1 || q.value > count.max(1) {
                        self.push(
                            Problem::new(
                                "hactl::stack::service_quorum",
                                format!("sentinel quorum {} for `{}` needs 1–{} (one sentinel runs per host)", q.value, s.name.value, count.max(1)),
                            )
                            .at(span, "more votes than sentinels")
                            .help("a quorum larger than the number of sentinels can never be reached: use a majority, e.g. 2 of 3"),
                        );
                    }
                }
                // Sentinel failover needs a majority of all sentinels to authorize it
                // (redis.io, "Redis Sentinel", quorum vs majority): with one sentinel per host,
                // losing one of two hosts leaves 1 of 2, never a majority, whatever `quorum`.
                if sentinel && count == 2 {
                    let span = match &s.promotion {
                        Some(p) => self.loc(p),
                        None => self
                            .key(&format!("{base}.hosts"))
                            .or_else(|| self.loc(&s.kind)),
                    };
                    self.push(
                        Problem::new(
                            "hactl::stack::sentinel_majority",
                            format!(
                                "service `{}` runs on 2 hosts with `promotion: sentinel`: when \
                                 one host fails, the one sentinel left is not a majority of 2, \
                                 so no replica is ever promoted (a `quorum` of 1 does not help: \
                                 failover needs a majority of all sentinels)",
                                s.name.value,
                            ),
                        )
                        .at(span, "sentinel needs 3 or more hosts")
                        .help(
                            "set `promotion: hactl` (`hactl heal --watch` promotes; see \
                             stacks/lab-redis-2.yaml), or run the service on 3 or more hosts",
                        ),
                    );
                }
                if let Some(d) = &s.down_after {
                    self.dur_range(
                        d,
                        &format!("{base}.down_after"),
                        Dur::from_millis(100),
                        Dur::from_secs(3600),
                    );
                }
            }
            if let Some(p) = &s.password {
                self.plain_secret(p, &format!("{base}.password"));
            }
        }
    }

    /// `clients` and `client_ports`: the client-side haproxy of seed 002's `app` host.
    ///
    /// A client must be a host outside the service and not a `vip` host: a front host already
    /// serves the proxy ports itself (a client haproxy there would send to itself first), and
    /// a service host is one the clients' traffic is meant to fail over away from, so putting
    /// the client there ties its fate to one redis host. Client ports are forwarded to the
    /// proxy ports, so they need `proxy_ports`, one per entry, and at least one `vip` host.
    fn service_clients(&mut self, si: usize) {
        let s = &self.f.services[si];
        let base = format!("services.{si}");
        let name = &s.name.value;
        let clients = s
            .clients
            .as_ref()
            .map(|c| c.value.as_slice())
            .unwrap_or(&[]);
        if s.clients.is_none() && s.client_ports.is_empty() {
            return;
        }
        if s.kind.value != ServiceKind::Redis {
            let key = if s.clients.is_some() {
                "clients"
            } else {
                "client_ports"
            };
            let span = self.key(&format!("{base}.{key}"));
            self.push(
                Problem::new(
                    "hactl::stack::service_client",
                    format!("`{key}` is only for redis services"),
                )
                .at(span, "not used by this service")
                .help(format!("remove `{key}`")),
            );
            return;
        }
        if s.client_ports.is_empty() || clients.is_empty() {
            let (key, missing) = if s.client_ports.is_empty() {
                ("clients", "client_ports")
            } else {
                ("client_ports", "clients")
            };
            let span = self.key(&format!("{base}.{key}"));
            self.push(
                Problem::new(
                    "hactl::stack::service_client",
                    format!("service `{name}` has `{key}` but no `{missing}`"),
                )
                .at(span, format!("needs `{missing}`"))
                .help("client hosts get one local port per proxy port: set both `clients` and `client_ports`, or neither"),
            );
            return;
        }
        if s.proxy_ports.is_empty() {
            let span = self.key(&format!("{base}.client_ports"));
            self.push(
                Problem::new(
                    "hactl::stack::service_ports",
                    format!("service `{name}` has `client_ports` but no `proxy_ports`"),
                )
                .at(span, "nothing to forward to")
                .help("a client port forwards to the front hosts' haproxy: list `proxy_ports` too, one per entry of `ports`"),
            );
        } else if s.client_ports.len() != s.proxy_ports.len() {
            let span = self.key(&format!("{base}.client_ports"));
            self.push(
                Problem::new(
                    "hactl::stack::service_ports",
                    format!(
                        "service `{name}` has {} client port(s) for {} proxy port(s)",
                        s.client_ports.len(),
                        s.proxy_ports.len()
                    ),
                )
                .at(span, "one client port per proxy port")
                .help("list one client port per entry of `proxy_ports`, in the same order"),
            );
        }
        let mut seen_ports = BTreeSet::new();
        for (j, p) in s.client_ports.iter().enumerate() {
            if self.port(p, &format!("{base}.client_ports.{j}")) && !seen_ports.insert(p.value) {
                let span = self.loc(p);
                self.push(
                    Problem::new(
                        "hactl::stack::service_ports",
                        format!("service `{name}` lists client port {} twice", p.value),
                    )
                    .at(span, "listed before")
                    .help("list each port once"),
                );
            }
        }
        let service_hosts = self.service_hosts(si);
        let mut seen = BTreeSet::new();
        for (j, n) in clients.iter().enumerate() {
            let span = self.at(&format!("{base}.clients.{j}"));
            let Some(hi) = self.host_index(n) else {
                let help = self.unknown_host_help(n);
                self.push(
                    Problem::new(
                        "hactl::stack::service_client",
                        format!("service `{name}` names unknown client host `{n}`"),
                    )
                    .at(span, "unknown host")
                    .help(help),
                );
                continue;
            };
            if !seen.insert(n) {
                self.push(
                    Problem::new(
                        "hactl::stack::service_client",
                        format!("service `{name}` names client host `{n}` twice"),
                    )
                    .at(span, "listed before")
                    .help("list each host once"),
                );
            } else if service_hosts.contains(&hi) {
                self.push(
                    Problem::new(
                        "hactl::stack::service_client",
                        format!("client host `{n}` also runs service `{name}`"),
                    )
                    .at(span, "a service host")
                    .help(format!("clients are hosts outside the service (an app server): remove `{n}` from `clients` or from the service's hosts")),
                );
            } else if host_roles(&self.f.hosts[hi]).contains("vip") {
                self.push(
                    Problem::new(
                        "hactl::stack::service_client",
                        format!("client host `{n}` is a `vip` host, whose haproxy already serves the proxy ports"),
                    )
                    .at(span, "a front host")
                    .help(format!("programs on `{n}` can use the proxy ports directly; or give `{n}` `roles` without `vip`")),
                );
            }
        }
        if !self.f.hosts.iter().any(|h| host_roles(h).contains("vip")) {
            let span = self.key(&format!("{base}.clients"));
            self.push(
                Problem::new(
                    "hactl::stack::service_client",
                    format!("service `{name}` has clients but no host has the `vip` role"),
                )
                .at(span, "no front host to forward to")
                .help("client ports forward to the haproxy of the `vip` hosts: give at least one host the `vip` role"),
            );
        }
    }

    fn roles(&mut self) {
        let mut known: Vec<String> = BUILTIN_ROLES.iter().map(|s| s.to_string()).collect();
        known.extend(self.f.services.iter().map(|s| s.name.value.clone()));
        for (i, h) in self.f.hosts.iter().enumerate() {
            let Some(roles) = &h.roles else { continue };
            for (j, r) in roles.value.iter().enumerate() {
                if !known.iter().any(|k| k == r) {
                    let span = self.at(&format!("hosts.{i}.roles.{j}"));
                    let hint = match did_you_mean(r, known.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("roles are {} or a service's name", ticks(BUILTIN_ROLES)),
                    };
                    self.push(
                        Problem::new(
                            "hactl::stack::role",
                            format!("host `{}` has unknown role `{r}`", h.name.value),
                        )
                        .at(span, "unknown role")
                        .help(hint),
                    );
                }
            }
        }
        if self.f.vip.is_some()
            && self.f.provider.value == ProviderKind::Hosts
            && !self.f.hosts.is_empty()
            && !self.f.hosts.iter().any(|h| host_roles(h).contains("vip"))
        {
            let span = self.key("vip");
            self.push(
                Problem::new("hactl::stack::role", "no host has the `vip` role, so nothing would hold the VIP")
                    .at(span, "no VRRP hosts")
                    .help("add `vip` to the `roles` of the hosts that should hold it (it is in the default roles)"),
            );
        }
    }

    /// Two things listening on the same port of the same host.
    fn ports(&mut self) {
        struct L {
            port: i64,
            what: String,
            span: Option<SourceSpan>,
            hosts: BTreeSet<usize>,
        }
        let all: BTreeSet<usize> = if self.f.provider.value == ProviderKind::Aws {
            [0].into()
        } else {
            (0..self.f.hosts.len()).collect()
        };
        let with_role = |role: &str| -> BTreeSet<usize> {
            if self.f.provider.value == ProviderKind::Aws {
                return all.clone();
            }
            all.iter()
                .copied()
                .filter(|&i| host_roles(&self.f.hosts[i]).contains(role))
                .collect()
        };
        let mut ls: Vec<L> = Vec::new();
        if let Some(n) = &self.f.nginx {
            ls.push(L {
                port: n.listen.value,
                what: "nginx.listen".into(),
                span: self.loc_or(&n.listen, "nginx"),
                hosts: with_role("app"),
            });
        }
        if let Some(h) = &self.f.haproxy {
            let hosts = with_role("vip");
            ls.push(L {
                port: h.listen.value,
                what: "haproxy.listen".into(),
                span: self.loc_or(&h.listen, "haproxy"),
                hosts: hosts.clone(),
            });
            // client hosts' haproxy has the stats page too (not the HTTP frontend)
            let clients = self
                .f
                .services
                .iter()
                .filter(|s| !s.client_ports.is_empty());
            let hosts: BTreeSet<usize> = clients
                .flat_map(|s| s.clients.iter().flat_map(|c| c.value.iter()))
                .filter_map(|n| self.host_index(n))
                .chain(hosts)
                .collect();
            if let Some(p) = h.stats_port.as_ref().filter(|p| p.value != 0) {
                ls.push(L {
                    port: p.value,
                    what: "haproxy.stats_port".into(),
                    span: self.loc(p),
                    hosts,
                });
            }
        }
        if let Some(a) = &self.f.app {
            let hosts = with_role("app");
            let span = self.loc_or(&a.host_port, "app");
            ls.push(L {
                port: a.host_port.value,
                what: "app.host_port".into(),
                span,
                hosts: hosts.clone(),
            });
            ls.push(L {
                // Saturating: an out-of-range `host_port` is reported by `app()`, and must not
                // overflow here (it did: `host_port: 9223372036854775807` panicked).
                port: a.host_port.value.saturating_add(100),
                what: "app.host_port + 100 (the blue/green twin)".into(),
                span,
                hosts,
            });
        }
        for (si, s) in self.f.services.iter().enumerate() {
            let hosts: BTreeSet<usize> = if self.f.provider.value == ProviderKind::Aws {
                all.clone()
            } else {
                self.service_hosts(si).into_iter().collect()
            };
            let proxy_hosts = with_role("vip");
            let client_hosts: BTreeSet<usize> = s
                .clients
                .iter()
                .flat_map(|c| c.value.iter())
                .filter_map(|n| self.host_index(n))
                .collect();
            for (j, p) in s.client_ports.iter().enumerate() {
                ls.push(L {
                    port: p.value,
                    what: format!("services[{si}].client_ports[{j}] (`{}`)", s.name.value),
                    span: self.loc(p),
                    hosts: client_hosts.clone(),
                });
            }
            for (j, p) in s.proxy_ports.iter().enumerate() {
                ls.push(L {
                    port: p.value,
                    what: format!("services[{si}].proxy_ports[{j}] (`{}`)", s.name.value),
                    span: self.loc(p),
                    hosts: proxy_hosts.clone(),
                });
            }
            for (j, p) in s.ports.iter().enumerate() {
                ls.push(L {
                    port: p.value,
                    what: format!("services[{si}].ports[{j}] (`{}`)", s.name.value),
                    span: self.loc(p),
                    hosts: hosts.clone(),
                });
            }
        }
        // Only listeners on the same port are compared (not every pair of the list).
        let mut same_port: HashMap<i64, Vec<usize>> = HashMap::new();
        for (k, l) in ls.iter().enumerate() {
            if (1..=65535).contains(&l.port) {
                same_port.entry(l.port).or_default().push(k);
            }
        }
        for k in 0..ls.len() {
            let earlier = same_port.get(&ls[k].port).map(Vec::as_slice).unwrap_or(&[]);
            for &j in earlier.iter().take_while(|&&j| j < k) {
                let (a, b) = (&ls[j], &ls[k]);
                let Some(&on) = a.hosts.intersection(&b.hosts).next() else {
                    continue;
                };
                let host = if self.f.provider.value == ProviderKind::Aws {
                    "every host".to_string()
                } else {
                    format!("host `{}`", self.f.hosts[on].name.value)
                };
                let (first, second) = if a.span.map(|s| s.offset()) <= b.span.map(|s| s.offset()) {
                    (a, b)
                } else {
                    (b, a)
                };
                let fline = self.line_of(first.span);
                let p = Problem::new(
                    "hactl::stack::port_conflict",
                    format!(
                        "`{}` and `{}` both listen on port {} on {host}",
                        first.what, second.what, a.port
                    ),
                )
                .at(second.span, "port already taken")
                .help(format!(
                    "`{}` ({fline}) already uses port {}: move one of them",
                    first.what, a.port
                ));
                self.out.push(p);
                break;
            }
        }
    }

    fn files_state_vault(&mut self) {
        let known = self.known_services();
        for (i, fs) in self.f.files.iter().enumerate() {
            if !fs.dest.value.starts_with('/') {
                let span = self.loc(&fs.dest);
                self.push(
                    Problem::new(
                        "hactl::stack::file",
                        format!("destination `{}` is not an absolute path", fs.dest.value),
                    )
                    .at(span, "not absolute")
                    .help("write the full path on the host, e.g. `/etc/app/app.conf`"),
                );
            }
            if let Some(m) = &fs.mode {
                let ok = (3..=4).contains(&m.len()) && m.chars().all(|c| ('0'..='7').contains(&c));
                if !ok {
                    let span = self.at(&format!("files.{i}.mode"));
                    self.push(
                        Problem::new(
                            "hactl::stack::file",
                            format!("mode `{m}` is not an octal file mode"),
                        )
                        .at(span, "not octal")
                        .help("quote an octal mode: `mode: \"0644\"`"),
                    );
                }
            }
            if let Some(hs) = &fs.hosts {
                for h in &hs.value {
                    if self.host_index(h).is_none() {
                        let span = self.loc(hs);
                        self.push(
                            Problem::new(
                                "hactl::stack::file",
                                format!("`files[{i}].hosts` names unknown host `{h}`"),
                            )
                            .at(span, "unknown host")
                            .help("list host names from `hosts:`"),
                        );
                    }
                }
            }
            if let Some(r) = &fs.reload {
                if !known.iter().any(|k| k == r) {
                    let span = self.at(&format!("files.{i}.reload"));
                    let hint = match did_you_mean(r, known.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("the services are {}", ticks(&known)),
                    };
                    self.push(
                        Problem::new(
                            "hactl::stack::file",
                            format!("`reload` names unknown service `{r}`"),
                        )
                        .at(span, "unknown service")
                        .help(hint),
                    );
                }
            }
        }
        if let Some(st) = &self.f.state {
            let b = st.backend.value.as_str();
            if b != "local" && b != "s3" {
                let span = self.loc_or(&st.backend, "state.backend");
                self.push(
                    Problem::new(
                        "hactl::stack::state",
                        format!("unknown state backend `{b}`"),
                    )
                    .at(span, "not `local` or `s3`")
                    .help("use `local` (a file beside the stack) or `s3`"),
                );
            } else if b == "s3" && st.bucket.is_none() {
                let span = self.loc_or(&st.backend, "state.backend");
                self.push(
                    Problem::new(
                        "hactl::stack::state",
                        "the `s3` state backend needs a `bucket`",
                    )
                    .at(span, "no bucket")
                    .help("add `bucket: my-hactl-state` under `state`"),
                );
            }
        }
    }

    fn aws(&mut self) {
        let Some(aws) = &self.f.aws else { return };
        let region = aws.region.value.as_str();
        let region_ok = region_name_ok(region);
        if !region_ok {
            let span = self.loc(&aws.region);
            self.push(
                Problem::new(
                    "hactl::stack::aws_region",
                    format!("`{region}` is not an AWS region name"),
                )
                .at(span, "not a region")
                .help("e.g. `eu-west-1` or `us-east-2`"),
            );
        }
        // Zones.
        let zones = &aws.zones.value;
        let zspan = self.loc_or(&aws.zones, "aws.zones");
        let distinct: BTreeSet<&String> = zones.iter().collect();
        if distinct.len() < 2 {
            self.push(
                Problem::new(
                    "hactl::stack::aws_zones",
                    format!(
                        "`aws.zones` names {} distinct zone(s); high availability needs at least 2",
                        distinct.len()
                    ),
                )
                .at(zspan, "fewer than 2 zones")
                .help(format!("e.g. `zones: [{region}a, {region}b]`")),
            );
        }
        let mut seen = BTreeSet::new();
        for (j, z) in zones.iter().enumerate() {
            let span = self.at(&format!("aws.zones.{j}"));
            if !seen.insert(z) {
                self.push(
                    Problem::new(
                        "hactl::stack::aws_zones",
                        format!("zone `{z}` is listed twice"),
                    )
                    .at(span, "listed before")
                    .help("each zone once; hosts are spread round-robin over them"),
                );
            } else if region_ok
                && !(z.starts_with(region)
                    && z.len() > region.len()
                    && z[region.len()..].chars().all(|c| c.is_ascii_lowercase()))
            {
                self.push(
                    Problem::new(
                        "hactl::stack::aws_zones",
                        format!("zone `{z}` is not in region `{region}`"),
                    )
                    .at(span, "not in this region")
                    .help(format!("zones are the region plus a letter: `{region}a`")),
                );
            }
        }
        // Network.
        let net = &aws.network;
        let new_vpc = net.vpc_cidr.is_some() || net.subnets.is_some();
        let existing = net.vpc_id.is_some() || net.subnet_ids.is_some();
        if new_vpc == existing
            || (new_vpc && (net.vpc_cidr.is_none() || net.subnets.is_none()))
            || (existing && (net.vpc_id.is_none() || net.subnet_ids.is_none()))
        {
            let span = self.key("aws.network");
            self.push(
                Problem::new("hactl::stack::aws_network", "`aws.network` needs either `vpc_cidr` + `subnets` (a new VPC) or `vpc_id` + `subnet_ids` (an existing one)")
                    .at(span, "incomplete or mixed network")
                    .help("e.g. `network: {vpc_cidr: 10.20.0.0/16, subnets: [10.20.1.0/24, 10.20.2.0/24]}`"),
            );
        }
        let mut vpc: Option<IpNet> = None;
        if let Some(c) = &net.vpc_cidr {
            match c.value.parse::<IpNet>() {
                Ok(IpNet::V4(n)) if (16..=28).contains(&n.prefix_len()) => vpc = Some(IpNet::V4(n)),
                _ => {
                    let span = self.loc(c);
                    self.push(
                        Problem::new(
                            "hactl::stack::aws_network",
                            format!("`{}` is not an IPv4 VPC CIDR (/16–/28)", c.value),
                        )
                        .at(span, "bad VPC CIDR")
                        .help("e.g. `10.20.0.0/16`"),
                    );
                }
            }
        }
        let mut subnets: Vec<IpNet> = Vec::new();
        if let Some(s) = &net.subnets {
            if s.value.len() != zones.len() {
                let span = self.loc_or(s, "aws.network.subnets");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_subnets",
                        format!(
                            "{} subnet(s) for {} zone(s): one subnet per zone, in zone order",
                            s.value.len(),
                            zones.len()
                        ),
                    )
                    .at(span, "count differs from zones")
                    .help("list exactly one subnet CIDR per entry of `aws.zones`"),
                );
            }
            for (j, text) in s.value.iter().enumerate() {
                let span = self.at(&format!("aws.network.subnets.{j}"));
                match text.parse::<IpNet>() {
                    Err(_) => self.push(
                        Problem::new(
                            "hactl::stack::aws_subnets",
                            format!("`{text}` is not a CIDR"),
                        )
                        .at(span, "bad CIDR")
                        .help("e.g. `10.20.1.0/24`"),
                    ),
                    Ok(n) => {
                        if let Some(v) = vpc {
                            if !v.contains(&n) {
                                self.push(
                                    Problem::new(
                                        "hactl::stack::aws_subnets",
                                        format!("subnet {n} is not inside the VPC {v}"),
                                    )
                                    .at(span, "outside vpc_cidr")
                                    .help("every subnet must be carved out of `vpc_cidr`"),
                                );
                            }
                        }
                        if let Some(o) = subnets
                            .iter()
                            .find(|o| o.contains(&n.network()) || n.contains(&o.network()))
                        {
                            self.push(
                                Problem::new(
                                    "hactl::stack::aws_subnets",
                                    format!("subnet {n} overlaps {o}"),
                                )
                                .at(span, "overlapping subnet")
                                .help("subnets of one VPC may not overlap"),
                            );
                        }
                        subnets.push(n);
                    }
                }
            }
        }
        if let Some(ids) = &net.subnet_ids {
            if ids.len() != zones.len() {
                let span = self.key("aws.network.subnet_ids");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_subnets",
                        format!(
                            "{} subnet id(s) for {} zone(s): one per zone, in zone order",
                            ids.len(),
                            zones.len()
                        ),
                    )
                    .at(span, "count differs from zones")
                    .help("list exactly one `subnet-…` id per entry of `aws.zones`"),
                );
            }
        }
        if let Some(c) = &net.ssh_cidr {
            if c.value.parse::<IpNet>().is_err() {
                let span = self.loc(c);
                self.push(
                    Problem::new(
                        "hactl::stack::aws_network",
                        format!("`ssh_cidr` `{}` is not a CIDR", c.value),
                    )
                    .at(span, "bad CIDR")
                    .help("e.g. `203.0.113.0/24` (your office) — avoid `0.0.0.0/0`"),
                );
            }
        }
        // The VIP on AWS lives in one of the subnets.
        if let (Some(vn), false) = (self.vip_net, subnets.is_empty()) {
            if !subnets.iter().any(|s| s.contains(&vn.addr())) {
                let span = self.f.vip.as_ref().and_then(|v| self.loc(&v.address));
                self.push(
                    Problem::new("hactl::stack::vip_subnet", format!("the VIP {} is in none of the subnets", vn.addr()))
                        .at(span, "outside every subnet")
                        .help("on AWS the VIP is a private address of one subnet: pick it inside one of `aws.network.subnets`"),
                );
            }
        }
        // Hosts.
        let h = &aws.hosts;
        self.int_range(
            &h.count,
            "aws.hosts.count",
            1,
            100,
            "hactl::stack::aws_hosts",
            "at least 1 host (2 or more for high availability), spread over the zones",
        );
        if !h.ami.value.starts_with("ami-") {
            let span = self.loc(&h.ami);
            self.push(
                Problem::new(
                    "hactl::stack::aws_hosts",
                    format!("`{}` is not an AMI id", h.ami.value),
                )
                .at(span, "not `ami-…`")
                .help("e.g. `ami-0123456789abcdef0`"),
            );
        }
        if !h.instance_type.value.contains('.') {
            let span = self.loc(&h.instance_type);
            self.push(
                Problem::new(
                    "hactl::stack::aws_hosts",
                    format!("`{}` is not an instance type", h.instance_type.value),
                )
                .at(span, "not family.size")
                .help("e.g. `t3.small`"),
            );
        }
        self.int_range(
            &h.root_volume_gb,
            "aws.hosts.root_volume_gb",
            8,
            16384,
            "hactl::stack::aws_hosts",
            "EBS root volumes are 8–16384 GiB",
        );
        // Balancer.
        if let Some(b) = &aws.balancer {
            let kind = b.kind.value.as_str();
            if kind != "alb" && kind != "nlb" {
                let span = self.loc_or(&b.kind, "aws.balancer.kind");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_balancer",
                        format!("unknown balancer kind `{kind}`"),
                    )
                    .at(span, "not `alb` or `nlb`")
                    .help("`alb` (HTTP/HTTPS) or `nlb` (TCP)"),
                );
            }
            let protos: &[&str] = if kind == "nlb" {
                &["TCP", "TLS", "UDP", "TCP_UDP"]
            } else {
                &["HTTP", "HTTPS"]
            };
            for (j, l) in b.listeners.iter().enumerate() {
                self.port(&l.port, &format!("aws.balancer.listeners.{j}.port"));
                if !protos.contains(&l.protocol.as_str()) {
                    let span = self.at(&format!("aws.balancer.listeners.{j}.protocol"));
                    self.push(
                        Problem::new(
                            "hactl::stack::aws_balancer",
                            format!("protocol `{}` is not available on an {kind}", l.protocol),
                        )
                        .at(span, "wrong protocol")
                        .help(format!("use one of {}", ticks(protos))),
                    );
                }
            }
            self.port(&b.target_port, "aws.balancer.target_port");
            let hc = &b.health_check;
            let ip = "aws.balancer.health_check.interval";
            let tp = "aws.balancer.health_check.timeout";
            let a = self.dur_range(&hc.interval, ip, Dur::from_secs(5), Dur::from_secs(300))
                && self.whole_seconds(&hc.interval, ip, "ELB health checks count whole seconds");
            let t = self.dur_range(&hc.timeout, tp, Dur::from_secs(2), Dur::from_secs(120))
                && self.whole_seconds(&hc.timeout, tp, "ELB health checks count whole seconds");
            if a && t && hc.timeout.value >= hc.interval.value {
                let span = self.loc_or(&hc.timeout, tp);
                self.push(
                    Problem::new(
                        "hactl::stack::aws_balancer",
                        format!(
                            "health check timeout {} is not shorter than its interval {}",
                            hc.timeout.value, hc.interval.value
                        ),
                    )
                    .at(span, "must be < interval")
                    .help("ELB requires the timeout to be shorter than the interval"),
                );
            }
            self.int_range(
                &hc.healthy_threshold,
                "aws.balancer.health_check.healthy_threshold",
                2,
                10,
                "hactl::stack::aws_balancer",
                "ELB thresholds are 2–10",
            );
            self.int_range(
                &hc.unhealthy_threshold,
                "aws.balancer.health_check.unhealthy_threshold",
                2,
                10,
                "hactl::stack::aws_balancer",
                "ELB thresholds are 2–10",
            );
            if !hc.path.starts_with('/') {
                let span = self.at("aws.balancer.health_check.path");
                self.push(
                    Problem::new(
                        "hactl::stack::path",
                        format!("health check path `{}` does not start with `/`", hc.path),
                    )
                    .at(span, "not a URL path")
                    .help("e.g. `/healthz`"),
                );
            }
            self.dur_range(
                &b.deregistration_delay,
                "aws.balancer.deregistration_delay",
                Dur::from_secs(0),
                Dur::from_secs(3600),
            );
        }
        let t = &aws.timeouts;
        for (v, path) in [
            (&t.instance, "aws.timeouts.instance"),
            (&t.load_balancer, "aws.timeouts.load_balancer"),
            (&t.file_system, "aws.timeouts.file_system"),
            (&t.database, "aws.timeouts.database"),
            (&t.propagation, "aws.timeouts.propagation"),
            (&t.ssh, "aws.timeouts.ssh"),
        ] {
            if let Some(v) = v {
                self.dur_range(v, path, Dur::from_secs(1), Dur::from_secs(4 * 3600));
            }
        }
        if let Some(fs) = &aws.shared_fs {
            let m = fs.performance_mode.value.as_str();
            if m != "generalPurpose" && m != "maxIO" {
                let span = self.loc_or(&fs.performance_mode, "aws.shared_fs.performance_mode");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_shared_fs",
                        format!("unknown EFS performance mode `{m}`"),
                    )
                    .at(span, "not generalPurpose/maxIO")
                    .help("use `generalPurpose` (the default) or `maxIO`"),
                );
            }
            if !fs.mount_path.starts_with('/') {
                let span = self.at("aws.shared_fs.mount_path");
                self.push(
                    Problem::new(
                        "hactl::stack::aws_shared_fs",
                        format!("mount path `{}` is not absolute", fs.mount_path),
                    )
                    .at(span, "not absolute")
                    .help("e.g. `/mnt/shared`"),
                );
            }
        }
        if let Some(db) = &aws.database {
            let engines = ["postgres", "mysql", "mariadb"];
            if !engines.contains(&db.engine.value.as_str()) {
                let span = self.loc(&db.engine);
                let hint = match did_you_mean(&db.engine.value, engines) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("use one of {}", ticks(&engines)),
                };
                self.push(
                    Problem::new(
                        "hactl::stack::aws_database",
                        format!("unknown database engine `{}`", db.engine.value),
                    )
                    .at(span, "unknown engine")
                    .help(hint),
                );
            }
            if !db.instance_class.value.starts_with("db.") {
                let span = self.loc(&db.instance_class);
                self.push(
                    Problem::new(
                        "hactl::stack::aws_database",
                        format!("`{}` is not an RDS instance class", db.instance_class.value),
                    )
                    .at(span, "not `db.…`")
                    .help("e.g. `db.t3.micro`"),
                );
            }
            self.int_range(
                &db.storage_gb,
                "aws.database.storage_gb",
                20,
                65536,
                "hactl::stack::aws_database",
                "RDS storage is 20–65536 GiB",
            );
            if let Some(p) = &db.port {
                self.port(p, "aws.database.port");
            }
            self.plain_secret(&db.password, "aws.database.password");
        }
    }

    /// `vip.aws`: what the notify hook needs to move the VIP with the EC2 API. Everything it
    /// would only find out on a failover (a typo in an interface id, no region, a VIP that
    /// AssignPrivateIpAddresses cannot take) is refused here, while nothing is at stake.
    fn vip_aws(&mut self) {
        let Some(vip) = &self.f.vip else { return };
        let Some(aws) = &vip.aws else { return };
        let mode = aws.mode.value.as_str();
        if mode != "secondary_ip" && mode != "elastic_ip" {
            let span = self.loc(&aws.mode);
            let hint = match did_you_mean(mode, ["secondary_ip", "elastic_ip"]) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "use `secondary_ip` (a private IP moved between instances) or \
                         `elastic_ip` (an Elastic IP on that private IP)"
                    .into(),
            };
            self.push(
                Problem::new(
                    "hactl::stack::vip_aws",
                    format!("unknown VIP mode on AWS `{mode}`"),
                )
                .at(span, "not `secondary_ip` or `elastic_ip`")
                .help(hint),
            );
        }
        match (&aws.allocation_id, mode) {
            (None, "elastic_ip") => {
                let span = self.loc(&aws.mode);
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        "`elastic_ip` needs the Elastic IP's `allocation_id`",
                    )
                    .at(span, "no allocation_id")
                    .help("add `allocation_id: eipalloc-…` under `vip.aws`"),
                );
            }
            (Some(a), "secondary_ip") => {
                let span = self.loc(a);
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        "`allocation_id` is only used with `mode: elastic_ip`",
                    )
                    .at(span, "ignored with `secondary_ip`")
                    .help("remove it, or set `mode: elastic_ip` to move the Elastic IP too"),
                );
            }
            (Some(a), _) if !ec2_id_ok(&a.value, "eipalloc") => {
                let span = self.loc(a);
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!("`{}` is not an Elastic IP allocation id", a.value),
                    )
                    .at(span, "not `eipalloc-` and 8 or 17 hex digits")
                    .help("copy it from `aws ec2 describe-addresses` (AllocationId)"),
                );
            }
            _ => {}
        }
        // The region: the hook signs every call for it.
        let stack_region = self.f.aws.as_ref().map(|a| &a.region);
        match (&aws.region, stack_region) {
            (Some(r), _) if !region_name_ok(&r.value) => {
                let span = self.loc(r);
                self.push(
                    Problem::new(
                        "hactl::stack::aws_region",
                        format!("`{}` is not an AWS region name", r.value),
                    )
                    .at(span, "not a region")
                    .help("e.g. `eu-west-1` or `us-east-2`"),
                );
            }
            (None, None) => {
                let span = self.key("vip.aws");
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        "`vip.aws` needs the hosts' `region`",
                    )
                    .at(span, "no region")
                    .help("add `region: eu-west-1` (the region of the hosts' VPC) under `vip.aws`"),
                );
            }
            _ => {}
        }
        for (value, path, example) in [
            (
                &aws.endpoint,
                "vip.aws.endpoint",
                "https://vpce-0a1b….ec2.eu-west-1.vpce.amazonaws.com",
            ),
            (
                &Some(aws.metadata_endpoint.clone()),
                "vip.aws.metadata_endpoint",
                "http://169.254.169.254",
            ),
        ] {
            let Some(u) = value else { continue };
            if !http_url(&u.value) {
                let span = self.loc_or(u, path);
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!("`{}` is not an http(s) URL: `{}`", shown(path), u.value),
                    )
                    .at(span, "not a URL")
                    .help(format!("e.g. `{example}`")),
                );
            }
        }
        // AssignPrivateIpAddresses moves IPv4 addresses (IPv6 has its own calls).
        if let Some(net) = self.vip_net {
            if !net.addr().is_ipv4() {
                let span = self.at("vip.address");
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!(
                            "the VIP {} is IPv6; `vip.aws` moves IPv4 private addresses",
                            net.addr()
                        ),
                    )
                    .at(span, "not IPv4")
                    .help("use an IPv4 VIP from the hosts' subnet"),
                );
            }
        }
        // Interfaces: none (each host asks the metadata service), or one per VIP host.
        let vip_hosts: Vec<&str> = self
            .f
            .hosts
            .iter()
            .filter(|h| host_roles(h).contains("vip"))
            .map(|h| h.name.value.as_str())
            .collect();
        let vip_set: HashSet<&str> = vip_hosts.iter().copied().collect();
        for (name, eni) in &aws.interfaces {
            let path = format!("vip.aws.interfaces.{name}");
            if !vip_set.contains(name.as_str()) {
                let span = self.key(&path);
                let known = self.host_index(name).is_some();
                let hint = match self.suggest(name, &vip_hosts) {
                    Some(s) if !known => format!("did you mean `{s}`?"),
                    _ => format!("the VIP hosts are {}", ticks(&vip_hosts)),
                };
                let what = if known {
                    "has no `vip` role"
                } else {
                    "is not a host"
                };
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!("`vip.aws.interfaces` names `{name}`, which {what}"),
                    )
                    .at(span, "not a VIP host")
                    .help(hint),
                );
            }
            if !ec2_id_ok(&eni.value, "eni") {
                let span = self.loc_or(eni, &path);
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!("`{}` is not a network interface id", eni.value),
                    )
                    .at(span, "not `eni-` and 8 or 17 hex digits")
                    .help(
                        "copy it from `aws ec2 describe-network-interfaces` (NetworkInterfaceId)",
                    ),
                );
            }
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, eni) in &aws.interfaces {
            if let Some(first) = seen.insert(eni.value.as_str(), name.as_str()) {
                let span = self.loc_or(eni, &format!("vip.aws.interfaces.{name}"));
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!(
                            "hosts `{first}` and `{name}` have the same interface `{}`",
                            eni.value
                        ),
                    )
                    .at(span, "used twice")
                    .help("each host has its own network interface; the VIP moves between them"),
                );
            }
        }
        if !aws.interfaces.is_empty() {
            let missing: Vec<&str> = vip_hosts
                .iter()
                .copied()
                .filter(|h| !aws.interfaces.contains_key(*h))
                .collect();
            if !missing.is_empty() {
                let span = self.key("vip.aws.interfaces");
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        format!("`vip.aws.interfaces` has no interface for {}", ticks(&missing)),
                    )
                    .at(span, "incomplete")
                    .help("list every VIP host's interface, or none to ask the instance metadata service"),
                );
            }
        }
        // Credentials: both or neither (the instance role); the secret key only from the vault.
        match (&aws.access_key_id, &aws.secret_access_key) {
            (Some(k), None) => {
                let span = self.loc_or(k, "vip.aws.access_key_id");
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        "`vip.aws.access_key_id` without `secret_access_key`",
                    )
                    .at(span, "half a credential")
                    .help("add `secret_access_key: {secret: NAME}`, or remove both to use the instance role"),
                );
            }
            (None, Some(k)) => {
                let span = self.loc_or(k, "vip.aws.secret_access_key");
                self.push(
                    Problem::new(
                        "hactl::stack::vip_aws",
                        "`vip.aws.secret_access_key` without `access_key_id`",
                    )
                    .at(span, "half a credential")
                    .help("add `access_key_id`, or remove both to use the instance role"),
                );
            }
            (Some(_), Some(secret)) => self.plain_secret(secret, "vip.aws.secret_access_key"),
            (None, None) => {}
        }
        self.int_range(
            &aws.attempts,
            "vip.aws.attempts",
            1,
            20,
            "hactl::stack::vip_aws",
            "a handful of attempts rides out throttling; `deadline` bounds the time anyway",
        );
        self.dur_range_why(
            &aws.deadline,
            "vip.aws.deadline",
            Dur::from_secs(1),
            Dur::from_secs(300),
            Some("the hook gives up on the move after this long, retries included"),
        );
    }

    /// Hosts and VIP as the rest of hactl uses them.
    fn resolve(&self) -> Resolved {
        let vip_iface = self.f.vip.as_ref().map(|v| v.interface.clone());
        let members: Vec<usize> = (0..self.f.hosts.len())
            .filter(|&i| host_roles(&self.f.hosts[i]).contains("vip"))
            .collect();
        let mut hosts = Vec::new();
        for (i, h) in self.f.hosts.iter().enumerate() {
            let Some(address) = self.addrs.get(i).copied().flatten() else {
                continue;
            };
            let roles = host_roles(h);
            let peers: Vec<IpAddr> = match &h.peers {
                Some(p) => p
                    .value
                    .iter()
                    .filter_map(|n| self.host_index(n))
                    .filter_map(|k| self.addrs.get(k).copied().flatten())
                    .collect(),
                None if roles.contains("vip") => members
                    .iter()
                    .filter(|&&k| k != i)
                    .filter_map(|&k| self.addrs.get(k).copied().flatten())
                    .collect(),
                None => Vec::new(),
            };
            hosts.push(Host {
                name: h.name.value.clone(),
                address,
                ssh_target: h.ssh_host.clone().unwrap_or_else(|| address.to_string()),
                priority: self
                    .base_priority(i)
                    .clamp(MIN_VRRP_PRIORITY, MAX_VRRP_PRIORITY) as u8,
                peers,
                interface: h
                    .interface
                    .clone()
                    .or_else(|| vip_iface.clone())
                    .unwrap_or_else(|| "eth0".into()),
                roles,
            });
        }
        let vip = match (self.vip_net, self.vrrp_version()) {
            (Some(net), Some(version)) => Some(Vip {
                address: net.addr(),
                prefix: net.prefix_len(),
                vrrp_version: version,
            }),
            _ => None,
        };
        Resolved { hosts, vip }
    }
}

/// `eu-west-1`, `us-gov-east-1`: lowercase words and digits joined by `-`, ending in a number.
fn region_name_ok(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// An EC2 id: `prefix-` and 8 or 17 lowercase hex digits (`eni-0a1b2c3d`, `eipalloc-…`).
fn ec2_id_ok(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            (hex.len() == 8 || hex.len() == 17)
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

/// A host's roles, with the default `{vip, app}`.
fn host_roles(h: &super::super::model::HostSpec) -> BTreeSet<String> {
    match &h.roles {
        Some(r) => r.value.iter().cloned().collect(),
        None => ["vip", "app"].iter().map(|s| s.to_string()).collect(),
    }
}

/// Names: lowercase letters, digits and `-` (plus `.`, `_` and uppercase for host names), not
/// starting or ending with `-`, at most `max` characters.
fn name_ok(name: &str, max: usize, host: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (host && (c.is_ascii_uppercase() || c == '.' || c == '_'))
    };
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!("contains `{bad}`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("starts or ends with `-`".into());
    }
    Ok(())
}

/// An absolute `http`/`https` URL with a host, as the `url` crate (WHATWG URL rules) parses it:
/// what curl on the host will be given for checks, webhooks and AWS endpoints.
fn http_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        && !text.contains(char::is_whitespace)
}

fn parse_host_addr(text: &str) -> Result<IpAddr, String> {
    if text.contains('/') {
        return Err("has a prefix length; host addresses are written without one".into());
    }
    text.trim()
        .parse::<IpAddr>()
        .map_err(|_| "is not an IPv4 or IPv6 address".into())
}

fn parse_vip(text: &str) -> Result<IpNet, String> {
    if !text.contains('/') {
        return Err(if text.parse::<IpAddr>().is_ok() {
            "has no prefix length".into()
        } else {
            "is not an address with a prefix length".into()
        });
    }
    text.trim()
        .parse::<IpNet>()
        .map_err(|_| "is not an address with a prefix length".into())
}

/// `vip.checks.0.weight` as users read it: `vip.checks[0].weight`.
fn shown(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.') {
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The index first recorded for `key`, or None after recording `k` as the first.
fn first_seen(first: &mut HashMap<i64, usize>, key: i64, k: usize) -> Option<usize> {
    match first.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(k);
            None
        }
    }
}

/// Items most shown in a list of [`ticks`]: a hint naming ten thousand hosts (once per
/// problem) would be longer than the file.
const TICKS_SHOWN: usize = 12;

/// `a`, `b`, `c` (or the first few of a long list and how many more).
fn ticks<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = items
        .iter()
        .take(TICKS_SHOWN)
        .map(|i| format!("`{}`", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > TICKS_SHOWN {
        out.push_str(&format!(" and {} more", items.len() - TICKS_SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::load_bytes;
    use crate::stack::Stack;

    const HOSTS: &str = "name: t\nprovider: hosts\nhosts:\n  - {name: a, address: 192.0.2.11}\n  - {name: b, address: 192.0.2.12}\n  - {name: c, address: 192.0.2.13}\n";

    fn load(text: &str) -> Result<Stack, Vec<&'static str>> {
        load_bytes(Path::new("t.yaml"), text.as_bytes()).map_err(|e| e.codes())
    }

    fn codes(text: &str) -> Vec<&'static str> {
        load(text).err().unwrap_or_default()
    }

    fn vip(extra: &str) -> String {
        format!("{HOSTS}vip:\n  address: 192.0.2.100/24\n  virtual_router_id: 9\n{extra}")
    }

    /// Regression (issue 15 §6): `app.host_port: 9223372036854775807` overflowed (a panic in
    /// a debug build, a wrapped port in release). The class: every integer value of every
    /// example stack (so a new integer field is covered by the example that shows it), set to
    /// the extremes of i64, just past them, and past u16/u32, is a diagnostic on its own line,
    /// never a panic or an accepted value.
    #[test]
    fn every_integer_field_at_its_extremes_is_a_diagnostic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks");
        let mut tried = 0;
        for entry in std::fs::read_dir(&dir).expect("stacks/") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("reads");
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                let Some((key, value)) = line.split_once(": ") else {
                    continue;
                };
                let value = value.split('#').next().unwrap_or("").trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                for extreme in [
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775808",
                    "18446744073709551616",
                    "4294967296",
                ] {
                    let mut edited = lines.clone();
                    let new = format!("{key}: {extreme}");
                    edited[n] = &new;
                    let err = load_bytes(&path, edited.join("\n").as_bytes())
                        .err()
                        .unwrap_or_else(|| {
                            panic!("{}:{}: `{new}` was accepted", path.display(), n + 1)
                        });
                    let d = err.diagnostics();
                    assert!(
                        d.iter().any(|d| d.line == Some(n + 1)),
                        "{}:{}: `{new}` gave no diagnostic on its line: {d:?}",
                        path.display(),
                        n + 1
                    );
                    tried += 1;
                }
            }
        }
        assert!(tried > 100, "only {tried} values tried");
    }

    #[test]
    fn defaults_resolve_priorities_peers_interface_roles_and_version() {
        let s = load(&vip("  interface: ens3\n")).expect("valid");
        let prio: Vec<u8> = s.hosts.iter().map(|h| h.priority).collect();
        assert_eq!(prio, vec![150, 100, 99]);
        let a = &s.hosts[0];
        assert_eq!(a.ssh_target, "192.0.2.11");
        assert_eq!(a.interface, "ens3");
        assert_eq!(
            a.peers,
            vec![
                "192.0.2.12".parse::<std::net::IpAddr>().expect("ip"),
                "192.0.2.13".parse().expect("ip")
            ]
        );
        assert!(a.has_role("vip") && a.has_role("app"));
        let v = s.vip.expect("vip");
        assert_eq!(
            (v.address.to_string(), v.prefix, v.vrrp_version),
            ("192.0.2.100".into(), 24, 2)
        );
        let s = load(&vip("  advert_int: 100ms\n")).expect("valid");
        assert_eq!(s.vip.expect("vip").vrrp_version, 3, "sub-second picks v3");
    }

    #[test]
    fn explicit_peers_and_roles_resolve() {
        let text = "name: t\nprovider: hosts\nhosts:\n  - {name: a, address: 192.0.2.11, peers: [b], ssh_host: jump-a}\n  - {name: b, address: 192.0.2.12, peers: [a]}\n  - {name: w, address: 192.0.2.20, roles: [app]}\nvip:\n  address: 192.0.2.100/24\n  virtual_router_id: 9\n";
        let s = load(text).expect("valid");
        assert_eq!(
            s.hosts[0].peers,
            vec!["192.0.2.12".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert_eq!(s.hosts[0].ssh_target, "jump-a");
        assert!(
            s.hosts[2].peers.is_empty(),
            "a host without the vip role has no peers"
        );
        assert!(!s.hosts[2].has_role("vip"));
    }

    #[test]
    fn ipv6_hosts_and_vip_work() {
        let text = "name: t\nprovider: hosts\nhosts:\n  - {name: a, address: '2001:db8::11'}\n  - {name: b, address: '2001:db8::12'}\nvip:\n  address: 2001:db8::100/64\n  virtual_router_id: 9\n";
        assert_eq!(codes(text), Vec::<&str>::new());
    }

    #[test]
    fn priority_ties_are_found_before_and_after_weights() {
        let tie = HOSTS.replace(
            "address: 192.0.2.12}",
            "address: 192.0.2.12, priority: 150}",
        );
        assert_eq!(
            codes(&format!(
                "{tie}vip: {{address: 192.0.2.100/24, virtual_router_id: 9}}\n"
            )),
            vec!["hactl::stack::priority_tie"]
        );
        // 200 and 180 both reach the 254 cap with +100.
        let capped = "name: t\nprovider: hosts\nhosts:\n  - {name: a, address: 192.0.2.11, priority: 200}\n  - {name: b, address: 192.0.2.12, priority: 180}\nvip:\n  address: 192.0.2.100/24\n  virtual_router_id: 9\n  checks: [{name: n, service: nginx, weight: 100}]\n";
        assert_eq!(codes(capped), vec!["hactl::stack::priority_tie"]);
    }

    #[test]
    fn a_check_too_weak_to_move_the_vip_is_refused() {
        // +100 on 50/1/2 (seed 004) moves it; +20 on 150/100/99 cannot (130 > 120).
        let seed = "name: t\nprovider: hosts\nhosts:\n  - {name: a, address: 192.0.2.11, priority: 50}\n  - {name: b, address: 192.0.2.12, priority: 1}\n  - {name: c, address: 192.0.2.13, priority: 2}\nvip:\n  address: 192.0.2.100/24\n  virtual_router_id: 9\n  checks: [{name: n, service: nginx, weight: 100}]\n";
        assert_eq!(codes(seed), Vec::<&str>::new());
        let weak = vip("  checks: [{name: n, service: nginx, weight: 20}]\n");
        assert_eq!(codes(&weak), vec!["hactl::stack::no_failover"]);
        let fault = vip("  checks: [{name: n, service: nginx, weight: 0}]\n");
        assert_eq!(
            codes(&fault),
            Vec::<&str>::new(),
            "weight 0 means FAULT: always moves"
        );
    }

    #[test]
    fn vrrp_timing_and_auth_rules() {
        assert_eq!(
            codes(&vip("  advert_int: 1500ms\n  vrrp_version: 2\n")),
            vec!["hactl::stack::advert_int"]
        );
        assert_eq!(
            codes(&vip("  advert_int: 1500ms\n")),
            Vec::<&str>::new(),
            "v3 takes 1.5s"
        );
        assert_eq!(
            codes(&vip("  advert_int: 300s\n")),
            vec!["hactl::stack::advert_int"]
        );
        assert_eq!(
            codes(&vip("  advert_int: 50s\n  vrrp_version: 3\n")),
            vec!["hactl::stack::advert_int"]
        );
        assert_eq!(codes(&vip("  auth_pass: '12345678'\n")), Vec::<&str>::new());
        assert_eq!(
            codes(&vip("  auth_pass: {secret: vrrp}\n")),
            Vec::<&str>::new()
        );
        assert_eq!(
            codes(&vip("  auth_pass: ok\n  vrrp_version: 3\n")),
            vec!["hactl::stack::auth_pass"]
        );
    }

    #[test]
    fn peers_must_be_symmetric_but_defaults_count() {
        // a lists b explicitly; b has no list (= everyone), so it is symmetric.
        let text = HOSTS.replace(
            "address: 192.0.2.11}",
            "address: 192.0.2.11, peers: [b, c]}",
        );
        assert_eq!(
            codes(&format!(
                "{text}vip: {{address: 192.0.2.100/24, virtual_router_id: 9}}\n"
            )),
            Vec::<&str>::new()
        );
        let text = HOSTS
            .replace("address: 192.0.2.11}", "address: 192.0.2.11, peers: [b]}")
            .replace(
                "address: 192.0.2.12}",
                "address: 192.0.2.12, peers: [c, c]}",
            );
        let got = codes(&format!(
            "{text}vip: {{address: 192.0.2.100/24, virtual_router_id: 9}}\n"
        ));
        assert!(got.contains(&"hactl::stack::peer_asymmetric"), "{got:?}");
        assert!(got.contains(&"hactl::stack::peer_duplicate"), "{got:?}");
    }

    /// Every pair of `vip` hosts must hear each other; each gap is reported once, at the list
    /// at fault, and one-way pairs stay `peer_asymmetric`'s.
    #[test]
    fn every_vip_pair_must_hear_each_other() {
        let vip = "vip: {address: 192.0.2.100/24, virtual_router_id: 9}\n";
        let with = |a: &str, b: &str, c: &str| {
            let mut t = HOSTS.to_string();
            for (host, addr, list) in [("a", "11", a), ("b", "12", b), ("c", "13", c)] {
                if !list.is_empty() {
                    t = t.replace(
                        &format!("{{name: {host}, address: 192.0.2.{addr}}}"),
                        &format!("{{name: {host}, address: 192.0.2.{addr}, peers: {list}}}"),
                    );
                }
            }
            codes(&format!("{t}{vip}"))
        };
        // Complete lists, written or defaulted: fine.
        assert_eq!(with("[b, c]", "[a, c]", "[a, b]"), Vec::<&str>::new());
        assert_eq!(with("[b, c]", "", ""), Vec::<&str>::new());
        // The issue's chain: one gap (a–c), one diagnostic.
        assert_eq!(
            with("[b]", "[a, c]", "[b]"),
            vec!["hactl::stack::peers_incomplete"]
        );
        // An explicit list leaving out a defaulted host: one-way, not caught before.
        assert_eq!(with("[b]", "", ""), vec!["hactl::stack::peers_incomplete"]);
        // `peers: []`.
        assert_eq!(with("", "[]", ""), vec!["hactl::stack::peers_empty"]);
        // A one-way explicit pair stays one diagnostic.
        assert_eq!(
            with("[b, c]", "[c]", "[a, b]"),
            vec!["hactl::stack::peer_asymmetric"]
        );
        // Multicast with vip.aws.
        let aws = format!(
            "{HOSTS}vip: {{address: 192.0.2.100/24, virtual_router_id: 9, mode: multicast, aws: {{mode: secondary_ip, region: eu-west-1}}}}\n"
        );
        assert_eq!(codes(&aws), vec!["hactl::stack::multicast_unroutable"]);
    }

    #[test]
    fn ports_only_conflict_on_a_shared_host() {
        let split = "name: t\nprovider: hosts\nhosts:\n  - {name: lb, address: 192.0.2.11, roles: [vip]}\n  - {name: web, address: 192.0.2.12, roles: [app]}\nvip: {address: 192.0.2.100/24, virtual_router_id: 9}\nnginx: {listen: 80}\nhaproxy: {listen: 80}\n";
        assert_eq!(codes(split), Vec::<&str>::new());
        let shared = split.replace("roles: [app]", "roles: [app, vip]");
        assert_eq!(codes(&shared), vec!["hactl::stack::port_conflict"]);
        let twin = format!(
            "{HOSTS}app: {{image: x, port: 80, host_port: 8000}}\nhaproxy: {{listen: 8100}}\n"
        );
        assert_eq!(
            codes(&twin),
            vec!["hactl::stack::port_conflict"],
            "blue/green twin port"
        );
    }

    #[test]
    fn services_and_roles() {
        let redis = format!("{HOSTS}services:\n  - {{name: redis, kind: redis, mode: primary_replica, ports: [9001, 9002], quorum: 2, password: {{secret: r}}}}\n");
        assert_eq!(codes(&redis), Vec::<&str>::new());
        let syslog_no_vip = format!("{HOSTS}services:\n  - {{name: logs, kind: syslog, mode: active_passive, ports: [514]}}\n");
        assert_eq!(codes(&syslog_no_vip), vec!["hactl::stack::service_vip"]);
        let wrong_mode = format!(
            "{HOSTS}services:\n  - {{name: r, kind: redis, mode: active_passive, ports: [1]}}\n"
        );
        let got = codes(&wrong_mode);
        assert!(got.contains(&"hactl::stack::service_mode"), "{got:?}");
        let role = HOSTS.replace(
            "address: 192.0.2.13}",
            "address: 192.0.2.13, roles: [redis]}",
        );
        assert_eq!(codes(&role), vec!["hactl::stack::role"]);
    }

    #[test]
    fn redis_clients() {
        // c is the client: no roles, outside the service
        let hosts = HOSTS.replace("address: 192.0.2.13}", "address: 192.0.2.13, roles: []}");
        // Two hosts: sentinel could never promote (sentinel_majority), so `promotion: hactl`.
        let svc = |kind: &str, mode: &str, extra: &str| {
            let promotion = if kind == "redis" {
                ", promotion: hactl"
            } else {
                ""
            };
            format!("{hosts}haproxy: {{listen: 8080}}\nservices:\n  - {{name: s, kind: {kind}, mode: {mode}, hosts: [a, b], ports: [9001], proxy_ports: [8001]{promotion}{extra}}}\n")
        };
        let ok = svc(
            "redis",
            "primary_replica",
            ", clients: [c], client_ports: [7001]",
        );
        assert_eq!(codes(&ok), Vec::<&str>::new());
        let s = load(&ok).expect("valid");
        let c = s.hosts.iter().find(|h| h.name == "c").expect("c");
        assert!(crate::services::haproxy_client_only(&s, c));
        assert!(!crate::services::haproxy_client_only(&s, &s.hosts[0]));
        // a client port on the service's own port of the client host is fine: redis is not there
        assert_eq!(
            codes(&svc(
                "redis",
                "primary_replica",
                ", clients: [c], client_ports: [9001]"
            )),
            Vec::<&str>::new()
        );
        // syslog has no client haproxy
        let syslog = format!(
            "{}vip: {{address: 192.0.2.100/24, virtual_router_id: 9}}\n",
            svc(
                "syslog",
                "active_passive",
                ", clients: [c], client_ports: [7001]"
            )
        );
        assert_eq!(codes(&syslog), vec!["hactl::stack::service_client"]);
        // no `vip` host to forward to
        let no_front = svc(
            "redis",
            "primary_replica",
            ", clients: [c], client_ports: [7001]",
        )
        .replace("address: 192.0.2.11}", "address: 192.0.2.11, roles: [s]}")
        .replace("address: 192.0.2.12}", "address: 192.0.2.12, roles: [s]}");
        assert_eq!(codes(&no_front), vec!["hactl::stack::service_client"]);
        // a client twice
        assert_eq!(
            codes(&svc(
                "redis",
                "primary_replica",
                ", clients: [c, c], client_ports: [7001]"
            )),
            vec!["hactl::stack::service_client"]
        );
    }

    #[test]
    fn aws_sections() {
        let ok = "name: t\nprovider: aws\naws:\n  region: eu-west-1\n  zones: [eu-west-1a, eu-west-1b]\n  network: {vpc_cidr: 10.0.0.0/16, subnets: [10.0.1.0/24, 10.0.2.0/24]}\n  hosts: {count: 2, instance_type: t3.small, ami: ami-1}\n  database: {engine: postgres, instance_class: db.t3.micro, username: app, password: {secret: db}}\n";
        let s = load(ok).expect("valid");
        assert!(s.hosts.is_empty() && s.vip.is_none());
        assert_eq!(
            codes(&ok.replace("eu-west-1b]", "us-east-1b]")),
            vec!["hactl::stack::aws_zones"]
        );
        assert_eq!(
            codes(&ok.replace("10.0.2.0/24", "10.0.1.128/25")),
            vec!["hactl::stack::aws_subnets"]
        );
        assert_eq!(
            codes(&ok.replace("{secret: db}", "hunter22")),
            vec!["hactl::stack::plain_secret"]
        );
        // Issue 12 §2: RDS's rules on what the file holds (7 characters is too short).
        assert_eq!(
            codes(&ok.replace("{secret: db}", "hunter2")),
            vec!["hactl::stack::plain_secret", "hactl::stack::aws_database"]
        );
        assert_eq!(
            codes(&ok.replace("username: app", "username: 1app")),
            vec!["hactl::stack::aws_database"]
        );
        // An ALB's subnets are /27 or larger (an error); an NLB's /28 has the 8 free
        // addresses it asks for (no diagnostic at all).
        let small = ok.replace("10.0.1.0/24, 10.0.2.0/24", "10.0.1.0/28, 10.0.2.0/28");
        assert_eq!(codes(&small), Vec::<&str>::new());
        let alb = format!("{small}  balancer: {{kind: alb}}\n");
        assert_eq!(
            codes(&alb),
            vec!["hactl::stack::aws_cidr", "hactl::stack::aws_cidr"]
        );
        let nlb =
            format!("{small}  balancer: {{kind: nlb, listeners: [{{port: 80, protocol: TCP}}]}}\n");
        let s = load(&nlb).expect("an NLB in /28 subnets is valid");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // TLS on an NLB with a certificate of the region is built as such.
        let tls = nlb.replace(
            "protocol: TCP}",
            "protocol: TLS, certificate_arn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x'}",
        );
        assert_eq!(codes(&tls), Vec::<&str>::new());
        assert_eq!(
            codes(&tls.replace("acm:eu-west-1", "acm:us-east-1")),
            vec!["hactl::stack::aws_listener"]
        );
        assert_eq!(
            codes(&ok.replace("engine: postgres", "engine: postgress")),
            vec!["hactl::stack::aws_database"]
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(super::name_ok("web-1", 40, false), Ok(()));
        assert!(super::name_ok("-web", 40, false).is_err());
        assert!(super::name_ok("Web", 40, false).is_err());
        assert_eq!(super::name_ok("Web_1.lan", 63, true), Ok(()));
        assert_eq!(super::shown("vip.checks.0.weight"), "vip.checks[0].weight");
    }
}
