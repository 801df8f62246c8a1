//! The engine's hooks for machines: with `--json` they record what happened into the
//! command's one document (`applied`, `warnings`, `state_serial`); with `--json-events` they
//! also write one NDJSON event per hook call on stdout, as it happens, for CI logs. Every
//! event is one line holding `format_version`, `type` and `timestamp` (RFC 3339, UTC,
//! milliseconds) and the call's fields; the schema is docs/json.md.

use std::io::Write;
#[cfg(test)]
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::json::{self, FORMAT_VERSION};
use crate::engine::hooks::Hooks;
use crate::plan::{Action, Plan};

/// One event: `format_version`, `type`, `timestamp`, then `fields`.
pub fn event(
    kind: &str,
    at: SystemTime,
    fields: impl IntoIterator<Item = (String, Value)>,
) -> Value {
    let mut m = Map::new();
    m.insert("format_version".into(), FORMAT_VERSION.into());
    m.insert("type".into(), kind.into());
    m.insert(
        "timestamp".into(),
        humantime::format_rfc3339_millis(at).to_string().into(),
    );
    m.extend(fields);
    Value::Object(m)
}

/// Writes one event as one line on stdout, flushed so a CI log shows it at once.
pub fn emit_line(event: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn action_value(a: Action) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

fn ms(d: Duration) -> Value {
    Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where the events go.
enum Out {
    /// Not at all: `--json` only records into the document.
    None,
    Stdout,
    /// Tests read them back.
    #[cfg(test)]
    Buffer(Mutex<Vec<Value>>),
}

/// [`Hooks`] for `--json` and `--json-events`.
pub struct JsonHooks {
    out: Out,
}

impl JsonHooks {
    /// `--json`: the document records the run; no events.
    pub fn document() -> JsonHooks {
        JsonHooks { out: Out::None }
    }

    /// `--json-events`: events on stdout as well.
    pub fn events() -> JsonHooks {
        JsonHooks { out: Out::Stdout }
    }

    #[cfg(test)]
    fn buffer() -> JsonHooks {
        JsonHooks {
            out: Out::Buffer(Mutex::new(Vec::new())),
        }
    }

    #[cfg(test)]
    fn taken(&self) -> Vec<Value> {
        match &self.out {
            Out::Buffer(b) => std::mem::take(&mut *b.lock().unwrap()),
            _ => Vec::new(),
        }
    }

    fn emit<const N: usize>(&self, kind: &str, fields: [(&str, Value); N]) {
        let fields = fields.into_iter().map(|(k, v)| (k.to_string(), v));
        match &self.out {
            Out::None => {}
            Out::Stdout => emit_line(&event(kind, SystemTime::now(), fields)),
            #[cfg(test)]
            Out::Buffer(b) => b.lock().unwrap_or_else(|p| p.into_inner()).push(event(
                kind,
                SystemTime::now(),
                fields,
            )),
        }
    }
}

/// Appends `entry` to the document's list `key`.
fn record_push(key: &str, entry: Value) {
    json::record(|doc| {
        let v = doc
            .entry(key.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = v {
            a.push(entry);
        }
    });
}

impl Hooks for JsonHooks {
    fn planned(&self, plan: &Plan) {
        self.emit(
            "planned",
            [("plan", serde_json::to_value(plan).unwrap_or(Value::Null))],
        );
    }

    fn started(&self, addr: &str, action: Action) {
        self.emit(
            "started",
            [("addr", addr.into()), ("action", action_value(action))],
        );
    }

    fn progress(&self, addr: &str, status: &str, elapsed: Duration) {
        self.emit(
            "progress",
            [
                ("addr", addr.into()),
                ("status", status.into()),
                ("elapsed_ms", ms(elapsed)),
            ],
        );
    }

    fn done(&self, addr: &str, action: Action, elapsed: Duration) {
        self.emit(
            "done",
            [
                ("addr", addr.into()),
                ("action", action_value(action)),
                ("elapsed_ms", ms(elapsed)),
            ],
        );
        record_push(
            "applied",
            serde_json::json!({
                "addr": addr, "action": action_value(action), "status": "done",
                "elapsed_ms": ms(elapsed),
            }),
        );
    }

    fn failed(&self, addr: &str, error: &str) {
        self.emit("failed", [("addr", addr.into()), ("error", error.into())]);
        record_push(
            "applied",
            serde_json::json!({ "addr": addr, "status": "failed", "error": error }),
        );
    }

    fn state_saved(&self, serial: u64) {
        self.emit("state_saved", [("serial", serial.into())]);
        json::record(|doc| {
            doc.insert("state_serial".into(), serial.into());
        });
    }

    fn warning(&self, message: &str) {
        self.emit("warning", [("message", message.into())]);
        record_push("warnings", message.into());
    }

    // Steps and the wait stay on stderr as plain lines (stdout carries the JSON), and are
    // events for `--json-events`.
    fn step(&self, subject: &str, message: &str, elapsed: Duration) {
        super::note(&super::progress::step_line(subject, message, None));
        self.emit(
            "step",
            [
                ("subject", subject.into()),
                ("message", message.into()),
                ("elapsed_ms", ms(elapsed)),
            ],
        );
    }

    fn wait_started(&self, stack: &str, timeout: Duration) {
        super::note(&super::wait::started(stack, timeout));
        self.emit(
            "wait_started",
            [("stack", stack.into()), ("timeout_ms", ms(timeout))],
        );
    }

    fn wait_progress(&self, elapsed: Duration, not_ready: &[String]) {
        super::note(&super::wait::progress(elapsed, not_ready));
        self.emit(
            "wait_progress",
            [
                ("elapsed_ms", ms(elapsed)),
                ("not_ready", serde_json::json!(not_ready)),
            ],
        );
    }

    fn served(&self, serving: &crate::engine::serving::Serving) {
        super::note(&super::wait::serving(serving));
        self.emit(
            "served",
            [(
                "serving",
                serde_json::to_value(serving).unwrap_or(Value::Null),
            )],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Addr, Change, Reason};

    fn plan() -> Plan {
        Plan::new(
            "shop",
            vec![Change::new(
                Addr::resource("aws_db_instance.main"),
                Action::Create,
                Reason::NotFound,
            )],
            3,
            vec![],
        )
    }

    /// Every hook call is one event with `format_version`, `type` and a timestamp; the
    /// timestamp is the real clock, so the snapshot filters it (and nothing else).
    #[test]
    fn json_events_one_per_hook_call() {
        let h = JsonHooks::buffer();
        h.planned(&plan());
        h.started("aws_db_instance.main", Action::Create);
        h.progress("aws_db_instance.main", "creating", Duration::from_secs(372));
        h.progress(
            "aws_db_instance.main",
            "backing-up",
            Duration::from_secs(401),
        );
        h.done(
            "aws_db_instance.main",
            Action::Create,
            Duration::from_secs(412),
        );
        h.failed("web1:/etc/nginx/nginx.conf", "nginx -t: unknown directive");
        h.state_saved(7);
        h.warning("the result is partial: --target");
        let lines: Vec<String> = h.taken().iter().map(Value::to_string).collect();
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["format_version"], FORMAT_VERSION);
            let ts = v["timestamp"].as_str().unwrap();
            assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        }
        insta::with_settings!({filters => vec![
            (r#""timestamp":"[^"]+""#, r#""timestamp":"[TIMESTAMP]""#),
        ]}, {
            insta::assert_snapshot!(lines.join("\n"));
        });
    }
}
