//! The hearing-graph checks: every pair of `vip` members must hear each other's adverts, or
//! the VIP has two elections and two holders. The graph itself is [`crate::stack::hearing`], the
//! one model `explain` and `status` use too; this file only turns its gaps into problems at the
//! key at fault (a host's `peers`, or `vip.mode`).
//!
//! One-way lists (A names B, B's own list leaves A out) are `peer_asymmetric`'s, reported at
//! A's list item; this check leaves those pairs alone so one mistake gives one diagnostic, and
//! reports the rest: `peers: []`, a list that leaves out a member that lists nobody explicitly
//! (the default sends to everyone, so it is one-way too), two lists that leave each other out,
//! a peer that is not a `vip` member, and multicast where the network carries none.

use crate::stack::diag::Problem;
use crate::stack::hearing::{self, Transport};
use crate::stack::model::VrrpMode;

use super::{ticks, Checker};

/// How many missing names one diagnostic lists before "and N more".
const SHOWN: usize = 5;

impl Checker<'_> {
    pub(super) fn hearing(&mut self) {
        let Some(vip) = &self.f.vip else { return };
        let prefix = self.vip_net.map(|n| n.prefix_len());
        let Some((graph, members)) = hearing::from_file(self.f, &self.addrs, prefix) else {
            return;
        };
        if members.len() < 2 {
            return;
        }
        if graph.transport == Transport::MulticastOnEc2 {
            let span = self.loc_or(&vip.mode, "vip.mode");
            self.push(
                Problem::new(
                    "hactl::stack::multicast_unroutable",
                    format!(
                        "`vip.mode: multicast` with `vip.aws`: a VPC carries no multicast, so the \
                         {} members never hear each other and every one becomes MASTER and moves \
                         the EC2 address",
                        members.len()
                    ),
                )
                .at(span, "no multicast in a VPC")
                .help(
                    "use `mode: unicast` (the default): each host sends its adverts to its peers \
                     by unicast, which a VPC carries",
                ),
            );
            return;
        }
        if vip.mode.value == VrrpMode::Multicast {
            // Members on different L2 networks (only possible when the subnet check let them
            // through): report once at `vip.mode`.
            if let Some(g) = graph.gaps().first() {
                let span = self.loc_or(&vip.mode, "vip.mode");
                self.push(
                    Problem::new(
                        "hactl::stack::multicast_unroutable",
                        format!(
                            "`{}` and `{}` are on different networks: multicast adverts are never \
                             routed, so they never hear each other",
                            graph.names[g.a], graph.names[g.b]
                        ),
                    )
                    .at(span, "multicast stays on one network")
                    .help("use `mode: unicast`, or put every `vip` host on the VIP's subnet"),
                );
            }
            return;
        }
        // Unicast. Peer names that are unknown, the host itself or duplicate host names are
        // reported by `peers()`/`hosts()`: a list with one of those is skipped, as the fix for
        // that one (usually a typo) decides what the list means.
        let mut seen = std::collections::HashSet::new();
        if !members
            .iter()
            .all(|&i| seen.insert(self.f.hosts[i].name.value.as_str()))
        {
            return;
        }
        let f = self.f;
        // Names → index once: the loops below touch every list entry.
        let index: std::collections::HashMap<&str, usize> = f
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.value.as_str(), i))
            .collect();
        let lists = |k: usize| f.hosts[members[k]].peers.as_ref().map(|p| &p.value);
        let names_ok: Vec<bool> = (0..members.len())
            .map(|k| {
                lists(k).is_none_or(|l| {
                    l.iter()
                        .all(|p| p != &graph.names[k] && index.contains_key(p.as_str()))
                })
            })
            .collect();
        for (k, &i) in members.iter().enumerate() {
            let Some(peers) = &self.f.hosts[i].peers else {
                continue;
            };
            let name = &self.f.hosts[i].name.value;
            // Peers that are hosts of the stack but no `vip` member: they run no keepalived.
            for (j, p) in peers.value.iter().enumerate() {
                let Some(&h) = index.get(p.as_str()) else {
                    continue;
                };
                if h != i && !hearing::is_member(&self.f.hosts[h]) {
                    let span = self.at(&format!("hosts.{i}.peers.{j}"));
                    self.push(
                        Problem::new(
                            "hactl::stack::peer_not_vip",
                            format!(
                                "peer `{p}` of host `{name}` has no `vip` role: it runs no \
                                 keepalived, so adverts sent to it are lost"
                            ),
                        )
                        .at(span, "not a VRRP member")
                        .help(format!(
                            "list only `vip` hosts as peers, or add `vip` to the roles of `{p}`"
                        )),
                    );
                }
            }
            if peers.value.is_empty() {
                let span = self
                    .at(&format!("hosts.{i}.peers"))
                    .or_else(|| self.key(&format!("hosts.{i}.peers")));
                let others: Vec<&str> = (0..members.len())
                    .filter(|&o| o != k)
                    .map(|o| graph.names[o].as_str())
                    .collect();
                let one = others.len() == 1;
                let others = ticks(&others);
                self.push(
                    Problem::new(
                        "hactl::stack::peers_empty",
                        format!(
                            "host `{name}` has `peers: []`: it sends its adverts to no one, so \
                             {others} {} it, and whenever `{name}` is MASTER {others} {} \
                             MASTER too",
                            if one { "never hears" } else { "never hear" },
                            if one { "becomes" } else { "become" }
                        ),
                    )
                    .at(span, "no unicast peers")
                    .help(
                        "list every other `vip` host, or drop `peers` to peer with every other \
                         `vip` host (the default)",
                    ),
                );
                continue;
            }
            if !names_ok[k] {
                continue;
            }
            let missing: Vec<&str> = (0..members.len())
                .filter(|&o| o != k && !graph.hears(o, k))
                // `peer_asymmetric` already reports o's list naming this host one-way.
                .filter(|&o| !lists(o).is_some_and(|l| l.iter().any(|x| x == name)))
                // Two lists that leave each other out: one diagnostic, at the first.
                .filter(|&o| !(o < k && names_ok[o] && !graph.hears(k, o)))
                .map(|o| graph.names[o].as_str())
                .collect();
            if missing.is_empty() {
                continue;
            }
            let span = self.key(&format!("hosts.{i}.peers"));
            let shown: Vec<&str> = missing.iter().take(SHOWN).copied().collect();
            let more = if missing.len() > SHOWN {
                format!(" and {} more", missing.len() - SHOWN)
            } else {
                String::new()
            };
            self.push(
                Problem::new(
                    "hactl::stack::peers_incomplete",
                    format!(
                        "host `{name}` sends no adverts to {}{more}: keepalived does not relay \
                         adverts, so {} `{name}`, and both can be MASTER at once",
                        ticks(&shown),
                        if missing.len() == 1 {
                            format!("`{}` never hears", shown[0])
                        } else {
                            "those hosts never hear".to_string()
                        },
                    ),
                )
                .at(span, "leaves out a `vip` host")
                .help(format!(
                    "every `vip` host must list every other, both ways: add {} to `{name}`'s \
                     peers (and `{name}` to theirs), or drop `peers` everywhere to let every \
                     host peer with every other",
                    ticks(&shown)
                )),
            );
        }
    }
}
