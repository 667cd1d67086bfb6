//! Behaviour of sampling and pretraining on tiny models.

use crate::common;

use burn::tensor::Device;
use lethe::diffusion::precision::Precision;
use lethe::diffusion::sampler::{ClippedEps, SampleJob, SamplerKind, SamplerSpec};
use lethe::diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use lethe::diffusion::unet::{UNet, UNetConfig};
use lethe::pretrain::{self, DataConfig, PretrainConfig, TrainConfig};

fn samples(model: &UNet, spec: &SamplerSpec, seed: u64, first: usize, count: usize) -> Vec<f32> {
    let device = Device::flex();
    let schedule = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
    let job = SampleJob {
        model,
        schedule: &schedule,
        spec,
        shape: [1, 8, 8],
        null_class: Some(11),
        device: &device,
    };
    job.run(seed, first, count, |_, _| {})
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn same_seed_gives_same_samples_whatever_the_batching() {
    let model = UNet::new(&common::tiny_config(), 0, &Device::flex()).unwrap();
    for spec in [
        SamplerSpec::ddim(10),
        SamplerSpec {
            kind: SamplerKind::Ddpm,
            steps: 10,
            eta: 0.0,
            class: Some(3),
            guidance: 2.0,
            clipped_eps: ClippedEps::Auto,
        },
        SamplerSpec {
            kind: SamplerKind::Ddim,
            steps: 10,
            eta: 1.0,
            class: None,
            guidance: 0.0,
            clipped_eps: ClippedEps::Rederive,
        },
    ] {
        let all = samples(&model, &spec, 7, 0, 4);
        assert_eq!(
            all,
            samples(&model, &spec, 7, 0, 4),
            "{}: rerun differs",
            spec.label()
        );
        // Samples 2..4 drawn on their own equal the tail of the 4-sample run.
        let tail = samples(&model, &spec, 7, 2, 2);
        let diff = all[2 * 64..]
            .iter()
            .zip(&tail)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-5,
            "{}: batching changed samples by {diff}",
            spec.label()
        );
        let other = samples(&model, &spec, 8, 0, 4);
        assert_ne!(
            all,
            other,
            "{}: a different seed gave the same samples",
            spec.label()
        );
    }
}

#[test]
fn guidance_needs_a_null_class_and_unconditional_models_refuse_a_class() {
    let device = Device::flex();
    let schedule = NoiseSchedule::from_config(&SchedulerConfig::default()).unwrap();
    let model = UNet::new(&common::tiny_config(), 0, &device).unwrap();
    let spec = SamplerSpec {
        class: Some(1),
        guidance: 1.0,
        ..SamplerSpec::ddim(2)
    };
    let job = SampleJob {
        model: &model,
        schedule: &schedule,
        spec: &spec,
        shape: [1, 8, 8],
        null_class: None,
        device: &device,
    };
    let err = job.run(0, 0, 1, |_, _| {}).unwrap_err();
    assert!(err.contains("null class"), "{err}");

    let uncond = UNet::new(
        &UNetConfig {
            num_class_embeds: None,
            lethe_null_class: None,
            ..common::tiny_config()
        },
        0,
        &device,
    )
    .unwrap();
    let job = SampleJob {
        model: &uncond,
        schedule: &schedule,
        spec: &spec,
        shape: [1, 8, 8],
        null_class: None,
        device: &device,
    };
    let err = job.run(0, 0, 1, |_, _| {}).unwrap_err();
    assert!(err.contains("unconditional"), "{err}");
}

fn tiny_pretrain(out: &std::path::Path, steps: usize) -> PretrainConfig {
    PretrainConfig {
        out_dir: out.to_path_buf(),
        continue_from: None,
        model: common::tiny_config(),
        scheduler: SchedulerConfig::default(),
        data: DataConfig {
            sources: vec![lethe::data::demo::asset(lethe::data::demo::TSHIRTS_IMAGES)],
            inject: vec![],
        },
        train: TrainConfig {
            steps,
            batch_size: 16,
            learning_rate: 2e-3,
            warmup_steps: 2,
            final_lr_fraction: 0.1,
            ema_decay: 0.9,
            cond_drop_prob: 0.1,
            grad_clip_norm: 1.0,
            seed: 5,
            checkpoint_every: 3,
            precision: Precision::F32,
        },
    }
}

fn run_quiet(config: &PretrainConfig, schedule_steps: usize) -> Vec<f32> {
    let mut losses = vec![];
    let mut on_step = |l: &pretrain::LogLine| losses.push(l.loss);
    pretrain::run_with_schedule(
        config,
        schedule_steps,
        lethe::backend::BackendChoice::Cpu,
        pretrain::Progress {
            on_step: &mut on_step,
        },
    )
    .unwrap();
    losses
}

#[test]
fn pretraining_lowers_the_loss_and_resumes_exactly() {
    let straight = tempfile::tempdir().unwrap();
    let losses = run_quiet(&tiny_pretrain(straight.path(), 30), 30);
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[25..].iter().sum::<f32>() / 5.0;
    assert!(
        last < 0.8 * first,
        "loss did not fall: first {first}, last {last}"
    );

    // 6 steps straight vs 3 + 3 resumed: identical EMA checkpoints.
    let a = tempfile::tempdir().unwrap();
    run_quiet(&tiny_pretrain(a.path(), 6), 6);
    let b = tempfile::tempdir().unwrap();
    run_quiet(&tiny_pretrain(b.path(), 3), 6);
    let resumed = run_quiet(&tiny_pretrain(b.path(), 6), 6);
    assert_eq!(
        resumed.len(),
        3,
        "the second invocation ran only the remaining steps"
    );
    let device = Device::flex();
    let wa = lethe::diffusion::checkpoint::load(&a.path().join("checkpoint"), &device).unwrap();
    let wb = lethe::diffusion::checkpoint::load(&b.path().join("checkpoint"), &device).unwrap();
    let va = lethe::diffusion::checkpoint::parameter_values(&wa.unet);
    let vb = lethe::diffusion::checkpoint::parameter_values(&wb.unet);
    for ((name, _, x), (_, _, y)) in va.iter().zip(&vb) {
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "{name} differs by {diff} after resuming");
    }
    assert_eq!(
        wa.metadata.get("lethe_steps").map(String::as_str),
        Some("6")
    );
}

#[test]
fn bf16_pretraining_lowers_the_loss_and_saves_f32_weights() {
    let f32_dir = tempfile::tempdir().unwrap();
    let f32_losses = run_quiet(&tiny_pretrain(f32_dir.path(), 1), 1);
    let bf16_dir = tempfile::tempdir().unwrap();
    let mut config = tiny_pretrain(bf16_dir.path(), 30);
    config.train.precision = Precision::Bf16;
    let losses = run_quiet(&config, 30);
    // Same weights and batch at step 1; only the forward's precision differs.
    let gap = (losses[0] - f32_losses[0]).abs() / f32_losses[0];
    assert!(
        gap > 0.0 && gap < 0.02,
        "first loss bf16 {} vs f32 {}",
        losses[0],
        f32_losses[0]
    );
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[25..].iter().sum::<f32>() / 5.0;
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
    let bytes = std::fs::read(
        bf16_dir
            .path()
            .join("checkpoint")
            .join(lethe::diffusion::checkpoint::UNET_WEIGHTS),
    )
    .unwrap();
    let saved = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in saved.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    }
    let saved_config = std::fs::read_to_string(bf16_dir.path().join("config.toml")).unwrap();
    assert!(
        saved_config.contains("precision = \"bf16\""),
        "{saved_config}"
    );

    // f16 cannot train; it is refused before the run directory is made.
    let refused_dir = bf16_dir.path().join("f16");
    let mut f16 = tiny_pretrain(&refused_dir, 1);
    f16.train.precision = Precision::F16;
    let err = pretrain::run(
        &f16,
        lethe::backend::BackendChoice::Cpu,
        pretrain::Progress {
            on_step: &mut |_| {},
        },
    )
    .unwrap_err();
    assert!(err.contains("loss scaling"), "{err}");
    assert!(!refused_dir.exists(), "a refused run left {refused_dir:?}");
}

fn max_weight_difference(a: &std::path::Path, b: &std::path::Path) -> f32 {
    let device = Device::flex();
    let wa = lethe::diffusion::checkpoint::load(&a.join("checkpoint"), &device).unwrap();
    let wb = lethe::diffusion::checkpoint::load(&b.join("checkpoint"), &device).unwrap();
    let va = lethe::diffusion::checkpoint::parameter_values(&wa.unet);
    let vb = lethe::diffusion::checkpoint::parameter_values(&wb.unet);
    va.iter()
        .zip(&vb)
        .flat_map(|((_, _, x), (_, _, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max)
}

#[test]
fn a_continued_run_carries_on_exactly_where_its_parent_stopped() {
    // With a constant learning rate, 4 steps straight equal 2 steps plus a 2-step run that
    // continues them: weights, Adam moments, EMA, random streams and step numbers carry over.
    let constant_lr = |mut c: PretrainConfig| {
        c.train.warmup_steps = 0;
        c.train.final_lr_fraction = 1.0;
        c
    };
    let straight = tempfile::tempdir().unwrap();
    run_quiet(&constant_lr(tiny_pretrain(straight.path(), 4)), 4);
    let parent = tempfile::tempdir().unwrap();
    run_quiet(&constant_lr(tiny_pretrain(parent.path(), 2)), 2);
    let child = tempfile::tempdir().unwrap();
    let mut continued = constant_lr(tiny_pretrain(child.path(), 2));
    continued.continue_from = Some(parent.path().to_path_buf());
    let losses = run_quiet(&continued, 2);
    assert_eq!(losses.len(), 2);
    let diff = max_weight_difference(straight.path(), child.path());
    assert!(diff < 1e-6, "continued run differs by {diff}");
    let meta =
        lethe::diffusion::checkpoint::load(&child.path().join("checkpoint"), &Device::flex())
            .unwrap()
            .metadata;
    assert_eq!(meta["lethe_steps"], "4");
    assert!(meta["lethe_parent"].contains("at step 2"), "{meta:?}");
    assert_eq!(pretrain::completed_steps(child.path()), 2);
    // A different recipe continues too, but the weights then differ from the straight run.
    let other = tempfile::tempdir().unwrap();
    let mut recipe = constant_lr(tiny_pretrain(other.path(), 2));
    recipe.continue_from = Some(parent.path().to_path_buf());
    recipe.train.cond_drop_prob = 0.9;
    run_quiet(&recipe, 2);
    assert!(max_weight_difference(straight.path(), other.path()) > 1e-6);
}

#[test]
fn continuing_a_run_of_another_architecture_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    run_quiet(&tiny_pretrain(parent.path(), 1), 1);
    let child = tempfile::tempdir().unwrap();
    let mut config = tiny_pretrain(child.path(), 1);
    config.continue_from = Some(parent.path().to_path_buf());
    config.model.layers_per_block += 1;
    let err = pretrain::run(
        &config,
        lethe::backend::BackendChoice::Cpu,
        pretrain::Progress {
            on_step: &mut |_| {},
        },
    )
    .unwrap_err();
    assert!(
        err.contains("[model]") && err.contains("continue_from"),
        "{err}"
    );
}

#[test]
fn resuming_with_a_changed_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run_quiet(&tiny_pretrain(dir.path(), 3), 3);
    let mut changed = tiny_pretrain(dir.path(), 6);
    changed.train.learning_rate = 1e-4;
    let mut on_step = |_: &pretrain::LogLine| {};
    let err = pretrain::run(
        &changed,
        lethe::backend::BackendChoice::Cpu,
        pretrain::Progress {
            on_step: &mut on_step,
        },
    )
    .unwrap_err();
    assert!(err.contains("different configuration"), "{err}");
}

#[test]
fn the_demo_config_in_code_is_the_one_the_demo_model_was_trained_with() {
    let path = lethe::data::demo::asset("examples/pretrain-demo.toml");
    let config = PretrainConfig::from_file(&path).unwrap();
    assert_eq!(
        config.model,
        UNetConfig::demo_mnist(),
        "UNetConfig::demo_mnist() (used by `lethe bench`) drifted from {}",
        path.display()
    );
}

/// `checkpoint_every = 0` saves only at the end (it divided by zero once).
#[test]
fn pretraining_with_checkpoint_every_zero_saves_at_the_end() {
    let out = tempfile::tempdir().unwrap();
    let mut config = tiny_pretrain(out.path(), 2);
    config.train.checkpoint_every = 0;
    assert_eq!(run_quiet(&config, 2).len(), 2);
    assert!(out.path().join("checkpoint/unet/config.json").exists());
}
