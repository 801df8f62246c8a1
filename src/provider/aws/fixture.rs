//! The test fixture the AWS provider's and the engine's cloud tests share: one seed-003-like
//! stack (two zones, ALB, EFS, RDS) as desired resources, and an account where everything
//! desired already exists with made-up ids.

use std::collections::BTreeMap;

use super::desired::{desired, Inputs};
use super::model::{Observed, Resource};

/// The stack; tests vary it by text replacement (`resources(|s| s.replace(…))`).
pub const STACK: &str = r#"
name: web3
provider: aws
aws:
  region: us-east-1
  zones: [us-east-1a, us-east-1b]
  network:
    vpc_cidr: 10.20.0.0/16
    subnets: [10.20.1.0/24, 10.20.2.0/24]
  hosts:
    count: 2
    instance_type: t2.micro
    ami: ami-1e749f67
  balancer:
    kind: alb
  shared_fs:
    performance_mode: generalPurpose
  database:
    engine: postgres
    instance_class: db.t3.micro
    username: app
    password: secret-pw
"#;

/// The desired resources of [`STACK`] after `edit`.
pub fn resources(edit: impl Fn(String) -> String) -> Vec<Resource> {
    let file: crate::stack::model::StackFile =
        serde_saphyr::from_str(&edit(STACK.to_string())).expect("the fixture stack parses");
    desired(
        &file,
        &Inputs {
            public_key: None,
            vpc_cidrs: None,
        },
    )
}

/// Pretends everything in `rs` exists as asked, with made-up ids (`id-0`, `id-1`, …).
pub fn observed(rs: &[Resource]) -> Vec<Observed> {
    rs.iter()
        .enumerate()
        .map(|(i, r)| Observed {
            res: r.clone(),
            id: format!("id-{i}"),
            info: BTreeMap::new(),
        })
        .collect()
}
