//! Stack diagnostics: every problem found in a stack file, with its source location.
//!
//! A `Problem` is one finding (code, message, span, hint); `StackError::Invalid` carries all of
//! them at once with the file's text so miette can print `file:line:col`, the line and a caret.

use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// One problem in a stack file.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct Problem {
    pub message: String,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    #[source_code]
    pub src: Option<NamedSource<Arc<String>>>,
    pub code: &'static str,
}

/// Why a stack could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum StackError {
    #[error("cannot read stack file `{path}`: {source}")]
    #[diagnostic(code(hactl::stack::io))]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{} in `{path}`", plural(problems.len()))]
    #[diagnostic(code(hactl::stack::invalid))]
    Invalid {
        path: String,
        #[related]
        problems: Vec<Problem>,
    },
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

impl StackError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StackError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
