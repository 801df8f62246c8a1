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

/// `hactl schema` is the stack format as a JSON Schema; every example stack names the committed
/// copy in its first line (so editors validate it) and passes it.
#[test]
fn every_example_stack_matches_the_json_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&support::ok(&["schema"])).expect("`hactl schema` prints JSON");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("docs/stack.schema.json"))
            .expect("docs/stack.schema.json"),
    )
    .expect("docs/stack.schema.json is JSON");
    assert_eq!(
        schema, committed,
        "docs/stack.schema.json is stale: run `hactl schema > docs/stack.schema.json`"
    );
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let stacks = yaml_files(&support::root().join("stacks"));
    for s in &stacks {
        let text = std::fs::read_to_string(s).expect("readable");
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../docs/stack.schema.json"),
            "{} does not start with the yaml-language-server modeline",
            s.display()
        );
        let doc: serde_json::Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", s.display());
    }
    // and the schema refuses what validate refuses for its shape: an unknown key, a wrong type
    for bad in [
        serde_json::json!({"name": "x", "provider": "hosts", "hostz": []}),
        serde_json::json!({"name": "x", "provider": "cloud"}),
        serde_json::json!({"name": "x", "provider": "hosts", "vip": {"address": "a", "virtual_router_id": "one"}}),
    ] {
        assert!(!validator.is_valid(&bad), "the schema accepted {bad}");
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

/// Every file in `tests/fixtures/warnings/` is valid (exit 0) but risky: `validate` prints each
/// risk as a located warning (file:line:col, caret, code) on stderr, snapshotted per fixture,
/// and `validate --json` lists the same codes under `warnings`.
#[test]
fn warning_fixtures_validate_with_located_warnings() {
    let fixtures = yaml_files(&support::root().join("tests/fixtures/warnings"));
    assert!(fixtures.len() >= 5, "only {} fixtures", fixtures.len());
    for f in &fixtures {
        let path = rel(f);
        let o = support::run(&["validate", "-f", &path]);
        let err = support::stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{path} was refused:\n{err}");
        assert!(
            err.contains(&format!("[{path}:")),
            "{path}: no file:line:col in\n{err}"
        );
        assert!(err.contains("hactl::"), "{path}: no code in\n{err}");
        let name = f
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        insta::with_settings!({
            prepend_module_to_snapshot => false,
            snapshot_suffix => name.clone(),
            description => format!("hactl validate -f {path}"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!("stack_warnings", err);
        });
        let o = support::run(&["validate", "-f", &path, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["valid"], true);
        let codes: Vec<&str> = v["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .filter_map(|w| w["code"].as_str())
            .collect();
        assert!(!codes.is_empty(), "{path}: no warnings in {v}");
        for c in &codes {
            assert!(
                err.contains(c),
                "{path}: {c} is in --json but not on stderr"
            );
        }
    }
}

/// One list of risks: `plan` and `up` print the warnings `validate` prints, located the same
/// way, before anything else happens (here the stack has no vault, so both stop right after,
/// without touching a host).
#[test]
fn plan_and_up_print_the_same_risks_as_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text =
        std::fs::read_to_string(support::root().join("tests/fixtures/warnings/flapping.yaml"))
            .expect("fixture");
    let edited = text.replace(
        "  virtual_router_id: 51\n",
        "  virtual_router_id: 51\n  auth_pass: {secret: vrrp_password}\n",
    );
    assert_ne!(edited, text);
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, edited).expect("write");
    let p = path.display().to_string();
    let warnings = |args: &[&str]| {
        let o = support::hactl()
            .args(args)
            .env_remove("HACTL_AGE_KEY")
            .env_remove("HACTL_AGE_KEY_FILE")
            .env("HOME", dir.path())
            .output()
            .expect("hactl runs");
        let err = support::stderr(&o);
        // Up to the first error: the warnings come first.
        err.split("hactl::vault::").next().unwrap_or("").to_string()
    };
    let validate = warnings(&["validate", "-f", &p]);
    assert!(validate.contains("hactl::vrrp::flapping"), "{validate}");
    assert!(validate.contains(&format!("[{p}:21:13]")), "{validate}");
    assert_eq!(warnings(&["plan", "-f", &p]), validate);
    assert_eq!(warnings(&["up", "-f", &p, "--auto-approve"]), validate);
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

/// Issue 12 §2: a /28 subnet is AWS-legal (the smallest subnet) and enough for an NLB (8 free
/// addresses), but an ALB's subnets must be /27 or larger (ELB User Guide for ALBs). It was a
/// warning for both; now the NLB stack validates without one and the ALB stack is refused,
/// located at the subnet.
#[test]
fn aws_subnet_of_28_is_refused_for_an_alb_and_valid_for_an_nlb() {
    let path = "tests/fixtures/warn/aws-lb-subnets-28.yaml";
    let o = support::run(&["validate", "-f", path, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", support::stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("JSON");
    assert_eq!(doc["valid"], true);
    assert!(
        doc["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "{doc}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let alb = dir.path().join("alb.yaml");
    let text = std::fs::read_to_string(support::root().join(path)).expect("fixture");
    std::fs::write(
        &alb,
        text.replace("kind: nlb", "kind: alb")
            .replace("protocol: TCP", "protocol: HTTP"),
    )
    .expect("write");
    let o = support::run(&["validate", "-f", &alb.display().to_string(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", support::stdout(&o));
    let doc: serde_json::Value = serde_json::from_str(&support::stdout(&o)).expect("JSON");
    let e = &doc["diagnostics"][0];
    assert_eq!(e["code"], "hactl::stack::aws_cidr", "{doc}");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(11), Some(15)),
        "{doc}"
    );
}
