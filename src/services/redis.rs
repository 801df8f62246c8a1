//! Redis primary/replica: what each instance says about itself, and what `hactl heal` does so
//! that every port has exactly one primary and every other live instance replicates it.
//!
//! The rule that matters is "never a second primary": a host that comes back must follow the
//! primary the cluster chose while it was away. Who is primary is decided, in order, by the
//! sentinels (when the stack uses them and they answer), else by the live instances themselves
//! (a single one saying `role:master`, or among several the one most replicas follow, then the
//! one with the highest replication offset). hactl promotes a replica itself only with
//! `promotion: hactl` (two-host setups, where sentinels cannot form a quorum); with sentinels
//! it waits for them, because two promoters would fight.
//!
//! The probe is a shell script built as data; its records are parsed back here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;
use serde::Serialize;

use super::{Service, SENTINEL_PORT};
use crate::onhost::record;
use crate::onhost::sh::q;
use crate::stack::model::Promotion;

/// What one instance says in `INFO replication` (or that it did not answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum State {
    Down,
    Primary {
        connected_replicas: u32,
        offset: u64,
    },
    Replica {
        master: Option<IpAddr>,
        master_port: Option<u16>,
        /// `master_link_status:up`: false while the replica waits for or loads its first full
        /// sync (redis reports `up` only once the primary's RDB is loaded), or after it lost
        /// its primary. Until it is up, a failure of the primary loses what the replica has
        /// not received, so a stack with such a replica does not serve yet.
        link_up: bool,
        offset: u64,
    },
}

impl State {
    /// Parses the text of `INFO replication`; anything without a `role:` line is `Down`.
    pub fn parse(info: &str) -> State {
        let kv: BTreeMap<&str, &str> = info
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
            .collect();
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match kv.get("role").copied() {
            Some("master") => State::Primary {
                connected_replicas: u32::try_from(num("connected_slaves")).unwrap_or(0),
                offset: num("master_repl_offset"),
            },
            Some("slave") => State::Replica {
                master: kv.get("master_host").and_then(|h| h.parse().ok()),
                master_port: kv.get("master_port").and_then(|p| p.parse().ok()),
                link_up: kv.get("master_link_status").copied() == Some("up"),
                offset: num("slave_repl_offset").max(num("master_repl_offset")),
            },
            _ => State::Down,
        }
    }

    fn offset(&self) -> u64 {
        match self {
            State::Down => 0,
            State::Primary { offset, .. } | State::Replica { offset, .. } => *offset,
        }
    }

    /// `primary`, `replica of 198.18.0.12` or `down`, for `status`.
    pub fn describe(&self) -> String {
        match self {
            State::Down => "down".into(),
            State::Primary {
                connected_replicas, ..
            } => format!("primary ({connected_replicas} replicas)"),
            State::Replica {
                master, link_up, ..
            } => format!(
                "replica of {}{}",
                master.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                if *link_up { "" } else { " (link down)" }
            ),
        }
    }
}

/// One instance: a host's redis on one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
    pub state: State,
}

/// A correction `heal` makes on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fix", rename_all = "lowercase")]
pub enum Fix {
    /// `REPLICAOF primary port`: a returning or stray instance follows the primary.
    Follow {
        host: String,
        port: u16,
        primary: IpAddr,
    },
    /// `REPLICAOF NO ONE` (promotion: hactl only).
    Promote { host: String, port: u16 },
}

impl Fix {
    pub fn host(&self) -> &str {
        match self {
            Fix::Follow { host, .. } | Fix::Promote { host, .. } => host,
        }
    }

    /// The redis-cli arguments (after `-p PORT`) that make the fix.
    pub fn cli_args(&self) -> Vec<String> {
        match self {
            Fix::Follow { port, primary, .. } => {
                vec!["replicaof".into(), primary.to_string(), port.to_string()]
            }
            Fix::Promote { .. } => vec!["replicaof".into(), "no".into(), "one".into()],
        }
    }
}

/// What `heal` concluded for one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub port: u16,
    /// The host that is (or will be, after the fixes) the primary.
    pub primary: Option<String>,
    pub fixes: Vec<Fix>,
    /// Why nothing could be decided, or what is waited for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Decides the primary of one port and the fixes that make every live instance follow it.
/// `instances` are in stack order; `sentinel_view` is the address the sentinels name (None
/// when the stack has no sentinels or none answered).
pub fn decide(
    port: u16,
    instances: &[Instance],
    sentinel_view: Option<IpAddr>,
    promotion: Promotion,
) -> Verdict {
    let mut v = Verdict {
        port,
        primary: None,
        fixes: Vec::new(),
        notes: Vec::new(),
    };
    let live: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.state != State::Down)
        .collect();
    if live.is_empty() {
        v.notes.push("no instance answers".into());
        return v;
    }
    let primaries: Vec<&Instance> = live
        .iter()
        .copied()
        .filter(|i| matches!(i.state, State::Primary { .. }))
        .collect();
    let followers = |p: &Instance| {
        live.iter()
            .filter(|i| matches!(i.state, State::Replica { master: Some(m), .. } if m == p.addr))
            .count()
    };

    let chosen: Option<&Instance> = match sentinel_view {
        Some(addr) => match primaries.iter().find(|i| i.addr == addr) {
            Some(p) => Some(*p),
            None => {
                // The sentinels name an instance that is down or not (yet) a primary: they are
                // mid-failover. Acting now would race them.
                v.notes.push(format!(
                    "the sentinels name {addr}, which is not a live primary yet; waiting for their failover"
                ));
                return v;
            }
        },
        None => primaries
            .iter()
            .copied()
            // most followers, then the most data, then stack order (the first wins ties)
            .max_by(|a, b| {
                (followers(a), a.state.offset())
                    .cmp(&(followers(b), b.state.offset()))
                    .then_with(|| {
                        let pos = |x: &Instance| instances.iter().position(|i| i == x);
                        pos(b).cmp(&pos(a))
                    })
            }),
    };

    let primary: &Instance = match chosen {
        Some(p) => p,
        None if promotion == Promotion::Hactl => {
            // No primary anywhere: promote the replica with the most data (stack order on ties).
            let Some(best) = live.iter().copied().max_by(|a, b| {
                a.state.offset().cmp(&b.state.offset()).then_with(|| {
                    let pos = |x: &Instance| instances.iter().position(|i| i == x);
                    pos(b).cmp(&pos(a))
                })
            }) else {
                return v;
            };
            v.fixes.push(Fix::Promote {
                host: best.host.clone(),
                port,
            });
            best
        }
        None => {
            v.notes.push(
                "no live primary and no sentinel answer; the sentinels promote, not hactl".into(),
            );
            return v;
        }
    };
    v.primary = Some(primary.host.clone());
    if primaries.len() > 1 && sentinel_view.is_none() {
        v.notes.push(format!(
            "{} instances said `role:master`; keeping {} (most replicas, then most data)",
            primaries.len(),
            primary.host
        ));
    }
    for i in &live {
        if i.host == primary.host {
            continue;
        }
        let follows = matches!(
            i.state,
            State::Replica { master: Some(m), master_port, .. }
                if m == primary.addr && master_port.unwrap_or(port) == port
        );
        if !follows {
            v.fixes.push(Fix::Follow {
                host: i.host.clone(),
                port,
                primary: primary.addr,
            });
        }
    }
    v
}

/// Reads `SENTINEL MASTER`'s reply (`redis-cli --raw`: key and value on alternate lines) on
/// stdin and prints the value of `num-other-sentinels`, or nothing (an error reply, no answer).
const NUM_OTHER_SENTINELS: &str = "{ n=; while read -r k && read -r v; do [ \"$k\" = num-other-sentinels ] && n=$v; done; echo \"$n\"; }";

/// The read-only probe run on one host: each instance's `INFO replication` and (with
/// sentinels) the local sentinel's answer for each port. The password, when there is one,
/// travels inside the script on stdin and reaches redis-cli through its environment.
pub fn probe_script(svc: &Service<'_>, password: Option<&str>, sentinel_peers: bool) -> String {
    let mut s = String::from("set -u\n");
    if let Some(p) = password {
        let _ = writeln!(s, "REDISCLI_AUTH={}; export REDISCLI_AUTH", q(p));
    }
    for port in &svc.ports {
        let _ = writeln!(
            s,
            "printf 'HACTL\\tredis\\t%s\\t' {port}; timeout 2 redis-cli --no-auth-warning -p {port} info replication 2>/dev/null | base64 -w0; echo"
        );
        if svc.sentinel() {
            let master = svc.master_name(*port);
            let name = q(&master);
            let _ = writeln!(
                s,
                "printf 'HACTL\\tsentinel\\t%s\\t%s\\n' {port} \"$(env -u REDISCLI_AUTH timeout 2 redis-cli --raw -p {SENTINEL_PORT} sentinel get-master-addr-by-name {name} 2>/dev/null | head -n1)\""
            );
            // How many other sentinels this one knows (they find each other by hello messages
            // through the instances, every 2 s): fewer than all, and a primary lost now may not
            // reach the quorum (`SENTINEL MASTER`'s `num-other-sentinels`, a key/value list).
            if sentinel_peers {
                let _ = writeln!(
                s,
                "printf 'HACTL\\tsentinel-peers\\t%s\\t%s\\n' {port} \"$(env -u REDISCLI_AUTH timeout 2 redis-cli --raw -p {SENTINEL_PORT} sentinel master {name} 2>/dev/null | {NUM_OTHER_SENTINELS})\""
            );
            }
        }
    }
    s
}

/// What one host's probe found: (port → state) and (port → the local sentinel's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    pub states: BTreeMap<u16, State>,
    pub sentinel: BTreeMap<u16, IpAddr>,
    /// Port → how many other sentinels the local one knows (absent: it did not answer).
    pub sentinel_peers: BTreeMap<u16, u32>,
}

/// Parses a probe's output; lines that are not its records are ignored.
pub fn parse_probe(stdout: &str) -> Probed {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut p = Probed::default();
    for f in record::fields(stdout) {
        match f.as_slice() {
            ["redis", port, data] => {
                if let Ok(port) = port.parse() {
                    let text = b64
                        .decode(data.trim())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    p.states.insert(port, State::parse(&text));
                }
            }
            ["sentinel-peers", port, n] => {
                if let (Ok(port), Ok(n)) = (port.parse(), n.trim().parse()) {
                    p.sentinel_peers.insert(port, n);
                }
            }
            ["sentinel", port, addr] => {
                if let (Ok(port), Ok(addr)) = (port.parse(), addr.trim().parse()) {
                    p.sentinel.insert(port, addr);
                }
            }
            _ => {}
        }
    }
    p
}

/// The sentinels' majority answer for a port among the hosts that answered.
pub fn sentinel_majority<'a>(answers: impl Iterator<Item = &'a IpAddr>) -> Option<IpAddr> {
    let mut count: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for a in answers {
        *count.entry(*a).or_default() += 1;
    }
    count.into_iter().max_by_key(|(_, n)| *n).map(|(a, _)| a)
}

/// What a [`fix_script`] reported: `Ok` when a fix was applied, else what redis answered
/// (the port and `redis-cli`'s output, or `failed` when the script printed no record).
pub fn fix_outcome(stdout: &str) -> Result<(), String> {
    let mut fail = None;
    for f in record::fields(stdout) {
        match f.as_slice() {
            ["ok", "fix", ..] => return Ok(()),
            ["fail", "fix", rest @ ..] if fail.is_none() => fail = Some(rest.join("\t")),
            _ => {}
        }
    }
    Err(fail.unwrap_or_else(|| "failed".into()))
}

/// The script that applies fixes on one host.
pub fn fix_script(fixes: &[&Fix], password: Option<&str>) -> String {
    let mut s = String::from("set -u\nrc=0\n");
    if let Some(p) = password {
        let _ = writeln!(s, "REDISCLI_AUTH={}; export REDISCLI_AUTH", q(p));
    }
    for f in fixes {
        let port = match f {
            Fix::Follow { port, .. } | Fix::Promote { port, .. } => *port,
        };
        let args: Vec<String> = f.cli_args().iter().map(|a| q(a).into_owned()).collect();
        let port = port.to_string();
        let _ = writeln!(
            s,
            "if out=$(timeout 3 redis-cli --no-auth-warning -p {port} {} 2>&1) && case $out in OK*) true ;; *) false ;; esac; then {}; else rc=1; {}; fi",
            args.join(" "),
            record::printf(&["ok", "fix"], &[&port]),
            record::printf(&["fail", "fix"], &[&port, "\"$out\""]),
        );
    }
    s.push_str("exit $rc\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    fn primary(host: &str, last: u8, replicas: u32, offset: u64) -> Instance {
        Instance {
            host: host.into(),
            addr: ip(last),
            port: 9001,
            state: State::Primary {
                connected_replicas: replicas,
                offset,
            },
        }
    }

    fn replica(host: &str, last: u8, of: u8, offset: u64) -> Instance {
        Instance {
            host: host.into(),
            addr: ip(last),
            port: 9001,
            state: State::Replica {
                master: Some(ip(of)),
                master_port: Some(9001),
                link_up: true,
                offset,
            },
        }
    }

    fn down(host: &str, last: u8) -> Instance {
        Instance {
            host: host.into(),
            addr: ip(last),
            port: 9001,
            state: State::Down,
        }
    }

    #[test]
    fn parses_info_replication() {
        let master = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=198.18.0.12,port=9001,state=online,offset=42,lag=0\r\nmaster_repl_offset:42\r\n";
        assert_eq!(
            State::parse(master),
            State::Primary {
                connected_replicas: 2,
                offset: 42
            }
        );
        let slave = "# Replication\r\nrole:slave\r\nmaster_host:198.18.0.11\r\nmaster_port:9001\r\nmaster_link_status:down\r\nslave_repl_offset:40\r\nmaster_repl_offset:40\r\n";
        assert_eq!(
            State::parse(slave),
            State::Replica {
                master: Some(ip(11)),
                master_port: Some(9001),
                link_up: false,
                offset: 40
            }
        );
        assert_eq!(State::parse(""), State::Down);
        assert_eq!(State::parse("NOAUTH Authentication required."), State::Down);
    }

    #[test]
    fn old_primary_that_came_back_empty_follows_the_sentinels_choice() {
        // host1 was primary, died, host2 was promoted; host1 restarted as a lone primary.
        let inst = [
            primary("host1", 11, 0, 0),
            primary("host2", 12, 1, 900),
            replica("host3", 13, 12, 900),
        ];
        let v = decide(9001, &inst, Some(ip(12)), Promotion::Sentinel);
        assert_eq!(v.primary.as_deref(), Some("host2"));
        assert_eq!(
            v.fixes,
            vec![Fix::Follow {
                host: "host1".into(),
                port: 9001,
                primary: ip(12)
            }]
        );
    }

    #[test]
    fn never_a_second_primary_without_sentinels_either() {
        // No sentinel answer: the primary most replicas follow wins, whatever the stack order.
        let inst = [
            primary("host1", 11, 0, 5000),
            primary("host2", 12, 1, 900),
            replica("host3", 13, 12, 900),
        ];
        let v = decide(9001, &inst, None, Promotion::Hactl);
        assert_eq!(v.primary.as_deref(), Some("host2"));
        assert_eq!(v.fixes.len(), 1);
        assert_eq!(v.fixes[0].host(), "host1");
        assert!(!v.notes.is_empty(), "a double primary is reported");
    }

    #[test]
    fn hactl_promotes_the_replica_with_the_most_data() {
        let inst = [
            down("host1", 11),
            replica("host2", 12, 11, 100),
            replica("host3", 13, 11, 120),
        ];
        let v = decide(9001, &inst, None, Promotion::Hactl);
        assert_eq!(v.primary.as_deref(), Some("host3"));
        assert_eq!(
            v.fixes,
            vec![
                Fix::Promote {
                    host: "host3".into(),
                    port: 9001
                },
                Fix::Follow {
                    host: "host2".into(),
                    port: 9001,
                    primary: ip(13)
                }
            ]
        );
    }

    #[test]
    fn with_sentinels_hactl_waits_instead_of_promoting() {
        let inst = [down("host1", 11), replica("host2", 12, 11, 100)];
        let v = decide(9001, &inst, Some(ip(11)), Promotion::Sentinel);
        assert_eq!(v.primary, None);
        assert!(v.fixes.is_empty());
        assert!(v.notes[0].contains("waiting"));
        let v = decide(9001, &inst, None, Promotion::Sentinel);
        assert!(v.fixes.is_empty());
    }

    #[test]
    fn a_converged_port_needs_nothing() {
        let inst = [
            primary("host1", 11, 2, 7),
            replica("host2", 12, 11, 7),
            replica("host3", 13, 11, 7),
        ];
        let v = decide(9001, &inst, Some(ip(11)), Promotion::Sentinel);
        assert_eq!(v.primary.as_deref(), Some("host1"));
        assert!(v.fixes.is_empty() && v.notes.is_empty());
    }

    /// The filter run by the real `sh` on what `redis-cli --raw sentinel master NAME` prints
    /// (redis 7.0's reply, shortened), on an error reply and on nothing.
    #[test]
    fn num_other_sentinels_is_read_from_the_sentinel_master_reply() {
        let run = |reply: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' \"$1\" | {NUM_OTHER_SENTINELS}"))
                .arg("sh")
                .arg(reply)
                .output()
                .expect("sh runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let reply = "name\nredis-9001\nip\n198.18.0.11\nflags\nmaster\nnum-slaves\n2\nnum-other-sentinels\n1\nquorum\n2\n";
        assert_eq!(run(reply), "1\n");
        assert_eq!(run("ERR No such master with that name\n"), "\n");
        assert_eq!(run(""), "\n");
    }

    #[test]
    fn probe_records_round_trip() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = format!(
            "noise\nHACTL\tredis\t9001\t{}\nHACTL\tsentinel\t9001\t198.18.0.12\nHACTL\tsentinel-peers\t9001\t2\nHACTL\tredis\t9002\t\nHACTL\tsentinel\t9002\t\nHACTL\tsentinel-peers\t9002\t\n",
            b64.encode("role:master\r\nconnected_slaves:1\r\nmaster_repl_offset:3\r\n")
        );
        let p = parse_probe(&out);
        assert_eq!(
            p.states.get(&9001),
            Some(&State::Primary {
                connected_replicas: 1,
                offset: 3
            })
        );
        assert_eq!(p.states.get(&9002), Some(&State::Down));
        assert_eq!(p.sentinel.get(&9001), Some(&ip(12)));
        assert_eq!(p.sentinel.get(&9002), None);
        assert_eq!(p.sentinel_peers.get(&9001), Some(&2));
        assert_eq!(p.sentinel_peers.get(&9002), None);
        assert_eq!(
            sentinel_majority([ip(12), ip(11), ip(12)].iter()),
            Some(ip(12))
        );
    }

    #[test]
    fn fix_script_keeps_the_password_out_of_argv() {
        let f = Fix::Follow {
            host: "host1".into(),
            port: 9001,
            primary: ip(12),
        };
        let s = fix_script(&[&f], Some("s3cret pass"));
        insta::assert_snapshot!(s, @r#"
        set -u
        rc=0
        REDISCLI_AUTH='s3cret pass'; export REDISCLI_AUTH
        if out=$(timeout 3 redis-cli --no-auth-warning -p 9001 replicaof 198.18.0.12 9001 2>&1) && case $out in OK*) true ;; *) false ;; esac; then printf 'HACTL\tok\tfix\t%s\n' 9001; else rc=1; printf 'HACTL\tfail\tfix\t%s\t%s\n' 9001 "$out"; fi
        exit $rc
        "#);
    }

    #[test]
    fn fix_outcome_reads_the_fix_records() {
        // what the script above prints when redis-cli answers, and when it refuses
        assert_eq!(fix_outcome("HACTL\tok\tfix\t9001\n"), Ok(()));
        assert_eq!(
            fix_outcome("noise\nHACTL\tfail\tfix\t9001\tERR wrong number\nmore\n"),
            Err("9001\tERR wrong number".into())
        );
        assert_eq!(fix_outcome("Connection refused\n"), Err("failed".into()));
    }
}
