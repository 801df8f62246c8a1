//! The module graph: no import cycle between the top-level modules of `src/`.
//!
//! A cycle (`render` → `deploy` → `provider` → `plan` → `render`, as the tree had) means no
//! module can be read, tested or moved without the others; layering is what lets `stack`,
//! `plan`, `render` and `onhost` stay pure. This test reads the sources (no compiler help
//! needed): an edge `A → B` is a `crate::B…` path (or `crate::{B, …}`) in a file of module
//! `A`, outside comments and outside test code (`#[cfg(test)]` modules and files), since
//! tests may reach across layers. It fails on any cycle, naming the files that make each of
//! its edges.
//!
//! [`KNOWN`] lists edges that close cycles today and are being removed by other work; they
//! are left out of the check. An entry whose edge no longer exists fails the test too, so the
//! list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges that close a cycle today, with the work that removes each (the lead deletes an
/// entry when that work is merged; a stale entry fails [`no_import_cycle_between_top_level_modules`]).
const KNOWN: &[(&str, &str, &str)] = &[];

/// One `.rs` file: its top-level module and its text without comments and test code.
struct Source {
    rel: String,
    top: String,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text before a file's first inline `#[cfg(test)] mod NAME {` (test modules sit at the
/// end of a file by convention here), and the names of out-of-line modules it declares under
/// `#[cfg(test)]`.
fn split_tests(text: &str) -> (&str, Vec<String>) {
    let mut test_mods = Vec::new();
    let mut cut = text.len();
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find("#[cfg(test)]") {
        let after = rest[i + "#[cfg(test)]".len()..].trim_start();
        let after = after.strip_prefix("pub(crate) ").unwrap_or(after);
        if let Some(decl) = after.strip_prefix("mod ") {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let tail = decl[name.len()..].trim_start();
            if tail.starts_with('{') {
                cut = cut.min(offset + i);
            } else if tail.starts_with(';') {
                test_mods.push(name);
            }
        }
        offset += i + 1;
        rest = &rest[i + 1..];
    }
    (&text[..cut], test_mods)
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sources() -> Vec<Source> {
    let root = src_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    // Files that are test-only modules: `#[cfg(test)] mod x;` in their parent.
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let (_, mods) = split_tests(&text);
        let dir = match f.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs") | Some("main.rs") => f.parent().map(Path::to_path_buf),
            _ => Some(f.with_extension("")),
        };
        if let Some(dir) = dir {
            for m in mods {
                test_only.insert(dir.join(format!("{m}.rs")));
                test_only.insert(dir.join(&m));
            }
        }
    }
    files
        .into_iter()
        .filter(|f| !test_only.iter().any(|t| f.starts_with(t)))
        .filter_map(|f| {
            let rel = f.strip_prefix(&root).ok()?.to_string_lossy().into_owned();
            let top = rel.split('/').next()?.trim_end_matches(".rs").to_string();
            if top == "main" {
                return None;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let (code, _) = split_tests(&text);
            Some(Source {
                rel,
                top,
                text: strip_comments(code),
            })
        })
        .collect()
}

/// The top-level modules a text names through `crate::`.
fn targets(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let preceded = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[i + "crate::".len()..];
        if preceded {
            continue; // `hactl_crate::` and the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first word of each top-level item
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[k..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        let word: String = group[k..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(word);
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(word);
        }
    }
    out
}

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// `from → to → files`, over top-level modules only.
fn graph() -> Graph {
    let srcs = sources();
    let tops: BTreeSet<String> = srcs.iter().map(|s| s.top.clone()).collect();
    let mut g = Graph::new();
    for s in &srcs {
        g.entry(s.top.clone()).or_default();
        for t in targets(&s.text) {
            if t != s.top && tops.contains(&t) {
                g.entry(s.top.clone())
                    .or_default()
                    .entry(t)
                    .or_default()
                    .insert(s.rel.clone());
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let mut g = graph();
    assert!(
        g.contains_key("render") && g.contains_key("onhost"),
        "the walk found no sources under {}",
        src_dir().display()
    );
    let mut stale = Vec::new();
    for (from, to, why) in KNOWN {
        match g.get_mut(*from).and_then(|m| m.remove(*to)) {
            Some(_) => {}
            None => stale.push(format!("{from} → {to} ({why})")),
        }
    }
    assert!(
        stale.is_empty(),
        "these known edges are gone: delete them from KNOWN in src/imports.rs:\n  {}",
        stale.join("\n  ")
    );
    let found = cycles(&g);
    let mut report = String::new();
    for comp in &found {
        report.push_str(&format!("cycle among {}:\n", comp.join(", ")));
        for a in comp {
            for (b, files) in &g[a] {
                if comp.contains(b) {
                    let files: Vec<_> = files.iter().map(String::as_str).collect();
                    report.push_str(&format!("  {a} → {b}: {}\n", files.join(", ")));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n{report}"
    );
}

/// `onhost` is the leaf every module that talks to hosts imports: it imports nothing of
/// hactl, so it can never be part of a cycle.
#[test]
fn onhost_imports_nothing_of_hactl() {
    let g = graph();
    let deps: Vec<_> = g["onhost"].iter().collect();
    assert!(deps.is_empty(), "onhost imports {deps:?}");
}

#[test]
fn paths_are_read_from_every_form_of_use() {
    let t = targets(
        "use crate::{stack, view::plan, ExitStatus};\nlet x = crate::render::q(1);\nmy_crate::deploy::x;\nuse crate::{a::{b, c}, d};",
    );
    let want: BTreeSet<String> = ["stack", "view", "ExitStatus", "render", "a", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(t, want);
    let (code, mods) = split_tests(
        "fn a() {}\n#[cfg(test)]\nmod hostile;\n#[cfg(test)]\nmod tests {\n use crate::cli;\n}\n",
    );
    assert_eq!(mods, ["hostile"]);
    assert!(!code.contains("crate::cli"));
}
