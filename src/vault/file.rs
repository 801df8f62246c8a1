//! The vault file on disk: where it is, decrypting it with the first identity that opens it,
//! and writing it back atomically (a temp file in the same directory, fsync, rename), so a
//! failed or interrupted command leaves the previous vault byte-identical.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use zeroize::Zeroizing;

use super::identity::{identity_sources, warn_if_in_git};
use super::recipients::Recipients;
use super::{payload, Secrets, VaultError};
use crate::stack::Stack;

/// The two files of a stack's vault.
#[derive(Debug, Clone)]
pub(crate) struct VaultPaths {
    /// The ciphertext, `secrets/<stack>.age` by default.
    pub vault: PathBuf,
    /// Who can read it, beside it: `<vault without .age>.recipients`.
    pub recipients: PathBuf,
}

impl VaultPaths {
    /// `vault.file` when the stack sets it; else `secrets/<stack>.age` under the stack's repo:
    /// the parent of a `stacks/` directory, or the stack file's own directory.
    pub fn of(stack: &Stack) -> Self {
        let vault = match stack.file.vault.as_ref().and_then(|v| v.file.as_ref()) {
            Some(f) => stack.resolve_path(&f.value),
            None => {
                let dir = named_dir(stack.dir());
                let root = match (dir.file_name(), dir.parent()) {
                    // An empty parent (`stacks/x.yaml`) joins as the current directory.
                    (Some(n), Some(parent)) if n == "stacks" => parent,
                    _ => &dir,
                };
                root.join("secrets").join(format!("{}.age", stack.name()))
            }
        };
        let recipients = vault.with_extension("recipients");
        VaultPaths { vault, recipients }
    }
}

/// `dir` with a last component that names it: `.` or `..` (`-f x.yaml` run inside `stacks/`)
/// becomes the absolute directory it stands for (without resolving symlinks), so the vault of
/// one stack file is the same however its path is written.
fn named_dir(dir: &Path) -> PathBuf {
    if dir.file_name().is_some() {
        return dir.to_path_buf();
    }
    let abs = std::env::current_dir()
        .map(|cwd| cwd.join(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Decrypts the stack's vault. Returns the label of the identity that opened it and the
/// secrets; refuses a vault that belongs to another stack.
pub(crate) fn read_vault(
    stack: &Stack,
    paths: &VaultPaths,
) -> Result<(String, Secrets), VaultError> {
    // Before any identity or plaintext is in memory: no core file may hold them.
    super::no_core_dumps();
    let shown = paths.vault.display().to_string();
    let bytes = match std::fs::read(&paths.vault) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VaultError::Missing {
                stack: stack.name().to_string(),
                path: shown,
                stack_file: stack.path.display().to_string(),
            })
        }
        Err(e) => return Err(VaultError::io("read", &paths.vault, e)),
    };
    let corrupt = |reason: String| VaultError::Corrupt {
        path: shown.clone(),
        reason,
    };
    // Parse the header once up front: a damaged file is reported as damaged, not as "no key".
    age::Decryptor::new_buffered(ArmoredReader::new(&bytes[..]))
        .map_err(|e| corrupt(describe(&e)))?;

    let mut tried = Vec::new();
    for source in identity_sources(stack) {
        let loaded = match source.load() {
            Ok(l) => l,
            Err(u) => {
                tried.push(format!("  - {}: {}", source.label, u.reason()));
                continue;
            }
        };
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(&bytes[..]))
            .map_err(|e| corrupt(describe(&e)))?;
        let mut reader = match decryptor.decrypt(loaded.identities.iter().map(|i| i.as_ref())) {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) => {
                tried.push(format!(
                    "  - {}: not a recipient of this vault",
                    source.label
                ));
                continue;
            }
            Err(e) => return Err(corrupt(describe(&e))),
        };
        // Sized up front so the plaintext is never reallocated (and left behind unwiped).
        let mut plain = Zeroizing::new(Vec::with_capacity(bytes.len()));
        reader.read_to_end(&mut plain).map_err(|e| {
            corrupt(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "it is truncated".into()
            } else {
                format!("its ciphertext does not authenticate ({e})")
            })
        })?;
        tracing::debug!(identity = %source.label, vault = %shown, "vault opened");
        if let Some(f) = &loaded.file {
            warn_if_in_git(f);
        }
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Yaml {
            path: shown.clone(),
            at: String::new(),
            detail: "the plaintext is not UTF-8".into(),
        })?;
        let (owner, secrets) = payload::decode(text, &paths.vault)?;
        if owner != stack.name() {
            return Err(VaultError::WrongStack {
                path: shown,
                found: owner,
                expected: stack.name().to_string(),
            });
        }
        return Ok((source.label, secrets));
    }
    Err(VaultError::NoIdentity { path: shown, tried })
}

/// What a decryption error means for the person reading it.
fn describe(e: &age::DecryptError) -> String {
    match e {
        age::DecryptError::InvalidHeader => "its age header is malformed".into(),
        age::DecryptError::InvalidMac => "its header MAC does not match".into(),
        age::DecryptError::UnknownFormat => "it is not an age file".into(),
        age::DecryptError::DecryptionFailed => "its ciphertext does not authenticate".into(),
        age::DecryptError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "it is truncated".into()
        }
        age::DecryptError::Io(io) => format!("it cannot be read as an age file ({io})"),
        other => other.to_string(),
    }
}

/// Encrypts `secrets` for `stack` to `recipients` and replaces the vault atomically.
pub(crate) fn write_vault(
    stack: &Stack,
    paths: &VaultPaths,
    secrets: &Secrets,
    recipients: &Recipients,
) -> Result<(), VaultError> {
    let plain = payload::encode(stack.name(), secrets);
    let ciphertext = encrypt(plain.as_bytes(), recipients, &paths.recipients)?;
    write_atomic(&paths.vault, &ciphertext, 0o644)
}

/// Rewrites the recipients file atomically.
pub(crate) fn write_recipients(
    paths: &VaultPaths,
    recipients: &Recipients,
) -> Result<(), VaultError> {
    write_atomic(&paths.recipients, recipients.render().as_bytes(), 0o644)
}

/// Armored age ciphertext of `plain` for every recipient.
pub(crate) fn encrypt(
    plain: &[u8],
    recipients: &Recipients,
    recipients_path: &Path,
) -> Result<Vec<u8>, VaultError> {
    let list = recipients.to_age(recipients_path)?;
    let enc =
        age::Encryptor::with_recipients(list.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .map_err(|e| VaultError::Encrypt {
                reason: e.to_string(),
            })?;
    let io_err = |e: std::io::Error| VaultError::Encrypt {
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(io_err)?;
    let mut w = enc.wrap_output(armor).map_err(io_err)?;
    w.write_all(plain).map_err(io_err)?;
    w.finish().and_then(|a| a.finish()).map_err(io_err)?;
    Ok(out)
}

/// Replaces `path` with `data` ([`crate::localfs::replace`]): either the old or the new
/// content is there afterwards, never a mix or nothing. A missing directory gets mkdir's
/// default mode.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), VaultError> {
    crate::localfs::replace(path, data, mode, 0o777)
        .map_err(|e| VaultError::io(e.what, &e.path, e.source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn encrypts_to_each_recipient() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let text = format!("{}\n{}\n", a.to_public(), b.to_public());
        let r = Recipients::parse(&text, Path::new("r")).unwrap();
        let ct = encrypt(b"hello", &r, Path::new("r")).unwrap();
        assert!(ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        for id in [&a, &b] {
            let d = age::Decryptor::new_buffered(ArmoredReader::new(&ct[..])).unwrap();
            let mut out = Vec::new();
            d.decrypt(std::iter::once(id as &dyn age::Identity))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, b"hello");
        }
        let _ = a.to_string().expose_secret().len();
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/v.age");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
