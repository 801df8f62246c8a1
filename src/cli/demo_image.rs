//! `hactl lab demo-image`: the lab's demo app image archive (`deploy::demo_image`), written
//! and reported.

use std::path::PathBuf;

use clap::Args;

use crate::deploy::demo_image;
use crate::{view, ExitStatus};

/// `hactl lab demo-image`.
#[derive(Debug, Args)]
pub struct DemoImageArgs {
    /// The version the app serves and the image tag (`localhost/hactl-demo:VERSION`).
    #[arg(long)]
    pub version: String,
    /// Build a version whose health endpoint fails (404), to exercise rollbacks.
    #[arg(long)]
    pub broken: bool,
    /// Where to write the image archive (docker-archive, for `podman load`/`docker load`).
    #[arg(short = 'o', long = "output", value_name = "FILE.tar")]
    pub output: PathBuf,
    /// One JSON document on stdout instead of human output.
    #[arg(long)]
    pub json: bool,
}

pub fn run_demo_image(a: DemoImageArgs) -> miette::Result<ExitStatus> {
    let img = demo_image::write(&a.version, a.broken, &a.output)?;
    if a.json {
        view::print_json(&img)?;
    } else {
        view::print_out(&format!(
            "wrote {} ({}, {} bytes{}): load it with `podman load -i {}`\n",
            img.path.display(),
            img.reference,
            img.bytes,
            if img.broken {
                ", health endpoint broken"
            } else {
                ""
            },
            img.path.display()
        ));
    }
    Ok(ExitStatus::Success)
}
