//! `hactl completions SHELL` and `hactl man`: the shell completion script and the man pages,
//! both generated from the same clap definition the binary parses with (clap_complete,
//! clap_mangen), so they can never list a flag hactl does not have. Install steps: README.md.

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::{view, ExitStatus};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for: bash, zsh, fish, powershell (or elvish).
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `hactl.1` and one page per command (`hactl-up.1`, …) into this directory instead of
    /// printing `hactl.1` on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DocsError {
    #[error("cannot write the man pages into `{dir}`: {source}")]
    #[diagnostic(
        code(hactl::man::write),
        help("give a directory that exists and is writable, e.g. `--dir ~/.local/share/man/man1`")
    )]
    Write {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the generated {what} is not UTF-8")]
    #[diagnostic(code(hactl::docs::encoding))]
    Encoding { what: &'static str },
}

/// The completion script for `shell`, as text.
pub fn completion_script(shell: Shell) -> Result<String, DocsError> {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hactl", &mut buf);
    String::from_utf8(buf).map_err(|_| DocsError::Encoding {
        what: "completion script",
    })
}

/// The top-level man page (`hactl.1`, roff), as text.
pub fn man_page() -> Result<String, DocsError> {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = clap_mangen::Man::new(super::Cli::command()).render(&mut buf);
    String::from_utf8(buf).map_err(|_| DocsError::Encoding { what: "man page" })
}

pub fn run_completions(a: CompletionsArgs) -> miette::Result<ExitStatus> {
    view::print_out(&completion_script(a.shell)?);
    Ok(ExitStatus::Success)
}

pub fn run_man(a: ManArgs) -> miette::Result<ExitStatus> {
    match a.dir {
        None => view::print_out(&man_page()?),
        Some(dir) => {
            clap_mangen::generate_to(super::Cli::command(), &dir).map_err(|source| {
                DocsError::Write {
                    dir: dir.display().to_string(),
                    source,
                }
            })?;
        }
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shell's script names the binary and completes the commands and their flags.
    #[test]
    fn completions_cover_every_command() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let s = completion_script(shell).expect("script");
            for word in ["hactl", "validate", "up", "drill", "completions", "no-wait"] {
                assert!(s.contains(word), "{shell}: `{word}` missing");
            }
        }
    }

    #[test]
    fn man_page_lists_the_commands() {
        let m = man_page().expect("man page");
        assert!(m.starts_with(".ie") || m.contains(".TH hactl 1"), "{m}");
        for word in ["validate", "up", "status", "drill", "completions", "man"] {
            assert!(m.contains(word), "`{word}` missing from hactl.1");
        }
    }
}
