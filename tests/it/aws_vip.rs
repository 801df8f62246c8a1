//! Seed 000's AWS variant in the lab: the notify hook moves the VIP with the EC2 API.
//!
//! A moto server listens on the lab bridge address (198.18.0.1, this machine's own end of
//! `hactl0`), so the lab hosts' notify scripts reach it as they would an EC2 endpoint. Each
//! test builds with the SDK what EC2 would hold — a VPC, a subnet, one network interface per
//! lab host carrying the host's address, the VIP on host1's interface — applies a stack whose
//! `vip.aws` points at moto, stops nginx on the master and asserts through the EC2 API that
//! the address moved to the new master's interface within a bound, and back on failback.
//!
//! moto does not honour `AllowReassignment` (it adds the address to the new interface and
//! leaves it on the old one), so "on that interface only" also proves the old master's
//! release. The secondary-IP test signs with keys from the vault (a 0600 file on the hosts);
//! the Elastic IP test with the instance role's credentials, which moto's metadata endpoint
//! serves (IMDSv2 token first), so both credential paths of the hook run for real.

use std::fmt::Debug;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::aws::Moto;
use crate::support::{self, assert_lab_route, lab_exec, lab_guard, stderr, vip_holders};

const BRIDGE: &str = "198.18.0.1";
const VIP: &str = "198.18.0.100";
const HOSTS: [(&str, &str); 3] = [
    ("host1", "198.18.0.11"),
    ("host2", "198.18.0.12"),
    ("host3", "198.18.0.13"),
];
/// The secret key the secondary-IP test puts in the vault: it must reach one 0600 file on each
/// host and no log, script or output.
const SECRET_KEY: &str = "moto-only/Secret+Key=aws-vip-canary-7d41";
/// From nginx stopped to the address on the new master's interface: the check fails within
/// 1 s (interval 1 s, fall 1), VRRP moves in about 1 s more, the API call takes milliseconds.
const MOVE_LIMIT: Duration = Duration::from_secs(15);

/// Takes the lab down when the test ends, passed or not.
struct LabDown;
impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = support::run(&["lab", "down"]);
    }
}

/// The EC2 API of one moto server, through the SDK, from blocking test code.
struct Ec2 {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_ec2::Client,
}

impl Ec2 {
    fn new(moto: &Moto) -> Ec2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let conf = rt.block_on(moto.sdk());
        Ec2 {
            rt,
            client: aws_sdk_ec2::Client::new(&conf),
        }
    }

    /// A VPC and subnet with the lab's addresses, and one interface per lab host carrying its
    /// address. Returns the interface ids in host order.
    fn lab_interfaces(&self) -> Vec<String> {
        self.rt.block_on(async {
            let c = &self.client;
            let vpc = c
                .create_vpc()
                .cidr_block("198.18.0.0/16")
                .send()
                .await
                .expect("CreateVpc");
            let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id");
            let subnet = c
                .create_subnet()
                .vpc_id(vpc_id)
                .cidr_block("198.18.0.0/24")
                .send()
                .await
                .expect("CreateSubnet");
            let subnet_id = subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id");
            let mut enis = Vec::new();
            for (name, addr) in HOSTS {
                let eni = c
                    .create_network_interface()
                    .subnet_id(subnet_id)
                    .private_ip_address(addr)
                    .description(format!("lab {name}"))
                    .send()
                    .await
                    .expect("CreateNetworkInterface");
                let id = eni
                    .network_interface()
                    .and_then(|n| n.network_interface_id())
                    .expect("eni id");
                enis.push(id.to_string());
            }
            enis
        })
    }

    fn assign(&self, eni: &str, ip: &str) {
        self.rt
            .block_on(
                self.client
                    .assign_private_ip_addresses()
                    .network_interface_id(eni)
                    .private_ip_addresses(ip)
                    .allow_reassignment(true)
                    .send(),
            )
            .expect("AssignPrivateIpAddresses");
    }

    /// The interfaces (of `enis`) that hold `ip` as a private address.
    fn holders_of(&self, enis: &[String], ip: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .describe_network_interfaces()
                    .set_network_interface_ids(Some(enis.to_vec()))
                    .send(),
            )
            .expect("DescribeNetworkInterfaces");
        let mut holders: Vec<String> = out
            .network_interfaces()
            .iter()
            .filter(|n| {
                n.private_ip_addresses()
                    .iter()
                    .any(|a| a.private_ip_address() == Some(ip))
            })
            .filter_map(|n| n.network_interface_id().map(String::from))
            .collect();
        holders.sort();
        holders
    }

    /// A new Elastic IP associated with `eni`; returns its allocation id.
    fn elastic_ip_on(&self, eni: &str) -> String {
        self.rt.block_on(async {
            let a = self
                .client
                .allocate_address()
                .domain(aws_sdk_ec2::types::DomainType::Vpc)
                .send()
                .await
                .expect("AllocateAddress");
            let id = a.allocation_id().expect("allocation id").to_string();
            self.client
                .associate_address()
                .allocation_id(&id)
                .network_interface_id(eni)
                .send()
                .await
                .expect("AssociateAddress");
            id
        })
    }

    /// The interface the Elastic IP is associated with.
    fn eip_interface(&self, allocation_id: &str) -> Option<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .describe_addresses()
                    .allocation_ids(allocation_id)
                    .send(),
            )
            .expect("DescribeAddresses");
        out.addresses()
            .first()
            .and_then(|a| a.network_interface_id())
            .map(String::from)
    }
}

/// Polls `f` every 100 ms until it returns `want` or `limit` passes; returns the last value and
/// how long it took.
fn wait_for<T: PartialEq + Debug>(
    limit: Duration,
    want: &T,
    mut f: impl FnMut() -> T,
) -> (T, Duration) {
    let t = Instant::now();
    loop {
        let v = f();
        if &v == want || t.elapsed() > limit {
            return (v, t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A checkout-like temp dir: `stacks/awsvip.yaml`, its vault under `secrets/`, HOME here (the
/// age identity `secrets init` makes lives under it).
struct Workdir {
    dir: tempfile::TempDir,
    stack: String,
}

impl Workdir {
    fn new(aws_block: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("stacks")).expect("mkdir stacks");
        let stack = "stacks/awsvip.yaml".to_string();
        let text = format!(
            "name: awsvip
provider: hosts
ssh:
  user: root
  identity_file: /srv/hactl-lab/id_ed25519
  known_hosts: /srv/hactl-lab/known_hosts
  connect_timeout: 3s
hosts:
  - {{name: host1, address: 198.18.0.11, priority: 150}}
  - {{name: host2, address: 198.18.0.12, priority: 100}}
  - {{name: host3, address: 198.18.0.13, priority: 99}}
vip:
  address: {VIP}/24
  interface: eth0
  virtual_router_id: 53
  advert_int: 1s
  checks:
    - name: nginx
      http: http://127.0.0.1:80/healthz
      interval: 1s
      timeout: 1s
      fall: 1
      rise: 1
      weight: 0
  aws:
{aws_block}nginx:
  listen: 80
  health_path: /healthz
"
        );
        std::fs::write(dir.path().join(&stack), text).expect("write stack");
        Workdir { dir, stack }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = support::hactl();
        c.current_dir(self.dir.path());
        c.env("HOME", self.dir.path());
        c.env_remove("HACTL_AGE_KEY");
        c.env_remove("HACTL_AGE_KEY_FILE");
        c.args(args);
        c.args(["-f", &self.stack]);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        support::succeeded(args, &self.cmd(args).output().expect("hactl runs"))
    }

    fn set_secret(&self, name: &str, value: &str) {
        let mut set = self
            .cmd(&["secrets", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hactl runs");
        {
            use std::io::Write;
            let mut stdin = set.stdin.take().expect("stdin");
            stdin.write_all(value.as_bytes()).expect("write secret");
        }
        let o: Output = set.wait_with_output().expect("hactl ends");
        assert!(o.status.success(), "secrets set {name}: {}", stderr(&o));
    }

    fn holders(&self) -> Vec<String> {
        let o = self
            .cmd(&["status", "--json"])
            .output()
            .expect("hactl runs");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        vip_holders(&v)
    }
}

/// The lab up with 3 hosts and moto on the bridge address; the network rule allows only the
/// lab and this machine, so the routes are checked before any traffic.
fn lab_and_moto() -> (LabDown, Moto, Ec2) {
    support::ok(&["lab", "up", "--hosts", "3"]);
    let down = LabDown;
    for (_, addr) in HOSTS {
        assert_lab_route(addr);
    }
    assert_lab_route(VIP);
    // 198.18.0.1 is this machine's own address on hactl0 (the route says `local`): moto
    // listens there so the hosts reach it over the bridge.
    let moto = Moto::start_on(BRIDGE);
    let ec2 = Ec2::new(&moto);
    (down, moto, ec2)
}

/// The notify hook's log on a lab host.
fn hook_log(host: &str) -> String {
    lab_exec(
        host,
        &["sh", "-c", "cat /var/log/hactl/aws-vip.log 2>/dev/null"],
    )
}

/// host1 holds the VIP in VRRP and, through the API, on its interface only.
fn assert_settled_on_host1(w: &Workdir, ec2: &Ec2, enis: &[String]) {
    let (h, _) = wait_for(Duration::from_secs(10), &vec!["host1".to_string()], || {
        w.holders()
    });
    assert_eq!(h, vec!["host1".to_string()], "host1 never took the VIP");
    let (on, took) = wait_for(MOVE_LIMIT, &vec![enis[0].clone()], || {
        ec2.holders_of(enis, VIP)
    });
    assert_eq!(
        on,
        vec![enis[0].clone()],
        "the VIP is not on host1's interface only after {took:?}\nhost1 log:\n{}",
        hook_log("host1")
    );
}

#[test]
fn aws_vip_secondary_ip_moves_with_the_master() {
    let _g = lab_guard();
    let (_down, moto, ec2) = lab_and_moto();
    let enis = ec2.lab_interfaces();
    ec2.assign(&enis[0], VIP);
    let aws = format!(
        "    mode: secondary_ip
    region: us-east-1
    endpoint: {url}/
    interfaces: {{host1: {e1}, host2: {e2}, host3: {e3}}}
    access_key_id: {{secret: vip_key_id}}
    secret_access_key: {{secret: vip_secret_key}}
    attempts: 5
    deadline: 10s
",
        url = moto.url,
        e1 = enis[0],
        e2 = enis[1],
        e3 = enis[2]
    );
    let w = Workdir::new(&aws);
    w.ok(&["secrets", "init"]);
    w.set_secret("vip_key_id", "AKIAMOTOONLY00000001");
    w.set_secret("vip_secret_key", SECRET_KEY);
    let up = w.ok(&["up", "--auto-approve"]);
    assert!(!up.contains(SECRET_KEY), "the secret key in `up` output");
    for (host, _) in HOSTS {
        let mode = lab_exec(
            host,
            &["stat", "-c", "%a %U", "/etc/keepalived/hactl-aws-vip.env"],
        );
        assert_eq!(mode.trim(), "600 root", "{host}'s credentials file");
    }
    assert_settled_on_host1(&w, &ec2, &enis);

    // Failover: nginx stops on host1, host2 takes the VIP and moves it by the API.
    let t0 = Instant::now();
    lab_exec("host1", &["systemctl", "stop", "nginx"]);
    let (on, _) = wait_for(MOVE_LIMIT, &vec![enis[1].clone()], || {
        ec2.holders_of(&enis, VIP)
    });
    let moved = t0.elapsed();
    assert_eq!(
        on,
        vec![enis[1].clone()],
        "the VIP did not move to host2's interface only within {MOVE_LIMIT:?}\nhost1:\n{}\nhost2:\n{}",
        hook_log("host1"),
        hook_log("host2")
    );
    let vrrp = w.holders();
    assert_eq!(vrrp, vec!["host2".to_string()], "VRRP disagrees with EC2");

    // Failback: host1 preempts when nginx is back, and takes the address back.
    let t1 = Instant::now();
    lab_exec("host1", &["systemctl", "start", "nginx"]);
    let (on, _) = wait_for(MOVE_LIMIT, &vec![enis[0].clone()], || {
        ec2.holders_of(&enis, VIP)
    });
    let back = t1.elapsed();
    assert_eq!(
        on,
        vec![enis[0].clone()],
        "the VIP did not come back to host1's interface only\nhost1:\n{}\nhost2:\n{}",
        hook_log("host1"),
        hook_log("host2")
    );
    eprintln!(
        "aws_vip secondary_ip: on host2's interface {} ms after nginx stopped, back on host1's {} ms after it started",
        moved.as_millis(),
        back.as_millis()
    );

    // The hooks' own record: each call named with its outcome, never a credential.
    let (log1, log2) = (hook_log("host1"), hook_log("host2"));
    assert!(
        log2.contains(&format!("MASTER assign {VIP} on {}: ok", enis[1])),
        "{log2}"
    );
    assert!(
        log2.contains(&format!("BACKUP unassign {VIP} on {}: ok", enis[1])),
        "{log2}"
    );
    assert!(
        log1.contains(&format!("FAULT unassign {VIP} on {}: ok", enis[0])),
        "{log1}"
    );
    for (host, _) in HOSTS {
        let log = hook_log(host);
        assert!(
            !log.contains(SECRET_KEY) && !log.contains("AKIAMOTOONLY"),
            "{host}: {log}"
        );
        let script = lab_exec(host, &["cat", "/etc/keepalived/hactl-notify.sh"]);
        assert!(
            !script.contains(SECRET_KEY),
            "{host}: the key in the script"
        );
    }
    let logs = w.ok(&["logs", "--service", "keepalived", "--since", "5m"]);
    assert!(!logs.contains(SECRET_KEY), "the key in keepalived's logs");
}

#[test]
fn aws_vip_elastic_ip_follows_the_master_with_instance_role_credentials() {
    let _g = lab_guard();
    let (_down, moto, ec2) = lab_and_moto();
    let enis = ec2.lab_interfaces();
    ec2.assign(&enis[0], VIP);
    let alloc = ec2.elastic_ip_on(&enis[0]);
    // No keys: the hook asks the metadata service (moto serves IMDSv2 and a role's
    // credentials on its own address) for the instance role's temporary credentials.
    let aws = format!(
        "    mode: elastic_ip
    allocation_id: {alloc}
    region: us-east-1
    endpoint: {url}/
    metadata_endpoint: {url}
    interfaces: {{host1: {e1}, host2: {e2}, host3: {e3}}}
    deadline: 10s
",
        url = moto.url,
        e1 = enis[0],
        e2 = enis[1],
        e3 = enis[2]
    );
    let w = Workdir::new(&aws);
    w.ok(&["up", "--auto-approve"]);
    assert_settled_on_host1(&w, &ec2, &enis);
    let (eip, _) = wait_for(MOVE_LIMIT, &Some(enis[0].clone()), || {
        ec2.eip_interface(&alloc)
    });
    assert_eq!(eip, Some(enis[0].clone()));

    let t0 = Instant::now();
    lab_exec("host1", &["systemctl", "stop", "nginx"]);
    let (eip, _) = wait_for(MOVE_LIMIT, &Some(enis[1].clone()), || {
        ec2.eip_interface(&alloc)
    });
    let moved = t0.elapsed();
    assert_eq!(
        eip,
        Some(enis[1].clone()),
        "the Elastic IP did not follow the VIP to host2\nhost2:\n{}",
        hook_log("host2")
    );
    assert_eq!(ec2.holders_of(&enis, VIP), vec![enis[1].clone()]);
    let log2 = hook_log("host2");
    assert!(
        log2.contains(&format!("MASTER associate {VIP} on {}: ok", enis[1])),
        "{log2}"
    );
    // The role's session token went as a header, never into a log.
    assert!(!log2.contains("test-session-token"), "{log2}");

    let t1 = Instant::now();
    lab_exec("host1", &["systemctl", "start", "nginx"]);
    let (eip, _) = wait_for(MOVE_LIMIT, &Some(enis[0].clone()), || {
        ec2.eip_interface(&alloc)
    });
    let back = t1.elapsed();
    assert_eq!(
        eip,
        Some(enis[0].clone()),
        "the Elastic IP did not come back to host1\nhost1:\n{}",
        hook_log("host1")
    );
    eprintln!(
        "aws_vip elastic_ip: followed to host2 {} ms after nginx stopped, back to host1 {} ms after it started",
        moved.as_millis(),
        back.as_millis()
    );
}
