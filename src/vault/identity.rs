//! Identities: the private keys hactl tries, in a fixed order, to open a vault.
//!
//! 1. `HACTL_AGE_KEY`: the key text itself (CI puts it in a masked variable);
//! 2. `HACTL_AGE_KEY_FILE`: a file holding it;
//! 3. the stack's `vault.identity_file` (the lab's committed demo key);
//! 4. `~/.config/hactl/age.key` (what `hactl secrets init` creates);
//! 5. the user's SSH keys, `~/.ssh/id_ed25519` then `~/.ssh/id_rsa`.
//!
//! Each source is tried on its own so that the error for a vault nobody here can open lists
//! every source with why it did not work, and so that hactl knows which file it actually used
//! (it warns when that file lives inside a git repository: a key committed with the vault opens
//! it for anyone who can clone the repository). `~` is `$HOME` and nothing else, so tests that
//! set `HOME` never see the real keys.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{prompt, VaultError};
use crate::stack::Stack;

/// One place an identity may come from.
pub(crate) struct IdentitySource {
    /// How the error message names it.
    pub label: String,
    kind: Kind,
}

enum Kind {
    Env(&'static str),
    File(Option<PathBuf>),
    Ssh(PathBuf),
}

/// The keys found in one source.
pub(crate) struct Loaded {
    pub identities: Vec<Box<dyn age::Identity>>,
    /// The file it came from (None for `HACTL_AGE_KEY`).
    pub file: Option<PathBuf>,
    /// Public keys of the age identities (for `init`).
    pub public: Vec<String>,
}

/// Why a source gave no usable key.
pub(crate) enum Unusable {
    /// Nothing there (a variable not set, a file that does not exist).
    Absent(String),
    /// Something there that is not a usable key.
    Broken(String),
}

impl Unusable {
    pub fn reason(&self) -> &str {
        match self {
            Unusable::Absent(r) | Unusable::Broken(r) => r,
        }
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Where `init` creates a key and where hactl looks for one.
pub(crate) fn default_key_path() -> Option<PathBuf> {
    home().map(|h| h.join(".config/hactl/age.key"))
}

/// Every source, in the order they are tried.
pub(crate) fn identity_sources(stack: &Stack) -> Vec<IdentitySource> {
    let mut out = vec![IdentitySource {
        label: "HACTL_AGE_KEY".into(),
        kind: Kind::Env("HACTL_AGE_KEY"),
    }];
    match std::env::var_os("HACTL_AGE_KEY_FILE").filter(|v| !v.is_empty()) {
        Some(p) => out.push(IdentitySource {
            label: format!("HACTL_AGE_KEY_FILE (`{}`)", Path::new(&p).display()),
            kind: Kind::File(Some(PathBuf::from(p))),
        }),
        None => out.push(IdentitySource {
            label: "HACTL_AGE_KEY_FILE".into(),
            kind: Kind::File(None),
        }),
    }
    if let Some(f) = stack
        .file
        .vault
        .as_ref()
        .and_then(|v| v.identity_file.as_ref())
    {
        let p = stack.resolve_path(&f.value);
        out.push(IdentitySource {
            label: format!("vault.identity_file of the stack (`{}`)", p.display()),
            kind: Kind::File(Some(p)),
        });
    }
    match default_key_path() {
        Some(p) => out.push(IdentitySource {
            label: format!("`{}`", p.display()),
            kind: Kind::File(Some(p)),
        }),
        None => out.push(IdentitySource {
            label: "~/.config/hactl/age.key".into(),
            kind: Kind::File(None),
        }),
    }
    if let Some(h) = home() {
        for name in ["id_ed25519", "id_rsa"] {
            let p = h.join(".ssh").join(name);
            out.push(IdentitySource {
                label: format!("SSH key `{}`", p.display()),
                kind: Kind::Ssh(p),
            });
        }
    }
    out
}

impl IdentitySource {
    pub fn load(&self) -> Result<Loaded, Unusable> {
        match &self.kind {
            Kind::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => {
                    let text = Zeroizing::new(v);
                    parse_identity_text(&text, None, var)
                }
                Ok(_) | Err(std::env::VarError::NotPresent) => {
                    Err(Unusable::Absent("not set".into()))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(Unusable::Broken("not valid UTF-8".into()))
                }
            },
            Kind::File(None) => Err(Unusable::Absent("not set".into())),
            Kind::File(Some(p)) | Kind::Ssh(p) => {
                let text = match std::fs::read(p) {
                    Ok(b) => Zeroizing::new(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Unusable::Absent("no such file".into()))
                    }
                    Err(e) => return Err(Unusable::Broken(format!("cannot read it: {e}"))),
                };
                let text = std::str::from_utf8(&text)
                    .map_err(|_| Unusable::Broken("not a text file".into()))?;
                parse_identity_text(text, Some(p), &p.display().to_string())
            }
        }
    }
}

/// Reads age keys (`AGE-SECRET-KEY-…` lines, `#` comments) or one SSH private key.
fn parse_identity_text(text: &str, file: Option<&Path>, name: &str) -> Result<Loaded, Unusable> {
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.contains("-----BEGIN RSA PRIVATE KEY-----")
    {
        return parse_ssh(text, file, name);
    }
    let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
    let mut public = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match age::x25519::Identity::from_str(line) {
            Ok(id) => {
                public.push(id.to_public().to_string());
                identities.push(Box::new(id));
            }
            // The line may be a key: never quote it.
            Err(_) if line.starts_with("age1") || line.starts_with("ssh-") => {
                return Err(Unusable::Broken(format!(
                    "line {} is a public key; an identity is the private key (`AGE-SECRET-KEY-…`)",
                    i + 1
                )))
            }
            Err(_) => {
                return Err(Unusable::Broken(format!(
                    "line {} is not an age private key (`AGE-SECRET-KEY-…`)",
                    i + 1
                )))
            }
        }
    }
    if identities.is_empty() {
        return Err(Unusable::Broken("holds no key".into()));
    }
    Ok(Loaded {
        identities,
        file: file.map(Path::to_path_buf),
        public,
    })
}

fn parse_ssh(text: &str, file: Option<&Path>, name: &str) -> Result<Loaded, Unusable> {
    let id = age::ssh::Identity::from_buffer(text.as_bytes(), Some(name.to_string()))
        .map_err(|e| Unusable::Broken(format!("not a usable SSH private key ({e})")))?;
    let boxed: Box<dyn age::Identity> = match id {
        age::ssh::Identity::Unencrypted(_) => Box::new(id),
        age::ssh::Identity::Encrypted(_) => {
            if !super::io::interactive() {
                return Err(Unusable::Broken(
                    "protected by a passphrase, which hactl asks for only in a terminal".into(),
                ));
            }
            Box::new(id.with_callbacks(TtyCallbacks))
        }
        age::ssh::Identity::Unsupported(_) => {
            return Err(Unusable::Broken(
                "a key type age cannot decrypt with (use ssh-ed25519 or ssh-rsa)".into(),
            ))
        }
    };
    Ok(Loaded {
        identities: vec![boxed],
        file: file.map(Path::to_path_buf),
        public: Vec::new(),
    })
}

/// Asks for an SSH key's passphrase on the terminal, without echo.
#[derive(Clone)]
struct TtyCallbacks;

impl age::Callbacks for TtyCallbacks {
    fn display_message(&self, message: &str) {
        super::io::note(message);
    }
    fn confirm(&self, _message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _description: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        prompt::read_hidden(&format!("{description}: "))
            .ok()
            .map(|p| SecretString::from(p.as_str().to_owned()))
    }
}

/// The git repository a file lives in, if any.
pub(crate) fn git_root(path: &Path) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(path).ok()?;
    abs.ancestors()
        .skip(1)
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Says so on stderr when the identity hactl used is inside a git repository.
pub(crate) fn warn_if_in_git(path: &Path) {
    if let Some(root) = git_root(path) {
        super::io::note(&format!(
            "warning: the identity `{}` lives inside the git repository `{}`: anyone who can \
             read the repository can open this vault (acceptable for a demo key only)",
            path.display(),
            root.display()
        ));
    }
}

/// For `init`: the public key of the identity this user will open the vault with, creating
/// `~/.config/hactl/age.key` (0600, in a 0700 directory) when no age identity is configured.
/// Returns the public key and, when one was made, the new key's path.
pub(crate) fn ensure_identity(stack: &Stack) -> Result<(String, Option<PathBuf>), VaultError> {
    for src in identity_sources(stack) {
        if matches!(src.kind, Kind::Ssh(_)) {
            continue;
        }
        match src.load() {
            Ok(l) => {
                if let Some(p) = l.public.into_iter().next() {
                    if let Some(f) = &l.file {
                        warn_if_in_git(f);
                    }
                    return Ok((p, None));
                }
            }
            Err(Unusable::Absent(_)) => {}
            Err(Unusable::Broken(why)) => {
                return Err(VaultError::KeyGen {
                    reason: format!("{} is set but unusable: {why}", src.label),
                })
            }
        }
    }
    let path = default_key_path().ok_or_else(|| VaultError::KeyGen {
        reason: "HOME is not set".into(),
    })?;
    let public = generate_key(&path)?;
    Ok((public, Some(path)))
}

/// Writes a new age identity to `path` (which must not exist), 0600.
pub(crate) fn generate_key(path: &Path) -> Result<String, VaultError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| VaultError::io("create the directory", dir, e))?;
    }
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let secret = id.to_string();
    let text = Zeroizing::new(format!(
        "# age identity made by `hactl secrets init`; keep it private, back it up\n\
         # public key: {public}\n{}\n",
        secret.expose_secret()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| VaultError::io("create", path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| VaultError::io("write", path, e))?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_text_with_comments_loads() {
        let id = age::x25519::Identity::generate();
        let text = format!("# a comment\n\n{}\n", id.to_string().expose_secret());
        let l = match parse_identity_text(&text, None, "t") {
            Ok(l) => l,
            Err(e) => panic!("{}", e.reason()),
        };
        assert_eq!(l.public, vec![id.to_public().to_string()]);
    }

    #[test]
    fn public_key_as_identity_is_explained_without_quoting() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let Err(e) = parse_identity_text(&public, None, "t") else {
            panic!("a public key loaded as an identity")
        };
        assert!(e.reason().contains("public key"));
        assert!(!e.reason().contains(&public));
        let Err(e) = parse_identity_text("hello", None, "t") else {
            panic!("junk loaded as an identity")
        };
        assert!(e.reason().contains("line 1"));
    }

    #[test]
    fn generated_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/hactl/age.key");
        let public = generate_key(&path).unwrap();
        assert!(public.starts_with("age1"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert!(generate_key(&path).is_err(), "never overwrites a key");
    }
}
