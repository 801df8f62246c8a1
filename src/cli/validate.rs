//! `hactl validate -f STACK [--json]`: loads the stack, reports every problem, exits 0 or 1.
//!
//! Human output: a one-line summary on stdout when valid, after the stack's risks as located
//! warnings on stderr (the same list `plan`, `up` and `explain` print: see `ha::problems`);
//! otherwise the error (every problem with `file:line:col`, the line, a caret, a code and a
//! hint) goes to `main`, the one place that prints errors. With `--json` exactly one document
//! goes to stdout either way (warnings under `warnings`), and the exit code still says valid
//! (0) or not (1): warnings never refuse a stack.

use serde::Serialize;

use super::StackArgs;
use crate::stack::diag::JsonDiagnostic;
use crate::{stack, view, ExitStatus};

/// What `validate --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    valid: bool,
    file: String,
    /// The stack's name (only when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<String>,
    /// Number of hosts listed (only when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    hosts: Option<usize>,
    diagnostics: Vec<JsonDiagnostic>,
    /// The stack's risks (only when valid).
    warnings: Vec<JsonDiagnostic>,
}

pub fn run(args: StackArgs) -> miette::Result<ExitStatus> {
    let file = args.file.display().to_string();
    match stack::load(&args.file) {
        Ok(stack) if args.json => {
            let warnings = crate::ha::problems(&stack)
                .iter()
                .map(|w| JsonDiagnostic::of(&file, w))
                .collect();
            view::print_json(&Report {
                valid: true,
                file: file.clone(),
                stack: Some(stack.name().to_string()),
                hosts: Some(stack.hosts.len()),
                diagnostics: Vec::new(),
                warnings,
            })?;
            Ok(ExitStatus::Success)
        }
        Ok(stack) => {
            view::print_warnings(&crate::ha::problems(&stack));
            view::print_out(&format!(
                "{file}: stack `{}` is valid ({} hosts)\n",
                stack.name(),
                stack.hosts.len()
            ));
            Ok(ExitStatus::Success)
        }
        Err(e) if args.json => {
            view::print_json(&Report {
                valid: false,
                file,
                stack: None,
                hosts: None,
                diagnostics: e.diagnostics(),
                warnings: Vec::new(),
            })?;
            Ok(ExitStatus::Failure)
        }
        Err(e) => Err(e.into()),
    }
}
