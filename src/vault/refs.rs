//! `secret: NAME` references in a stack file, and the check that each names a secret that the
//! vault holds. It runs after the vault is opened and before anything touches a host, and
//! reports every unknown name at once with its `file:line:col`. (`{{ secret.NAME }}` in
//! templates is checked by the renderer, which knows the templates.)

use std::sync::Arc;

use miette::SourceSpan;

use super::Secrets;
use crate::stack::diag::{Problem, SourceMap, StackSource};
use crate::stack::model::{Spanned, Value};
use crate::stack::Stack;

/// One `secret: NAME` value in the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    pub name: String,
    /// The field, e.g. `vip.auth_pass`, `app.env.DB_PASSWORD`, `services[1].password`.
    pub field: String,
    /// 1-based line and column of the value (0 when unknown).
    pub line: u64,
    pub column: u64,
}

/// Every secret reference in the stack, in file order of the fields listed in the schema.
pub fn references(stack: &Stack) -> Vec<SecretUse> {
    let f = &stack.file;
    let mut fields: Vec<(String, &Spanned<Value>)> = Vec::new();
    if let Some(p) = f.vip.as_ref().and_then(|v| v.auth_pass.as_ref()) {
        fields.push(("vip.auth_pass".into(), p));
    }
    if let Some(aws) = f.vip.as_ref().and_then(|v| v.aws.as_ref()) {
        if let Some(k) = &aws.access_key_id {
            fields.push(("vip.aws.access_key_id".into(), k));
        }
        if let Some(k) = &aws.secret_access_key {
            fields.push(("vip.aws.secret_access_key".into(), k));
        }
    }
    if let Some(app) = &f.app {
        for (k, v) in &app.env {
            fields.push((format!("app.env.{k}"), v));
        }
    }
    if let Some(aws) = &f.aws {
        if let Some(k) = &aws.hosts.public_key {
            fields.push(("aws.hosts.public_key".into(), k));
        }
        if let Some(db) = &aws.database {
            fields.push(("aws.database.username".into(), &db.username));
            fields.push(("aws.database.password".into(), &db.password));
        }
    }
    for (i, s) in f.services.iter().enumerate() {
        if let Some(p) = &s.password {
            fields.push((format!("services[{i}].password"), p));
        }
    }
    let mut out: Vec<SecretUse> = fields
        .into_iter()
        .filter_map(|(field, v)| match &v.value {
            Value::Secret(r) => Some(SecretUse {
                name: r.secret.clone(),
                field,
                line: v.referenced.line(),
                column: v.referenced.column(),
            }),
            Value::Plain(_) => None,
        })
        .collect();
    out.sort_by_key(|u| (u.line, u.column));
    out
}

/// One diagnostic per `secret: NAME` whose name the vault does not hold.
pub fn check_references(stack: &Stack, secrets: &Secrets) -> Vec<Problem> {
    let map = SourceMap::new(&stack.source);
    let src = Arc::new(StackSource::new(
        stack.path.display().to_string(),
        Arc::clone(&stack.source),
    ));
    references(stack)
        .into_iter()
        .filter(|u| !secrets.contains(&u.name))
        .map(|u| {
            let span = span_of(&map, &u);
            let mut p = Problem::new(
                "hactl::vault::unknown_secret",
                format!("unknown secret `{}` in `{}`", u.name, u.field),
            )
            .at(span, "not in the vault")
            .help(hint(stack, secrets, &u.name));
            if span.is_some() {
                p.line = Some(u.line as usize);
                p.column = Some(u.column as usize);
                p.src = Some(Arc::clone(&src));
            }
            p
        })
        .collect()
}

/// What to say about an unknown name: the closest known name, or how to add it.
pub(crate) fn hint(stack: &Stack, secrets: &Secrets, name: &str) -> String {
    let closest = secrets
        .names()
        .map(|n| (strsim::jaro_winkler(n, name), n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let add = format!(
        "add it with `hactl secrets set {name} -f {}`",
        stack.path.display()
    );
    match closest {
        Some((_, n)) => format!("did you mean `{n}`? or {add}"),
        None if secrets.is_empty() => format!("the vault has no secrets yet; {add}"),
        None => format!(
            "{add} (the vault has: {})",
            secrets.names().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The byte range from the value's start through the secret's name (so the caret underlines
/// `{secret: NAME}`), or just the start when the name is not found nearby.
fn span_of(map: &SourceMap, u: &SecretUse) -> Option<SourceSpan> {
    if u.line == 0 {
        return None;
    }
    let source = map.text();
    let start = map.offset(u.line as usize, u.column as usize);
    // Up to 200 bytes past the name, cut back to a character boundary (a `get` across a
    // multi-byte character would give nothing and lose the underline).
    let mut window_end = (start + 200 + u.name.len()).min(source.len());
    while !source.is_char_boundary(window_end) {
        window_end -= 1;
    }
    let window = source.get(start..window_end).unwrap_or("");
    let len = match window.find(&u.name) {
        Some(i) => {
            let end = i + u.name.len();
            // Include a closing `}` right after the name (flow style).
            let rest = &window[end..];
            let close = rest
                .find(|c: char| c != ' ')
                .filter(|&j| rest[j..].starts_with('}'))
                .map(|j| j + 1)
                .unwrap_or(0);
            end + close
        }
        None => 1,
    };
    Some(SourceSpan::new(start.into(), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Secret;
    use std::path::Path;

    const STACK: &str = "\
name: demo
provider: hosts
hosts:
  - name: a
    address: 10.0.0.1
vip:
  address: 10.0.0.100/24
  virtual_router_id: 5
  auth_pass: {secret: vrrp_pasword}
app:
  port: 8000
  image: x
  env:
    PLAIN: hello
    DB_PASSWORD:
      secret: db_password
services:
  - name: redis
    kind: redis
    mode: primary_replica
    password: {secret: redis_pw}
";

    fn stack() -> Stack {
        crate::stack::load_bytes(Path::new("stacks/demo.yaml"), STACK.as_bytes())
            .expect("the test stack loads")
    }

    #[test]
    fn finds_every_reference_with_its_position() {
        let refs = references(&stack());
        let got: Vec<_> = refs
            .iter()
            .map(|u| (u.name.as_str(), u.field.as_str(), u.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("vrrp_pasword", "vip.auth_pass", 9),
                ("db_password", "app.env.DB_PASSWORD", 16),
                ("redis_pw", "services[0].password", 21),
            ]
        );
    }

    #[test]
    fn unknown_names_are_problems_with_spans_and_hints() {
        let s = stack();
        let mut secrets = Secrets::default();
        secrets.insert("vrrp_password".into(), Secret::new("x".into()));
        secrets.insert("redis_pw".into(), Secret::new("y".into()));
        let problems = check_references(&s, &secrets);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let first = &problems[0];
        assert_eq!(
            first.message,
            "unknown secret `vrrp_pasword` in `vip.auth_pass`"
        );
        assert!(first
            .help
            .as_deref()
            .unwrap()
            .contains("did you mean `vrrp_password`?"));
        let span = first.span.expect("a span");
        let text = &STACK[span.offset()..span.offset() + span.len()];
        assert!(text.ends_with("vrrp_pasword}"), "{text:?}");
        let second = &problems[1];
        let span = second.span.expect("a span");
        let text = &STACK[span.offset()..span.offset() + span.len()];
        assert!(text.ends_with("db_password"), "{text:?}");
        assert!(second
            .help
            .as_deref()
            .unwrap()
            .contains("hactl secrets set db_password"));
    }

    #[test]
    fn no_references_no_problems() {
        let s = crate::stack::load_bytes(
            Path::new("s.yaml"),
            b"name: x\nprovider: hosts\nhosts:\n  - name: a\n    address: 10.0.0.1\n",
        )
        .unwrap();
        assert!(references(&s).is_empty());
        assert!(check_references(&s, &Secrets::default()).is_empty());
    }
}
