//! Human rendering of a `heal` round of a `provider: hosts` stack.

use crate::engine::heal::Round;

/// The round as a person reads it: converged or not, hosts down, hosts reconfigured, each
/// redis port's primary and its fixes.
pub fn render(r: &Round) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heal round {} of `{}` ({} ms): {}",
        r.round,
        r.stack,
        r.elapsed_ms,
        if r.converged && r.down.is_empty() {
            "converged"
        } else if r.converged {
            "converged (except unreachable hosts)"
        } else {
            "NOT converged"
        }
    );
    for d in &r.down {
        let _ = writeln!(out, "  down: {}: {}", d.host, d.error);
    }
    for h in &r.reconfigured {
        let outcome = match r.apply.iter().find(|a| &a.host == h) {
            Some(a) if a.ok => format!("reconfigured ({})", a.services.join(", ")),
            Some(a) => format!("FAILED: {}", a.error.as_deref().unwrap_or("unknown error")),
            None => "differs from the stack (dry run: not changed)".into(),
        };
        let _ = writeln!(out, "  {h}: {outcome}");
    }
    for p in &r.ports {
        let _ = writeln!(
            out,
            "  {}:{} primary {}",
            p.service,
            p.verdict.port,
            p.verdict.primary.as_deref().unwrap_or("NONE")
        );
        for f in &p.applied {
            let _ = writeln!(out, "    fixed: {f}");
        }
        for f in p
            .verdict
            .fixes
            .iter()
            .filter(|f| !p.applied.contains(&f.describe()))
        {
            if p.failed.iter().all(|x| !x.starts_with(&f.describe())) {
                let _ = writeln!(out, "    to fix: {}", f.describe());
            }
        }
        for f in &p.failed {
            let _ = writeln!(out, "    FAILED: {f}");
        }
        for note in &p.verdict.notes {
            let _ = writeln!(out, "    note: {note}");
        }
    }
    out
}
