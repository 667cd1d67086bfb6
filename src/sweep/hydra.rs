//! SISS-style Hydra multirun sweeps (`claserken/SISS`, `config/sweep_*.yaml`), run as
//! written:
//!
//! ```yaml
//! defaults:
//!   - delete_tshirt          # delete_tshirt.yaml beside this file: the base
//!   - _self_
//! hydra:
//!   mode: MULTIRUN
//!   sweeper:
//!     params:
//!       +deletion: "{loss_fn: importance_sampling_with_mixture, loss_params: {lambd: 0.5}},
//!                   {loss_fn: naive_del}"
//!       +random_seed: 42, 43, 44
//! ```
//!
//! What Lethe does with it, as Hydra's basic sweeper would: the defaults list is composed
//! (each name is `<name>.yaml` beside the file, `_self_` where it is listed, else last),
//! every combination of the sweeper's parameters is one trial (in the order written, the
//! last varying fastest), a parameter's value is a comma-separated list of YAML values
//! (`range(a, b[, step])` and `choice(…)` too), a mapping value merges into the mapping it
//! overrides, and `${a.b}` interpolations are resolved. Each composed trial is then read as
//! a SISS-style config (`experiment::siss_yaml`): its `data:` section names the images, and
//! every key Lethe cannot honour is an error naming the trial.
//! Launchers (`hydra/launcher`, e.g. submitit) are Hydra's infrastructure: ignored; Lethe's
//! own runners (`lethe sweep run`, `lethe sweep slurm`) take their place.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{MAX_TRIALS, Override, Points, combinations};
use crate::experiment::siss_yaml;

/// How deep defaults lists may nest (a cycle is an error long before this).
const MAX_DEPTH: usize = 16;

/// Reads a Hydra multirun YAML and expands it into trials.
pub fn expand(path: &Path) -> Result<Points, String> {
    let root = read_yaml(path)?;
    let params = sweep_params(&root)?;
    let base = compose(path, root, 0)?;
    let axes: Vec<(String, Vec<Value>)> = params
        .iter()
        .map(|(key, value)| Ok((key.clone(), sweep_values(key, value)?)))
        .collect::<Result<_, String>>()?;
    let points = combinations(&axes).map_err(|e| format!("the sweep has {e}"))?;
    let mut trials = Vec::with_capacity(points.len());
    let mut out = None;
    for (index, point) in points.iter().enumerate() {
        let describe = || {
            point
                .iter()
                .map(|(k, v)| format!("{k}={}", compact(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut composed = base.clone();
        for (key, value) in point {
            apply_override(&mut composed, key, value.clone())
                .map_err(|e| format!("trial {index} ({}): {e}", describe()))?;
        }
        let resolved = resolve_interpolations(&composed)
            .map_err(|e| format!("trial {index} ({}): {e}", describe()))?;
        let translated = siss_yaml::translate(Value::Object(resolved))
            .map_err(|e| format!("trial {index} ({}): {e}", describe()))?;
        out.get_or_insert_with(|| {
            let stem = path.file_stem().unwrap_or_default();
            translated.config.header.runs_dir.join(stem)
        });
        let overrides = point
            .iter()
            .map(|(key, value)| Override {
                key: key.clone(),
                value: compact(value),
            })
            .collect();
        trials.push((overrides, translated.config));
    }
    Ok(Points {
        out: out.unwrap_or_else(|| PathBuf::from("runs")),
        trials,
    })
}

fn read_yaml(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(format!(
            "{}: expected a mapping of keys at the top level",
            path.display()
        )),
    }
}

/// `hydra.sweeper.params`, in the order written.
fn sweep_params(root: &Map<String, Value>) -> Result<Vec<(String, Value)>, String> {
    let params = root
        .get("hydra")
        .and_then(|h| h.get("sweeper"))
        .and_then(|s| s.get("params"));
    match params {
        Some(Value::Object(map)) => Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(_) => Err("hydra.sweeper.params must be a mapping of parameters".into()),
        None => Err(
            "no hydra.sweeper.params: not a Hydra multirun sweep (a single SISS-style config runs with `lethe unlearn --config`)"
                .into(),
        ),
    }
}

/// The file's defaults list composed with its own keys (`hydra` and `defaults` dropped).
fn compose(
    path: &Path,
    mut own: Map<String, Value>,
    depth: usize,
) -> Result<Map<String, Value>, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: defaults nest deeper than {MAX_DEPTH} (a cycle?)",
            path.display()
        ));
    }
    let defaults = own.remove("defaults");
    own.remove("hydra");
    let mut entries: Vec<Option<String>> = Vec::new(); // None = _self_
    match defaults {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for item in list {
                match item {
                    Value::String(s) if s == "_self_" => entries.push(None),
                    Value::String(s) => entries.push(Some(s)),
                    // `- override hydra/launcher: submitit_slurm` and other group choices:
                    // Hydra's own infrastructure.
                    Value::Object(_) => {}
                    other => {
                        return Err(format!(
                            "{}: defaults entry {other} is not a config name",
                            path.display()
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(format!("{}: defaults must be a list", path.display())),
    }
    if !entries.contains(&None) {
        entries.push(None);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut composed = Map::new();
    for entry in entries {
        let layer = match entry {
            None => std::mem::take(&mut own),
            Some(name) => {
                let file = dir.join(format!("{name}.yaml"));
                if !file.is_file() {
                    return Err(format!(
                        "{}: defaults names `{name}`, but {} does not exist",
                        path.display(),
                        file.display()
                    ));
                }
                let inner = read_yaml(&file)?;
                compose(&file, inner, depth + 1)?
            }
        };
        merge(&mut composed, layer);
    }
    Ok(composed)
}

/// Merges `layer` into `into`: mappings key by key, anything else replaced.
fn merge(into: &mut Map<String, Value>, layer: Map<String, Value>) {
    for (key, value) in layer {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// One sweeper parameter's values: a comma-separated list of YAML values, or a sweep
/// function.
fn sweep_values(key: &str, value: &Value) -> Result<Vec<Value>, String> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Array(items) => return Ok(items.clone()),
        other => return Ok(vec![other.clone()]),
    };
    let values = if let Some(args) = call(&text, "range") {
        range_values(&args).map_err(|e| format!("hydra.sweeper.params.{key}: {e}"))?
    } else if let Some(args) = call(&text, "choice") {
        flow_list(&args).map_err(|e| format!("hydra.sweeper.params.{key}: {e}"))?
    } else if let Some(name) = ["interval", "glob", "tag", "sort", "shuffle"]
        .into_iter()
        .find(|f| call(&text, f).is_some())
    {
        return Err(format!(
            "hydra.sweeper.params.{key}: {name}(…) is not supported (lists, range and choice are)"
        ));
    } else {
        flow_list(&text).map_err(|e| format!("hydra.sweeper.params.{key}: {e}"))?
    };
    if values.is_empty() {
        return Err(format!("hydra.sweeper.params.{key} has no values"));
    }
    Ok(values)
}

/// The arguments of `name(…)`, if `text` is that call.
fn call(text: &str, name: &str) -> Option<String> {
    let rest = text.strip_prefix(name)?.trim_start();
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.to_string())
}

/// `a, b, {c: 1}` as YAML values (a YAML flow sequence once bracketed).
fn flow_list(text: &str) -> Result<Vec<Value>, String> {
    let value: Value = serde_yaml_ng::from_str(&format!("[{text}]"))
        .map_err(|e| format!("`{}` is not a list of values: {e}", text.trim()))?;
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(format!("`{text}` is not a list of values")),
    }
}

/// Hydra's `range(start, stop[, step])`: stop excluded, integers or floats.
fn range_values(args: &str) -> Result<Vec<Value>, String> {
    let numbers: Vec<f64> = args
        .split(',')
        .map(|a| a.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("range({args}): expected numbers"))?;
    let (start, stop, step) = match numbers.as_slice() {
        [stop] => (0.0, *stop, 1.0),
        [start, stop] => (*start, *stop, 1.0),
        [start, stop, step] => (*start, *stop, *step),
        _ => return Err(format!("range({args}): expected 1 to 3 numbers")),
    };
    if step == 0.0 || !step.is_finite() {
        return Err(format!("range({args}): the step must be non-zero"));
    }
    let integers = [start, stop, step].iter().all(|v| v.fract() == 0.0);
    let count = ((stop - start) / step).ceil().max(0.0);
    if count > MAX_TRIALS as f64 {
        return Err(format!("range({args}): more than {MAX_TRIALS} values"));
    }
    Ok((0..count as usize)
        .map(|i| {
            let v = start + step * i as f64;
            if integers {
                Value::from(v as i64)
            } else {
                Value::from(v)
            }
        })
        .collect())
}

/// Applies one sweeper override (`+key`, `++key`, `key`, `~key`) to the composed config.
fn apply_override(root: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), String> {
    let (delete, path) = match key.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, key.trim_start_matches('+')),
    };
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a config key"));
    }
    let (leaf, sections) = parts.split_last().expect("a key has a part");
    let mut node = root;
    for section in sections {
        let entry = node
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        node = entry
            .as_object_mut()
            .ok_or(format!("{key}: `{section}` is a value, not a mapping"))?;
    }
    if delete {
        node.remove(*leaf);
        return Ok(());
    }
    match (node.get_mut(*leaf), value) {
        (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
        (_, value) => {
            node.insert(leaf.to_string(), value);
        }
    }
    Ok(())
}

/// Resolves `${a.b}` interpolations against the composed config (a value that is exactly
/// one interpolation takes the referenced value, with its type; one inside a string is
/// written into it).
fn resolve_interpolations(root: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut current = root.clone();
    for _ in 0..MAX_DEPTH {
        let mut changed = false;
        let snapshot = Value::Object(current.clone());
        let mut next = Map::new();
        for (key, value) in &current {
            next.insert(key.clone(), resolve(value, &snapshot, &mut changed)?);
        }
        current = next;
        if !changed {
            return Ok(current);
        }
    }
    Err("interpolations refer to each other in a cycle".into())
}

fn resolve(value: &Value, root: &Value, changed: &mut bool) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) if s.contains("${") => {
            *changed = true;
            let trimmed = s.trim();
            if let Some(path) = trimmed
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .filter(|p| !p.contains("${") && !p.contains('}'))
            {
                lookup(root, path)?.clone()
            } else {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let after = &rest[start + 2..];
                    let end = after
                        .find('}')
                        .ok_or(format!("`{s}`: an interpolation is not closed"))?;
                    out.push_str(&compact(lookup(root, &after[..end])?));
                    rest = &after[end + 1..];
                }
                out.push_str(rest);
                Value::String(out)
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve(v, root, changed))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), resolve(v, root, changed)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn lookup<'a>(root: &'a Value, path: &str) -> Result<&'a Value, String> {
    if path.contains(':') {
        return Err(format!(
            "${{{path}}}: resolvers (oc.env, …) are not supported; write the value"
        ));
    }
    let mut node = root;
    for part in path.trim().split('.') {
        node = node.get(part).ok_or(format!(
            "${{{path}}} refers to a key the config does not have"
        ))?;
    }
    Ok(node)
}

/// A value on one line, as JSON (strings without quotes at the top level).
fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unlearn::MethodConfig;

    const BASE: &str = "checkpoint_path: ckpt\noutput_dir: runs\ndata:\n  retain: [digits]\n  forget: [tshirt.png]\n\
        deletion:\n  class_label: 10\n  loss_fn: importance_sampling_with_mixture\n  scaling_norm: 5\n  \
        loss_params:\n    lambd: 0.5\n  frac_deletion: null\n  training_steps: 300\n\
        random_seed: 0\ntraining_steps: 300\noptimizer:\n  lr: 5e-5\n";

    fn expand_with(sweep: &str) -> Result<Points, String> {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("delete_tshirt.yaml"), BASE).unwrap();
        let path = tmp.path().join("sweep_tshirt_main.yaml");
        std::fs::write(&path, sweep).unwrap();
        expand(&path)
    }

    #[test]
    fn the_siss_tshirt_sweep_expands_as_hydra_would() {
        // SISS's config/sweep_tshirt_main.yaml, its methods cut to three.
        let points = expand_with(
            "defaults:\n  - delete_tshirt\n  - _self_\n\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n      \
             +deletion: \"{loss_fn: importance_sampling_with_mixture, loss_params: {lambd: 0}},\n                  \
             {loss_fn: simple_neg_del, loss_params: {superfactor: 0.01}},\n                  {loss_fn: naive_del}\"\n      \
             +random_seed: 42, 43\n",
        )
        .unwrap();
        assert_eq!(points.trials.len(), 6);
        assert_eq!(points.out, PathBuf::from("runs/sweep_tshirt_main"));
        let (o, first) = &points.trials[0];
        assert_eq!(o[1].value, "42");
        assert_eq!(first.train.seed, 42);
        let MethodConfig::Siss(siss) = &first.method else {
            panic!("{:?}", first.method)
        };
        // Merged into the base's deletion: its scaling_norm stays, lambd is the trial's.
        assert_eq!(siss.lambda, 0.0);
        assert_eq!(siss.scaling.scaling_norm, 5.0);
        assert_eq!(points.trials[1].1.train.seed, 43);
        assert!(matches!(
            points.trials[3].1.method,
            MethodConfig::NegGrad(_)
        ));
        assert!(matches!(points.trials[5].1.method, MethodConfig::Finetune));
    }

    #[test]
    fn interpolations_ranges_and_unsupported_keys() {
        // SISS's sweep_mnist.yaml idiom: steps come from the trial's deletion dict.
        let points = expand_with(
            "defaults: [delete_tshirt, _self_]\ntraining_steps: ${deletion.training_steps}\nhydra:\n  sweeper:\n    params:\n      \
             +deletion: \"{loss_fn: naive_del, training_steps: 750}\"\n      random_seed: range(1, 4)\n",
        )
        .unwrap();
        assert_eq!(points.trials.len(), 3);
        assert_eq!(points.trials[0].1.train.steps, 750);
        assert_eq!(points.trials[2].1.train.seed, 3);
        // SISS's superfactor_decay is not Lethe's: the trial is named with the key.
        let err = expand_with(
            "defaults: [delete_tshirt]\nhydra:\n  sweeper:\n    params:\n      \
             +deletion: \"{loss_fn: importance_sampling_with_mixture, superfactor_decay: 0.98}\"\n",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("trial 0") && err.contains("superfactor_decay"),
            "{err}"
        );
        let missing = expand_with(
            "defaults: [delete_mnist]\nhydra:\n  sweeper:\n    params:\n      random_seed: 1, 2\n",
        )
        .err()
        .unwrap();
        assert!(
            missing.contains("delete_mnist.yaml does not exist"),
            "{missing}"
        );
        let not_a_sweep = expand_with("defaults: [delete_tshirt]\n").err().unwrap();
        assert!(
            not_a_sweep.contains("no hydra.sweeper.params"),
            "{not_a_sweep}"
        );
        let glob = expand_with(
            "defaults: [delete_tshirt]\nhydra:\n  sweeper:\n    params:\n      x: glob(*)\n",
        )
        .err()
        .unwrap();
        assert!(glob.contains("glob(…) is not supported"), "{glob}");
    }
}
