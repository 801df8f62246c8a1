//! Stack diagnostics: every problem found in a stack file, with its source location.
//!
//! A [`Problem`] is one finding: a stable code (`hactl::stack::duplicate_host`), a message, the
//! span it points at, a label for the caret and a hint. [`StackError::Invalid`] carries all of
//! them at once, each holding the file's text as a miette `NamedSource`, so the graphical
//! handler prints `[file:line:col]`, the source line and a caret for every one of them.
//! [`SourceMap`] turns the parser's 1-based, character-counted line/column into the byte
//! spans miette wants (and back), so nothing here depends on the parser's own byte offsets,
//! which it does not always have (syntax errors).
//!
//! Codes are part of hactl's interface (scripts match on them, `validate --json` prints them):
//! add new ones freely, never rename one.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};
use serde::Serialize;

/// One problem in a stack file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Stable code, `hactl::stack::<what>`.
    pub code: &'static str,
    pub message: String,
    /// Text under the caret.
    pub label: String,
    /// Byte span in the file's text.
    pub span: Option<SourceSpan>,
    pub help: Option<String>,
    /// 1-based line and column (in characters) of the span's start.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The file, attached when the problems are collected into a [`StackError`].
    pub src: Option<NamedSource<Arc<String>>>,
    /// Error (the default: the stack is refused) or warning (a risk `validate`, `plan` and
    /// `up` print and go on).
    pub severity: miette::Severity,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            label: String::new(),
            span: None,
            help: None,
            line: None,
            column: None,
            src: None,
            severity: miette::Severity::Error,
        }
    }

    /// The same finding as a warning: printed, never refused.
    pub fn warning(mut self) -> Self {
        self.severity = miette::Severity::Warning;
        self
    }

    /// Points the problem at `span` (when known) with `label` under the caret.
    pub fn at(mut self, span: Option<SourceSpan>, label: impl Into<String>) -> Self {
        self.span = span;
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        // Without a span there is nothing to excerpt; returning the source anyway would make
        // miette print the file's name with no line, which reads like a location.
        match (&self.src, self.span) {
            (Some(src), Some(_)) => Some(src as &dyn SourceCode),
            _ => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        let label = if self.label.is_empty() {
            None
        } else {
            Some(self.label.clone())
        };
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(label, span),
        )))
    }
}

/// Why a stack could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum StackError {
    #[error("cannot read stack file `{path}`: {source}")]
    #[diagnostic(
        code(hactl::stack::io),
        help("check the path given with `-f` (or `HACTL_STACK`)")
    )]
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

/// Attaches the file to each problem (the text at `path`), fills in line and column, and orders
/// them as they appear in the file.
pub fn locate(path: &Path, text: Arc<String>, mut problems: Vec<Problem>) -> Vec<Problem> {
    let name = path.display().to_string();
    let map = SourceMap::new(&text);
    for p in &mut problems {
        if let Some(span) = p.span {
            let (line, col) = map.line_col(span.offset());
            p.line = Some(line);
            p.column = Some(col);
            p.src = Some(NamedSource::new(name.clone(), text.clone()).with_language("yaml"));
        }
    }
    // Top to bottom, unlocated ones last; the sort is stable so problems at the same place
    // keep the order the checks found them in.
    problems.sort_by_key(|p| p.span.map(|s| s.offset()).unwrap_or(usize::MAX));
    problems
}

impl JsonDiagnostic {
    /// One located problem (see [`locate`]) of the file at `file`.
    pub fn of(file: &str, p: &Problem) -> JsonDiagnostic {
        JsonDiagnostic {
            code: p.code.into(),
            message: p.message.clone(),
            file: file.to_string(),
            line: p.line,
            column: p.column,
            label: (!p.label.is_empty()).then(|| p.label.clone()),
            help: p.help.clone(),
        }
    }
}

/// One diagnostic as `hactl validate --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JsonDiagnostic {
    pub code: String,
    pub message: String,
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub label: Option<String>,
    pub help: Option<String>,
}

impl StackError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StackError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Collects `problems` found in `text` (the file at `path`): attaches the source to each,
    /// fills in line and column, and orders them as they appear in the file.
    pub fn invalid(path: &Path, text: Arc<String>, problems: Vec<Problem>) -> Self {
        StackError::Invalid {
            path: path.display().to_string(),
            problems: locate(path, text, problems),
        }
    }

    /// The problems (one for an I/O error).
    pub fn diagnostics(&self) -> Vec<JsonDiagnostic> {
        match self {
            StackError::Io { path, source } => vec![JsonDiagnostic {
                code: "hactl::stack::io".into(),
                message: format!("cannot read stack file `{path}`: {source}"),
                file: path.clone(),
                line: None,
                column: None,
                label: None,
                help: None,
            }],
            StackError::Invalid { path, problems } => problems
                .iter()
                .map(|p| JsonDiagnostic {
                    code: p.code.into(),
                    message: p.message.clone(),
                    file: path.clone(),
                    line: p.line,
                    column: p.column,
                    label: (!p.label.is_empty()).then(|| p.label.clone()),
                    help: p.help.clone(),
                })
                .collect(),
        }
    }

    /// The codes of every problem, in order.
    #[cfg(test)]
    pub fn codes(&self) -> Vec<&'static str> {
        match self {
            StackError::Io { .. } => vec!["hactl::stack::io"],
            StackError::Invalid { problems, .. } => problems.iter().map(|p| p.code).collect(),
        }
    }
}

/// Line starts of a text, to convert between byte offsets and 1-based line/column.
/// Columns count characters, as the YAML parser does.
pub struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap { text, line_starts }
    }

    /// The text this map indexes.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Byte offset of 1-based `line` and character `column`, clamped to the text.
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let mut chars = rest.char_indices();
        let mut off = rest.len();
        for _ in 0..column.saturating_sub(1) {
            if chars.next().is_none() {
                return start + off;
            }
        }
        if let Some((i, _)) = chars.next() {
            off = i;
        }
        start + off
    }

    /// 1-based line and character column of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line + 1, col + 1)
    }

    /// A span of `chars` characters from 1-based `line`/`column` (at least one character
    /// unless at the end of a line, so the caret has something to sit under).
    pub fn span(&self, line: usize, column: usize, chars: usize) -> SourceSpan {
        let start = self.offset(line, column);
        let rest = &self.text[start..];
        let want = chars.max(1);
        let mut len = 0;
        for c in rest.chars().take(want) {
            if c == '\n' || c == '\r' {
                break;
            }
            len += c.len_utf8();
        }
        SourceSpan::new(start.into(), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_with_multibyte_text() {
        let text = "a: é\nbé: x\n\nlast";
        let map = SourceMap::new(text);
        assert_eq!(map.offset(1, 1), 0);
        assert_eq!(map.offset(2, 1), 6);
        assert_eq!(map.offset(2, 5), 11);
        assert_eq!(map.line_col(11), (2, 5));
        assert_eq!(map.line_col(map.offset(4, 3)), (4, 3));
        // Past the end clamps instead of panicking.
        assert_eq!(map.offset(99, 1), text.len());
        assert_eq!(map.line_col(10_000), (4, 5));
    }

    #[test]
    fn spans_stop_at_the_end_of_the_line() {
        let text = "key: value\nnext: 1\n";
        let map = SourceMap::new(text);
        let s = map.span(1, 6, 50);
        assert_eq!((s.offset(), s.len()), (5, 5));
        let s = map.span(1, 6, 0);
        assert_eq!((s.offset(), s.len()), (5, 1));
    }

    #[test]
    fn problems_are_sorted_and_located() {
        let text = Arc::new("a: 1\nb: 2\n".to_string());
        let map = SourceMap::new(&text);
        let err = StackError::invalid(
            Path::new("s.yaml"),
            text.clone(),
            vec![
                Problem::new("hactl::stack::x", "second").at(Some(map.span(2, 4, 1)), "here"),
                Problem::new("hactl::stack::y", "nowhere"),
                Problem::new("hactl::stack::z", "first").at(Some(map.span(1, 1, 1)), "here"),
            ],
        );
        assert_eq!(
            err.codes(),
            vec!["hactl::stack::z", "hactl::stack::x", "hactl::stack::y"]
        );
        let d = err.diagnostics();
        assert_eq!((d[1].line, d[1].column), (Some(2), Some(4)));
        assert_eq!(d[2].line, None);
    }
}
