//! The on-host vocabulary: everything hactl and a host must agree on, in one place that the
//! rest of hactl imports and that imports nothing of hactl.
//!
//! - [`sh`]: the one way a value becomes a shell word (single quotes, `shell-escape`), and the
//!   base64 here-document that carries file contents and secrets inside a script;
//! - [`paths`]: where hactl keeps things on a host (state directory, manifest, deploy lock,
//!   the app's control script and files, pid files, the VRRP transition record);
//! - [`record`]: the `HACTL\t…` records every remote script prints, their emitters and the
//!   one parser that reads them back;
//! - [`cmd`]: remote commands as data (argv lists) built by pure functions and tested by
//!   equality, as Kamal's command builders are (`lib/kamal/commands/base.rb`);
//! - [`app_ctl`]: the app's control script on a host and the calls that drive it.
//!
//! The scripts that observe and apply a host's files stay with their only user,
//! `provider::hosts::script`; the deploy's scripts with `deploy::remote`; the redis probe with
//! `services::redis`: each builds its text from these pieces. Keeping this module a leaf is
//! what keeps `render`, `deploy`, `services`, `ha` and the hosts provider from importing each
//! other for a path or a quoting rule (`src/imports.rs` checks the module graph).

pub mod app_ctl;
pub mod cmd;
pub mod paths;
pub mod record;
pub mod sh;
