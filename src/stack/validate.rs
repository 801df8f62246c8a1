//! Loading a stack file: bytes → UTF-8 text → spanned tree (unknown keys) → typed model →
//! semantic checks → resolved [`Stack`].
//!
//! Each stage reports everything it can see before giving up: the UTF-8 check names the first
//! bad byte's line and column (the parser's own error has no position); the tree pass lists
//! every unknown key at once; the typed parse can only report its first error (as every YAML
//! parser), and the semantic checks ([`checks`], and [`strings`]: every string against the
//! allowlist of where it lands) run over the whole model and report every problem. A later stage never runs on a file an earlier stage refused, so a problem is never
//! reported twice in two forms.
//!
//! The parser's own messages are used without its source excerpt (miette draws that), and its
//! budget errors are reworded: "budget breached: Nodes" means nothing to someone whose file
//! just has an alias bomb in it.

mod checks;
pub(crate) mod strings;
mod tree;

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::{DefaultMessageFormatter, Error as YamlError, MessageFormatter};

use super::diag::{Problem, SourceMap, StackError};
use super::model::StackFile;
use super::Stack;

pub(super) fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Stack, StackError> {
    load_tolerating(path, bytes, &[]).map(|(stack, _)| stack)
}

/// As [`load_bytes`], but a file whose only problems have codes in `tolerated` still loads:
/// the stack comes back with those problems (located). `explain` uses it to show what a stack
/// that `validate` refuses for its hearing graph would do.
pub(super) fn load_tolerating(
    path: &Path,
    bytes: &[u8],
    tolerated: &[&str],
) -> Result<(Stack, Vec<Problem>), StackError> {
    if bytes.len() > MAX_STACK_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_owned(),
        Err(e) => return Err(utf8_error(path, bytes, &e)),
    };
    let text = Arc::new(text);
    let fail = |problems: Vec<Problem>| StackError::invalid(path, text.clone(), problems);
    let map = SourceMap::new(&text);

    let tree = tree::Node::parse(&text, options())
        .map_err(|e| fail(vec![parse_problem(&e, &map, None)]))?;
    let unknown = tree::unknown_keys(&tree);
    if !unknown.is_empty() {
        return Err(fail(unknown));
    }
    let file: StackFile = serde_saphyr::from_str_with_options(&text, options())
        .map_err(|e| fail(vec![parse_problem(&e, &map, Some(&tree))]))?;

    let (mut problems, resolved) = checks::check(&file, &tree, &map);
    problems.extend(strings::check(&file, &tree));
    problems.extend(strings::local_paths(&file, &tree));
    // An error refuses the stack (unless tolerated); warnings are shown with the errors when
    // there are any, and kept on the stack otherwise.
    let is_warning = |p: &Problem| p.severity == miette::Severity::Warning;
    if problems
        .iter()
        .any(|p| !is_warning(p) && !tolerated.contains(&p.code))
    {
        return Err(fail(problems));
    }
    let (warnings, tolerated): (Vec<Problem>, Vec<Problem>) =
        problems.into_iter().partition(is_warning);
    Ok((
        Stack {
            file,
            path: path.to_path_buf(),
            source: text.clone(),
            hosts: resolved.hosts,
            vip: resolved.vip,
            warnings: super::diag::locate(path, text.clone(), warnings),
        },
        super::diag::locate(path, text.clone(), tolerated),
    ))
}

/// The stack's own warnings and `risks` (code, message, key) as located warnings: each
/// points at the key it is about when it names one.
pub(super) fn risks(
    stack: &Stack,
    risks: Vec<(&'static str, String, Option<String>)>,
) -> Vec<Problem> {
    // the checks' own warnings first (e.g. AWS's /27 advice for balancer subnets)
    let mut out = stack.warnings.clone();
    if risks.is_empty() {
        return out;
    }
    let tree = tree::Node::parse(&stack.source, options()).ok();
    let problems = risks
        .into_iter()
        .map(|(code, message, key)| {
            let span = key.as_deref().and_then(|k| {
                let t = tree.as_ref()?;
                t.span(k).or_else(|| t.key_span(k)).or_else(|| {
                    // A default has no value in the file: point at the section that holds it.
                    let parent = k.rsplit_once('.')?.0;
                    t.key_span(parent)
                })
            });
            Problem::new(code, message).at(span, "here").warning()
        })
        .collect();
    out.extend(super::diag::locate(
        &stack.path,
        stack.source.clone(),
        problems,
    ));
    out
}

/// The largest stack file accepted, in bytes (4 MiB). A stack of 10,000 hosts written out in
/// block style is about 1 MiB; every check is linear or close to it, so this bounds what a
/// file from an untrusted pull request can cost `validate` (about a second and 200 MB at this
/// size) rather than being a limit any real stack meets.
pub const MAX_STACK_BYTES: usize = 4 << 20;

/// The refusal of a file over [`MAX_STACK_BYTES`] (`len` bytes, or more when the read stopped
/// at the limit).
pub(super) fn too_large(path: &Path, len: u64) -> StackError {
    let problem = Problem::new(
        "hactl::stack::too_large",
        format!(
            "the file is {len} bytes or more; stack files are limited to {MAX_STACK_BYTES} bytes (4 MiB)"
        ),
    )
    .help(
        "a stack of 10,000 hosts takes about 1 MiB: check that this is the stack file you \
         meant, and that nothing generated it in a loop",
    );
    StackError::invalid(path, Arc::new(String::new()), vec![problem])
}

/// Deepest nesting accepted. A stack file needs about 6 levels (`vip.notify.master[0].command`);
/// the parser's default of 64 is more than a debug build's 2 MiB test-thread stack survives
/// once serde's recursion is added, and a lower limit costs nothing.
const MAX_DEPTH: usize = 24;

/// Events that aliases may replay in one file. The parser's default (a million) lets a
/// half-finished alias bomb through its budgets, and building and checking the ~500,000 nodes
/// it expands to took seconds (found by the fuzz harness, `stack::fuzz`). Aliases in a stack
/// file repeat a block or two: a hundred thousand replayed events is far more than that needs.
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// The parser's options: its safe defaults (duplicate keys refused, alias and size budgets)
/// with a lower nesting limit and alias replay budget.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    opts
}

/// Invalid UTF-8: shown on the valid text before the bad byte, which is where the caret goes.
fn utf8_error(path: &Path, bytes: &[u8], e: &std::str::Utf8Error) -> StackError {
    let good = e.valid_up_to();
    let bad_len = e.error_len().unwrap_or(bytes.len() - good).max(1);
    let bad: Vec<String> = bytes[good..(good + bad_len).min(bytes.len())]
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect();
    // Keep the rest of the line (lossily) so the excerpt shows where the bad byte sits.
    let line_end = bytes[good..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| good + p)
        .unwrap_or(bytes.len());
    let mut shown = String::from_utf8_lossy(&bytes[..good]).into_owned();
    shown.push_str(&String::from_utf8_lossy(&bytes[good..line_end]));
    let caret = miette::SourceSpan::new(good.into(), '\u{fffd}'.len_utf8());
    let problem = Problem::new(
        "hactl::stack::encoding",
        format!(
            "the file is not valid UTF-8: byte {} at offset {good}",
            bad.join(" ")
        ),
    )
    .at(Some(caret), "not UTF-8")
    .help("stack files must be UTF-8; re-save the file as UTF-8 (e.g. `iconv -t UTF-8`)");
    StackError::invalid(path, Arc::new(shown), vec![problem])
}

/// The error the parser wraps inside alias and snippet wrappers.
fn original(mut err: &YamlError) -> &YamlError {
    loop {
        match err {
            YamlError::AliasError { error, .. } | YamlError::WithSnippet { error, .. } => {
                err = error
            }
            _ => return err,
        }
    }
}

/// One parser error as a problem: stable code, a message without the parser's own excerpt,
/// the span, and a hint.
///
/// When the file already parsed into a tree (errors of the typed parse), the node at the
/// error's position gives the whole token to underline and its path for the message.
fn parse_problem(err: &YamlError, map: &SourceMap, tree: Option<&tree::Node>) -> Problem {
    use serde_saphyr::budget::BudgetBreach;
    let inner = original(err);
    let mut span = err
        .location()
        .or_else(|| inner.location())
        .filter(|l| l.line() > 0)
        .map(|l| map.span(l.line() as usize, l.column() as usize, 1));
    let found = span.and_then(|s| tree.and_then(|t| t.find_at(s.offset())));
    let mut path = None;
    let mut token = None;
    if let Some((p, node)) = found {
        if let (tree::Kind::Scalar, Some(s)) = (&node.kind, node.span) {
            span = Some(s);
            token = map.text().get(s.offset()..s.offset() + s.len());
        }
        path = (!p.is_empty()).then_some(p);
    }
    let at_path = |m: String| match &path {
        Some(p) => format!("`{p}`: {m}"),
        None => m,
    };
    let raw = DefaultMessageFormatter.format_message(inner).into_owned();
    let (code, message, label, help): (&'static str, String, &str, Option<String>) = match inner {
        YamlError::DuplicateMappingKey { key, .. } => (
            "hactl::stack::duplicate_key",
            match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".into(),
            },
            "this key is already set above",
            Some("each key may appear once per mapping; remove or merge the two".into()),
        ),
        YamlError::Budget { breach, .. } => {
            let (message, help) = match breach {
                BudgetBreach::Depth { .. } => (
                    format!("the file nests too deeply (more than {MAX_DEPTH} levels)"),
                    "a stack file needs only a few levels; look for runaway `[` or `{`",
                ),
                // A big file without aliases (a generated stack of ~30,000 hosts) hits the
                // parser's node and event budgets: say so, not "alias bomb".
                BudgetBreach::Nodes { .. }
                | BudgetBreach::Events { .. }
                | BudgetBreach::ScalarBytes { .. } => (
                    "the file holds more values than a stack file may (250,000 YAML nodes, \
                     roughly 30,000 hosts)"
                        .to_string(),
                    "split the hosts over several stacks, or check that nothing generated this \
                     file in a loop",
                ),
                _ => (
                    "the file expands to too much data (an alias bomb?)".to_string(),
                    "anchors and aliases (`&a`, `*a`) that refer to each other multiply; \
                     write the values out or use fewer aliases",
                ),
            };
            (
                "hactl::stack::too_complex",
                message,
                "here",
                Some(help.into()),
            )
        }
        YamlError::AliasReplayCounterOverflow { .. }
        | YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. } => (
            "hactl::stack::too_complex",
            "the file expands to too much data (an alias bomb?)".into(),
            "here",
            Some("write the values out instead of chaining anchors and aliases".into()),
        ),
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            "hactl::stack::type_error",
            at_path(format!("unknown value `{variant}`")),
            "not one of the allowed values",
            Some(match did_you_mean(variant, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of {}", backticked(expected)),
            }),
        ),
        YamlError::SerdeMissingField { field, .. } => (
            "hactl::stack::type_error",
            match &path {
                Some(p) => format!("missing key `{field}` in `{p}`"),
                None => format!("missing key `{field}`"),
            },
            "in this mapping",
            Some(format!(
                "add `{field}:`; docs/stack.md lists what each section needs"
            )),
        ),
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => (
            "hactl::stack::unknown_key",
            format!("unknown key `{field}`"),
            "unknown key",
            Some(match did_you_mean(field, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("the keys allowed here are {}", backticked(expected)),
            }),
        ),
        YamlError::Message { .. }
        | YamlError::SerdeInvalidType { .. }
        | YamlError::SerdeInvalidValue { .. }
        | YamlError::SerdeInvalidLength { .. }
        | YamlError::InvalidScalar { .. }
        | YamlError::NullIntoString { .. }
        | YamlError::InvalidBooleanStrict { .. }
        | YamlError::Unexpected { .. } => {
            let (message, help) = if raw.contains("untagged enum Value") {
                (
                    "expected a string or a secret reference".to_string(),
                    "write the value inline as a string (quote numbers: `pass: '12345'`) or take it from the vault \
                     (`pass: {secret: NAME}`)"
                        .to_string(),
                )
            } else if raw.contains("is not a duration") {
                (
                    at_path(raw.clone()),
                    "durations look like `2s`, `500ms`, `1m`".into(),
                )
            } else {
                (
                    at_path(friendly_type(&raw, token)),
                    "docs/stack.md gives the type of every key".to_string(),
                )
            };
            ("hactl::stack::type_error", message, "here", Some(help))
        }
        _ => (
            "hactl::stack::syntax",
            format!("invalid YAML: {raw}"),
            "here",
            Some("check the indentation and the brackets/quotes just before this point".into()),
        ),
    };
    Problem::new(code, message).at(span, label).maybe_help(help)
}

/// serde's type names as a stack file's author knows them.
fn friendly_type(raw: &str, token: Option<&str>) -> String {
    let words = [
        ("i64", "a whole number"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number (0 or more)"),
        ("u16", "a whole number (0–65535)"),
        ("u8", "a whole number (0–255)"),
        ("usize", "a whole number (0 or more)"),
        ("f64", "a number"),
        ("bool", "`true` or `false`"),
    ];
    if let Some(ty) = raw.strip_prefix("invalid ") {
        if let Some((_, w)) = words.iter().find(|(t, _)| *t == ty.trim()) {
            return match token {
                Some(t) => format!("expected {w}, found `{t}`"),
                None => format!("expected {w}"),
            };
        }
    }
    let mut out = raw.to_string();
    for (t, w) in words {
        out = out.replace(&format!("expected {t}"), &format!("expected {w}"));
    }
    out
}

fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The span of the value at a key path (`aws.zones.1`) in a stack's text, or of the key when
/// the value has none: for diagnostics raised after loading (e.g. what AWS said about a zone).
pub(super) fn span_at(text: &str, path: &str) -> Option<miette::SourceSpan> {
    let tree = tree::Node::parse(text, options()).ok()?;
    tree.span(path).or_else(|| tree.key_span(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> Vec<&'static str> {
        match load_bytes(Path::new("t.yaml"), text.as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e.codes(),
        }
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(
            did_you_mean("prority", ["priority", "peers"]),
            Some("priority")
        );
        assert_eq!(did_you_mean("zzz", ["priority", "peers"]), None);
    }

    #[test]
    fn invalid_utf8_points_at_the_byte() {
        let err =
            load_bytes(Path::new("t.yaml"), b"name: x\nprovider: h\xffsts\n").expect_err("refused");
        let d = err.diagnostics();
        assert_eq!(d[0].code, "hactl::stack::encoding");
        assert_eq!((d[0].line, d[0].column), (Some(2), Some(12)));
    }

    /// `n` hosts that are all VIP hosts with default priorities (so nearly every one ties
    /// with another), block style or all on one line (flow style).
    fn tied_hosts(n: usize, one_line: bool) -> String {
        let hosts: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{{name: h{i}, address: 10.{}.{}.{}}}",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                )
            })
            .collect();
        let hosts = if one_line {
            format!("hosts: [{}]\n", hosts.join(", "))
        } else {
            format!("hosts:\n  - {}\n", hosts.join("\n  - "))
        };
        format!(
            "name: big\nprovider: hosts\n{hosts}vip: {{address: 10.255.255.254/8, interface: eth0, virtual_router_id: 51, advert_int: 1s}}\n"
        )
    }

    /// Regression (issue 15 §6): `validate` was quadratic: 8,000 hosts took 112 s and 1.1 GB
    /// (every VIP host's peer list, pairwise priority and port checks, and miette scanning the
    /// file from its start for each of the thousands of excerpts). 10,000 hosts, checked and
    /// every diagnostic rendered as `validate` prints it, in block and in one-line flow style
    /// (where each column lookup used to walk the line). Release build: ~0.2 s (see
    /// docs/benchmarks.md); the bound here is for a debug build on a loaded machine.
    #[test]
    fn ten_thousand_hosts_are_checked_and_reported_in_linear_time() {
        for one_line in [false, true] {
            let text = tied_hosts(10_000, one_line);
            let t0 = std::time::Instant::now();
            let err = load_bytes(Path::new("big.yaml"), text.as_bytes()).expect_err("ties");
            let ties = err
                .codes()
                .iter()
                .filter(|c| **c == "hactl::stack::priority_tie")
                .count();
            assert!(ties > 9_000, "{ties} ties");
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            );
            let mut out = String::new();
            handler.render_report(&mut out, &err).expect("renders");
            assert!(out.contains("big.yaml:"), "located");
            let took = t0.elapsed();
            assert!(
                took < std::time::Duration::from_secs(60),
                "10,000 hosts (one line: {one_line}) took {took:?}"
            );
        }
    }

    /// A file under the byte cap with more values than the parser's node budget is refused
    /// as too big, not as an "alias bomb" it does not contain.
    #[test]
    fn too_many_values_is_not_called_an_alias_bomb() {
        let text = format!("name: x\nvars: [{}]\n", vec!["0"; 260_000].join(","));
        let err = load_bytes(Path::new("t.yaml"), text.as_bytes()).expect_err("refused");
        let d = err.diagnostics();
        assert_eq!(d[0].code, "hactl::stack::too_complex");
        assert!(d[0].message.contains("more values"), "{}", d[0].message);
        assert!(!d[0].message.contains("alias"), "{}", d[0].message);
    }

    /// Issue 15 §6: there was no cap on the input, so a large file cost whatever it cost.
    #[test]
    fn files_over_the_size_cap_are_refused_with_a_clear_diagnostic() {
        let big = format!("name: x\n#{}\n", "a".repeat(MAX_STACK_BYTES));
        let err = load_bytes(Path::new("big.yaml"), big.as_bytes()).expect_err("refused");
        let d = err.diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "hactl::stack::too_large");
        assert!(d[0].message.contains("4194304 bytes"), "{}", d[0].message);
        assert_eq!(d[0].file, "big.yaml");
    }

    #[test]
    fn parser_errors_get_codes() {
        assert_eq!(codes("a: 1\na: 2\n"), vec!["hactl::stack::duplicate_key"]);
        assert_eq!(codes("a: [1, 2\nb: 3\n"), vec!["hactl::stack::syntax"]);
        let deep = format!("name: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(codes(&deep), vec!["hactl::stack::too_complex"]);
        assert_eq!(
            codes("name: x\nprovider: cloud\nhosts: []\n"),
            vec!["hactl::stack::type_error"]
        );
    }
}
