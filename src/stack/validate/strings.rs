//! Every string a stack file can hold, checked against an allowlist that fits where it lands.
//!
//! hactl writes stack strings into shell scripts run as root, keepalived/haproxy/nginx/redis
//! configurations and compose files. A string that carries a quote, a newline, a `;`, a `{` or a
//! `$` can end the value it was meant to be and add a directive, a block or a command of the
//! writer's choice, which the real checkers then accept. The templates escape per format (see
//! `render::escape`); this pass makes sure a value is also *plausible* for what it names (a URL
//! path, a DNS name, an image reference, a user name…), so an injection attempt is refused at
//! `validate` time with `file:line:col` instead of being escaped into a config that means
//! something else.
//!
//! The table [`FIELDS`] names every string field of the schema and its [`Kind`]. A unit test
//! walks the JSON Schema generated from the model (`hactl schema`) and fails when a string
//! field has no entry, so a new field cannot slip past this pass. Checks of the same field
//! that another pass already owns (e.g. "does not start with `/`") are not repeated here: each
//! kind skips values the other check refuses, so one mistake gives one diagnostic.

use miette::SourceSpan;

use super::super::diag::Problem;
use super::super::model::StackFile;
use super::tree::Node;

/// The code of every diagnostic from this pass.
pub const CODE: &str = "hactl::stack::unsafe_value";

/// What a string field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An IPv4 or IPv6 address without a prefix.
    IpAddr,
    /// Another check owns the whole value (an IP address, a host name reference, an enum-like
    /// word checked against its list); nothing more to check here.
    Owned,
    /// Free text that lands nowhere hactl writes (or only JSON-escaped): no control characters
    /// other than newline and tab.
    Text,
    /// One line of text that is always quoted for its format where it lands: no control
    /// characters at all.
    Line,
    /// A word: letters, digits, `_` and `-` (keepalived instance names, database names).
    Word,
    /// A lowercase name (compose service and image name component): `[a-z0-9][a-z0-9_-]*`.
    LowerName,
    /// A host name: what `name_ok` allows, and not starting with `.` (so never `.` or `..`:
    /// host names become directory names under `render --out`).
    HostName,
    /// What ssh connects to: a DNS name, an address, `user@host:port`, comma-separated hops.
    /// Never starting with `-` (ssh would read it as an option).
    SshTarget,
    /// A network interface name (Linux: at most 15 characters, no `/` or spaces), starting with
    /// a letter or digit.
    Interface,
    /// A POSIX user name (`useradd`'s rule): `[A-Za-z_][A-Za-z0-9_.-]*`, at most 32.
    UserName,
    /// `user` or `user:group`.
    Owner,
    /// An absolute URL path (RFC 3986 `path-absolute`, without `;`, `$`, `'`, `(`, `)`, `&`:
    /// characters that mean something to nginx, haproxy or a shell).
    UrlPath,
    /// An `http://` or `https://` URL (parsed by the `url` crate) without quotes, spaces, `#`,
    /// `!`, `$` or braces.
    HttpUrl,
    /// An absolute path on a host: `[A-Za-z0-9._/@+~:-]`, no `.` or `..` segment.
    AbsPath,
    /// A path on this machine: no control characters and not starting with `-`.
    LocalPath,
    /// An OCI image reference (`[registry[:port]/]path[:tag][@digest]`, the distribution
    /// reference grammar).
    ImageRef,
    /// A compose volume: `host_path:container_path[:ro|rw]`, both parts [`Kind::AbsPath`]
    /// characters (the host part may be a named volume).
    Volume,
    /// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
    EnvName,
    /// A check command line for keepalived's `vrrp_script` (which splits it itself, without a
    /// shell): an absolute program path, then letters, digits, spaces and `/._=:,@+%-`.
    CheckCommand,
    /// An e-mail address: `local@domain` with letters, digits and `._%+-`.
    Email,
    /// A vault secret name (`stack::model::valid_secret_name`).
    SecretName,
    /// An AWS identifier (zone, VPC/subnet/ENI id, instance type, engine version, protocol).
    AwsId,
    /// An S3 bucket name: 3–63 of `[a-z0-9.-]`.
    S3Bucket,
    /// nginx `server_name`: space-separated names of `[A-Za-z0-9._-]`, each `_`, `name`,
    /// `.name`, `*.name` or `name.*`.
    ServerNames,
    /// keepalived's `auth_pass`: printable ASCII without spaces, quotes, `\`, `#`, `!`, `$`,
    /// braces (its length is checked with the VRRP rules).
    AuthPass,
    /// nginx directives placed inside `server { }`: braces balanced so it can never close the
    /// server block or open one that swallows what follows.
    NginxBlock,
}

/// Every string field of the schema (paths as `hactl schema` names them: `[]` any list item,
/// `*` any map key) and its kind. Fields of `{secret: NAME}`-or-string values have two entries:
/// the plain string and `.secret`.
pub const FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Owned),
    ("description", Kind::Text),
    ("templates_dir", Kind::LocalPath),
    ("ssh.user", Kind::UserName),
    ("ssh.identity_file", Kind::LocalPath),
    ("ssh.known_hosts", Kind::LocalPath),
    ("ssh.config_file", Kind::LocalPath),
    ("ssh.proxy_jump", Kind::SshTarget),
    ("hosts[].name", Kind::HostName),
    ("hosts[].address", Kind::Owned),
    ("hosts[].ssh_host", Kind::SshTarget),
    ("hosts[].source_ip", Kind::IpAddr),
    ("hosts[].interface", Kind::Interface),
    ("hosts[].peers[]", Kind::Owned),
    ("hosts[].roles[]", Kind::Owned),
    ("vip.address", Kind::Owned),
    ("vip.interface", Kind::Interface),
    ("vip.instance", Kind::Word),
    ("vip.auth_pass", Kind::AuthPass),
    ("vip.auth_pass.secret", Kind::SecretName),
    ("vip.checks[].name", Kind::Owned),
    ("vip.checks[].service", Kind::Owned),
    ("vip.checks[].http", Kind::HttpUrl),
    ("vip.checks[].script", Kind::CheckCommand),
    ("vip.notify.*[].command", Kind::Line),
    ("vip.notify.*[].webhook", Kind::HttpUrl),
    ("vip.notify.*[].email", Kind::Email),
    ("vip.script_user", Kind::UserName),
    ("vip.aws.mode", Kind::Owned),
    ("vip.aws.allocation_id", Kind::AwsId),
    ("vip.aws.region", Kind::AwsId),
    ("vip.aws.endpoint", Kind::HttpUrl),
    ("vip.aws.interfaces.*", Kind::AwsId),
    ("vip.aws.access_key_id", Kind::AwsId),
    ("vip.aws.access_key_id.secret", Kind::SecretName),
    ("vip.aws.secret_access_key", Kind::Line),
    ("vip.aws.secret_access_key.secret", Kind::SecretName),
    ("vip.aws.metadata_endpoint", Kind::HttpUrl),
    ("nginx.server_name", Kind::ServerNames),
    ("nginx.health_path", Kind::UrlPath),
    ("nginx.extra", Kind::NginxBlock),
    ("haproxy.check_path", Kind::UrlPath),
    ("haproxy.admin_socket", Kind::AbsPath),
    ("app.name", Kind::LowerName),
    ("app.image", Kind::ImageRef),
    ("app.archive", Kind::LocalPath),
    ("app.command[]", Kind::Line),
    ("app.env.*", Kind::Line),
    ("app.env.*.secret", Kind::SecretName),
    ("app.volumes[]", Kind::Volume),
    ("app.health.path", Kind::UrlPath),
    ("services[].name", Kind::Owned),
    ("services[].hosts[]", Kind::Owned),
    ("services[].clients[]", Kind::Owned),
    ("services[].protocols[]", Kind::Word),
    ("services[].password", Kind::Line),
    ("services[].password.secret", Kind::SecretName),
    ("vault.file", Kind::LocalPath),
    ("vault.identity_file", Kind::LocalPath),
    ("state.backend", Kind::Owned),
    ("state.path", Kind::LocalPath),
    ("state.bucket", Kind::S3Bucket),
    ("state.key", Kind::Line),
    ("files[].template", Kind::LocalPath),
    ("files[].dest", Kind::AbsPath),
    ("files[].mode", Kind::Owned),
    ("files[].owner", Kind::Owner),
    ("files[].reload", Kind::Owned),
    ("files[].hosts[]", Kind::Owned),
    ("aws.region", Kind::Owned),
    ("aws.zones[]", Kind::AwsId),
    ("aws.network.vpc_cidr", Kind::Owned),
    ("aws.network.subnets[]", Kind::Owned),
    ("aws.network.vpc_id", Kind::AwsId),
    ("aws.network.subnet_ids[]", Kind::AwsId),
    ("aws.network.ssh_cidr", Kind::Owned),
    ("aws.hosts.instance_type", Kind::AwsId),
    ("aws.hosts.ami", Kind::AwsId),
    ("aws.hosts.key_name", Kind::Line),
    ("aws.hosts.public_key", Kind::Line),
    ("aws.hosts.public_key.secret", Kind::SecretName),
    ("aws.balancer.kind", Kind::Owned),
    ("aws.balancer.listeners[].protocol", Kind::AwsId),
    ("aws.balancer.listeners[].certificate_arn", Kind::AwsId),
    ("aws.balancer.health_check.path", Kind::UrlPath),
    ("aws.balancer.health_check.matcher", Kind::AwsId),
    ("aws.shared_fs.performance_mode", Kind::AwsId),
    ("aws.shared_fs.mount_path", Kind::AbsPath),
    ("aws.database.engine", Kind::AwsId),
    ("aws.database.engine_version", Kind::AwsId),
    ("aws.database.instance_class", Kind::AwsId),
    ("aws.database.name", Kind::Word),
    ("aws.database.username", Kind::Word),
    ("aws.database.username.secret", Kind::SecretName),
    ("aws.database.password", Kind::Line),
    ("aws.database.password.secret", Kind::SecretName),
];

/// Maps whose keys land in a file, and what the keys may be.
pub const KEYS: &[(&str, Kind)] = &[
    ("app.env", Kind::EnvName),
    ("vip.aws.interfaces", Kind::Owned),
];

/// Subtrees that are free data for the user's own templates (`{{ vars.NAME }}`): the user's
/// template decides how to write them (with the escaping filters), so nothing is checked.
pub const FREE: &[&str] = &["vars"];

/// Runs the pass over the whole file. Values come from the typed model (defaults included)
/// serialized as JSON; spans from the tree by path.
pub fn check(file: &StackFile, tree: &Node) -> Vec<Problem> {
    let mut out = Vec::new();
    let Ok(json) = serde_json::to_value(file) else {
        return out;
    };
    walk(&json, &mut Vec::new(), &mut Vec::new(), tree, &mut out);
    out
}

/// `files[].template` and `templates_dir` stay inside the stack file's folder (relative, no
/// `..` that climbs out, no `~/`) unless the stack sets `allow_templates_outside_stack_dir`.
/// Symlinks are checked when the templates are read (`render::env`).
pub fn local_paths(file: &StackFile, tree: &Node) -> Vec<Problem> {
    let mut out = Vec::new();
    if file.allow_templates_outside_stack_dir {
        return out;
    }
    let mut paths: Vec<(String, &str)> = Vec::new();
    if let Some(d) = &file.templates_dir {
        paths.push(("templates_dir".into(), &d.value));
    }
    for (i, f) in file.files.iter().enumerate() {
        paths.push((format!("files.{i}.template"), &f.template.value));
    }
    for (path, value) in paths {
        if let Err(why) = inside_stack_dir(value) {
            let tokens: Vec<String> = path.split('.').map(String::from).collect();
            out.push(
                Problem::new(
                    "hactl::stack::outside_stack_dir",
                    format!("`{}` `{value}` {why}", shown(&tokens)),
                )
                .at(tree.span(&path), "outside the stack's folder")
                .help(
                    "keep templates in the stack file's folder (a path relative to it); a stack \
                     you trust can set `allow_templates_outside_stack_dir: true`",
                ),
            );
        }
    }
    out
}

/// A relative path that never climbs above its start, judged on its text alone.
fn inside_stack_dir(p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.starts_with("~/") || p == "~" {
        return Err("is not relative to the stack's folder".into());
    }
    let mut depth: i64 = 0;
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err("climbs out of the stack's folder with `..`".into());
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// `hosts[].name` → `["hosts", "[]", "name"]`.
pub fn tokens(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in pattern.split('.') {
        let mut p = part;
        let mut items = 0;
        while let Some(rest) = p.strip_suffix("[]") {
            p = rest;
            items += 1;
        }
        if !p.is_empty() {
            out.push(p.to_string());
        }
        out.extend(std::iter::repeat_n("[]".to_string(), items));
    }
    out
}

/// Whether `pattern` (a [`FIELDS`] path) names the field at `path` (tokens).
#[cfg(test)]
pub fn matches(pattern: &str, path: &[String]) -> bool {
    tokens_match(&tokens(pattern), path)
}

/// [`FIELDS`] with each pattern split into tokens once: `validate` looks up every string of a
/// file, and a 10,000-host file has tens of thousands.
static FIELD_TOKENS: std::sync::LazyLock<Vec<(Vec<String>, Kind)>> =
    std::sync::LazyLock::new(|| FIELDS.iter().map(|(p, k)| (tokens(p), *k)).collect());

static KEY_TOKENS: std::sync::LazyLock<Vec<(Vec<String>, Kind)>> =
    std::sync::LazyLock::new(|| KEYS.iter().map(|(p, k)| (tokens(p), *k)).collect());

fn tokens_match(pat: &[String], path: &[String]) -> bool {
    pat.len() == path.len()
        && pat
            .iter()
            .zip(path)
            .all(|(p, t)| p == t || (p == "*" && t != "[]"))
}

/// The kind of the string at `path` (tokens), if the table names it.
pub fn kind_of(path: &[String]) -> Option<Kind> {
    FIELD_TOKENS
        .iter()
        .find(|(p, _)| tokens_match(p, path))
        .map(|(_, k)| *k)
}

fn walk(
    v: &serde_json::Value,
    pattern: &mut Vec<String>,
    concrete: &mut Vec<String>,
    tree: &Node,
    out: &mut Vec<Problem>,
) {
    if pattern.len() == 1 && FREE.contains(&pattern[0].as_str()) {
        return;
    }
    match v {
        serde_json::Value::String(s) => {
            // A field the table lacks is held to the plainest rule (one line of text); the
            // schema test makes sure that never happens for the model's own fields.
            let kind = kind_of(pattern).unwrap_or(Kind::Line);
            if let Err(why) = kind.check(s) {
                let path = concrete.join(".");
                let field = format!("`{}`", shown(concrete));
                out.push(problem(&field, s, why, kind, tree.span(&path)));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pattern.push("[]".into());
                concrete.push(i.to_string());
                walk(item, pattern, concrete, tree, out);
                pattern.pop();
                concrete.pop();
            }
        }
        serde_json::Value::Object(map) => {
            let key_kind = KEY_TOKENS
                .iter()
                .find(|(p, _)| tokens_match(p, pattern))
                .map(|(_, k)| *k);
            for (k, item) in map {
                concrete.push(k.clone());
                if let Some(kind) = key_kind {
                    if let Err(why) = kind.check(k) {
                        let path = concrete.join(".");
                        out.push(problem(
                            &format!("a key of `{}`", shown(&concrete[..concrete.len() - 1])),
                            k,
                            why,
                            kind,
                            tree.key_span(&path),
                        ));
                    }
                }
                // A map's keys are data: match them against `*`.
                pattern.push(if key_kind.is_some() || is_map(pattern) {
                    "*".into()
                } else {
                    k.clone()
                });
                walk(item, pattern, concrete, tree, out);
                pattern.pop();
                concrete.pop();
            }
        }
        _ => {}
    }
}

/// Maps with free keys whose values the table names by `*`.
fn is_map(pattern: &[String]) -> bool {
    let p: Vec<&str> = pattern.iter().map(String::as_str).collect();
    matches!(p.as_slice(), ["vip", "notify"] | ["app", "env"])
}

/// `hosts.0.name` as users read it: `hosts[0].name`.
fn shown(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// `field` is how the message names the value: "`app.health.path`", "a key of `app.env`".
fn problem(field: &str, value: &str, why: String, kind: Kind, span: Option<SourceSpan>) -> Problem {
    Problem::new(
        CODE,
        format!("{field} is not {}: {} {why}", kind.what(), quoted(value)),
    )
    .at(span, format!("not {}", kind.what()))
    .help(kind.help())
}

/// A value as a message shows it: short, control characters escaped (`\n`), so the message
/// stays on one line and shows what is there.
fn quoted(value: &str) -> String {
    let mut s = String::new();
    for c in value.chars().take(60) {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    if value.chars().count() > 60 {
        s.push('…');
    }
    format!("`{s}`")
}

/// The first character `ok` refuses, described.
fn only(s: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    match s.chars().find(|c| !ok(*c)) {
        None => Ok(()),
        Some(c) => Err(format!("contains {}", describe(c))),
    }
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        '`' => "a backtick".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn path_char(c: char) -> bool {
    alnum(c) || "._/@+~:-".contains(c)
}

impl Kind {
    /// What the value should be, for the message: "a URL path".
    pub fn what(self) -> &'static str {
        match self {
            Kind::Owned | Kind::Text => "valid text",
            Kind::Line => "one line of text",
            Kind::IpAddr => "an IP address",
            Kind::Word => "a word",
            Kind::LowerName => "a lowercase name",
            Kind::HostName => "a host name",
            Kind::SshTarget => "an SSH destination",
            Kind::Interface => "an interface name",
            Kind::UserName => "a user name",
            Kind::Owner => "a `user` or `user:group`",
            Kind::UrlPath => "a URL path",
            Kind::HttpUrl => "an http(s) URL",
            Kind::AbsPath => "a plain absolute path",
            Kind::LocalPath => "a local path",
            Kind::ImageRef => "an image reference",
            Kind::Volume => "a volume",
            Kind::EnvName => "an environment variable name",
            Kind::CheckCommand => "a plain command line",
            Kind::Email => "an e-mail address",
            Kind::SecretName => "a secret name",
            Kind::AwsId => "an AWS identifier",
            Kind::S3Bucket => "an S3 bucket name",
            Kind::ServerNames => "a list of server names",
            Kind::AuthPass => "a VRRP password",
            Kind::NginxBlock => "a balanced nginx block",
        }
    }

    /// What is allowed, for the hint.
    pub fn help(self) -> String {
        let s = match self {
            Kind::Owned | Kind::Text => "remove control characters (only newlines and tabs are allowed)",
            Kind::Line => "write it on one line, without control characters",
            Kind::IpAddr => "an IPv4 or IPv6 address without a prefix length, e.g. `198.18.0.11`",
            Kind::Word => "use letters, digits, `_` and `-`, e.g. `VI_1`",
            Kind::LowerName => "use lowercase letters, digits, `_` and `-`, starting with a letter or digit, e.g. `web`",
            Kind::HostName => "use letters, digits, `.`, `_` and `-`, starting with a letter or digit, e.g. `web1`",
            Kind::SshTarget => "a DNS name or address, optionally `user@host:port`; it must not start with `-`",
            Kind::Interface => "name a network interface: up to 15 letters, digits, `_`, `.` and `-`, starting with a letter or digit, e.g. `eth0`",
            Kind::UserName => "a user name of letters, digits, `_`, `.` and `-`, e.g. `root` or `keepalived_script`",
            Kind::Owner => "e.g. `app` or `app:app`",
            Kind::UrlPath => "a path such as `/healthz`: letters, digits and `/-._~%:@!*+,=`; percent-encode anything else",
            Kind::HttpUrl => "e.g. `http://127.0.0.1:80/healthz`; percent-encode quotes, spaces, `#`, `!`, `$` and braces",
            Kind::AbsPath => "e.g. `/etc/app/app.conf`: letters, digits and `._/@+~:-`, without `.` or `..` segments",
            Kind::LocalPath => "a path on this machine without control characters, not starting with `-`",
            Kind::ImageRef => "e.g. `ghcr.io/acme/web:1.4` or `registry:5000/web@sha256:…` (lowercase path, tag of letters, digits, `_.-`)",
            Kind::Volume => "`host_path:container_path[:ro]`, paths of letters, digits and `._/@+~-`, e.g. `/srv/data:/data:ro`",
            Kind::EnvName => "use letters, digits and `_`, not starting with a digit, e.g. `DATABASE_URL`",
            Kind::CheckCommand => "keepalived runs it without a shell: the program's absolute path, then letters, digits, spaces and `/._=:,@+%-`; put anything more in a script file and name that",
            Kind::Email => "e.g. `ops@example.com`",
            Kind::SecretName => "letters, digits and `_`, not starting with a digit (see `hactl secrets set`)",
            Kind::AwsId => "AWS identifiers use letters, digits and `._:/,-`",
            Kind::S3Bucket => "S3 bucket names are 3–63 lowercase letters, digits, `.` and `-`",
            Kind::ServerNames => "e.g. `example.com www.example.com` or `_`",
            Kind::AuthPass => "use printable characters other than spaces, quotes, `\\`, `#`, `!`, `$`, `{` and `}`",
            Kind::NginxBlock => "every `{` needs its `}` and every directive its `;`: `extra` stays inside `server { }`",
        };
        s.to_string()
    }

    /// Checks one value. `Err` says what is wrong ("contains `;`").
    pub fn check(self, s: &str) -> Result<(), String> {
        match self {
            Kind::Owned => Ok(()),
            Kind::Text => only(s, |c| !c.is_control() || c == '\n' || c == '\t'),
            Kind::Line => only(s, |c| !c.is_control()),
            Kind::IpAddr => match s.parse::<std::net::IpAddr>() {
                Ok(_) => Ok(()),
                Err(_) => Err("does not parse as one".into()),
            },
            Kind::Word => {
                // empty or spaced: the owning check says so
                if s.trim().is_empty() || s.contains(char::is_whitespace) {
                    return Ok(());
                }
                only(s, |c| alnum(c) || c == '_' || c == '-')?;
                max_len(s, 64)
            }
            Kind::LowerName => {
                only(s, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                })?;
                if !s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
                    return Err("does not start with a lowercase letter or digit".into());
                }
                max_len(s, 63)
            }
            Kind::HostName => {
                // the other characters are `name_ok`'s business
                if s.starts_with('.') {
                    return Err("starts with `.`".into());
                }
                Ok(())
            }
            Kind::SshTarget => {
                if s.is_empty() {
                    return Err("is empty".into());
                }
                only(s, |c| alnum(c) || "._:@,[]%-".contains(c))?;
                if s.split(',').any(|hop| hop.starts_with('-')) {
                    return Err("starts with `-`".into());
                }
                Ok(())
            }
            Kind::Interface => {
                if s.trim().is_empty() || s.contains(char::is_whitespace) {
                    return Ok(());
                }
                only(s, |c| alnum(c) || "_.-".contains(c))?;
                // `-eth0` would read as an option to `ip` and friends
                if !s.starts_with(|c: char| alnum(c)) {
                    return Err("does not start with a letter or digit".into());
                }
                max_len(s, 15)
            }
            Kind::UserName => {
                if s.trim().is_empty() {
                    return Ok(());
                }
                user_name(s)
            }
            Kind::Owner => {
                let (u, g) = s.split_once(':').unwrap_or((s, "root"));
                user_name(u)?;
                user_name(g)
            }
            Kind::UrlPath => {
                if !s.starts_with('/') {
                    return Ok(());
                }
                url_path(s)
            }
            Kind::HttpUrl => {
                if !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Ok(());
                }
                only(s, |c| alnum(c) || "-._~:/?[]@&()*+,;=%".contains(c))?;
                percent_escapes(s)?;
                match url::Url::parse(s) {
                    Ok(u) if u.host().is_some() => Ok(()),
                    Ok(_) => Err("has no host".into()),
                    Err(e) => Err(format!("does not parse: {e}")),
                }
            }
            Kind::AbsPath => {
                if !s.starts_with('/') {
                    return Ok(());
                }
                only(s, path_char)?;
                if s.split('/').any(|seg| seg == "." || seg == "..") {
                    return Err("has a `.` or `..` segment".into());
                }
                Ok(())
            }
            Kind::LocalPath => {
                only(s, |c| !c.is_control())?;
                if s.starts_with('-') {
                    return Err("starts with `-`".into());
                }
                Ok(())
            }
            Kind::ImageRef => image_ref(s),
            Kind::Volume => {
                let parts: Vec<&str> = s.split(':').collect();
                let shape_ok = (parts.len() == 2
                    || (parts.len() == 3 && (parts[2] == "ro" || parts[2] == "rw")))
                    && parts[..2].iter().all(|p| !p.is_empty())
                    && parts[1].starts_with('/');
                if !shape_ok {
                    return Ok(()); // the shape is the app check's business
                }
                for p in &parts[..2] {
                    only(p, |c| path_char(c) && c != ':')?;
                    if p.split('/').any(|seg| seg == "..") {
                        return Err("has a `..` segment".into());
                    }
                }
                Ok(())
            }
            Kind::EnvName => {
                only(s, |c| alnum(c) || c == '_')?;
                if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err("does not start with a letter or `_`".into());
                }
                Ok(())
            }
            Kind::CheckCommand => {
                if s.trim().is_empty() {
                    return Ok(());
                }
                only(s, |c| alnum(c) || " /._=:,@+%-".contains(c))?;
                // keepalived runs the first word as a program, without a PATH search
                if !s.starts_with('/') {
                    return Err("does not start with the program's absolute path".into());
                }
                Ok(())
            }
            Kind::Email => {
                let shape_ok = s
                    .split_once('@')
                    .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
                    && !s.contains(char::is_whitespace);
                if !shape_ok {
                    return Ok(());
                }
                let (local, domain) = s.split_once('@').unwrap_or((s, ""));
                only(local, |c| alnum(c) || "._%+-".contains(c))?;
                only(domain, |c| alnum(c) || ".-".contains(c))?;
                if local.starts_with('-') {
                    return Err("starts with `-`".into());
                }
                Ok(())
            }
            Kind::SecretName => {
                if crate::stack::model::valid_secret_name(s) {
                    Ok(())
                } else {
                    only(s, |c| alnum(c) || c == '_')?;
                    Err("does not start with a letter or `_`".into())
                }
            }
            Kind::AwsId => {
                if s.is_empty() {
                    return Ok(());
                }
                only(s, |c| alnum(c) || "._:/,-".contains(c))
            }
            Kind::S3Bucket => {
                only(s, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c)
                })?;
                let n = s.len();
                if !(3..=63).contains(&n) {
                    return Err(format!("has {n} characters (3–63)"));
                }
                Ok(())
            }
            Kind::ServerNames => {
                only(s, |c| alnum(c) || ".*_- ".contains(c))?;
                if s.split(' ').all(str::is_empty) {
                    return Err("names no server".into());
                }
                // nginx's forms: `_`, `name`, `.name`, `*.name`, `name.*` (ngx_http_core_module)
                for n in s.split(' ').filter(|n| !n.is_empty()) {
                    let core = n
                        .strip_prefix("*.")
                        .or_else(|| n.strip_suffix(".*"))
                        .or_else(|| n.strip_prefix('.'))
                        .unwrap_or(n);
                    let ok = n == "_"
                        || (!core.is_empty()
                            && !core.contains('*')
                            && !core.starts_with(['.', '-'])
                            && !core.ends_with('.')
                            && !core.contains(".."));
                    if !ok {
                        return Err(format!("has `{n}`, which is not a server name"));
                    }
                }
                Ok(())
            }
            Kind::AuthPass => only(s, |c| c.is_ascii_graphic() && !"\"'\\#!${}".contains(c)),
            Kind::NginxBlock => nginx_block(s),
        }
    }
}

fn max_len(s: &str, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n > max {
        Err(format!("is longer than {max} characters"))
    } else {
        Ok(())
    }
}

fn user_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("has an empty name".into());
    }
    only(s, |c| alnum(c) || "_.-".contains(c))?;
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err("does not start with a letter or `_`".into());
    }
    max_len(s, 32)
}

/// RFC 3986 `path-absolute` with `pchar` minus the sub-delimiters that nginx, haproxy or a
/// shell read (`;`, `$`, `'`, `(`, `)`, `&`), and valid `%XX` escapes.
fn url_path(s: &str) -> Result<(), String> {
    only(s, |c| alnum(c) || "/-._~%:@!*+,=".contains(c))?;
    percent_escapes(s)
}

fn percent_escapes(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err("has a `%` that is not followed by two hex digits".into());
        }
    }
    Ok(())
}

/// The distribution reference grammar (github.com/distribution/reference, `reference.go`):
/// `[domain[:port]/]path-component(/path-component)*[:tag][@algorithm:hex]`.
fn image_ref(s: &str) -> Result<(), String> {
    only(s, |c| alnum(c) || "._-/:@+".contains(c))?;
    if s.len() > 255 {
        return Err("is longer than 255 characters".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg.starts_with(|c: char| c.is_ascii_alphabetic())
                && alg.chars().all(|c| alnum(c) || "-_+.".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err("has a digest that is not `algorithm:hex`".into());
        }
    }
    // A tag is after the last `:` that follows the last `/`.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| alnum(c) || c == '_')
            && t.chars().all(|c| alnum(c) || "_.-".contains(c));
        if !ok {
            return Err(format!("has an invalid tag `{t}`"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        let is_domain = first.contains('.') || first.contains(':') || first == "localhost";
        if is_domain {
            let (host, port) = match first.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (first, None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|c| {
                    !c.is_empty()
                        && c.chars().all(|ch| alnum(ch) || ch == '-')
                        && !c.starts_with('-')
                        && !c.ends_with('-')
                });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Err(format!("has an invalid registry `{first}`"));
            }
            parts.remove(0);
        }
    }
    for p in parts {
        // alpha-numeric (separator alpha-numeric)*, separator = [_.] | __ | -+
        let ok = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !p.contains("..")
            && !p.contains("._")
            && !p.contains("_.")
            && !p.contains("___");
        if !ok {
            return Err(format!("has an invalid path component `{p}`"));
        }
    }
    Ok(())
}

/// Braces balanced outside quotes and comments, and nothing left open at the end: the block
/// can add directives and locations inside `server { }`, never close it.
fn nginx_block(s: &str) -> Result<(), String> {
    only(s, |c| !c.is_control() || c == '\n' || c == '\t')?;
    let mut depth: i64 = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut last = ' ';
    for c in s.chars() {
        if comment {
            if c == '\n' {
                comment = false;
            }
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            } else if c == '\n' {
                return Err("has a quoted string that runs past the end of its line".into());
            }
            last = c;
            continue;
        }
        match c {
            '#' => comment = true,
            '"' | '\'' => quote = Some(c),
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a `}` it did not open".into());
                }
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last = c;
        }
    }
    if quote.is_some() {
        return Err("leaves a quoted string open".into());
    }
    if depth != 0 {
        return Err("leaves a `{` open".into());
    }
    if !matches!(last, ';' | '}' | ' ') {
        return Err("ends with a directive without `;`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_refuse_what_configs_read() {
        assert!(Kind::UrlPath.check("/healthz").is_ok());
        assert!(Kind::UrlPath.check("/a/b-c_d.e~f%20g").is_ok());
        for bad in [
            "/healthz\"; id >/tmp/x; echo \"",
            "/x { alias /etc/; }",
            "/x;",
            "/$host",
            "/a b",
            "/x\nlisten evil",
            "/%zz",
        ] {
            assert!(Kind::UrlPath.check(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        for ok in [
            "nginx",
            "nginx:1.25",
            "ghcr.io/acme/web:1.4",
            "localhost/hactl-lab-app:latest",
            "registry:5000/a/b_c__d-e:v1.0",
            "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(image_ref(ok).is_ok(), "{ok} refused: {:?}", image_ref(ok));
        }
        for bad in [
            "web}",
            "web:${X}",
            "Web",
            "web:",
            "-web",
            "a//b",
            "web:tag with space",
            "web@sha256:12",
        ] {
            assert!(image_ref(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn nginx_blocks_stay_inside_the_server() {
        assert!(nginx_block("location /x {\n    return 204;\n}").is_ok());
        assert!(nginx_block("add_header X-A \"a } b\";").is_ok());
        assert!(nginx_block("}\nserver { listen 81; }").is_err());
        assert!(nginx_block("location /x {").is_err());
        assert!(nginx_block("return 200 \"x").is_err());
        assert!(nginx_block("add_header X-A b").is_err());
    }

    #[test]
    fn server_names_take_nginx_forms_only() {
        for ok in [
            "_",
            "example.com www.example.com",
            "*.example.com",
            ".example.com",
            "www.*",
        ] {
            assert!(Kind::ServerNames.check(ok).is_ok(), "{ok} refused");
        }
        for bad in ["*", "a*b.com", "example.com;", "..x", "-x"] {
            assert!(Kind::ServerNames.check(bad).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn patterns_match_items_and_map_keys() {
        let p = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            kind_of(&p("vip.notify.master.[].command")),
            Some(Kind::Line)
        );
        assert_eq!(kind_of(&p("app.env.*.secret")), Some(Kind::SecretName));
        assert_eq!(kind_of(&p("hosts.[].name")), Some(Kind::HostName));
        assert_eq!(tokens("hosts[].peers[]"), p("hosts.[].peers.[]"));
    }
}
