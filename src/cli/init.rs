//! `hactl init`: a starting stack file and its vault, from flags: args → the scaffold's values
//! (`stack::scaffold`, asking on a terminal for what is missing) → the stack written and
//! checked → its vault created (`vault::manage`, with an age identity as `hactl secrets init`
//! makes one when there is none) → notes.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::stack::model::ProviderKind;
use crate::stack::scaffold::{self, Ask, Flags};
use crate::vault::{Secret, Secrets, VaultPaths};
use crate::{view, ExitStatus};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the stack (default: `stacks/NAME.yaml`); its vault goes to
    /// `secrets/NAME.age` beside `stacks/`, as for every stack.
    #[arg(short = 'f', long = "file", value_name = "STACK")]
    pub file: Option<PathBuf>,
    /// The stack's name: lowercase letters, digits and `-`.
    #[arg(long)]
    pub name: Option<String>,
    /// `hosts` (existing machines over SSH) or `aws` (EC2 behind a load balancer).
    #[arg(long, value_enum)]
    pub provider: Option<Provider>,
    /// A stack for the local lab's N hosts (`hactl lab up --hosts N`): hosts, VIP
    /// 198.18.0.100/24 and the lab's SSH key; `up` applies it as it is.
    #[arg(long, value_name = "N", conflicts_with_all = ["provider", "hosts", "vip"])]
    pub lab: Option<u8>,
    /// `provider: hosts`: one host, `NAME=ADDRESS` or just `ADDRESS` (named host1, host2, …);
    /// repeat the flag, or separate with commas.
    #[arg(long = "host", value_name = "NAME=ADDRESS", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// `provider: hosts`: the keepalived virtual IP with its prefix, e.g. `10.0.0.100/24`
    /// (none: no VIP, every host serves the app).
    #[arg(long, value_name = "ADDRESS/PREFIX")]
    pub vip: Option<String>,
    /// The VRRP interface on the hosts.
    #[arg(long, default_value = scaffold::DEFAULT_INTERFACE)]
    pub interface: String,
    /// VRRP virtual router id, 1–255, unique on the LAN.
    #[arg(long, default_value_t = scaffold::DEFAULT_VIRTUAL_ROUTER_ID, value_parser = clap::value_parser!(u8).range(1..))]
    pub virtual_router_id: u8,
    /// `provider: aws`: the region, e.g. `eu-west-1` (zones `<region>a` and `<region>b`).
    #[arg(long)]
    pub region: Option<String>,
    /// `provider: aws`: the AMI the hosts boot.
    #[arg(long)]
    pub ami: Option<String>,
    /// `provider: aws`: how many hosts, spread over the zones.
    #[arg(long, default_value_t = scaffold::DEFAULT_COUNT)]
    pub count: u16,
    /// `provider: aws`: the instance type.
    #[arg(long, default_value = scaffold::DEFAULT_INSTANCE_TYPE)]
    pub instance_type: String,
    /// `provider: aws`: the public half of the hosts' SSH key (a `.pub` file); stored in the
    /// vault as `ssh_public_key`.
    #[arg(long, value_name = "FILE.pub")]
    pub ssh_public_key: Option<PathBuf>,
    /// `provider: aws`: who may reach the hosts' port 22 (CIDR); without it `up` cannot
    /// configure the instances from outside the VPC.
    #[arg(long, value_name = "CIDR")]
    pub ssh_cidr: Option<String>,
    /// The SSH login user (default: `root` for hosts, `ubuntu` for aws).
    #[arg(long)]
    pub ssh_user: Option<String>,
    /// The SSH private key.
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<String>,
    /// The known_hosts file to check host keys against.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<String>,
    /// Overwrite an existing stack file and vault.
    #[arg(long)]
    pub force: bool,
    /// One JSON document on stdout (what was written) instead of notes on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    Hosts,
    Aws,
}

impl InitArgs {
    /// The scaffold's settings: the flags as given.
    pub(crate) fn flags(&self) -> Flags {
        Flags {
            name: self.name.clone(),
            provider: self.provider.map(|p| match p {
                Provider::Hosts => ProviderKind::Hosts,
                Provider::Aws => ProviderKind::Aws,
            }),
            lab: self.lab,
            hosts: self.hosts.clone(),
            vip: self.vip.clone(),
            interface: self.interface.clone(),
            virtual_router_id: self.virtual_router_id,
            region: self.region.clone(),
            ami: self.ami.clone(),
            count: self.count,
            instance_type: self.instance_type.clone(),
            ssh_public_key: self.ssh_public_key.clone(),
            ssh_cidr: self.ssh_cidr.clone(),
            ssh_user: self.ssh_user.clone(),
            identity_file: self.identity_file.clone(),
            known_hosts: self.known_hosts.clone(),
        }
    }
}

/// Questions go to the terminal (asked only when there is one).
struct Terminal;

impl Ask for Terminal {
    fn interactive(&self) -> bool {
        view::interactive()
    }
    fn ask(&self, question: &str) -> miette::Result<String> {
        view::ask(question)
    }
}

pub fn run(a: InitArgs) -> miette::Result<ExitStatus> {
    let plan = scaffold::resolve(&a.flags(), &Terminal)?;
    let w = scaffold::write(&plan, a.file.as_deref(), a.force, |s| {
        VaultPaths::of(s).vault
    })?;
    let paths = VaultPaths::of(&w.stack);
    let mut secrets = Secrets::default();
    for (name, value) in w.secrets {
        secrets.insert(name, Secret::new(value));
    }
    // create_vault reports the identity it created and the vault's recipients.
    crate::vault::manage::create_vault(&w.stack, &paths, &secrets)?;
    view::init::written(&view::init::Initialized {
        stack: w.path.display().to_string(),
        vault: paths.vault.display().to_string(),
        secrets: secrets.names().map(str::to_string).collect(),
    })?;
    Ok(ExitStatus::Success)
}
