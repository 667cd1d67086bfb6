//! Attacks on unlearned models.

pub mod dimra;
