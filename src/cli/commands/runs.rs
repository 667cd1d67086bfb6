//! `lethe runs`: every run in a runs directory, from the records the GUI's runs table reads.

use std::path::PathBuf;

use clap::Args;

use lethe::experiment::runs::{RunRecord, scan};

#[derive(Args)]
pub struct RunsArgs {
    /// The runs directory (as `runs_dir` in the configs).
    #[arg(default_value = "runs")]
    dir: PathBuf,
    /// Print every run as JSON (run.json, the config, every evaluation) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &RunsArgs) -> Result<(), String> {
    if !args.dir.is_dir() {
        return Err(format!("{}: no such runs directory", args.dir.display()));
    }
    let (records, problems) = scan(&args.dir);
    if args.json {
        let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print_table(&records);
    }
    // Unreadable run directories are named, not skipped in silence; they do not stop the
    // listing of the others.
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    Ok(())
}

fn print_table(records: &[RunRecord]) {
    if records.is_empty() {
        println!("no runs");
        return;
    }
    println!("| run | method | knobs | status | steps | time | last evaluation |");
    println!("|---|---|---|---|---:|---:|---|");
    for r in records {
        println!(
            "| {} | {} | {} | {} | {}/{} | {} | {} |",
            r.name,
            r.info.method,
            r.knobs,
            r.info.status.label(),
            r.info.steps_done,
            r.info.total_steps,
            duration(r.info.seconds),
            last_evaluation(r)
        );
    }
    for r in records.iter().filter(|r| r.info.status.resumable()) {
        println!(
            "{} is {} at step {}: `lethe unlearn --resume {}` continues it",
            r.name,
            r.info.status.label(),
            r.info.steps_done,
            r.path.display()
        );
    }
}

fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.1} min", seconds / 60.0)
    }
}

/// The last evaluation of the run's model: step, the forgetting figure (the class rate in
/// the class setting, else the copy rate), FID and ELBO when computed.
fn last_evaluation(r: &RunRecord) -> String {
    let Some((step, e)) = &r.last else {
        return "—".into();
    };
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let mut parts = vec![format!("step {step}")];
    match (r.class_setting(), e.forgotten_class_rate) {
        (true, Some(rate)) => parts.push(format!("forgotten class {}", pct(rate))),
        _ => parts.push(format!("forget copies {}", pct(e.forget_copy_rate))),
    }
    if let Some(fid) = e.fid {
        parts.push(format!("FID {fid:.1}"));
    }
    if let (Some(f), Some(k)) = (e.elbo_forget_bpd, e.elbo_retain_bpd) {
        parts.push(format!("ELBO {f:.2}/{k:.2} bits/dim"));
    }
    parts.join(", ")
}
