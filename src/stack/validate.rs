//! Parsing and semantic checks (placeholder: resolves hosts; full checks land with the
//! validation work).

use std::path::Path;
use std::sync::Arc;

use super::diag::StackError;
use super::model::StackFile;
use super::{Host, Stack};

pub(super) fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Stack, StackError> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let file: StackFile = serde_saphyr::from_str(&text).map_err(|e| StackError::Invalid {
        path: path.display().to_string(),
        problems: vec![super::diag::Problem {
            message: e.to_string(),
            span: None,
            label: String::new(),
            help: None,
            src: None,
            code: "hactl::stack::syntax",
        }],
    })?;
    let n = file.hosts.len();
    let hosts = file
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Host {
            name: h.name.value.clone(),
            address: h.address.value.parse().expect("placeholder"),
            ssh_target: h
                .ssh_host
                .clone()
                .unwrap_or_else(|| h.address.value.clone()),
            priority: h
                .priority
                .as_ref()
                .map(|p| p.value as u8)
                .unwrap_or(if i == 0 { 150 } else { 101 - i as u8 }),
            peers: Vec::new(),
            interface: "eth0".into(),
            roles: ["vip", "app"].iter().map(|s| s.to_string()).collect(),
        })
        .collect::<Vec<_>>();
    let _ = n;
    Ok(Stack {
        file,
        path: path.to_path_buf(),
        source: Arc::new(text),
        hosts,
        vip: None,
    })
}
