//! The template context for one host, and the bookkeeping that tells which files saw a secret.
//!
//! Every value comes from the validated [`Stack`], serialized (`Spanned<T>` as `T`, durations
//! as seconds), plus a few values resolved here so templates stay simple (the host's VRRP
//! state, the VIP's bare address and prefix, the app's replicas). The shape is documented on
//! [`build`].
//!
//! Secrets reach a template two ways: `{{ secret.NAME }}` (the [`SecretsObject`] global) and any
//! `{secret: NAME}` value written in the stack (`vip.auth_pass`, `app.env.*`, `vars.*`). Both
//! are looked up in the decrypted [`Secrets`] only when a template touches them, and every
//! touch is recorded in a [`Tracker`]: a file whose rendering read a secret is sensitive. A map
//! or list that directly holds a `{secret: NAME}` becomes a [`Tracked`] object so the access
//! is seen whatever the template does with it (print, compare, iterate, `|json`). Over-marking
//! (a secret read by a condition but not printed) is the safe direction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;

use super::{http_probe, RenderError};
use crate::stack::{Host, Stack};
use crate::vault::{Secret, Secrets};

/// Where the notify script goes on a host (keepalived's `notify` directive names it).
pub const NOTIFY_SCRIPT: &str = "/etc/keepalived/hactl-notify.sh";
/// The loop that runs sub-second checks for keepalived (see [`has_fast_checks`]).
pub const CHECK_SCRIPT: &str = "/etc/keepalived/hactl-check.sh";

/// The EC2 API credentials of `vip.aws` on a host (0600: it holds the secret key). The notify
/// script reads it, so the key is never in the script, its argv or the plan.
pub const AWS_CREDENTIALS: &str = "/etc/keepalived/hactl-aws-vip.env";

/// Where the notify script logs each EC2 call's outcome (never a credential).
pub const AWS_VIP_LOG: &str = "/var/log/hactl/aws-vip.log";

/// What one rendering touched: secrets read, and names asked for that the vault lacks.
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Touched>,
}

#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub used: BTreeSet<String>,
    pub missing: BTreeSet<String>,
}

impl Tracker {
    fn used(&self, name: &str) {
        self.lock().used.insert(name.to_string());
    }
    fn missing(&self, name: &str) {
        self.lock().missing.insert(name.to_string());
    }
    pub fn touched(&self) -> Touched {
        self.lock().clone()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Touched> {
        // A poisoned lock only means a panic elsewhere; the sets are still meaningful.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `secret`: `{{ secret.NAME }}` reads NAME from the vault and records the read. Not iterable,
/// so a template cannot dump the whole vault by accident.
pub struct SecretsObject {
    secrets: Arc<Secrets>,
    tracker: Arc<Tracker>,
}

impl fmt::Debug for SecretsObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secrets>")
    }
}

impl Object for SecretsObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        match self.secrets.get(name) {
            Some(s) => {
                self.tracker.used(name);
                Some(Value::from(s.expose()))
            }
            None => {
                // Strict undefined turns the `None` into an error; the tracker lets the caller
                // name the missing secret instead of a bare "undefined value".
                self.tracker.missing(name);
                None
            }
        }
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secrets>")
    }
}

/// One slot of a [`Tracked`] container.
enum Slot {
    Plain(Value),
    Secret { name: String, value: Option<Secret> },
}

impl Slot {
    fn get(&self, tracker: &Tracker) -> Value {
        match self {
            Slot::Plain(v) => v.clone(),
            Slot::Secret {
                name,
                value: Some(s),
            } => {
                tracker.used(name);
                Value::from(s.expose())
            }
            Slot::Secret { name, value: None } => {
                // An empty string keeps the template going; the caller fails the file after
                // rendering because `missing` is not empty.
                tracker.missing(name);
                Value::from("")
            }
        }
    }
}

/// A map or list from the stack that directly holds `{secret: NAME}` values.
pub struct Tracked {
    keys: Vec<Value>,
    slots: Vec<Slot>,
    seq: bool,
    tracker: Arc<Tracker>,
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret values themselves.
        let mut m = f.debug_map();
        for (k, s) in self.keys.iter().zip(&self.slots) {
            match s {
                Slot::Plain(v) => m.entry(k, v),
                Slot::Secret { name, .. } => m.entry(k, &format_args!("<secret {name}>")),
            };
        }
        m.finish()
    }
}

impl Object for Tracked {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.seq {
            ObjectRepr::Seq
        } else {
            ObjectRepr::Map
        }
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let i = if self.seq {
            usize::try_from(key.as_i64()?).ok()?
        } else {
            self.keys.iter().position(|k| k == key)?
        };
        Some(self.slots.get(i)?.get(&self.tracker))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.seq {
            Enumerator::Seq(self.slots.len())
        } else {
            Enumerator::Values(self.keys.clone())
        }
    }
}

/// Turns serialized stack data into template values, replacing `{secret: NAME}` by tracked
/// lookups in the vault.
pub struct Converter {
    secrets: Arc<Secrets>,
    tracker: Arc<Tracker>,
}

impl Converter {
    pub fn new(secrets: Arc<Secrets>, tracker: Arc<Tracker>) -> Self {
        Converter { secrets, tracker }
    }

    /// `{secret: NAME}` as the stack's `Value::Secret` serializes.
    fn secret_ref(v: &serde_json::Value) -> Option<&str> {
        let map = v.as_object()?;
        if map.len() != 1 {
            return None;
        }
        map.get("secret")?.as_str()
    }

    fn slot(&self, v: &serde_json::Value) -> (Slot, bool) {
        match Self::secret_ref(v) {
            Some(name) => (
                Slot::Secret {
                    name: name.to_string(),
                    value: self.secrets.get(name).cloned(),
                },
                true,
            ),
            None => (Slot::Plain(self.convert(v)), false),
        }
    }

    /// A map's `{secret: NAME}` entries and a list's `{secret: NAME}` items become tracked
    /// slots; the value passed in itself is always taken as data (so `vars: {secret: x}` is a
    /// variable named `secret`, as YAML reads it).
    pub fn convert(&self, v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys = Vec::with_capacity(map.len());
                let mut slots = Vec::with_capacity(map.len());
                let mut any_secret = false;
                for (k, v) in map {
                    let (slot, secret) = self.slot(v);
                    any_secret |= secret;
                    keys.push(Value::from(k.as_str()));
                    slots.push(slot);
                }
                self.container(keys, slots, any_secret, false)
            }
            serde_json::Value::Array(items) => {
                let mut slots = Vec::with_capacity(items.len());
                let mut any_secret = false;
                for v in items {
                    let (slot, secret) = self.slot(v);
                    any_secret |= secret;
                    slots.push(slot);
                }
                self.container(Vec::new(), slots, any_secret, true)
            }
            other => Value::from_serialize(other),
        }
    }

    fn container(&self, keys: Vec<Value>, slots: Vec<Slot>, any_secret: bool, seq: bool) -> Value {
        if any_secret {
            return Value::from_object(Tracked {
                keys,
                slots,
                seq,
                tracker: self.tracker.clone(),
            });
        }
        let plain = slots.into_iter().map(|s| match s {
            Slot::Plain(v) => v,
            Slot::Secret { .. } => Value::UNDEFINED,
        });
        if seq {
            Value::from(plain.collect::<Vec<_>>())
        } else {
            Value::from_iter(keys.into_iter().zip(plain))
        }
    }
}

/// The VRRP state a host starts in: MASTER on the highest base priority VIP host, BACKUP
/// elsewhere. With `preempt: false` or a `preempt_delay` every host starts BACKUP, because
/// keepalived ignores both settings on an instance that starts as MASTER.
pub fn vrrp_state(stack: &Stack, host: &Host) -> &'static str {
    let Some(vip) = &stack.file.vip else {
        return "BACKUP";
    };
    if !vip.preempt || vip.preempt_delay.is_some() || !host.has_role("vip") {
        return "BACKUP";
    }
    let winner = stack
        .hosts
        .iter()
        .filter(|h| h.has_role("vip"))
        // max_by_key keeps the last of equals; ties are refused by validation, but the first
        // host in file order is the deterministic choice if one slips through.
        .rev()
        .max_by_key(|h| h.priority);
    match winner {
        Some(w) if w.name == host.name => "MASTER",
        _ => "BACKUP",
    }
}

/// True when hosts get the notify script: always with a VIP. Even without user hooks it records
/// every transition (state and time) in `/run/hactl/vrrp-<instance>.state` for `hactl status`.
pub fn has_notify(stack: &Stack) -> bool {
    stack.file.vip.is_some()
}

/// True when a VRRP check runs more often than once a second. keepalived 2.2's `vrrp_script`
/// refuses `interval 0.1`, so such a check runs as a loop ([`CHECK_SCRIPT`], started by a
/// 1 s `vrrp_script` and finishing inside that second) that writes the result to a
/// `track_file`; keepalived watches the file with inotify and acts on it at once.
pub fn has_fast_checks(stack: &Stack) -> bool {
    stack
        .file
        .vip
        .as_ref()
        .is_some_and(|v| v.checks.iter().any(|c| c.sub_second()))
}

/// The file a sub-second check's loop keeps current for keepalived's `track_file`. Directly
/// in /run: keepalived drops a track file whose directory does not exist when it loads its
/// configuration, and after a reboot nothing has made /run/hactl yet.
pub fn track_file(instance: &str, check: &str) -> String {
    format!("/run/hactl-check-{instance}-{check}")
}

/// `vip.aws` with what the notify script needs resolved: `region` (or `aws.region`),
/// `endpoint` (or the region's public one), `eni` (this host's, none to ask the metadata
/// service), `has_credentials` (so the script never touches the secret values to find out),
/// `credentials_file` and `log_file`.
fn resolve_vip_aws(
    stack: &Stack,
    host: &Host,
    aws: &crate::stack::model::VipAwsSpec,
    a: &mut serde_json::Map<String, serde_json::Value>,
) {
    let region = aws
        .region
        .as_ref()
        .map(|r| r.value.clone())
        .or_else(|| stack.file.aws.as_ref().map(|s| s.region.value.clone()))
        .unwrap_or_default();
    let endpoint = aws
        .endpoint
        .as_ref()
        .map(|e| e.value.clone())
        .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com/"));
    let eni = aws.interfaces.get(&host.name).map(|e| e.value.clone());
    a.insert("region".into(), region.into());
    a.insert("endpoint".into(), endpoint.into());
    a.insert("eni".into(), eni.into());
    a.insert(
        "has_credentials".into(),
        aws.secret_access_key.is_some().into(),
    );
    a.insert("credentials_file".into(), AWS_CREDENTIALS.into());
    a.insert("log_file".into(), AWS_VIP_LOG.into());
}

/// The image compose runs: the registry reference, or the name the archive is loaded under.
pub fn app_image_ref(stack: &Stack) -> Option<String> {
    let app = stack.file.app.as_ref()?;
    Some(match &app.image {
        Some(image) => image.value.clone(),
        None => format!("localhost/hactl-{}-{}:latest", stack.name(), app.name),
    })
}

fn to_json<T: serde::Serialize>(what: &str, v: &T) -> Result<serde_json::Value, RenderError> {
    serde_json::to_value(v).map_err(|e| RenderError::Context {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn host_json(stack: &Stack, h: &Host) -> Result<serde_json::Value, RenderError> {
    let mut v = to_json("host", h)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("vrrp_state".into(), vrrp_state(stack, h).into());
        // The VRRP source address: `source_ip` when the host sets one, else its address.
        let source = stack
            .file
            .hosts
            .iter()
            .find(|s| s.name.value == h.name)
            .and_then(|s| s.source_ip.as_ref())
            .map(|s| s.value.clone())
            .unwrap_or_else(|| h.address.to_string());
        m.insert("source_ip".into(), source.into());
    }
    Ok(v)
}

/// `hosts` of the context: every resolved host (file order), converted once per stack and
/// shared by every file of every host. Each host lists its peers, so building it per file was
/// O(hosts² · files) per host: 0.2 s of a 50-host no-op `up`. Sharing it is safe for secret
/// tracking: a resolved [`Host`] has only typed plain fields (names, addresses, priority,
/// roles), never a vault reference, so no file's tracker can miss a secret read through it.
pub fn hosts_value(stack: &Stack, conv: &Converter) -> Result<Value, RenderError> {
    let hosts = stack
        .hosts
        .iter()
        .map(|h| host_json(stack, h))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(conv.convert(&serde_json::Value::Array(hosts)))
}

/// Builds the whole context for one host. Keys:
///
/// - `stack`: the stack file as written, defaults filled in.
/// - `host`: the resolved host (`name`, `address`, `ssh_target`, `priority`, `peers`,
///   `interface`, `roles`) plus `vrrp_state` (`MASTER`/`BACKUP`).
/// - `hosts`: every resolved host, same shape, file order.
/// - `vip`: the `vip` section with `address` (bare IP), `prefix`, `cidr`, `vrrp_version`
///   resolved and `notify_script` (its path), and `vip.aws` resolved for this host (see
///   [`resolve_vip_aws`]); none without a VIP.
/// - `nginx`, `haproxy` (with `backend_port` resolved), `app` (with `image_ref`, `health_url`,
///   `replicas_list: [{index, name, host_port, green_port, port_var}]`, `env_file` (the 0600
///   file holding `app.env`, see `crate::onhost::paths::env_path`), and `slot_file` /
///   `slot_include`: the nginx include that picks the blue or green slot): the sections, or
///   none.
/// - `vars`, `secret`, `outputs` (what the provider recorded in the state after provisioning:
///   `outputs.balancer.dns_name`, `outputs.database.endpoint`/`port`, `outputs.shared_fs.id`/
///   `dns_name`, `outputs.hosts`; an empty map for stacks without a provider's outputs).
pub fn build(
    stack: &Stack,
    host: &Host,
    hosts: &Value,
    outputs: &serde_json::Value,
    conv: &Converter,
    secrets: &Arc<Secrets>,
    tracker: &Arc<Tracker>,
) -> Result<Value, RenderError> {
    let f = &stack.file;
    let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();

    ctx.insert("stack", conv.convert(&to_json("stack", f)?));
    ctx.insert("host", conv.convert(&host_json(stack, host)?));
    ctx.insert("hosts", hosts.clone());

    let vip = match (&f.vip, &stack.vip) {
        (Some(spec), Some(resolved)) => {
            let mut v = to_json("vip", spec)?;
            if let Some(m) = v.as_object_mut() {
                m.insert("address".into(), resolved.address.to_string().into());
                m.insert("prefix".into(), resolved.prefix.into());
                m.insert(
                    "cidr".into(),
                    format!("{}/{}", resolved.address, resolved.prefix).into(),
                );
                m.insert("vrrp_version".into(), resolved.vrrp_version.into());
                let notify = has_notify(stack).then_some(NOTIFY_SCRIPT);
                m.insert("notify_script".into(), notify.into());
                m.insert("check_script".into(), CHECK_SCRIPT.into());
                m.insert("http_probe".into(), http_probe::PROGRAM.into());
                m.insert(
                    "http_probe_keepalived".into(),
                    http_probe::for_keepalived().into(),
                );
                let instance = m
                    .get("instance")
                    .and_then(|i| i.as_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some(checks) = m.get_mut("checks").and_then(|c| c.as_array_mut()) {
                    for (json, c) in checks.iter_mut().zip(&spec.checks) {
                        let Some(o) = json.as_object_mut() else {
                            continue;
                        };
                        o.insert("sub_second".into(), c.sub_second().into());
                        o.insert("run_timeout".into(), c.run_timeout().as_secs_f64().into());
                        let probe = c.http.as_ref().and_then(|h| http_probe::args(&h.value));
                        o.insert("http_probe".into(), probe.map(Vec::from).into());
                        o.insert(
                            "track_file".into(),
                            track_file(&instance, &c.name.value).into(),
                        );
                        // keepalived multiplies the file's number by the weight; with weight 0
                        // any non-zero number means FAULT. So: a positive weight counts while
                        // the check passes (1), otherwise a failure is 1.
                        let (ok, fail) = if c.weight.value > 0 { (1, 0) } else { (0, 1) };
                        o.insert("ok_value".into(), ok.into());
                        o.insert("fail_value".into(), fail.into());
                    }
                }
                if let (Some(aws), Some(serde_json::Value::Object(a))) =
                    (&spec.aws, m.get_mut("aws"))
                {
                    resolve_vip_aws(stack, host, aws, a);
                }
            }
            conv.convert(&v)
        }
        (Some(_), None) => return Err(RenderError::UnresolvedVip),
        (None, _) => Value::from(()),
    };
    ctx.insert("vip", vip);

    ctx.insert("nginx", conv.convert(&to_json("nginx", &f.nginx)?));

    let haproxy = match &f.haproxy {
        Some(h) => {
            let mut v = to_json("haproxy", h)?;
            let backend_port = h
                .backend_port
                .as_ref()
                .map(|p| p.value)
                .or_else(|| f.nginx.as_ref().map(|n| n.listen.value))
                .unwrap_or(80);
            if let Some(m) = v.as_object_mut() {
                m.insert("backend_port".into(), backend_port.into());
            }
            conv.convert(&v)
        }
        None => Value::from(()),
    };
    ctx.insert("haproxy", haproxy);

    let app = match &f.app {
        Some(a) => {
            let mut v = to_json("app", a)?;
            let replicas: Vec<serde_json::Value> = (0..a.replicas.value.max(0))
                .map(|i| {
                    serde_json::json!({
                        "index": i,
                        "name": format!("{}-{}", a.name, i + 1),
                        "host_port": a.host_port.value + i,
                        // blue/green: the second slot's port
                        "green_port": a.host_port.value
                            + i64::from(crate::onhost::app_ctl::GREEN_PORT_OFFSET)
                            + i,
                        "port_var": crate::onhost::paths::port_var(i as u16),
                    })
                })
                .collect();
            if let Some(m) = v.as_object_mut() {
                m.insert("image_ref".into(), app_image_ref(stack).into());
                m.insert(
                    "health_url".into(),
                    format!("http://127.0.0.1:{}{}", a.port.value, a.health.path).into(),
                );
                m.insert("replicas_list".into(), replicas.into());
                m.insert(
                    "env_file".into(),
                    crate::onhost::paths::env_path(stack.name()).into(),
                );
                let slot_file = crate::onhost::paths::upstream_path(stack.name());
                // a glob that matches exactly that file: nginx accepts a glob with no match
                let slot_include = match slot_file.rsplit_once('.') {
                    Some((base, ext)) => format!("{base}[.]{ext}"),
                    None => slot_file.clone(),
                };
                m.insert("slot_file".into(), slot_file.into());
                m.insert("slot_include".into(), slot_include.into());
            }
            conv.convert(&v)
        }
        None => Value::from(()),
    };
    ctx.insert("app", app);

    ctx.insert("vars", conv.convert(&to_json("vars", &f.vars)?));
    ctx.insert(
        "secret",
        Value::from_object(SecretsObject {
            secrets: secrets.clone(),
            tracker: tracker.clone(),
        }),
    );
    let outputs = match outputs {
        serde_json::Value::Object(_) => conv.convert(outputs),
        _ => Value::from(BTreeMap::<String, Value>::new()),
    };
    ctx.insert("outputs", outputs);
    Ok(Value::from_iter(ctx))
}
