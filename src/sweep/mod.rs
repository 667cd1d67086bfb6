//! Sweeps: one base experiment and the values to vary, expanded into numbered trials that
//! run as ordinary run directories inside one sweep directory — locally N at a time
//! (`lethe sweep run`), as a Slurm job array whose task i runs trial i (`lethe sweep
//! slurm`), or one after another in the workbench ("Queue sweep"). `lethe sweep
//! status|collect` and the compare view read the directory back.
//!
//! ```text
//! runs/sweep-siss-lambda/
//!   sweep.json            the expansion: every trial's name, overrides and full config
//!   000-lambda0-seed0/    trial 0: an ordinary run directory (run.json, metrics.jsonl, …)
//!   001-lambda0-seed1/
//!   logs/<i>.log          trial i's output (the local runner; `<i>.slurm-<job>.log` on Slurm)
//!   sweep.sbatch          written by `lethe sweep slurm`
//!   trials.csv, trials.json   written by `lethe sweep collect`
//! ```
//!
//! Two sweep formats expand the same way: Lethe's TOML ([`file`]) over Lethe's config keys,
//! and a SISS-style Hydra multirun YAML ([`hydra`]) over SISS's keys.

pub mod file;
pub mod hydra;
pub mod local;
pub mod manifest;
pub mod slurm;
pub mod status;
pub mod trial;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::experiment::ExperimentConfig;

pub use manifest::Manifest;

/// The file in a sweep directory that holds its expansion.
pub const MANIFEST: &str = "sweep.json";
/// More trials than this is almost certainly a grid written by mistake.
pub const MAX_TRIALS: usize = 10_000;

/// One value a trial sets on top of the base, as the sweep file names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub key: String,
    pub value: String,
}

/// One trial: its place in the sweep, what it varies and the full config it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub index: usize,
    /// Its run directory's name inside the sweep directory, e.g. `003-lambda0.5-seed1`.
    pub name: String,
    pub overrides: Vec<Override>,
    pub config: ExperimentConfig,
}

/// A sweep file expanded: the sweep directory and its trials, in order.
#[derive(Debug, Clone)]
pub struct Expanded {
    pub dir: PathBuf,
    pub trials: Vec<Trial>,
}

/// Expands a sweep file: TOML (Lethe's keys, [`file`]) or `.yaml`/`.yml` (a SISS-style Hydra
/// multirun, [`hydra`]). `out` replaces the directory the file names (or its default).
pub fn expand(path: &Path, out: Option<&Path>) -> Result<Expanded, String> {
    let in_file = |e: String| format!("{}: {e}", path.display());
    let is_yaml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    let points = if is_yaml {
        hydra::expand(path)
    } else {
        file::expand(path)
    }
    .map_err(in_file)?;
    let dir = match out {
        Some(out) => out.to_path_buf(),
        None => points.out.clone(),
    };
    name_trials(dir, points.trials).map_err(in_file)
}

/// What a sweep format produces: the default sweep directory and each trial's overrides
/// with its config (before the trial is named and placed).
pub struct Points {
    pub out: PathBuf,
    pub trials: Vec<(Vec<Override>, ExperimentConfig)>,
}

/// Names every trial (`NNN-<what it varies>`) and points its run directory into `dir`.
fn name_trials(
    dir: PathBuf,
    trials: Vec<(Vec<Override>, ExperimentConfig)>,
) -> Result<Expanded, String> {
    if trials.is_empty() {
        return Err("the sweep has no trials".into());
    }
    let width = (trials.len() - 1).to_string().len().max(3);
    let trials = trials
        .into_iter()
        .enumerate()
        .map(|(index, (overrides, mut config))| {
            let slug = slug(&overrides);
            let name = if slug.is_empty() {
                format!("{index:0width$}")
            } else {
                format!("{index:0width$}-{slug}")
            };
            config.header.runs_dir = dir.clone();
            config.header.name = Some(name.clone());
            Trial {
                index,
                name,
                overrides,
                config,
            }
        })
        .collect();
    Ok(Expanded { dir, trials })
}

/// A short, file-name-safe summary of what a trial varies (`lambda0.5-seed1`,
/// `finetune-seed0`, `simple_neg_del-superfactor0.01-random_seed42`): numbers with the last
/// part of their key, strings as they are, mappings by their leaves; cut at 48 characters
/// (the manifest has every override in full).
fn slug(overrides: &[Override]) -> String {
    fn leaves(key: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    leaves(k, v, out);
                }
            }
            serde_json::Value::String(s) => out.push(s.clone()),
            other => out.push(format!("{key}{other}")),
        }
    }
    let mut parts = Vec::new();
    for o in overrides {
        let key = o.key.rsplit('.').next().unwrap_or(&o.key);
        let key = key.trim_start_matches(['+', '~']);
        match serde_json::from_str::<serde_json::Value>(&o.value) {
            Ok(value @ serde_json::Value::Object(_)) => leaves(key, &value, &mut parts),
            Ok(serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                parts.push(format!("{key}{}", o.value))
            }
            _ => parts.push(o.value.clone()),
        }
    }
    let text: String = parts
        .join("-")
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => Some(c),
            ' ' | ',' | '/' | ':' | '=' => Some('_'),
            _ => None,
        })
        .take(48)
        .collect();
    text.trim_matches(['-', '_', '.']).to_string()
}

/// Every combination of the axes' values, in the order given with the last axis varying
/// fastest: the grid of both sweep formats.
fn combinations<V: Clone>(axes: &[(String, Vec<V>)]) -> Result<Vec<Vec<(String, V)>>, String> {
    let mut points: Vec<Vec<(String, V)>> = vec![Vec::new()];
    for (key, values) in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
        if points.len() > MAX_TRIALS {
            return Err(format!("more than {MAX_TRIALS} combinations"));
        }
    }
    Ok(points)
}

/// Writes `0,2-4,7` for the indices 0, 2, 3, 4, 7: Slurm's `--array=` list.
pub fn array_list(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Reads an `--array=`-style list (`0,2-4,7`, `0-9:2`; a `%K` throttle is ignored) into
/// indices, each below `count`.
pub fn parse_array_list(text: &str, count: usize) -> Result<Vec<usize>, String> {
    let text = text.split('%').next().unwrap_or_default();
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("array list `{part}`: expected N, N-M or N-M:STEP");
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<usize>().map_err(|_| bad())?.max(1)),
            None => (part, 1),
        };
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        if b >= count {
            return Err(format!(
                "array list `{part}`: the sweep has trials 0–{}",
                count.saturating_sub(1)
            ));
        }
        out.extend((a..=b).step_by(step));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_lists_compress_runs_and_read_back() {
        assert_eq!(array_list(&[7, 0, 2, 3, 4]), "0,2-4,7");
        assert_eq!(array_list(&[5]), "5");
        assert_eq!(array_list(&[]), "");
        assert_eq!(parse_array_list("0,2-4,7", 8).unwrap(), vec![0, 2, 3, 4, 7]);
        assert_eq!(parse_array_list("0-6:3%2", 8).unwrap(), vec![0, 3, 6]);
        assert!(
            parse_array_list("0-8", 8)
                .unwrap_err()
                .contains("trials 0–7")
        );
        assert!(parse_array_list("4-2", 8).is_err());
    }

    #[test]
    fn slugs_are_short_and_file_name_safe() {
        let o = |k: &str, v: &str| Override {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(
            slug(&[o("method.lambda", "0.5"), o("train.seed", "1")]),
            "lambda0.5-seed1"
        );
        assert_eq!(
            slug(&[o("method.name", "neg-grad"), o("train.seed", "0")]),
            "neg-grad-seed0"
        );
        assert_eq!(
            slug(&[
                o(
                    "+deletion",
                    "{\"loss_fn\":\"simple_neg_del\",\"loss_params\":{\"superfactor\":0.01}}"
                ),
                o("+random_seed", "42")
            ]),
            "simple_neg_del-superfactor0.01-random_seed42"
        );
        let path = o(
            "data.retain",
            "[\"a/very/long/path/to/some/folder/of/images/x\"]",
        );
        let long = slug(&[path.clone(), path.clone(), path]);
        assert!(
            long.len() <= 48 && !long.contains(['"', '[', '/']),
            "{long}"
        );
    }
}
