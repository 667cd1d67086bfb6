//! The unlearning engine and its methods: runs end to end (resume, cancel, failure
//! records), each method's behaviour on a tiny model, and the methods' math.

#[path = "../common/mod.rs"]
mod common;

mod unlearn_behaviour;
mod unlearn_engine;
mod unlearn_math;
