//! `lethe sweep`: many trials of one experiment — expanded from a sweep file (TOML over
//! Lethe's keys, or a SISS-style Hydra multirun YAML), run here N at a time or as a Slurm
//! job array, and tabulated back (`status`, `collect`). See `lethe::sweep`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use lethe::sweep::local::{self, LocalOptions, Progress};
use lethe::sweep::slurm::{self, SlurmOptions};
use lethe::sweep::status::{self, TrialStatus};
use lethe::sweep::trial::{self, Next};
use lethe::sweep::{self as sweeps, Manifest};
use lethe::util::atomic_write;

use super::unlearn::{self, UnlearnArgs};

#[derive(Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: SweepCommand,
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Expand a sweep file and list its trials (nothing is run or written).
    Show {
        /// Sweep file: TOML (see examples/sweep-siss-lambda.toml) or a SISS-style Hydra YAML.
        file: PathBuf,
    },
    /// Run the sweep's trials here, JOBS at a time (each a normal run directory in the sweep
    /// directory; finished trials are skipped, interrupted ones continued).
    Run {
        /// Sweep file, or a sweep directory made earlier (its sweep.json).
        file: PathBuf,
        /// Trials at once.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// CPU threads per trial (default: the cores split between the jobs).
        #[arg(long)]
        threads: Option<usize>,
        /// Only these trials, as an --array= list (0,2-4).
        #[arg(long, value_name = "LIST")]
        only: Option<String>,
        #[command(flatten)]
        out: OutArg,
    },
    /// Write an sbatch script for a Slurm job array whose task i runs trial i.
    Slurm(SlurmArgs),
    /// Each trial's state and figures; the --array= list to resubmit what is not done.
    Status {
        /// The sweep directory.
        dir: PathBuf,
        /// Print the rows as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Like status, and write the table as DIR/trials.csv and DIR/trials.json.
    Collect {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Run (or continue, or skip if finished) trial INDEX of the sweep in DIR: what each
    /// Slurm array task and each local job runs.
    Trial {
        dir: PathBuf,
        index: usize,
        /// CPU threads for the cpu backend (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Args)]
struct OutArg {
    /// The sweep directory (default: the file's `out`, else the base's runs_dir/<file stem>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct SlurmArgs {
    /// Sweep file, or a sweep directory made earlier.
    file: PathBuf,
    #[command(flatten)]
    out: OutArg,
    #[arg(long)]
    partition: Option<String>,
    #[arg(long)]
    account: Option<String>,
    /// Wall-clock limit per trial, Slurm's format (2:00:00).
    #[arg(long)]
    time: Option<String>,
    /// GPUs per trial (--gres=gpu:N).
    #[arg(long)]
    gpus: Option<u32>,
    /// CPU threads per trial.
    #[arg(long, default_value_t = 1)]
    cpus_per_task: usize,
    /// Memory per trial, Slurm's format (16G).
    #[arg(long)]
    mem: Option<String>,
    /// At most K trials at once.
    #[arg(long, value_name = "K")]
    parallel: Option<usize>,
    /// Only these trials (default: all), as an --array= list.
    #[arg(long, value_name = "LIST")]
    array: Option<String>,
    /// More #SBATCH options (repeatable), e.g. --sbatch=--qos=high.
    #[arg(long = "sbatch", value_name = "OPTION")]
    extra: Vec<String>,
    /// Submit it with sbatch after writing it.
    #[arg(long)]
    submit: bool,
}

pub fn run(args: &SweepArgs) -> Result<(), String> {
    match &args.command {
        SweepCommand::Show { file } => show(file),
        SweepCommand::Run {
            file,
            jobs,
            threads,
            only,
            out,
        } => run_here(file, out, *jobs, *threads, only.as_deref()),
        SweepCommand::Slurm(args) => write_slurm(args),
        SweepCommand::Status { dir, json } => print_status(dir, *json).map(|_| ()),
        SweepCommand::Collect { dir } => collect(dir),
        SweepCommand::Trial {
            dir,
            index,
            threads,
        } => run_trial(dir, *index, *threads),
    }
}

fn show(file: &Path) -> Result<(), String> {
    let expanded = sweeps::expand(file, None)?;
    println!(
        "{}: {} trials → {}",
        file.display(),
        expanded.trials.len(),
        expanded.dir.display()
    );
    for t in &expanded.trials {
        let varies: Vec<String> = t
            .overrides
            .iter()
            .map(|o| format!("{}={}", o.key, o.value))
            .collect();
        println!(
            "{:>4}  {:<32} {:<26} {}",
            t.index,
            t.name,
            t.config.method.label(),
            varies.join(" ")
        );
    }
    Ok(())
}

/// The sweep directory for FILE (expanded, its manifest written or checked), or FILE itself
/// when it is a sweep directory.
fn open(file: &Path, out: &OutArg) -> Result<(PathBuf, Manifest), String> {
    if file.is_dir() {
        if out.out.is_some() {
            return Err(format!(
                "{} is a sweep directory already; --out applies to sweep files",
                file.display()
            ));
        }
        return Ok((file.to_path_buf(), Manifest::read(file)?));
    }
    let expanded = sweeps::expand(file, out.out.as_deref())?;
    let manifest = Manifest::write_or_check(&expanded, file)?;
    Ok((expanded.dir, manifest))
}

fn run_here(
    file: &Path,
    out: &OutArg,
    jobs: usize,
    threads: Option<usize>,
    only: Option<&str>,
) -> Result<(), String> {
    let (dir, manifest) = open(file, out)?;
    let chosen = match only {
        Some(list) => sweeps::parse_array_list(list, manifest.trials.len())?,
        None => (0..manifest.trials.len()).collect(),
    };
    let (_, rows) = status::scan(&dir)?;
    let done = chosen
        .iter()
        .filter(|&&i| !rows[i].state.wants_running())
        .count();
    let todo: Vec<usize> = chosen
        .iter()
        .copied()
        .filter(|&i| rows[i].state.wants_running())
        .collect();
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let options = LocalOptions::split(exe, jobs, threads);
    println!(
        "sweep {}: {} trials, {done} done or running elsewhere, {} to run, {} at a time × {} threads; logs in {}",
        dir.display(),
        chosen.len(),
        todo.len(),
        options.jobs,
        options.threads_per_job,
        dir.join("logs").display()
    );
    let total = todo.len();
    let mut ended = 0;
    let failed = local::run(&dir, &manifest, &todo, &options, &mut |p| match p {
        Progress::Started { index, name, .. } => println!("  start  {index:>4} {name}"),
        Progress::Ended {
            index,
            name,
            ok,
            seconds,
            log,
        } => {
            ended += 1;
            let verdict = if ok { "done " } else { "FAILED" };
            println!(
                "  {verdict} {index:>4} {name} ({seconds:.0} s) [{ended}/{total}]{}",
                if ok {
                    String::new()
                } else {
                    format!(" — see {}", log.display())
                }
            );
        }
    })?;
    print_status(&dir, false)?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {total} trials failed ({}); `lethe sweep run {}` again continues them",
            failed.len(),
            sweeps::array_list(&failed),
            dir.display()
        ))
    }
}

fn write_slurm(args: &SlurmArgs) -> Result<(), String> {
    let (dir, manifest) = open(&args.file, &args.out)?;
    let array = match &args.array {
        Some(list) => sweeps::array_list(&sweeps::parse_array_list(list, manifest.trials.len())?),
        None => format!("0-{}", manifest.trials.len() - 1),
    };
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let options = SlurmOptions {
        job_name: None,
        partition: args.partition.clone(),
        account: args.account.clone(),
        time: args.time.clone(),
        gpus: args.gpus,
        cpus_per_task: args.cpus_per_task,
        mem: args.mem.clone(),
        parallel: args.parallel,
        extra: args.extra.clone(),
    };
    let text = slurm::script(
        &absolute(&dir)?,
        &exe,
        &absolute(Path::new("."))?,
        &array,
        &options,
    )?;
    let path = dir.join("sweep.sbatch");
    atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "wrote {} ({} trials, --array={array})",
        path.display(),
        manifest.trials.len()
    );
    if !args.submit {
        println!("submit with: sbatch {}", path.display());
        return Ok(());
    }
    let output = std::process::Command::new("sbatch")
        .arg(&path)
        .output()
        .map_err(|e| format!("sbatch: {e} (is Slurm installed here?)"))?;
    if !output.status.success() {
        return Err(format!(
            "sbatch {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    print!("{}", String::from_utf8_lossy(&output.stdout));
    println!("follow it with: lethe sweep status {}", dir.display());
    Ok(())
}

/// Prints the sweep's table (or JSON) and what to resubmit; returns the rows.
fn print_status(dir: &Path, json: bool) -> Result<Vec<TrialStatus>, String> {
    let (_, rows) = status::scan(dir)?;
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(rows);
    }
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}%", 100.0 * v));
    println!("| trial | state | steps | method | varies | forgetting | FID |");
    println!("|---:|---|---:|---|---|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {}/{} | {} | {} | {} | {} |",
            r.name,
            r.state.label(),
            r.steps_done,
            r.total_steps,
            r.method,
            r.varies,
            pct(r.forgetting),
            r.fid.map_or("–".into(), |f| format!("{f:.2}"))
        );
    }
    for r in rows.iter().filter(|r| r.error.is_some()) {
        println!(
            "trial {} failed: {}",
            r.index,
            r.error.as_deref().unwrap_or_default()
        );
    }
    println!("{}", status::summary(&rows));
    let rerun = status::to_rerun(&rows);
    if !rerun.is_empty() {
        let list = sweeps::array_list(&rerun);
        println!(
            "not done: --array={list}  (here: lethe sweep run {d} --only {list}; on Slurm: sbatch --array={list} {d}/sweep.sbatch)",
            d = dir.display()
        );
    }
    Ok(rows)
}

fn collect(dir: &Path) -> Result<(), String> {
    let rows = print_status(dir, false)?;
    let csv = status::to_csv(&rows)?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    for (name, text) in [("trials.csv", csv), ("trials.json", json)] {
        let path = dir.join(name);
        atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn run_trial(dir: &Path, index: usize, threads: Option<usize>) -> Result<(), String> {
    trial::end_with_parent();
    let manifest = Manifest::read(dir)?;
    let record = manifest.trial(index)?;
    println!(
        "trial {index} of {}: {} ({})",
        manifest.trials.len(),
        record.name,
        record.varies()
    );
    let args = UnlearnArgs::plain(threads);
    match trial::next(dir, record)? {
        Next::Done(run_dir) => {
            println!("{} is finished already: nothing to do", run_dir.display());
            Ok(())
        }
        Next::RunningElsewhere(run_dir) => Err(format!(
            "{} is running in another process",
            run_dir.display()
        )),
        Next::Continue(run_dir) => unlearn::resume_experiment(&run_dir, &args).map(|_| ()),
        Next::Start(config) => unlearn::run_experiment(*config, &args).map(|_| ()),
    }
}
