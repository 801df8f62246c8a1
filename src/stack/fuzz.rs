//! The fuzz harness of [`super::load`] + render: a stack file from an untrusted pull request
//! (CI runs `validate`, `plan` and `render` on them) must give a diagnostic or a rendering,
//! never a panic, and in bounded time.
//!
//! Inputs come from two generators, run for a time budget rather than a case count:
//! - **mutations of real stacks**: every `stacks/*.yaml` and `tests/fixtures/**/*.yaml` (read at
//!   run time, so a new example is a new seed without editing this file), with 1–8 edits each:
//!   a value replaced by an interesting one (integer extremes, overflowing numbers, durations,
//!   non-ASCII, control characters, quotes, YAML indicators, hostile shell/config strings), a
//!   line deleted, duplicated, swapped, re-indented or inserted, bytes inserted, the file cut;
//! - **arbitrary documents**: JSON (which is YAML flow style, and all on one line) built from
//!   the keys the seeds use and the same interesting values.
//!
//! Each case runs `load_bytes`; a refused file has its diagnostics rendered by miette as
//! `hactl validate` prints them (spans must be inside the text); an accepted one is rendered
//! for every host with every secret it references set to a hostile value.
//!
//! Budget: `HACTL_FUZZ_SECS` (default 10 s, so a local `cargo test` stays quick; CI sets 60 s
//! in `scripts/test.sh`; a long run: `HACTL_FUZZ_SECS=600 nice -n 19 cargo test --bin hactl
//! stack::fuzz -- --nocapture`). `PROPTEST_RNG_SEED` replays a run. A failure is shrunk by
//! proptest and printed with the exact file text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::vault::{Secret, Secrets};

/// One seed file.
struct Seed {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// The seeds and the keys they use, read once.
struct Corpus {
    seeds: Vec<Seed>,
    keys: Vec<String>,
}

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        let mut dirs = vec![root.join("stacks"), root.join("tests/fixtures")];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    paths.push(p);
                }
            }
        }
        paths.sort();
        let seeds: Vec<Seed> = paths
            .into_iter()
            .filter_map(|path| {
                let bytes = std::fs::read(&path).ok()?;
                Some(Seed { path, bytes })
            })
            .collect();
        let mut keys: Vec<String> = seeds
            .iter()
            .flat_map(|s| {
                String::from_utf8_lossy(&s.bytes)
                    .lines()
                    .filter_map(|l| {
                        let t = l.trim_start().trim_start_matches("- ");
                        let (k, _) = t.split_once(':')?;
                        (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                            .then(|| k.to_string())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort();
        keys.dedup();
        Corpus { seeds, keys }
    })
}

/// Values that have broken parsers before or are likely to: integer and float extremes,
/// durations at and past their limits, YAML's special scalars, multi-byte and control
/// characters, quotes and the metacharacters of every format a value lands in.
const INTERESTING: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "65535",
    "65536",
    "65435",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "1e309",
    "-0",
    "0x7fffffffffffffff",
    "0o777",
    ".inf",
    "-.inf",
    ".nan",
    "1.5",
    "0s",
    "1ms",
    "100ms",
    "0.001s",
    "1.0000001s",
    "999999999h",
    "1e12",
    "300s",
    "3601s",
    "41s",
    "~",
    "null",
    "true",
    "''",
    "\"\"",
    "[]",
    "{}",
    "[[[[]]]]",
    "{secret: x}",
    "{secret: ''}",
    "&a x",
    "*a",
    "!!binary aGk=",
    "!custom x",
    "é",
    "ééééééééééééééééééééé",
    "2026-11-2é01:31:24Z",
    "日本語",
    "\u{202e}evil",
    "\u{feff}",
    "\"\\x1b[2J\\x07\"",
    "\"a\\nb\"",
    "\"a\\u0000b\"",
    "\"'\"",
    "'\"'",
    "\"/x\\\"; id >/tmp/x; echo \\\"\"",
    "\"${HOME}\"",
    "\"$(reboot)\"",
    "\"}\"",
    "\"a # b\"",
    "\"a;b\"",
    "\"../../etc/passwd\"",
    "/",
    "//",
    "198.18.0.11",
    "198.18.0.11/33",
    "::1",
    "fe80::1%eth0",
    "0.0.0.0/0",
    "300.1.1.1",
    "http://127.0.0.1:80/healthz",
    "http://[::1]:99999/",
    "eth0",
    "hosts",
    "aws",
    "unicast",
    "multicast",
    "redis",
];

/// One edit of a seed's text. Indices are taken modulo the text's lines or bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace what follows the first `: ` of a line (or the whole line) with a value.
    SetValue(usize, String),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Indent a line by two more spaces (`true`) or two fewer.
    Indent(usize, bool),
    InsertLine(usize, String),
    InsertBytes(usize, Vec<u8>),
    Truncate(usize),
}

/// One generated stack file.
#[derive(Clone)]
enum Case {
    Mutated { seed: usize, edits: Vec<Mutation> },
    Json(String),
}

impl Case {
    /// The file text, and the path it is loaded as (a seed's own, so relative template and
    /// vault paths resolve as they do for the real file).
    fn build(&self) -> (PathBuf, Vec<u8>) {
        let c = corpus();
        match self {
            Case::Json(t) => (c.seeds[0].path.clone(), t.clone().into_bytes()),
            Case::Mutated { seed, edits } => {
                let s = &c.seeds[*seed % c.seeds.len()];
                let mut bytes = s.bytes.clone();
                for e in edits {
                    bytes = apply(bytes, e);
                }
                (s.path.clone(), bytes)
            }
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, bytes) = self.build();
        match self {
            Case::Mutated { edits, .. } => writeln!(f, "{} with {edits:?}", path.display())?,
            Case::Json(_) => writeln!(f, "a JSON document")?,
        }
        write!(f, "---\n{}\n---", String::from_utf8_lossy(&bytes))
    }
}

fn apply(bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::SetValue(i, v) => {
            let l = &mut lines[i % n];
            let at = l.windows(2).position(|w| w == b": ").map(|p| p + 2);
            match at {
                Some(p) => {
                    l.truncate(p);
                    l.extend_from_slice(v.as_bytes());
                }
                None => *l = v.as_bytes().to_vec(),
            }
        }
        Mutation::DeleteLine(i) => {
            if !lines.is_empty() {
                lines.remove(i % n);
            }
        }
        Mutation::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        Mutation::Indent(i, more) => {
            let l = &mut lines[i % n];
            if *more {
                l.splice(0..0, *b"  ");
            } else if l.starts_with(b"  ") {
                l.drain(..2);
            }
        }
        Mutation::InsertLine(i, t) => lines.insert(i % (n + 1), t.as_bytes().to_vec()),
        Mutation::InsertBytes(i, b) => {
            let mut flat = lines.join(&b'\n');
            let at = i % (flat.len() + 1);
            flat.splice(at..at, b.iter().copied());
            return flat;
        }
        Mutation::Truncate(i) => {
            let mut flat = lines.join(&b'\n');
            flat.truncate(i % (flat.len() + 1));
            return flat;
        }
    }
    lines.join(&b'\n')
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(INTERESTING).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => "[a-z0-9_./:-]{0,12}",
        1 => "\\PC{0,8}".prop_map(|s| format!("{s:?}")),
        1 => (1usize..2000).prop_map(|n| "x".repeat(n)),
    ]
}

fn key() -> impl Strategy<Value = String> {
    let keys = corpus().keys.clone();
    prop_oneof![
        8 => prop::sample::select(keys),
        1 => "[a-z_]{1,10}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        8 => (any::<usize>(), value()).prop_map(|(i, v)| Mutation::SetValue(i, v)),
        2 => any::<usize>().prop_map(Mutation::DeleteLine),
        2 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, m)| Mutation::Indent(i, m)),
        2 => (any::<usize>(), key(), value(), 0usize..4).prop_map(|(i, k, v, d)| {
            Mutation::InsertLine(i, format!("{}{k}: {v}", "  ".repeat(d)))
        }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        1 => (any::<usize>(), "[\\[\\]{}:,&*!|>'\"#%@`\\-? \t\n]{1,3}")
            .prop_map(|(i, s)| Mutation::InsertBytes(i, s.into_bytes())),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// A JSON document: a stack-shaped top level (so validation gets past the first keys) with
/// arbitrary values below.
fn json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        value().prop_map(serde_json::Value::String),
    ];
    let tree = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let host = ("[a-z]{1,3}[0-9]?", 0u8..20, prop::option::of(0i64..300)).prop_map(|(n, a, p)| {
        let mut h = serde_json::json!({"name": n, "address": format!("198.18.0.{a}")});
        if let Some(p) = p {
            h["priority"] = p.into();
        }
        h
    });
    (
        prop::sample::select(vec!["hosts", "aws", "x"]),
        prop::collection::vec(host, 0..5),
        prop::collection::btree_map(key(), tree, 0..8),
    )
        .prop_map(|(provider, hosts, rest)| {
            let mut doc = serde_json::json!({"name": "fuzz", "provider": provider, "hosts": hosts});
            for (k, v) in rest {
                doc[k] = v;
            }
            doc.to_string()
        })
}

fn case() -> impl Strategy<Value = Case> {
    let n = corpus().seeds.len();
    prop_oneof![
        4 => (0..n, prop::collection::vec(mutation(), 1..8))
            .prop_map(|(seed, edits)| Case::Mutated { seed, edits }),
        1 => json().prop_map(Case::Json),
    ]
}

/// CPU time of this thread: a case's cost without the machine's load (the harness runs
/// beside other tests and builds, and at `nice -n 19` for long runs).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Loads, and renders what loads; panics are the failures proptest catches and shrinks.
/// Returns the CPU time the case took.
fn run_case(c: &Case) -> Duration {
    let t0 = thread_cpu();
    let (path, bytes) = c.build();
    match super::load_bytes(&path, &bytes) {
        Err(e) => {
            // What `validate` prints: every span must fall inside the text.
            let mut out = String::new();
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            );
            let report = miette::Report::new(e);
            let _ = handler.render_report(&mut out, report.as_ref());
            if let Some(e) = report.downcast_ref::<super::StackError>() {
                let _ = e.diagnostics();
            }
        }
        Ok(stack) => {
            let mut secrets = Secrets::default();
            for (i, r) in crate::vault::references(&stack).iter().enumerate() {
                let v = INTERESTING[i % INTERESTING.len()];
                secrets.insert(r.name.clone(), Secret::new(format!("p\"w'\n{v}$")));
            }
            let _ = crate::engine::render_all(&stack, &secrets);
        }
    }
    thread_cpu().saturating_sub(t0)
}

/// Seconds the harness runs for (`HACTL_FUZZ_SECS`, default 10).
fn budget() -> Duration {
    let secs = std::env::var("HACTL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// The most CPU time a single case may take (debug build): a case near this is a
/// complexity bug (typical cases take milliseconds; the alias-bomb fixture's mutations, the
/// slowest found, under one second).
const SLOW_CASE: Duration = Duration::from_secs(10);

#[test]
fn load_and_render_never_panic() {
    let c = corpus();
    assert!(
        c.seeds.len() >= 10,
        "the seeds (stacks/*.yaml, tests/fixtures) were not found: {}",
        c.seeds.len()
    );
    let deadline = Instant::now() + budget();
    let cases = AtomicUsize::new(0);
    let slowest = AtomicU64::new(0);
    let config = Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    };
    // A runner runs its `cases` once; each batch gets a fresh one, its RNG forked from one
    // source so that `PROPTEST_RNG_SEED` still replays the whole run.
    let mut source = TestRunner::new(config.clone());
    let strategy = case();
    loop {
        let mut runner = TestRunner::new_with_rng(config.clone(), source.new_rng());
        let r = runner.run(&strategy, |input| {
            let took = run_case(&input);
            if took > Duration::from_millis(500) {
                let text = format!("{input:?}");
                let end = (0..=text.len().min(3000))
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                crate::view::note(&format!(
                    "stack::fuzz: slow case ({took:?}): {}",
                    &text[..end]
                ));
            }
            cases.fetch_add(1, Ordering::Relaxed);
            slowest.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
            prop_assert!(took < SLOW_CASE, "one case took {took:?}");
            Ok(())
        });
        if let Err(e) = r {
            panic!("{e}");
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    crate::view::note(&format!(
        "stack::fuzz: {} cases from {} seeds and JSON documents, 0 panics, slowest {} ms CPU",
        cases.load(Ordering::Relaxed),
        c.seeds.len(),
        slowest.load(Ordering::Relaxed)
    ));
}
