//! Which device a run computes on, and why. A GPU result is trusted only after the same
//! model gave the same numbers there as on the CPU: before the first run of a model on a
//! non-CPU device, [`check::run`] compares a forward pass, a SISS training step (gradients of
//! the parameters only), an Adam update and a DDIM step against burn-flex. The verdict is
//! cached per device and model (`cache`), so the check costs seconds once, not every run.
//!
//! `--backend auto` (the default) takes a real GPU through wgpu when one exists and passes,
//! and the CPU otherwise; the reason is printed, shown in the workbench's status bar and
//! written to `run.json`.

pub mod cache;
pub mod check;

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::backend::{self, AdapterKind, BackendChoice};

pub use check::{CheckReport, CheckSpec, Tolerances};

/// The device a command or run computes on, with the reason it was chosen.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Concrete: never `Auto`.
    pub backend: BackendChoice,
    pub device: Device,
    /// The adapter or card, as its driver names it (`cpu` for burn-flex).
    pub device_name: String,
    /// One sentence: what was asked for, what was found, what the self-check said.
    pub reason: String,
}

impl Selection {
    /// `backend: wgpu on NVIDIA H200 (…) — auto: …`: the first line of every compute command.
    pub fn describe(&self) -> String {
        format!(
            "backend: {} on {} — {}",
            self.backend, self.device_name, self.reason
        )
    }

    /// What `run.json` records.
    pub fn record(&self) -> DeviceRecord {
        DeviceRecord {
            backend: self.backend,
            device: self.device_name.clone(),
            reason: self.reason.clone(),
        }
    }

    fn cpu(reason: String) -> Self {
        Self {
            backend: BackendChoice::Cpu,
            device: Device::flex(),
            device_name: cpu_name(),
            reason,
        }
    }
}

/// The device of a run as `run.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub backend: BackendChoice,
    pub device: String,
    pub reason: String,
}

fn cpu_name() -> String {
    format!(
        "the CPU ({} threads, burn-flex)",
        rayon::current_num_threads()
    )
}

/// Resolves `requested` to a device for work on the checkpoint at `model`, running (or
/// reading from the cache) the self-check for any non-CPU device. `note` receives progress
/// lines ("checking wgpu on …") while a check runs.
///
/// `auto` never fails: it falls back to the CPU and says why. An explicit GPU backend whose
/// check fails is an error naming the failing tensor, never a silent fallback.
pub fn select(
    requested: BackendChoice,
    model: &Path,
    note: &dyn Fn(&str),
) -> Result<Selection, String> {
    match requested {
        BackendChoice::Cpu => Ok(Selection::cpu("asked for (--backend cpu)".into())),
        BackendChoice::Auto => Ok(select_auto(model, note)),
        BackendChoice::Wgpu | BackendChoice::Cuda | BackendChoice::Remote => {
            let candidate = Candidate::of(requested)?;
            let requested = match requested {
                BackendChoice::Remote => backend::remote::status()
                    .map_or_else(|| "remote".into(), |s| format!("remote:{}", s.url)),
                other => other.to_string(),
            };
            let report = candidate.checked(model, note)?;
            if report.passed() {
                Ok(candidate.into_selection(format!(
                    "asked for (--backend {requested}); {}",
                    passed_summary(&report)
                )))
            } else {
                Err(format!(
                    "{}\nLethe will not run on a device that disagrees with the CPU. `lethe doctor --backend {requested} --checkpoint {}` prints every figure; `--backend cpu` runs on the CPU.",
                    report.verdict(),
                    model.display()
                ))
            }
        }
    }
}

fn select_auto(model: &Path, note: &dyn Fn(&str)) -> Selection {
    let adapters = backend::adapters();
    let gpu = adapters.iter().find(|a| a.kind.is_gpu());
    let Some(gpu) = gpu else {
        let reason = if !backend::compiled_in().contains(&BackendChoice::Wgpu) {
            "auto: this build has no GPU backend".to_string()
        } else if adapters.is_empty() {
            "auto: no GPU found (wgpu lists no Vulkan/Metal/DX12 adapter)".to_string()
        } else {
            let software: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
            format!(
                "auto: no GPU found; wgpu lists only {} (a software renderer, slower than burn-flex)",
                software.join(", ")
            )
        };
        return Selection::cpu(reason);
    };
    let candidate = match Candidate::of(BackendChoice::Wgpu) {
        Ok(c) => c,
        Err(e) => return Selection::cpu(format!("auto: {} could not be opened: {e}", gpu.name)),
    };
    match candidate.checked(model, note) {
        Ok(report) if report.passed() => {
            let reason = format!("auto: {}", passed_summary(&report));
            candidate.into_selection(reason)
        }
        Ok(report) => Selection::cpu(format!(
            "auto: the GPU failed the device self-check, so the CPU — {}",
            report.verdict()
        )),
        Err(e) => Selection::cpu(format!(
            "auto: the device self-check could not run on {}: {e}",
            gpu.name
        )),
    }
}

fn passed_summary(report: &CheckReport) -> String {
    let worst = report.gradients.first().map_or(0.0, |c| c.relative);
    format!(
        "self-check passed on this model (worst gradient {worst:.1e} of the CPU's, limit {:.0e}; SISS step {:.0} ms vs {:.0} ms on the CPU)",
        report.tolerances.gradient, report.other.siss_step_ms, report.cpu.siss_step_ms
    )
}

/// A non-CPU device before it is trusted.
struct Candidate {
    backend: BackendChoice,
    device: Device,
    name: String,
}

impl Candidate {
    fn of(backend: BackendChoice) -> Result<Self, String> {
        let device = backend::device(backend)?;
        let name = match backend {
            BackendChoice::Wgpu => backend::best_adapter()
                .map(|a| a.describe())
                .unwrap_or_else(|| "wgpu".into()),
            BackendChoice::Remote => backend::remote::status()
                .map(|s| s.describe())
                .unwrap_or_else(|| "remote".into()),
            other => other.to_string(),
        };
        Ok(Self {
            backend,
            device,
            name,
        })
    }

    /// The cached verdict for this device and model, or a fresh check (then cached).
    fn checked(&self, model: &Path, note: &dyn Fn(&str)) -> Result<CheckReport, String> {
        let spec = CheckSpec::quick(model);
        let key = cache::Key::new(self.backend, &self.name, model)?;
        if let Some(report) = cache::read(&key) {
            return Ok(report);
        }
        note(&format!(
            "device self-check: {} against the CPU on {} (once per device and model)",
            self.name,
            model.display()
        ));
        let report = check::run(&spec, self.backend, &self.name, &self.device)?;
        cache::write(&key, &report);
        Ok(report)
    }

    fn into_selection(self, reason: String) -> Selection {
        Selection {
            backend: self.backend,
            device: self.device,
            device_name: self.name,
            reason,
        }
    }
}

/// The adapters a device menu or `lethe doctor` lists, with whether auto would take each.
pub fn describe_adapters() -> Vec<(String, bool)> {
    backend::adapters()
        .into_iter()
        .map(|a| (a.describe(), a.kind != AdapterKind::Cpu))
        .collect()
}
