//! The records every remote script prints, and the one parser that reads them back.
//!
//! A record is one line of a script's stdout: `HACTL`, then tab-separated fields, the first
//! naming the kind (`HACTL\tok\tfile\t/etc/nginx/nginx.conf`). Anything else a script or a
//! tool prints is ignored, so a chatty login banner or a tool's warning cannot be mistaken
//! for hactl's answer. A field never holds a tab or a newline, except the last field of a
//! `log` or `line` record, which is the rest of the line (tabs kept); binary data (a
//! manifest, a file's content, `redis-cli info`) travels as base64.
//!
//! Emitters: [`printf`] writes the `printf` command for one record with fixed kind words and
//! shell-expanded arguments; [`REC_FN`] defines `rec`, a shell function for scripts that
//! print many records (the app's control script). [`fields`] is the one parser: every reader
//! of records ([`parse`] for the hosts provider, the deploy, `ha::logs`, `services::redis`)
//! matches on its field lists.

use base64::Engine as _;

/// The first field of every record.
pub const PREFIX: &str = "HACTL";

/// The `sha256sum` block of the observe script is framed by these lines (`sha256sum`'s own
/// output, `DIGEST  PATH`, is kept as the tool prints it): see [`parse_sums`].
pub const SUMS_BEGIN: &str = "HACTL-SUMS";
/// See [`SUMS_BEGIN`].
pub const SUMS_END: &str = "HACTL-END";

/// A shell function, `rec FIELD...`, that prints one record from its arguments (each a
/// field, expanded by the shell as usual).
pub const REC_FN: &str =
    "rec() { printf 'HACTL'; for f in \"$@\"; do printf '\\t%s' \"$f\"; done; printf '\\n'; }\n";

/// The `printf` command that prints one record: the fixed `kind` words, then one field per
/// entry of `args`, each already a shell word (quoted with [`super::sh::q`], or an expansion
/// such as `"$SOCK"`).
///
/// `kind` words are written into the format string as they are: plain words of letters,
/// digits and `-` (checked in debug builds).
pub fn printf(kind: &[&str], args: &[&str]) -> String {
    debug_assert!(kind
        .iter()
        .all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
    let mut s = String::from("printf '");
    s.push_str(PREFIX);
    for k in kind {
        s.push_str("\\t");
        s.push_str(k);
    }
    for _ in args {
        s.push_str("\\t%s");
    }
    s.push_str("\\n'");
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// The fields of every record in a script's stdout, in order, without the prefix; other
/// lines are skipped.
pub fn fields(stdout: &str) -> impl Iterator<Item = Vec<&str>> {
    stdout.lines().filter_map(|line| {
        let rest = line.strip_prefix(PREFIX)?.strip_prefix('\t')?;
        Some(rest.split('\t').collect())
    })
}

/// What is at a path on a host, as `stat --printf %F` names it (`lstat`: a symbolic link is
/// one, not its target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileKind {
    #[default]
    Regular,
    Symlink,
    /// A directory, fifo, device, …
    Other,
}

/// One record of the hosts provider's and `status`'s scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Manifest(Vec<u8>),
    File {
        path: String,
        sha256: String,
        mode: u32,
    },
    Content {
        path: String,
        bytes: Vec<u8>,
    },
    Missing(String),
    /// What `stat` found at a path (without following a link).
    Stat {
        path: String,
        mode: u32,
        kind: FileKind,
    },
    Service {
        name: String,
        active: bool,
        pid: Option<u32>,
    },
    Ok(Vec<String>),
    Fail(Vec<String>),
    CheckFailed(String),
    Log(String),
    Vip(bool),
    Check {
        name: String,
        ok: bool,
    },
    Transition(String),
}

/// Reads the [`Record`]s of a script's stdout; other lines, and records of other kinds, are
/// ignored.
pub fn parse(stdout: &str) -> Vec<Record> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    fields(stdout)
        .filter_map(|f| match f.as_slice() {
            ["manifest", data] => b64.decode(data).ok().map(Record::Manifest),
            ["file", path, sha, mode] => Some(Record::File {
                path: path.to_string(),
                sha256: sha.to_string(),
                mode: u32::from_str_radix(mode, 8).unwrap_or(0),
            }),
            ["content", path, data] => b64.decode(data).ok().map(|bytes| Record::Content {
                path: path.to_string(),
                bytes,
            }),
            ["missing", path] => Some(Record::Missing(path.to_string())),
            ["service", name, state, pid] => Some(Record::Service {
                name: name.to_string(),
                active: *state == "active",
                pid: pid.trim().parse().ok(),
            }),
            ["ok", rest @ ..] => Some(Record::Ok(owned(rest))),
            ["fail", rest @ ..] => Some(Record::Fail(owned(rest))),
            ["check-failed", path] => Some(Record::CheckFailed(path.to_string())),
            ["log", text @ ..] => Some(Record::Log(text.join("\t"))),
            ["stat", mode, kind, path] => Some(Record::Stat {
                path: path.to_string(),
                mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                kind: match *kind {
                    "regular file" | "regular empty file" => FileKind::Regular,
                    "symbolic link" => FileKind::Symlink,
                    _ => FileKind::Other,
                },
            }),
            ["vip", v] => Some(Record::Vip(*v == "yes")),
            ["check", name, r] => Some(Record::Check {
                name: name.to_string(),
                ok: *r == "ok",
            }),
            ["transition", t] => Some(Record::Transition(t.to_string())),
            _ => None,
        })
        .collect()
}

/// Reads `sha256sum` lines between the [`SUMS_BEGIN`]/[`SUMS_END`] markers: path → digest.
pub fn parse_sums(stdout: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        match line {
            SUMS_BEGIN => inside = true,
            SUMS_END => inside = false,
            _ if inside => {
                if let Some((h, p)) = line.split_once("  ") {
                    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        out.push((p.to_string(), h.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onhost::sh::q;

    fn sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{script}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn printf_builds_the_record_command() {
        assert_eq!(
            printf(&["fail", "no-socket"], &["\"$SOCK\""]),
            "printf 'HACTL\\tfail\\tno-socket\\t%s\\n' \"$SOCK\""
        );
        assert_eq!(
            printf(&["lock", "released"], &[]),
            "printf 'HACTL\\tlock\\treleased\\n'"
        );
    }

    #[test]
    fn what_the_emitters_print_the_parser_reads_back() {
        let path = "/etc/a b/it's";
        let script = format!(
            "{REC_FN}echo noise\n{}\n{}\nrec fail service reload nginx\nrec log 'a\tb'\n",
            printf(&["ok", "file"], &[&q(path)]),
            printf(&["vip"], &["yes"]),
        );
        let out = sh(&script);
        assert_eq!(
            fields(&out).collect::<Vec<_>>(),
            vec![
                vec!["ok", "file", path],
                vec!["vip", "yes"],
                vec!["fail", "service", "reload", "nginx"],
                vec!["log", "a", "b"],
            ]
        );
        assert_eq!(
            parse(&out),
            vec![
                Record::Ok(vec!["file".into(), path.into()]),
                Record::Vip(true),
                Record::Fail(vec!["service".into(), "reload".into(), "nginx".into()]),
                Record::Log("a\tb".into()),
            ]
        );
    }

    #[test]
    fn lines_that_only_start_like_a_record_are_not_records() {
        assert_eq!(fields("HACTLX\tok\nHACTL\nxHACTL\tok\n").count(), 0);
    }

    #[test]
    fn parses_records() {
        let out = "noise\nHACTL\tfile\t/etc/x\tabc\t644\nHACTL\tmissing\t/etc/y\nHACTL\tservice\tnginx\tactive\t42\nHACTL\tservice\thaproxy\tinactive\t\nHACTL\tcontent\t/etc/x\taGk=\nHACTL\tstat\t777\tsymbolic link\t/etc/z\nHACTL\tstat\t600\tregular empty file\t/etc/e\n";
        assert_eq!(
            parse(out),
            vec![
                Record::File {
                    path: "/etc/x".into(),
                    sha256: "abc".into(),
                    mode: 0o644
                },
                Record::Missing("/etc/y".into()),
                Record::Service {
                    name: "nginx".into(),
                    active: true,
                    pid: Some(42)
                },
                Record::Service {
                    name: "haproxy".into(),
                    active: false,
                    pid: None
                },
                Record::Content {
                    path: "/etc/x".into(),
                    bytes: b"hi".to_vec()
                },
                Record::Stat {
                    path: "/etc/z".into(),
                    mode: 0o777,
                    kind: FileKind::Symlink
                },
                Record::Stat {
                    path: "/etc/e".into(),
                    mode: 0o600,
                    kind: FileKind::Regular
                },
            ]
        );
    }

    #[test]
    fn sums_are_read_only_between_the_markers() {
        let d = "ab".repeat(32);
        let out = format!("{d}  /outside\n{SUMS_BEGIN}\n{d}  /etc/a b\nshort  /x\n{SUMS_END}\n");
        assert_eq!(parse_sums(&out), vec![("/etc/a b".to_string(), d)]);
    }
}
