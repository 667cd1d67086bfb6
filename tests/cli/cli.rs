//! The `lethe` binary end to end, as a user runs it.

use crate::common;

use std::path::Path;
use std::process::Command;

pub(crate) fn lethe(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        // Reference features are cached here, not in the user's cache.
        .env(
            "LETHE_CACHE_DIR",
            std::env::temp_dir().join("lethe-test-cache"),
        )
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("lethe runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tiny_checkpoint(dir: &Path) {
    common::tiny_checkpoint(dir);
}

#[test]
fn data_reports_the_bundled_sets() {
    let (ok, out, err) = lethe(&[
        "data",
        "assets/data/mnist-10k-images-idx3-ubyte.gz",
        "assets/data/tshirt.png",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("loaded 10001 image(s)"), "{out}");
    assert!(out.contains("label 1 ") && out.contains("1127"), "{out}");
}

#[test]
fn data_fails_when_nothing_loads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"garbage").unwrap();
    let (ok, out, err) = lethe(&["data", bad.to_str().unwrap()]);
    assert!(!ok, "exit status must be non-zero");
    assert!(
        out.contains("broken.png") || err.contains("broken.png"),
        "{out}{err}"
    );
}

#[test]
fn sample_writes_a_grid_and_files_and_inspect_shows_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    tiny_checkpoint(&ckpt);
    let grid = dir.path().join("grid.png");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "4",
        "--steps",
        "3",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let img = image::open(&grid).unwrap();
    assert!(img.width() > 16 && img.height() > 16);

    let out_dir = dir.path().join("samples");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "3",
        "--steps",
        "2",
        "--class",
        "3",
        "--guidance",
        "2",
        "--sampler",
        "ddpm",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 3);

    let (ok, out, err) = lethe(&["inspect", ckpt.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("lethe_created_by") && out.contains("test fixture"),
        "{out}"
    );
    assert!(
        out.contains("class 11 is the classifier-free-guidance null class"),
        "{out}"
    );
}

#[test]
fn sample_in_bf16_says_so_and_training_in_f16_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    tiny_checkpoint(&ckpt);
    let grid = dir.path().join("grid.png");
    let (ok, out, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--n",
        "2",
        "--steps",
        "2",
        "--precision",
        "bf16",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("DDIM-2,uncond,bf16"), "{out}");
    assert!(grid.exists());

    let (ok, out, err) = lethe(&[
        "unlearn",
        "--config",
        "examples/unlearn-siss.toml",
        "--precision",
        "f16",
    ]);
    assert!(!ok, "f16 training must be refused: {out}");
    assert!(
        err.contains("--precision") && err.contains("loss scaling"),
        "{err}"
    );
}

#[test]
fn sample_rejects_an_out_of_range_class_and_a_missing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    tiny_checkpoint(&ckpt);
    let grid = dir.path().join("g.png");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--class",
        "11",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("--class 11 is out of range"), "{err}");
    let (ok, _, err) = lethe(&[
        "sample",
        "--checkpoint",
        "/nope",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("/nope"), "{err}");
}

#[test]
fn every_example_experiment_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")).unwrap()
    {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("unlearn-") {
            lethe::experiment::ExperimentConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        } else if name.starts_with("attack-") {
            lethe::attack::dimra::AttackConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        } else if name.starts_with("sweep-") {
            // Paths in sweep files are relative to the repository root, like the configs':
            // `lethe` runs there.
            let (ok, out, err) = lethe(&["sweep", "show", &format!("examples/{name}")]);
            assert!(
                ok && out.contains(" trials → runs/sweep-"),
                "{name}: {out}\n{err}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} example configs");
}

/// A tiny experiment on disk: checkpoint, retain folder with two classes, forget image.
/// A DiMRA attack config in `dir` (`attack.toml`) on `checkpoint`, fine-tuning on
/// [`tiny_experiment`]'s retain images and probing for its forget image, with a tiny
/// evaluation; `keys` adds the attack's length and schedule (`steps = 2` …).
pub(crate) fn tiny_attack(dir: &Path, checkpoint: &Path, keys: &str) -> std::path::PathBuf {
    let text = format!(
        r#"checkpoint = "{c}"
runs_dir = "{d}/runs"
auxiliary = ["{d}/retain"]
forgotten_images = ["{d}/forget.png"]
forgotten_label = 10
batch_size = 4
{keys}
[eval]
samples = 2
grid = 2
sampler_steps = 2
classifier = ""
"#,
        c = checkpoint.display(),
        d = dir.display()
    );
    let path = dir.join("attack.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn tiny_experiment(dir: &Path) -> std::path::PathBuf {
    tiny_checkpoint(&dir.join("ckpt"));
    for i in 0..3u32 {
        common::write_png(
            &dir.join("retain/0").join(format!("{i}.png")),
            move |x, _| {
                if (x + i) % 4 < 2 { 220 } else { 30 }
            },
        );
        common::write_png(
            &dir.join("retain/1").join(format!("{i}.png")),
            move |_, y| {
                if (y + i) % 4 < 2 { 220 } else { 30 }
            },
        );
    }
    common::write_png(&dir.join("forget.png"), |x, y| {
        if (x + y) % 2 == 0 { 255 } else { 0 }
    });
    let config = format!(
        r#"checkpoint = "{d}/ckpt"
runs_dir = "{d}/runs"
[data]
retain = ["{d}/retain"]
forget = ["{d}/forget.png"]
forget_label = 10
[method]
name = "siss"
lambda = 0.5
[train]
steps = 2
batch_size = 4
[eval]
every = 1
samples = 2
grid = 2
sampler_steps = 2
classifier = ""
"#,
        d = dir.display()
    );
    let path = dir.join("siss.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn unlearn_then_attack_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_experiment(tmp.path());
    let (ok, out, err) = lethe(&[
        "unlearn",
        "--config",
        config.to_str().unwrap(),
        "--name",
        "u",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("run directory"), "{out}");
    assert!(out.contains("s/step"), "{out}");
    let run = tmp.path().join("runs/u");
    assert!(run.join("checkpoints/final/unet/config.json").exists());
    let attack_path = tiny_attack(
        tmp.path(),
        &run.join("checkpoints/final"),
        "steps = 2\nevaluate_every = 1",
    );
    let (ok, out, err) = lethe(&["attack", "--config", attack_path.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("DiMRA relearning"), "{out}");
    // One row per probe: the start and after steps 1 and 2.
    let rows = out
        .lines()
        .skip_while(|l| !l.contains("DiMRA"))
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(rows, 3, "{out}");
    assert!(
        tmp.path()
            .join("runs/dimra-u/checkpoints/step_00001")
            .exists()
    );

    // `lethe runs --json` lists both runs from their records, as the GUI reads them.
    let runs_dir = tmp.path().join("runs");
    let (ok, out, err) = lethe(&["runs", runs_dir.to_str().unwrap(), "--json"]);
    assert!(ok, "{out}\n{err}");
    let records: serde_json::Value = serde_json::from_str(&out).unwrap();
    let records = records.as_array().unwrap();
    let mut names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dimra-u", "u"], "{out}");
    let u = records.iter().find(|r| r["name"] == "u").unwrap();
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        u["info"], run_json,
        "the record carries run.json as written"
    );
    assert_eq!(u["info"]["status"], "finished");
    assert_eq!(u["info"]["steps_done"], 2);
    assert!(u["knobs"].as_str().unwrap().contains("lambda=0.5"), "{u}");
    // Every evaluation of metrics.jsonl is there: the original's and one per step.
    let eval_lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "eval")
        .collect();
    assert_eq!(eval_lines.len(), 3);
    assert_eq!(u["baseline"], eval_lines[0]["evaluation"]);
    assert_eq!(u["evaluations"].as_array().unwrap().len(), 2);
    assert_eq!(u["last"][0], 2);
    assert_eq!(u["last"][1], eval_lines[2]["evaluation"]);
    // The table names both runs with their method and steps.
    let (ok, out, err) = lethe(&["runs", runs_dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("| u | SISS |") && out.contains("| 2/2 |"),
        "{out}"
    );
    assert!(
        out.contains("| dimra-u | Naive deletion (finetune) |"),
        "{out}"
    );
    // A directory that is not there is an error naming it.
    let (ok, _, err) = lethe(&["runs", tmp.path().join("nope").to_str().unwrap()]);
    assert!(!ok && err.contains("nope"), "{err}");

    // An unknown top-level key is refused with its name, though the header is flattened.
    std::fs::write(
        &attack_path,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[data]", "bogus_key = 1\n[data]"),
    )
    .unwrap();
    let (ok, _, err) = lethe(&["unlearn", "--config", attack_path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bogus_key"), "{err}");
    // A config with a bad value fails with the key named.
    std::fs::write(
        &attack_path,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("lambda = 0.5", "lambda = 2.0"),
    )
    .unwrap();
    let (ok, _, err) = lethe(&["unlearn", "--config", attack_path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("method.lambda"), "{err}");
}

#[test]
fn fid_compares_feature_files_and_image_sets_and_names_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("fid.json");
    // Features on one side, pytorch-fid-style statistics on the other (fixture of golden_fid.rs).
    let (ok, out, err) = lethe(&[
        "fid",
        "tests/fixtures/fid/wellconditioned_a.npy",
        "tests/fixtures/fid/stats_b.npz",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("= 27.5298"), "{out}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!((record["fid"].as_f64().unwrap() - 27.5298).abs() < 1e-3);
    // The same image set against itself through the bundled classifier: distance ~0, and the
    // label names the feature network.
    let (ok, out, err) = lethe(&[
        "fid",
        "assets/data/tshirts-1k-images-idx3-ubyte.gz",
        "assets/data/tshirts-1k-images-idx3-ubyte.gz",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("FID[lethe-mnist11@") && out.contains("N=1000 vs 1000] = "),
        "{out}"
    );
    // The full-precision value (the printed one is rounded to 6 decimals, so round-off of
    // -6e-7 prints as -0.000001).
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let value = record["fid"].as_f64().unwrap();
    assert!(value.abs() < 1e-6, "{value}\n{out}");
    // Bad inputs: the file and the reason.
    let (ok, _, err) = lethe(&["fid", "nope.npz", "tests/fixtures/fid/stats_b.npz"]);
    assert!(!ok && err.contains("nope.npz"), "{err}");
    let (ok, _, err) = lethe(&[
        "fid",
        "tests/fixtures/fid/near_collinear_a.npy",
        "tests/fixtures/fid/stats_b.npz",
    ]);
    assert!(
        !ok && err.contains("different dimensions (16 and 64)"),
        "{err}"
    );
}

/// `--feature-net inception:PATH` names the weights file when it cannot be used: missing, not
/// the Inception's tensors, or a choice that is neither `classifier` nor `inception:PATH`.
#[test]
fn fid_with_the_inception_names_a_bad_weights_file() {
    let images = "tests/fixtures/inception/a";
    let (ok, _, err) = lethe(&["fid", images, images, "--feature-net", "inception:nope.pth"]);
    assert!(!ok && err.contains("nope.pth"), "{err}");
    // A real torch.save file that holds other tensors.
    let (ok, _, err) = lethe(&[
        "fid",
        images,
        images,
        "--feature-net",
        "inception:tests/fixtures/inception/tiny_legacy.pth",
    ]);
    assert!(
        !ok && err.contains("tiny_legacy.pth") && err.contains("Conv2d_1a_3x3.conv.weight"),
        "{err}"
    );
    let (ok, _, err) = lethe(&["fid", images, images, "--feature-net", "resnet"]);
    assert!(
        !ok && err.contains("`classifier` or `inception:PATH`"),
        "{err}"
    );
}

/// A recipe in the SISS code base's YAML key names runs as written: its knobs reach the
/// resolved config in the run directory, and the keys Lethe has no use for are listed.
#[test]
fn a_siss_style_yaml_config_runs_with_its_knobs() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_experiment(tmp.path());
    let yaml = format!(
        "checkpoint_path: {d}/ckpt\noutput_dir: {d}/runs\nrandom_seed: 46\n\
         data:\n  retain: [{d}/retain]\n  forget: [{d}/forget.png]\n\
         deletion:\n  class_label: 10\n  loss_fn: importance_sampling_with_mixture\n  scaling_norm: 3\n  \
         eta: 1e-3\n  loss_params:\n    lambd: 0.25\n\
         train_batch_size: 2\ngradient_accumulation_steps: 2\noptimizer:\n  lr: 2e-5\n\
         lr_scheduler: constant\ntraining_steps: 2\nsampling_steps: 1\neval_images: 2\n\
         pipeline:\n  num_inference_steps: 2\nproject_name: mnist-tshirt-test\n\
         eval:\n  grid: 2\n  classifier: ''\n",
        d = tmp.path().display()
    );
    let path = tmp.path().join("delete.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, out, err) = lethe(&["unlearn", "--config", path.to_str().unwrap(), "--name", "y"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("ignored project_name"), "{out}");
    assert!(
        out.contains("ignored deletion.eta (not a knob of siss)"),
        "{out}"
    );
    let resolved: toml::Value =
        toml::from_str(&std::fs::read_to_string(tmp.path().join("runs/y/config.toml")).unwrap())
            .unwrap();
    assert_eq!(resolved["method"]["name"].as_str(), Some("siss"));
    assert_eq!(resolved["method"]["lambda"].as_float(), Some(0.25));
    assert_eq!(resolved["method"]["scaling_norm"].as_float(), Some(3.0));
    assert_eq!(resolved["train"]["batch_size"].as_integer(), Some(4));
    assert_eq!(resolved["train"]["seed"].as_integer(), Some(46));
    assert_eq!(resolved["train"]["learning_rate"].as_float(), Some(2e-5));
    assert_eq!(resolved["data"]["forget_label"].as_integer(), Some(10));
    // A YAML knob out of range is refused naming Lethe's key and the SISS key that set it.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("lambd: 0.25", "lambd: 1.5"),
    )
    .unwrap();
    let (ok, _, err) = lethe(&["unlearn", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("delete.yaml") && err.contains("deletion.loss_params.lambd"),
        "{err}"
    );
}

#[test]
fn eval_reports_every_metric_with_provenance_and_a_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("eval.json");
    // The demo model against itself as the original: a quick pipeline, but every metric.
    let (ok, out, err) = lethe(&[
        "eval",
        "--preset",
        "fast",
        "--samples",
        "12",
        "--steps",
        "3",
        "--elbo-timesteps",
        "3",
        "--original",
        "assets/demo-model",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for row in [
        "| forget-copy rate |",
        "| P(y=c_f) |",
        "| entropy H (nats) |",
        "| FID |",
        "| precision |",
        "| FID of real images (floor at this N) |",
        "| ELBO forget (bits/dim) |",
        "| ELBO retain (bits/dim) |",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
    // 12 samples are too few for a 10-split score: it is left out, not shown as 1.0.
    assert!(!out.contains("| IS |"), "{out}");
    assert!(out.contains("c_f = 10 (T-shirt"), "{out}");
    assert!(
        out.contains("weight distance to assets/demo-model: L2 0.0000"),
        "{out}"
    );
    assert!(out.contains("FID[lethe-mnist11@"), "{out}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let e = &record["evaluation"];
    let how = &e["how"];
    assert_eq!(how["samples"], 12);
    assert_eq!(how["sampler"], "DDIM-3,uncond");
    assert_eq!(how["preset"], "fast (custom)");
    assert_eq!(how["reference"], "10000 retain images");
    assert_eq!(how["feature_net_sha256"].as_str().unwrap().len(), 64);
    // The same model with the same seeds: the baseline column is the same numbers.
    for key in ["fid", "elbo_forget_bpd", "forgotten_class_probability"] {
        assert!(e[key].as_f64().is_some(), "{key}");
        assert_eq!(e[key], record["baseline"][key], "{key}");
    }
    assert_eq!(record["weight_distance"]["distance"]["l2"], 0.0);
    let fid_label = record["labels"]["FID"].as_str().unwrap();
    assert!(
        fid_label.contains("N=12, DDIM-3,uncond, seed 0, vs 10000 retain images"),
        "{fid_label}"
    );
}

#[test]
fn export_samples_writes_pngs_and_statistics_that_lethe_fid_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("export");
    let (ok, out, err) = lethe(&[
        "export-samples",
        "--n",
        "6",
        "--steps",
        "2",
        "--reference",
        "assets/data/tshirts-1k-images-idx3-ubyte.gz",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote 6 PNGs"), "{out}");
    let pngs = std::fs::read_dir(out_dir.join("samples")).unwrap().count();
    assert_eq!(pngs, 6);
    let provenance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("provenance.json")).unwrap())
            .unwrap();
    assert_eq!(provenance["sampler"], "DDIM-2,uncond");
    assert_eq!(provenance["reference_images"], 1000);
    // The statistics file and the feature rows it came from give the same Gaussian.
    let (a, b) = (out_dir.join("stats.npz"), out_dir.join("features.npy"));
    let json = dir.path().join("fid.json");
    let (ok, _, err) = lethe(&[
        "fid",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let fid: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 6 vectors in 128-d: rank-deficient covariances, whose zero eigenvalues' round-off
    // (~1e-12 of a trace near 1e3) enters through square roots; 1e-3 is still ~1e-6 of it.
    assert!(fid["fid"].as_f64().unwrap().abs() < 1e-3, "{fid}");
    // Samples against the T-shirts: a real, positive distance.
    let (ok, out, err) = lethe(&[
        "fid",
        a.to_str().unwrap(),
        out_dir.join("reference_stats.npz").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("FID["), "{out}");
}

/// `lethe doctor` on the CPU (the check against itself) passes; the test hook that perturbs
/// one parameter's gradient on the checked side makes it fail, naming that tensor.
#[test]
fn doctor_passes_on_the_cpu_and_names_a_perturbed_gradient() {
    let (ok, out, err) = lethe(&["doctor", "--backend", "cpu", "--repeats", "0"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("PASS"), "{out}");
    assert!(out.contains("SISS training step"), "{out}");

    let target = "up_blocks.1.resnets.0.conv1.weight";
    let (ok, out, err) = lethe(&[
        "doctor",
        "--backend",
        "cpu",
        "--repeats",
        "0",
        "--perturb-gradient",
        target,
    ]);
    assert!(!ok, "a perturbed gradient must fail the check\n{out}");
    let verdict = out.lines().last().unwrap_or_default();
    assert!(
        verdict.starts_with("FAIL") && verdict.contains(target),
        "the verdict names the tensor: {verdict}\n{err}"
    );
    assert!(err.contains("self-check failed"), "{err}");
}

/// The wgpu backend (lavapipe on CI, where `.ci/run` installs it) agrees with the CPU on the
/// demo model within the doctor's fp32 tolerances.
#[test]
fn doctor_passes_on_wgpu() {
    let (ok, out, err) = lethe(&[
        "doctor",
        "--backend",
        "wgpu",
        "--repeats",
        "0",
        "--batch",
        "4",
    ]);
    assert!(
        out.contains("wgpu adapter 0:"),
        "an adapter is listed\n{out}\n{err}"
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.lines().last().unwrap_or_default().starts_with("PASS"),
        "{out}"
    );
}

#[test]
fn a_killed_run_shows_as_interrupted_and_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_experiment(tmp.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "[train]\nsteps = 2",
            "[train]\nsteps = 60\nsave_state_every = 5\nema_decay = 0.9",
        )
        .replace("every = 1", "every = 0");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let (ok, out, err) = lethe(&["unlearn", "--config", config, "--name", "whole"]);
    assert!(ok, "{out}\n{err}");

    // The same run, killed (SIGKILL) once it has saved a state past step 0.
    let runs = tmp.path().join("runs");
    let cut = runs.join("cut");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["unlearn", "--config", config, "--name", "cut"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let saved_step = |dir: &Path| -> Option<u64> {
        let text = std::fs::read_to_string(dir.join("resume/state.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
    };
    let started = std::time::Instant::now();
    loop {
        if saved_step(&cut).is_some_and(|s| s >= 5) {
            child.kill().unwrap();
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 300, "no state saved in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.wait().unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        info["status"], "running",
        "run.json as the killed process left it"
    );

    // Listed as interrupted (no process holds its lock), in the table and in the JSON.
    let (ok, out, err) = lethe(&["runs", runs.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let row = out.lines().find(|l| l.starts_with("| cut |")).unwrap();
    assert!(row.contains("| interrupted |"), "{out}");
    let (_, json, _) = lethe(&["runs", runs.to_str().unwrap(), "--json"]);
    let records: serde_json::Value = serde_json::from_str(&json).unwrap();
    let record = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cut")
        .unwrap();
    assert_eq!(record["info"]["status"], "interrupted");

    // Resumed, it reaches the uninterrupted run's weights.
    let (ok, out, err) = lethe(&["unlearn", "--resume", cut.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["status"], "finished");
    assert_eq!(info["steps_done"], 60);
    let resumed_at = info["resumed_at"][0].as_u64().unwrap();
    assert!((5..60).contains(&resumed_at), "{info}");
    let load = |run: &str| {
        let ckpt = lethe::diffusion::checkpoint::load(
            &runs.join(run).join("checkpoints/final"),
            &burn::tensor::Device::flex(),
        )
        .unwrap();
        lethe::diffusion::checkpoint::parameter_values(&ckpt.unet)
    };
    let diff = load("whole")
        .iter()
        .zip(&load("cut"))
        .flat_map(|((_, _, a), (_, _, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "resumed weights differ by {diff}");

    // A finished run is not resumed; a missing one is named.
    let (ok, _, err) = lethe(&["unlearn", "--resume", cut.to_str().unwrap()]);
    assert!(!ok && err.contains("the run is finished"), "{err}");
    let missing = runs.join("nope");
    let (ok, _, err) = lethe(&["unlearn", "--resume", missing.to_str().unwrap()]);
    assert!(!ok && err.contains("nope"), "{err}");
}

#[test]
fn accumulation_reports_peak_memory_and_a_batch_beyond_memory_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_experiment(tmp.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let accumulated = text.replace(
        "batch_size = 4\n[eval]",
        "batch_size = 4\ngrad_accumulation = 2\n[eval]",
    );
    // `lethe unlearn` on the config written as `text`, into run directory `runs/<name>`.
    let unlearn = |text: &str, name: &str| {
        std::fs::write(&config, text).unwrap();
        lethe(&[
            "unlearn",
            "--config",
            config.to_str().unwrap(),
            "--name",
            name,
        ])
    };
    let (ok, out, err) = unlearn(&accumulated, "a");
    assert!(ok, "{out}\n{err}");
    let all = format!("{out}\n{err}");
    assert!(
        all.contains("memory: a training pass of 2 images needs about"),
        "the measured need of a micro-batch is said\n{all}"
    );
    assert!(all.contains("peak memory     process"), "{all}");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("runs/a/run.json")).unwrap())
            .unwrap();
    let peak = info["peak_memory"]["process_peak_rss_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        peak > 1 << 20,
        "a run's resident peak is above 1 MiB: {info}"
    );

    // A batch no machine holds: refused with the batch and the accumulation that fits (the OS
    // would kill the process instead of reporting it)…
    let (ok, out, err) = unlearn(
        &accumulated.replace(
            "batch_size = 4\ngrad_accumulation = 2",
            "batch_size = 100000000",
        ),
        "b",
    );
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "{}: train.batch_size = 100000000 in one pass of 100000000 images needs about",
            config.display()
        )),
        "{err}"
    );
    assert!(err.contains("set train.grad_accumulation = "), "{err}");
    // …before any work (the original's evaluation takes minutes on a real model), and with
    // no run directory left behind (issue #30).
    assert!(!out.contains("evaluating the original"), "{out}");
    assert!(
        !tmp.path().join("runs/b").exists(),
        "a refused run leaves no directory"
    );
    // An accumulation that cannot split the batch is refused with its key.
    let (ok, _, err) = unlearn(
        &accumulated.replace("grad_accumulation = 2", "grad_accumulation = 5"),
        "c",
    );
    assert!(!ok && err.contains("train.grad_accumulation = 5"), "{err}");
    // More sampler steps than the model has timesteps: refused by key, with the file, before
    // a run directory exists (it started the run and failed at the first evaluation).
    let (ok, _, err) = unlearn(
        &accumulated.replace("sampler_steps = 2", "sampler_steps = 100000"),
        "d",
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "{}: eval.sampler_steps = 100000 is more than the 1000 training timesteps",
            config.display()
        )),
        "{err}"
    );
    assert!(!tmp.path().join("runs/d").exists(), "{err}");
}

/// `lethe bench` and `lethe bench ops` time any checkpoint (issue #29): each row with the
/// arithmetic it does, and the profile lists the checkpoint's attention blocks; a directory
/// that is not a checkpoint is refused by name.
#[test]
fn bench_times_a_checkpoint_and_profiles_its_attention() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path());
    let ckpt = dir.path().to_str().unwrap();
    let sizes = ["--train-batch", "2", "--sample-batch", "2", "--runs", "1"];
    let (ok, out, err) = lethe(
        &[
            &["bench", "--checkpoint", ckpt, "--backend", "cpu"][..],
            &sizes,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("(its weights)"), "{out}");
    for what in ["training step (fwd+bwd+Adam)", "sampling forward (no grad)"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("| {what} | 2 |")))
            .unwrap_or_else(|| panic!("no {what} row:\n{out}"));
        // GFLOP/s: the FLOPs counted off the model, over the time.
        let rate: f64 = row.split('|').nth(7).unwrap().trim().parse().unwrap();
        assert!(rate > 0.0, "{row}");
    }
    let (ok, out, err) = lethe(&[
        "bench",
        "ops",
        "--checkpoint",
        ckpt,
        "--batch",
        "2",
        "--runs",
        "1",
        "--backend",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("| attention block (1 head) 16ch @4×4 |"),
        "{out}"
    );
    assert!(out.contains("GFLOP per step"), "{out}");
    let missing = dir.path().join("not-a-checkpoint");
    let missing = missing.to_str().unwrap();
    let (ok, _, err) = lethe(&["bench", "--checkpoint", missing, "--runs", "1"]);
    assert!(
        !ok && err.contains(missing) && err.contains("not a checkpoint directory"),
        "{err}"
    );
}

/// `lethe pretrain` with a batch no machine holds is refused by its key, naming the file,
/// before its out_dir exists (issue #30: it created the directory and ground on silently).
#[test]
fn a_pretrain_batch_beyond_memory_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pretrain-demo.toml");
    let text = std::fs::read_to_string(demo)
        .unwrap()
        .lines()
        .map(|line| match line {
            l if l.starts_with("out_dir =") => format!("out_dir = {:?}", out_dir.to_str().unwrap()),
            l if l.starts_with("batch_size =") => "batch_size = 100000000".to_string(),
            l => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = tmp.path().join("pretrain.toml");
    std::fs::write(&config, text).unwrap();
    let (ok, out, err) = lethe(&["pretrain", "--config", config.to_str().unwrap()]);
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "{}: train.batch_size = 100000000 needs about",
            config.display()
        )),
        "{err}"
    );
    assert!(err.contains("lower train.batch_size to at most "), "{err}");
    assert!(!out_dir.exists(), "a refused pretrain leaves no out_dir");
}
