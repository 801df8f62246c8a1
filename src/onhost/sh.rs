//! Shell words and payloads. Every value hactl puts into a remote script goes through [`q`]
//! (single quotes from `shell-escape`, only when needed), never through hand-made quoting;
//! bytes that must not appear in a script in clear (file contents, secrets) travel base64
//! inside a quoted here-document ([`heredoc_b64`]), which `sh` feeds through a pipe, not a
//! temporary file.

use std::borrow::Cow;

use base64::Engine as _;

/// Quotes one word for a POSIX `sh` (single quotes, only when the word needs them).
///
/// The caller keeps NUL out: a shell word cannot hold one, and `render`'s `sh` filter refuses
/// it before quoting.
pub fn q(s: &str) -> Cow<'_, str> {
    shell_escape::unix::escape(Cow::Borrowed(s))
}

/// Joins an argv into one shell command line, each word quoted with [`q`].
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| q(a.as_ref()).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The delimiter of hactl's here-documents. It is quoted where it opens (`<<'HACTL_EOF'`), so
/// the shell expands nothing inside, and base64 text never contains it.
pub const HEREDOC_END: &str = "HACTL_EOF";

/// Appends `<<'HACTL_EOF'`, `bytes` as base64 in 76-column lines (RFC 2045 §6.8), and the
/// closing delimiter: the standard input of the command written before it.
pub fn heredoc_b64(out: &mut String, bytes: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    out.push_str("<<'");
    out.push_str(HEREDOC_END);
    out.push_str("'\n");
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(HEREDOC_END);
    out.push('\n');
}

/// Panics unless `script` parses as POSIX sh (`sh -n`), naming `what`: how the tests check that
/// a script hactl builds or renders is valid before any host runs it.
#[cfg(test)]
pub fn assert_parses(what: &str, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{what}: sh -n failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_words_that_need_it() {
        assert_eq!(q("nginx"), "nginx");
        assert_eq!(q("/etc/a b"), "'/etc/a b'");
        assert_eq!(q("it's"), "'it'\\''s'");
        assert_eq!(q(""), "''");
        assert_eq!(
            join(&["systemctl", "reload", "a;rm -rf /"]),
            "systemctl reload 'a;rm -rf /'"
        );
    }

    #[test]
    fn heredoc_carries_bytes_through_sh() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let mut s = String::from("base64 -d ");
        heredoc_b64(&mut s, &bytes);
        assert!(s.starts_with("base64 -d <<'HACTL_EOF'\n"));
        assert!(s.lines().all(|l| l.len() <= 76 || l.starts_with("base64")));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&s)
            .output()
            .expect("sh runs");
        assert!(out.status.success());
        assert_eq!(out.stdout, bytes);
    }
}
