//! The vault's plaintext: YAML text ↔ [`Secrets`], in two shapes.
//!
//! - Inside the ciphertext: `{stack: NAME, secrets: {name: value}}`. The stack name binds the
//!   vault to its stack (a vault copied from another stack is refused).
//! - In `secrets edit`: only the `name: value` map, under a comment, because that is all a
//!   person should have to read or write.
//!
//! The YAML is written by hand rather than by a serializer so that multi-line values (SSH keys,
//! certificates) come out as readable `|` blocks; every document written is parsed back and
//! compared, and anything that would not round-trip falls back to JSON-style quoted strings
//! (which YAML reads exactly). All buffers that hold plaintext are `Zeroizing`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{valid_name, Secret, Secrets, VaultError};

/// The decrypted document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    stack: String,
    #[serde(default)]
    secrets: Option<BTreeMap<String, Secret>>,
}

/// Writes the document stored inside the ciphertext.
pub(crate) fn encode(stack: &str, secrets: &Secrets) -> Zeroizing<String> {
    let build = |quoted_only: bool| {
        let mut out = Zeroizing::new(String::new());
        out.push_str("# hactl vault: change it with `hactl secrets`, never by hand\n");
        out.push_str("stack: ");
        push_quoted(&mut out, stack);
        out.push('\n');
        if secrets.is_empty() {
            out.push_str("secrets: {}\n");
        } else {
            out.push_str("secrets:\n");
            push_map(&mut out, secrets, "  ", quoted_only);
        }
        out
    };
    let text = build(false);
    match decode(&text, Path::new("<new vault>")) {
        Ok((s, back)) if s == stack && back == *secrets => text,
        _ => build(true),
    }
}

/// Reads the document stored inside the ciphertext: (stack name, secrets).
pub(crate) fn decode(text: &str, path: &Path) -> Result<(String, Secrets), VaultError> {
    let payload: Payload = parse(text, path)?;
    let values = payload.secrets.unwrap_or_default();
    check_names(&values, path)?;
    Ok((payload.stack, Secrets { values }))
}

/// Writes what the editor shows: a comment and the `name: value` map.
pub(crate) fn encode_edit(stack: &str, secrets: &Secrets) -> Zeroizing<String> {
    let build = |quoted_only: bool| {
        let mut out = Zeroizing::new(String::new());
        out.push_str(&format!(
            "# The secrets of the stack `{stack}`: one `name: value` per entry; values with\n\
             # several lines as `name: |` blocks. Save and quit to re-encrypt; this plaintext\n\
             # copy is wiped as soon as the editor exits.\n"
        ));
        if secrets.is_empty() {
            out.push_str("# example_password: \"change me\"\n");
        } else {
            push_map(&mut out, secrets, "", quoted_only);
        }
        out
    };
    let text = build(false);
    match decode_edit(&text, Path::new("<edit>")) {
        Ok(back) if back == *secrets => text,
        _ => build(true),
    }
}

/// Reads what the editor left: a `name: value` map (or nothing at all).
pub(crate) fn decode_edit(text: &str, path: &Path) -> Result<Secrets, VaultError> {
    let map: Option<BTreeMap<String, Secret>> = parse(text, path)?;
    let values = map.unwrap_or_default();
    check_names(&values, path)?;
    Ok(Secrets { values })
}

fn check_names(values: &BTreeMap<String, Secret>, path: &Path) -> Result<(), VaultError> {
    match values.keys().find(|n| !valid_name(n)) {
        Some(bad) => Err(VaultError::Yaml {
            path: path.display().to_string(),
            at: String::new(),
            detail: format!(
                "`{bad}` is not a valid secret name (letters, digits and `_`, not starting with a digit)"
            ),
        }),
        None => Ok(()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, VaultError> {
    let mut options = serde_saphyr::Options::default();
    // The snippet would quote the plaintext line: never.
    options.with_snippet = false;
    options.crop_radius = 0;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let at = e
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        VaultError::Yaml {
            path: path.display().to_string(),
            at,
            detail: redact_message(&e.to_string()),
        }
    })
}

/// The parser's message without anything it quotes (a quoted part may be a secret value) and
/// without its own position suffix (reported separately).
fn redact_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut chars = first.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '`' | '\'' => {
                // Skip to the matching quote; an unmatched quote drops the rest.
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                out.push('…');
            }
            _ => out.push(c),
        }
    }
    let out = match out.find(" at line ") {
        Some(i) => out[..i].to_string(),
        None => out,
    };
    // Unquoted scalars can appear after "invalid type: string" etc. only inside quotes in
    // serde's messages; anything long without spaces is dropped as a last resort.
    out.split(' ')
        .map(|w| if w.len() > 40 { "…" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

fn push_map(out: &mut String, secrets: &Secrets, indent: &str, quoted_only: bool) {
    for (name, value) in &secrets.values {
        out.push_str(indent);
        out.push_str(name);
        out.push_str(": ");
        let v = value.expose();
        if !quoted_only && literal_ok(v) {
            push_literal(out, v, &format!("{indent}  "));
        } else {
            push_quoted(out, v);
            out.push('\n');
        }
    }
}

/// A JSON string is a valid YAML double-quoted scalar with the same value.
fn push_quoted(out: &mut String, v: &str) {
    let q = Zeroizing::new(serde_json::Value::String(v.to_owned()).to_string());
    out.push_str(&q);
}

/// Multi-line values are readable as literal blocks when nothing in them needs escaping.
fn literal_ok(v: &str) -> bool {
    let body = v.trim_end_matches('\n');
    v.contains('\n')
        && !body.is_empty()
        && !body.starts_with([' ', '\t', '\n'])
        && v.chars().all(|c| {
            c == '\n'
                || c == '\t'
                || !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
        })
        && !body.lines().any(|l| l.ends_with([' ', '\t']))
}

fn push_literal(out: &mut String, v: &str, indent: &str) {
    let body = v.trim_end_matches('\n');
    let trailing = v.len() - body.len();
    out.push_str(match trailing {
        0 => "|-\n",
        1 => "|\n",
        _ => "|+\n",
    });
    for line in body.split('\n') {
        if !line.is_empty() {
            out.push_str(indent);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        let mut s = Secrets::default();
        for (k, v) in pairs {
            s.insert(k.to_string(), Secret::new(v.to_string()));
        }
        s
    }

    #[test]
    fn round_trips_awkward_values() {
        let s = secrets(&[
            ("plain", "hunter2"),
            (
                "key",
                "-----BEGIN KEY-----\nabc\n\ndef\n-----END KEY-----\n",
            ),
            ("no_newline", "a\nb"),
            ("many_newlines", "a\nb\n\n\n"),
            ("indented", "  a\n b\n"),
            ("quotes", "it's \"x\" # not a comment: {y}"),
            ("empty", ""),
            ("unicode", "pässwörd ✓\u{2028}x"),
            ("cr", "a\r\nb\r\n"),
            ("number_like", "0123"),
            ("bool_like", "yes"),
            ("trailing_space", "a \nb\n"),
        ]);
        let text = encode("lab", &s);
        let (stack, back) = decode(&text, Path::new("t")).unwrap();
        assert_eq!(stack, "lab");
        assert_eq!(back, s);
        let edit = encode_edit("lab", &s);
        assert_eq!(decode_edit(&edit, Path::new("t")).unwrap(), s);
    }

    #[test]
    fn multi_line_values_are_literal_blocks() {
        let s = secrets(&[("key", "line1\nline2\n")]);
        let text = encode_edit("lab", &s);
        assert!(text.contains("key: |\n  line1\n  line2\n"), "{}", *text);
    }

    #[test]
    fn empty_edit_document_is_empty() {
        let text = encode_edit("lab", &Secrets::default());
        assert!(decode_edit(&text, Path::new("t")).unwrap().is_empty());
        assert!(decode_edit("", Path::new("t")).unwrap().is_empty());
    }

    #[test]
    fn yaml_errors_do_not_quote_values() {
        let err = decode_edit("a: \"hunter2\nb: [c", Path::new("t")).unwrap_err();
        let msg = format!("{err}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let err = decode_edit("a: [hunter2]\n", Path::new("t")).unwrap_err();
        let msg = format!("{err}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        let err = decode_edit("a: x\na: hunter2\n", Path::new("t")).unwrap_err();
        let msg = format!("{err}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn bad_names_are_refused() {
        let err = decode_edit("my-key: x\n", Path::new("t")).unwrap_err();
        assert!(format!("{err}").contains("`my-key` is not a valid secret name"));
    }

    #[test]
    fn unknown_payload_keys_are_refused() {
        assert!(decode("stack: a\nsecrets: {}\nextra: 1\n", Path::new("t")).is_err());
        let (stack, s) = decode("stack: a\nsecrets: {}\n", Path::new("t")).unwrap();
        assert_eq!(stack, "a");
        assert!(s.is_empty());
    }
}
