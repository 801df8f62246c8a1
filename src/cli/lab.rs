//! `hactl lab up|status|down|exec|check`: local lab hosts (see `crate::lab`). Arguments here,
//! the work in `crate::lab`, the printing in `crate::view`.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::lab::{self, Lab, LabError};
use crate::{view, ExitStatus};

/// The lab directory shared by every lab command.
#[derive(Debug, Clone, Args)]
pub struct LabDir {
    /// The lab directory (keys, known_hosts, ssh_config, per-host state).
    #[arg(
        long = "dir",
        env = "HACTL_LAB_DIR",
        default_value = lab::DEFAULT_DIR,
        value_name = "DIR"
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create (or complete) the lab with N hosts; running hosts are left alone.
    Up {
        /// How many hosts (host1 .. hostN, 198.18.0.11 ..), 1 to 80.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// One JSON document on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LabDir,
    },
    /// Show the bridge, the safety route, and each host's address, PID 1, processes and sshd.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LabDir,
    },
    /// Remove every host, link, route, mount and process of the lab.
    Down {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LabDir,
    },
    /// Run a command inside a lab host (its network, mount, UTS and PID namespaces); the
    /// command's output and exit code pass through.
    Exec {
        #[command(flatten)]
        dir: LabDir,
        /// The host (host1, host2, ...).
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// Check that traffic to each address goes to the lab bridge (`ip route get` via hactl0);
    /// exits 1 if one does not. Run it before sending load to a lab address.
    Check {
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<Ipv4Addr>,
    },
    /// Write the demo app's image archive (busybox httpd serving its version; no registry).
    DemoImage(super::demo_image::DemoImageArgs),
    /// A stand-in ALB/NLB for an AWS stack on moto whose instances are lab hosts: forwards
    /// each connection to a registered, healthy target of the target group (read every
    /// `--poll`), lets draining targets finish; one JSON line per backend set change.
    Balancer(super::balancer::BalancerArgs),
    /// Internal: PID 1 of a lab host (mounts its private view, then becomes sshd).
    #[command(name = "__init", hide = true)]
    Init {
        #[arg(long)]
        dir: PathBuf,
        name: String,
    },
}

pub async fn run(cmd: LabCommand) -> miette::Result<ExitStatus> {
    match cmd {
        LabCommand::Balancer(a) => super::balancer::run(a).await,
        LabCommand::Up { hosts, json, dir } => {
            let lab = Lab::open(dir.dir)?;
            let exe = std::env::current_exe().map_err(|e| LabError::Io {
                path: PathBuf::from("/proc/self/exe"),
                source: e,
            })?;
            let report = lab.up(hosts, &exe).await?;
            view::show(json, &report, view::lab::human_up)?;
            Ok(ExitStatus::Success)
        }
        LabCommand::Status { json, dir } => {
            let lab = Lab::open(dir.dir)?;
            let report = lab.status().await?;
            view::show(json, &report, view::lab::human_status)?;
            Ok(ExitStatus::Success)
        }
        LabCommand::Down { json, dir } => {
            let lab = Lab::open(dir.dir)?;
            let report = lab.down().await?;
            view::show(json, &report, view::lab::human_down)?;
            Ok(ExitStatus::Success)
        }
        LabCommand::Exec { dir, host, cmd } => {
            let lab = Lab::open(dir.dir)?;
            let mut c = lab.exec_command(&host, &cmd)?;
            // replace this process: the command's stdio, signals and exit code are the caller's
            let err = c.exec();
            Err(LabError::Spawn {
                program: "nsenter".into(),
                source: err,
            }
            .into())
        }
        LabCommand::Check { addrs } => {
            for a in addrs {
                lab::ensure_lab_route(a).await?;
                view::print_out(&format!("{a}: via {}\n", lab::net::BRIDGE));
            }
            Ok(ExitStatus::Success)
        }
        LabCommand::DemoImage(a) => super::demo_image::run_demo_image(a),
        LabCommand::Init { dir, name } => {
            let sshd = lab::tool_path("sshd").unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
            let warn = |w: &str| view::note(&format!("hactl lab __init {name}: warning: {w}"));
            Err(lab::init::run(&dir, &name, &sshd, &warn).into())
        }
    }
}
