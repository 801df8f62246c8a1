//! `--json` prints exactly one JSON document per command, with `format_version`, whether
//! the command succeeds or fails (docs/json.md); `--json-events` prints NDJSON whose last
//! line is that document.
//!
//! The commands run on the lab stack whether or not a lab is up: none of them changes
//! anything (`up`, `down` and `deploy` run without `--auto-approve` and are refused at the
//! missing terminal; `heal` runs `--dry-run`; `drill` gets a stack file that does not exist).

use serde_json::Value;

use crate::support::{run, stderr, stdout};

const STACK: &str = "stacks/lab.yaml";

/// Every command that has `--json`, with arguments that keep it from changing anything.
fn commands() -> Vec<Vec<&'static str>> {
    let f = |c: &[&'static str]| {
        let mut v = c.to_vec();
        v.extend(["-f", STACK, "--json"]);
        v
    };
    vec![
        f(&["validate"]),
        f(&["render"]),
        f(&["plan"]),
        f(&["up", "--no-wait"]),
        f(&["down"]),
        f(&["heal", "--dry-run", "--no-wait"]),
        f(&["status"]),
        f(&["explain", "vip"]),
        f(&["outputs"]),
        f(&["logs", "--since", "1m"]),
        f(&["secrets", "list"]),
        f(&["deploy", "history"]),
        f(&["state", "lock-info"]),
        vec![
            "drill",
            "-f",
            "stacks/no-such-stack.yaml",
            "--scenario",
            "service-stop",
            "--json",
        ],
        f(&["validate", "--json-events"]),
    ]
}

/// The JSON values on stdout, in order.
fn documents(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}"))
}

#[test]
fn every_json_command_prints_exactly_one_document() {
    let mut bad = Vec::new();
    for args in commands() {
        if args.contains(&"--json-events") {
            continue;
        }
        let o = run(&args);
        let out = stdout(&o);
        let docs = documents(&out);
        if docs.len() != 1 {
            bad.push(format!(
                "hactl {args:?}: {} documents\nstdout:\n{out}\nstderr:\n{}",
                docs.len(),
                stderr(&o)
            ));
            continue;
        }
        let d = &docs[0];
        if d["format_version"] != "1.0" || !d["command"].is_string() {
            bad.push(format!("hactl {args:?}: no format_version/command: {d}"));
        }
        // A failure is in the document too (its `error`, or the result that says what
        // failed), never only on stderr.
        let fields = d.as_object().map_or(0, |m| m.len());
        if !o.status.success() && fields <= 2 {
            bad.push(format!("hactl {args:?} failed with an empty document: {d}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn json_events_end_with_the_document() {
    let o = run(&["validate", "-f", STACK, "--json-events"]);
    let out = stdout(&o);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not NDJSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("at least the document event");
    assert_eq!(last["type"], "document", "{out}");
    assert_eq!(last["format_version"], "1.0");
    assert_eq!(last["document"]["command"], "validate");
    for l in &lines {
        assert!(l["timestamp"].is_string(), "{l}");
    }
}

#[test]
fn json_events_is_refused_by_a_command_without_json() {
    let o = run(&["schema", "--json-events"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no `--json`"), "{}", stderr(&o));
}
