//! The minijinja environment: strict undefined (a typo in a template is an error, never an
//! empty string), no auto-escaping (these are config files, not HTML), `trim_blocks` and
//! `lstrip_blocks` (so `{% if %}` lines leave no blank lines behind), trailing newlines kept.
//!
//! Templates are looked up in this order: the stack's `templates_dir` (a file of the same name
//! overrides an embedded one), the templates embedded from `templates/`, then the stack file's
//! directory (where user `files:` templates live).
//!
//! The filters are the small formatting helpers the config formats need: durations arrive in
//! templates as seconds (floats), and each tool wants them written its own way.

use std::path::PathBuf;

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

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

/// Builds the environment for one stack.
pub fn environment(templates_dir: Option<PathBuf>, stack_dir: PathBuf) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_loader(move |name| load(templates_dir.as_deref(), &stack_dir, name));
    env.add_filter("secs", secs);
    env.add_filter("whole_secs", whole_secs);
    env.add_filter("ms", ms);
    env.add_filter("dur", dur);
    env.add_filter("sh", sh);
    env.add_filter("json", json);
    env.add_filter("hostport", hostport);
    env
}

fn load(
    templates_dir: Option<&std::path::Path>,
    stack_dir: &std::path::Path,
    name: &str,
) -> Result<Option<String>, Error> {
    if let Some(dir) = templates_dir {
        if let Some(text) = read_if_exists(&dir.join(name))? {
            return Ok(Some(text));
        }
    }
    if let Some((_, text)) = EMBEDDED.iter().find(|(n, _)| *n == name) {
        return Ok(Some((*text).to_string()));
    }
    read_if_exists(&stack_dir.join(name))
}

fn read_if_exists(path: &std::path::Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot read template {}: {e}", path.display()),
        )),
    }
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

/// Quotes a word for `/bin/sh` (single quotes, only when needed).
fn sh(v: String) -> String {
    shell_escape::unix::escape(v.into()).into_owned()
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
        assert_eq!(sh("plain".into()), "plain");
        assert_eq!(sh("it's a b".into()), r#"'it'\''s a b'"#);
        assert_eq!(hostport("198.18.0.11".into(), 80), "198.18.0.11:80");
        assert_eq!(hostport("fd00::1".into(), 80), "[fd00::1]:80");
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let env = environment(None, PathBuf::from("."));
        let r = env.render_str("{{ nope }}", ());
        assert!(r.is_err(), "undefined must fail, got {r:?}");
    }
}
