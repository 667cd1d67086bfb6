//! The reproduction's report: `report.html` (self-contained: plots inline as SVG),
//! `report.md` (plots as `plots/*.svg` beside it) and `verdicts.json`, all written
//! atomically into the output directory.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::claims::{ClaimReport, Table};
use super::plan::{Plan, Stage};
use super::plots;
use super::results::Results;
use super::stats::Verdict;
use crate::util::atomic_write;

/// How and where the reproduction ran, for the report's header.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub lethe_version: String,
    /// `2026-11-27 12:34 UTC`.
    pub date: String,
    pub machine: String,
    /// Every `lethe reproduce` that ran work into the directory (`reproduce.json`), oldest
    /// first; the report is written by the last (or by a `--report-only` after them).
    pub invocations: Vec<Invocation>,
}

/// One `lethe reproduce` that ran work.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Invocation {
    /// When it ended, `2026-11-27 12:34 UTC`.
    pub date: String,
    pub command: String,
    pub wall_seconds: f64,
    pub machine: String,
}

impl Invocation {
    /// The invocation ending now.
    pub fn now(wall_seconds: f64, command: String) -> Self {
        Self {
            date: utc_now(),
            command,
            wall_seconds,
            machine: machine(),
        }
    }
}

impl Context {
    pub fn here(invocations: Vec<Invocation>) -> Self {
        Self {
            lethe_version: env!("CARGO_PKG_VERSION").to_string(),
            date: utc_now(),
            machine: machine(),
            invocations,
        }
    }
}

/// One row of the verdict table (also `verdicts.json`).
#[derive(Debug, Clone, Serialize)]
struct VerdictRow<'a> {
    claim: &'a str,
    statement: &'a str,
    sampler: &'static str,
    verdict: Verdict,
    evidence: &'a str,
}

/// Writes the report files; returns the path of report.html.
pub fn write(
    plan: &Plan,
    results: &Results,
    claims: &[ClaimReport],
    context: &Context,
) -> Result<std::path::PathBuf, String> {
    let out = &plan.out;
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| format!("{}: {e}", plots_dir.display()))?;
    let mut svgs: Vec<(String, String)> = Vec::new();
    for claim in claims {
        for (name, figure) in &claim.figures {
            let svg = plots::svg(figure)?;
            let path = plots_dir.join(format!("{name}.svg"));
            write_file(&path, &svg)?;
            svgs.push((name.clone(), svg));
        }
    }
    let rows: Vec<VerdictRow<'_>> = claims
        .iter()
        .flat_map(|c| {
            c.statements.iter().map(move |s| VerdictRow {
                claim: c.claim.title(),
                statement: &s.text,
                sampler: s.sampler.name(),
                verdict: s.verdict,
                evidence: &s.evidence,
            })
        })
        .collect();
    let json = serde_json::json!({
        "context": context,
        "preset": plan.preset,
        "settings": plan.settings,
        "verdicts": rows,
    });
    write_file(
        &out.join("verdicts.json"),
        &serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )?;
    write_file(
        &out.join("report.md"),
        &markdown(plan, results, claims, context),
    )?;
    let html_path = out.join("report.html");
    write_file(&html_path, &html(plan, results, claims, context, &svgs))?;
    Ok(html_path)
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    atomic_write(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The verdict table as Markdown (printed by the command too).
pub fn verdict_table(claims: &[ClaimReport]) -> String {
    let mut s = String::from("| claim | statement | sampler | verdict |\n|---|---|---|---|\n");
    for c in claims {
        for st in &c.statements {
            let _ = writeln!(
                s,
                "| {} | {} | {} | **{}** |",
                c.claim.title(),
                st.text,
                st.sampler.name(),
                st.verdict.label()
            );
        }
    }
    s
}

/// `lethe sweep run OUT/<stage>`: the command that makes (or continues) a stage's runs.
fn stage_command(plan: &Plan, stage: Stage) -> String {
    format!(
        "lethe sweep run {}",
        plan.out.join(stage.dir_name()).display()
    )
}

fn judgement_commands(plan: &Plan, claim: &ClaimReport) -> Vec<String> {
    plan.judgements
        .iter()
        .filter(|j| claim.stages.iter().any(|s| s.setting() == j.setting))
        .filter(|j| {
            j.name.starts_with("original-")
                || claim
                    .stages
                    .iter()
                    .any(|s| j.name.starts_with(&format!("{}-", s.dir_name())))
        })
        .map(|j| format!("lethe eval {}", j.args(&plan.out, &plan.settings).join(" ")))
        .collect()
}

fn header_lines(plan: &Plan, results: &Results, context: &Context) -> Vec<String> {
    let devices = results.devices();
    vec![
        format!(
            "Lethe {} — report written {}",
            context.lethe_version, context.date
        ),
        format!("Preset: {} — {}", plan.preset.name(), plan.preset.caveat()),
        format!("Machine: {}", context.machine),
        format!(
            "Invocations that ran the work: {}",
            if context.invocations.is_empty() {
                "none recorded".to_string()
            } else {
                context
                    .invocations
                    .iter()
                    .map(|i| {
                        format!(
                            "`{}` ended {} after {} (on {})",
                            i.command,
                            i.date,
                            duration(i.wall_seconds),
                            i.machine
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        ),
        format!(
            "Runs computed on: {}",
            if devices.is_empty() {
                "–".into()
            } else {
                devices.join("; ")
            }
        ),
        format!(
            "Training and evaluation time of all runs: {} (the DDPM evaluations not included)",
            duration(results.compute_seconds())
        ),
        format!(
            "Model: {} · {} seeds per arm (seed s trains and evaluates) · {} samples per evaluation · DDIM-{} (the runs) and DDPM-{} (`lethe eval`) · intervals: Student-t 95% over seeds",
            plan.settings.checkpoint.display(),
            plan.settings.seeds,
            plan.settings.samples,
            plan.settings.sampler_steps,
            plan.settings.sampler_steps
        ),
    ]
}

fn markdown(plan: &Plan, results: &Results, claims: &[ClaimReport], context: &Context) -> String {
    let mut s = String::from("# Lethe reproduction report\n\n");
    for line in header_lines(plan, results, context) {
        let _ = writeln!(s, "- {line}");
    }
    s += "\n## Verdicts\n\n";
    s += &verdict_table(claims);
    for c in claims {
        let _ = writeln!(s, "\n## {}\n", c.claim.title());
        for st in &c.statements {
            let _ = writeln!(
                s,
                "- **{}** ({}) — {}: {}",
                st.verdict.label(),
                st.sampler.name(),
                st.text,
                st.evidence
            );
        }
        for t in &c.tables {
            s += &md_table(t);
        }
        for (name, _) in &c.figures {
            let _ = writeln!(s, "\n![{name}](plots/{name}.svg)");
        }
        s += &md_runs(plan, results, c);
    }
    s += &md_unfinished(results);
    s
}

fn md_table(t: &Table) -> String {
    let mut s = format!("\n{}\n\n| {} |\n", t.title, t.header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(t.header.len()));
    for row in &t.rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s
}

fn md_runs(plan: &Plan, results: &Results, c: &ClaimReport) -> String {
    let mut s = String::from("\nRuns and commands:\n\n");
    for stage in &c.stages {
        let _ = writeln!(
            s,
            "- `{}` — {} (each trial a run directory: `lethe sweep status {}`)",
            stage_command(plan, *stage),
            run_list(plan, results, *stage),
            plan.out.join(stage.dir_name()).display()
        );
    }
    for cmd in judgement_commands(plan, c) {
        let _ = writeln!(s, "- `{cmd}`");
    }
    for (what, how) in &c.provenance {
        let _ = writeln!(s, "- provenance ({what}): {how}");
    }
    for note in &c.notes {
        let _ = writeln!(s, "- {note}");
    }
    s
}

fn run_list(plan: &Plan, results: &Results, stage: Stage) -> String {
    let Some(p) = plan.stage(stage) else {
        return String::new();
    };
    p.expanded
        .trials
        .iter()
        .map(|t| {
            let state = results
                .run(stage, &t.name)
                .and_then(|r| r.status)
                .map_or("not run", |s| s.label());
            format!("{}/{} ({state})", stage.dir_name(), t.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn md_unfinished(results: &Results) -> String {
    let unfinished = results.unfinished();
    if unfinished.is_empty() && results.missing_ddpm.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## Missing\n\n");
    for (stage, name, why) in unfinished {
        let _ = writeln!(s, "- run {}/{name}: {why}", stage.dir_name());
    }
    for (name, why) in &results.missing_ddpm {
        let _ = writeln!(s, "- DDPM evaluation {name}: {why}");
    }
    s
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn anchor(c: &ClaimReport) -> String {
    format!(
        "claim-{}",
        serde_json::to_value(c.claim)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    )
}

fn html(
    plan: &Plan,
    results: &Results,
    claims: &[ClaimReport],
    context: &Context,
    svgs: &[(String, String)],
) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Lethe reproduction report</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}.holds{color:#176117;font-weight:bold}.does_not_hold{color:#a11;font-weight:bold}.inconclusive{color:#8a6d00;font-weight:bold}code{background:#f5f5f5;padding:1px 3px}.caveat{background:#fff6d5;padding:.5em 1em;border-left:4px solid #e0b000}figure{margin:1em 0}</style></head><body>\n<h1>Lethe reproduction report</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p class=\"caveat\">{}</p>\n<ul>",
        esc(plan.preset.caveat())
    );
    for line in header_lines(plan, results, context) {
        let _ = writeln!(s, "<li>{}</li>", esc(&line));
    }
    s += "</ul>\n<h2>Verdicts</h2>\n<table><tr><th>claim</th><th>statement</th><th>sampler</th><th>verdict</th><th>evidence</th><th>runs and commands</th></tr>\n";
    for c in claims {
        for st in &c.statements {
            let verdict = serde_json::to_value(st.verdict)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let runs: Vec<String> = c
                .stages
                .iter()
                .map(|stage| format!("<a href=\"{0}/\">{0}/</a>", stage.dir_name()))
                .collect();
            let _ = writeln!(
                s,
                "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"{verdict}\">{}</td><td>{}</td><td>{} · <a href=\"#{}-commands\">commands</a></td></tr>",
                anchor(c),
                esc(c.claim.title()),
                esc(&st.text),
                st.sampler.name(),
                st.verdict.label(),
                esc(&st.evidence),
                runs.join(" "),
                anchor(c)
            );
        }
    }
    s += "</table>\n";
    for c in claims {
        let _ = writeln!(s, "<h2 id=\"{}\">{}</h2>", anchor(c), esc(c.claim.title()));
        for t in &c.tables {
            let _ = write!(s, "<table><caption>{}</caption><tr>", esc(&t.title));
            for h in &t.header {
                let _ = write!(s, "<th>{}</th>", esc(h));
            }
            s += "</tr>\n";
            for row in &t.rows {
                s += "<tr>";
                for cell in row {
                    let _ = write!(s, "<td>{}</td>", esc(cell));
                }
                s += "</tr>\n";
            }
            s += "</table>\n";
        }
        for (name, _) in &c.figures {
            if let Some((_, svg)) = svgs.iter().find(|(n, _)| n == name) {
                let _ = writeln!(s, "<figure id=\"{name}\">{svg}</figure>");
            }
        }
        let _ = writeln!(
            s,
            "<h3 id=\"{}-commands\">Runs and commands</h3><ul>",
            anchor(c)
        );
        for stage in &c.stages {
            let _ = writeln!(
                s,
                "<li><code>{}</code> — <a href=\"{}/\">{}/</a>: {}</li>",
                esc(&stage_command(plan, *stage)),
                stage.dir_name(),
                stage.dir_name(),
                esc(&run_list(plan, results, *stage))
            );
        }
        s += "</ul><details><summary>The DDPM evaluations (<code>lethe eval</code>, JSON in <a href=\"ddpm/\">ddpm/</a>)</summary><ul>\n";
        for cmd in judgement_commands(plan, c) {
            let _ = writeln!(s, "<li><code>{}</code></li>", esc(&cmd));
        }
        s += "</ul></details>\n<h3>Provenance</h3><ul>\n";
        for (what, how) in &c.provenance {
            let _ = writeln!(s, "<li>{}: <code>{}</code></li>", esc(what), esc(how));
        }
        for note in &c.notes {
            let _ = writeln!(s, "<li>{}</li>", esc(note));
        }
        s += "</ul>\n";
    }
    let missing = md_unfinished(results);
    if !missing.is_empty() {
        s += "<h2>Missing</h2><ul>\n";
        for line in missing.lines().filter_map(|l| l.strip_prefix("- ")) {
            let _ = writeln!(s, "<li>{}</li>", esc(line));
        }
        s += "</ul>\n";
    }
    s += "</body></html>\n";
    s
}

/// `1 h 02 min`, `12 min 05 s`, `42 s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// The CPU's model name and core count (Linux), else the core count.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
    });
    match model {
        Some(m) => format!("{m}, {cores} cores available"),
        None => format!("{cores} cores available"),
    }
}

/// Now as `YYYY-MM-DD HH:MM UTC` (civil-from-days, Howard Hinnant's algorithm).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        // 2026-11-27 10:44:01 UTC.
        assert_eq!(utc(1_795_776_241), "2026-11-27 10:44 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(725.0), "12 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
    }

    #[test]
    fn html_escapes_what_it_quotes() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
