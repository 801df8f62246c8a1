//! The recipients file (`secrets/<stack>.recipients`): who can open the vault, in plain text so
//! that a review shows it. One public key per line, age (`age1…`) or SSH (`ssh-ed25519 …`,
//! `ssh-rsa …`, with an optional comment); `#` lines and blank lines are kept as written.

use std::path::Path;
use std::str::FromStr;

use super::VaultError;

/// One line of the recipients file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecipientLine {
    /// A comment or a blank line, kept verbatim.
    Other(String),
    /// A key: the line as written and the key itself (without an SSH comment).
    Key { text: String, key: String },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Recipients {
    pub lines: Vec<RecipientLine>,
}

/// An age recipient that can go into an encryptor.
type AgeRecipient = Box<dyn age::Recipient + Send>;

/// Parses one public key; returns its normal form (what `remove` matches) and the recipient.
pub(crate) fn parse_key(line: &str) -> Result<(String, AgeRecipient), String> {
    let line = line.trim();
    if line.starts_with("age1") {
        let key = line.split_whitespace().next().unwrap_or(line);
        return age::x25519::Recipient::from_str(key)
            .map(|r| (key.to_string(), Box::new(r) as AgeRecipient))
            .map_err(|e| format!("not a valid age public key ({e})"));
    }
    if line.starts_with("AGE-SECRET-KEY-") {
        return Err("this is a private key: give its public key (`age1…`) instead".into());
    }
    if line.starts_with("ssh-") || line.starts_with("ecdsa-") || line.starts_with("sk-") {
        let normal = line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        return match age::ssh::Recipient::from_str(line) {
            Ok(r) => Ok((normal, Box::new(r))),
            Err(age::ssh::ParseRecipientKeyError::Unsupported(kind)) => Err(format!(
                "`{kind}` keys cannot receive age files; use an ssh-ed25519 or ssh-rsa key"
            )),
            Err(age::ssh::ParseRecipientKeyError::RsaModulusTooSmall) => {
                Err("this ssh-rsa key is shorter than 2048 bits".into())
            }
            Err(age::ssh::ParseRecipientKeyError::RsaModulusTooLarge) => {
                Err("this ssh-rsa key is longer than age supports".into())
            }
            Err(_) => Err("not a valid SSH public key".into()),
        };
    }
    if line.contains("PRIVATE KEY") {
        return Err("this is a private key: give the public key (`.pub`) instead".into());
    }
    Err("neither an age public key (`age1…`) nor an SSH public key".into())
}

impl Recipients {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(VaultError::io("read", path, e)),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, VaultError> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                lines.push(RecipientLine::Other(raw.to_string()));
                continue;
            }
            let (key, _) = parse_key(t).map_err(|reason| VaultError::BadRecipient {
                path: path.display().to_string(),
                line: i + 1,
                reason,
            })?;
            lines.push(RecipientLine::Key {
                text: t.to_string(),
                key,
            });
        }
        Ok(Recipients { lines })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            RecipientLine::Key { key, .. } => Some(key.as_str()),
            RecipientLine::Other(_) => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys().next().is_none()
    }

    /// Adds a key (validated); false when it is already there.
    pub fn add(&mut self, line: &str) -> Result<bool, VaultError> {
        let line = line.trim();
        let (key, _) = parse_key(line).map_err(|reason| VaultError::BadRecipientKey {
            key: shorten(line),
            reason,
        })?;
        if self.keys().any(|k| k == key) {
            return Ok(false);
        }
        self.lines.push(RecipientLine::Key {
            text: line.to_string(),
            key,
        });
        Ok(true)
    }

    /// Removes a key (matched without its SSH comment); false when it was not there.
    pub fn remove(&mut self, line: &str) -> bool {
        let wanted = match parse_key(line) {
            Ok((key, _)) => key,
            Err(_) => line.trim().to_string(),
        };
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, RecipientLine::Key { key, .. } if *key == wanted));
        self.lines.len() != before
    }

    /// The recipients for an encryptor; an empty list is refused (nobody could open the vault).
    pub fn to_age(&self, path: &Path) -> Result<Vec<AgeRecipient>, VaultError> {
        let mut out = Vec::new();
        for l in &self.lines {
            if let RecipientLine::Key { text, .. } = l {
                let (_, r) = parse_key(text).map_err(|reason| VaultError::BadRecipient {
                    path: path.display().to_string(),
                    line: 0,
                    reason,
                })?;
                out.push(r);
            }
        }
        if out.is_empty() {
            return Err(VaultError::NoRecipients {
                path: path.display().to_string(),
            });
        }
        Ok(out)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                RecipientLine::Other(t) | RecipientLine::Key { text: t, .. } => out.push_str(t),
            }
            out.push('\n');
        }
        out
    }
}

/// Keys are long; errors show their start.
/// How an argument that was refused as a recipient is named in the error. Only what starts
/// like a public key is quoted (shortened); anything else may be a private key or a password
/// pasted by mistake, and an error message lands in terminals' scrollback and CI logs, so it is
/// named by its length only.
fn shorten(s: &str) -> String {
    let public = ["age1", "ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| s.starts_with(p));
    if !public {
        return format!("the {}-character argument (not shown)", s.chars().count());
    }
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_age_and_ssh_keys_and_keeps_comments() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG/XH8zbp+OFh/23mh408uVRYfJQqzCOH40aLwcLiM6H alice@laptop";
        let text = format!("# the lab\n{public}\n\n{ssh}\n");
        let r = Recipients::parse(&text, Path::new("r")).unwrap();
        assert_eq!(r.keys().count(), 2);
        assert_eq!(r.render(), text);
        assert_eq!(r.to_age(Path::new("r")).unwrap().len(), 2);
    }

    #[test]
    fn add_and_remove_match_without_comments() {
        let mut r = Recipients::default();
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG/XH8zbp+OFh/23mh408uVRYfJQqzCOH40aLwcLiM6H alice";
        assert!(r.add(ssh).unwrap());
        assert!(!r.add(&ssh.replace("alice", "bob")).unwrap());
        assert!(r.remove(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG/XH8zbp+OFh/23mh408uVRYfJQqzCOH40aLwcLiM6H"
        ));
        assert!(r.is_empty());
        assert!(matches!(
            r.to_age(Path::new("r")),
            Err(VaultError::NoRecipients { .. })
        ));
    }

    #[test]
    fn refuses_private_keys_and_junk() {
        let mut r = Recipients::default();
        let err = r.add("AGE-SECRET-KEY-1QQQQ").unwrap_err();
        assert!(format!("{err}").contains("private key"));
        // A refused argument that is not a public key is never quoted, not even in part.
        let secret = "AGE-SECRET-KEY-17JWWTPA74ZVKSDWPF28RS8Q5QQQQQQQQQQQQQQQQQQQQ";
        let text = format!("{}", r.add(secret).unwrap_err());
        assert!(!text.contains("17JWW"), "{text}");
        assert!(text.contains("60-character argument (not shown)"), "{text}");
        let text = format!("{}", r.add("hunter2-my-password").unwrap_err());
        assert!(!text.contains("hunter2"), "{text}");
        let text = format!("{}", r.add("ssh-dss AAAAB3NzaC1kc3MAAACBAP").unwrap_err());
        assert!(
            text.contains("ssh-dss AAAA"),
            "a public key is named: {text}"
        );
        assert!(r.add("hello").is_err());
        let err = Recipients::parse("# x\nage1nope\n", Path::new("r")).unwrap_err();
        assert!(format!("{err}").starts_with("r:2:"), "{err}");
    }
}
