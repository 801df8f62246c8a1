//! Rendering: turns a validated stack into the exact files each host should have.
//!
//! A minijinja environment with strict undefined behaviour loads the templates embedded from
//! `templates/` (or the stack's `templates_dir` overrides, see [`env`]). `render_host` returns a
//! [`HostConfig`]: the files with their destination, mode, which service reloads when they
//! change and which real binary checks them, plus the services that must be running. Nothing
//! here does I/O on hosts: `onhost::cmd::check` gives the command line that checks a file (the apply
//! engine runs it on the host before activating the file), and [`check`] runs those same
//! commands on this machine for `hactl render --check`.
//!
//! A file whose rendering read a secret (`{{ secret.NAME }}` or a `{secret: NAME}` value from
//! the stack) is marked `sensitive`: its group and other permission bits are dropped (0644
//! becomes 0600) and views show its size and hash, never its content.

mod app_params;
pub mod check;
mod context;
mod env;
mod env_file;
pub mod escape;
pub mod http_probe;
mod services;

use std::sync::Arc;

use serde::Serialize;

use crate::stack::{Host, Stack};
use crate::vault::Secrets;

pub use context::{AWS_CREDENTIALS, NOTIFY_SCRIPT};

pub use crate::onhost::cmd::CheckKind;

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

impl RenderedFile {
    /// Hex SHA-256 of the content: what plans and views show instead of sensitive content.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&self.content))
    }
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
    #[diagnostic(
        code(hactl::render::template),
        help("templates see `stack`, `host`, `hosts`, `vip`, `nginx`, `haproxy`, `app`, `vars`, `secret` and `outputs`; a typo in a name is an error, never an empty string")
    )]
    Template {
        template: String,
        host: String,
        message: String,
    },

    #[error(
        "template `{template}` uses secret `{name}`, which is not in the vault (host `{host}`)"
    )]
    #[diagnostic(
        code(hactl::render::unknown_secret),
        help("add it with `hactl secrets set {name}`, or fix the name in the template or stack")
    )]
    UnknownSecret {
        template: String,
        host: String,
        name: String,
    },

    #[error("file `{dest}` has mode `{mode}`, which is not an octal permission")]
    #[diagnostic(
        code(hactl::render::mode),
        help("write the mode as a quoted octal string, e.g. `\"0644\"`")
    )]
    BadMode { dest: String, mode: String },

    #[error("the stack has a `vip` section but no resolved VIP")]
    #[diagnostic(
        code(hactl::render::unresolved_vip),
        help("this is a bug in hactl: stack validation must resolve the VIP before rendering")
    )]
    UnresolvedVip,

    #[error("template `{template}` cannot write a value for host `{host}`: {message}")]
    #[diagnostic(
        code(hactl::render::unwritable),
        help("the value comes from the stack or the vault: change it so it fits the file's format (`hactl secrets set NAME` for a secret); `hactl validate` checks the stack's own values")
    )]
    Unwritable {
        template: String,
        host: String,
        message: String,
    },

    #[error("`templates_dir` `{path}` is outside the stack's folder")]
    #[diagnostic(
        code(hactl::render::outside_stack_dir),
        help("keep templates beside the stack file, or set `allow_templates_outside_stack_dir: true` in a stack you trust")
    )]
    OutsideStackDir { path: String },

    #[error("`app.env.{name}` cannot go into the app's environment file: {reason}")]
    #[diagnostic(
        code(hactl::render::env_file),
        help("app secrets reach the container through a 0600 environment file, one `NAME=VALUE` line each; change the value (or name) so it fits")
    )]
    EnvFile { name: String, reason: String },

    #[error("cannot build the template context ({what}): {message}")]
    #[diagnostic(code(hactl::render::context))]
    Context { what: String, message: String },
}

/// Renders one template with a fresh context and tracker, so sensitivity is per file.
struct Renderer<'a> {
    stack: &'a Stack,
    host: &'a Host,
    prepared: &'a Prepared<'a>,
}

/// What a file is, before rendering.
struct FileJob {
    template: String,
    path: String,
    mode: u32,
    owner: Option<String>,
    service: Option<String>,
    check: Option<CheckKind>,
}

impl Renderer<'_> {
    fn render(&self, job: FileJob) -> Result<RenderedFile, RenderError> {
        self.render_with(job, |_| minijinja::Value::from(()))
    }

    /// Renders one file with the usual context plus `extra` (e.g. one object for a service),
    /// built with the file's own converter so a secret it holds marks this file sensitive.
    fn render_with(
        &self,
        job: FileJob,
        extra: impl FnOnce(&context::Converter) -> minijinja::Value,
    ) -> Result<RenderedFile, RenderError> {
        let p = self.prepared;
        let tracker = Arc::new(context::Tracker::default());
        let conv = context::Converter::new(p.secrets.clone(), tracker.clone());
        let extra = extra(&conv);
        let base = context::build(
            self.stack, self.host, &p.hosts, p.outputs, &conv, &p.secrets, &tracker,
        )?;
        let ctx = if extra.is_none() {
            base
        } else {
            minijinja::value::merge_maps([extra, base])
        };
        let result = p
            .env
            .get_template(&job.template)
            .and_then(|t| t.render(ctx));
        let touched = tracker.touched();
        // A missing secret explains a strict-undefined failure better than minijinja can.
        if let Some(name) = touched.missing.iter().next() {
            return Err(RenderError::UnknownSecret {
                template: job.template,
                host: self.host.name.clone(),
                name: name.clone(),
            });
        }
        let text = result.map_err(|e| {
            let mut message = describe(&e);
            if let Some(line) = failing_line(&p.env, &e) {
                message.push_str(&format!(": `{line}`"));
            }
            let (template, host) = (job.template.clone(), self.host.name.clone());
            if message.contains(escape::REFUSED) {
                RenderError::Unwritable {
                    template,
                    host,
                    message,
                }
            } else {
                RenderError::Template {
                    template,
                    host,
                    message,
                }
            }
        })?;
        let sensitive = !touched.used.is_empty();
        Ok(RenderedFile {
            path: job.path,
            content: text.into_bytes(),
            mode: if sensitive {
                job.mode & 0o700
            } else {
                job.mode
            },
            owner: job.owner,
            service: job.service,
            check: job.check,
            sensitive,
        })
    }
}

/// The error and its causes on one line. Never minijinja's debug info: it dumps the context,
/// and the context holds secrets.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The template line an error points at, trimmed and cut to 120 characters: minijinja names
/// the line (`undefined value (in motd.j2:2)`) but not the expression, and a line of template
/// source holds names, never a rendered value (the source is the stack's own file).
fn failing_line(env: &minijinja::Environment<'_>, e: &minijinja::Error) -> Option<String> {
    let (name, line) = (e.name()?, e.line()?);
    let tmpl = env.get_template(name).ok()?;
    let text = tmpl.source().lines().nth(line.checked_sub(1)?)?.trim();
    let cut: String = text.chars().take(120).collect();
    (!cut.is_empty()).then(|| {
        if cut.len() < text.len() {
            format!("{cut}…")
        } else {
            cut
        }
    })
}

fn parse_mode(dest: &str, mode: Option<&str>) -> Result<u32, RenderError> {
    let Some(m) = mode else { return Ok(0o644) };
    match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
        Ok(v) if v <= 0o7777 => Ok(v),
        _ => Err(RenderError::BadMode {
            dest: dest.to_string(),
            mode: m.to_string(),
        }),
    }
}

/// The app's environment file ([`env_file::env_file`]): sensitive when a value
/// comes from the vault, and 0600 either way.
fn app_env_file(stack: &Stack, host: &str, secrets: &Secrets) -> Result<RenderedFile, RenderError> {
    let app = stack.file.app.as_ref().ok_or(RenderError::Context {
        what: "app.env".into(),
        message: "the stack has no `app`".into(),
    })?;
    let mut values = Vec::new();
    let mut sensitive = false;
    for (name, v) in &app.env {
        sensitive |= matches!(v.value, crate::stack::model::Value::Secret(_));
        let value = secrets
            .resolve(&v.value)
            .ok_or_else(|| RenderError::UnknownSecret {
                template: "app.env".into(),
                host: host.to_string(),
                name: match &v.value {
                    crate::stack::model::Value::Secret(r) => r.secret.clone(),
                    crate::stack::model::Value::Plain(_) => name.clone(),
                },
            })?;
        values.push((name.as_str(), value));
    }
    let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.expose())).collect();
    let text = env_file::env_file(app.runtime.value, &pairs).map_err(|(name, reason)| {
        RenderError::EnvFile {
            name,
            reason: reason.to_string(),
        }
    })?;
    Ok(RenderedFile {
        path: crate::onhost::paths::env_path(stack.name()),
        content: text.into_bytes(),
        mode: 0o600,
        owner: Some("root".to_string()),
        service: Some("app".to_string()),
        check: None,
        sensitive,
    })
}

/// Renders every file and the service list for one host (no provider outputs): the tests'
/// shorthand for one [`Prepared`] used once.
#[cfg(test)]
pub fn render_host(
    stack: &Stack,
    host: &Host,
    secrets: &Secrets,
) -> Result<HostConfig, RenderError> {
    Prepared::new(stack, secrets, &serde_json::Value::Null)?.host(host)
}

/// What every host's render shares, built once per stack: the template environment (templates
/// loaded and compiled once), the vault and the `hosts` context value. Rendering a fleet goes
/// through one of these (`engine::render_all_with_outputs`), so a host's cost does not grow
/// with the fleet's size beyond its own peer list.
pub struct Prepared<'a> {
    stack: &'a Stack,
    outputs: &'a serde_json::Value,
    env: minijinja::Environment<'static>,
    secrets: Arc<Secrets>,
    hosts: minijinja::Value,
}

impl<'a> Prepared<'a> {
    /// Checks `templates_dir` and builds the shared parts.
    ///
    /// Errors: [`RenderError::OutsideStackDir`] when `templates_dir` leads out of the stack's
    /// folder, [`RenderError::Context`] when a host cannot be encoded.
    pub fn new(
        stack: &'a Stack,
        secrets: &Secrets,
        outputs: &'a serde_json::Value,
    ) -> Result<Self, RenderError> {
        let f = &stack.file;
        let templates_dir = f
            .templates_dir
            .as_ref()
            .map(|d| stack.resolve_path(&d.value));
        let confine = !f.allow_templates_outside_stack_dir;
        if let (true, Some(dir)) = (confine, &templates_dir) {
            // validate refuses `..` and absolute paths; this catches a symlink that leads out
            let inside = match (dir.canonicalize(), stack.dir().canonicalize()) {
                (Ok(d), Ok(root)) => d.starts_with(root),
                // a missing directory reads nothing: the embedded templates apply
                (Err(_), _) => true,
                (Ok(_), Err(_)) => false,
            };
            if !inside {
                return Err(RenderError::OutsideStackDir {
                    path: dir.display().to_string(),
                });
            }
        }
        let secrets = Arc::new(secrets.clone());
        // Hosts hold no vault reference (see `context::hosts_value`): the tracker is unused.
        let conv = context::Converter::new(secrets.clone(), Arc::default());
        Ok(Prepared {
            stack,
            outputs,
            env: env::environment(templates_dir, stack.dir().to_path_buf(), confine),
            hosts: context::hosts_value(stack, &conv)?,
            secrets,
        })
    }

    /// Renders every file and the service list for `host`.
    pub fn host(&self, host: &Host) -> Result<HostConfig, RenderError> {
        let stack = self.stack;
        let f = &stack.file;
        let secrets = &*self.secrets;
        let renderer = Renderer {
            stack,
            host,
            prepared: self,
        };
        let job = |template: &str, path: String, mode: u32, service: &str, check| FileJob {
            template: template.to_string(),
            path,
            mode,
            owner: Some("root".to_string()),
            service: Some(service.to_string()),
            check,
        };

        let mut files = Vec::new();
        let mut services = Vec::new();
        // Start order: the app first, then what proxies to it, then what routes to that, and the
        // VIP last so a host only claims it once it can serve.
        if f.app.is_some() && host.has_role("app") {
            // The app's environment (secrets included) goes in its own 0600 file that compose
            // names by path: never on `podman run`'s argv, in `compose.log` or in the compose file.
            files.push(app_env_file(stack, &host.name, secrets)?);
            let path = crate::onhost::paths::compose_path(stack.name());
            files.push(renderer.render(job("docker-compose.yml.j2", path, 0o644, "app", None))?);
            // The app is no system unit: `app-ctl` runs its compose project in two slots and
            // takes systemctl's verbs (built as data in `onhost::app_ctl`, not a template: its
            // logic is hactl's, not the user's to override).
            if let Some(params) = crate::onhost::app_ctl::AppParams::from_stack(stack) {
                files.push(RenderedFile {
                    path: crate::onhost::paths::ctl_path(stack.name()),
                    content: crate::onhost::app_ctl::ctl_script(&params).into_bytes(),
                    mode: 0o700,
                    owner: Some("root".to_string()),
                    service: Some("app".to_string()),
                    check: None,
                    sensitive: false,
                });
            }
            services.push("app".to_string());
        }
        if f.nginx.is_some() && host.has_role("app") {
            let path = "/etc/nginx/nginx.conf".to_string();
            let check = Some(CheckKind::Nginx);
            files.push(renderer.render(job("nginx.conf.j2", path, 0o644, "nginx", check))?);
            services.push("nginx".to_string());
        }
        // HA services (syslog, redis) before haproxy and keepalived, which front them.
        services::render(&renderer, &mut files, &mut services)?;
        if f.haproxy.is_some() && host.has_role("vip") {
            let path = "/etc/haproxy/haproxy.cfg".to_string();
            let check = Some(CheckKind::Haproxy);
            files.push(renderer.render(job("haproxy.cfg.j2", path, 0o644, "haproxy", check))?);
            services.push("haproxy".to_string());
        } else if crate::services::haproxy_client_only(stack, host) {
            // A client host (seed 002's `app`): its own haproxy in front of the front hosts',
            // checked, started and reloaded like theirs (the file names the unit and the check).
            files.push(services::render_client_haproxy(&renderer)?);
            services.push("haproxy".to_string());
        }
        if f.vip.is_some() && host.has_role("vip") {
            // The notify script comes first: keepalived.conf names it, so it must be in place
            // before keepalived reloads.
            if context::has_notify(stack) {
                let path = NOTIFY_SCRIPT.to_string();
                files.push(renderer.render(job(
                    "hactl-notify.sh.j2",
                    path,
                    0o700,
                    "keepalived",
                    None,
                ))?);
            }
            if context::has_fast_checks(stack) {
                let path = context::CHECK_SCRIPT.to_string();
                files.push(renderer.render(job(
                    "hactl-check.sh.j2",
                    path,
                    0o700,
                    "keepalived",
                    None,
                ))?);
            }
            // vip.aws credentials from the vault: their own 0600 file, read by the notify script,
            // so the script itself stays plain and shows in plans.
            let aws_keys = f.vip.as_ref().and_then(|v| v.aws.as_ref());
            if aws_keys.is_some_and(|a| a.secret_access_key.is_some()) {
                files.push(renderer.render(FileJob {
                    template: "hactl-aws-vip.env.j2".to_string(),
                    path: AWS_CREDENTIALS.to_string(),
                    mode: 0o600,
                    owner: Some("root".to_string()),
                    service: None,
                    check: None,
                })?);
            }
            let path = "/etc/keepalived/keepalived.conf".to_string();
            let check = Some(CheckKind::Keepalived);
            files.push(renderer.render(job(
                "keepalived.conf.j2",
                path,
                0o644,
                "keepalived",
                check,
            ))?);
            services.push("keepalived".to_string());
        }
        for spec in &f.files {
            if let Some(only) = &spec.hosts {
                if !only.value.iter().any(|h| h == &host.name) {
                    continue;
                }
            }
            let dest = spec.dest.value.clone();
            let mode = parse_mode(&dest, spec.mode.as_deref())?;
            files.push(renderer.render(FileJob {
                template: spec.template.value.clone(),
                path: dest,
                mode,
                owner: spec.owner.clone(),
                service: spec.reload.clone(),
                check: None,
            })?);
        }
        Ok(HostConfig {
            host: host.name.clone(),
            files,
            services,
        })
    }
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
