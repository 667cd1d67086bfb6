//! Lethe: a workbench for machine unlearning in diffusion models.
//!
//! Layers (arrows point down): `app` (GUI, behind the `gui` feature) → `engine` →
//! `unlearn` / `attack` / `metrics` → `diffusion` / `data`. Only [`backend`] names a
//! concrete Burn backend.

#[cfg(feature = "gui")]
pub mod app;
pub mod attack;
pub mod backend;
pub mod bench;
pub mod data;
pub mod diffusion;
pub mod engine;
pub mod experiment;
pub mod images;
pub mod metrics;
pub mod pretrain;
pub mod unlearn;
pub mod util;
