//! The age vault: secrets encrypted in the repo, opened with each person's or CI's own key.
//!
//! [`Secret`] is the only type that holds a decrypted value; it redacts itself in `Debug`,
//! `Display` and `Serialize`, so a secret can only reach a template or a host by an explicit
//! `expose()` call.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// A decrypted secret value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The plain value, for the one place that must use it (a template, a host's stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// The decrypted vault: name → secret.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub values: BTreeMap<String, Secret>,
}

impl Secrets {
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }
}
