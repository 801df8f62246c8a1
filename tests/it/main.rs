//! The integration tests: one binary that drives the real `hactl` binary against real
//! stand-ins (lab hosts in network namespaces, a moto server). A test that needs a stand-in
//! that is missing fails loudly; none is skipped.

mod aws;
mod aws_like;
mod aws_users;
mod aws_validate;
mod aws_vip;
mod canary;
mod deploy;
mod deploy_alb;
mod deploy_flags;
mod guard;
mod ha;
mod hostile;
mod json;
mod lab;
mod locks;
mod pipeline;
mod render;
mod services;
mod spine;
mod stack;
mod support;
mod tree;
mod vault;
