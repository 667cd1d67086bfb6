//! `lethe reproduce --preset tiny` end to end on a tiny demo-shaped model: every stage's runs,
//! the DDPM evaluations and the report; a second invocation reuses everything, a lost
//! evaluation is redone alone, and a different preset refuses the same directory. (The
//! verdicts of a tiny model mean nothing; what is tested is that each is computed from its
//! runs and linked to them.)

use std::path::Path;

use crate::cli::lethe;
use crate::common;

fn reproduce(ckpt: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "reproduce",
        "--preset",
        "tiny",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lethe(&args)
}

fn run_json_times(out: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut times = Vec::new();
    for stage in ["tshirt", "class-7", "digit-1", "dimra"] {
        for entry in std::fs::read_dir(out.join(stage)).unwrap().flatten() {
            let run = entry.path().join("run.json");
            if run.is_file() {
                let status: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&run).unwrap()).unwrap();
                assert_eq!(status["status"], "finished", "{}", run.display());
                times.push((
                    run.display().to_string(),
                    std::fs::metadata(&run).unwrap().modified().unwrap(),
                ));
            }
        }
    }
    times.sort();
    times
}

#[test]
fn the_tiny_reproduction_runs_every_claim_and_links_each_verdict_to_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    common::tiny_demo_checkpoint(&ckpt);
    let out = tmp.path().join("rep");
    let (ok, stdout, stderr) = reproduce(&ckpt, &out, &[]);
    assert!(ok, "{stdout}\n{stderr}");

    // Every planned run finished: 12 T-shirt (SISS, naive deletion, NegGrad, retrain × 3
    // seeds), 9 class-7, 9 digit-1 (two γ and NegGrad), 9 attacks.
    let runs = run_json_times(&out);
    assert_eq!(runs.len(), 12 + 9 + 9 + 9, "{runs:?}");
    // 9 originals (3 settings × 3 seeds) + one per run, each `lethe eval --sampler ddpm`.
    let ddpm: Vec<_> = std::fs::read_dir(out.join("ddpm"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(ddpm.len(), 9 + 39);
    let one: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("ddpm/class-7-erasediff-seed1.json")).unwrap(),
    )
    .unwrap();
    let provenance = one["evaluation"]["provenance"].as_str().unwrap();
    assert!(
        provenance.contains("DDPM-2") && provenance.contains("class=7"),
        "{provenance}"
    );

    // The verdicts: every claim, under both samplers, each one of the three values.
    let verdicts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("verdicts.json")).unwrap()).unwrap();
    let rows = verdicts["verdicts"].as_array().unwrap();
    for claim in ["SISS", "EraseDiff", "VDU", "DiMRA"] {
        for sampler in ["DDIM", "DDPM"] {
            assert!(
                rows.iter()
                    .any(|r| r["claim"].as_str().unwrap().starts_with(claim)
                        && r["sampler"] == sampler),
                "no {claim} verdict under {sampler}: {rows:?}"
            );
        }
    }
    for r in rows {
        let v = r["verdict"].as_str().unwrap();
        assert!(
            ["holds", "does_not_hold", "inconclusive"].contains(&v),
            "{r}"
        );
        assert!(!r["evidence"].as_str().unwrap().is_empty(), "{r}");
    }
    // The tiny model draws no T-shirt: the forgetting verdicts say so rather than judge.
    let pareto = rows
        .iter()
        .find(|r| {
            r["statement"]
                .as_str()
                .unwrap()
                .starts_with("SISS is on the Pareto")
        })
        .unwrap();
    assert_eq!(pareto["verdict"], "inconclusive");
    assert!(
        pareto["evidence"]
            .as_str()
            .unwrap()
            .contains("draws no T-shirt copy"),
        "{pareto}"
    );

    // The report: self-contained plots, every stage's runs and commands linked.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 7, "too few inline plots");
    for stage in ["tshirt", "class-7", "digit-1", "dimra"] {
        assert!(
            html.contains(&format!("href=\"{stage}/\"")),
            "{stage} not linked"
        );
        assert!(
            html.contains(&format!("lethe sweep run {}", out.join(stage).display())),
            "{stage}'s command missing"
        );
    }
    assert!(html.contains("lethe eval --checkpoint") && html.contains("--sampler ddpm"));
    assert!(html.contains("lethe-mnist11"), "no metric provenance");
    assert!(
        html.contains("Invocations that ran the work: `lethe reproduce --preset tiny"),
        "the command and its wall time are not in the report"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| claim | statement | sampler | verdict |"));
    assert!(out.join("plots/dimra-curves-ddim.svg").is_file());
    // The sweeps are ordinary sweep directories.
    let (ok, status, _) = lethe(&["sweep", "status", out.join("dimra").to_str().unwrap()]);
    assert!(ok && status.contains("9 trials: 9 done"), "{status}");

    // Again: nothing is rerun; a lost DDPM evaluation is made again, alone.
    std::fs::remove_file(out.join("ddpm/digit-1-neggrad-seed2.json")).unwrap();
    let (ok, stdout, stderr) = reproduce(&ckpt, &out, &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(run_json_times(&out), runs, "finished runs were run again");
    assert!(out.join("ddpm/digit-1-neggrad-seed2.json").is_file());

    // Another preset's plan cannot mix into this directory.
    let (ok, stdout, stderr) = reproduce(&ckpt, &out, &["--seeds", "2"]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("with other settings"), "{stderr}");
}

#[test]
fn reproduce_refuses_what_it_cannot_run() {
    let (ok, _, err) = lethe(&["reproduce", "--preset", "tiny"]);
    assert!(!ok && err.contains("--checkpoint"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = lethe(&[
        "reproduce",
        "--seeds",
        "0",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("--seeds"), "{err}");
}
