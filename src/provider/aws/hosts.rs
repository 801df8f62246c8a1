//! The hand-off from the AWS layer to the hosts layer: the instances recorded in the state's
//! outputs become [`Host`]s that the spine's render → observe → plan → apply flow configures
//! over SSH, plus the EFS mount entry and the (reported, never faked) mount step. Pure: no
//! AWS and no SSH here.
//!
//! How SSH reaches an instance: with `ssh.config_file` set, hactl connects to the instance's
//! *name* (`web-0`) and lets ssh resolve it through that file (`HostName`, `ProxyJump`,
//! `ProxyCommand`: bastions, NAT, or lab stand-ins); otherwise to its public IP, or its private
//! IP when there is none (reached through `ssh.proxy_jump`). The address templates and the
//! balancer use is always the private IP.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use crate::stack::{Host, Stack};

/// One instance as the outputs record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub instance_id: String,
    pub private_ip: IpAddr,
    pub public_ip: Option<String>,
}

/// The instances in the outputs (`outputs.hosts`), in index order; entries without a usable
/// private address are left out (an instance still pending has none yet).
pub fn instances(outputs: &Value) -> Vec<Instance> {
    outputs["hosts"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    Some(Instance {
                        name: h["name"].as_str()?.to_string(),
                        instance_id: h["instance_id"].as_str().unwrap_or_default().to_string(),
                        private_ip: h["address"].as_str()?.parse().ok()?,
                        public_ip: h["public_ip"]
                            .as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The stack's hosts, built from the instances: every one serves the app (roles `app`).
pub fn hosts(stack: &Stack, instances: &[Instance]) -> Vec<Host> {
    let via_config = stack.file.ssh.config_file.is_some();
    instances
        .iter()
        .map(|i| Host {
            name: i.name.clone(),
            address: i.private_ip,
            ssh_target: if via_config {
                i.name.clone()
            } else {
                i.public_ip
                    .clone()
                    .unwrap_or_else(|| i.private_ip.to_string())
            },
            priority: 100,
            peers: Vec::new(),
            interface: "eth0".into(),
            roles: BTreeSet::from(["app".to_string()]),
        })
        .collect()
}

/// Whether the stack asks for anything to be configured on its instances.
pub fn has_host_config(stack: &Stack) -> bool {
    let f = &stack.file;
    f.nginx.is_some() || f.app.is_some() || !f.files.is_empty() || efs_mount(stack).is_some()
}

/// The EFS mount the stack asks for: (file system DNS name from the outputs, mount path).
pub fn efs_mount(stack: &Stack) -> Option<String> {
    stack
        .file
        .aws
        .as_ref()
        .and_then(|a| a.shared_fs.as_ref())
        .map(|fs| fs.mount_path.clone())
}

/// Where the rendered mount entry goes on each host: one fstab-format line, kept by hactl in
/// its own file so a user's `/etc/fstab` is never rewritten.
pub fn fstab_path(stack: &str) -> String {
    format!("/etc/hactl/{stack}/efs.fstab")
}

/// The fstab line for an EFS file system, with AWS's recommended NFS options.
pub fn fstab_line(dns_name: &str, mount_path: &str) -> String {
    format!(
        "{dns_name}:/ {mount_path} nfs4 \
         nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev 0 0\n"
    )
}

/// The mount step, as a script sent to the host: mounts the entry unless it is mounted, and
/// when the host's kernel has no NFS client it mounts nothing and says so. Its last line is
/// one record: `mounted`, `already-mounted`, `not-run <reason>` or `failed <reason>`.
pub fn mount_script(stack: &str, mount_path: &str) -> String {
    let q = |s: &str| shell_escape::unix::escape(s.into()).into_owned();
    let fstab = q(&fstab_path(stack));
    let path = q(mount_path);
    format!(
        "if awk -v p={path} '$2 == p {{ found = 1 }} END {{ exit !found }}' /proc/mounts; then\n\
         \x20 echo already-mounted; exit 0\n\
         fi\n\
         if ! grep -qw nfs4 /proc/filesystems 2>/dev/null && ! modprobe -q nfs4 2>/dev/null; then\n\
         \x20 echo 'not-run the host kernel has no NFS client (nfs4 is not in /proc/filesystems)'; exit 0\n\
         fi\n\
         mkdir -p {path} || {{ echo 'failed cannot create the mount point'; exit 0; }}\n\
         if out=$(mount -T {fstab} {path} 2>&1); then echo mounted; \
         else echo \"failed $(printf %s \"$out\" | tr '\\n' ' ')\"; fi\n"
    )
}

/// What the mount step's record says, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum MountOutcome {
    Mounted,
    AlreadyMounted,
    NotRun(String),
    Failed(String),
}

/// Reads the mount script's last line.
pub fn parse_mount(stdout: &str) -> MountOutcome {
    let last = stdout.lines().last().unwrap_or_default().trim();
    let (word, rest) = last.split_once(' ').unwrap_or((last, ""));
    match word {
        "mounted" => MountOutcome::Mounted,
        "already-mounted" => MountOutcome::AlreadyMounted,
        "not-run" => MountOutcome::NotRun(rest.to_string()),
        "failed" => MountOutcome::Failed(rest.to_string()),
        _ => MountOutcome::Failed(format!("unexpected output: {last}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Stack {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks/seed-003-aws-web.yaml");
        crate::stack::load(&p).expect("seed 003 loads")
    }

    /// Outputs as `provider::aws::outputs` writes them after an apply (values from moto).
    pub(crate) fn sample_outputs() -> Value {
        serde_json::json!({
            "balancer": {"dns_name": "hactl-aws-web-lb-1.us-east-1.elb.amazonaws.com", "arn": "arn:lb"},
            "database": {"endpoint": "hactl-aws-web-db.aaaaaaaaaaaa.us-east-1.rds.amazonaws.com", "port": 5432, "identifier": "hactl-aws-web-db"},
            "shared_fs": {"id": "fs-0123abcd", "dns_name": "fs-0123abcd.efs.us-east-1.amazonaws.com"},
            "hosts": [
                {"name": "web-0", "address": "10.20.1.10", "public_ip": "54.0.0.10", "zone": "us-east-1a", "instance_id": "i-0"},
                {"name": "web-1", "address": "10.20.2.10", "public_ip": null, "zone": "us-east-1b", "instance_id": "i-1"},
                {"name": "web-2", "address": "", "instance_id": "i-2"}
            ]
        })
    }

    #[test]
    fn instances_skip_those_without_an_address() {
        let i = instances(&sample_outputs());
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].public_ip.as_deref(), Some("54.0.0.10"));
        assert_eq!(i[1].public_ip, None);
    }

    #[test]
    fn ssh_target_is_the_public_ip_or_the_private_one() {
        let s = seed();
        assert!(s.file.ssh.config_file.is_none());
        let h = hosts(&s, &instances(&sample_outputs()));
        assert_eq!(h[0].ssh_target, "54.0.0.10");
        assert_eq!(h[1].ssh_target, "10.20.2.10");
        assert_eq!(h[0].address.to_string(), "10.20.1.10");
        assert!(h[0].has_role("app"));
    }

    #[test]
    fn with_an_ssh_config_the_target_is_the_instance_name() {
        let mut s = seed();
        s.file.ssh.config_file = Some(crate::stack::model::unspanned("ssh_config".into()));
        let h = hosts(&s, &instances(&sample_outputs()));
        assert_eq!(h[0].ssh_target, "web-0");
        assert_eq!(h[1].ssh_target, "web-1");
    }

    #[test]
    fn fstab_line_and_mount_script() {
        insta::assert_snapshot!(fstab_line(
            "fs-1.efs.us-east-1.amazonaws.com",
            "/mnt/shared"
        ));
        insta::assert_snapshot!(mount_script("aws-web", "/mnt/shared"));
    }

    #[test]
    fn mount_records() {
        assert_eq!(parse_mount("mounted\n"), MountOutcome::Mounted);
        assert_eq!(parse_mount("already-mounted"), MountOutcome::AlreadyMounted);
        assert_eq!(
            parse_mount("not-run no nfs\n"),
            MountOutcome::NotRun("no nfs".into())
        );
        assert!(matches!(parse_mount(""), MountOutcome::Failed(_)));
    }

    /// The seed's hosts render with the real outputs: the app's env file names the database
    /// endpoint and the balancer, nginx is the spine's, the EFS entry is not a template.
    #[test]
    fn seed_renders_with_outputs() {
        let s = seed();
        let mut secrets = crate::vault::Secrets::default();
        secrets.insert(
            "db_password".into(),
            crate::vault::Secret::new("pw-not-shown".into()),
        );
        secrets.insert(
            "ssh_public_key".into(),
            crate::vault::Secret::new("ssh-ed25519 AAAA test".into()),
        );
        let mut stack = s.clone();
        stack.hosts = hosts(&s, &instances(&sample_outputs()));
        let configs = crate::engine::render_all_with_outputs(&stack, &secrets, &sample_outputs())
            .expect("renders");
        let web0 = &configs["web-0"];
        let env = web0
            .files
            .iter()
            .find(|f| f.path == "/etc/hactl/aws-web/app.env")
            .expect("the env file");
        let text = String::from_utf8_lossy(&env.content);
        assert!(text.contains("hactl-aws-web-db.aaaaaaaaaaaa.us-east-1.rds.amazonaws.com"));
        assert!(!env.sensitive, "no secret in it");
        insta::assert_snapshot!(text);
        let paths: Vec<&str> = web0.files.iter().map(|f| f.path.as_str()).collect();
        insta::assert_debug_snapshot!(paths);
    }
}
