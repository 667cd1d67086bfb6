//! Lethe's sweep file (TOML), over the keys of an experiment config:
//!
//! ```toml
//! base = "examples/unlearn-siss.toml"  # the experiment every trial starts from (TOML or SISS YAML)
//! out = "runs/sweep-siss-lambda"       # the sweep directory (default: base's runs_dir/<file stem>)
//!
//! [set]                 # every trial
//! "train.steps" = 100
//!
//! [grid]                # every combination: keys in alphabetical order, the last varies fastest
//! "method.lambda" = [0.0, 0.5, 1.0]
//! "train.seed" = [0, 1, 2]
//!
//! [[trials]]            # a list; with a grid, each entry is combined with every grid point
//! "method.name" = "neg-grad"
//! ```
//!
//! Keys are dotted paths into the config (`[grid.method] lambda = […]` says the same).
//! Setting `method.name` starts the method's table afresh, so a trial can switch method
//! without the base method's knobs; the new method's keys set beside it (in the same
//! `[set]`, trial or grid point) apply after it. Paths in the files are relative to the current
//! directory, as in every Lethe config.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::{MAX_TRIALS, Override, Points, combinations};
use crate::experiment::ExperimentConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    base: PathBuf,
    out: Option<PathBuf>,
    #[serde(default)]
    set: Table,
    #[serde(default)]
    grid: Table,
    #[serde(default)]
    trials: Vec<Table>,
}

/// Reads a TOML sweep file and expands it into trials (in order).
pub fn expand(path: &Path) -> Result<Points, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let sweep: SweepFile = toml::from_str(&text).map_err(|e| e.to_string())?;
    let base = ExperimentConfig::from_file(&sweep.base).map_err(|e| format!("base: {e}"))?;
    let out = sweep.out.clone().unwrap_or_else(|| {
        let stem = path.file_stem().unwrap_or_default();
        base.header.runs_dir.join(stem)
    });
    let base_table = match Value::try_from(&base) {
        Ok(Value::Table(t)) => t,
        _ => return Err("base: the config does not write as a table".into()),
    };
    let set = flatten(&sweep.set, "");
    let grid = grid_points(&sweep.grid)?;
    let list: Vec<Vec<(String, Value)>> = if sweep.trials.is_empty() {
        vec![Vec::new()]
    } else {
        sweep.trials.iter().map(|t| flatten(t, "")).collect()
    };
    let count = list.len().saturating_mul(grid.len());
    if count > MAX_TRIALS {
        return Err(format!(
            "{count} trials ({} listed × {} grid points): more than {MAX_TRIALS}",
            list.len(),
            grid.len()
        ));
    }
    let mut trials = Vec::with_capacity(count);
    for entry in &list {
        for point in &grid {
            let index = trials.len();
            let varied: Vec<(String, Value)> = entry.iter().chain(point).cloned().collect();
            // `method.name` first within each part, so it never drops the keys beside it.
            let all: Vec<(String, Value)> = names_first(&set)
                .into_iter()
                .chain(names_first(&varied))
                .collect();
            let config = trial_config(&base_table, &all)
                .map_err(|e| format!("trial {index} ({}): {e}", describe(&varied)))?;
            trials.push((overrides(&varied), config));
        }
    }
    Ok(Points { out, trials })
}

/// `overrides` with `method.name` (which starts the method's table afresh) moved first.
fn names_first(overrides: &[(String, Value)]) -> Vec<(String, Value)> {
    let mut ordered = overrides.to_vec();
    ordered.sort_by_key(|(key, _)| key != "method.name");
    ordered
}

/// Every combination of the grid's values, keys in alphabetical order with the last key
/// varying fastest; an empty grid is one point with no overrides.
fn grid_points(grid: &Table) -> Result<Vec<Vec<(String, Value)>>, String> {
    let mut axes = flatten(grid, "");
    axes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lists = Vec::with_capacity(axes.len());
    for (key, values) in axes {
        let Value::Array(values) = values else {
            return Err(format!(
                "grid.{key} must be a list of values, e.g. [0.1, 0.5]"
            ));
        };
        if values.is_empty() {
            return Err(format!("grid.{key} is an empty list"));
        }
        lists.push((key, values));
    }
    combinations(&lists).map_err(|e| format!("the grid has {e}"))
}

/// A table as dotted keys and leaf values (`[grid.method] lambda` → `method.lambda`).
fn flatten(table: &Table, prefix: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => out.extend(flatten(inner, &path)),
            leaf => out.push((path, leaf.clone())),
        }
    }
    out
}

/// The base config with `overrides` applied, read back and validated.
fn trial_config(base: &Table, overrides: &[(String, Value)]) -> Result<ExperimentConfig, String> {
    let mut table = base.clone();
    for (key, value) in overrides {
        if matches!(key.as_str(), "runs_dir" | "name") {
            return Err(format!(
                "{key} is the sweep's to set (each trial's run directory is named inside `out`)"
            ));
        }
        set_path(&mut table, key, value.clone())?;
    }
    if let Some(Value::Table(method)) = table.get("method") {
        crate::unlearn::MethodConfig::refuse_foreign_keys(method)?;
    }
    let config = read_config(table).map_err(|e| blame(base, overrides).unwrap_or(e))?;
    config.validate()?;
    Ok(config)
}

fn read_config(table: Table) -> Result<ExperimentConfig, String> {
    Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

/// The first override after which the config no longer reads, with why: serde's message
/// (``invalid value: integer `-5`, expected usize``) names neither the key nor the value.
fn blame(base: &Table, overrides: &[(String, Value)]) -> Option<String> {
    let mut table = base.clone();
    for (key, value) in overrides {
        set_path(&mut table, key, value.clone()).ok()?;
        if let Err(e) = read_config(table.clone()) {
            return Some(format!("{key} = {value}: {e}"));
        }
    }
    None
}

/// Sets a dotted key, creating tables on the way; `method.name` starts the method afresh.
fn set_path(table: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted config key"));
    }
    if key == "method.name" {
        let mut method = Table::new();
        method.insert("name".into(), value);
        table.insert("method".into(), Value::Table(method));
        return Ok(());
    }
    let (leaf, sections) = parts.split_last().expect("a key has a part");
    let mut node = table;
    let mut walked = String::new();
    for section in sections {
        walked = if walked.is_empty() {
            section.to_string()
        } else {
            format!("{walked}.{section}")
        };
        let entry = node
            .entry(section.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        node = match entry {
            Value::Table(t) => t,
            other => {
                return Err(format!(
                    "{key}: `{walked}` is a value ({other}), not a table of keys"
                ));
            }
        };
    }
    node.insert(leaf.to_string(), value);
    Ok(())
}

fn overrides(varied: &[(String, Value)]) -> Vec<Override> {
    varied
        .iter()
        .map(|(key, value)| Override {
            key: key.clone(),
            value: show(value),
        })
        .collect()
}

/// A value as a person reads it: strings without quotes, numbers and lists as TOML.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn describe(varied: &[(String, Value)]) -> String {
    if varied.is_empty() {
        return "the base".into();
    }
    varied
        .iter()
        .map(|(k, v)| format!("{k} = {}", show(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unlearn::MethodConfig;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A sweep file over the SISS example, written in a temp dir.
    fn sweep(text: &str) -> Result<Points, String> {
        let tmp = tempfile::tempdir().unwrap();
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/unlearn-siss.toml");
        let text = format!("base = {:?}\n{text}", base.display().to_string());
        expand(&write(tmp.path(), "lambda.toml", &text))
    }

    #[test]
    fn a_grid_expands_in_order_with_the_last_key_fastest() {
        let points = sweep(
            "out = \"runs/s\"\n[set]\n\"train.steps\" = 7\n[grid]\n\"train.seed\" = [0, 1]\nmethod.lambda = [0.0, 0.5, 1.0]\n",
        )
        .unwrap();
        assert_eq!(points.out, PathBuf::from("runs/s"));
        assert_eq!(points.trials.len(), 6);
        let shown: Vec<String> = points
            .trials
            .iter()
            .map(|(o, _)| {
                o.iter()
                    .map(|o| format!("{}={}", o.key, o.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(shown[0], "method.lambda=0.0,train.seed=0");
        assert_eq!(shown[1], "method.lambda=0.0,train.seed=1");
        assert_eq!(shown[5], "method.lambda=1.0,train.seed=1");
        let (_, last) = &points.trials[5];
        assert_eq!(last.train.steps, 7);
        assert_eq!(last.train.seed, 1);
        let MethodConfig::Siss(siss) = &last.method else {
            panic!("{:?}", last.method)
        };
        assert_eq!(siss.lambda, 1.0);
        // The base's other knobs are kept.
        assert_eq!(siss.scaling.relative_scaling, Some(0.1));
    }

    #[test]
    fn a_list_switches_methods_and_combines_with_the_grid() {
        let points = sweep(
            "[grid]\n\"train.seed\" = [3, 4]\n[[trials]]\n\"method.lambda\" = 0.25\n[[trials]]\n\"method.name\" = \"neg-grad\"\n",
        )
        .unwrap();
        assert_eq!(points.trials.len(), 4);
        assert!(matches!(points.trials[0].1.method, MethodConfig::Siss(_)));
        assert!(matches!(
            points.trials[3].1.method,
            MethodConfig::NegGrad(_)
        ));
        assert_eq!(points.trials[3].1.train.seed, 4);
        // The default out: the base's runs_dir / the sweep file's stem.
        assert_eq!(points.out, PathBuf::from("runs/lambda"));
    }

    #[test]
    fn bad_sweeps_name_the_trial_and_the_key() {
        let typo = sweep("[grid]\n\"method.lamda\" = [0.1]\n").err().unwrap();
        assert!(
            typo.contains("trial 0 (method.lamda = 0.1)") && typo.contains("lamda"),
            "{typo}"
        );
        let range = sweep("[grid]\n\"train.cond_drop_prob\" = [0.5, 2.0]\n")
            .err()
            .unwrap();
        assert!(
            range.contains("trial 1") && range.contains("train.cond_drop_prob"),
            "{range}"
        );
        let scalar = sweep("[grid]\n\"train.seed\" = 3\n").err().unwrap();
        assert!(
            scalar.contains("grid.train.seed must be a list"),
            "{scalar}"
        );
        let name = sweep("[set]\nname = \"x\"\n").err().unwrap();
        assert!(name.contains("name is the sweep's to set"), "{name}");
        let unknown = sweep("[gird]\n").err().unwrap();
        assert!(unknown.contains("gird"), "{unknown}");
        // A wrong type names the key and the value, not only serde's complaint.
        let negative = sweep("[set]\n\"train.steps\" = -5\n").err().unwrap();
        assert!(
            negative.contains("train.steps = -5: invalid value: integer `-5`, expected usize"),
            "{negative}"
        );
        let word = sweep("[[trials]]\n\"method.lambda\" = \"high\"\n")
            .err()
            .unwrap();
        assert!(
            word.contains("method.lambda = \"high\": invalid type"),
            "{word}"
        );
        // A key the method switched to has not: the later key is the one named.
        let foreign = sweep("[set]\n\"method.name\" = \"finetune\"\n\"method.lambda\" = 0.5\n")
            .err()
            .unwrap();
        assert!(
            foreign.contains("method.lambda: the finetune method takes no such key"),
            "{foreign}"
        );
        let huge = sweep("[grid]\na.b = [0,1,2,3,4,5,6,7,8,9]\nc.d = [0,1,2,3,4,5,6,7,8,9]\ne.f = [0,1,2,3,4,5,6,7,8,9]\ng.h = [0,1,2,3,4,5,6,7,8,9]\ni.j = [0,1]\n").err().unwrap();
        assert!(huge.contains("more than 10000"), "{huge}");
    }
}
