//! `aws_lb_listener`: a port of the load balancer forwarding to the target group. It has no
//! tags of its own that the scan relies on: it is read through its load balancer, at the
//! address of its port ([`listener_addr`]), and is unique per port. Only its load balancer
//! forces a new one; protocol, certificate and
//! target group change in place (ModifyListener), which is how a replaced target group is
//! repointed before the old one goes. Ready when created.

use aws_sdk_elasticloadbalancingv2::types as elbt;

use super::shared::Ctx;
use super::{get, parse, reference, Kind, MissingAttr};
use crate::provider::aws::desired::listener_addr;
use crate::provider::aws::model::{Observed, ResKind, Resource};
use crate::provider::aws::observe::{unowned, Scan, MID_SCAN};
use crate::provider::aws::wait::settle;
use crate::provider::aws::AwsError;

pub struct Listener;

/// The listener as CreateListener and ModifyListener need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub lb: String,
    pub target_group: String,
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TCP`, `TLS`, …
    pub protocol: String,
    /// The default certificate of an HTTPS or TLS listener.
    pub certificate_arn: Option<String>,
}

impl Attrs {
    /// The attributes of `r`; a missing one is an error naming it.
    pub fn of(r: &Resource) -> Result<Attrs, MissingAttr> {
        Ok(Attrs {
            lb: reference(r, "lb")?.to_string(),
            target_group: reference(r, "target_group")?.to_string(),
            port: parse(r, "port")?,
            protocol: get(r, "protocol")?.to_string(),
            certificate_arn: r.get("certificate_arn").map(str::to_string),
        })
    }

    /// The listener's `Certificates`: its default certificate, when it has one.
    fn certificates(&self) -> Option<Vec<elbt::Certificate>> {
        self.certificate_arn
            .as_ref()
            .map(|arn| vec![elbt::Certificate::builder().certificate_arn(arn).build()])
    }
}

/// The default action: forward everything to the target group `tg` (an ARN).
fn forward(tg: &str) -> elbt::Action {
    elbt::Action::builder()
        .r#type(elbt::ActionTypeEnum::Forward)
        .target_group_arn(tg)
        .build()
}

#[async_trait::async_trait]
impl Kind for Listener {
    fn forces_replace(&self, key: &str) -> bool {
        key == "lb"
    }

    fn read_through(&self) -> Option<ResKind> {
        Some(ResKind::Lb)
    }

    async fn read(&self, scan: &Scan<'_>) -> Result<Vec<Observed>, AwsError> {
        let c = scan.c;
        let parents = scan.parents(ResKind::Lb);
        let per_lb = futures::future::try_join_all(parents.iter().map(|(addr, arn)| async move {
            let out = settle(MID_SCAN, "DescribeListeners", "(read)", || {
                c.elb.describe_listeners().load_balancer_arn(arn).send()
            })
            .await?;
            let mut v = Vec::new();
            for l in out.listeners() {
                let port = l.port().unwrap_or_default();
                let mut o = unowned(
                    ResKind::Listener,
                    &listener_addr(port.into()),
                    l.listener_arn().unwrap_or_default(),
                );
                // The default certificate (DescribeListeners lists only that one).
                if let Some(arn) = l.certificates().first().and_then(|c| c.certificate_arn()) {
                    o.res = o.res.attr("certificate_arn", arn);
                }
                o.res = o
                    .res
                    .attr("port", port)
                    .attr(
                        "protocol",
                        l.protocol().map(|p| p.as_str()).unwrap_or_default(),
                    )
                    .reference("lb", vec![addr.clone()])
                    .reference(
                        "target_group",
                        l.default_actions()
                            .iter()
                            .filter_map(|a| a.target_group_arn().map(str::to_string))
                            .collect(),
                    );
                v.push(o);
            }
            Ok::<_, AwsError>(v)
        }))
        .await?;
        Ok(per_lb.into_iter().flatten().collect())
    }

    async fn create(&self, ctx: &Ctx, r: &Resource, _token: &str) -> Result<String, AwsError> {
        let at = Attrs::of(r)?;
        let a = r.addr.as_str();
        let lb_id = ctx.id(a, &at.lb).await?;
        let target_group_id = ctx.id(a, &at.target_group).await?;
        let out = ctx
            .settle("CreateListener", a, || {
                ctx.c
                    .elb
                    .create_listener()
                    .load_balancer_arn(&lb_id)
                    .port(at.port)
                    .protocol(elbt::ProtocolEnum::from(at.protocol.as_str()))
                    .set_certificates(at.certificates())
                    .default_actions(forward(&target_group_id))
                    .set_tags(Some(ctx.elb_tags(a)))
                    .send()
            })
            .await?;
        Ok(out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn update(&self, ctx: &Ctx, want: &Resource, have: &Observed) -> Result<(), AwsError> {
        let at = Attrs::of(want)?;
        let a = want.addr.as_str();
        let target_group_id = ctx.id(a, &at.target_group).await?;
        ctx.settle("ModifyListener", a, || {
            ctx.c
                .elb
                .modify_listener()
                .listener_arn(&have.id)
                .protocol(elbt::ProtocolEnum::from(at.protocol.as_str()))
                .set_certificates(at.certificates())
                .default_actions(forward(&target_group_id))
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, o: &Observed) -> Result<(), AwsError> {
        ctx.remove("DeleteListener", &o.res.addr, || {
            ctx.c.elb.delete_listener().listener_arn(&o.id).send()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener without its port or protocol is refused before any call (never a listener
    /// on port 0 or a silent HTTP); only its load balancer replaces it, so a new target group
    /// is forwarded to by a ModifyListener.
    #[test]
    fn a_listener_needs_port_protocol_and_its_references() {
        let r = Resource::new(ResKind::Listener, "aws_lb_listener.port443")
            .reference("lb", vec!["aws_lb.web".into()])
            .reference("target_group", vec!["aws_lb_target_group.web".into()])
            .attr("protocol", "HTTPS");
        assert_eq!(Attrs::of(&r).map_err(|e| e.key), Err("port".to_string()));
        let r = r.attr("port", 443).attr("certificate_arn", "arn:cert");
        let at = Attrs::of(&r).expect("complete");
        assert_eq!(at.certificates().map(|c| c.len()), Some(1));
        assert!(Listener.forces_replace("lb"));
        assert!(!Listener.forces_replace("target_group"));
        assert_eq!(Listener.read_through(), Some(ResKind::Lb));
    }
}
