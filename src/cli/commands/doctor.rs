//! `lethe doctor`: the adapters this machine has, and the device self-check printed in full —
//! a forward pass, a SISS training step, an Adam update and a DDIM step of a checkpoint on
//! the chosen backend against the CPU, every parameter's gradient compared, and the time per
//! step on each. Exits non-zero when the device disagrees beyond the stated tolerances.

use std::path::PathBuf;

use clap::Args;

use lethe::backend::{self, BackendChoice, BackendRequest};
use lethe::data::demo::DEMO_CHECKPOINT;
use lethe::device_check::{self, CheckReport, CheckSpec, Tolerances, cache, check};

#[derive(Args)]
pub struct DoctorArgs {
    /// The backend to check against the CPU: wgpu, cuda, remote:ws://HOST:PORT (a `lethe
    /// serve`), cpu (the CPU against itself, a sanity run), or auto (the one `--backend auto`
    /// would take).
    #[arg(long, default_value = "auto", value_name = "BACKEND")]
    backend: BackendRequest,
    /// Checkpoint to check with (diffusers layout); the bundled demo model by default.
    #[arg(long, default_value = DEMO_CHECKPOINT)]
    checkpoint: PathBuf,
    /// Images per batch in the checked forward and training step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed repeats of each operation, after the checked run (median reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Gradients listed in the table, worst first (all are checked).
    #[arg(long, default_value_t = 8)]
    worst: usize,
    /// Test hook: add an error of 10% of its scale to this parameter's gradient on the
    /// checked device, to see the check fail and name it.
    #[arg(long, hide = true)]
    perturb_gradient: Option<String>,
    /// Diagnostic: compare the gradient of nearest ×2 upsampling through Burn's
    /// `interpolate` and through Lethe's broadcast, on this device and the CPU.
    #[arg(long, hide = true)]
    probe_upsample: bool,
}

pub fn run(args: &DoctorArgs) -> Result<(), String> {
    print_adapters();
    crate::cli::args::connect_remote(&args.backend)?;
    let backend = match args.backend.choice {
        BackendChoice::Auto => {
            let auto = device_check::select(BackendChoice::Auto, &args.checkpoint, &|_| {})?;
            println!("auto would choose: {}", auto.describe());
            if auto.backend == BackendChoice::Cpu {
                println!("checking the CPU against itself (auto found no device to check)");
            }
            auto.backend
        }
        other => other,
    };
    let device = backend::device(backend)?;
    let name = match backend {
        BackendChoice::Wgpu => backend::best_adapter().map_or("wgpu".into(), |a| a.describe()),
        BackendChoice::Remote => {
            backend::remote::status().map_or("remote".into(), |s| s.describe())
        }
        other => other.to_string(),
    };
    let spec = CheckSpec {
        checkpoint: &args.checkpoint,
        batch: args.batch.max(1),
        tolerances: Tolerances::default(),
        repeats: args.repeats,
        perturb_gradient: args.perturb_gradient.clone(),
    };
    println!(
        "\nchecking {backend} on {name}\n  against the CPU (burn-flex, {} threads) on {}, batch {}, fp32, identical weights, inputs and noise",
        rayon::current_num_threads(),
        args.checkpoint.display(),
        spec.batch
    );
    if args.probe_upsample {
        println!("  nearest ×2 upsampling gradient, [8, 64, 14, 14] input (vs the CPU broadcast):");
        for (what, max_abs, off) in check::probe_upsample(&device) {
            println!("  {what:<52} max |Δ| {max_abs:.3e}, {off} elements off by > 1e-4");
        }
    }
    let report = check::run(&spec, backend, &name, &device)?;
    print_report(&report, args.worst);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        lethe::util::atomic_write(path, json.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // A doctor run refreshes the cached verdict the automatic check reads (not for the
    // test hook's deliberately broken results).
    if args.perturb_gradient.is_none()
        && backend != BackendChoice::Cpu
        && let Ok(key) = cache::Key::new(backend, &name, &args.checkpoint)
    {
        cache::write(&key, &report);
    }
    println!("\n{}", report.verdict());
    if report.passed() {
        Ok(())
    } else {
        Err("the device self-check failed (see the table above)".into())
    }
}

fn print_adapters() {
    let compiled: Vec<String> = backend::compiled_in()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "backends in this build: {}, remote:ws://HOST:PORT (a lethe serve elsewhere)",
        compiled.join(", ")
    );
    if !cfg!(feature = "cuda") {
        println!("  (cuda: not built in; README's GPU section says how to build it)");
    }
    let adapters = device_check::describe_adapters();
    if adapters.is_empty() {
        println!("wgpu adapters: none found");
    }
    for (i, (adapter, gpu)) in adapters.iter().enumerate() {
        let note = if *gpu {
            ""
        } else {
            "  (auto skips software renderers)"
        };
        println!("wgpu adapter {i}: {adapter}{note}");
    }
}

fn print_report(report: &CheckReport, worst: usize) {
    println!(
        "\n  {:<44} {:>11} {:>11} {:>8}  ",
        "compared (device vs CPU)", "max |Δ|", "error", "limit"
    );
    let row = |c: &check::Comparison| {
        println!(
            "  {:<44} {:>11.3e} {:>11.3e} {:>8.0e}  {}",
            c.what,
            c.max_abs,
            c.relative,
            c.tolerance,
            if c.passed() { "ok" } else { "FAIL" }
        )
    };
    report.outputs.iter().for_each(row);
    let failed = report.gradients.iter().filter(|c| !c.passed()).count();
    println!(
        "  every parameter's gradient: {} tensors, {failed} beyond the limit; the worst {}:",
        report.gradients.len(),
        worst.min(report.gradients.len())
    );
    report.gradients.iter().take(worst).for_each(row);
    println!(
        "  (error: forward, DDIM and gradients as max |Δ| / max |CPU value| of the tensor; losses relative; Adam's update in units of its learning rate)"
    );
    println!(
        "\n  {:<28} {:>10} {:>10}",
        "ms per operation (median)", "cpu", "device"
    );
    let times = [
        ("forward", report.cpu.forward_ms, report.other.forward_ms),
        (
            "SISS training step",
            report.cpu.siss_step_ms,
            report.other.siss_step_ms,
        ),
        (
            "DDIM step",
            report.cpu.ddim_step_ms,
            report.other.ddim_step_ms,
        ),
    ];
    for (what, cpu, other) in times {
        println!("  {what:<28} {cpu:>10.1} {other:>10.1}");
    }
}
