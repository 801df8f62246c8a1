//! Rules about the source tree itself, checked by reading it: only `view/` and `main.rs`
//! print, and every command file stays args → settings → engine → view (short). No binary
//! is run; these fail with the file and line that break the rule.

use std::path::{Path, PathBuf};

use crate::support::root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ reads") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// What writes to the terminal by itself: the print macros, and the process's stdout/stderr
/// handles (asking `is_terminal()` of them writes nothing and is allowed).
fn prints(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]
        .iter()
        .any(|m| code.contains(m))
        || ["io::stdout()", "io::stderr()"]
            .iter()
            .any(|h| code.contains(h) && !code.contains(".is_terminal()"))
}

/// The design's rule (docs: DESIGN.md, "Only view/ and main.rs print"): output goes through
/// `view`, so `--json` stays one document and progress stays on stderr.
#[test]
fn only_view_and_main_print() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("view/") || rel == "main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if prints(line) {
                bad.push(format!("src/{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "only src/view/ and src/main.rs print; go through `view`:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_print_rule_sees_what_it_forbids() {
    assert!(prints(r#"    eprintln!("x");"#));
    assert!(prints(
        "    let _ = writeln!(std::io::stdout().lock(), \"x\");"
    ));
    assert!(!prints("    if std::io::stdout().is_terminal() {"));
    assert!(!prints("    // println! in a comment"));
}

/// The longest a command file may be: clap's args, reading settings, one call into the
/// engine, one into the view.
const MAX_COMMAND_LINES: usize = 150;

#[test]
fn no_command_file_over_150_lines() {
    let cli = root().join("src/cli");
    let mut over = Vec::new();
    for e in std::fs::read_dir(&cli).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let n = std::fs::read_to_string(&p).unwrap().lines().count();
        if n > MAX_COMMAND_LINES {
            over.push(format!("src/cli/{name}: {n} lines"));
        }
    }
    over.sort();
    assert!(
        over.is_empty(),
        "command files are args → settings → engine → view, at most {MAX_COMMAND_LINES} lines; \
         move logic to the module that owns it:\n{}",
        over.join("\n")
    );
}
