//! A deploy on a `provider: aws` stack: the instances the state's outputs record become the
//! hosts the rollout drives over SSH (as `hactl up` configures them), and the balancer's target
//! group is where a batch is taken out of rotation and put back (ALB and NLB alike), through
//! [`crate::provider::aws::targets`].
//!
//! Per batch: `DeregisterTargets` → wait until the balancer has drained them (bounded by the
//! stack's `deregistration_delay`) → swap the app → `RegisterTargets` → wait until its health
//! checks say `healthy`, before the next batch. The times of each step are kept (unix ms) for
//! `hactl deploy --json`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::DeployError;
use crate::provider::aws::client::Clients;
use crate::provider::aws::{desired, hosts, targets};
use crate::stack::Stack;

/// The stack's target group and which instance each host is.
#[derive(Clone)]
pub struct TargetGroup {
    pub clients: Clients,
    pub arn: String,
    /// Host name (`web-0`) → instance id.
    pub ids: BTreeMap<String, String>,
    /// How long a drain may take: the stack's deregistration delay (+ slack).
    pub drain_within: Duration,
    /// How long a registered target may take to pass the balancer's health checks.
    pub healthy_within: Duration,
    /// Test-only (`--no-deregister`): leave the batch registered while it is swapped, to prove
    /// that the stand-in balancer catches a deploy that skips the drain.
    pub deregister: bool,
}

/// When a batch left and rejoined the target group, and when its swap began (unix ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// `DeregisterTargets` returned.
    pub deregistered_at: Option<u64>,
    /// `DescribeTargetHealth` no longer listed the batch.
    pub drained_at: Option<u64>,
    /// The first command of the swap went to the hosts.
    pub swapped_at: Option<u64>,
    /// `RegisterTargets` returned.
    pub registered_at: Option<u64>,
    /// `DescribeTargetHealth` showed every target of the batch `healthy`.
    pub healthy_at: Option<u64>,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl std::fmt::Debug for TargetGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetGroup")
            .field("arn", &self.arn)
            .field("ids", &self.ids)
            .field("deregister", &self.deregister)
            .finish()
    }
}

impl TargetGroup {
    fn ids_of(&self, hosts: &[String]) -> Vec<String> {
        hosts
            .iter()
            .filter_map(|h| self.ids.get(h).cloned())
            .collect()
    }

    fn err(e: crate::provider::aws::AwsError) -> DeployError {
        DeployError::Balancer(e.to_string())
    }

    /// Deregisters `hosts` and waits until they have drained; fills the window's first two
    /// times.
    pub async fn take_out(&self, hosts: &[String], w: &mut Window) -> Result<(), DeployError> {
        let ids = self.ids_of(hosts);
        if ids.is_empty() || !self.deregister {
            return Ok(());
        }
        targets::deregister(&self.clients, &self.arn, &ids)
            .await
            .map_err(Self::err)?;
        w.deregistered_at = Some(unix_ms());
        targets::wait_drained(&self.clients, &self.arn, &ids, self.drain_within)
            .await
            .map_err(Self::err)?;
        w.drained_at = Some(unix_ms());
        Ok(())
    }

    /// Hosts whose instance is not in the target group (not even draining): a killed deploy
    /// can leave a batch out.
    pub async fn missing(&self) -> Result<Vec<String>, DeployError> {
        let list = crate::provider::aws::health::targets(&self.clients, &self.arn)
            .await
            .map_err(Self::err)?;
        Ok(self
            .ids
            .iter()
            .filter(|(_, id)| targets::drained(&list, std::slice::from_ref(*id)))
            .map(|(h, _)| h.clone())
            .collect())
    }

    /// Registers `hosts` (a no-op for registered ones) and waits until they are `healthy`.
    pub async fn put_back(&self, hosts: &[String], w: &mut Window) -> Result<(), DeployError> {
        let ids = self.ids_of(hosts);
        if ids.is_empty() {
            return Ok(());
        }
        targets::register(&self.clients, &self.arn, &ids)
            .await
            .map_err(Self::err)?;
        w.registered_at = Some(unix_ms());
        targets::wait_healthy(&self.clients, &self.arn, &ids, self.healthy_within)
            .await
            .map_err(Self::err)?;
        w.healthy_at = Some(unix_ms());
        Ok(())
    }
}

/// A stack, ready for a deploy: the hosts it drives, where a batch leaves rotation and the
/// public endpoint the probe defaults to. On AWS ([`aws_stack`]) the instances in the state
/// are the hosts, the target group is where batches leave, the balancer's DNS name is the
/// endpoint; on hosts the stack is as written, haproxy drains (no target group) and the VIP
/// is the endpoint. `deregister: false` is the test-only `--no-deregister`.
pub async fn prepare(stack: Stack, deregister: bool) -> Result<Prepared, DeployError> {
    if stack.file.provider.value == crate::stack::model::ProviderKind::Aws {
        return aws_stack(&stack, deregister).await;
    }
    let endpoint = vip_endpoint(&stack);
    Ok(Prepared {
        stack,
        target_group: None,
        endpoint,
    })
}

/// The VIP on haproxy's port (or nginx's, else 80): a hosts stack's public endpoint.
fn vip_endpoint(stack: &Stack) -> Option<String> {
    let vip = stack.vip.as_ref()?;
    let port = match (&stack.file.haproxy, &stack.file.nginx) {
        (Some(h), _) => h.listen.value,
        (None, Some(n)) => n.listen.value,
        _ => 80,
    };
    Some(match vip.address {
        std::net::IpAddr::V4(a) => format!("http://{a}:{port}/"),
        std::net::IpAddr::V6(a) => format!("http://[{a}]:{port}/"),
    })
}

/// The URL users reach through a balancer's listener: `https://` for an HTTPS (ALB) or TLS
/// (NLB) listener, else `http://`; the port only when it is not the scheme's default. `None`
/// without a DNS name (a balancer not created yet).
fn lb_endpoint(dns: &str, protocol: &str, port: i64) -> Option<String> {
    if dns.is_empty() {
        return None;
    }
    let scheme = match protocol.to_ascii_uppercase().as_str() {
        "HTTPS" | "TLS" => "https",
        _ => "http",
    };
    let default = if scheme == "https" { 443 } else { 80 };
    Some(if port == default {
        format!("{scheme}://{dns}/")
    } else {
        format!("{scheme}://{dns}:{port}/")
    })
}

/// A stack ready for a deploy (see [`prepare`]): the stack with its hosts, its target group
/// (an AWS stack with a balancer) and its public endpoint (`http[s]://LB-DNS-NAME[:PORT]/` or
/// the VIP).
pub struct Prepared {
    pub stack: Stack,
    pub target_group: Option<TargetGroup>,
    pub endpoint: Option<String>,
}

/// Reads the stack's state (the backend it names): the instances in its outputs become the
/// app hosts (reached as `hactl up` reaches them, with the host keys `up` pinned), the target
/// group's id comes from its resources.
pub async fn aws_stack(stack: &Stack, deregister: bool) -> Result<Prepared, DeployError> {
    let name = stack.name().to_string();
    let not_up = || DeployError::NotUp {
        hosts: format!("stack `{name}` (no instances in its state)"),
    };
    let backend = crate::state::Backend::for_stack(stack)
        .await
        .map_err(|e| DeployError::Balancer(e.to_string()))?;
    let st = backend
        .read(&name)
        .await
        .map_err(|e| DeployError::Balancer(e.to_string()))?
        .ok_or_else(not_up)?;
    let instances = hosts::instances(&st.outputs);
    if instances.is_empty() {
        return Err(not_up());
    }
    let mut s = stack.clone();
    s.hosts = hosts::hosts(stack, &instances);
    if s.file.ssh.known_hosts.is_none() {
        // the keys `up` pinned at first contact, as `up` writes them beside the local state
        let path = std::env::current_dir()
            .unwrap_or_default()
            .join(".hactl")
            .join(format!("{name}.known_hosts"));
        let keys: String = st.host_keys.values().cloned().collect();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&path, keys).map_err(|e| {
            DeployError::Balancer(format!("cannot write `{}`: {e}", path.display()))
        })?;
        s.file.ssh.known_hosts = Some(crate::stack::model::unspanned(
            path.to_string_lossy().into_owned(),
        ));
    }
    let balancer = stack.file.aws.as_ref().and_then(|a| a.balancer.as_ref());
    let target_group = match (balancer, st.resources.get(desired::TG)) {
        (Some(b), Some(tg)) => {
            let hc = &b.health_check;
            let region = stack
                .file
                .aws
                .as_ref()
                .map(|a| a.region.value.clone())
                .unwrap_or_else(|| "us-east-1".into());
            Some(TargetGroup {
                clients: Clients::new(&region).await,
                arn: tg.id.clone(),
                ids: instances
                    .iter()
                    .map(|i| (i.name.clone(), i.instance_id.clone()))
                    .collect(),
                drain_within: targets::drain_bound(b.deregistration_delay.value.0),
                healthy_within: targets::healthy_bound(
                    hc.interval.value.0,
                    hc.timeout.value.0,
                    u32::try_from(hc.healthy_threshold.value).unwrap_or(2),
                ),
                deregister,
            })
        }
        _ => None,
    };
    let endpoint = balancer.and_then(|b| {
        let dns = st.outputs["balancer"]["dns_name"].as_str()?;
        let l = b.listeners.first()?;
        lb_endpoint(dns, &l.protocol, l.port.value)
    });
    Ok(Prepared {
        stack: s,
        target_group,
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::lb_endpoint;

    /// The probe's default target on AWS is the first listener as users reach it.
    #[test]
    fn the_balancer_endpoint_follows_its_first_listener() {
        let dns = "aws-web-lb-1.us-east-1.elb.amazonaws.com";
        assert_eq!(
            lb_endpoint(dns, "HTTP", 80).as_deref(),
            Some("http://aws-web-lb-1.us-east-1.elb.amazonaws.com/")
        );
        assert_eq!(
            lb_endpoint(dns, "HTTPS", 443).as_deref(),
            Some("https://aws-web-lb-1.us-east-1.elb.amazonaws.com/")
        );
        assert_eq!(
            lb_endpoint(dns, "tls", 8443).as_deref(),
            Some("https://aws-web-lb-1.us-east-1.elb.amazonaws.com:8443/"),
            "an NLB's TLS listener"
        );
        assert_eq!(
            lb_endpoint(dns, "TCP", 8080).as_deref(),
            Some("http://aws-web-lb-1.us-east-1.elb.amazonaws.com:8080/")
        );
        assert_eq!(lb_endpoint("", "HTTP", 80), None, "no balancer yet");
    }
}
