//! The workbench through its real UI (egui_kittest), and the heat map's two render paths.

#[path = "../common/mod.rs"]
mod common;

mod gui;
mod gui_heatmap;
