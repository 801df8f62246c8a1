//! The AWS provider (seed 003): VPC, subnets per zone, internet gateway and routes, security
//! groups, EC2 instances across zones, an ALB/NLB with target group and listeners, EFS with a
//! mount target per zone, and RDS — planned from the state's ids and the tags, applied in
//! dependency order.
//!
//! Layout: [`model`] (the resource shape), [`desired`] (stack → resources, pure), [`diff`]
//! (desired + observed → steps, pure), [`observe`] (read everything carrying
//! `hactl:stack=<name>`), [`apply`] (steps → API calls, in dependency order, idempotent
//! creates), [`wait`] (eventual consistency, throttling, ready and failure states, per-kind
//! limits), [`outputs`] (LB DNS, DB endpoint, EFS id, host addresses), [`preflight`] (what
//! only the account can answer — zones, instance type offerings, existing subnets and VPC —
//! asked before anything is created). Only `observe`, `preflight` and `apply` talk to AWS.
//!
//! Identity: the state's ids first, tags second. `observe` reads what the state recorded by
//! id (a resource that lost its `hactl:*` tags is still this stack's, and is re-tagged in
//! place); the tags find the rest (discovery, and the whole stack when the state is lost).

pub mod apply;
pub mod client;
pub mod desired;
pub mod diff;
#[cfg(test)]
pub mod fixture;
pub mod health;
pub mod hosts;
pub mod kinds;
pub mod model;
pub mod observe;
pub mod outputs;
pub mod preflight;
pub mod targets;
pub mod wait;

/// An AWS call that failed: the service's error code and message, not a debug dump.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AwsError {
    #[error("AWS {op} failed for `{addr}`: {message}")]
    #[diagnostic(
        code(hactl::aws::api),
        help("check the credentials (AWS_PROFILE), region and quotas; `up` can be re-run: it resumes from the resources' tags")
    )]
    Api {
        op: &'static str,
        addr: String,
        message: String,
    },
    #[error("timed out after {after} waiting for `{addr}` to become {what} (last seen: {last})")]
    #[diagnostic(
        code(hactl::aws::timeout),
        help("re-run `hactl up`: it picks up where it stopped; a kind that needs longer takes `aws.timeouts` in the stack")
    )]
    Timeout {
        addr: String,
        what: &'static str,
        after: String,
        last: String,
    },
    #[error("`{addr}` is `{status}` instead of becoming {what}")]
    #[diagnostic(
        code(hactl::aws::failed_state),
        help("AWS will not leave this state by itself: see the resource in the AWS console (its status reason), fix the cause, then re-run `hactl up`")
    )]
    Failed {
        addr: String,
        what: &'static str,
        status: String,
    },
    #[error("`{addr}` needs `{dep}`, which has no id")]
    #[diagnostic(
        code(hactl::aws::missing_dep),
        help("an earlier step failed; fix it and re-run")
    )]
    MissingDep { addr: String, dep: String },
    #[error("the database needs `{0}`, which is not in the vault")]
    #[diagnostic(code(hactl::aws::credentials), help("add it with `hactl secrets set`"))]
    Credentials(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingAttr(#[from] kinds::MissingAttr),
    #[error("the hosts' key pair needs `{0}`, which is not in the vault")]
    #[diagnostic(
        code(hactl::aws::public_key),
        help("add the public key (one `ssh-ed25519 AAAA…` line) with `hactl secrets set`")
    )]
    PublicKey(String),
}

/// The code and message of an SDK error.
pub fn sdk_message<E, R>(e: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_ec2::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!("{err}"),
            }
        }
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            msg
        }
    }
}

/// The error code of an SDK error, if the service sent one.
pub fn sdk_code<E, R>(e: &aws_sdk_ec2::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    use aws_sdk_ec2::error::SdkError;
    match e {
        SdkError::ServiceError(s) => s.err().code().map(str::to_string),
        _ => None,
    }
}
