//! The minijinja environment: strict undefined (a typo in a template is an error, never an
//! empty string), no auto-escaping (these are config files, not HTML), `trim_blocks` and
//! `lstrip_blocks` (so `{% if %}` lines leave no blank lines behind), trailing newlines kept.
//!
//! Templates are looked up in this order: the stack's `templates_dir` (a file of the same name
//! overrides an embedded one), the templates embedded from `templates/`, then the stack file's
//! directory (where user `files:` templates live).
//!
//! The filters are the small formatting helpers the config formats need: durations arrive in
//! templates as seconds (floats), and each tool wants them written its own way; and one
//! escaping filter per output format ([`escape`]), which every template uses for every value
//! it did not write itself.

use std::path::{Path, PathBuf};

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use super::escape;

/// The templates built into the binary, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "keepalived.conf.j2",
        include_str!("../../templates/keepalived.conf.j2"),
    ),
    (
        "hactl-notify.sh.j2",
        include_str!("../../templates/hactl-notify.sh.j2"),
    ),
    (
        "hactl-check.sh.j2",
        include_str!("../../templates/hactl-check.sh.j2"),
    ),
    (
        "hactl-aws-vip.env.j2",
        include_str!("../../templates/hactl-aws-vip.env.j2"),
    ),
    (
        "haproxy.cfg.j2",
        include_str!("../../templates/haproxy.cfg.j2"),
    ),
    (
        "nginx.conf.j2",
        include_str!("../../templates/nginx.conf.j2"),
    ),
    (
        "docker-compose.yml.j2",
        include_str!("../../templates/docker-compose.yml.j2"),
    ),
    (
        "rsyslog-hactl.conf.j2",
        include_str!("../../templates/rsyslog-hactl.conf.j2"),
    ),
    (
        "redis.conf.j2",
        include_str!("../../templates/redis.conf.j2"),
    ),
    (
        "sentinel.conf.j2",
        include_str!("../../templates/sentinel.conf.j2"),
    ),
    (
        "redis-prestart.sh.j2",
        include_str!("../../templates/redis-prestart.sh.j2"),
    ),
    (
        "haproxy-redis.cfg.j2",
        include_str!("../../templates/haproxy-redis.cfg.j2"),
    ),
    (
        "haproxy-client.cfg.j2",
        include_str!("../../templates/haproxy-client.cfg.j2"),
    ),
];

/// Builds the environment for one stack. With `confine`, a template name (a `files:` entry,
/// an `{% include %}`) must resolve, symlinks followed, inside `templates_dir` or the stack's
/// folder: a stack from an untrusted pull request cannot read `/etc/shadow` into its output.
pub fn environment(
    templates_dir: Option<PathBuf>,
    stack_dir: PathBuf,
    confine: bool,
) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_loader(move |name| load(templates_dir.as_deref(), &stack_dir, name, confine));
    env.add_filter("secs", secs);
    env.add_filter("whole_secs", whole_secs);
    env.add_filter("ms", ms);
    env.add_filter("dur", dur);
    env.add_filter("sh", escape::sh);
    env.add_filter("keepalived", escape::keepalived);
    env.add_filter("haproxy", escape::haproxy);
    env.add_filter("nginx", escape::nginx);
    env.add_filter("redis", escape::redis);
    env.add_filter("redis_resp", escape::redis_resp);
    env.add_filter("compose", escape::compose);
    env.add_filter("compose_default", escape::compose_default);
    env.add_filter("json", json);
    env.add_filter("hostport", hostport);
    env
}

fn load(
    templates_dir: Option<&Path>,
    stack_dir: &Path,
    name: &str,
    confine: bool,
) -> Result<Option<String>, Error> {
    if let Some(dir) = templates_dir {
        if let Some(text) = read_if_exists(dir, name, confine)? {
            return Ok(Some(text));
        }
    }
    if let Some((_, text)) = EMBEDDED.iter().find(|(n, _)| *n == name) {
        return Ok(Some((*text).to_string()));
    }
    read_if_exists(stack_dir, name, confine)
}

/// Reads `root/name` if it exists. With `confine`, the file (symlinks resolved) must lie under
/// `root` (symlinks resolved too); `name` may not be absolute.
fn read_if_exists(root: &Path, name: &str, confine: bool) -> Result<Option<String>, Error> {
    let path = root.join(name);
    if confine {
        let outside = || {
            Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "template `{name}` is outside {}; templates stay in the stack's folder unless the stack sets `allow_templates_outside_stack_dir: true`",
                    root.display()
                ),
            )
        };
        if Path::new(name).is_absolute() {
            return Err(outside());
        }
        let real = match path.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cannot_read(&path, &e)),
        };
        let real_root = root.canonicalize().map_err(|e| cannot_read(root, &e))?;
        if !real.starts_with(&real_root) {
            return Err(outside());
        }
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(cannot_read(&path, &e)),
    }
}

fn cannot_read(path: &Path, e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("cannot read template {}: {e}", path.display()),
    )
}

/// Seconds as keepalived writes them: `1`, `0.1`, `2.5` (no trailing `.0`).
fn secs(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Whole seconds, rounded up: for settings keepalived only takes as integers.
fn whole_secs(v: f64) -> i64 {
    v.ceil() as i64
}

/// Milliseconds, for haproxy's `inter 1000ms`.
fn ms(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

/// A duration as compose writes it: `2s`, `500ms`.
fn dur(v: f64) -> String {
    let ms = (v * 1000.0).round() as i64;
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// JSON text of any value; also a valid YAML flow scalar/sequence, which is how the compose
/// template quotes strings.
fn json(v: Value) -> Result<String, Error> {
    serde_json::to_string(&v).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot encode as JSON: {e}"),
        )
    })
}

/// `ADDRESS:PORT`, with IPv6 addresses in brackets.
fn hostport(addr: String, port: i64) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_per_tool() {
        assert_eq!(secs(1.0), "1");
        assert_eq!(secs(0.1), "0.1");
        assert_eq!(secs(2.5), "2.5");
        assert_eq!(whole_secs(0.5), 1);
        assert_eq!(whole_secs(2.0), 2);
        assert_eq!(ms(1.0), 1000);
        assert_eq!(ms(0.25), 250);
        assert_eq!(dur(0.5), "500ms");
        assert_eq!(dur(10.0), "10s");
    }

    #[test]
    fn quotes_for_shell_and_brackets_ipv6() {
        assert_eq!(escape::sh("plain".into()).expect("ok"), "plain");
        assert_eq!(
            escape::sh("it's a b".into()).expect("ok"),
            r#"'it'\''s a b'"#
        );
        assert_eq!(hostport("198.18.0.11".into(), 80), "198.18.0.11:80");
        assert_eq!(hostport("fd00::1".into(), 80), "[fd00::1]:80");
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let env = environment(None, PathBuf::from("."), true);
        let r = env.render_str("{{ nope }}", ());
        assert!(r.is_err(), "undefined must fail, got {r:?}");
    }
}
