//! Integration tests: stack files through the real binary.
//!
//! Every example in `stacks/` must validate; every file in `tests/fixtures/invalid/` must be
//! refused with exit code 1, without a panic, and its rendered diagnostics (file:line:col, the
//! source line, the caret, the code and the hint) are snapshotted, one snapshot per fixture.
//! The JSON form of `validate` is checked against the same fixtures.

use std::path::{Path, PathBuf};

use crate::support;

/// Files of `dir` with the `.yaml` extension, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The path relative to the crate root, as the binary is given it (and prints it).
fn rel(p: &Path) -> String {
    p.strip_prefix(support::root())
        .expect("inside the crate")
        .display()
        .to_string()
}

#[test]
fn every_example_stack_validates() {
    let stacks = yaml_files(&support::root().join("stacks"));
    assert!(
        stacks.len() >= 6,
        "expected lab.yaml and five seed stacks, found {stacks:?}"
    );
    for s in &stacks {
        let out = support::ok(&["validate", "-f", &rel(s)]);
        assert!(out.contains("is valid"), "{}: {out}", s.display());
    }
}

#[test]
fn every_seed_has_an_example_stack() {
    for seed in [
        "seed-000-syslog-active-passive.yaml",
        "seed-001-haproxy-vip.yaml",
        "seed-002-redis-failover.yaml",
        "seed-003-aws-web.yaml",
        "seed-004-keepalived-3-node.yaml",
        "lab.yaml",
    ] {
        assert!(
            support::root().join("stacks").join(seed).is_file(),
            "stacks/{seed} is missing"
        );
    }
}

#[test]
fn invalid_fixtures_are_refused_with_located_diagnostics() {
    let fixtures = yaml_files(&support::root().join("tests/fixtures/invalid"));
    assert!(fixtures.len() >= 24, "only {} fixtures", fixtures.len());
    let root = support::root().display().to_string();
    for f in &fixtures {
        let path = rel(f);
        let o = support::run(&["validate", "-f", &path]);
        let err = support::stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{path} was not refused with exit code 1:\n{err}"
        );
        assert!(!err.contains("panicked"), "{path} made hactl panic:\n{err}");
        assert!(
            err.contains(&format!("[{path}:")),
            "{path}: no file:line:col in\n{err}"
        );
        assert!(err.contains("hactl::stack::"), "{path}: no code in\n{err}");
        let root_re = regex_escape(&root);
        let name = f
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        insta::with_settings!({
            filters => vec![(root_re.as_str(), "[ROOT]")],
            prepend_module_to_snapshot => false,
            snapshot_suffix => name.clone(),
            description => format!("hactl validate -f {path}"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!("stack_invalid", err);
        });
    }
}

/// insta filters are regexes; the root path is a literal.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[test]
fn every_problem_is_reported_at_once() {
    let o = support::run(&[
        "validate",
        "-f",
        "tests/fixtures/invalid/many-problems.yaml",
    ]);
    let err = support::stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    for code in [
        "hactl::stack::name",
        "hactl::stack::peer_unknown",
        "hactl::stack::duplicate_address",
        "hactl::stack::duplicate_host",
        "hactl::stack::vip_subnet",
        "hactl::stack::virtual_router_id",
        "hactl::stack::advert_int",
        "hactl::stack::auth_pass",
        "hactl::stack::duration",
        "hactl::stack::check_weight",
        "hactl::stack::port_conflict",
    ] {
        assert!(err.contains(code), "{code} missing from\n{err}");
    }
    assert!(err.contains("11 problems"), "{err}");
}

#[test]
fn unknown_keys_are_all_reported_with_suggestions() {
    let o = support::run(&[
        "validate",
        "-f",
        "tests/fixtures/invalid/unknown-keys-typo.yaml",
    ]);
    let err = support::stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("unknown key `hosts[1].prority`"), "{err}");
    assert!(err.contains("did you mean `priority`?"), "{err}");
    assert!(err.contains("unknown key `vip.adress`"), "{err}");
    assert!(err.contains("did you mean `address`?"), "{err}");
    assert!(err.contains("unknown key `vip.advert_interval`"), "{err}");
}

#[test]
fn validate_json_lists_diagnostics_on_stdout() {
    let o = support::run(&[
        "validate",
        "-f",
        "tests/fixtures/invalid/priority-tie.yaml",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", support::stderr(&o));
    let doc: serde_json::Value =
        serde_json::from_str(&support::stdout(&o)).expect("one JSON document on stdout");
    assert_eq!(doc["valid"], false);
    let diags = doc["diagnostics"].as_array().expect("diagnostics list");
    assert_eq!(diags.len(), 1, "{doc:#}");
    let d = &diags[0];
    assert_eq!(d["code"], "hactl::stack::priority_tie");
    assert_eq!(d["line"], 13);
    assert_eq!(d["column"], 15);
    assert!(d["message"]
        .as_str()
        .expect("message")
        .contains("same priority 100"));
    assert!(d["help"].as_str().is_some_and(|h| !h.is_empty()));

    let o = support::run(&["validate", "-f", "stacks/lab.yaml", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", support::stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("JSON");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["stack"], "lab");
    assert_eq!(doc["diagnostics"].as_array().map(Vec::len), Some(0));
}

#[test]
fn validate_json_reports_a_missing_file() {
    let o = support::run(&[
        "validate",
        "-f",
        "tests/fixtures/no-such-stack.yaml",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("JSON");
    assert_eq!(doc["diagnostics"][0]["code"], "hactl::stack::io");
}

#[test]
fn a_non_utf8_file_is_located_not_garbled() {
    let o = support::run(&["validate", "-f", "tests/fixtures/invalid/not-utf8.yaml"]);
    let err = support::stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("hactl::stack::encoding"), "{err}");
    assert!(
        err.contains("[tests/fixtures/invalid/not-utf8.yaml:5:14]"),
        "{err}"
    );
}

/// A load balancer subnet smaller than /27 is AWS-legal (/28 is the smallest subnet) but not
/// what ELB asks for: `validate` accepts the stack and warns, located, on stderr and in JSON.
#[test]
fn aws_lb_subnet_below_27_is_a_located_warning() {
    let path = "tests/fixtures/warn/aws-lb-subnets-28.yaml";
    let o = support::run(&["validate", "-f", path]);
    let err = support::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(support::stdout(&o).contains("is valid"));
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("aws_lb_subnet_warning", err);
    });
    let o = support::run(&["validate", "-f", path, "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("JSON");
    assert_eq!(doc["valid"], true);
    let w = &doc["warnings"][0];
    assert_eq!(w["code"], "hactl::stack::aws_cidr");
    assert_eq!(w["severity"], "warning");
    assert_eq!(
        (w["line"].as_u64(), w["column"].as_u64()),
        (Some(9), Some(15))
    );
}
