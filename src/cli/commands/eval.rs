//! `lethe eval`: the whole metric suite on one checkpoint, headless.

use std::path::{Path, PathBuf};

use clap::Args;

use lethe::data::{self, ImageSet, ImageSpec};
use lethe::diffusion::checkpoint::{self, Checkpoint};
use lethe::diffusion::sampler::{SAMPLE_BATCH, SampleJob, SamplerKind, SamplerSpec};
use lethe::metrics::baseline_check::{
    GUIDANCE_CANDIDATES, GuidanceProbe, Setting, summarize, uninformative,
};
use lethe::metrics::classifier::LoadedClassifier;
use lethe::metrics::evaluation::Evaluation;
use lethe::metrics::feature_net::{FeatureNet, FeatureNetChoice};
use lethe::metrics::forgetting::distinct_unit_images;
use lethe::metrics::memorization::SISS_L2_THRESHOLD;
use lethe::metrics::suite::{Drawn, Preset, Suite, SuiteSpec};
use lethe::metrics::weights::{WeightDistance, weight_distance};

use crate::cli::args::{Compute, PrecisionArg, PresetArg};
use crate::cli::progress::sample_images;

#[derive(Args)]
pub struct EvalArgs {
    /// The checkpoint to evaluate (diffusers layout).
    #[arg(long, default_value = data::demo::DEMO_CHECKPOINT)]
    checkpoint: PathBuf,
    /// Images to forget (files, folders, IDX, CIFAR batches). With neither --forget, --retain
    /// nor --forget-class, the demo's sets are used (the memorised T-shirt; the MNIST digits).
    #[arg(long, num_args = 1..)]
    forget: Vec<PathBuf>,
    /// Images to keep: the reference set of FID and precision/recall, and retain ELBO images.
    #[arg(long, num_args = 1..)]
    retain: Vec<PathBuf>,
    /// Class setting: the retain images of this class are the forget set, and the forgetting
    /// rates are measured on samples of this class (with --guidance).
    #[arg(long)]
    forget_class: Option<usize>,
    /// The forgotten content's class for the classifier (P(y=c_f)); default: the forget
    /// class, else the class the classifier gives most forget images.
    #[arg(long)]
    forget_label: Option<usize>,
    /// The model before unlearning: evaluated with the identical pipeline and seeds, giving
    /// PUL and a baseline column, and the weight distance when --reference-weights is absent.
    #[arg(long)]
    original: Option<PathBuf>,
    /// Weight distance (L2 and relative) to this checkpoint, e.g. the retrain reference.
    #[arg(long)]
    reference_weights: Option<PathBuf>,
    /// fast (48 samples, DDIM-20, ELBO of 8+8 images from 16 timesteps) or thorough (512
    /// samples, DDIM-50, ELBO of 64+64 images from 100 timesteps).
    #[arg(long, value_enum, default_value = "thorough")]
    preset: PresetArg,
    /// Override the preset's sample count.
    #[arg(long)]
    samples: Option<usize>,
    /// Sampler: ddim, or dpm++2m (DPM-Solver++(2M), 10–20 steps for about what DDIM does in 50).
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    sampler: SamplerKind,
    /// Override the preset's sampler steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Override the preset's ELBO timesteps per image (0 = skip the ELBO).
    #[arg(long)]
    elbo_timesteps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Guidance weight for the forgotten class's samples (class setting). Default: chosen by
    /// the guidance check — the first of 2, 1, 3, 0 under which the original (--original, else
    /// this checkpoint) draws the class in ≥ 50% of 32 samples.
    #[arg(long)]
    guidance: Option<f32>,
    /// Feature network for FID and precision/recall: `classifier` (the one `--classifier`
    /// names) or `inception:PATH` (the FID Inception-v3 with pytorch-fid's weights file,
    /// `pt_inception-2015-12-05-6726825d.pth`, or the same tensors as `.safetensors`).
    #[arg(long, default_value = "classifier")]
    feature_net: FeatureNetChoice,
    #[arg(long, default_value = data::demo::DEMO_CLASSIFIER)]
    classifier: PathBuf,
    /// Also write every value with its provenance as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Applies to the checkpoint and --original alike (same pipeline for both).
    #[command(flatten)]
    precision: PrecisionArg,
    #[command(flatten)]
    compute: Compute,
}

/// The forget and retain sets as the arguments describe them.
fn eval_data(args: &EvalArgs, spec: ImageSpec) -> Result<(ImageSet, ImageSet, String), String> {
    let use_demo = args.forget.is_empty() && args.retain.is_empty() && args.forget_class.is_none();
    let (forget_paths, retain_paths) = if use_demo {
        (
            vec![data::demo::asset(data::demo::MEMORISED_TSHIRT)],
            vec![data::demo::asset(data::demo::MNIST_IMAGES)],
        )
    } else {
        (args.forget.clone(), args.retain.clone())
    };
    let load = |paths: &[PathBuf]| -> Result<ImageSet, String> {
        if paths.is_empty() {
            Ok(ImageSet::empty(spec))
        } else {
            data::load_paths(paths, spec).map_err(|e| e.to_string())
        }
    };
    let mut retain = load(&retain_paths)?;
    let mut forget = load(&forget_paths)?;
    if let Some(class) = args.forget_class {
        let (drop, keep): (Vec<usize>, Vec<usize>) =
            (0..retain.len()).partition(|&i| retain.labels[i] == Some(class));
        if drop.is_empty() {
            return Err(format!(
                "--forget-class {class}: no retain image has that label"
            ));
        }
        forget.extend(retain.subset(&drop));
        retain = retain.subset(&keep);
    }
    let described = format!(
        "forget: {} image(s) from {}; retain: {} image(s) from {}{}",
        forget.len(),
        names(&forget_paths, args.forget_class),
        retain.len(),
        names(&retain_paths, None),
        if use_demo { " (the demo's sets)" } else { "" }
    );
    Ok((forget, retain, described))
}

fn names(paths: &[PathBuf], class: Option<usize>) -> String {
    let mut s: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if let Some(c) = class {
        s.push(format!("retain class {c}"));
    }
    if s.is_empty() {
        "nothing".into()
    } else {
        s.join(", ")
    }
}

/// The class the classifier gives most of the forget images, if it is a majority.
fn majority_class(
    classifier: &LoadedClassifier,
    forget: &[Vec<f32>],
    shape: [usize; 3],
    device: &burn::tensor::Device,
) -> Option<usize> {
    let probs = classifier.probabilities(forget, shape, device);
    let mut counts = vec![0usize; classifier.config.num_classes];
    for p in &probs {
        let top = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b]))?;
        counts[top] += 1;
    }
    let (class, &count) = counts.iter().enumerate().max_by_key(|(_, c)| **c)?;
    (2 * count > probs.len()).then_some(class)
}

/// Samples of one model for the suite: the probe's samples and, in the class setting, the
/// unconditional samples that FID and the other quality metrics use.
struct ModelSamples {
    probe: Vec<Vec<f32>>,
    quality: Option<Vec<Vec<f32>>>,
    sampler: String,
}

fn draw(
    ckpt: &Checkpoint,
    args: &EvalArgs,
    guidance: f32,
    samples: usize,
    steps: usize,
    device: &burn::tensor::Device,
) -> Result<ModelSamples, String> {
    let uncond = SamplerSpec::new(args.sampler, steps);
    let label = |spec: &SamplerSpec| ckpt.sample_job(spec, device).label();
    let draw_with = |spec: &SamplerSpec| {
        sample_images(
            &ckpt.sample_job(spec, device),
            args.seed,
            samples,
            SAMPLE_BATCH,
            &format!("sampling {} ({})", label(spec), ckpt.dir.display()),
        )
    };
    match args.forget_class {
        Some(class) if ckpt.config.num_class_embeds.is_some() => {
            let guided = SamplerSpec {
                class: Some(class),
                guidance: if ckpt.config.lethe_null_class.is_some() {
                    guidance
                } else {
                    0.0
                },
                ..uncond.clone()
            };
            let probe = draw_with(&guided)?;
            let quality = if ckpt.config.lethe_null_class.is_some() {
                Some(draw_with(&uncond)?)
            } else {
                None
            };
            let sampler = match &quality {
                Some(_) => format!("{} (quality: {})", label(&guided), label(&uncond)),
                None => label(&guided),
            };
            Ok(ModelSamples {
                probe,
                quality,
                sampler,
            })
        }
        _ => Ok(ModelSamples {
            probe: draw_with(&uncond)?,
            quality: None,
            sampler: label(&uncond),
        }),
    }
}

fn evaluate_one(
    ckpt: &Checkpoint,
    suite: &Suite,
    args: &EvalArgs,
    (guidance, samples, steps): (f32, usize, usize),
    device: &burn::tensor::Device,
) -> Result<Evaluation, String> {
    let drawn = draw(ckpt, args, guidance, samples, steps, device)?;
    eprintln!("computing metrics of {}", ckpt.dir.display());
    suite.evaluate(
        &ckpt.unet,
        &ckpt.schedule,
        &Drawn {
            samples: &drawn.probe,
            quality: drawn.quality.as_deref(),
            shape: ckpt.config.image_shape(),
            sampler: &drawn.sampler,
            seed: args.seed,
        },
        device,
    )
}

pub fn run(args: &EvalArgs) -> Result<(), String> {
    let device = args.compute.select(&args.checkpoint)?.device;
    let clock = std::time::Instant::now();
    let load = |path: &Path| args.precision.load_checkpoint(path, &device);
    let ckpt = load(&args.checkpoint)?;
    let original = match &args.original {
        Some(p) => Some(load(p)?),
        None => None,
    };
    if let Some(o) = &original
        && (o.config != ckpt.config)
    {
        return Err(format!(
            "{}: a different architecture from {}; --original must be the model before unlearning",
            o.dir.display(),
            ckpt.dir.display()
        ));
    }
    let shape = ckpt.config.image_shape();
    let spec = ImageSpec {
        channels: shape[0],
        height: shape[1],
        width: shape[2],
    };
    let (forget, retain, data_line) = eval_data(args, spec)?;
    let classifier_dir = data::demo::asset(&args.classifier.to_string_lossy());
    let classifier = match LoadedClassifier::load_for(&classifier_dir, shape, &device) {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("warning: no classifier metrics ({e})");
            None
        }
    };
    let forget_images = distinct_unit_images(&forget);
    let (forgotten_class, class_note) = match (args.forget_label, args.forget_class, &classifier) {
        (Some(l), _, _) => (Some(l), "--forget-label".to_string()),
        (None, Some(c), _) => (Some(c), "--forget-class".to_string()),
        (None, None, Some(k)) if !forget_images.is_empty() => {
            let m = majority_class(k, &forget_images, shape, &device);
            (
                m,
                "the classifier's majority label of the forget images".into(),
            )
        }
        _ => (None, String::new()),
    };
    let preset: Preset = args.preset.into();
    let settings = preset.settings();
    let samples = args.samples.unwrap_or(settings.samples);
    let steps = args.steps.unwrap_or(settings.sampler_steps);
    let elbo_timesteps = args.elbo_timesteps.unwrap_or(settings.elbo_timesteps);
    let custom = args.samples.is_some()
        || args.steps.is_some()
        || args.elbo_timesteps.is_some()
        || args.sampler != SamplerKind::Ddim;
    let feature_net = FeatureNet::resolve(&args.feature_net, classifier.as_ref(), &device)?;
    let suite = Suite::for_run(
        SuiteSpec {
            model: &ckpt.config,
            retain: &retain,
            forget: &forget,
            classifier,
            feature_net,
            forgotten_class,
            copy_threshold: SISS_L2_THRESHOLD,
            elbo_images: settings.elbo_images,
            elbo_timesteps,
            seed: args.seed,
            preset: if custom {
                format!("{} (custom)", preset.name())
            } else {
                preset.name().to_string()
            },
        },
        &device,
    )?;
    // The model the checks run on: the one before unlearning when given.
    let checked = original.as_ref().unwrap_or(&ckpt);
    let guidance = resolve_guidance(args, checked, &suite, steps, &device)?;
    let budget = (guidance, samples, steps);
    let mut eval = evaluate_one(&ckpt, &suite, args, budget, &device)?;
    let mut baseline = match &original {
        Some(o) => Some(evaluate_one(o, &suite, args, budget, &device)?),
        None => None,
    };
    if let Some(b) = &baseline {
        eval.set_pul(b);
    }
    let caveat = caveat(
        args,
        checked,
        baseline.as_ref().unwrap_or(&eval),
        (&suite, guidance, steps),
        &device,
    )?;
    for e in std::iter::once(&mut eval).chain(baseline.as_mut()) {
        if let Some(how) = e.how.as_mut() {
            how.caveat = caveat.clone();
        }
    }
    let wd_ref = match &args.reference_weights {
        Some(p) => Some(checkpoint::load(p, &device).map_err(|e| e.to_string())?),
        None => None,
    };
    let wd_target = wd_ref.as_ref().or(original.as_ref());
    let wd = match wd_target {
        Some(r) => Some((
            r.dir.clone(),
            weight_distance(&ckpt.unet, &r.unet)
                .map_err(|e| format!("{} vs {}: {e}", ckpt.dir.display(), r.dir.display()))?,
        )),
        None => None,
    };
    let c_f = forgotten_class.map(|c| {
        let name = suite
            .probe
            .classifier
            .as_ref()
            .and_then(|k| k.config.class_names.get(c).cloned())
            .unwrap_or_default();
        format!("c_f = {c} ({name}; from {class_note})")
    });
    print_report(
        &args.checkpoint,
        &data_line,
        c_f.as_deref(),
        &eval,
        baseline.as_ref(),
        wd.as_ref(),
    );
    if let Some(c) = &caveat {
        println!("UNINFORMATIVE: {c}");
    }
    println!("evaluated in {:.1} s", clock.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let record = serde_json::json!({
            "checkpoint": args.checkpoint,
            "checkpoint_sha256": ckpt.weights_sha256,
            "data": data_line,
            "forgotten_class": forgotten_class,
            "evaluation": eval,
            "labels": labels(&eval),
            "original": args.original,
            "baseline": baseline,
            "weight_distance": wd.as_ref().map(|(p, w)| serde_json::json!({"to": p, "distance": w})),
        });
        let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
        lethe::util::atomic_write(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The class setting's sampler for the guidance check on `checked`, if guidance applies.
fn guided_sampler(
    args: &EvalArgs,
    checked: &Checkpoint,
    guidance: f32,
    steps: usize,
) -> Option<SamplerSpec> {
    let class = args.forget_class?;
    (checked.config.num_class_embeds.is_some() && checked.config.lethe_null_class.is_some()).then(
        || SamplerSpec {
            class: Some(class),
            guidance,
            ..SamplerSpec::new(args.sampler, steps)
        },
    )
}

fn guidance_probe<'a>(
    checked: &'a Checkpoint,
    suite: &'a Suite,
    sampler: &'a SamplerSpec,
    args: &EvalArgs,
    device: &'a burn::tensor::Device,
) -> Option<GuidanceProbe<'a>> {
    Some(GuidanceProbe {
        job: SampleJob {
            model: &checked.unet,
            schedule: &checked.schedule,
            spec: sampler,
            shape: checked.config.image_shape(),
            null_class: checked.config.lethe_null_class,
            device,
        },
        classifier: suite.probe.classifier.as_ref()?,
        seed: args.seed,
    })
}

/// `--guidance`, or the weight the guidance check chooses on `checked` (printed with why).
fn resolve_guidance(
    args: &EvalArgs,
    checked: &Checkpoint,
    suite: &Suite,
    steps: usize,
    device: &burn::tensor::Device,
) -> Result<f32, String> {
    let default = GUIDANCE_CANDIDATES[0];
    if let Some(w) = args.guidance {
        return Ok(w);
    }
    let Some(sampler) = guided_sampler(args, checked, default, steps) else {
        return Ok(default);
    };
    let Some(probe) = guidance_probe(checked, suite, &sampler, args, device) else {
        return Ok(default);
    };
    let (chosen, checks) = probe.choose()?;
    println!(
        "guidance: auto, checked on {}: {}",
        checked.dir.display(),
        summarize(chosen, &checks)
    );
    Ok(chosen)
}

/// Why the forgetting rates cannot show forgetting, judged on `checked`'s evaluation
/// `baseline` (the original's, else this checkpoint's), with a guidance that works.
fn caveat(
    args: &EvalArgs,
    checked: &Checkpoint,
    baseline: &Evaluation,
    (suite, guidance, steps): (&Suite, f32, usize),
    device: &burn::tensor::Device,
) -> Result<Option<String>, String> {
    let setting = match args.forget_class {
        Some(class) => Setting::Class {
            class,
            conditioned: checked.config.num_class_embeds.is_some(),
            classes: checked.config.num_real_classes().unwrap_or(10),
        },
        None => Setting::DataPoint,
    };
    let Some(mut why) = uninformative(baseline, &setting) else {
        return Ok(None);
    };
    if args.original.is_none() {
        why = format!(
            "(no --original: checked on {}) {why}",
            checked.dir.display()
        );
    }
    let sampler = guided_sampler(args, checked, guidance, steps);
    if let Some(probe) = sampler
        .as_ref()
        .and_then(|s| guidance_probe(checked, suite, s, args, device))
    {
        let (best, checks) = probe.choose()?;
        why += &match checks.iter().find(|c| c.passes()) {
            Some(c) => format!("; try --guidance {best} ({})", c.describe()),
            None => format!(
                "; no guidance weight makes it draw the class ({})",
                summarize(best, &checks)
            ),
        };
    }
    Ok(Some(why))
}

/// (name, value, baseline value, how to show it) of every metric.
type Row = (&'static str, Option<f64>, Option<f64>, Format);

#[derive(Clone, Copy)]
enum Format {
    Percent,
    Plain,
}

/// Every metric of the table: its name, how to read it from an evaluation, how to show it.
type Metric = (&'static str, fn(&Evaluation) -> Option<f64>, Format);

const METRICS: [Metric; 15] = [
    (
        "forget-copy rate",
        |e| Some(e.forget_copy_rate),
        Format::Percent,
    ),
    (
        "nearest-forget L2",
        |e| Some(e.nearest_forget_distance),
        Format::Plain,
    ),
    (
        "forgotten-class rate",
        |e| e.forgotten_class_rate,
        Format::Percent,
    ),
    ("P(y=c_f)", |e| e.forgotten_class_probability, Format::Plain),
    ("entropy H (nats)", |e| e.mean_entropy, Format::Plain),
    ("confident kept", |e| e.confident_kept_rate, Format::Percent),
    ("PUL (%)", |e| e.pul, Format::Plain),
    ("FID", |e| e.fid, Format::Plain),
    (
        "FID of real images (floor at this N)",
        |e| e.fid_real_floor,
        Format::Plain,
    ),
    ("KID (unbiased)", |e| e.kid, Format::Plain),
    ("precision", |e| e.precision, Format::Plain),
    ("recall", |e| e.recall, Format::Plain),
    ("IS", |e| e.inception_score, Format::Plain),
    (
        "ELBO forget (bits/dim)",
        |e| e.elbo_forget_bpd,
        Format::Plain,
    ),
    (
        "ELBO retain (bits/dim)",
        |e| e.elbo_retain_bpd,
        Format::Plain,
    ),
];

fn rows(e: &Evaluation, b: Option<&Evaluation>) -> Vec<Row> {
    METRICS
        .iter()
        .map(|&(name, value, format)| {
            // PUL is itself relative to the original: no baseline value.
            let base = if name.starts_with("PUL") {
                None
            } else {
                b.and_then(value)
            };
            (name, value(e), base, format)
        })
        .collect()
}

/// Every metric's label with its provenance, keyed by the table's names.
fn labels(e: &Evaluation) -> serde_json::Value {
    let key = |name: &str| match name {
        "FID" | "precision" | "recall" | "IS" => name.to_string(),
        n if n.starts_with("FID of real") => "FID".to_string(),
        n if n.starts_with("ELBO") => "ELBO".to_string(),
        n => n.to_string(),
    };
    let map: serde_json::Map<String, serde_json::Value> = rows(e, None)
        .into_iter()
        .filter(|r| r.1.is_some())
        .map(|(name, ..)| (name.to_string(), e.label(&key(name)).into()))
        .collect();
    map.into()
}

fn show(v: Option<f64>, f: Format) -> String {
    match (v, f) {
        (None, _) => "—".into(),
        (Some(v), Format::Percent) => format!("{:.1}%", 100.0 * v),
        (Some(v), Format::Plain) => format!("{v:.4}"),
    }
}

fn print_report(
    checkpoint: &Path,
    data_line: &str,
    c_f: Option<&str>,
    e: &Evaluation,
    baseline: Option<&Evaluation>,
    wd: Option<&(PathBuf, WeightDistance)>,
) {
    println!("checkpoint  {}", checkpoint.display());
    println!("data        {data_line}");
    if let Some(c) = c_f {
        println!("forgotten   {c}");
    }
    let header = if baseline.is_some() {
        "| metric | value | original |"
    } else {
        "| metric | value |"
    };
    println!("{header}");
    println!(
        "{}",
        if baseline.is_some() {
            "|---|---:|---:|"
        } else {
            "|---|---:|"
        }
    );
    for (name, value, base, format) in rows(e, baseline) {
        if value.is_none() && base.is_none() {
            continue;
        }
        let mut line = format!("| {name} | {} |", show(value, format));
        if baseline.is_some() {
            line += &format!(" {} |", show(base, format));
        }
        println!("{line}");
    }
    if let Some((to, w)) = wd {
        println!(
            "weight distance to {}: L2 {:.4}, relative {:.5} ({} parameters; most moved: {})",
            to.display(),
            w.l2,
            w.relative,
            w.parameters,
            w.most_changed.as_ref().map_or("—".into(), |(n, m)| format!(
                "{n} by {:.4} of its norm",
                m
            ))
        );
    }
    println!("how:");
    println!("  forgetting  {}", e.provenance);
    for name in ["FID", "IS", "ELBO"] {
        let label = e.label(name);
        if !label.contains("not computed") && (name != "FID" || e.fid.is_some()) {
            println!("  {label}");
        }
    }
    let inception = e
        .how
        .as_ref()
        .and_then(|h| h.feature_net.as_deref())
        .is_some_and(|net| net.starts_with("inception"));
    println!(
        "  FID, KID: {}",
        if inception {
            "on pytorch-fid's Inception-v3 pool3 features (2048-d; comparable with pytorch-fid at the same N and reference)"
        } else {
            "on the classifier's penultimate features (not Inception's; not comparable with Inception FIDs)"
        }
    );
    println!(
        "  KID: unbiased MMD², cubic kernel, as many reference vectors as samples; precision/recall: k={} nearest-neighbour supports likewise; IS: {} splits",
        lethe::metrics::suite::PR_K,
        lethe::metrics::suite::IS_SPLITS
    );
    println!(
        "  ELBO: DDPM variational bound (improved-diffusion's terms), 8-bit data; higher = less likely"
    );
}
