//! The vault's way to the terminal: notes, prompts, a command's output and its JSON document.
//!
//! The vault sits below the presentation layer (`view` reaches the engine, which opens the
//! vault), so it cannot call `view` without an import cycle. It prints through [`Io`] instead,
//! which `main.rs` installs once, backed by `view`, before any command runs. A process-wide
//! hook rather than a parameter because [`crate::vault::open`] asks for an SSH key's passphrase
//! and warns about an identity inside git from deep in the engine, renderer and providers,
//! whose signatures should not carry a terminal. Without an installed [`Io`] (unit tests)
//! nothing is shown and nothing is asked: [`Io::interactive`] is false, so an encrypted SSH key
//! is refused rather than prompted for.

use std::sync::OnceLock;

/// What the vault needs from the terminal. The byte-level behaviour (newlines, which stream,
/// flushing) is the implementer's: `main.rs` maps each method to the `view` function of the
/// same name.
pub trait Io: Sync {
    /// A progress or notice line on stderr (a newline is added).
    fn note(&self, text: &str);
    /// A prompt on stderr, without a newline (the answer follows on the same line).
    fn prompt(&self, text: &str);
    /// True when stdin and stderr are both terminals: only then may the vault ask a question.
    fn interactive(&self) -> bool;
    /// A command's output, written as is (stdout; stderr while a JSON document owns stdout).
    fn print_out(&self, text: &str);
    /// True when stdout is a terminal.
    fn stdout_is_terminal(&self) -> bool;
    /// Adds `value` under `key` to the command's JSON document.
    ///
    /// # Errors
    /// When the document cannot take it.
    fn put_named(&self, key: &str, value: serde_json::Value) -> miette::Result<()>;
}

static IO: OnceLock<&'static dyn Io> = OnceLock::new();

/// Makes `io` the vault's terminal for the rest of the process; a second call is ignored.
pub fn install(io: &'static dyn Io) {
    let _ = IO.set(io);
}

/// No terminal: shows nothing, asks nothing.
struct Silent;

impl Io for Silent {
    fn note(&self, _text: &str) {}
    fn prompt(&self, _text: &str) {}
    fn interactive(&self) -> bool {
        false
    }
    fn print_out(&self, _text: &str) {}
    fn stdout_is_terminal(&self) -> bool {
        false
    }
    fn put_named(&self, _key: &str, _value: serde_json::Value) -> miette::Result<()> {
        Ok(())
    }
}

fn io() -> &'static dyn Io {
    IO.get().copied().unwrap_or(&Silent)
}

pub(crate) fn note(text: &str) {
    io().note(text);
}

pub(crate) fn prompt(text: &str) {
    io().prompt(text);
}

pub(crate) fn interactive() -> bool {
    io().interactive()
}

pub(crate) fn print_out(text: &str) {
    io().print_out(text);
}

pub(crate) fn stdout_is_terminal() -> bool {
    io().stdout_is_terminal()
}

pub(crate) fn put_named<T: serde::Serialize>(key: &str, value: &T) -> miette::Result<()> {
    let value = serde_json::to_value(value)
        .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?;
    io().put_named(key, value)
}
