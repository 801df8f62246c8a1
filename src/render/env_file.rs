//! The app's environment file (`compose.env`, 0600): `app.env` from the stack, secrets
//! included, in the format the stack's container runtime reads.

use std::fmt::Write as _;

use crate::onhost::app_ctl::Runtime;

/// Why a value cannot go into the environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileError {
    /// Not `[A-Za-z_][A-Za-z0-9_]*`.
    Name,
    /// A newline or NUL: one line per variable, in both runtimes' formats.
    LineBreak,
    /// docker compose reads the file as dotenv: a value is single-quoted to stay literal, so
    /// it cannot hold `'`.
    SingleQuote,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvFileError::Name => "an environment variable name is letters, digits and `_`, not starting with a digit",
            EnvFileError::LineBreak => "the value holds a line break or NUL, which an environment file cannot carry",
            EnvFileError::SingleQuote => "the value holds `'`, which docker compose's environment file cannot carry literally",
        })
    }
}

/// The environment file's text for the runtime. podman reads `--env-file` lines as
/// `NAME=VALUE` with the value taken literally (containers/common `pkg/env`); docker compose
/// reads `env_file` as dotenv, where only a single-quoted value is literal (no `$`
/// interpolation, no `#` comment). Errors name the offending variable.
pub fn env_file(runtime: Runtime, vars: &[(&str, &str)]) -> Result<String, (String, EnvFileError)> {
    let mut out = String::from(
        "# Written by hactl (`app.env` in the stack). Do not edit: `hactl up` overwrites it.\n",
    );
    for (name, value) in vars {
        let err = |e| Err((name.to_string(), e));
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return err(EnvFileError::Name);
        }
        if value.contains(['\n', '\r', '\0']) {
            return err(EnvFileError::LineBreak);
        }
        match runtime {
            Runtime::Podman => {
                let _ = writeln!(out, "{name}={value}");
            }
            Runtime::Docker => {
                if value.contains('\'') {
                    return err(EnvFileError::SingleQuote);
                }
                let _ = writeln!(out, "{name}='{value}'");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_per_runtime_keeps_values_literal() {
        let vars = [("DB_PASSWORD", "p#ss $HOME w0rd"), ("MODE", "prod")];
        assert_eq!(
            env_file(Runtime::Podman, &vars).as_deref(),
            Ok("# Written by hactl (`app.env` in the stack). Do not edit: `hactl up` overwrites it.\nDB_PASSWORD=p#ss $HOME w0rd\nMODE=prod\n")
        );
        assert_eq!(
            env_file(Runtime::Docker, &vars).as_deref(),
            Ok("# Written by hactl (`app.env` in the stack). Do not edit: `hactl up` overwrites it.\nDB_PASSWORD='p#ss $HOME w0rd'\nMODE='prod'\n")
        );
        let err = |rt, n, v| env_file(rt, &[(n, v)]).map_err(|(_, e)| e);
        assert_eq!(
            err(Runtime::Podman, "A", "x\ny"),
            Err(EnvFileError::LineBreak)
        );
        assert_eq!(
            err(Runtime::Docker, "A", "it's"),
            Err(EnvFileError::SingleQuote)
        );
        assert!(err(Runtime::Podman, "A", "it's").is_ok());
        assert_eq!(err(Runtime::Podman, "1A", "x"), Err(EnvFileError::Name));
        assert_eq!(err(Runtime::Podman, "A=B", "x"), Err(EnvFileError::Name));
    }
}
