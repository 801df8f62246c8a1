//! Who hears whom: the one model of which VRRP member receives which member's adverts, used by
//! `validate` (a pair that cannot hear each other is refused at the `peers` or `mode` key at
//! fault), `explain` (one election per connected group, every holder printed) and `status`
//! (the groups named when it sees two holders).
//!
//! The rules (RFC 5798 §5.1.1 and keepalived.conf(5), `unicast_peer`):
//!
//! - **Unicast**: a member sends its adverts to the addresses in its `unicast_peer` block and
//!   nowhere else, so member B hears member A only when B is in A's peer list. hactl's default
//!   (no `peers` key) is every other `vip` member. keepalived does not relay adverts: two
//!   members that both list a third but not each other each hear only the third, and both
//!   become MASTER when they outrank it.
//! - **Multicast**: adverts go to 224.0.0.18 (ff02::12) with TTL 255 and are never routed
//!   (RFC 5798 §5.1.1.3), so they reach exactly the members on the same L2 network. hactl takes
//!   a member's L2 network to be its address's subnet at the VIP's prefix length. A VPC carries
//!   no multicast at all (AWS VPC FAQ: "VPCs do not support multicast or broadcast"), so on EC2
//!   (`vip.aws`) no member hears any other.
//!
//! A VIP has exactly one election only where every member hears every other; anything less
//! splits it. The graph is directed (`hears(listener, speaker)`), because a one-way peer list
//! makes one member defer to a master that never hears it back.
//!
//! It lives with the stack (not in `ha`, which re-exports it as `ha::hearing`) because loading
//! a stack validates it: `stack` must not import the layers above it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::stack::model::{HostSpec, StackFile, VrrpMode};
use crate::stack::Stack;

/// The `validate` codes of a hearing graph that splits the election (`explain` still explains
/// such a stack, to show what it would do).
pub const CODES: &[&str] = &[
    "hactl::stack::peers_empty",
    "hactl::stack::peers_incomplete",
    "hactl::stack::peer_asymmetric",
    "hactl::stack::peer_not_vip",
    "hactl::stack::multicast_unroutable",
];

/// How the adverts travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// To each listed peer.
    Unicast,
    /// To the link-local group, on one L2 network.
    Multicast,
    /// Multicast inside an AWS VPC, which carries none.
    MulticastOnEc2,
}

/// The hearing graph of one VRRP instance's members.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// Member names, in stack order; indexes below refer to this list.
    pub names: Vec<String>,
    pub transport: Transport,
    /// `sends[i]`: the members whose keepalived receives member `i`'s adverts.
    #[serde(skip)]
    sends: Vec<Sends>,
    /// Multicast: each member's network.
    #[serde(skip)]
    nets: Vec<Option<IpNet>>,
    /// Whether every member hears every other, worked out once: `groups` runs per explained
    /// case and must stay linear for the usual complete graph.
    #[serde(skip)]
    complete: std::sync::OnceLock<bool>,
    /// Members cut off the network (`explain --case cut:HOST`): they hear nobody.
    #[serde(skip)]
    deaf: BTreeSet<usize>,
}

/// One member's receivers. `Everyone` keeps the default (every member peers with every other)
/// linear in size: a thousand-host stack must not cost a million set entries.
#[derive(Debug, Clone)]
enum Sends {
    Everyone,
    /// Multicast: every member on this network (members with no network share every one).
    Network(Option<IpNet>),
    Only(BTreeSet<usize>),
}

/// A pair of members that do not hear each other both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub a: usize,
    pub b: usize,
    /// `a` receives `b`'s adverts.
    pub a_hears_b: bool,
    /// `b` receives `a`'s adverts.
    pub b_hears_a: bool,
}

impl Graph {
    /// Unicast: `peers[i]` names the members host `i` sends to (`None`: every other member).
    /// Names that are not members are ignored here (validate refuses them separately).
    pub fn unicast(names: Vec<String>, peers: &[Option<Vec<String>>]) -> Graph {
        let index: std::collections::HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let sends = (0..names.len())
            .map(|i| match peers.get(i).and_then(Option::as_ref) {
                Some(list) => Sends::Only(
                    list.iter()
                        .filter_map(|p| index.get(p.as_str()).copied())
                        .filter(|&j| j != i)
                        .collect(),
                ),
                None => Sends::Everyone,
            })
            .collect();
        Graph {
            names,
            transport: Transport::Unicast,
            sends,
            nets: Vec::new(),
            complete: Default::default(),
            deaf: BTreeSet::new(),
        }
    }

    /// Multicast: `networks[i]` is member `i`'s L2 network (`None` when unknown: it shares
    /// everyone's). With `on_ec2` nobody hears anybody.
    pub fn multicast(names: Vec<String>, networks: &[Option<IpNet>], on_ec2: bool) -> Graph {
        let n = names.len();
        let nets: Vec<Option<IpNet>> = (0..n)
            .map(|i| networks.get(i).copied().flatten().map(|n| n.trunc()))
            .collect();
        let sends = (0..n)
            .map(|i| {
                if on_ec2 {
                    Sends::Only(BTreeSet::new())
                } else {
                    Sends::Network(nets[i])
                }
            })
            .collect();
        Graph {
            nets,
            names,
            transport: if on_ec2 {
                Transport::MulticastOnEc2
            } else {
                Transport::Multicast
            },
            sends,
            complete: Default::default(),
            deaf: BTreeSet::new(),
        }
    }

    /// Every member hears every other (the default peers), for tests.
    #[cfg(test)]
    pub fn complete(names: Vec<String>) -> Graph {
        let n = names.len();
        Graph::unicast(names, &vec![None; n])
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// `listener` receives `speaker`'s adverts.
    pub fn hears(&self, listener: usize, speaker: usize) -> bool {
        if listener == speaker || listener >= self.len() || self.deaf.contains(&listener) {
            return false;
        }
        match self.sends.get(speaker) {
            None => false,
            Some(Sends::Everyone) => true,
            Some(Sends::Only(s)) => s.contains(&listener),
            Some(Sends::Network(net)) => match (net, self.nets.get(listener).copied().flatten()) {
                (Some(a), Some(b)) => *a == b,
                _ => true,
            },
        }
    }

    /// The same graph with members `cut` off the network: they send to and hear nobody, as
    /// when a host's link goes down while keepalived runs on.
    pub fn with_cut(&self, cut: &BTreeSet<usize>) -> Graph {
        let mut g = self.clone();
        for &i in cut {
            if let Some(s) = g.sends.get_mut(i) {
                *s = Sends::Only(BTreeSet::new());
            }
        }
        g.deaf.extend(cut.iter().copied());
        g.complete = Default::default();
        g
    }

    /// Every pair (a < b) that does not hear each other both ways, in order. O(n²) pairs: the
    /// answer itself can be that large; callers report it per member, not per pair.
    pub fn gaps(&self) -> Vec<Gap> {
        let n = self.len();
        let mut out = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let (ab, ba) = (self.hears(a, b), self.hears(b, a));
                if !(ab && ba) {
                    out.push(Gap {
                        a,
                        b,
                        a_hears_b: ab,
                        b_hears_a: ba,
                    });
                }
            }
        }
        out
    }

    /// The connected groups (an advert either way joins two members), each in stack order,
    /// ordered by their first member. Members in different groups take no notice of each
    /// other: each group runs its own election. `alive` leaves out members that send and hear
    /// nothing (down hosts).
    pub fn groups(&self, alive: &dyn Fn(usize) -> bool) -> Vec<Vec<usize>> {
        let n = self.len();
        let complete = *self.complete.get_or_init(|| {
            self.sends.iter().all(|s| matches!(s, Sends::Everyone)) || self.gaps().is_empty()
        });
        if complete {
            let all: Vec<usize> = (0..n).filter(|&i| alive(i)).collect();
            return if all.is_empty() {
                Vec::new()
            } else {
                vec![all]
            };
        }
        let mut group = vec![usize::MAX; n];
        let mut out: Vec<Vec<usize>> = Vec::new();
        for start in 0..n {
            if group[start] != usize::MAX || !alive(start) {
                continue;
            }
            let id = out.len();
            let mut members = vec![start];
            group[start] = id;
            let mut k = 0;
            while k < members.len() {
                let i = members[k];
                k += 1;
                let joined: Vec<usize> = (0..n)
                    .filter(|&j| group[j] == usize::MAX && alive(j))
                    .filter(|&j| self.hears(i, j) || self.hears(j, i))
                    .collect();
                for j in joined {
                    group[j] = id;
                    members.push(j);
                }
            }
            members.sort_unstable();
            out.push(members);
        }
        out
    }

    /// One line for people: how adverts travel and which pairs do not hear each other.
    pub fn describe(&self) -> String {
        let how = match self.transport {
            Transport::Unicast => "unicast",
            Transport::Multicast => "multicast",
            Transport::MulticastOnEc2 => "multicast inside a VPC (which carries none)",
        };
        let gaps = self.gaps();
        if gaps.is_empty() {
            return format!("{how}, every member hears every other");
        }
        let shown: Vec<String> = gaps
            .iter()
            .take(6)
            .map(|g| {
                let (a, b) = (&self.names[g.a], &self.names[g.b]);
                match (g.a_hears_b, g.b_hears_a) {
                    (false, false) => format!("{a} ✗ {b}"),
                    (true, false) => format!("{b} does not hear {a}"),
                    _ => format!("{a} does not hear {b}"),
                }
            })
            .collect();
        let more = if gaps.len() > shown.len() {
            format!(" and {} more", gaps.len() - shown.len())
        } else {
            String::new()
        };
        format!(
            "{how}; NOT every member hears every other: {}{more}",
            shown.join(", ")
        )
    }

    /// The group (by names) that `name` belongs to.
    pub fn group_of(&self, name: &str) -> Vec<String> {
        let Some(i) = self.index(name) else {
            return Vec::new();
        };
        self.groups(&|_| true)
            .into_iter()
            .find(|g| g.contains(&i))
            .map(|g| g.into_iter().map(|k| self.names[k].clone()).collect())
            .unwrap_or_default()
    }
}

/// The hearing graph of a stack file's `vip` members (hosts whose roles include `vip`, the
/// default), with `addrs[i]` host `i`'s parsed address and `prefix` the VIP's prefix length
/// (for multicast's L2 networks). `None` without a `vip` section. Returns the member indexes
/// into `file.hosts` beside the graph. Used before the stack is resolved (validate) and after.
pub fn from_file(
    file: &StackFile,
    addrs: &[Option<IpAddr>],
    prefix: Option<u8>,
) -> Option<(Graph, Vec<usize>)> {
    let spec = file.vip.as_ref()?;
    let members: Vec<usize> = (0..file.hosts.len())
        .filter(|&i| is_member(&file.hosts[i]))
        .collect();
    let names: Vec<String> = members
        .iter()
        .map(|&i| file.hosts[i].name.value.clone())
        .collect();
    let graph = match spec.mode.value {
        VrrpMode::Multicast => {
            let nets: Vec<Option<IpNet>> = members
                .iter()
                .map(|&i| {
                    let a = addrs.get(i).copied().flatten()?;
                    IpNet::new(a, prefix?).ok()
                })
                .collect();
            Graph::multicast(names, &nets, spec.aws.is_some())
        }
        VrrpMode::Unicast => {
            let peers: Vec<Option<Vec<String>>> = members
                .iter()
                .map(|&i| file.hosts[i].peers.as_ref().map(|p| p.value.clone()))
                .collect();
            Graph::unicast(names, &peers)
        }
    };
    Some((graph, members))
}

/// A host of the stack file takes part in VRRP: its roles include `vip` (the default roles
/// are `vip` and `app`).
pub fn is_member(h: &HostSpec) -> bool {
    match &h.roles {
        Some(r) => r.value.iter().any(|x| x == "vip"),
        None => true,
    }
}

/// The hearing graph of a validated stack; `None` without a VIP.
pub fn from_stack(stack: &Stack) -> Option<Graph> {
    let addrs: Vec<Option<IpAddr>> = stack
        .file
        .hosts
        .iter()
        .map(|h| stack.host(&h.name.value).map(|r| r.address))
        .collect();
    let prefix = stack.vip.as_ref().map(|v| v.prefix);
    from_file(&stack.file, &addrs, prefix).map(|(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn list(n: &[&str]) -> Option<Vec<String>> {
        Some(names(n))
    }

    /// The chain: node1 and node3 both list only node2, so they never hear each other.
    #[test]
    fn symmetric_but_incomplete_lists_leave_a_gap() {
        let g = Graph::unicast(
            names(&["node1", "node2", "node3"]),
            &[
                list(&["node2"]),
                list(&["node1", "node3"]),
                list(&["node2"]),
            ],
        );
        assert_eq!(
            g.gaps(),
            vec![Gap {
                a: 0,
                b: 2,
                a_hears_b: false,
                b_hears_a: false
            }]
        );
        // Connected through node2: one group, but not one election (see priority::settle).
        assert_eq!(g.groups(&|_| true), vec![vec![0, 1, 2]]);
        // Without node2 the two ends are separate groups.
        assert_eq!(g.groups(&|i| i != 1), vec![vec![0], vec![2]]);
    }

    #[test]
    fn default_peers_are_every_other_member() {
        let g = Graph::unicast(names(&["a", "b", "c"]), &[None, None, None]);
        assert!(g.gaps().is_empty());
        // An explicit list that leaves out a default host: one-way.
        let g = Graph::unicast(names(&["a", "b", "c"]), &[list(&["b"]), None, None]);
        assert_eq!(
            g.gaps(),
            vec![Gap {
                a: 0,
                b: 2,
                a_hears_b: true,
                b_hears_a: false
            }]
        );
    }

    #[test]
    fn empty_peers_hear_nobody() {
        let g = Graph::unicast(names(&["a", "b"]), &[list(&[]), None]);
        assert!(!g.hears(1, 0));
        assert!(g.hears(0, 1));
        let g = Graph::unicast(names(&["a", "b"]), &[list(&[]), list(&[])]);
        assert_eq!(g.groups(&|_| true), vec![vec![0], vec![1]]);
    }

    #[test]
    fn multicast_is_one_domain_per_network_and_none_on_ec2() {
        let net = |s: &str| Some(s.parse::<IpNet>().expect("net"));
        let g = Graph::multicast(
            names(&["a", "b", "c"]),
            &[net("10.0.0.1/24"), net("10.0.0.2/24"), net("10.0.1.3/24")],
            false,
        );
        assert!(g.hears(0, 1) && g.hears(1, 0));
        assert!(!g.hears(2, 0) && !g.hears(0, 2));
        let g = Graph::multicast(
            names(&["a", "b"]),
            &[net("10.0.0.1/24"), net("10.0.0.2/24")],
            true,
        );
        assert_eq!(g.transport, Transport::MulticastOnEc2);
        assert_eq!(g.groups(&|_| true), vec![vec![0], vec![1]]);
    }
}
