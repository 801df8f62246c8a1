//! `hactl validate -f STACK`: loads the stack, reports every problem, exits 0 or 1.

use super::StackArgs;
use crate::{stack, view, ExitStatus};

pub fn run(args: StackArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&args.file)?;
    if args.json {
        view::print_json(&serde_json::json!({
            "valid": true,
            "stack": stack.name(),
            "hosts": stack.hosts.len(),
        }))?;
    } else {
        view::print_out(&format!(
            "{}: stack `{}` is valid ({} hosts)\n",
            args.file.display(),
            stack.name(),
            stack.hosts.len()
        ));
    }
    Ok(ExitStatus::Success)
}
