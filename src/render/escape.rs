//! One escaping filter per output format, so a value (a stack string or a vault secret) is
//! always written as the data it is and never as syntax of the file around it.
//!
//! `validate` already refuses stack strings that do not fit where they land (see
//! `stack::validate::strings`); these filters are the second fence, and the only one for vault
//! secrets, which `validate` never sees. Where a format can represent a character, the filter
//! escapes it; where it cannot (keepalived has no escapes at all, haproxy and nginx no way to
//! write a newline into a value), the filter fails the rendering with a message that names the
//! format and the character, never the value (it may be a secret).
//!
//! | filter | format | rule (source) |
//! |---|---|---|
//! | `sh` | POSIX shell word | single quotes (`shell-escape`); NUL refused |
//! | `keepalived` | keepalived.conf token or `"…"` | no escapes exist (keepalived's `parser.c`): refuse quotes, `\`, `#`, `!`, `$` (its `$NAME` definitions), braces, control characters; `quoted=true` allows spaces; `max=N` refuses longer values (`auth_pass`: 8, keepalived.conf(5), which cuts silently) |
//! | `haproxy` | haproxy.cfg argument | a plain word bare, else double-quoted with `\\`, `\"`, `\$` escaped (haproxy configuration manual §2.2); control characters refused |
//! | `nginx` | nginx.conf argument | a plain word bare, else double-quoted with `\\` and `\"` escaped; `$` (variables) and control characters refused |
//! | `redis` | redis.conf / sentinel.conf string | double-quoted, `\\`, `\"` and every non-printable byte as `\xHH` (redis `sdssplitargs`), so `\x41` stays four characters |
//! | `redis_resp` | redis protocol in haproxy `tcp-check send-binary` | a RESP array as hex: binary safe, nothing to escape |
//! | `compose` | docker-compose YAML value | `$` doubled (compose interpolation), then JSON (a YAML flow scalar); lists element-wise |
//! | `compose_default` | `${VAR:-default}` in compose | refuses `$`, `{`, `}` in the default, which interpolation would read |

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// How every refusal of these filters starts, so `render` can tell them from template bugs.
pub const REFUSED: &str = "a value cannot be written into";

fn refuse(format: &str, what: String) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{REFUSED} {format}: it {what}"),
    )
}

fn describe(c: char) -> String {
    match c {
        '\n' => "contains a newline".into(),
        '\r' => "contains a carriage return".into(),
        '\t' => "contains a tab".into(),
        ' ' => "contains a space".into(),
        c if c.is_control() => format!("contains the control character U+{:04X}", c as u32),
        c => format!("contains `{c}`"),
    }
}

fn first_bad(s: &str, bad: impl Fn(char) -> bool) -> Option<char> {
    s.chars().find(|c| bad(*c))
}

/// Quotes a word for `/bin/sh` with the one shell quoting of hactl ([`crate::onhost::sh::q`]).
/// NUL cannot be in a shell word.
pub fn sh(v: String) -> Result<String, Error> {
    if v.contains('\0') {
        return Err(refuse("a shell script", "contains a NUL byte".into()));
    }
    Ok(crate::onhost::sh::q(&v).into_owned())
}

/// A keepalived token, or (`quoted=true`) the inside of a `"…"` string. `max=N` refuses a
/// value of more than N characters; `what=` names the setting in the message.
pub fn keepalived(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let quoted: bool = kwargs.get::<Option<bool>>("quoted")?.unwrap_or(false);
    let max: Option<usize> = kwargs.get("max")?;
    let what: Option<String> = kwargs.get("what")?;
    kwargs.assert_all_used()?;
    let s = plain_string(&v);
    let format = match &what {
        Some(w) => format!("keepalived.conf (`{w}`)"),
        None => "keepalived.conf".to_string(),
    };
    if let Some(c) = first_bad(&s, |c| {
        c.is_control() || "\"'\\#!${}".contains(c) || (!quoted && c.is_whitespace())
    }) {
        return Err(refuse(&format, describe(c)));
    }
    if s.is_empty() {
        return Err(refuse(&format, "is empty".into()));
    }
    if let Some(max) = max {
        let n = s.chars().count();
        if n > max {
            return Err(refuse(
                &format,
                format!(
                    "has {n} characters and keepalived takes at most {max} here (it would cut the rest silently); use a value of at most {max}"
                ),
            ));
        }
    }
    Ok(s)
}

/// Characters that mean nothing to haproxy's or nginx's parser: a word of only these is
/// written bare, so the usual values (`/healthz`, `web1`) read as before.
fn bare_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@+%,=-".contains(c))
}

/// A haproxy argument: bare when it is a plain word, else double-quoted with `\`, `"` and `$`
/// escaped.
pub fn haproxy(v: Value) -> Result<String, Error> {
    let s = plain_string(&v);
    if let Some(c) = first_bad(&s, char::is_control) {
        return Err(refuse("haproxy.cfg", describe(c)));
    }
    if bare_word(&s) {
        return Ok(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// An nginx argument: bare when it is a plain word, else double-quoted with `\` and `"`
/// escaped. `$` starts a variable in many directives and has no escape, so it is refused, as
/// are control characters.
pub fn nginx(v: Value) -> Result<String, Error> {
    let s = plain_string(&v);
    if let Some(c) = first_bad(&s, |c| c.is_control() || c == '$') {
        return Err(refuse("nginx.conf", describe(c)));
    }
    if bare_word(&s) {
        return Ok(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// A redis.conf string: double-quoted; `\` and `"` escaped and every byte outside printable
/// ASCII written `\xHH`, which `sdssplitargs` turns back into exactly that byte.
pub fn redis(v: Value) -> Result<String, Error> {
    let s = plain_string(&v);
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    Ok(out)
}

/// A redis command as RESP (`*N\r\n$len\r\narg\r\n…`), hex-encoded for haproxy's
/// `tcp-check send-binary`: any byte of a password goes through unchanged.
pub fn redis_resp(v: Value) -> Result<String, Error> {
    let args: Vec<String> = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => {
            v.try_iter()?.map(|a| plain_string(&a)).collect::<Vec<_>>()
        }
        _ => vec![plain_string(&v)],
    };
    let mut resp = format!("*{}\r\n", args.len()).into_bytes();
    for a in &args {
        resp.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        resp.extend_from_slice(a.as_bytes());
        resp.extend_from_slice(b"\r\n");
    }
    Ok(hex::encode(resp))
}

/// A compose value: `$` doubled so compose does not interpolate it, then JSON (which YAML reads
/// as a flow scalar). A list is escaped element by element.
pub fn compose(v: Value) -> Result<String, Error> {
    let json = compose_json(&v)?;
    serde_json::to_string(&json).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot encode as JSON: {e}"),
        )
    })
}

fn compose_json(v: &Value) -> Result<serde_json::Value, Error> {
    Ok(match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => serde_json::Value::Array(
            v.try_iter()?
                .map(|x| compose_json(&x))
                .collect::<Result<_, _>>()?,
        ),
        ValueKind::Number | ValueKind::Bool => serde_json::Value::String(v.to_string()),
        _ => serde_json::Value::String(plain_string(v).replace('$', "$$")),
    })
}

/// `${VAR:-default}` for compose, JSON-quoted: the default may hold no `$`, `{` or `}` (compose
/// would read them as interpolation) and no control characters.
pub fn compose_default(v: Value, var: String) -> Result<String, Error> {
    let s = plain_string(&v);
    if let Some(c) = first_bad(&s, |c| c.is_control() || "${}".contains(c)) {
        return Err(refuse("a compose `${VAR:-default}`", describe(c)));
    }
    if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(refuse("a compose variable name", "is not a name".into()));
    }
    serde_json::to_string(&format!("${{{var}:-{s}}}")).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot encode as JSON: {e}"),
        )
    })
}

/// The text of a value: a string as itself, anything else as minijinja prints it.
fn plain_string(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn haproxy_quotes_and_escapes_and_refuses_newlines() {
        assert_eq!(haproxy(s("/run/a.sock")).expect("ok"), "/run/a.sock");
        assert_eq!(haproxy(s("/a b")).expect("ok"), "\"/a b\"");
        assert_eq!(haproxy(s(r#"a"b\c$d"#)).expect("ok"), r#""a\"b\\c\$d""#);
        let e = haproxy(s("/x mode 666\nlisten evil")).expect_err("refused");
        assert!(e.to_string().contains("newline"), "{e}");
        assert!(!e.to_string().contains("evil"), "the value leaked: {e}");
    }

    #[test]
    fn redis_keeps_backslash_escapes_literal() {
        // `\x41` must reach redis as those four characters, not as `A`.
        assert_eq!(redis(s(r"p\x41")).expect("ok"), r#""p\\x41""#);
        assert_eq!(redis(s("a\"b\nc")).expect("ok"), r#""a\"b\x0ac""#);
    }

    #[test]
    fn redis_resp_is_length_prefixed_hex() {
        let v = Value::from(vec!["AUTH", "p w\"\n"]);
        let hex_text = redis_resp(v).expect("ok");
        let bytes = hex::decode(hex_text).expect("hex");
        assert_eq!(bytes, b"*2\r\n$4\r\nAUTH\r\n$5\r\np w\"\n\r\n");
    }

    #[test]
    fn keepalived_refuses_what_it_cannot_write_and_long_passwords() {
        assert_eq!(
            keepalived(s("VI_1"), Kwargs::from_iter(None::<(&str, Value)>)).expect("ok"),
            "VI_1"
        );
        for bad in ["a\"b", "a\nb", "a#b", "a b", "$X", "a}"] {
            assert!(
                keepalived(s(bad), Kwargs::from_iter(None::<(&str, Value)>)).is_err(),
                "{bad:?} passed"
            );
        }
        let e = keepalived(
            s("123456789"),
            Kwargs::from_iter([("max", Value::from(8)), ("what", Value::from("auth_pass"))]),
        )
        .expect_err("too long");
        assert!(e.to_string().contains("at most 8"), "{e}");
        assert!(
            !e.to_string().contains("123456789"),
            "the value leaked: {e}"
        );
    }

    #[test]
    fn nginx_and_compose_escape_for_their_formats() {
        assert_eq!(nginx(s(r#"/a"b"#)).expect("ok"), r#""/a\"b""#);
        assert_eq!(nginx(s("/healthz")).expect("ok"), "/healthz");
        assert_eq!(nginx(s("_")).expect("ok"), "_");
        assert!(nginx(s("/$host")).is_err());
        assert_eq!(compose(s("a$b")).expect("ok"), r#""a$$b""#);
        assert_eq!(
            compose(Value::from(vec!["x$", "y"])).expect("ok"),
            r#"["x$$","y"]"#
        );
        assert_eq!(
            compose_default(s("web:1"), "IMG".into()).expect("ok"),
            r#""${IMG:-web:1}""#
        );
        assert!(compose_default(s("web}"), "IMG".into()).is_err());
    }

    #[test]
    fn sh_refuses_nul() {
        assert_eq!(sh("a b".into()).expect("ok"), "'a b'");
        assert!(sh("a\0b".into()).is_err());
    }
}
