//! What the workbench knows about the run in progress: built from engine [`Event`]s only,
//! so the plots and grids show exactly what the worker reported.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{Event, Summary};
use crate::metrics::evaluation::Evaluation;

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Starting,
    Running,
    Paused,
    Finished,
    Cancelled,
    Failed(String),
}

impl Phase {
    pub fn is_over(&self) -> bool {
        matches!(self, Self::Finished | Self::Cancelled | Self::Failed(_))
    }
}

/// Named line series, each a list of `[step, value]`, in first-seen order.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub lines: Vec<(String, Vec<[f64; 2]>)>,
}

impl Series {
    pub fn push(&mut self, name: &str, step: usize, value: f64) {
        if !value.is_finite() {
            return;
        }
        let name = &displayable(name);
        match self.lines.iter_mut().find(|(n, _)| n == name) {
            Some((_, points)) => points.push([step as f64, value]),
            None => self
                .lines
                .push((name.to_string(), vec![[step as f64, value]])),
        }
    }

    pub fn points(&self) -> usize {
        self.lines.iter().map(|(_, p)| p.len()).sum()
    }
}

/// Engine names as the GUI's fonts can draw them (egui's default fonts lack ‖, →, ≥, ≤, ≈).
pub fn displayable(text: &str) -> String {
    text.replace('‖', "||")
        .replace('≈', "~")
        .replace('→', "->")
        .replace('≥', ">=")
        .replace('≤', "<=")
}

/// One fixed-seed grid of the current model.
#[derive(Debug, Clone)]
pub struct GridRecord {
    pub step: usize,
    pub current: Vec<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct LiveRun {
    /// What was started ("SISS", "DiMRA attack on siss-001", …).
    pub title: String,
    /// A preview (`Command::Preview`): the original model as a run of the configured
    /// settings would start from it — no steps, no run directory.
    pub preview: bool,
    /// Unique per live view, so textures drawn for an earlier run are never shown for
    /// this one.
    pub id: u64,
    pub phase: Phase,
    pub run_dir: Option<PathBuf>,
    pub method: String,
    pub backend: String,
    /// Why the run computes on `backend` (status bar).
    pub device_reason: String,
    pub total_steps: usize,
    pub steps_done: usize,
    pub forget_images: usize,
    pub retain_images: usize,
    /// Loss terms (retain, forget, total …) by step.
    pub terms: Series,
    pub grad_norms: Series,
    /// Step-dependent coefficients and SISS importance-weight statistics.
    pub coefficients: Series,
    pub weights: Series,
    pub baseline: Option<Evaluation>,
    pub evaluations: Vec<(usize, Evaluation)>,
    pub shape: [usize; 3],
    pub original: Arc<Vec<Vec<f32>>>,
    pub grids: Vec<GridRecord>,
    pub summary: Option<Summary>,
    pub notes: Vec<String>,
    /// What the user must read before trusting a value (`Event::Warning`).
    pub warnings: Vec<String>,
    /// The class setting's guidance weight and the check behind it.
    pub guidance: Option<(f32, String)>,
    /// What the run expected its evaluations and training to cost.
    pub estimate: Option<crate::experiment::cost::CostEstimate>,
    recent_step_seconds: VecDeque<f64>,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl LiveRun {
    /// The version of a texture drawn from this view's data at `step`.
    pub fn texture_version(&self, step: usize) -> u64 {
        (self.id << 32) | step as u64
    }
}

/// Step times averaged for steps/s and the ETA.
const RATE_WINDOW: usize = 20;

impl LiveRun {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            preview: false,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            phase: Phase::Starting,
            run_dir: None,
            method: String::new(),
            backend: String::new(),
            device_reason: String::new(),
            total_steps: 0,
            steps_done: 0,
            forget_images: 0,
            retain_images: 0,
            terms: Series::default(),
            grad_norms: Series::default(),
            coefficients: Series::default(),
            weights: Series::default(),
            baseline: None,
            evaluations: Vec::new(),
            shape: [1, 1, 1],
            original: Arc::new(Vec::new()),
            grids: Vec::new(),
            summary: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            guidance: None,
            estimate: None,
            recent_step_seconds: VecDeque::new(),
        }
    }

    /// The view of a preview, before its events arrive.
    pub fn preview() -> Self {
        Self {
            preview: true,
            ..Self::new("The original model (no run yet)")
        }
    }

    /// Whether a run is in progress (a preview is not a run: Run stays available).
    pub fn is_running(&self) -> bool {
        !self.preview && !self.phase.is_over()
    }

    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Preview(inner) => self.apply(*inner),
            Event::PreviewEnded(outcome) => {
                self.phase = match outcome {
                    Ok(()) => Phase::Finished,
                    Err(error) => Phase::Failed(error),
                }
            }
            Event::Started {
                run_dir,
                method,
                total_steps,
                backend,
                device_reason,
                forget_images,
                retain_images,
            } => {
                self.device_reason = device_reason;
                self.phase = Phase::Running;
                self.run_dir = Some(run_dir);
                self.method = method;
                self.total_steps = total_steps;
                self.backend = backend;
                self.forget_images = forget_images;
                self.retain_images = retain_images;
            }
            Event::Step(record) => {
                let s = record.step;
                self.steps_done = s;
                for (name, v) in &record.report.terms {
                    self.terms.push(name, s, *v as f64);
                }
                for (name, v) in &record.report.grad_norms {
                    self.grad_norms.push(name, s, *v as f64);
                }
                self.grad_norms
                    .push("combined (before clip)", s, record.grad_norm as f64);
                for (name, v) in &record.report.coefficients {
                    self.coefficients.push(name, s, *v as f64);
                }
                if let Some(w) = &record.report.weights {
                    self.weights.push("w_x mean", s, w.w_x_mean);
                    self.weights.push("w_x max", s, w.w_x_max);
                    self.weights.push("w_a mean", s, w.w_a_mean);
                    self.weights.push("w_a max", s, w.w_a_max);
                    self.weights.push("forget fraction", s, w.forget_fraction);
                }
                self.recent_step_seconds.push_back(record.step_seconds);
                if self.recent_step_seconds.len() > RATE_WINDOW {
                    self.recent_step_seconds.pop_front();
                }
            }
            Event::Samples {
                step,
                shape,
                original,
                current,
            } => {
                self.shape = shape;
                self.original = original;
                self.grids.retain(|g| g.step != step);
                self.grids.push(GridRecord { step, current });
                self.grids.sort_by_key(|g| g.step);
            }
            Event::Metrics {
                step,
                evaluation,
                baseline,
            } => {
                self.baseline = Some(baseline);
                self.evaluations.retain(|(s, _)| *s != step);
                self.evaluations.push((step, evaluation));
                self.evaluations.sort_by_key(|(s, _)| *s);
            }
            Event::Checkpoint { step, path } => self
                .notes
                .push(format!("step {step}: checkpoint {}", path.display())),
            Event::Paused => self.phase = Phase::Paused,
            Event::Resumed => self.phase = Phase::Running,
            Event::Note(note) => self.notes.push(note),
            Event::Warning(text) => {
                self.notes.push(format!("warning: {text}"));
                self.warnings.push(text);
            }
            Event::Guidance { guidance, check } => self.guidance = Some((guidance, check)),
            Event::Estimate(estimate) => {
                self.notes.extend(estimate.lines());
                self.estimate = Some(estimate);
            }
            Event::Finished(summary) => {
                self.phase = Phase::Finished;
                self.finish(summary);
            }
            Event::Cancelled(summary) => {
                self.phase = Phase::Cancelled;
                self.finish(summary);
            }
            Event::Failed { error, run_dir } => {
                if run_dir.is_some() {
                    self.run_dir = run_dir;
                }
                self.phase = Phase::Failed(error);
            }
        }
    }

    fn finish(&mut self, summary: Summary) {
        self.steps_done = summary.steps_done;
        self.run_dir = Some(summary.run_dir.clone());
        if let Some(last) = &summary.last
            && !self
                .evaluations
                .iter()
                .any(|(s, _)| *s == summary.steps_done)
        {
            self.evaluations.push((summary.steps_done, last.clone()));
        }
        self.summary = Some(summary);
    }

    /// Steps per second over the last few steps (worker time, evaluations excluded).
    pub fn steps_per_second(&self) -> Option<f64> {
        let total: f64 = self.recent_step_seconds.iter().sum();
        (total > 0.0).then(|| self.recent_step_seconds.len() as f64 / total)
    }

    /// Seconds left at the recent rate (training steps only).
    pub fn eta_seconds(&self) -> Option<f64> {
        let rate = self.steps_per_second()?;
        Some(self.total_steps.saturating_sub(self.steps_done) as f64 / rate)
    }

    pub fn progress(&self) -> f32 {
        if self.total_steps == 0 {
            0.0
        } else {
            self.steps_done as f32 / self.total_steps as f32
        }
    }

    /// The metric curves the plots show: (name with provenance, points over steps).
    pub fn metric_series(&self) -> Series {
        let mut series = Series::default();
        for (step, e) in &self.evaluations {
            for (name, value) in metric_values(e) {
                series.push(&name, *step, value);
            }
        }
        series
    }

    /// The grid recorded at or before `step` (the step slider scrubs through these).
    pub fn grid_at(&self, step: usize) -> Option<&GridRecord> {
        self.grids.iter().rev().find(|g| g.step <= step)
    }
}

/// Which plot a metric goes on: values on different scales never share an axis (a rate in
/// [0, 1] beside an FID of 200 is a flat line at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricAxis {
    /// Fractions of samples, in [0, 1].
    Rate,
    /// Bits per dimension (ELBO) and nats (entropy): a few units.
    Information,
    /// Fréchet distance: tens to hundreds.
    Fid,
}

impl MetricAxis {
    pub const ALL: [MetricAxis; 3] = [Self::Rate, Self::Information, Self::Fid];

    /// The axis of a metric named as [`metric_values`] names it.
    pub fn of(name: &str) -> Self {
        if name.starts_with("FID") {
            Self::Fid
        } else if name.contains("bits/dim") || name.contains("nats") {
            Self::Information
        } else {
            Self::Rate
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Rate => "rates (fraction of samples)",
            Self::Information => "ELBO (bits/dim) and entropy (nats)",
            Self::Fid => "FID",
        }
    }
}

/// The line at the top of a run: its forgetting figure and its quality figure, original →
/// latest, and how each was computed (for the hover).
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub text: String,
    pub provenance: String,
}

/// The run's headline once the original has been evaluated: the forgotten-class rate in the
/// class setting, else the forget-image rate; quality as FID where computed, else the
/// confident kept rate, else the retain ELBO.
pub fn headline(baseline: &Evaluation, latest: Option<(usize, &Evaluation)>) -> Headline {
    let forgetting = |e: &Evaluation| match e.forgotten_class_rate {
        Some(r) => ("forgotten-class rate", r),
        None => ("forget-image rate", e.forget_copy_rate),
    };
    let quality = |e: &Evaluation| -> Option<(&'static str, f64, String)> {
        if let Some(f) = e.fid {
            Some(("FID", f, format!("{f:.1}")))
        } else if let Some(c) = e.confident_kept_rate {
            Some(("confident kept rate", c, format!("{:.1}%", 100.0 * c)))
        } else {
            e.elbo_retain_bpd
                .map(|b| ("ELBO retain (bits/dim)", b, format!("{b:.3}")))
        }
    };
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let (f_name, f_before) = forgetting(baseline);
    let mut text = format!("Forgetting: {f_name} {}", pct(f_before));
    let mut provenance = vec![baseline.label(f_name)];
    if let Some((step, latest)) = latest {
        text += &format!(" -> {} (step {step})", pct(forgetting(latest).1));
    }
    if let Some((q_name, _, q_before)) = quality(baseline) {
        text += &format!("   ·   Quality: {q_name} {q_before}");
        if let Some((_, _, q_now)) = latest.and_then(|(_, l)| quality(l)) {
            text += &format!(" -> {q_now}");
        }
        provenance.push(baseline.label(q_name));
    }
    if latest.is_none() {
        text += "   (the original model; nothing evaluated since)";
    }
    Headline {
        text,
        provenance: displayable(&provenance.join("\n")),
    }
}

/// The plotted metrics of one evaluation by short name; [`metric_provenance`] says how
/// each was computed (shown beside the plot and in its tooltip).
pub fn metric_values(e: &Evaluation) -> Vec<(String, f64)> {
    let mut out = vec![("forget-image rate".to_string(), e.forget_copy_rate)];
    let optional = [
        ("forgotten-class rate", e.forgotten_class_rate),
        ("entropy H (nats)", e.mean_entropy),
        ("FID", e.fid),
        ("ELBO forget (bits/dim)", e.elbo_forget_bpd),
        ("ELBO retain (bits/dim)", e.elbo_retain_bpd),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            out.push((name.to_string(), v));
        }
    }
    out
}

/// Each plotted metric's full label with its provenance, e.g.
/// `FID[lethe-mnist11@9dd9400b, N=64, DDIM-50,uncond, seed 0, vs 10000 retain images]`.
pub fn metric_provenance(e: &Evaluation) -> Vec<String> {
    metric_values(e)
        .into_iter()
        .map(|(name, _)| {
            if name.starts_with("ELBO") {
                // One label covers both sets; the set is in the name.
                let how = e.label("ELBO");
                format!("{name} {}", how.trim_start_matches("ELBO bits/dim "))
            } else {
                e.label(&name)
            }
        })
        .map(|label| displayable(&label))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StepRecord;

    #[test]
    fn metrics_on_different_scales_get_different_axes() {
        assert_eq!(MetricAxis::of("forget-image rate"), MetricAxis::Rate);
        assert_eq!(MetricAxis::of("forgotten-class rate"), MetricAxis::Rate);
        assert_eq!(MetricAxis::of("FID"), MetricAxis::Fid);
        assert_eq!(
            MetricAxis::of("ELBO retain (bits/dim)"),
            MetricAxis::Information
        );
        assert_eq!(MetricAxis::of("entropy H (nats)"), MetricAxis::Information);
    }

    #[test]
    fn the_headline_reads_before_and_now() {
        let before = Evaluation {
            forget_copy_rate: 0.0626,
            fid: Some(31.24),
            ..Evaluation::default()
        };
        let now = Evaluation {
            forget_copy_rate: 0.0,
            fid: Some(33.5),
            ..Evaluation::default()
        };
        let h = headline(&before, Some((300, &now)));
        assert_eq!(
            h.text,
            "Forgetting: forget-image rate 6.3% -> 0.0% (step 300)   ·   Quality: FID 31.2 -> 33.5"
        );
        assert!(h.provenance.contains("FID"), "{}", h.provenance);
        let class = Evaluation {
            forgotten_class_rate: Some(0.5),
            confident_kept_rate: Some(0.75),
            ..Evaluation::default()
        };
        let h = headline(&class, None);
        assert!(
            h.text.starts_with(
                "Forgetting: forgotten-class rate 50.0%   ·   Quality: confident kept rate 75.0%"
            ),
            "{}",
            h.text
        );
    }
    use crate::unlearn::StepReport;

    fn step(s: usize, secs: f64) -> Event {
        Event::Step(StepRecord {
            step: s,
            report: StepReport {
                terms: vec![("retain".into(), 1.0 / s as f32), ("total".into(), 2.0)],
                grad_norms: vec![("retain".into(), 3.0)],
                coefficients: vec![],
                weights: None,
            },
            grad_norm: 4.0,
            clipped: false,
            learning_rate: 1e-4,
            step_seconds: secs,
        })
    }

    #[test]
    fn steps_fill_one_line_per_term_and_give_a_rate() {
        let mut run = LiveRun::new("t");
        run.apply(Event::Started {
            run_dir: "runs/x".into(),
            method: "SISS".into(),
            total_steps: 10,
            backend: "cpu".into(),
            device_reason: "asked for".into(),
            forget_images: 1,
            retain_images: 9,
        });
        for s in 1..=4 {
            run.apply(step(s, 0.5));
        }
        assert_eq!(run.phase, Phase::Running);
        assert_eq!(run.terms.lines.len(), 2);
        assert_eq!(run.terms.lines[0].1.len(), 4);
        assert_eq!(run.terms.lines[0].1[1], [2.0, 0.5]);
        assert_eq!(run.grad_norms.lines.len(), 2);
        assert_eq!(run.steps_per_second(), Some(2.0));
        assert_eq!(run.eta_seconds(), Some(3.0));
        assert!((run.progress() - 0.4).abs() < 1e-6);
    }

    #[test]
    fn grids_are_kept_per_step_and_scrubbed_by_step() {
        let mut run = LiveRun::new("t");
        for s in [0, 50, 100] {
            run.apply(Event::Samples {
                step: s,
                shape: [1, 1, 1],
                original: Arc::new(vec![vec![0.0]]),
                current: vec![vec![s as f32]],
            });
        }
        assert_eq!(run.grids.len(), 3);
        assert_eq!(run.grid_at(75).unwrap().step, 50);
        assert_eq!(run.grid_at(100).unwrap().current[0][0], 100.0);
        run.apply(Event::Failed {
            error: "boom".into(),
            run_dir: None,
        });
        assert!(run.phase.is_over());
    }
}
