//! Targeting: `--target ADDR` (repeatable) and `--hosts h1,h2` narrow a plan to those
//! addresses and hosts and what they depend on (Terraform's `-target`, with the same warning:
//! the result is partial, and the next full `plan` shows what was left out).
//!
//! A target matches a change at that exact address; a cloud resource target also keeps the
//! changes it depends on (its `depends_on`, transitively), so a target instance brings its
//! subnet along. `--hosts` keeps every change on those hosts.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::plan::{Addr, Plan};

/// What a run is narrowed to (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Targets {
    pub addrs: Vec<Addr>,
    pub hosts: Vec<String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty() && self.hosts.is_empty()
    }

    /// The warning every narrowed run gives.
    pub fn warning(&self) -> String {
        let mut what: Vec<String> = self.addrs.iter().map(|a| format!("`{a}`")).collect();
        what.extend(self.hosts.iter().map(|h| format!("host `{h}`")));
        format!(
            "the plan is narrowed to {} and what they depend on: it is partial, and the next full `hactl plan` shows what was left out",
            what.join(", ")
        )
    }

    fn matches(&self, a: &Addr) -> bool {
        self.addrs.contains(a) || a.host().is_some_and(|h| self.hosts.iter().any(|x| x == h))
    }

    /// Keeps the changes the targets name and, transitively, the changes they depend on;
    /// recounts the summary. The hosts that could not be observed are kept only when they
    /// are targeted.
    pub fn narrow(&self, plan: &mut Plan) {
        let mut keep: BTreeSet<usize> = (0..plan.changes.len())
            .filter(|&i| self.matches(&plan.changes[i].addr))
            .collect();
        loop {
            let deps: BTreeSet<&Addr> = keep
                .iter()
                .flat_map(|&i| plan.changes[i].depends_on.iter())
                .collect();
            let more: Vec<usize> = (0..plan.changes.len())
                .filter(|i| !keep.contains(i) && deps.contains(&plan.changes[*i].addr))
                .collect();
            if more.is_empty() {
                break;
            }
            keep.extend(more);
        }
        let changes: Vec<_> = plan
            .changes
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, c)| c.clone())
            .collect();
        let failed: Vec<_> = plan
            .failed_hosts
            .iter()
            .filter(|f| {
                self.hosts.contains(&f.host)
                    || self.addrs.iter().any(|a| a.host() == Some(f.host.as_str()))
            })
            .cloned()
            .collect();
        let noop = plan.summary.noop;
        let stack = plan.stack.clone();
        *plan = Plan::new(&stack, changes, noop, failed);
        plan.partial = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::tests::{file, res, Fake};
    use crate::engine::hooks::Silent;
    use crate::plan::Action;

    fn plan() -> Plan {
        Plan::new(
            "t",
            vec![
                res("aws_vpc.main", Action::Create, &[]),
                res("aws_subnet.a", Action::Create, &["aws_vpc.main"]),
                res("aws_subnet.b", Action::Create, &["aws_vpc.main"]),
                res("aws_instance.web[0]", Action::Create, &["aws_subnet.a"]),
                res("aws_instance.web[1]", Action::Create, &["aws_subnet.b"]),
                file("web-0", "/etc/nginx/nginx.conf"),
                file("web-1", "/etc/nginx/nginx.conf"),
                file("web-1", "/etc/hosts"),
            ],
            0,
            Vec::new(),
        )
    }

    fn addrs(p: &Plan) -> Vec<String> {
        p.changes.iter().map(|c| c.addr.to_string()).collect()
    }

    #[tokio::test]
    async fn targeting_keeps_the_target_and_what_it_depends_on() {
        let mut p = plan();
        let t = Targets {
            addrs: vec!["aws_instance.web[1]".parse().unwrap()],
            hosts: vec![],
        };
        t.narrow(&mut p);
        assert_eq!(
            addrs(&p),
            ["aws_vpc.main", "aws_subnet.b", "aws_instance.web[1]"]
        );
        assert!(p.partial);
        assert_eq!(p.summary.create, 3);
        // and only that runs
        let fake = Fake::default();
        let w = crate::engine::graph::walk(&p, &fake, 4, &Silent).await;
        assert_eq!(w.done.len(), 3, "{w:?}");
        assert!(t.warning().contains("partial"), "{}", t.warning());
    }

    #[test]
    fn targeting_hosts_and_one_file() {
        let mut p = plan();
        Targets {
            addrs: vec!["web-0:/etc/nginx/nginx.conf".parse().unwrap()],
            hosts: vec!["web-1".into()],
        }
        .narrow(&mut p);
        assert_eq!(
            addrs(&p),
            [
                "web-0:/etc/nginx/nginx.conf",
                "web-1:/etc/nginx/nginx.conf",
                "web-1:/etc/hosts"
            ]
        );
    }

    #[test]
    fn target_addresses_parse_every_form_and_refuse_others() {
        for a in [
            "aws_instance.web[0]",
            "web1:/etc/nginx/nginx.conf",
            "web1:service/nginx",
            "web1:redis/cache:6379",
        ] {
            assert_eq!(
                a.parse::<Addr>().map(|x| x.to_string()).ok().as_deref(),
                Some(a)
            );
        }
        for bad in [
            "web1",
            "web1:nginx",
            ":/etc/x",
            "aws_vpc",
            "web1:redis/cache:port",
        ] {
            assert!(bad.parse::<Addr>().is_err(), "{bad}");
        }
    }
}
