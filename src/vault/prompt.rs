//! Reading a secret value: from stdin when it is piped, else from a terminal prompt with echo
//! off (termios, restored on every path). Never from argv: arguments are visible to every user
//! in `ps` and end up in shell history.

use std::io::{IsTerminal, Read};

use zeroize::Zeroizing;

use super::{Secret, VaultError};

/// The value for `secrets set NAME`.
///
/// Piped input keeps its bytes, except that a single-line value loses its trailing newline
/// (`echo pw | hactl secrets set x` means `pw`); a multi-line value (a key, a certificate) is
/// kept exactly, since its final newline usually matters.
pub(crate) fn read_value(name: &str) -> Result<Secret, VaultError> {
    if std::io::stdin().is_terminal() {
        let first = read_hidden(&format!("value for `{name}` (not shown): ")).map_err(|e| {
            VaultError::NoValue {
                reason: format!("cannot read the terminal: {e}"),
            }
        })?;
        if first.is_empty() {
            return Err(VaultError::NoValue {
                reason: "the value is empty".into(),
            });
        }
        let again = read_hidden("again: ").map_err(|e| VaultError::NoValue {
            reason: format!("cannot read the terminal: {e}"),
        })?;
        if *first != *again {
            return Err(VaultError::NoValue {
                reason: "the two entries differ".into(),
            });
        }
        return Ok(Secret::new(first.as_str().to_owned()));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(64 * 1024));
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| VaultError::NoValue {
            reason: format!("cannot read stdin: {e}"),
        })?;
    let text = std::str::from_utf8(&buf).map_err(|_| VaultError::NoValue {
        reason: "stdin is not UTF-8 text".into(),
    })?;
    let value = trim_single_line(text);
    if value.is_empty() {
        return Err(VaultError::NoValue {
            reason: "stdin was empty".into(),
        });
    }
    Ok(Secret::new(value.to_owned()))
}

fn trim_single_line(text: &str) -> &str {
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if body.contains('\n') {
        text
    } else {
        body
    }
}

/// Restores the terminal's settings when dropped (also on a panic).
struct Restore(libc::termios);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads a termios we got from tcgetattr on the same descriptor.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
        }
    }
}

/// Prints `prompt` on stderr and reads one line from the terminal on stdin with echo off.
pub(crate) fn read_hidden(prompt: &str) -> std::io::Result<Zeroizing<String>> {
    super::io::prompt(prompt);
    // SAFETY: termios is plain data; tcgetattr fills it or fails (checked).
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let restore = Restore(term);
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: a termios obtained from tcgetattr with flags changed.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    drop(restore);
    let trimmed = Zeroizing::new(trim_single_line(&line).to_owned());
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::trim_single_line;

    #[test]
    fn single_line_values_lose_their_newline_multi_line_keep_it() {
        assert_eq!(trim_single_line("pw\n"), "pw");
        assert_eq!(trim_single_line("pw\r\n"), "pw");
        assert_eq!(trim_single_line("pw"), "pw");
        assert_eq!(trim_single_line("a\nb\n"), "a\nb\n");
        assert_eq!(trim_single_line("a\nb"), "a\nb");
    }
}
