//! The scan: reads everything that carries `hactl:stack=<name>`, and what the state recorded,
//! and describes it as [`Observed`] resources whose references are addresses. Each kind reads
//! its own part ([`kinds::Kind::read`] in `kinds/`); this file owns the orchestration: which kind is
//! read when, who owns what ([`Owner`]: the state's ids first, the tags second), the mapping of
//! ids back to addresses ([`Ids`]), the paging and mid-scan helpers ([`Scan`], [`elb_tags`])
//! and the error policy.
//!
//! Two rounds: every kind with tags of its own is read at once (each lists what carries the
//! stack's tag, then reads by id what the state recorded and the listing did not return); then
//! the kinds without tags of their own (listeners, target registrations, EFS mount targets) are
//! read through the load balancer, target group and file system the first round found. The
//! region-wide listings (load balancers, target groups, file systems, DB instances) are read
//! page by page to the end: a busy account has more than one page (moto pages load balancers
//! by 50 and file systems by 10), and a resource on page two is not absent.
//!
//! Error policy: a failed read fails the scan, never "absent" (which would plan a second one);
//! the only exceptions are the service's NotFound for the one thing asked (a DB subnet group
//! by name), and NotFound for an id the first round just listed, asked again for [`MID_SCAN`]
//! (a new resource AWS lists before it answers for it) and then taken as deleted since.

use std::collections::BTreeMap;
use std::future::Future;

use super::client::Clients;
use super::kinds::{self, shared::api};
use super::model::{Observed, Recorded, ResKind, Resource, INFO_RETAG, TAG_ADDRESS, TAG_STACK};
use super::AwsError;

/// The value of the EC2 tag `key`.
pub fn ec2_tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn stack_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{TAG_STACK}"))
        .values(stack)
        .build()
}

fn id_filter(name: &str, ids: &[String]) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(ids.to_vec()))
        .build()
}

/// Who a resource is: its address, and the ownership tags it lacks ([`Owner::of`]).
pub type Who = (String, Vec<&'static str>);

/// A resource of this stack at `who`'s address with its id, noting the ownership tags it lacks
/// (found by id: [`INFO_RETAG`]).
pub fn owned(kind: ResKind, (addr, retag): Who, id: &str) -> Observed {
    let mut o = unowned(kind, &addr, id);
    if !retag.is_empty() {
        o.info.insert(INFO_RETAG.into(), retag.join(", "));
    }
    o
}

/// A resource read through its parent (no tags of its own), at `addr`.
pub fn unowned(kind: ResKind, addr: &str, id: &str) -> Observed {
    Observed {
        res: Resource::new(kind, addr),
        id: id.to_string(),
        info: BTreeMap::new(),
    }
}

/// Which of this stack's resources an AWS resource is, and which ownership tags it lacks.
///
/// The state is read first: an id it recorded is that address, whatever its tags say now (a
/// console tag clean-up does not make a running resource someone else's); the tags it should
/// carry and does not are listed for a re-tag. Without a record, the tags decide (discovery,
/// as when the state is lost).
pub struct Owner<'a> {
    stack: &'a str,
    /// (kind, id) → address: ids are unique per kind only (the DB instance and its subnet
    /// group share the name `hactl-<stack>-db`).
    by_id: BTreeMap<(ResKind, &'a str), &'a str>,
}

impl<'a> Owner<'a> {
    fn new(stack: &'a str, recorded: &'a Recorded) -> Owner<'a> {
        // Listeners, registrations and mount targets are read through their parents (the
        // attachment's id is its target group's ARN: it must not claim the group).
        let by_id = recorded
            .iter()
            .filter(|(_, (k, _))| {
                !matches!(
                    k,
                    ResKind::Listener | ResKind::TargetAttachment | ResKind::EfsMountTarget
                )
            })
            .map(|(a, (k, id))| ((*k, id.as_str()), a.as_str()))
            .collect();
        Owner { stack, by_id }
    }

    fn of(
        &self,
        kind: ResKind,
        id: &str,
        stack_tag: Option<&str>,
        addr_tag: Option<&str>,
    ) -> Option<(String, Vec<&'static str>)> {
        if let Some(a) = self.by_id.get(&(kind, id)) {
            let mut retag = Vec::new();
            if stack_tag != Some(self.stack) {
                retag.push(TAG_STACK);
            }
            if addr_tag != Some(*a) {
                retag.push(TAG_ADDRESS);
            }
            return Some((a.to_string(), retag));
        }
        if stack_tag != Some(self.stack) {
            return None;
        }
        addr_tag.map(|a| (a.to_string(), Vec::new()))
    }

    /// The recorded ids of `kind` that a tag listing did not return.
    fn missing<'i>(
        recorded: &Recorded,
        kind: ResKind,
        seen: impl IntoIterator<Item = &'i str>,
    ) -> Vec<String> {
        let seen: std::collections::BTreeSet<&str> = seen.into_iter().collect();
        recorded
            .values()
            .filter(|(k, id)| *k == kind && !seen.contains(id.as_str()))
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// What a kind's [`kinds::Kind::read`] reads with: the clients, who owns what, and (in the second
/// round) what the first round found.
pub struct Scan<'a> {
    pub c: &'a Clients,
    pub stack: &'a str,
    owner: &'a Owner<'a>,
    recorded: &'a Recorded,
    /// What the first round observed (empty during it).
    first: &'a [Observed],
}

impl Scan<'_> {
    /// Which of this stack's resources the AWS resource `id` of `kind` is, by the state's
    /// record or its tags ([`Owner::of`]); None: someone else's.
    pub fn who(
        &self,
        kind: ResKind,
        id: &str,
        stack_tag: Option<&str>,
        addr_tag: Option<&str>,
    ) -> Option<Who> {
        self.owner.of(kind, id, stack_tag, addr_tag)
    }

    /// [`Scan::who`] and [`owned`] for an EC2 resource and its tags.
    pub fn owned_ec2(
        &self,
        kind: ResKind,
        id: &str,
        tags: &[aws_sdk_ec2::types::Tag],
    ) -> Option<Observed> {
        let who = self.who(
            kind,
            id,
            ec2_tag(tags, TAG_STACK),
            ec2_tag(tags, TAG_ADDRESS),
        )?;
        Some(owned(kind, who, id))
    }

    /// The (address, id) of each `kind` the first round observed: the parents a kind read
    /// through them reads from.
    pub fn parents(&self, kind: ResKind) -> Vec<(String, String)> {
        self.first
            .iter()
            .filter(|o| o.res.kind == kind)
            .map(|o| (o.res.addr.clone(), o.id.clone()))
            .collect()
    }

    /// An EC2 listing of `kind`, each one the stack's with its [`Observed`] start ([`owned`]):
    /// what carries the stack's tag, then what the state recorded and that listing did not
    /// return, read by id (the filter `id_filter_name`, so an id that is gone is simply absent;
    /// one call, and only when there is any). `list` makes the describe call with a filter; its
    /// flag says the call reads by id. `op` names the call in errors.
    pub async fn ec2<T, E, R, F, Fut>(
        &self,
        kind: ResKind,
        op: &'static str,
        id_filter_name: &str,
        id_tags: impl Fn(&T) -> (Option<&str>, &[aws_sdk_ec2::types::Tag]),
        list: F,
    ) -> Result<Vec<(T, Observed)>, AwsError>
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        F: Fn(aws_sdk_ec2::types::Filter, bool) -> Fut,
        Fut: Future<Output = Result<Vec<T>, aws_sdk_ec2::error::SdkError<E, R>>>,
    {
        let mut all = list(stack_filter(self.stack), false)
            .await
            .map_err(api(op, "(read)"))?;
        let missing = Owner::missing(self.recorded, kind, all.iter().filter_map(|v| id_tags(v).0));
        if !missing.is_empty() {
            let by_id = list(id_filter(id_filter_name, &missing), true)
                .await
                .map_err(api(op, "(read)"))?;
            all.extend(by_id);
        }
        Ok(all
            .into_iter()
            .filter_map(|v| {
                let (id, tags) = id_tags(&v);
                let o = self.owned_ec2(kind, id?, tags)?;
                Some((v, o))
            })
            .collect())
    }

    /// The ELBv2 tags of `arns` ([`elb_tags`]).
    pub async fn elb_tags(
        &self,
        arns: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, AwsError> {
        elb_tags(self.c, arns).await
    }
}

/// The addresses of the ids the scan found, for [`kinds::Kind::resolve`].
pub struct Ids<'a> {
    /// id (or ARN, or a DB subnet group's name) → address.
    by_id: BTreeMap<String, String>,
    /// The subnets the stack names (`aws.subnets`), in order: a mount target in one of them is
    /// `aws_efs_mount_target.shared[<index>]`.
    pub given_subnets: &'a [String],
}

impl<'a> Ids<'a> {
    /// The addresses of the ids (and ARNs, and the DB subnet group's name) of `all`: the ids
    /// of the kinds others refer to ([`kinds::Kind::referred_to`]), so that an id two kinds share
    /// names the one referred to.
    pub fn of(all: &[Observed], given_subnets: &'a [String]) -> Ids<'a> {
        let mut by_id: BTreeMap<String, String> = all
            .iter()
            .filter(|o| kinds::of(o.res.kind).referred_to())
            .map(|o| (o.id.clone(), o.res.addr.clone()))
            .collect();
        by_id.retain(|_, a| !a.is_empty());
        Ids {
            by_id,
            given_subnets,
        }
    }

    /// The address of `id`, or `id` itself (an unmanaged resource: a literal id).
    pub fn addr_of(&self, id: &str) -> String {
        self.by_id
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// The address of `id`, when the scan found it.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }

    /// Maps every reference of `r` from ids to addresses (sorted, once each).
    pub fn map_refs(&self, r: &mut Resource) {
        for v in r.refs.values_mut() {
            *v = v.iter().map(|id| self.addr_of(id)).collect();
            v.sort();
            v.dedup();
        }
    }
}

/// Everything of this stack that exists now: what carries its tags, and what the state
/// recorded (`recorded`; empty when the state is lost), read by id when its tags are gone.
pub async fn observe(
    c: &Clients,
    stack: &str,
    given_subnets: &[String],
    recorded: &Recorded,
) -> Result<Vec<Observed>, AwsError> {
    let owner = Owner::new(stack, recorded);
    let round = |through: bool| {
        ResKind::ALL
            .into_iter()
            .filter(move |k| kinds::of(*k).read_through().is_some() == through)
    };
    let scan = Scan {
        c,
        stack,
        owner: &owner,
        recorded,
        first: &[],
    };
    let first = futures::future::try_join_all(round(false).map(|k| kinds::of(k).read(&scan)))
        .await?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    // Second round: what hangs off the balancer, target groups and file systems. Each read
    // names a resource the first round listed: NotFound is a new one EC2/ELB/EFS lists before
    // it answers for it (a killed run's), asked again for `MID_SCAN` ([`super::wait::settle`]).
    let scan = Scan {
        first: &first,
        ..scan
    };
    let second = futures::future::try_join_all(round(true).map(|k| kinds::of(k).read(&scan)))
        .await?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let mut all = first;
    all.extend(second);

    let ids = Ids::of(&all, given_subnets);
    for o in &mut all {
        kinds::of(o.res.kind).resolve(o, &ids);
    }
    // By address; of two at one address, the one the state recorded first (the diff keeps
    // the first and deletes the others as duplicates).
    let recorded_id = |o: &Observed| recorded.get(&o.res.addr).map(|(_, id)| id) == Some(&o.id);
    all.sort_by(|a, b| (&a.res.addr, !recorded_id(a)).cmp(&(&b.res.addr, !recorded_id(b))));
    Ok(all)
}

/// The EC2 status checks of the observed instances, for `heal`
/// ([`kinds::instance::status_checks`]).
pub use super::kinds::instance::status_checks as instance_status;

/// How long an ARN that was just listed may answer NotFound for its tags before it counts as
/// deleted since it was listed: ELBv2 lists a new load balancer or target group before it
/// answers for it (eventual consistency), and a scan must neither fail on that nor miss it.
pub const MID_SCAN: std::time::Duration = std::time::Duration::from_secs(15);

/// ELBv2 tags for many ARNs (DescribeTags takes 20 at a time), concurrently. DescribeTags fails
/// the whole request when one ARN is NotFound: such a chunk is asked again one ARN at a time
/// ([`elb_tags_one`]), so one resource new or gone mid-scan never fails the scan.
pub async fn elb_tags(
    c: &Clients,
    arns: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, AwsError> {
    let chunks = futures::future::try_join_all(arns.chunks(20).map(|chunk| async move {
        match c
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
        {
            Ok(o) => Ok(vec![o]),
            Err(e) if super::wait::is_not_found(&super::sdk_code(&e).unwrap_or_default()) => {
                let mut outs = Vec::new();
                for arn in chunk {
                    outs.extend(elb_tags_one(c, arn).await?);
                }
                Ok(outs)
            }
            Err(e) => Err(api("DescribeTags", "(read)")(e)),
        }
    }))
    .await?;
    let mut out = BTreeMap::new();
    for o in chunks.iter().flatten() {
        for d in o.tag_descriptions() {
            let tags = d
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            out.insert(d.resource_arn().unwrap_or_default().to_string(), tags);
        }
    }
    Ok(out)
}

/// The tags of one ARN that was just listed: NotFound is asked again for [`MID_SCAN`] (a new
/// resource), then means the resource was deleted since it was listed (None: not observed).
/// Any other error is the scan's error.
async fn elb_tags_one(
    c: &Clients,
    arn: &str,
) -> Result<
    Option<aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput>,
    AwsError,
> {
    let t0 = std::time::Instant::now();
    loop {
        match c.elb.describe_tags().resource_arns(arn).send().await {
            Ok(o) => return Ok(Some(o)),
            Err(e) => {
                let code = super::sdk_code(&e).unwrap_or_default();
                if !super::wait::is_not_found(&code) {
                    return Err(api("DescribeTags", "(read)")(e));
                }
                if t0.elapsed() >= MID_SCAN {
                    return Ok(None);
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recorded {
        [
            ("aws_vpc.main", ResKind::Vpc, "vpc-1"),
            ("aws_lb_target_group.web", ResKind::TargetGroup, "arn:tg"),
            (
                "aws_lb_target_group_attachment.web",
                ResKind::TargetAttachment,
                "arn:tg",
            ),
        ]
        .into_iter()
        .map(|(a, k, id)| (a.to_string(), (k, id.to_string())))
        .collect()
    }

    fn found(kind: ResKind, addr: &str, id: &str) -> Observed {
        unowned(kind, addr, id)
    }

    /// The DB instance's identifier is its subnet group's name too: the instance's
    /// `subnet_group` reference maps to the group, whichever the scan read first; likewise a
    /// registration's id is its group's ARN.
    #[test]
    fn an_id_two_kinds_share_names_the_one_referred_to() {
        let given = Vec::new();
        for all in [
            vec![
                found(
                    ResKind::DbSubnetGroup,
                    "aws_db_subnet_group.main",
                    "hactl-web-db",
                ),
                found(ResKind::DbInstance, "aws_db_instance.main", "hactl-web-db"),
            ],
            vec![
                found(ResKind::DbInstance, "aws_db_instance.main", "hactl-web-db"),
                found(
                    ResKind::DbSubnetGroup,
                    "aws_db_subnet_group.main",
                    "hactl-web-db",
                ),
                found(ResKind::TargetGroup, "aws_lb_target_group.web", "arn:tg"),
                found(
                    ResKind::TargetAttachment,
                    "aws_lb_target_group_attachment.web",
                    "arn:tg",
                ),
            ],
        ] {
            let ids = Ids::of(&all, &given);
            assert_eq!(ids.addr_of("hactl-web-db"), "aws_db_subnet_group.main");
            assert_eq!(ids.addr_of("vpc-other"), "vpc-other");
        }
        let all = [
            found(
                ResKind::TargetAttachment,
                "aws_lb_target_group_attachment.web",
                "arn:tg",
            ),
            found(ResKind::TargetGroup, "aws_lb_target_group.web", "arn:tg"),
        ];
        assert_eq!(
            Ids::of(&all, &given).get("arn:tg"),
            Some("aws_lb_target_group.web")
        );
    }

    /// A mount target is addressed by the index of its subnet: the stack's own subnet's, or
    /// the position among the subnets the stack names, else the subnet id itself.
    #[test]
    fn a_mount_target_is_addressed_by_its_subnet() {
        let given = vec!["subnet-given0".to_string(), "subnet-given1".to_string()];
        let all = [found(
            ResKind::Subnet,
            "aws_subnet.public[1]",
            "subnet-own1",
        )];
        let ids = Ids::of(&all, &given);
        let at = |subnet: &str| {
            let mut o = found(ResKind::EfsMountTarget, "", "fsmt-1");
            o.res = o.res.reference("subnet", vec![subnet.into()]);
            kinds::of(ResKind::EfsMountTarget).resolve(&mut o, &ids);
            (o.res.addr, o.res.refs["subnet"].clone())
        };
        assert_eq!(
            at("subnet-own1"),
            (
                super::super::desired::mount_target_addr(1),
                vec!["aws_subnet.public[1]".to_string()]
            )
        );
        assert_eq!(
            at("subnet-given1").0,
            super::super::desired::mount_target_addr(1)
        );
        assert_eq!(at("subnet-x").0, "aws_efs_mount_target.shared[subnet-x]");
    }

    /// The state's record decides before the tags: an untagged VPC it recorded is this stack's
    /// and lacks both tags; a tagged one it did not record is found by its tags; an untagged
    /// one it did not record is someone else's.
    #[test]
    fn the_state_decides_before_the_tags() {
        let rec = recorded();
        let o = Owner::new("web", &rec);
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-1", None, None),
            Some(("aws_vpc.main".into(), vec![TAG_STACK, TAG_ADDRESS]))
        );
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-1", Some("web"), Some("aws_vpc.main")),
            Some(("aws_vpc.main".into(), vec![]))
        );
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-2", Some("web"), Some("aws_vpc.main")),
            Some(("aws_vpc.main".into(), vec![]))
        );
        assert_eq!(o.of(ResKind::Vpc, "vpc-3", None, None), None);
        assert_eq!(
            o.of(ResKind::Vpc, "vpc-4", Some("other"), Some("aws_vpc.main")),
            None
        );
        // The attachment shares its group's ARN: the group keeps it. Ids are per kind.
        assert_eq!(o.of(ResKind::Subnet, "vpc-1", None, None), None);
        assert_eq!(
            o.of(ResKind::TargetGroup, "arn:tg", None, None)
                .map(|w| w.0),
            Some("aws_lb_target_group.web".into())
        );
        assert_eq!(
            Owner::missing(&rec, ResKind::Vpc, ["vpc-9"]),
            vec!["vpc-1".to_string()]
        );
        assert!(Owner::missing(&rec, ResKind::Vpc, ["vpc-1"]).is_empty());
    }
}
