//! Saved plans, the CI workflow: `hactl plan -f STACK -o plan.bin` writes the plan with what
//! it was made from; `hactl up plan.bin` applies exactly that plan or refuses.
//!
//! What a saved plan holds (JSON, `format_version` 1): the stack file's path and SHA-256, the
//! state's lineage and serial, a digest of everything observed (cloud resources as read —
//! address, kind, attributes, references, id — and every host file's digest, mode and type,
//! every service's state and the host's manifest), the targets, and the plan as `plan --json`
//! shows it. It holds no file content beyond the diffs `plan` shows (no secret: sensitive
//! files appear as digests only) and no provider payload.
//!
//! How `up plan.bin` applies "exactly that plan": it locks, observes and plans again, then
//! compares. A different stack file, state (lineage or serial: another run wrote it), observed
//! digest (a host file edited, a resource changed by hand) or plan is stale and refused
//! ([`SavedError::Stale`]) before anything changes: what runs is then provably the plan that
//! was reviewed. Terraform refuses a stale plan file the same way (`internal/plans/planfile`,
//! the state's lineage and serial).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cloud::Cloud;
use super::layers::HostLayer;
use crate::plan::{sha256_hex, Plan};
use crate::stack::Stack;

/// The version of the saved plan format this hactl reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// What a plan was made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    /// SHA-256 of the stack file's bytes.
    pub stack_sha256: String,
    /// The state's lineage and serial (None: no state yet).
    pub lineage: Option<String>,
    pub serial: u64,
    /// SHA-256 over everything observed (see the module doc).
    pub observed_sha256: String,
}

impl Basis {
    pub fn of(
        stack: &Stack,
        state: Option<(String, u64)>,
        cloud: Option<&Cloud>,
        layer: Option<&HostLayer>,
    ) -> Basis {
        let stack_sha256 = std::fs::read(&stack.path)
            .map(|b| sha256_hex(&b))
            .unwrap_or_default();
        let mut seen = String::new();
        if let Some(c) = cloud {
            for o in &c.observed {
                seen.push_str(&format!(
                    "R {} {} {:?} {:?} {}\n",
                    o.res.addr,
                    o.res.kind.type_name(),
                    o.res.attrs,
                    o.res.refs,
                    o.id
                ));
            }
        }
        if let Some(l) = layer {
            for (host, o) in &l.observed.hosts {
                for (path, f) in &o.files {
                    match f {
                        Some(f) => seen.push_str(&format!(
                            "F {host} {path} {} {:o} {:?}\n",
                            f.sha256, f.mode, f.kind
                        )),
                        None => seen.push_str(&format!("F {host} {path} missing\n")),
                    }
                }
                for (svc, st) in &o.services {
                    seen.push_str(&format!("S {host} {svc} {}\n", st.active));
                }
                if let Some(m) = &o.manifest {
                    seen.push_str(&format!(
                        "M {host} {}\n",
                        serde_json::to_string(m).unwrap_or_default()
                    ));
                }
            }
            for f in &l.observed.failures {
                seen.push_str(&format!("X {} {}\n", f.host, f.error));
            }
        }
        let (lineage, serial) = match state {
            Some((l, s)) => (Some(l), s),
            None => (None, 0),
        };
        Basis {
            stack_sha256,
            lineage,
            serial,
            observed_sha256: sha256_hex(seen.as_bytes()),
        }
    }
}

/// A plan saved by `plan -o`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub format_version: u32,
    pub hactl_version: String,
    pub stack: String,
    /// The stack file, as given to `plan -f` (made absolute).
    pub stack_file: PathBuf,
    pub basis: Basis,
    /// `--target` / `--hosts` the plan was narrowed with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Made with `--provision-only` (the cloud layer only); `up` applies it so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provision_only: bool,
    /// The plan as `plan --json` shows it.
    pub plan: serde_json::Value,
}

/// Why a saved plan cannot be applied.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedError {
    #[error("cannot read the saved plan `{path}`: {error}")]
    #[diagnostic(
        code(hactl::plan::saved_unreadable),
        help("a saved plan is the file `hactl plan -f STACK -o FILE` wrote")
    )]
    Unreadable { path: PathBuf, error: String },
    #[error(
        "the saved plan `{path}` has format version {found}; this hactl reads version {expected}"
    )]
    #[diagnostic(
        code(hactl::plan::saved_version),
        help("make the plan again with this hactl: `hactl plan -f STACK -o FILE`")
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("cannot write the saved plan `{path}`: {error}")]
    #[diagnostic(code(hactl::plan::saved_unwritable))]
    Unwritable { path: PathBuf, error: String },
    #[error(
        "the saved plan `{path}` is stale: {what} changed since it was made; nothing was applied"
    )]
    #[diagnostic(
        code(hactl::plan::stale),
        help("make and review a new plan: `hactl plan -f {stack_file} -o {path}`, then `hactl up {path}`")
    )]
    Stale {
        path: String,
        stack_file: String,
        what: String,
    },
}

impl Saved {
    pub fn new(
        stack: &Stack,
        basis: &Basis,
        plan: &Plan,
        targets: &super::target::Targets,
    ) -> Saved {
        let stack_file = std::fs::canonicalize(&stack.path).unwrap_or_else(|_| stack.path.clone());
        Saved {
            format_version: FORMAT_VERSION,
            hactl_version: env!("CARGO_PKG_VERSION").to_string(),
            stack: stack.name().to_string(),
            stack_file,
            basis: basis.clone(),
            targets: targets.addrs.iter().map(|a| a.to_string()).collect(),
            hosts: targets.hosts.clone(),
            provision_only: false,
            plan: serde_json::to_value(plan).unwrap_or_default(),
        }
    }

    /// The stack file `up` applies a plan to: the one given, else the saved plan's own.
    pub fn stack_file(given: Option<&Path>, saved: Option<&Saved>) -> miette::Result<PathBuf> {
        match (given, saved) {
            (Some(f), _) => Ok(f.to_path_buf()),
            (None, Some(s)) => Ok(s.stack_file.clone()),
            (None, None) => Err(miette::miette!(
                code = "hactl::up::no_stack",
                help = "give the stack file with `-f STACK` (or HACTL_STACK), or a saved plan",
                "`up` needs a stack file or a saved plan"
            )),
        }
    }

    /// The targets the plan was narrowed with.
    pub fn narrowed(&self) -> super::target::Targets {
        super::target::Targets {
            addrs: self.targets.iter().filter_map(|t| t.parse().ok()).collect(),
            hosts: self.hosts.clone(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), SavedError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| SavedError::Unwritable {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| SavedError::Unwritable {
            path: path.to_path_buf(),
            error: e.to_string(),
        })
    }

    pub fn read(path: &Path) -> Result<Saved, SavedError> {
        let bad = |error: String| SavedError::Unreadable {
            path: path.to_path_buf(),
            error,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let found = v["format_version"].as_u64().unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(SavedError::Version {
                path: path.to_path_buf(),
                found,
                expected: FORMAT_VERSION,
            });
        }
        serde_json::from_value(v).map_err(|e| bad(e.to_string()))
    }

    /// Refuses unless `fresh` (made now, from what is there now) is this plan made from the
    /// same stack file, state and observations.
    pub fn check(&self, path: &Path, fresh: &Saved) -> Result<(), SavedError> {
        let what = if self.stack != fresh.stack {
            Some(format!("the stack (`{}` → `{}`)", self.stack, fresh.stack))
        } else if self.basis.stack_sha256 != fresh.basis.stack_sha256 {
            Some("the stack file".to_string())
        } else if self.basis.lineage != fresh.basis.lineage {
            Some("the state's lineage (another state)".to_string())
        } else if self.basis.serial != fresh.basis.serial {
            Some(format!(
                "the state (serial {} → {}: another run wrote it)",
                self.basis.serial, fresh.basis.serial
            ))
        } else if self.basis.observed_sha256 != fresh.basis.observed_sha256 {
            Some(
                "what is deployed (a resource or a host file differs from when it was observed)"
                    .to_string(),
            )
        } else if self.plan != fresh.plan {
            Some("the plan".to_string())
        } else {
            None
        };
        match what {
            None => Ok(()),
            Some(what) => Err(SavedError::Stale {
                path: path.display().to_string(),
                stack_file: self.stack_file.display().to_string(),
                what,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::tests::{file, res};
    use crate::plan::Action;

    fn saved(serial: u64, observed: &str, plan: &Plan) -> Saved {
        Saved {
            format_version: FORMAT_VERSION,
            hactl_version: "test".into(),
            stack: "web".into(),
            stack_file: "/srv/web.yaml".into(),
            basis: Basis {
                stack_sha256: "s1".into(),
                lineage: Some("L".into()),
                serial,
                observed_sha256: observed.into(),
            },
            targets: Vec::new(),
            hosts: Vec::new(),
            provision_only: false,
            plan: serde_json::to_value(plan).unwrap_or_default(),
        }
    }

    fn plan() -> Plan {
        Plan::new(
            "web",
            vec![
                res("aws_vpc.main", Action::Create, &[]),
                file("web-0", "/etc/nginx/nginx.conf"),
            ],
            0,
            Vec::new(),
        )
    }

    #[test]
    fn stale_saved_plan_refused() {
        let p = plan();
        let path = Path::new("plan.bin");
        let old = saved(4, "o1", &p);
        assert!(old.check(path, &saved(4, "o1", &p)).is_ok());
        // another run wrote the state
        let e = old
            .check(path, &saved(5, "o1", &p))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("serial 4 → 5")),
            "{e:?}"
        );
        // a host file or a resource changed by hand
        let e = old
            .check(path, &saved(4, "o2", &p))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("what is deployed")),
            "{e:?}"
        );
        // the stack file changed
        let mut f = saved(4, "o1", &p);
        f.basis.stack_sha256 = "s2".into();
        let e = old.check(path, &f).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("the stack file")),
            "{e:?}"
        );
        // the plan made now differs
        let mut p2 = plan();
        p2.changes.pop();
        let e = old.check(path, &saved(4, "o1", &p2)).err();
        let e = e.map(|e| crate::view::format_report(&miette::Report::new(e), false));
        insta::assert_snapshot!(e.unwrap_or_default());
    }

    #[test]
    fn saved_plan_round_trips_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.bin");
        let s = saved(1, "o", &plan());
        s.write(&path).unwrap();
        assert_eq!(Saved::read(&path).unwrap(), s);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"format_version\": 1", "\"format_version\": 9");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            Saved::read(&path),
            Err(SavedError::Version { found: 9, .. })
        ));
    }
}
