//! SISS-style YAML configs: the key names of the SISS code base (`claserken/SISS`,
//! `config/delete_*.yaml`: `deletion.loss_fn`, `deletion.loss_params.lambd`,
//! `deletion.scaling_norm`, `optimizer.lr`, `training_steps`, `random_seed`, …) translated
//! onto an [`ExperimentConfig`], so a recipe written for that code base runs in Lethe as
//! written.
//!
//! What cannot carry over is said, never guessed:
//! - SISS's data come from Hugging Face datasets (`dataset_all`, `dataset_deletion`) that
//!   Lethe cannot fetch, so the images are named in Lethe's own `data:` section
//!   (`retain`, `forget`, `forget_label`, `forget_class`); `deletion.class_label` becomes the
//!   forget images' label (or, with no forget images listed, the class to forget).
//! - Keys that only drive SISS's own infrastructure (Hydra `defaults`, wandb `logging`,
//!   metric modules, …) are ignored and listed, so the user sees what was dropped.
//! - A setting Lethe cannot honour (an LR schedule other than constant, warm-up, a loss that
//!   Lethe does not implement) is an error naming the key.
//!
//! Lethe's own top-level keys (`checkpoint`, `data`, `method`, `train`, `eval`, …) may be
//! mixed in; setting one value both ways is an error.

use serde_json::{Map, Value};

use super::ExperimentConfig;

/// A translated config and the SISS keys that were ignored (with the reason).
#[derive(Debug)]
pub struct SissYaml {
    pub config: ExperimentConfig,
    pub ignored: Vec<String>,
}

/// Keys that only drive the SISS code base's infrastructure; Lethe has its own for each.
const INFRASTRUCTURE: &[&str] = &[
    "defaults",
    "task",
    "project_name",
    "metrics",
    "subfolders",
    "dataset",
    "dataset_all",
    "dataset_deletion",
    "data_dir",
    "logging",
    "transform",
    "scheduler",
    "unet",
    "eval_batch_size",
    "dataloader_num_workers",
    "resume_from_checkpoint",
    "checkpoints_total_limit",
];

/// Lethe's own top-level keys, taken as they are.
const NATIVE: &[&str] = &[
    "checkpoint",
    "runs_dir",
    "name",
    "backend",
    "data",
    "method",
    "train",
    "eval",
];

/// `deletion.loss_fn` of the SISS code base → Lethe's `method.name`.
fn method_name(loss_fn: &str) -> Result<&'static str, String> {
    Ok(match loss_fn {
        "importance_sampling_with_mixture" => "siss",
        "double_forward_with_neg_del" => "siss-no-is",
        "naive_del" => "finetune",
        "simple_neg_del" => "neg-grad",
        "erasediff" => "erase-diff",
        "subscore_bernoulli" => {
            return Err(
                "deletion.loss_fn = subscore_bernoulli (a reviewer's ablation) is not implemented in Lethe"
                    .into(),
            );
        }
        "modified_noise_obj" => {
            return Err(
                "deletion.loss_fn = modified_noise_obj is named in SISS's configs but absent from its released code; Lethe does not implement it"
                    .into(),
            );
        }
        other => return Err(format!("deletion.loss_fn = {other} is not a SISS loss")),
    })
}

/// Parses a SISS-style YAML text into a validated config.
pub fn parse(text: &str) -> Result<SissYaml, String> {
    let root: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    translate(root)
}

/// Translates a SISS-style config already read into a value (e.g. composed from a Hydra
/// sweep's base and one trial's overrides) into a validated config.
pub fn translate(root: Value) -> Result<SissYaml, String> {
    let Value::Object(root) = root else {
        return Err("expected a mapping of keys at the top level".into());
    };
    if !root.contains_key("data") {
        return Err(
            "no `data:` section: SISS's datasets (dataset_all, dataset_deletion) are Hugging Face \
             datasets Lethe cannot fetch; name the images in `data: {retain: [...], forget: [...]}`"
                .into(),
        );
    }
    let mut t = Translation::default();
    for key in NATIVE {
        if let Some(v) = root.get(*key) {
            t.out.insert(key.to_string(), v.clone());
        }
    }
    for (key, value) in &root {
        t.top_level(key, value)?;
    }
    t.batch_size(&root)?;
    let config: ExperimentConfig =
        serde_json::from_value(Value::Object(std::mem::take(&mut t.out)))
            .map_err(|e| format!("after translating SISS keys: {e}"))?;
    config.validate().map_err(|e| t.name_origin(e))?;
    Ok(SissYaml {
        config,
        ignored: t.ignored,
    })
}

#[derive(Default)]
struct Translation {
    /// The config being built, in Lethe's key layout.
    out: Map<String, Value>,
    ignored: Vec<String>,
    /// (Lethe key, SISS key it came from), to name the SISS key in validation errors.
    origins: Vec<(String, String)>,
}

impl Translation {
    fn top_level(&mut self, key: &str, value: &Value) -> Result<(), String> {
        match key {
            k if NATIVE.contains(&k) => {}
            k if INFRASTRUCTURE.contains(&k) => {
                self.ignore(k, "SISS code-base infrastructure");
            }
            "checkpoint_path" => self.set("checkpoint", value, key)?,
            "output_dir" => self.set("runs_dir", value, key)?,
            "random_seed" => self.set("train.seed", value, key)?,
            "training_steps" => self.set_unless_null("train.steps", value, key)?,
            "sampling_steps" => self.set_unless_null("eval.every", value, key)?,
            "eval_images" => self.set_unless_null("eval.samples", value, key)?,
            "checkpointing_steps" => self.set_unless_null("eval.checkpoint_every", value, key)?,
            "train_batch_size" | "gradient_accumulation_steps" => {} // see batch_size
            "optimizer" => self.optimizer(value)?,
            "pipeline" => {
                for (k, v) in object(value, key)? {
                    match k.as_str() {
                        "num_inference_steps" => {
                            self.set("eval.sampler_steps", v, "pipeline.num_inference_steps")?
                        }
                        other => return Err(format!("unknown key pipeline.{other}")),
                    }
                }
            }
            "lr_scheduler" => {
                if value.as_str() != Some("constant") {
                    return Err(format!(
                        "lr_scheduler = {value}: Lethe's unlearning runs use a constant learning rate (SISS's own choice)"
                    ));
                }
            }
            "lr_warmup_steps" | "warmup_steps" => {
                if !(value.is_null() || value.as_u64() == Some(0)) {
                    return Err(format!(
                        "{key} = {value}: warm-up is not supported (constant learning rate)"
                    ));
                }
            }
            "mixed_precision" => {
                if !value.is_null() {
                    return Err(format!(
                        "mixed_precision = {value}: Lethe trains in fp32; use null"
                    ));
                }
            }
            "ema" => {
                if object(value, key)?.get("use_ema").and_then(Value::as_bool) == Some(true) {
                    return Err(
                        "ema.use_ema = true: SISS's EMA (diffusers' EMAModel, with its own warm-up) is not Lethe's; set train.ema_decay for a plain EMA"
                            .into(),
                    );
                }
                self.ignore(
                    key,
                    "use_ema: false is Lethe's default, train.ema_decay = 0",
                );
            }
            "deletion" => self.deletion(value)?,
            other => return Err(format!("unknown key `{other}`")),
        }
        Ok(())
    }

    fn deletion(&mut self, value: &Value) -> Result<(), String> {
        let deletion = object(value, "deletion")?;
        let name = match deletion.get("loss_fn") {
            Some(v) => {
                let name = method_name(v.as_str().ok_or("deletion.loss_fn must be a string")?)?;
                self.set("method.name", &Value::from(name), "deletion.loss_fn")?;
                name
            }
            None => self
                .get("method.name")
                .and_then(Value::as_str)
                .ok_or("deletion.loss_fn is missing (or set method.name): which method to run")?,
        }
        .to_string();
        if name == "erase-diff" {
            // SISS's EraseDiff: the automatic (BOME) λ with its eta, uniform target, no inner loop.
            self.set("method.auto_lambda", &Value::Bool(true), "deletion.loss_fn")?;
            self.set("method.target", &Value::from("uniform"), "deletion.loss_fn")?;
            self.set("method.inner_steps", &Value::from(0), "deletion.loss_fn")?;
        }
        for (key, v) in deletion {
            let siss_key = format!("deletion.{key}");
            match key.as_str() {
                "loss_fn" => {}
                "scaling_norm" => {
                    self.knob(&name, &["siss", "siss-no-is"], "scaling_norm", v, &siss_key)?
                }
                "eta" => self.knob(&name, &["erase-diff"], "eta", v, &siss_key)?,
                "loss_params" if v.is_null() => {}
                "loss_params" => {
                    for (param, pv) in object(v, &siss_key)? {
                        let siss_key = format!("deletion.loss_params.{param}");
                        match param.as_str() {
                            "lambd" => self.knob(&name, &["siss"], "lambda", pv, &siss_key)?,
                            "superfactor" => self.knob(
                                &name,
                                &["siss", "neg-grad"],
                                "superfactor",
                                pv,
                                &siss_key,
                            )?,
                            other => {
                                return Err(format!("unknown key deletion.loss_params.{other}"));
                            }
                        }
                    }
                }
                "class_label" => self.class_label(v)?,
                "timestep_del_window" | "superfactor_decay" => {
                    if !v.is_null() {
                        return Err(format!(
                            "{siss_key} = {v} is not supported by Lethe; use null"
                        ));
                    }
                }
                // Sweep placeholders in SISS's configs ("IGNORE ALL BELOW").
                "frac_deletion" | "inception_frequency" | "training_steps" => {
                    self.ignore(&siss_key, "SISS sweep placeholder");
                }
                "img_name" => {
                    return Err(
                        "deletion.img_name: list the forget images (as paths) under data.forget"
                            .into(),
                    );
                }
                other => return Err(format!("unknown key deletion.{other}")),
            }
        }
        Ok(())
    }

    /// A method knob that only some methods have; for the others it is listed as ignored
    /// (SISS's configs carry every loss's knobs whichever loss runs).
    fn knob(
        &mut self,
        method: &str,
        used_by: &[&str],
        lethe_name: &str,
        value: &Value,
        siss_key: &str,
    ) -> Result<(), String> {
        if used_by.contains(&method) {
            self.set(&format!("method.{lethe_name}"), value, siss_key)
        } else {
            self.ignore(siss_key, &format!("not a knob of {method}"));
            Ok(())
        }
    }

    /// SISS's class to delete: the label of the listed forget images, or (with none listed)
    /// the class whose retain images are forgotten.
    fn class_label(&mut self, value: &Value) -> Result<(), String> {
        let has_forget_images = self
            .get("data.forget")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let target = if has_forget_images {
            "data.forget_label"
        } else {
            "data.forget_class"
        };
        self.set(target, value, "deletion.class_label")
    }

    fn optimizer(&mut self, value: &Value) -> Result<(), String> {
        let opt = object(value, "optimizer")?;
        let kind = match opt.get("_target_").and_then(Value::as_str) {
            None | Some("torch.optim.AdamW") => "adamw",
            Some("torch.optim.Adam") => "adam",
            Some(other) => {
                return Err(format!(
                    "optimizer._target_ = {other}: Lethe offers torch.optim.AdamW and torch.optim.Adam"
                ));
            }
        };
        // SISS's MNIST recipe for whatever the YAML leaves out (its configs inherit these).
        let mut beta1 = Value::from(0.95);
        let mut beta2 = Value::from(0.999);
        let mut weight_decay = Value::from(1e-6);
        let mut epsilon = Value::from(1e-8);
        for (k, v) in opt {
            match k.as_str() {
                "_target_" => {}
                "lr" => self.set("train.learning_rate", v, "optimizer.lr")?,
                "betas" => match v.as_array().map(Vec::as_slice) {
                    Some([b1, b2]) => (beta1, beta2) = (b1.clone(), b2.clone()),
                    _ => {
                        return Err(format!(
                            "optimizer.betas = {v} must be a list of two numbers"
                        ));
                    }
                },
                "weight_decay" => weight_decay = v.clone(),
                "eps" => epsilon = v.clone(),
                other => return Err(format!("unknown key optimizer.{other}")),
            }
        }
        let mut section = Map::new();
        section.insert("kind".into(), Value::from(kind));
        section.insert("beta1".into(), beta1);
        section.insert("beta2".into(), beta2);
        section.insert("epsilon".into(), epsilon);
        if kind == "adamw" {
            section.insert("weight_decay".into(), weight_decay);
        } else if opt.contains_key("weight_decay") {
            return Err(
                "optimizer.weight_decay: Lethe's Adam has none; use torch.optim.AdamW".into(),
            );
        }
        self.set("train.optimizer", &Value::Object(section), "optimizer")
    }

    /// `train_batch_size × gradient_accumulation_steps`: SISS rescales the forget gradient
    /// after accumulating, so G micro-batches of B are one step at batch G·B, taken as G
    /// micro-batches of B (`train.grad_accumulation = G`) in the same memory.
    fn batch_size(&mut self, root: &Map<String, Value>) -> Result<(), String> {
        let count = |key: &str| -> Result<Option<u64>, String> {
            match root.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .map(Some)
                    .ok_or(format!("{key} = {v} must be a whole number ≥ 1")),
            }
        };
        let accumulation = count("gradient_accumulation_steps")?.unwrap_or(1);
        if let Some(batch) = count("train_batch_size")? {
            let key = if accumulation > 1 {
                "train_batch_size × gradient_accumulation_steps"
            } else {
                "train_batch_size"
            };
            self.set("train.batch_size", &Value::from(batch * accumulation), key)?;
            if accumulation > 1 {
                self.set(
                    "train.grad_accumulation",
                    &Value::from(accumulation),
                    "gradient_accumulation_steps",
                )?;
            }
        } else if accumulation > 1 {
            return Err("gradient_accumulation_steps needs train_batch_size".into());
        }
        Ok(())
    }

    fn ignore(&mut self, key: &str, why: &str) {
        self.ignored.push(format!("{key} ({why})"));
    }

    fn set_unless_null(&mut self, path: &str, value: &Value, from: &str) -> Result<(), String> {
        if value.is_null() {
            return Ok(());
        }
        self.set(path, value, from)
    }

    /// Sets a dotted Lethe key; refuses a value that is already there (set both ways).
    fn set(&mut self, path: &str, value: &Value, from: &str) -> Result<(), String> {
        let (sections, leaf) = match path.rsplit_once('.') {
            Some((s, l)) => (s.split('.').collect::<Vec<_>>(), l),
            None => (vec![], path),
        };
        let mut node = &mut self.out;
        for section in sections {
            let entry = node
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            node = entry
                .as_object_mut()
                .ok_or(format!("{section} must be a mapping"))?;
        }
        if node.contains_key(leaf) {
            return Err(format!(
                "{from} sets {path}, which is also set elsewhere in the file"
            ));
        }
        node.insert(leaf.to_string(), value.clone());
        self.origins.push((path.to_string(), from.to_string()));
        Ok(())
    }

    fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut value = self.out.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }

    /// Adds the SISS key to a validation error about the Lethe key it set.
    fn name_origin(&self, error: String) -> String {
        match self
            .origins
            .iter()
            .find(|(lethe, _)| error.starts_with(lethe.as_str()))
        {
            Some((_, siss)) => format!("{error} (set by {siss})"),
            None => error,
        }
    }
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or(format!("{key} must be a mapping of keys"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unlearn::MethodConfig;
    use crate::unlearn::siss::SissForm;

    const DATA: &str = "data:\n  retain: [digits]\n  forget: [tshirt.png]\n";

    fn siss(yaml: &str) -> Result<SissYaml, String> {
        parse(&format!("checkpoint_path: ckpt\n{DATA}{yaml}"))
    }

    #[test]
    fn siss_tshirt_recipe_maps_key_by_key() {
        let got = siss(
            "random_seed: 46\n\
             deletion:\n  class_label: 10\n  loss_fn: importance_sampling_with_mixture\n  \
             scaling_norm: 5\n  eta: 1e-3\n  loss_params:\n    lambd: 0.25\n  superfactor_decay: null\n\
             train_batch_size: 64\noptimizer:\n  lr: 5e-5\nlr_scheduler: constant\nlr_warmup_steps: 0\n\
             pipeline:\n  num_inference_steps: 40\nsampling_steps: 5\ntraining_steps: 300\n\
             eval_images: 128\nmetrics:\n  fid: null\n",
        )
        .unwrap();
        let c = got.config;
        assert_eq!(c.header.checkpoint, std::path::PathBuf::from("ckpt"));
        let MethodConfig::Siss(m) = &c.method else {
            panic!("{:?}", c.method)
        };
        assert_eq!(
            (m.lambda, m.scaling.scaling_norm, m.form),
            (0.25, 5.0, SissForm::Official)
        );
        assert_eq!(
            (c.train.seed, c.train.steps, c.train.batch_size),
            (46, 300, 64)
        );
        assert_eq!(c.train.learning_rate, 5e-5);
        assert_eq!(c.data.forget_label, Some(10));
        assert_eq!(
            (c.eval.every, c.eval.samples, c.eval.sampler_steps),
            (5, Some(128), Some(40))
        );
        assert!(got.ignored.iter().any(|k| k.starts_with("metrics")));
        assert!(
            got.ignored
                .iter()
                .any(|k| k.starts_with("deletion.eta (not a knob of siss"))
        );
    }

    #[test]
    fn each_siss_loss_maps_to_its_lethe_method() {
        let method = |loss: &str| {
            siss(&format!("deletion:\n  loss_fn: {loss}\n  eta: 0.01\n"))
                .unwrap()
                .config
                .method
        };
        assert!(matches!(
            method("double_forward_with_neg_del"),
            MethodConfig::SissNoIs(_)
        ));
        assert!(matches!(method("naive_del"), MethodConfig::Finetune));
        assert!(matches!(method("simple_neg_del"), MethodConfig::NegGrad(_)));
        let MethodConfig::EraseDiff(e) = method("erasediff") else {
            panic!()
        };
        assert!(e.auto_lambda);
        assert_eq!((e.eta, e.inner_steps), (0.01, 0));
    }

    #[test]
    fn gradient_accumulation_multiplies_the_batch() {
        let c = siss("deletion:\n  loss_fn: naive_del\ntrain_batch_size: 4\ngradient_accumulation_steps: 16\n")
            .unwrap()
            .config;
        assert_eq!(c.train.batch_size, 64);
        assert_eq!(c.train.grad_accumulation, 16);
    }

    #[test]
    fn class_label_without_forget_images_is_the_class_to_forget() {
        let c = parse(
            "checkpoint_path: ckpt\ndata:\n  retain: [digits]\ndeletion:\n  loss_fn: naive_del\n  class_label: 7\n",
        )
        .unwrap()
        .config;
        assert_eq!((c.data.forget_class, c.data.forget_label), (Some(7), None));
    }

    #[test]
    fn optimizer_betas_and_adam_translate() {
        let c = siss("deletion:\n  loss_fn: naive_del\noptimizer:\n  _target_: torch.optim.AdamW\n  lr: 1e-5\n  betas: [0.9, 0.99]\n  weight_decay: 0.01\n")
            .unwrap()
            .config;
        assert_eq!(
            c.train.optimizer,
            crate::train::OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.99,
                weight_decay: 0.01,
                epsilon: 1e-8
            }
        );
    }

    #[test]
    fn what_lethe_cannot_honour_is_an_error_naming_the_key() {
        let err = |yaml: &str| siss(yaml).unwrap_err();
        assert!(err("deletion:\n  loss_fn: subscore_bernoulli\n").contains("subscore_bernoulli"));
        assert!(err("deletion:\n  loss_fn: magic\n").contains("deletion.loss_fn = magic"));
        assert!(
            err("deletion:\n  loss_fn: naive_del\nlr_scheduler: cosine\n").contains("lr_scheduler")
        );
        assert!(
            err("deletion:\n  loss_fn: naive_del\nwarmup_steps: 500\n").contains("warmup_steps")
        );
        assert!(err("deletion:\n  loss_fn: naive_del\nfoo: 1\n").contains("`foo`"));
        assert!(
            err("deletion:\n  loss_fn: naive_del\nema:\n  use_ema: true\n").contains("ema.use_ema")
        );
        assert!(
            err("deletion:\n  loss_fn: naive_del\n  timestep_del_window: 500\n")
                .contains("timestep_del_window")
        );
        assert!(
            err("deletion:\n  loss_fn: naive_del\ntraining_steps: 5\ntrain:\n  steps: 6\n")
                .contains("training_steps sets train.steps")
        );
        // Out-of-range values are caught by the same validation as TOML, naming both keys.
        let e = err(
            "deletion:\n  loss_fn: importance_sampling_with_mixture\n  loss_params:\n    lambd: 1.5\n",
        );
        assert!(
            e.contains("method.lambda") && e.contains("deletion.loss_params.lambd"),
            "{e}"
        );
        let e = parse("checkpoint_path: ckpt\ndeletion:\n  loss_fn: naive_del\n").unwrap_err();
        assert!(e.contains("data:"), "{e}");
    }
}
