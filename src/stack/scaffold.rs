//! `hactl init`'s scaffold: a starting stack file's values, checked, and its text.
//!
//! A newcomer (or a pipeline bootstrapping a repository) gets a stack that passes `validate`
//! at once — and, for `--lab N`, one that `up` applies to `hactl lab up --hosts N`. The
//! command (`cli/init.rs`) then creates the age vault holding the secrets the stack names
//! ([`Plan::secrets`]: the VRRP password, generated; on AWS the hosts' SSH public key).
//!
//! Flags give every value. What is missing is asked for only when stdin and stderr are a
//! terminal ([`Ask`]); otherwise (CI, a script) nothing is asked and the error names every
//! missing flag at once. Nothing is written until every value is known and the rendered stack
//! loads and validates ([`write`]): a stack `init` writes that `validate` would refuse is a
//! bug here, reported as such, and leaves no file behind. Existing files are never
//! overwritten without `--force`.
//!
//! The stack is written as text (not serialized from the model) so it carries comments that
//! point a newcomer to docs/stack.md; every value in it is checked before it is inserted
//! (names, IP addresses, CIDRs) or quoted as a JSON string, which YAML reads as the same
//! string.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};

use super::model::ProviderKind;
use super::Stack;

/// The flags of `hactl init`, as given (`None`/empty: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub name: Option<String>,
    pub provider: Option<ProviderKind>,
    pub lab: Option<u8>,
    pub hosts: Vec<String>,
    pub vip: Option<String>,
    pub interface: String,
    pub virtual_router_id: u8,
    pub region: Option<String>,
    pub ami: Option<String>,
    pub count: u16,
    pub instance_type: String,
    pub ssh_public_key: Option<PathBuf>,
    pub ssh_cidr: Option<String>,
    pub ssh_user: Option<String>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InitError {
    #[error("missing {}: stdin is not a terminal, so `hactl init` asks nothing", flags.join(", "))]
    #[diagnostic(
        code(hactl::init::missing),
        help("give them as flags, e.g. `hactl init --provider hosts --host web1=10.0.0.11 --host web2=10.0.0.12 --vip 10.0.0.100/24`, or run it in a terminal to be asked")
    )]
    Missing { flags: Vec<String> },
    #[error("`{flag}`: {value:?} {why}")]
    #[diagnostic(code(hactl::init::bad_value))]
    Bad {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("`{path}` exists")]
    #[diagnostic(
        code(hactl::init::exists),
        help("pick another `--file`/`--name`, or pass `--force` to overwrite it (and the stack's vault)")
    )]
    Exists { path: String },
    #[error("cannot {what} `{path}`: {source}")]
    #[diagnostic(code(hactl::init::io))]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Every value the stack needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub provider: ProviderKind,
    pub hosts: Vec<(String, IpAddr)>,
    pub vip: Option<(IpAddr, u8)>,
    pub interface: String,
    pub virtual_router_id: u8,
    pub region: Option<String>,
    pub ami: Option<String>,
    pub count: u16,
    pub instance_type: String,
    pub ssh_cidr: Option<String>,
    pub ssh_user: String,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    /// `provider: aws`: the file holding the hosts' SSH public key.
    pub ssh_public_key: Option<PathBuf>,
}

/// The lab's SSH material (`hactl lab up` writes it there).
const LAB_IDENTITY: &str = "/srv/hactl-lab/id_ed25519";
const LAB_KNOWN_HOSTS: &str = "/srv/hactl-lab/known_hosts";

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> InitError {
    InitError::Bad {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

fn check_name(flag: &'static str, n: &str, host: bool) -> Result<(), InitError> {
    let ok = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (host && (c.is_ascii_uppercase() || c == '.' || c == '_'))
    };
    if n.is_empty() || n.len() > 63 || !n.chars().all(ok) || n.starts_with('-') || n.ends_with('-')
    {
        return Err(bad(
            flag,
            n,
            "is not a name: lowercase letters, digits and `-` (hosts also `.`, `_`), at most 63",
        ));
    }
    Ok(())
}

/// `NAME=ADDRESS` or `ADDRESS` (the `i`-th host, from 1).
fn parse_host(text: &str, i: usize) -> Result<(String, IpAddr), InitError> {
    let (name, addr) = match text.split_once('=') {
        Some((n, a)) => (n.trim().to_string(), a.trim()),
        None => (format!("host{i}"), text.trim()),
    };
    check_name("--host", &name, true)?;
    let ip = addr
        .parse()
        .map_err(|_| bad("--host", text, "does not end in an IP address (no prefix)"))?;
    Ok((name, ip))
}

fn parse_vip(text: &str) -> Result<(IpAddr, u8), InitError> {
    let net: ipnet::IpNet = text
        .parse()
        .map_err(|_| bad("--vip", text, "is not ADDRESS/PREFIX, e.g. `10.0.0.100/24`"))?;
    Ok((net.addr(), net.prefix_len()))
}

/// Asks for the missing values on a terminal, or names them all when there is none (the
/// command gives the terminal; tests give answers).
pub trait Ask {
    fn interactive(&self) -> bool;
    fn ask(&self, question: &str) -> miette::Result<String>;
}

/// The checked values from the flags (and, on a terminal, the answers).
pub fn resolve(a: &Flags, asker: &dyn Ask) -> miette::Result<Plan> {
    let tty = asker.interactive();
    let mut missing = Vec::new();
    // A value from the flag, else asked on a terminal, else recorded as missing.
    let mut need =
        |flag: &str, have: Option<String>, question: &str| -> miette::Result<Option<String>> {
            match have {
                Some(v) => Ok(Some(v)),
                None if tty => {
                    let v = asker.ask(question)?;
                    Ok((!v.trim().is_empty()).then(|| v.trim().to_string()))
                }
                None => {
                    missing.push(format!("`{flag}`"));
                    Ok(None)
                }
            }
        };
    if let Some(n) = a.lab {
        if !(1..=32).contains(&n) {
            return Err(bad("--lab", &n.to_string(), "is not 1–32 (lab hosts)").into());
        }
        let name = a.name.clone().unwrap_or_else(|| "lab-init".into());
        check_name("--name", &name, false)?;
        return Ok(Plan {
            name,
            provider: ProviderKind::Hosts,
            hosts: (1..=n)
                .map(|i| (format!("host{i}"), IpAddr::from([198, 18, 0, 10 + i])))
                .collect(),
            vip: Some((IpAddr::from([198, 18, 0, 100]), 24)),
            interface: "eth0".into(),
            virtual_router_id: a.virtual_router_id,
            region: None,
            ami: None,
            count: 0,
            instance_type: a.instance_type.clone(),
            ssh_cidr: None,
            ssh_user: "root".into(),
            identity_file: Some(LAB_IDENTITY.into()),
            known_hosts: Some(LAB_KNOWN_HOSTS.into()),
            ssh_public_key: None,
        });
    }
    let provider = match a.provider {
        Some(p) => Some(p),
        None => need("--provider", None, "provider (hosts or aws)")?
            .map(|p| match p.to_ascii_lowercase().as_str() {
                "hosts" => Ok(ProviderKind::Hosts),
                "aws" => Ok(ProviderKind::Aws),
                _ => Err(bad("--provider", &p, "is not `hosts` or `aws`")),
            })
            .transpose()?,
    };
    let name = a.name.clone().unwrap_or_else(|| "web".into());
    check_name("--name", &name, false)?;
    let mut plan = Plan {
        name,
        provider: ProviderKind::Hosts,
        hosts: Vec::new(),
        vip: None,
        interface: a.interface.clone(),
        virtual_router_id: a.virtual_router_id,
        region: None,
        ami: None,
        count: a.count,
        instance_type: a.instance_type.clone(),
        ssh_cidr: None,
        ssh_user: String::new(),
        identity_file: a.identity_file.clone(),
        known_hosts: a.known_hosts.clone(),
        ssh_public_key: None,
    };
    match provider {
        Some(ProviderKind::Hosts) => {
            let hosts = if a.hosts.is_empty() {
                need("--host", None, "hosts (NAME=ADDRESS, comma-separated)")?
                    .map(|t| t.split(',').map(str::to_string).collect())
                    .unwrap_or_default()
            } else {
                a.hosts.clone()
            };
            for (i, h) in hosts.iter().enumerate() {
                plan.hosts.push(parse_host(h, i + 1)?);
            }
            let vip = match &a.vip {
                Some(v) => Some(v.clone()),
                None if tty => need("--vip", None, "virtual IP ADDRESS/PREFIX (empty: none)")?,
                None => None,
            };
            plan.vip = vip.as_deref().map(parse_vip).transpose()?;
            plan.ssh_user = a.ssh_user.clone().unwrap_or_else(|| "root".into());
        }
        Some(ProviderKind::Aws) => {
            plan.provider = ProviderKind::Aws;
            let region = need("--region", a.region.clone(), "AWS region (e.g. eu-west-1)")?;
            if let Some(r) = &region {
                if r.is_empty()
                    || !r
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(
                        bad("--region", r, "is not a region name such as `eu-west-1`").into(),
                    );
                }
            }
            plan.region = region;
            let ami = need("--ami", a.ami.clone(), "AMI id (ami-…)")?;
            if let Some(ami) = &ami {
                let hex = ami.strip_prefix("ami-").unwrap_or_default();
                if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(
                        bad("--ami", ami, "is not an AMI id (`ami-` and hex digits)").into(),
                    );
                }
            }
            plan.ami = ami;
            if a.count == 0 {
                return Err(bad("--count", "0", "must be at least 1").into());
            }
            plan.ssh_public_key = need(
                "--ssh-public-key",
                a.ssh_public_key.as_ref().map(|p| p.display().to_string()),
                "the hosts' SSH public key file (.pub)",
            )?
            .map(PathBuf::from);
            if let Some(c) = &a.ssh_cidr {
                c.parse::<ipnet::IpNet>()
                    .map_err(|_| bad("--ssh-cidr", c, "is not a CIDR such as `203.0.113.0/24`"))?;
            }
            plan.ssh_cidr = a.ssh_cidr.clone();
            plan.ssh_user = a.ssh_user.clone().unwrap_or_else(|| "ubuntu".into());
        }
        None => {}
    }
    if !missing.is_empty() {
        return Err(InitError::Missing { flags: missing }.into());
    }
    Ok(plan)
}

/// A JSON string literal, which YAML reads as the same string (YAML 1.2 is a superset of
/// JSON): free text in the stack can never break its syntax.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The stack file's text.
pub fn render(p: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `hactl init`: a starting point. Every key is described in docs/stack.md;\n\
         # `hactl validate -f THIS_FILE` checks it, `hactl plan` shows what `up` would change.\n\
         name: {}\n\
         provider: {}\n",
        p.name,
        match p.provider {
            ProviderKind::Hosts => "hosts",
            ProviderKind::Aws => "aws",
        }
    );
    let _ = writeln!(s, "ssh:\n  user: {}", quote(&p.ssh_user));
    if let Some(f) = &p.identity_file {
        let _ = writeln!(s, "  identity_file: {}", quote(f));
    }
    if let Some(f) = &p.known_hosts {
        let _ = writeln!(s, "  known_hosts: {}", quote(f));
    }
    s.push('\n');
    match p.provider {
        ProviderKind::Hosts => {
            s.push_str("hosts:\n");
            for (name, addr) in &p.hosts {
                let _ = writeln!(s, "  - name: {name}\n    address: {addr}");
                if p.vip.is_none() {
                    s.push_str("    roles: [app]\n");
                }
            }
            if let Some((addr, prefix)) = &p.vip {
                let _ = write!(
                    s,
                    "\n# keepalived holds the VIP on the host with the highest effective priority\n\
                     # (150 for the first host, then 100, 99, …); the check moves it away from a\n\
                     # host whose nginx stops answering.\n\
                     vip:\n  address: {addr}/{prefix}\n  interface: {}\n  virtual_router_id: {}\n  \
                     advert_int: 1s\n  mode: unicast\n  auth_pass: {{secret: vrrp_password}}\n  \
                     checks:\n    - name: nginx\n      http: http://127.0.0.1:80/healthz\n      \
                     interval: 1s\n      timeout: 1s\n      fall: 1\n      rise: 1\n      weight: 0\n",
                    quote(&p.interface),
                    p.virtual_router_id
                );
            }
            s.push_str("\nnginx:\n  listen: 80\n  health_path: /healthz\n");
            if p.vip.is_some() {
                s.push_str(
                    "\n# haproxy on the VIP hosts balances across every host's nginx.\n\
                     haproxy:\n  listen: 8080\n  backend_port: 80\n  check_interval: 1s\n",
                );
            }
        }
        ProviderKind::Aws => {
            let region = p.region.as_deref().unwrap_or_default();
            let _ = write!(
                s,
                "aws:\n  region: {region}\n  zones: [{region}a, {region}b]\n  network:\n    \
                 vpc_cidr: 10.20.0.0/16\n    subnets: [10.20.1.0/24, 10.20.2.0/24]\n"
            );
            if let Some(c) = &p.ssh_cidr {
                let _ = writeln!(s, "    ssh_cidr: {c}");
            }
            let _ = write!(
                s,
                "  hosts:\n    count: {}\n    instance_type: {}\n    ami: {}\n    \
                 public_key: {{secret: ssh_public_key}}\n  balancer:\n    kind: alb\n    \
                 listeners:\n      - port: 80\n        protocol: HTTP\n    target_port: 80\n    \
                 health_check:\n      path: /healthz\n\nnginx:\n  listen: 80\n  health_path: /healthz\n",
                p.count,
                quote(&p.instance_type),
                p.ami.as_deref().unwrap_or_default()
            );
        }
    }
    s
}

fn write_new(path: &Path, text: &[u8], force: bool) -> Result<(), InitError> {
    if path.exists() && !force {
        return Err(InitError::Exists {
            path: path.display().to_string(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| InitError::Io {
            what: "create the directory",
            path: dir.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| InitError::Io {
        what: "write",
        path: path.display().to_string(),
        source,
    })
}

/// What [`write`] wrote: the stack (loaded back) and the secrets its vault must hold.
pub struct Written {
    pub path: PathBuf,
    pub stack: Stack,
    /// (name, value): the generated VRRP password, the hosts' SSH public key.
    pub secrets: Vec<(String, String)>,
}

impl Plan {
    /// The secrets the stack names, by name: a generated VRRP password (VRRP v2 PASS
    /// authentication carries at most 8 characters, keepalived.conf(5)) and on AWS the public
    /// key read from its file.
    fn secrets(&self) -> Result<Vec<(String, String)>, InitError> {
        let mut out = Vec::new();
        if self.vip.is_some() && self.provider == ProviderKind::Hosts {
            let pass = Alphanumeric.sample_string(&mut rand::rng(), 8);
            out.push(("vrrp_password".to_string(), pass));
        }
        if let (ProviderKind::Aws, Some(p)) = (&self.provider, &self.ssh_public_key) {
            let key = std::fs::read_to_string(p).map_err(|source| InitError::Io {
                what: "read",
                path: p.display().to_string(),
                source,
            })?;
            out.push(("ssh_public_key".to_string(), key.trim().to_string()));
        }
        Ok(out)
    }
}

/// Writes the stack to `file` (default `stacks/NAME.yaml`) once its text loads and validates
/// and neither it nor its vault exists (unless `force`). The text is first written to a
/// temporary file beside the target and loaded: a stack that does not load is a bug in
/// `init`, and must leave nothing behind. `vault_of` says where a stack's vault goes (the
/// vault module's rule).
pub fn write(
    plan: &Plan,
    file: Option<&Path>,
    force: bool,
    vault_of: impl Fn(&Stack) -> PathBuf,
) -> miette::Result<Written> {
    let secrets = plan.secrets()?;
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new("stacks").join(format!("{}.yaml", plan.name)));
    let text = render(plan);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| InitError::Io {
        what: "create the directory",
        path: dir.display().to_string(),
        source,
    })?;
    if path.exists() && !force {
        return Err(InitError::Exists {
            path: path.display().to_string(),
        }
        .into());
    }
    let probe = dir.join(format!(".{}.hactl-init.yaml", plan.name));
    write_new(&probe, text.as_bytes(), true)?;
    let loaded = super::load(&probe);
    let _ = std::fs::remove_file(&probe);
    // The vault's place depends on the stack's folder and name only, the same for the probe.
    let vault = vault_of(&loaded?);
    if vault.exists() && !force {
        return Err(InitError::Exists {
            path: vault.display().to_string(),
        }
        .into());
    }
    write_new(&path, text.as_bytes(), force)?;
    let stack = super::load(&path)?;
    Ok(Written {
        path,
        stack,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    struct NoTty;
    impl Ask for NoTty {
        fn interactive(&self) -> bool {
            false
        }
        fn ask(&self, q: &str) -> miette::Result<String> {
            panic!("asked {q:?} without a terminal")
        }
    }

    struct Answers(std::cell::RefCell<Vec<&'static str>>);
    impl Ask for Answers {
        fn interactive(&self) -> bool {
            true
        }
        fn ask(&self, _: &str) -> miette::Result<String> {
            Ok(self.0.borrow_mut().remove(0).to_string())
        }
    }

    fn args(argv: &[&str]) -> Flags {
        let mut full = vec!["hactl", "init"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::parse_from(full).command {
            crate::cli::Command::Init(a) => a.flags(),
            other => panic!("{other:?}"),
        }
    }

    /// Without a terminal nothing is asked, and every missing flag is named in one error.
    #[test]
    fn init_without_tty_names_every_missing_flag() {
        let e = resolve(&args(&["--provider", "aws"]), &NoTty).unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing `--region`, `--ami`, `--ssh-public-key`: stdin is not a terminal, so \
             `hactl init` asks nothing"
        );
        let e = resolve(&args(&[]), &NoTty).unwrap_err();
        assert!(e.to_string().starts_with("missing `--provider`"), "{e}");
    }

    #[test]
    fn init_asks_on_a_tty() {
        let asker = Answers(std::cell::RefCell::new(vec![
            "hosts",
            "a=10.0.0.11,b=10.0.0.12",
            "10.0.0.100/24",
        ]));
        let p = resolve(&args(&[]), &asker).expect("plan");
        assert_eq!(p.hosts.len(), 2);
        assert_eq!(p.vip, Some(("10.0.0.100".parse().unwrap(), 24)));
    }

    #[test]
    fn init_refuses_bad_values() {
        for (argv, want) in [
            (
                vec!["--provider", "hosts", "--host", "a=10.0.0.300"],
                "--host",
            ),
            (
                vec!["--provider", "hosts", "--host", "x y=10.0.0.1"],
                "--host",
            ),
            (
                vec![
                    "--provider",
                    "hosts",
                    "--host",
                    "10.0.0.1",
                    "--vip",
                    "10.0.0.100",
                ],
                "--vip",
            ),
            (vec!["--lab", "2", "--name", "Lab"], "--name"),
        ] {
            let e = resolve(&args(&argv), &NoTty).unwrap_err();
            assert!(e.to_string().contains(want), "{argv:?}: {e}");
        }
    }

    #[test]
    fn init_renders_the_lab_stack() {
        let p = resolve(&args(&["--lab", "2"]), &NoTty).expect("plan");
        insta::assert_snapshot!(render(&p));
    }

    #[test]
    fn init_renders_an_aws_stack() {
        let p = resolve(
            &args(&[
                "--provider",
                "aws",
                "--region",
                "eu-west-1",
                "--ami",
                "ami-0abc123",
                "--ssh-public-key",
                "k.pub",
                "--ssh-cidr",
                "203.0.113.0/24",
            ]),
            &NoTty,
        )
        .expect("plan");
        insta::assert_snapshot!(render(&p));
    }
}
