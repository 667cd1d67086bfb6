//! `lethe reproduce`: runs the experiments behind each seed paper's claim on the bundled demo
//! (sweeps of ordinary runs, each trial a `lethe sweep trial` process; finished runs reused,
//! interrupted ones continued), evaluates every result again under DDPM (`lethe eval`
//! processes), and writes the report (`lethe::reproduce`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use clap::Args;

use lethe::reproduce::plan::{Judgement, Stage};
use lethe::reproduce::report::Invocation;
use lethe::reproduce::{self, Claim, Plan, Preset, claims, report, results::Results};
use lethe::sweep::Manifest;
use lethe::sweep::local::{self, LocalOptions, Progress};
use lethe::sweep::status;

use crate::cli::progress::{bar, say};

#[derive(Args)]
pub struct ReproduceArgs {
    /// quick (~20 min on 2 cores; provisional verdicts), full (the figures README quotes:
    /// hours on a CPU), or tiny (seconds; a pipeline test, needs --checkpoint of a small model).
    #[arg(long, value_enum, default_value = "quick")]
    preset: Preset,
    /// Only these claims (comma-separated): siss, erasediff, vdu, dimra.
    #[arg(long, value_enum, value_delimiter = ',')]
    claims: Vec<Claim>,
    /// The output directory (default: runs/reproduce-<preset>). Running again into it reuses
    /// finished runs and continues interrupted ones.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seeds per arm (default: the preset's, 3). A verdict needs at least 2; 3 or more is
    /// what the report is meant for.
    #[arg(long, value_name = "K")]
    seeds: Option<usize>,
    /// Start from this checkpoint instead of the bundled demo model (28×28 grey, the demo's
    /// 11 classes with a null class).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Runs (and evaluations) at once, the cores split between them. Two single-threaded
    /// processes get more out of 2 cores than one with two threads on the demo's small
    /// model.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Write the report from what is on disk; run nothing.
    #[arg(long)]
    report_only: bool,
}

pub fn run(args: &ReproduceArgs) -> Result<(), String> {
    let clock = Instant::now();
    let plan = plan(args)?;
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut failures: Vec<String> = Vec::new();
    if !args.report_only {
        println!(
            "lethe reproduce --preset {}: {} claims, {} runs ({} training steps) and {} DDPM evaluations → {}",
            plan.preset.name(),
            plan.claims.len(),
            plan.stages
                .iter()
                .map(|s| s.expanded.trials.len())
                .sum::<usize>(),
            plan.total_steps(),
            plan.judgements.len(),
            plan.out.display()
        );
        println!("{}", plan.preset.caveat());
        let source = record_settings(&plan)?;
        if plan.stage(Stage::Digit1).is_some() {
            let count = reproduce::write_digit_folder(&plan.out)?;
            println!(
                "VDU's forget set: {count} images of the digit {} in {}",
                reproduce::plan::VDU_DIGIT,
                reproduce::plan::digit_folder(&plan.out).display()
            );
        }
        failures.extend(run_stages(&plan, &exe, args.jobs, &source)?);
        failures.extend(run_judgements(&plan, &exe, args.jobs)?);
    }
    let invocations = if args.report_only {
        read_invocations(&plan)
    } else {
        record_invocation(
            &plan,
            Invocation::now(clock.elapsed().as_secs_f64(), command_line()),
        )?
    };
    let results = Results::read(&plan);
    let judged = claims::judge(&plan, &results);
    let context = report::Context::here(invocations);
    let html = report::write(&plan, &results, &judged, &context)?;
    println!();
    print!("{}", report::verdict_table(&judged));
    println!(
        "report: {} (and report.md, verdicts.json, plots/) — {} wall time",
        html.display(),
        report::duration(clock.elapsed().as_secs_f64())
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} runs or evaluations failed ({}); the report marks what they decide as missing. `lethe reproduce` with the same arguments continues them",
            failures.len(),
            failures.join(", ")
        ))
    }
}

fn plan(args: &ReproduceArgs) -> Result<Plan, String> {
    let mut settings = args.preset.settings();
    if let Some(k) = args.seeds {
        settings.seeds = k;
    }
    if let Some(c) = &args.checkpoint {
        settings.checkpoint = c.clone();
    }
    if args.preset == Preset::Tiny && args.checkpoint.is_none() {
        return Err(
            "--preset tiny is a pipeline test for a small model: give it --checkpoint".into(),
        );
    }
    let claims = if args.claims.is_empty() {
        Claim::ALL.to_vec()
    } else {
        args.claims.clone()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("reproduce-{}", args.preset.name())));
    Plan::new(&out, args.preset, settings, &claims)
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("lethe {}", args.join(" "))
}

/// Writes `OUT/reproduce.json` (the preset and its settings), or — when the directory has
/// one — refuses settings other than those it was made with, so two reproductions never
/// mix their runs in one directory.
fn record_settings(plan: &Plan) -> Result<PathBuf, String> {
    let path = plan.out.join("reproduce.json");
    let record = serde_json::json!({
        "lethe_version": env!("CARGO_PKG_VERSION"),
        "preset": plan.preset,
        "settings": plan.settings,
    });
    if let Ok(text) = std::fs::read_to_string(&path) {
        let existing: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if existing["preset"] != record["preset"] || existing["settings"] != record["settings"] {
            return Err(format!(
                "{} was made by `lethe reproduce --preset {}` with other settings (see {}); give this one another --out, or move that directory away",
                plan.out.display(),
                existing["preset"].as_str().unwrap_or("?"),
                path.display()
            ));
        }
        return Ok(path);
    }
    std::fs::create_dir_all(&plan.out).map_err(|e| format!("{}: {e}", plan.out.display()))?;
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
    lethe::util::atomic_write(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The invocations `reproduce.json` records (none when it cannot be read).
fn read_invocations(plan: &Plan) -> Vec<Invocation> {
    std::fs::read_to_string(plan.out.join("reproduce.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| serde_json::from_value(v["invocations"].clone()).ok())
        .unwrap_or_default()
}

/// Appends `this` to `reproduce.json`'s invocations; returns them all.
fn record_invocation(plan: &Plan, this: Invocation) -> Result<Vec<Invocation>, String> {
    let path = plan.out.join("reproduce.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut record: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut all = read_invocations(plan);
    all.push(this);
    record["invocations"] = serde_json::to_value(&all).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
    lethe::util::atomic_write(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(all)
}

/// Runs every stage's unfinished trials; returns the trials that failed.
fn run_stages(plan: &Plan, exe: &Path, jobs: usize, source: &Path) -> Result<Vec<String>, String> {
    let mut todo: Vec<(usize, Vec<usize>, Manifest)> = Vec::new();
    for (s, stage) in plan.stages.iter().enumerate() {
        let manifest = Manifest::write_or_check(&stage.expanded, source)?;
        let (_, rows) = status::scan(stage.dir())?;
        let indices: Vec<usize> = rows
            .iter()
            .filter(|r| r.state.wants_running())
            .map(|r| r.index)
            .collect();
        todo.push((s, indices, manifest));
    }
    let steps_of = |s: usize, i: usize| plan.stages[s].expanded.trials[i].config.train.steps;
    let total: usize = plan.total_steps();
    let left: usize = todo
        .iter()
        .map(|(s, idx, _)| idx.iter().map(|i| steps_of(*s, *i)).sum::<usize>())
        .sum();
    let pb = bar(total as u64, "training runs");
    pb.set_position((total - left) as u64);
    pb.reset_eta();
    let options = LocalOptions::split(exe.to_path_buf(), jobs, None);
    let mut failed = Vec::new();
    for (s, indices, manifest) in &todo {
        let stage = &plan.stages[*s];
        if indices.is_empty() {
            continue;
        }
        let ended = local::run(stage.dir(), manifest, indices, &options, &mut |p| match p {
            Progress::Started { name, .. } => {
                pb.set_message(format!("{}/{name}", stage.stage.dir_name()))
            }
            Progress::Ended {
                index,
                name,
                ok,
                seconds,
                log,
            } => {
                pb.inc(steps_of(*s, index) as u64);
                let line = if ok {
                    format!(
                        "  done   {}/{name} ({seconds:.0} s)",
                        stage.stage.dir_name()
                    )
                } else {
                    format!(
                        "  FAILED {}/{name} — see {}",
                        stage.stage.dir_name(),
                        log.display()
                    )
                };
                say(&pb, line);
            }
        })?;
        failed.extend(ended.iter().map(|i| {
            format!(
                "{}/{}",
                stage.stage.dir_name(),
                stage.expanded.trials[*i].name
            )
        }));
    }
    pb.finish_and_clear();
    Ok(failed)
}

/// Runs the DDPM evaluations not made yet, `jobs` at a time (each a `lethe eval` process with
/// the cores split between them, its output in `ddpm/logs/`); skips those whose checkpoint
/// does not exist (its run failed). Returns the ones that failed.
fn run_judgements(plan: &Plan, exe: &Path, jobs: usize) -> Result<Vec<String>, String> {
    let logs = plan.out.join("ddpm").join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let todo: Vec<&Judgement> = plan
        .judgements
        .iter()
        .filter(|j| !j.json_path(&plan.out).is_file())
        .collect();
    let pb = bar(plan.judgements.len() as u64, "DDPM evaluations");
    pb.set_position((plan.judgements.len() - todo.len()) as u64);
    pb.reset_eta();
    let options = LocalOptions::split(exe.to_path_buf(), jobs, None);
    let log_of = |j: &Judgement| logs.join(format!("{}.log", j.name));
    // Both callbacks record failures; the cell lets them share the list.
    let failed = std::cell::RefCell::new(Vec::new());
    local::run_children(
        todo,
        options.jobs,
        |j| {
            if !j.checkpoint.is_dir() {
                say(
                    &pb,
                    format!(
                        "  skip   ddpm/{} — no {} (its run did not finish)",
                        j.name,
                        j.checkpoint.display()
                    ),
                );
                failed.borrow_mut().push(format!("ddpm/{}", j.name));
                pb.inc(1);
                return Ok(None);
            }
            pb.set_message(j.name.clone());
            spawn_eval(plan, j, &options, &log_of(j)).map(Some)
        },
        |j, ok, _| {
            if !ok {
                say(
                    &pb,
                    format!("  FAILED ddpm/{} — see {}", j.name, log_of(j).display()),
                );
                failed.borrow_mut().push(format!("ddpm/{}", j.name));
            }
            pb.inc(1);
        },
    )?;
    pb.finish_and_clear();
    Ok(failed.into_inner())
}

/// `lethe eval …` for one judgement on its share of the cores, output to `log`.
fn spawn_eval(
    plan: &Plan,
    j: &Judgement,
    options: &LocalOptions,
    log: &Path,
) -> Result<Child, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    Command::new(&options.exe)
        .arg("eval")
        .args(j.args(&plan.out, &plan.settings))
        .arg("--threads")
        .arg(options.threads_per_job.to_string())
        .env("RAYON_NUM_THREADS", options.threads_per_job.to_string())
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", options.exe.display()))
}
