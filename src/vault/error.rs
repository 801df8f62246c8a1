//! Why a vault operation failed. No variant ever carries a secret value or a line of plaintext:
//! YAML errors inside a vault keep only their position and a message with quoted parts removed.

use miette::Diagnostic;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum VaultError {
    #[error("cannot {action} `{path}`: {source}")]
    #[diagnostic(code(hactl::vault::io))]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },

    #[error("the stack `{stack}` has no vault: `{path}` does not exist")]
    #[diagnostic(
        code(hactl::vault::missing),
        help("create it with `hactl secrets init -f {stack_file}`")
    )]
    Missing {
        stack: String,
        path: String,
        stack_file: String,
    },

    #[error("the vault `{path}` already exists")]
    #[diagnostic(
        code(hactl::vault::exists),
        help("use `hactl secrets set`, `edit` or `recipients add` to change it")
    )]
    Exists { path: String },

    #[error("no identity can open the vault `{path}`; tried, in order:\n{}", tried.join("\n"))]
    #[diagnostic(
        code(hactl::vault::no_identity),
        help(
            "set HACTL_AGE_KEY (the key itself) or HACTL_AGE_KEY_FILE, or ask someone who can open \
             the vault to add your public key with `hactl secrets recipients add`"
        )
    )]
    NoIdentity { path: String, tried: Vec<String> },

    #[error("the vault `{path}` is damaged or was tampered with: {reason}")]
    #[diagnostic(
        code(hactl::vault::corrupt),
        help(
            "restore it from git (`git checkout -- {path}`); hactl never decrypts a damaged vault"
        )
    )]
    Corrupt { path: String, reason: String },

    #[error("the vault `{path}` belongs to the stack `{found}`, not to `{expected}`")]
    #[diagnostic(
        code(hactl::vault::wrong_stack),
        help(
            "each stack has its own vault; point `vault.file` at the right one, or create one \
             with `hactl secrets init`"
        )
    )]
    WrongStack {
        path: String,
        found: String,
        expected: String,
    },

    #[error("the YAML inside the vault `{path}` is invalid{at}: {detail}")]
    #[diagnostic(
        code(hactl::vault::yaml),
        help(
            "the vault holds a map of `name: value` strings; values with several lines use \
             `name: |` blocks"
        )
    )]
    Yaml {
        path: String,
        at: String,
        detail: String,
    },

    #[error("`{name}` is not a valid secret name")]
    #[diagnostic(
        code(hactl::vault::bad_name),
        help("names are letters, digits and `_`, starting with a letter or `_` (as in `{{{{ secret.db_password }}}}`)")
    )]
    BadName { name: String },

    #[error("the vault of `{stack}` has no secret `{name}`")]
    #[diagnostic(code(hactl::vault::unknown_secret), help("{hint}"))]
    UnknownSecret {
        stack: String,
        name: String,
        hint: String,
    },

    #[error("{path}:{line}: {reason}")]
    #[diagnostic(
        code(hactl::vault::bad_recipient),
        help(
            "one recipient per line: an age key (`age1…`) or an SSH public key (`ssh-ed25519 …`, \
             `ssh-rsa …`); `#` starts a comment"
        )
    )]
    BadRecipient {
        path: String,
        line: usize,
        reason: String,
    },

    #[error("`{key}` is not a recipient: {reason}")]
    #[diagnostic(
        code(hactl::vault::bad_recipient),
        help("give an age public key (`age1…`) or an SSH public key (`ssh-ed25519 AAAA…`)")
    )]
    BadRecipientKey { key: String, reason: String },

    #[error("the recipients file `{path}` lists nobody")]
    #[diagnostic(
        code(hactl::vault::no_recipients),
        help("add a recipient with `hactl secrets recipients add KEY`; a vault nobody can open is lost")
    )]
    NoRecipients { path: String },

    #[error("`{key}` is not in `{path}`")]
    #[diagnostic(code(hactl::vault::not_a_recipient))]
    NotARecipient { key: String, path: String },

    #[error("cannot encrypt the vault: {reason}")]
    #[diagnostic(code(hactl::vault::encrypt))]
    Encrypt { reason: String },

    #[error("no value: {reason}")]
    #[diagnostic(
        code(hactl::vault::no_value),
        help("pipe the value in (`printf %s \"$VALUE\" | hactl secrets set NAME -f STACK`) or run it in a terminal to be asked")
    )]
    NoValue { reason: String },

    #[error("the editor failed: {reason}")]
    #[diagnostic(
        code(hactl::vault::editor),
        help("set EDITOR to an editor that waits until the file is closed (e.g. `code --wait`); the vault is unchanged")
    )]
    Editor { reason: String },

    #[error("`secrets edit` needs a terminal: no EDITOR or VISUAL is set, and `vi` would draw the secrets on a stream that is not one")]
    #[diagnostic(
        code(hactl::vault::no_terminal),
        help("run it in a terminal, set EDITOR to a program that edits the file named by its argument, or use `hactl secrets set NAME` (value on stdin) in scripts; the vault is unchanged")
    )]
    NoTerminal,

    #[error("interrupted: the plaintext copy was wiped and the vault is unchanged")]
    #[diagnostic(code(hactl::vault::interrupted))]
    Interrupted,

    #[error("cannot create an identity: {reason}")]
    #[diagnostic(code(hactl::vault::keygen))]
    KeyGen { reason: String },
}

impl VaultError {
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        VaultError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
