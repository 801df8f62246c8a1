//! Providers: the only code that does I/O against hosts and clouds. `hosts` reaches existing
//! machines over SSH; `aws` talks to the AWS APIs.

pub mod aws;
pub mod hosts;
