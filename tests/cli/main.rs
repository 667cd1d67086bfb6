//! The `lethe` binary and its inputs as a user meets them: every command end to end, bad
//! inputs named with the file and the reason, the bundled demo assets. One test binary per
//! area keeps CI's compile and link time down.

#[path = "../common/mod.rs"]
mod common;

mod bad_inputs;
mod cli;
mod crash;
mod demo_assets;
mod fuzz_regressions;
mod remote;
mod reproduce;
mod sweep;
