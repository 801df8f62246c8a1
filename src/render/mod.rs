//! Rendering: turns a validated stack into the exact files each host should have.
//!
//! A minijinja environment with strict undefined behaviour loads the templates embedded from
//! `templates/` (or the stack's `templates_dir` overrides). `render_host` returns a
//! [`HostConfig`]: the files with their destination, mode, which service reloads when they
//! change and which real binary checks them, plus the services that must be running. Nothing
//! here does I/O on hosts; checking with the real binaries happens on the host at apply time.

use serde::Serialize;

use crate::stack::{Host, Stack};
use crate::vault::Secrets;

/// The real tool that checks a file before it is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// `keepalived -t -f FILE`
    Keepalived,
    /// `nginx -t -c FILE`
    Nginx,
    /// `haproxy -c -f FILE`
    Haproxy,
}

/// One file as it should be on a host.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedFile {
    /// Absolute destination path on the host.
    pub path: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    /// Octal permission bits.
    pub mode: u32,
    pub owner: Option<String>,
    /// Service reloaded (or started) when this file changes.
    pub service: Option<String>,
    pub check: Option<CheckKind>,
    /// True when the content includes a secret: never shown, written 0600.
    pub sensitive: bool,
}

/// Everything one host should have.
#[derive(Debug, Clone, Serialize)]
pub struct HostConfig {
    pub host: String,
    pub files: Vec<RenderedFile>,
    /// Services that must be running, in start order.
    pub services: Vec<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RenderError {
    #[error("template `{template}` failed for host `{host}`: {message}")]
    #[diagnostic(code(hactl::render::template))]
    Template {
        template: String,
        host: String,
        message: String,
    },
}

/// Renders every file and the service list for one host.
pub fn render_host(
    _stack: &Stack,
    host: &Host,
    _secrets: &Secrets,
) -> Result<HostConfig, RenderError> {
    Ok(HostConfig {
        host: host.name.clone(),
        files: Vec::new(),
        services: Vec::new(),
    })
}
