//! What `hactl init` says it wrote: two notes on stderr (the files, then the next command), or
//! with `--json` one document on stdout holding the same paths and the vault's secret names
//! (never a value).

use serde::Serialize;

/// The stack file and vault `init` wrote, as given on its command line or defaulted.
#[derive(Debug, Serialize)]
pub struct Initialized {
    pub stack: String,
    pub vault: String,
    /// The names of the secrets the new vault holds.
    pub secrets: Vec<String>,
}

/// Reports what `init` wrote.
pub fn written(i: &Initialized) -> miette::Result<()> {
    if super::json::active() {
        return super::json::put(i);
    }
    let names: Vec<String> = i.secrets.iter().map(|n| format!("`{n}`")).collect();
    super::note(&format!(
        "wrote `{}`; its vault `{}` holds {}",
        i.stack,
        i.vault,
        if names.is_empty() {
            "no secret yet".to_string()
        } else {
            names.join(", ")
        },
    ));
    super::note(&format!("next: hactl validate -f {}", i.stack));
    Ok(())
}
