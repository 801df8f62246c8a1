//! Walking a plan: the changes become tasks, the tasks run in dependency order, as many at
//! once as the parallelism allows, and a failure skips what depends on it.
//!
//! Tasks (Terraform's graph walk, `internal/terraform/context_apply.go`, reduced to what
//! hactl plans):
//! - a cloud resource's delete (and the delete half of a replace) is one task; it waits for
//!   the deletes of what references it, so deletes go deepest first;
//! - a cloud resource's create or update (and the create half of a replace) is one task; it
//!   waits for every delete (AWS frees names, addresses and zones first) and for the creates
//!   and updates of what it references;
//! - a replacement the provider plans create-before-destroy ([`Order::CreateFirst`]) and a
//!   duplicate's delete are the exception: the delete half is a *late* task that waits for
//!   every create and update (the listener is repointed to the new target group before the
//!   old one goes) and for the late deletes of what references it. A [`Order::Rolled`]
//!   replacement is a single task (the provider creates, moves traffic, deletes), and the
//!   rolled tasks run one at a time, in address order, so one instance at most is out;
//! - all changes on one host are one task (one script per host, see `provider::hosts`); it
//!   waits for every cloud task, because what the host's files hold comes from the cloud;
//! - a redis instance's change is one task, after its host's configuration.
//!
//! A task starts as soon as its prerequisites are done — the run takes as long as its longest
//! dependency chain, not the sum of its waves' slowest tasks. When a task fails, the tasks
//! that depend on it (directly or not) are skipped and reported; the others go on.

use std::collections::BTreeSet;
use std::time::Instant;

use futures::future::LocalBoxFuture;
use futures::StreamExt;

use super::hooks::Hooks;
use crate::plan::{Action, Addr, Change, Kind, Order, Plan};

/// One unit of work: the changes it carries out and whether it is a delete (half).
#[derive(Debug)]
pub struct Task<'p> {
    /// Cloud resource: its address; host: the host name; redis: the instance's address.
    pub label: String,
    pub changes: Vec<&'p Change>,
    /// The delete phase of a cloud resource (a delete, or the first half of a replace).
    pub deleting: bool,
    /// A delete that runs after every create and update ([`Order::CreateFirst`]).
    pub late: bool,
}

impl Task<'_> {
    /// The action this task reports for a change: the delete half of a replace is a delete,
    /// the other half a create; a rolled replacement ([`Order::Rolled`]) is one replace.
    pub fn action(&self, c: &Change) -> Action {
        if self.deleting {
            Action::Delete
        } else if c.action == Action::Replace
            && c.kind() == Kind::Resource
            && c.order != Order::Rolled
        {
            Action::Create
        } else {
            c.action
        }
    }
}

/// What carries out tasks: the AWS provider, the hosts provider, a fake in tests.
pub trait Provider: Send + Sync {
    /// Carries out one task; `Err` holds the reason, shown as is.
    fn run<'a>(
        &'a self,
        task: &'a Task<'a>,
        hooks: &'a dyn Hooks,
    ) -> LocalBoxFuture<'a, Result<(), String>>;
}

/// What happened to each task, by label.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Walked {
    pub done: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Not started because something they depend on failed.
    pub skipped: Vec<String>,
}

impl Walked {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// The tasks of a plan and, for each, the indices of the tasks it waits for.
pub fn tasks(plan: &Plan) -> (Vec<Task<'_>>, Vec<Vec<usize>>) {
    let mut tasks: Vec<Task> = Vec::new();
    let mut host_task: Vec<(String, usize)> = Vec::new();
    for c in &plan.changes {
        match (&c.addr, c.addr.host()) {
            (Addr::Resource { .. }, _) => {
                let label = c.addr.to_string();
                let rolled = c.action == Action::Replace && c.order == Order::Rolled;
                if matches!(c.action, Action::Delete | Action::Replace) && !rolled {
                    tasks.push(Task {
                        label: label.clone(),
                        changes: vec![c],
                        deleting: true,
                        late: c.order == Order::CreateFirst,
                    });
                }
                if c.action != Action::Delete {
                    tasks.push(Task {
                        label,
                        changes: vec![c],
                        deleting: false,
                        late: false,
                    });
                }
            }
            (Addr::Redis { .. }, _) => tasks.push(Task {
                label: c.addr.to_string(),
                changes: vec![c],
                deleting: false,
                late: false,
            }),
            (_, Some(h)) => match host_task.iter().find(|(x, _)| x == h) {
                Some(&(_, i)) => tasks[i].changes.push(c),
                None => {
                    host_task.push((h.to_string(), tasks.len()));
                    tasks.push(Task {
                        label: h.to_string(),
                        changes: vec![c],
                        deleting: false,
                        late: false,
                    });
                }
            },
            (_, None) => {}
        }
    }
    let rolled = |t: &Task| {
        !t.deleting && t.changes[0].action == Action::Replace && t.changes[0].order == Order::Rolled
    };
    let pre = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let c = t.changes[0];
            (0..tasks.len())
                .filter(|&j| j != i)
                .filter(|&j| {
                    let o = &tasks[j];
                    let oc = o.changes[0];
                    match (c.kind(), oc.kind()) {
                        (Kind::Resource, Kind::Resource) if t.deleting => {
                            // j references i: j is deleted first (within the same phase);
                            // a late delete also waits for every create and update.
                            (o.deleting
                                && o.late == t.late
                                && oc.depends_on.contains(&c.addr)
                                && oc.addr != c.addr)
                                || (t.late && !o.deleting)
                        }
                        (Kind::Resource, Kind::Resource) => {
                            (o.deleting && !o.late)
                                || (!o.deleting && c.depends_on.contains(&oc.addr))
                                // one rolled replacement at a time, in address order
                                || (rolled(t) && rolled(o) && oc.addr < c.addr)
                        }
                        (Kind::Resource, _) => false,
                        (_, Kind::Resource) => true,
                        // a redis repair follows the repairs it names (a port's promotion)
                        (Kind::Redis, Kind::Redis) => c.depends_on.contains(&oc.addr),
                        // and its host's configuration
                        (Kind::Redis, _) => c.addr.host() == oc.addr.host(),
                        _ => false,
                    }
                })
                .collect()
        })
        .collect();
    (tasks, pre)
}

/// Walks the plan's tasks with `provider`, at most `parallelism` at once, reporting through
/// `hooks` (started/done/failed per change).
pub async fn walk(
    plan: &Plan,
    provider: &dyn Provider,
    parallelism: usize,
    hooks: &dyn Hooks,
) -> Walked {
    let (tasks, pre) = tasks(plan);
    let n = tasks.len();
    let mut started = vec![false; n];
    let mut finished = vec![false; n];
    let mut bad: BTreeSet<usize> = BTreeSet::new();
    let mut forced: BTreeSet<usize> = BTreeSet::new();
    let mut walked = Walked::default();
    let mut running = futures::stream::FuturesUnordered::new();
    loop {
        // Skip what depends on a failure (transitively: a skipped task is bad too).
        loop {
            let newly: Vec<usize> = (0..n)
                .filter(|&i| !started[i] && pre[i].iter().any(|j| bad.contains(j)))
                .collect();
            if newly.is_empty() {
                break;
            }
            for i in newly {
                started[i] = true;
                finished[i] = true;
                bad.insert(i);
                walked.skipped.push(tasks[i].label.clone());
            }
        }
        let ready: Vec<usize> = (0..n)
            .filter(|&i| {
                !started[i] && (forced.contains(&i) || pre[i].iter().all(|&j| finished[j]))
            })
            .collect();
        for i in ready {
            if running.len() >= parallelism.max(1) {
                break;
            }
            started[i] = true;
            let t = &tasks[i];
            running.push(async move {
                for c in &t.changes {
                    hooks.started(&c.addr.to_string(), t.action(c));
                }
                let t0 = Instant::now();
                let r = provider.run(t, hooks).await;
                match &r {
                    Ok(()) => {
                        for c in &t.changes {
                            hooks.done(&c.addr.to_string(), t.action(c), t0.elapsed());
                        }
                    }
                    Err(e) => hooks.failed(&t.label, e),
                }
                (i, r)
            });
        }
        match running.next().await {
            Some((i, r)) => {
                finished[i] = true;
                match r {
                    Ok(()) => walked.done.push(tasks[i].label.clone()),
                    Err(e) => {
                        bad.insert(i);
                        walked.failed.push((tasks[i].label.clone(), e));
                    }
                }
            }
            None => match (0..n).find(|&i| !started[i]) {
                // A cycle leaves tasks waiting on each other: start the first as a root
                // rather than stop.
                Some(i) => {
                    forced.insert(i);
                }
                None => break,
            },
        }
    }
    walked
}

/// Fills in each change's wave: the depth of the longest chain of changes before it in the
/// walk (deletes deepest first, then creates and updates by depth, then the hosts).
pub fn assign_waves(plan: &mut Plan) {
    let waves: Vec<usize> = {
        let (tasks, pre) = tasks(plan);
        let mut depth: Vec<Option<usize>> = vec![None; tasks.len()];
        fn d(
            i: usize,
            pre: &[Vec<usize>],
            memo: &mut [Option<usize>],
            seen: &mut Vec<bool>,
        ) -> usize {
            if let Some(x) = memo[i] {
                return x;
            }
            if seen[i] {
                return 0;
            }
            seen[i] = true;
            let x = pre[i]
                .iter()
                .map(|&j| d(j, pre, memo, seen) + 1)
                .max()
                .unwrap_or(0);
            memo[i] = Some(x);
            x
        }
        let mut seen = vec![false; tasks.len()];
        for i in 0..tasks.len() {
            d(i, &pre, &mut depth, &mut seen);
        }
        plan.changes
            .iter()
            .map(|c| {
                tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.changes.iter().any(|x| std::ptr::eq(*x, c)))
                    .filter_map(|(i, _)| depth[i])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    };
    for (c, w) in plan.changes.iter_mut().zip(waves) {
        c.wave = w;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::engine::hooks::Silent;
    use crate::plan::{Addr, Change, Reason};

    /// A provider that records the order tasks ran in (`-label` for a delete half) and fails
    /// the labels it is told to.
    #[derive(Default)]
    pub(crate) struct Fake {
        pub log: Mutex<Vec<String>>,
        pub fail: Vec<String>,
    }

    impl Provider for Fake {
        fn run<'a>(
            &'a self,
            task: &'a Task<'a>,
            _hooks: &'a dyn Hooks,
        ) -> LocalBoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                // Let other ready tasks start first, as real I/O would.
                tokio::task::yield_now().await;
                let tag = if task.deleting {
                    format!("-{}", task.label)
                } else {
                    task.label.clone()
                };
                if let Ok(mut l) = self.log.lock() {
                    l.push(tag.clone());
                }
                if self.fail.contains(&tag) {
                    Err(format!("{tag} refused"))
                } else {
                    Ok(())
                }
            })
        }
    }

    pub(crate) fn res(addr: &str, action: Action, deps: &[&str]) -> Change {
        Change {
            depends_on: deps.iter().map(|d| Addr::resource(d)).collect(),
            ..Change::new(Addr::resource(addr), action, Reason::NotFound)
        }
    }

    pub(crate) fn file(host: &str, path: &str) -> Change {
        Change::new(Addr::file(host, path), Action::Create, Reason::Missing)
    }

    fn pos(log: &[String], x: &str) -> usize {
        log.iter()
            .position(|l| l == x)
            .unwrap_or_else(|| panic!("{x} did not run: {log:?}"))
    }

    fn stack_plan() -> Plan {
        Plan::new(
            "t",
            vec![
                res("aws_vpc.main", Action::Create, &[]),
                res("aws_subnet.a", Action::Create, &["aws_vpc.main"]),
                res("aws_instance.web[0]", Action::Replace, &["aws_subnet.a"]),
                res(
                    "aws_lb_target_group_attachment.web",
                    Action::Replace,
                    &["aws_instance.web[0]"],
                ),
                res("aws_security_group.old", Action::Delete, &["aws_vpc.main"]),
                file("web0", "/etc/nginx/nginx.conf"),
                file("web0", "/etc/hosts"),
                file("web1", "/etc/nginx/nginx.conf"),
            ],
            0,
            Vec::new(),
        )
    }

    #[tokio::test]
    async fn waves_deletes_deepest_first_then_creates_by_reference_then_hosts() {
        let plan = stack_plan();
        let fake = Fake::default();
        let w = walk(&plan, &fake, 4, &Silent).await;
        assert!(w.ok(), "{w:?}");
        let log = fake.log.lock().map(|l| l.clone()).unwrap_or_default();
        // the attachment (references the instance) is deleted before the instance
        assert!(
            pos(&log, "-aws_lb_target_group_attachment.web") < pos(&log, "-aws_instance.web[0]")
        );
        // every delete before any create
        let last_delete = log.iter().rposition(|l| l.starts_with('-')).unwrap_or(0);
        let first_create = log.iter().position(|l| !l.starts_with('-')).unwrap_or(0);
        assert!(last_delete < first_create, "{log:?}");
        // creates follow references
        assert!(pos(&log, "aws_vpc.main") < pos(&log, "aws_subnet.a"));
        assert!(pos(&log, "aws_subnet.a") < pos(&log, "aws_instance.web[0]"));
        assert!(pos(&log, "aws_instance.web[0]") < pos(&log, "aws_lb_target_group_attachment.web"));
        // one task per host, after every cloud task
        assert_eq!(log.iter().filter(|l| l.starts_with("web")).count(), 2);
        assert!(pos(&log, "aws_lb_target_group_attachment.web") < pos(&log, "web0"));
        assert_eq!(log.len(), 9, "{log:?}");
    }

    #[test]
    fn waves_are_the_depth_of_the_walk() {
        let mut plan = stack_plan();
        assign_waves(&mut plan);
        let w: Vec<(String, usize)> = plan
            .changes
            .iter()
            .map(|c| (c.addr.to_string(), c.wave))
            .collect();
        insta::assert_debug_snapshot!(w);
    }

    #[tokio::test]
    async fn failure_in_a_wave_skips_its_dependents_and_the_rest_goes_on() {
        let plan = Plan::new(
            "t",
            vec![
                res("aws_vpc.main", Action::Create, &[]),
                res("aws_subnet.a", Action::Create, &["aws_vpc.main"]),
                res("aws_subnet.b", Action::Create, &["aws_vpc.main"]),
                res("aws_instance.web[0]", Action::Create, &["aws_subnet.a"]),
                res("aws_instance.web[1]", Action::Create, &["aws_subnet.b"]),
                file("web0", "/etc/hosts"),
            ],
            0,
            Vec::new(),
        );
        let fake = Fake {
            fail: vec!["aws_subnet.a".into()],
            ..Fake::default()
        };
        let w = walk(&plan, &fake, 4, &Silent).await;
        assert_eq!(
            w.failed,
            vec![(
                "aws_subnet.a".to_string(),
                "aws_subnet.a refused".to_string()
            )]
        );
        // the instance in the failed subnet and the host layer are skipped, not attempted
        assert!(
            w.skipped.contains(&"aws_instance.web[0]".to_string()),
            "{w:?}"
        );
        assert!(w.skipped.contains(&"web0".to_string()), "{w:?}");
        // the other branch of the same wave goes on
        assert!(w.done.contains(&"aws_instance.web[1]".to_string()), "{w:?}");
        let log = fake.log.lock().map(|l| l.clone()).unwrap_or_default();
        assert!(!log.contains(&"aws_instance.web[0]".to_string()));
    }

    /// Hooks that record what the walk reported, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Hooks for Recorder {
        fn started(&self, addr: &str, action: Action) {
            if let Ok(mut l) = self.0.lock() {
                l.push(format!("started {addr} {action:?}"));
            }
        }
        fn done(&self, addr: &str, action: Action, _: std::time::Duration) {
            if let Ok(mut l) = self.0.lock() {
                l.push(format!("done {addr} {action:?}"));
            }
        }
        fn failed(&self, addr: &str, error: &str) {
            if let Ok(mut l) = self.0.lock() {
                l.push(format!("failed {addr}: {error}"));
            }
        }
    }

    #[tokio::test]
    async fn walk_reports_each_change_through_the_hooks_a_replace_as_delete_then_create() {
        let plan = Plan::new(
            "t",
            vec![
                res("aws_subnet.a", Action::Create, &[]),
                res("aws_instance.web[0]", Action::Replace, &["aws_subnet.a"]),
                file("web0", "/etc/hosts"),
            ],
            0,
            Vec::new(),
        );
        let fake = Fake {
            fail: vec!["aws_instance.web[0]".into()],
            ..Fake::default()
        };
        let hooks = Recorder::default();
        let w = walk(&plan, &fake, 1, &hooks).await;
        let log = hooks.0.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(
            log,
            [
                "started aws_instance.web[0] Delete",
                "done aws_instance.web[0] Delete",
                "started aws_subnet.a Create",
                "done aws_subnet.a Create",
                "started aws_instance.web[0] Create",
                "failed aws_instance.web[0]: aws_instance.web[0] refused",
            ]
        );
        // the host waits for the whole cloud layer: skipped, never started
        assert_eq!(w.skipped, ["web0"]);
    }

    #[tokio::test]
    async fn a_failed_host_does_not_stop_the_other_hosts() {
        let plan = Plan::new(
            "t",
            vec![file("h1", "/a"), file("h2", "/a"), file("h3", "/a")],
            0,
            Vec::new(),
        );
        let fake = Fake {
            fail: vec!["h2".into()],
            ..Fake::default()
        };
        let mut w = walk(&plan, &fake, 2, &Silent).await;
        w.done.sort();
        assert_eq!(w.done, vec!["h1".to_string(), "h3".to_string()]);
        assert_eq!(w.failed.len(), 1);
        assert!(w.skipped.is_empty());
    }
}
