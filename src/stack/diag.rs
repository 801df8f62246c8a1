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
//!
//! Everything here is indexed so that its cost does not grow with the file for each problem:
//! a file with ten thousand problems (ten thousand hosts with tied priorities) must print in
//! well under a second. miette's own `SourceCode` for a string scans from the file's start for
//! every excerpt, so the problems share one [`StackSource`] that finds the lines around a span
//! by binary search and lets miette scan only those; [`SourceMap`] converts line/column to
//! byte offsets through checkpoints instead of walking the (possibly one very long) line.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};
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
    pub src: Option<Arc<StackSource>>,
    /// Error (the default: the stack is refused) or warning (a risk or advice `validate`,
    /// `plan` and `up` print and go on; e.g. a load balancer subnet smaller than AWS's /27).
    pub severity: miette::Severity,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: printable(message.into()),
            label: String::new(),
            span: None,
            help: None,
            line: None,
            column: None,
            src: None,
            severity: miette::Severity::Error,
        }
    }

    /// Whether this is a warning (printed, never refused) rather than an error.
    pub fn is_warning(&self) -> bool {
        self.severity == miette::Severity::Warning
    }

    /// The same finding as a warning: printed, never refused.
    pub fn warning(mut self) -> Self {
        self.severity = miette::Severity::Warning;
        self
    }

    /// Points the problem at `span` (when known) with `label` under the caret.
    pub fn at(mut self, span: Option<SourceSpan>, label: impl Into<String>) -> Self {
        self.span = span;
        self.label = printable(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(printable(help.into()));
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help.map(printable);
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
            (Some(src), Some(_)) => Some(src.as_ref() as &dyn SourceCode),
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
    #[error("{} in `{path}`", plural(problems.iter().filter(|p| !p.is_warning()).count()))]
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
            severity: if p.is_warning() { "warning" } else { "error" },
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
    /// `error` or `warning`.
    pub severity: &'static str,
}

impl From<&Problem> for JsonDiagnostic {
    fn from(p: &Problem) -> Self {
        JsonDiagnostic {
            code: p.code.into(),
            message: p.message.clone(),
            file: p
                .src
                .as_ref()
                .map(|s| s.name().to_string())
                .unwrap_or_default(),
            line: p.line,
            column: p.column,
            label: (!p.label.is_empty()).then(|| p.label.clone()),
            help: p.help.clone(),
            severity: if p.is_warning() { "warning" } else { "error" },
        }
    }
}

/// Attaches the file at `path` (its `text`) to each problem, fills in line and column, and
/// orders them as they appear in the file (unlocated ones last).
pub fn locate(path: &Path, text: Arc<String>, mut problems: Vec<Problem>) -> Vec<Problem> {
    let name = path.display().to_string();
    let map = SourceMap::new(&text);
    let src = Arc::new(StackSource::new(name, text.clone()));
    for p in &mut problems {
        if let Some(span) = p.span {
            let (line, col) = map.line_col(span.offset());
            p.line = Some(line);
            p.column = Some(col);
            p.src = Some(Arc::clone(&src));
        }
    }
    // The sort is stable so problems at the same place keep the order the checks found them in.
    problems.sort_by_key(|p| p.span.map(|s| s.offset()).unwrap_or(usize::MAX));
    problems
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
                severity: "error",
            }],
            StackError::Invalid { path, problems } => problems
                .iter()
                .map(|p| JsonDiagnostic {
                    file: path.clone(),
                    ..JsonDiagnostic::from(p)
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
///
/// Characters are found through checkpoints (the byte offset of every [`CHECKPOINT`]th
/// character of the text), so a conversion costs a binary search and at most that many
/// characters of scanning, however long the line: a stack written as one flow-style line is
/// still linear to check.
pub struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// Character index (in the whole text) of each line's start.
    line_chars: Vec<usize>,
    /// `checkpoints[k]`: byte offset of character `k * CHECKPOINT`.
    checkpoints: Vec<usize>,
    /// Characters in the whole text.
    chars: usize,
}

/// Characters between two checkpoints of a [`SourceMap`].
const CHECKPOINT: usize = 64;

impl<'a> SourceMap<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        let mut line_chars = vec![0];
        let mut checkpoints = Vec::with_capacity(text.len() / CHECKPOINT + 1);
        let mut chars = 0;
        for (i, c) in text.char_indices() {
            if chars % CHECKPOINT == 0 {
                checkpoints.push(i);
            }
            chars += 1;
            if c == '\n' {
                line_starts.push(i + 1);
                line_chars.push(chars);
            }
        }
        SourceMap {
            text,
            line_starts,
            line_chars,
            checkpoints,
            chars,
        }
    }

    /// The text this map indexes.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Byte offset of the character with (whole-text) index `n`, clamped to the text's end.
    fn byte_of_char(&self, n: usize) -> usize {
        if n >= self.chars {
            return self.text.len();
        }
        let base = self.checkpoints[n / CHECKPOINT];
        let skip = n % CHECKPOINT;
        match self.text[base..].char_indices().nth(skip) {
            Some((i, _)) => base + i,
            None => self.text.len(),
        }
    }

    /// (Whole-text) index of the character that starts at or contains byte `offset`.
    fn char_of_byte(&self, offset: usize) -> usize {
        let k = match self.checkpoints.binary_search(&offset) {
            Ok(k) => return k * CHECKPOINT,
            Err(0) => return 0,
            Err(k) => k - 1,
        };
        let base = self.checkpoints[k];
        let n = self.text[base..]
            .char_indices()
            .take_while(|(i, _)| base + i < offset)
            .count();
        k * CHECKPOINT + n
    }

    /// Byte offset of 1-based `line` and character `column`, clamped to the text.
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&first) = self.line_chars.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        self.byte_of_char(first.saturating_add(column.saturating_sub(1)))
    }

    /// 1-based line and character column of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let col = self.char_of_byte(offset) - self.line_chars[line];
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

/// A stack file as miette reads it for the excerpt under each problem: the file's name, its
/// text, and where its lines start, shared by every problem of one [`StackError`].
///
/// miette's own excerpt code (`context_info` for `str`) walks the text from its start up to
/// the span; here the lines around the span are found by binary search, and miette's code runs
/// on just those lines, so each excerpt is exactly what miette would print, at a cost that
/// does not depend on where in the file the problem is.
#[derive(Debug)]
pub struct StackSource {
    name: String,
    text: Arc<String>,
    /// Line starts as miette counts lines: after `\n`, after `\r\n`, after a lone `\r`.
    line_starts: Vec<usize>,
}

/// `text` with what a terminal would act on instead of showing written as escapes
/// (`\u{1b}`): a diagnostic quotes keys and values from a stack file that may come from an
/// untrusted pull request, and its output lands in terminals and CI logs. Newlines stay.
pub fn printable(text: String) -> String {
    if !text.chars().any(is_hostile) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if is_hostile(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Control characters (C0 but newline, tab and carriage return; DEL; C1) and the bidirectional
/// overrides and isolates that reorder what is shown (CVE-2021-42574, "Trojan Source").
fn is_hostile(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The file's text as excerpts show it: every hostile character ([`is_hostile`]) replaced by
/// as many `?` as it has bytes, so every span's byte offsets still point at the same text.
fn shown_text(text: &Arc<String>) -> Arc<String> {
    if !text.chars().any(is_hostile) {
        return text.clone();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hostile(c) {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    Arc::new(out)
}

impl StackSource {
    pub fn new(name: String, text: Arc<String>) -> StackSource {
        let text = shown_text(&text);
        let b = text.as_bytes();
        let mut line_starts = vec![0];
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\r' if b.get(i + 1) == Some(&b'\n') => {
                    i += 1;
                    line_starts.push(i + 1);
                }
                b'\r' | b'\n' => line_starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        StackSource {
            name,
            text,
            line_starts,
        }
    }

    /// The file's name as given (`-f`), for `validate --json`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Index of the line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }
}

/// A line longer than this (bytes) is shown clipped around the span, without context lines.
const LONG_LINE: usize = 1024;

/// Bytes kept on each side of a span on a clipped line.
const CLIP_MARGIN: usize = 120;

impl StackSource {
    /// The excerpt for a span on a very long line (a stack written in flow style, all on one
    /// line): the span and [`CLIP_MARGIN`] bytes either side, instead of the whole line once
    /// per problem (ten thousand problems on a 400 kB line would print 4 GB). `None` for a
    /// line of normal length, which miette shows whole. Without `context` (miette asks so for
    /// the `[file:line:col]` header) the excerpt starts at the span, as miette's own does.
    fn clipped(&self, start: usize, end: usize, context: bool) -> Option<MietteSpanContents<'_>> {
        let text = self.text.as_str();
        let line = self.line_of(start);
        let line_start = self.line_starts[line];
        let line_end = self
            .line_starts
            .get(line + 1)
            .map(|&n| n.saturating_sub(1))
            .unwrap_or(text.len());
        if line_end.saturating_sub(line_start) <= LONG_LINE {
            return None;
        }
        let margin = if context { CLIP_MARGIN } else { 0 };
        let mut from = start.saturating_sub(margin).max(line_start);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        let mut to = end
            .saturating_add(CLIP_MARGIN)
            .min(line_end.max(end))
            .min(text.len());
        while !text.is_char_boundary(to) {
            to += 1;
        }
        // miette counts columns in bytes from the line's start.
        Some(
            MietteSpanContents::new_named(
                self.name.clone(),
                &text.as_bytes()[from..to],
                SourceSpan::new(from.into(), to - from),
                line,
                from - line_start,
                1,
            )
            .with_language("yaml"),
        )
    }
}

impl SourceCode for StackSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let bytes = self.text.as_bytes();
        // A span past the end is miette's to judge (it accepts one that ends a byte late).
        let end = span.offset().saturating_add(span.len()).min(bytes.len());
        if span.offset() > bytes.len() {
            return Err(MietteError::OutOfBounds);
        }
        if let Some(clipped) = self.clipped(span.offset(), end, context_lines_before > 0) {
            return Ok(Box::new(clipped));
        }
        // One line more on each side than asked, so miette's scan sees the same line breaks
        // around the context as it would in the whole file.
        let first = self
            .line_of(span.offset())
            .saturating_sub(context_lines_before.saturating_add(1));
        let last = self
            .line_of(end)
            .saturating_add(context_lines_after)
            .saturating_add(2);
        let from = self.line_starts[first];
        let to = self.line_starts.get(last).copied().unwrap_or(bytes.len());
        let window = &bytes[from..to];
        let rel = SourceSpan::new((span.offset() - from).into(), span.len());
        let inner = window.read_span(&rel, context_lines_before, context_lines_after)?;
        Ok(Box::new(
            MietteSpanContents::new_named(
                self.name.clone(),
                inner.data(),
                SourceSpan::new((inner.span().offset() + from).into(), inner.span().len()),
                inner.line() + first,
                inner.column(),
                inner.line_count() + first,
            )
            .with_language("yaml"),
        ))
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

    proptest::proptest! {
        /// The indexed source gives miette exactly what miette's own `NamedSource` over the
        /// whole text gives (so every excerpt prints as before), for any text of short lines
        /// (`\n`, `\r\n`, lone `\r`, multi-byte characters), span and context.
        #[test]
        fn stack_source_reads_spans_as_miette_does(
            text in "(a|é|:|-| |\n|\r\n|\r|日){0,60}",
            start in 0usize..80,
            len in 0usize..10,
            before in 0usize..3,
            after in 0usize..3,
        ) {
            // (miette's own code panics on a span that starts past the end; ours refuses it.)
            let start = start.min(text.len());
            let text = Arc::new(text);
            let span = SourceSpan::new(start.into(), len);
            let ours = StackSource::new("s.yaml".into(), text.clone());
            let theirs = miette::NamedSource::new("s.yaml", text.to_string());
            let owned = |c: Result<Box<dyn SpanContents<'_> + '_>, MietteError>| {
                c.ok().map(|c| {
                    (
                        c.data().to_vec(),
                        *c.span(),
                        c.line(),
                        c.column(),
                        c.line_count(),
                        c.name().map(str::to_string),
                    )
                })
            };
            let a = owned(ours.read_span(&span, before, after));
            let b = owned(theirs.read_span(&span, before, after));
            proptest::prop_assert_eq!(a, b);
        }

        /// Offsets and line/columns agree with a plain character walk, on any text.
        #[test]
        fn source_map_agrees_with_a_character_walk(
            text in "(a|é|\n|日|\r){0,300}",
            line in 1usize..8,
            column in 1usize..200,
            at in 0usize..700,
        ) {
            let map = SourceMap::new(&text);
            // offset: the column-th character from the line's start, crossing line ends.
            let starts: Vec<usize> = std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect();
            let want = match starts.get(line - 1) {
                None => text.len(),
                Some(&s) => text[s..]
                    .char_indices()
                    .nth(column - 1)
                    .map(|(i, _)| s + i)
                    .unwrap_or(text.len()),
            };
            proptest::prop_assert_eq!(map.offset(line, column), want);
            // line_col: line of the offset, characters before it on its line.
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let l = starts.iter().rposition(|&s| s <= at).unwrap_or(0);
            let c = text[starts[l]..at].chars().count();
            proptest::prop_assert_eq!(map.line_col(at), (l + 1, c + 1));
        }
    }

    /// A span on a very long line (flow style) is shown clipped around it, with its real
    /// line and column in the header.
    #[test]
    fn long_lines_are_clipped_around_the_span() {
        let line: String = (0..500).map(|i| format!("{{n: h{i}}}, ")).collect();
        let text = Arc::new(format!("a: 1\nhosts: [{line}]\n"));
        let at = text.find("h250").expect("there");
        let src = StackSource::new("s.yaml".into(), text.clone());
        let c = src
            .read_span(&SourceSpan::new(at.into(), 4), 1, 1)
            .expect("reads");
        assert!(c.data().len() <= 2 * CLIP_MARGIN + 4, "{}", c.data().len());
        assert!(std::str::from_utf8(c.data())
            .expect("utf8")
            .contains("h250"));
        let head = src
            .read_span(&SourceSpan::new(at.into(), 4), 0, 0)
            .expect("reads");
        let map = SourceMap::new(&text);
        let (l, col) = map.line_col(at);
        // miette's line and column are 0-based, and count bytes (here all ASCII).
        assert_eq!((head.line() + 1, head.column() + 1), (l, col));
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
