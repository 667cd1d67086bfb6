//! One module per `lethe` subcommand: its arguments and its `run`.

pub mod attack;
pub mod bench;
pub mod data;
pub mod demo_check;
pub mod doctor;
pub mod eval;
pub mod export_samples;
pub mod fid;
pub mod inspect;
pub mod pretrain;
pub mod reproduce;
pub mod runs;
pub mod sample;
pub mod serve;
pub mod sweep;
pub mod train_classifier;
pub mod unlearn;
