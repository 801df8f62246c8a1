//! `hactl outputs`: the outputs saved in the stack's state (LB DNS name, DB endpoint and port,
//! EFS id and DNS name, host addresses), without calling AWS.

use clap::Args;

use super::StackArgs;
use crate::state::Backend;
use crate::{stack, view, ExitStatus};

#[derive(Debug, Args)]
pub struct OutputsArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

/// `key.path = value` lines, arrays by index: easy to read and to grep.
pub fn render_human(v: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.push_str(&format!("{prefix} = {s}\n")),
            other => out.push_str(&format!("{prefix} = {other}\n")),
        }
    }
    let mut out = String::new();
    walk("", v, &mut out);
    out
}

pub async fn run(a: OutputsArgs) -> miette::Result<ExitStatus> {
    let stack = stack::load(&a.stack.file)?;
    let backend = Backend::for_stack(&stack).await?;
    let Some(st) = backend.read(stack.name()).await? else {
        return Err(miette::miette!(
            code = "hactl::outputs::no_state",
            help = "run `hactl up` first, or `hactl state refresh` to rebuild the state from the resources' tags",
            "no state for stack `{}` at `{}`",
            stack.name(),
            backend.describe()
        ));
    };
    if a.stack.json {
        view::json::put_named("outputs", &st.outputs)?;
    } else {
        view::print_out(&render_human(&st.outputs));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_outputs() {
        let v = serde_json::json!({
            "balancer": {"dns_name": "lb.example"},
            "database": {"endpoint": "db.example", "port": 5432},
            "hosts": [{"name": "web-0", "address": "10.0.0.5", "public_ip": null}],
        });
        insta::assert_snapshot!(super::render_human(&v), @r"
        balancer.dns_name = lb.example
        database.endpoint = db.example
        database.port = 5432
        hosts[0].address = 10.0.0.5
        hosts[0].name = web-0
        ");
    }
}
