//! Machine output: `--json` writes exactly one JSON document per command, `--json-events`
//! streams one NDJSON event per engine hook call (the schema is docs/json.md).
//!
//! Commands never write JSON themselves: they *contribute* to the command's one document
//! ([`put`], [`section`], [`item`]) and `main` writes it once, when the command has returned
//! ([`finish`]), with the error in it when the command failed. That makes "one document" a
//! property of the program rather than of each command: a command that works in layers (`up`
//! on a cloud stack: resources, then hosts, then the EFS mount, then the wait) or in rounds
//! (`heal --watch`) still prints one document. The document always carries
//! [`FORMAT_VERSION`] and the command's name, like Terraform's `format_version` in
//! `terraform show -json` (`internal/command/jsonformat`).
//!
//! The sink is process-wide on purpose: stdout is process-wide, and one command runs per
//! process. When no mode was set (unit tests, `hactl schema`), [`put`] writes at once, so
//! nothing is ever lost.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

/// The schema version of every JSON document and event hactl writes: `MAJOR.MINOR`. MINOR
/// grows when fields are added; MAJOR when a field changes meaning or is removed.
pub const FORMAT_VERSION: &str = "1.0";

/// How stdout is used for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Human output (the default).
    Human,
    /// `--json`: one document on stdout at the end.
    Document,
    /// `--json-events`: NDJSON events on stdout as they happen, the document as the last one.
    Events,
}

struct Sink {
    mode: Mode,
    command: String,
    doc: Mutex<Doc>,
}

#[derive(Default)]
struct Doc {
    body: Map<String, Value>,
    /// Objects contributed under a name ([`section`]), in order.
    sections: Vec<(String, Map<String, Value>)>,
    /// Arrays of objects ([`item`]), in order.
    items: Vec<(String, Vec<Map<String, Value>>)>,
    /// Where contributions go now.
    target: Target,
}

#[derive(Default, Clone)]
enum Target {
    #[default]
    Top,
    Section(String),
    Item(String),
}

impl Doc {
    fn target_map(&mut self) -> &mut Map<String, Value> {
        match &self.target {
            Target::Top => &mut self.body,
            Target::Section(name) => {
                let i = match self.sections.iter().position(|(n, _)| n == name) {
                    Some(i) => i,
                    None => {
                        self.sections.push((name.clone(), Map::new()));
                        self.sections.len() - 1
                    }
                };
                &mut self.sections[i].1
            }
            Target::Item(name) => {
                let i = match self.items.iter().position(|(n, _)| n == name) {
                    Some(i) => i,
                    None => {
                        self.items.push((name.clone(), Vec::new()));
                        self.items.len() - 1
                    }
                };
                let list = &mut self.items[i].1;
                if list.is_empty() {
                    list.push(Map::new());
                }
                let last = list.len() - 1;
                &mut list[last]
            }
        }
    }

    /// The contributions as one object: the top level, then each section and list.
    fn into_body(self) -> Map<String, Value> {
        let mut m = self.body;
        for (k, v) in self.sections {
            m.insert(k, Value::Object(v));
        }
        for (k, v) in self.items {
            m.insert(k, Value::Array(v.into_iter().map(Value::Object).collect()));
        }
        m
    }
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sets how this run uses stdout; `command` is the command's name as typed (`up`,
/// `state show`). Called once, by `main`, before the command runs.
pub fn init(mode: Mode, command: &str) {
    let _ = SINK.set(Sink {
        mode,
        command: command.to_string(),
        doc: Mutex::new(Doc::default()),
    });
}

/// The run's mode ([`Mode::Human`] until [`init`]).
pub fn mode() -> Mode {
    SINK.get().map_or(Mode::Human, |s| s.mode)
}

/// True when stdout carries JSON (`--json` or `--json-events`): human output stays off it.
pub fn active() -> bool {
    mode() != Mode::Human
}

fn encode<T: serde::Serialize>(value: &T) -> miette::Result<Value> {
    serde_json::to_value(value).map_err(|e| miette::miette!("cannot encode JSON output: {e}"))
}

/// Adds a command's result to its document: the keys of an object are merged into the
/// current target (the top level unless a [`section`] or [`item`] guard is alive); any other
/// value (a list, a map of user data) must be named with [`put_named`]. Outside JSON mode
/// (`hactl schema`, tests) the value is written at once as its own document.
pub fn put<T: serde::Serialize>(value: &T) -> miette::Result<()> {
    let v = encode(value)?;
    let Some(sink) = SINK.get().filter(|s| s.mode != Mode::Human) else {
        return write_document(&v);
    };
    let mut doc = lock(&sink.doc);
    match v {
        Value::Object(m) => {
            let target = doc.target_map();
            for (k, v) in m {
                target.insert(k, v);
            }
        }
        other => {
            doc.target_map().insert("result".into(), other);
        }
    }
    Ok(())
}

/// Adds `value` under `key` in the current target (e.g. `outputs`, `secrets`).
pub fn put_named<T: serde::Serialize>(key: &str, value: &T) -> miette::Result<()> {
    let v = encode(value)?;
    let Some(sink) = SINK.get().filter(|s| s.mode != Mode::Human) else {
        return write_document(&Value::Object(Map::from_iter([(key.to_string(), v)])));
    };
    let mut doc = lock(&sink.doc);
    doc.target_map().insert(key.to_string(), v);
    Ok(())
}

fn lock(m: &Mutex<Doc>) -> std::sync::MutexGuard<'_, Doc> {
    // A panic while holding it leaves a document that is still valid JSON data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// While the guard lives, contributions go into the object `name` of the document (the
/// sub-report nested under its own key).
#[must_use = "contributions go to the section only while the guard lives"]
pub struct Guard(Option<Target>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(prev), Some(sink)) = (self.0.take(), SINK.get()) {
            lock(&sink.doc).target = prev;
        }
    }
}

fn retarget(t: Target) -> Guard {
    match SINK.get() {
        Some(sink) => {
            let mut doc = lock(&sink.doc);
            let prev = std::mem::replace(&mut doc.target, t);
            Guard(Some(prev))
        }
        None => Guard(None),
    }
}

// Unused since the engine builds one document for both layers of a cloud `up`; kept for
// commands that nest a sub-result.
#[allow(dead_code)]
/// Contributions go into the object `name` until the guard is dropped.
pub fn section(name: &str) -> Guard {
    retarget(Target::Section(name.to_string()))
}

/// Contributions go into a new object appended to the array `name` (one per round of `heal
/// --watch`) until the guard is dropped.
pub fn item(name: &str) -> Guard {
    if let Some(sink) = SINK.get() {
        let mut doc = lock(&sink.doc);
        match doc.items.iter_mut().find(|(n, _)| n == name) {
            Some((_, list)) => list.push(Map::new()),
            None => doc.items.push((name.to_string(), vec![Map::new()])),
        }
    }
    retarget(Target::Item(name.to_string()))
}

/// Records what the engine's hooks saw (`changes`, `warnings`, `state_serial`): `f` edits
/// the document's top level. Nothing happens in human mode.
pub(crate) fn record(f: impl FnOnce(&mut Map<String, Value>)) {
    if let Some(sink) = SINK.get().filter(|s| s.mode != Mode::Human) {
        f(&mut lock(&sink.doc).body);
    }
}

/// The document as it stands: `format_version`, `command`, then the contributions, and
/// `error` when the command failed.
pub fn document(command: &str, body: Map<String, Value>, error: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("format_version".into(), FORMAT_VERSION.into());
    m.insert("command".into(), command.into());
    for (k, v) in body {
        if k != "format_version" && k != "command" {
            m.insert(k, v);
        }
    }
    if let Some(e) = error {
        m.insert("error".into(), e);
    }
    Value::Object(m)
}

/// An error as the document carries it: `code` (the diagnostic code, when it has one),
/// `message`, `help`.
pub fn error_value(report: &miette::Report) -> Value {
    let mut m = Map::new();
    if let Some(code) = report.code() {
        m.insert("code".into(), code.to_string().into());
    }
    m.insert("message".into(), report.to_string().into());
    if let Some(help) = report.help() {
        m.insert("help".into(), help.to_string().into());
    }
    Value::Object(m)
}

/// Writes the run's one document (called by `main` once the command returned; `error` when
/// it failed). In events mode the document is the last event, of type `document`. Nothing is
/// written in human mode. Returns whether a document was written.
pub fn finish(error: Option<&miette::Report>) -> bool {
    let Some(sink) = SINK.get().filter(|s| s.mode != Mode::Human) else {
        return false;
    };
    let body = std::mem::take(&mut *lock(&sink.doc)).into_body();
    let doc = document(&sink.command, body, error.map(error_value));
    match sink.mode {
        Mode::Events => {
            super::events::emit_line(&super::events::event(
                "document",
                std::time::SystemTime::now(),
                [("document".to_string(), doc)],
            ));
        }
        _ => {
            let _ = write_document(&doc);
        }
    }
    true
}

fn write_document(v: &Value) -> miette::Result<()> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| miette::miette!("cannot write to stdout: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_carries_format_version_command_and_error() {
        let body = Map::from_iter([("outcome".to_string(), Value::from("failed"))]);
        let err = miette::miette!(code = "hactl::x", help = "do y", "it broke");
        let doc = document("up", body, Some(error_value(&err)));
        // serde_json sorts an object's keys: the order is alphabetical.
        insta::assert_json_snapshot!(doc, @r#"
        {
          "command": "up",
          "error": {
            "code": "hactl::x",
            "help": "do y",
            "message": "it broke"
          },
          "format_version": "1.0",
          "outcome": "failed"
        }
        "#);
    }
}
