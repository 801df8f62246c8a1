//! `hactl schema`: prints the stack format as a JSON Schema (generated from the model types),
//! for editors (the example stacks' `yaml-language-server` modeline names the committed copy,
//! `docs/stack.schema.json`) and for pipelines that check stack files before hactl runs.

use crate::{stack, view, ExitStatus};

pub fn run() -> miette::Result<ExitStatus> {
    view::print_json(&stack::schema::schema())?;
    Ok(ExitStatus::Success)
}
