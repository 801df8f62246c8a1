//! The first pass over a stack file: a generic YAML tree where every key and value keeps its
//! byte span, and the schema walk that finds **every** unknown key at once.
//!
//! Why a separate pass: the typed parse (`deny_unknown_fields`) stops at the first unknown key,
//! and a user who misspelled three keys should not have to run `validate` three times. The
//! tree also lets later checks point at things the model keeps no span for (the second entry
//! of a `peers` list, the key of a field), by path: `hosts.1.peers.0`.
//!
//! The allowed keys are not written down twice: each struct's field list is read from its
//! serde `Deserialize` impl (the list serde itself checks against), so renaming a model field
//! cannot leave this pass behind. Only the nesting (which key holds which struct) is spelled
//! out here, in [`child`].

use std::fmt;

use miette::SourceSpan;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::super::diag::{Problem, SourceMap};
use super::super::model;
use super::did_you_mean;

/// One YAML node with its span.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Option<SourceSpan>,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A scalar; its text is not needed (the typed parse reads values), only its span.
    Scalar,
    Null,
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_span: Option<SourceSpan>,
    pub value: Node,
}

impl Node {
    /// Parses `text` into a tree. Errors are the parser's (syntax, duplicate keys, budgets).
    pub fn parse(text: &str, options: serde_saphyr::Options) -> Result<Node, serde_saphyr::Error> {
        let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options)?;
        let map = SourceMap::new(text);
        Ok(Node::from_raw(raw, &map))
    }

    fn from_raw(raw: Spanned<Raw>, map: &SourceMap) -> Node {
        let span = span_of(&raw.referenced, map);
        let kind = match raw.value {
            Raw::Scalar(_) => Kind::Scalar,
            Raw::Null => Kind::Null,
            Raw::Seq(items) => {
                Kind::Seq(items.into_iter().map(|i| Node::from_raw(i, map)).collect())
            }
            Raw::Map(entries) => Kind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Entry {
                        key_span: span_of(&k.referenced, map),
                        key: k.value.0,
                        value: Node::from_raw(v, map),
                    })
                    .collect(),
            ),
        };
        Node { span, kind }
    }

    /// The node at a dotted path: `vip.checks.0.weight` (numbers index sequences).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.get_entry(path)
            .map(|(_, n)| n)
            .or_else(|| path.is_empty().then_some(self))
    }

    /// The span of the value at `path`.
    pub fn span(&self, path: &str) -> Option<SourceSpan> {
        self.get(path).and_then(|n| n.span)
    }

    /// The span of the key that ends `path` (falls back to the value for sequence items).
    pub fn key_span(&self, path: &str) -> Option<SourceSpan> {
        self.get_entry(path).and_then(|(k, n)| k.or(n.span))
    }

    /// The deepest node whose span starts at byte `offset`, with its path as users read it
    /// (`hosts[1].priority`). Used to place the typed parse's errors, which carry only a
    /// position.
    pub fn find_at(&self, offset: usize) -> Option<(String, &Node)> {
        let mut best = None;
        self.find_into(offset, String::new(), &mut best);
        best
    }

    fn find_into<'a>(&'a self, offset: usize, path: String, best: &mut Option<(String, &'a Node)>) {
        if self.span.is_some_and(|s| s.offset() == offset) {
            *best = Some((path.clone(), self));
        }
        match &self.kind {
            Kind::Map(entries) => {
                for e in entries {
                    // An error at a key (a missing sibling noticed there) belongs to the map.
                    if e.key_span.is_some_and(|s| s.offset() == offset) {
                        *best = Some((path.clone(), self));
                    }
                    let p = if path.is_empty() {
                        e.key.clone()
                    } else {
                        format!("{path}.{}", e.key)
                    };
                    e.value.find_into(offset, p, best);
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    item.find_into(offset, format!("{path}[{i}]"), best);
                }
            }
            _ => {}
        }
    }

    fn get_entry(&self, path: &str) -> Option<(Option<SourceSpan>, &Node)> {
        if path.is_empty() {
            return None;
        }
        let mut node = self;
        let mut key_span = None;
        for seg in path.split('.') {
            match &node.kind {
                Kind::Map(entries) => {
                    let e = entries.iter().find(|e| e.key == seg)?;
                    key_span = e.key_span;
                    node = &e.value;
                }
                Kind::Seq(items) => {
                    let i: usize = seg.parse().ok()?;
                    node = items.get(i)?;
                    key_span = None;
                }
                _ => return None,
            }
        }
        Some((key_span, node))
    }
}

fn span_of(loc: &Location, map: &SourceMap) -> Option<SourceSpan> {
    if loc.line() == 0 {
        return None;
    }
    Some(map.span(
        loc.line() as usize,
        loc.column() as usize,
        loc.span().len() as usize,
    ))
}

/// What the parser hands over before spans become byte spans.
enum Raw {
    Scalar(String),
    Null,
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<RawKey>, Spanned<Raw>)>),
}

struct RawKey(String);

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RawKey(match Raw::deserialize(d)? {
            Raw::Scalar(s) => s,
            Raw::Null => "~".into(),
            // A sequence or mapping used as a key: never a valid stack key, and the message
            // must still name something.
            Raw::Seq(_) | Raw::Map(_) => "<complex key>".into(),
        }))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Scalar(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Scalar(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
                Ok(Raw::Scalar(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element::<Spanned<Raw>>()? {
                    v.push(x);
                }
                Ok(Raw::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<Spanned<RawKey>>()? {
                    let val = a.next_value::<Spanned<Raw>>()?;
                    v.push((k, val));
                }
                Ok(Raw::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which part of the schema a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Anything goes (scalars, free maps such as `vars`).
    Any,
    Stack,
    Ssh,
    Host,
    Vip,
    Garp,
    Check,
    Notify,
    Hook,
    VipAws,
    Nginx,
    Haproxy,
    App,
    AppHealth,
    /// `app.env`: free keys whose values are [`Shape::Secret`]s.
    Env,
    Service,
    Vault,
    State,
    File,
    Aws,
    AwsNetwork,
    AwsHosts,
    AwsBalancer,
    Listener,
    LbHealth,
    AwsSharedFs,
    AwsDatabase,
    /// A plain string or `{secret: NAME}`.
    Secret,
}

/// The shape of the value under `key` in a `parent` mapping (for a sequence, of its items).
fn child(parent: Shape, key: &str) -> Shape {
    use Shape::*;
    match (parent, key) {
        (Stack, "ssh") => Ssh,
        (Stack, "hosts") => Host,
        (Stack, "aws") => Aws,
        (Stack, "vip") => Vip,
        (Stack, "nginx") => Nginx,
        (Stack, "haproxy") => Haproxy,
        (Stack, "app") => App,
        (Stack, "services") => Service,
        (Stack, "vault") => Vault,
        (Stack, "state") => State,
        (Stack, "files") => File,
        (Vip, "garp") => Garp,
        (Vip, "checks") => Check,
        (Vip, "notify") => Notify,
        (Vip, "aws") => VipAws,
        (Vip, "auth_pass") => Secret,
        (VipAws, "access_key_id" | "secret_access_key") => Secret,
        (Notify, _) => Hook,
        (App, "env") => Env,
        (App, "health") => AppHealth,
        (Env, _) => Secret,
        (Service, "password") => Secret,
        (Aws, "network") => AwsNetwork,
        (Aws, "hosts") => AwsHosts,
        (Aws, "balancer") => AwsBalancer,
        (Aws, "shared_fs") => AwsSharedFs,
        (Aws, "database") => AwsDatabase,
        (AwsHosts, "public_key") => Secret,
        (AwsBalancer, "listeners") => Listener,
        (AwsBalancer, "health_check") => LbHealth,
        (AwsDatabase, "username" | "password") => Secret,
        _ => Any,
    }
}

/// The keys a struct shape allows, read from the model's serde impls. `None`: free keys.
fn fields(shape: Shape) -> Option<&'static [&'static str]> {
    use Shape::*;
    Some(match shape {
        Any | Env => return None,
        Stack => fields_of::<model::StackFile>(),
        Ssh => fields_of::<model::SshSpec>(),
        Host => fields_of::<model::HostSpec>(),
        Vip => fields_of::<model::VipSpec>(),
        Garp => fields_of::<model::GarpSpec>(),
        Check => fields_of::<model::CheckSpec>(),
        Notify => fields_of::<model::NotifySpec>(),
        Hook => fields_of::<model::HookSpec>(),
        VipAws => fields_of::<model::VipAwsSpec>(),
        Nginx => fields_of::<model::NginxSpec>(),
        Haproxy => fields_of::<model::HaproxySpec>(),
        App => fields_of::<model::AppSpec>(),
        AppHealth => fields_of::<model::AppHealthSpec>(),
        Service => fields_of::<model::ServiceSpec>(),
        Vault => fields_of::<model::VaultSpec>(),
        State => fields_of::<model::StateSpec>(),
        File => fields_of::<model::FileSpec>(),
        Aws => fields_of::<model::AwsSpec>(),
        AwsNetwork => fields_of::<model::AwsNetworkSpec>(),
        AwsHosts => fields_of::<model::AwsHostsSpec>(),
        AwsBalancer => fields_of::<model::AwsBalancerSpec>(),
        Listener => fields_of::<model::ListenerSpec>(),
        LbHealth => fields_of::<model::LbHealthSpec>(),
        AwsSharedFs => fields_of::<model::AwsSharedFsSpec>(),
        AwsDatabase => fields_of::<model::AwsDatabaseSpec>(),
        Secret => fields_of::<model::SecretRef>(),
    })
}

/// What a struct's derived `Deserialize` passes to `deserialize_struct`: its field names.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(ProbeError(Some(fields))) => fields,
        _ => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
struct ProbeError(Option<&'static [&'static str]>);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        ProbeError(None)
    }
}

impl<'de> Deserializer<'de> for FieldProbe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Every key of the file that the schema does not know, each with its path and a hint.
pub fn unknown_keys(root: &Node) -> Vec<Problem> {
    let mut out = Vec::new();
    walk(root, Shape::Stack, "", &mut out);
    out
}

fn walk(node: &Node, shape: Shape, path: &str, out: &mut Vec<Problem>) {
    match &node.kind {
        Kind::Seq(items) if shape != Shape::Any => {
            for (i, item) in items.iter().enumerate() {
                walk(item, shape, &format!("{path}[{i}]"), out);
            }
        }
        Kind::Map(entries) => {
            let allowed = fields(shape);
            if shape == Shape::Any {
                return;
            }
            for e in entries {
                let here = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                if let Some(allowed) = allowed {
                    if !allowed.contains(&e.key.as_str()) {
                        out.push(unknown_key(&e.key, &here, e.key_span, allowed, shape));
                        continue;
                    }
                }
                walk(&e.value, child(shape, &e.key), &here, out);
            }
        }
        _ => {}
    }
}

fn unknown_key(
    key: &str,
    path: &str,
    span: Option<SourceSpan>,
    allowed: &[&str],
    shape: Shape,
) -> Problem {
    let help = match did_you_mean(key, allowed.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            let list: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
            format!("the keys allowed here are {}", list.join(", "))
        }
    };
    let label = if shape == Shape::Secret {
        "a secret reference has only `secret`".to_string()
    } else {
        "unknown key".to_string()
    };
    Problem::new("hactl::stack::unknown_key", format!("unknown key `{path}`"))
        .at(span, label)
        .help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, Option<String>)> {
        let tree = Node::parse(text, serde_saphyr::Options::default()).expect("parses");
        unknown_keys(&tree)
            .into_iter()
            .map(|p| (p.message, p.help))
            .collect()
    }

    #[test]
    fn field_lists_come_from_serde() {
        let f = fields_of::<model::HostSpec>();
        assert!(f.contains(&"name") && f.contains(&"priority") && f.contains(&"peers"));
        assert_eq!(fields_of::<model::SecretRef>(), &["secret"]);
    }

    #[test]
    fn every_unknown_key_is_found_with_its_path() {
        let found = keys(
            "name: x\nprovider: hosts\nhostz: []\nhosts:\n  - name: a\n    prio: 3\nvip:\n  checks:\n    - name: c\n      wieght: 1\n  auth_pass: {secrte: p}\napp:\n  env:\n    FREE_KEY: 1\nvars:\n  anything: {goes: here}\n",
        );
        let msgs: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "unknown key `hostz`",
                "unknown key `hosts[0].prio`",
                "unknown key `vip.checks[0].wieght`",
                "unknown key `vip.auth_pass.secrte`",
            ]
        );
        assert_eq!(found[1].1.as_deref(), Some("did you mean `priority`?"));
        assert_eq!(found[2].1.as_deref(), Some("did you mean `weight`?"));
        assert_eq!(found[3].1.as_deref(), Some("did you mean `secret`?"));
    }

    #[test]
    fn paths_find_nodes_and_keys() {
        let text = "hosts:\n  - name: a\n    peers: [b, c]\n";
        let tree = Node::parse(text, serde_saphyr::Options::default()).expect("parses");
        let s = tree.span("hosts.0.peers.1").expect("span");
        assert_eq!(&text[s.offset()..s.offset() + s.len()], "c");
        let (path, node) = tree.find_at(s.offset()).expect("found");
        assert_eq!(path, "hosts[0].peers[1]");
        assert_eq!(node.span, Some(s));
        let k = tree.key_span("hosts.0.peers").expect("span");
        assert_eq!(&text[k.offset()..k.offset() + k.len()], "peers");
        assert!(tree.get("hosts.3").is_none());
        assert!(tree.get("hosts.x").is_none());
    }
}
