//! The engine: a worker thread that runs experiments, driven by [`Command`]s and reporting
//! [`Event`]s over crossbeam channels. The CLI and the GUI are two consumers of the same
//! events; nothing here knows about either.

mod control;
mod data;
mod estimate;
mod memory_fit;
mod original_cache;
mod resume;
mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde::{Deserialize, Serialize};

use crate::experiment::ExperimentConfig;
use crate::metrics::evaluation::Evaluation;

pub use crate::experiment::StepRecord;
pub use control::Control;
pub use run::{Stop, execute, execute_resumed};

#[derive(Debug, Clone)]
pub enum Command {
    Start(Box<ExperimentConfig>),
    /// Continue the run in this directory from its last saved state (an interrupted,
    /// cancelled or failed run), on this backend if one is given.
    Continue {
        run_dir: PathBuf,
        backend: Option<crate::backend::BackendRequest>,
    },
    Pause,
    Resume,
    /// Stop after the current step; the run directory stays consistent and keeps a checkpoint.
    Cancel,
    /// Draw the fixed-seed grid of the current model now.
    SampleNow,
    /// Run the evaluation now.
    EvaluateNow,
    /// Show what a run of this config would start from, without starting it: the cost
    /// estimate and the original model's evaluation and samples (`run::preview`). Skipped
    /// when a later Preview, Start or Continue is already waiting.
    Preview(Box<ExperimentConfig>),
    /// End the worker thread (after the current run is cancelled).
    Shutdown,
}

/// What a finished (or stopped) run leaves behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub method: String,
    pub steps_done: usize,
    pub seconds: f64,
    pub seconds_per_step: Option<f64>,
    /// The original model under the run's evaluation pipeline.
    pub baseline: Option<Evaluation>,
    /// The model at the end of the run, same pipeline and seeds.
    pub last: Option<Evaluation>,
    pub last_checkpoint: Option<PathBuf>,
    /// Peak memory of the run (see `crate::train::memory`).
    pub peak_memory: crate::train::memory::MemoryReport,
}

#[derive(Debug, Clone)]
pub enum Event {
    Started {
        run_dir: PathBuf,
        method: String,
        total_steps: usize,
        backend: String,
        /// Why the run computes there (`auto: …`, `asked for …`).
        device_reason: String,
        forget_images: usize,
        retain_images: usize,
    },
    Step(StepRecord),
    /// Fixed-seed samples (values in [0, 1]) of the original and current model.
    Samples {
        step: usize,
        shape: [usize; 3],
        original: Arc<Vec<Vec<f32>>>,
        current: Vec<Vec<f32>>,
    },
    Metrics {
        step: usize,
        evaluation: Evaluation,
        baseline: Evaluation,
    },
    Checkpoint {
        step: usize,
        path: PathBuf,
    },
    Paused,
    Resumed,
    /// A status line for logs (loading data, evaluating, …).
    Note(String),
    /// Something the user must read before trusting a value (e.g. a forgetting rate the
    /// original model makes uninformative, with what to do about it).
    Warning(String),
    /// What the run's evaluations and training are expected to cost, before it starts
    /// (`CostEstimate::warning` says when evaluation would take longer than training).
    Estimate(crate::experiment::cost::CostEstimate),
    /// The class setting's guidance weight and the check behind it (`metrics::baseline_check`).
    Guidance {
        guidance: f32,
        check: String,
    },
    /// An event of a preview (`Command::Preview`), kept apart from a run's.
    Preview(Box<Event>),
    /// A preview is complete, or could not be made (why).
    PreviewEnded(Result<(), String>),
    Finished(Summary),
    Cancelled(Summary),
    Failed {
        error: String,
        run_dir: Option<PathBuf>,
    },
}

impl Event {
    /// Whether this event ends a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Finished(_) | Self::Cancelled(_) | Self::Failed { .. }
        )
    }
}

/// Called by the worker after each event (the GUI passes `ctx.request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

pub struct Engine {
    commands: Sender<Command>,
    events: Receiver<Event>,
    worker: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn spawn(waker: Option<Waker>) -> Self {
        let (commands, command_rx) = unbounded::<Command>();
        let (event_tx, events) = unbounded::<Event>();
        let worker = std::thread::Builder::new()
            .name("lethe-engine".into())
            .spawn(move || worker_loop(&command_rx, &event_tx, waker))
            .expect("spawn engine thread");
        Self {
            commands,
            events,
            worker: Some(worker),
        }
    }

    pub fn send(&self, command: Command) {
        // The worker only stops after Shutdown; a send error then is harmless.
        let _ = self.commands.send(command);
    }

    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Cancel);
        let _ = self.commands.send(Command::Shutdown);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// A command that makes a preview before it pointless: a newer preview, or a run (which
/// evaluates the original itself).
fn supersedes_preview(command: &Command) -> bool {
    matches!(
        command,
        Command::Preview(_) | Command::Start(_) | Command::Continue { .. } | Command::Shutdown
    )
}

/// A preview, its events wrapped as `Event::Preview`, ended by `Event::PreviewEnded`; a
/// backend panic ends it with an error like any other.
fn run_preview(config: &ExperimentConfig, emit: &dyn Fn(Event)) {
    let wrapped = |event: Event| emit(Event::Preview(Box::new(event)));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run::preview(config, &wrapped)
    }));
    emit(Event::PreviewEnded(match outcome {
        Ok(result) => result,
        Err(panic) => Err(panic_error(&*panic, config)),
    }));
}

/// The message of a panic inside a run; when it ran out of memory, with a batch size that
/// fits (one training step tried at halving sizes on the same device).
fn panic_error(panic: &(dyn std::any::Any + Send), config: &ExperimentConfig) -> String {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    if config.header.backend == crate::backend::BackendChoice::Remote {
        let server = config.header.remote.as_deref().unwrap_or("the server");
        return format!(
            "the connection to the lethe serve at {server} failed: {message}. The run directory keeps its last checkpoint; resume it once the server answers again (lethe unlearn --resume DIR)"
        );
    }
    let lower = message.to_lowercase();
    let memory = [
        "out of memory",
        "oom",
        "allocat",
        "memory",
        "buffer size",
        "exceeds",
    ]
    .iter()
    .any(|word| lower.contains(word));
    if !memory {
        return format!("the compute backend failed: {message}");
    }
    let batch = config.train.batch_size;
    let micro = batch.div_ceil(config.train.grad_accumulation.max(1));
    let checkpoint = &config.header.checkpoint;
    let fits = crate::device_check::select(config.header.backend, checkpoint, &|_| {})
        .ok()
        .and_then(|s| crate::device_check::check::fitting_batch(checkpoint, &s.device, micro / 2));
    format!(
        "the device ran out of memory at train.batch_size {batch} ({}); {}. The run directory keeps its last checkpoint. Backend message: {message}",
        memory_fit::passes_phrase(batch, micro),
        memory_advice(batch, fits)
    )
}

/// What to change when a pass of the batch does not fit, given the largest micro-batch
/// that ran (`fits`). Accumulation keeps the batch — and so the experiment — the same.
fn memory_advice(batch: usize, fits: Option<usize>) -> String {
    match fits {
        Some(b) => format!(
            "a training pass of {b} images fits: set train.grad_accumulation = {} (micro-batches of {} images; the same batch and result in less memory)",
            batch.div_ceil(b),
            batch.div_ceil(batch.div_ceil(b))
        ),
        None => "no smaller micro-batch ran either; the device may need a restart (or use --backend cpu)"
            .to_string(),
    }
}

fn worker_loop(commands: &Receiver<Command>, events: &Sender<Event>, waker: Option<Waker>) {
    let emit = |e: Event| {
        let _ = events.send(e);
        if let Some(w) = &waker {
            w();
        }
    };
    let mut waiting = std::collections::VecDeque::new();
    loop {
        let command = match waiting.pop_front() {
            Some(command) => command,
            None => match commands.recv() {
                Ok(command) => command,
                Err(_) => return,
            },
        };
        let (config, run_dir) = match command {
            Command::Start(config) => (*config, None),
            Command::Preview(config) => {
                waiting.extend(commands.try_iter());
                if !waiting.iter().any(supersedes_preview) {
                    run_preview(&config, &emit);
                }
                continue;
            }
            Command::Continue { run_dir, backend } => {
                match ExperimentConfig::from_file(&run_dir.join("config.toml")) {
                    Ok(mut config) => {
                        if let Some(backend) = backend {
                            config.header.set_backend(&backend);
                        }
                        (config, Some(run_dir))
                    }
                    Err(error) => {
                        emit(Event::Failed {
                            error,
                            run_dir: Some(run_dir),
                        });
                        continue;
                    }
                }
            }
            Command::Shutdown => return,
            // Nothing is running: pause/cancel/sample requests have nothing to act on.
            _ => continue,
        };
        let mut control = Control::new(commands);
        // Commands that arrived behind this run while a preview was considered act on it.
        for command in waiting.drain(..) {
            control.apply(command);
        }
        // A backend that panics (a GPU out of memory, a driver error) ends this run
        // with an error the user can act on; the workbench and its other runs live on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &run_dir {
            Some(dir) => execute_resumed(&config, dir, &mut control, &emit),
            None => execute(&config, &mut control, &emit),
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(run::Stop::Failed { error, run_dir })) => emit(Event::Failed { error, run_dir }),
            Err(panic) => emit(Event::Failed {
                error: panic_error(&*panic, &config),
                run_dir: None,
            }),
        }
        if control.shutdown {
            return;
        }
    }
}
