//! Each claim's statements and their verdicts, computed from the runs' figures over seeds
//! under each sampler. A verdict needs the whole 95% interval on one side of the claim's
//! threshold (`stats::Verdict`); the thresholds are stated with every statement.

use serde::Serialize;

use super::plan::{Claim, Plan, Stage};
use super::results::{Results, Sampler};
use super::stats::{Interval, Verdict};
use crate::metrics::evaluation::Evaluation;

/// A quality cost is "small" below this relative rise of FID (25%).
pub const SMALL_QUALITY_COST: f64 = 0.25;
/// Quality "collapses" when the share of confident digits falls below this fraction of the
/// original's.
pub const COLLAPSE_SHARE: f64 = 0.5;
/// VDU's reported percentage of unlearning for the digit 1 (its Table, MNIST).
pub const VDU_PAPER_PUL_DIGIT1: f64 = 75.06;

/// One statement of a claim under one sampler.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub text: String,
    pub sampler: Sampler,
    pub verdict: Verdict,
    /// The figures and the rule behind the verdict.
    pub evidence: String,
}

/// A table of figures (mean [95% CI] over seeds).
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Series for a plot: (label, points of (x, mean, lo, hi)).
pub type Series = Vec<(String, Vec<(f64, Interval)>)>;

/// What a plot shows; drawn by `plots`.
#[derive(Debug, Clone)]
pub enum Figure {
    /// Points (x ± CI, y ± CI), one per arm: a trade-off plot.
    Scatter {
        title: String,
        x_label: String,
        y_label: String,
        points: Vec<(String, Interval, Interval)>,
    },
    /// Curves of mean ± CI against a step; optional horizontal reference (label, y).
    Curves {
        title: String,
        x_label: String,
        y_label: String,
        series: Series,
        reference: Option<(String, f64)>,
    },
    /// One mean ± CI per category.
    Bars {
        title: String,
        y_label: String,
        bars: Vec<(String, Interval)>,
    },
}

/// A claim judged.
#[derive(Debug, Clone)]
pub struct ClaimReport {
    pub claim: Claim,
    pub stages: Vec<Stage>,
    pub statements: Vec<Statement>,
    pub tables: Vec<Table>,
    pub figures: Vec<(String, Figure)>,
    pub notes: Vec<String>,
    /// Provenance of the figures: (what, how it was computed).
    pub provenance: Vec<(String, String)>,
}

impl ClaimReport {
    fn new(claim: Claim, stages: &[Stage]) -> Self {
        Self {
            claim,
            stages: stages.to_vec(),
            statements: vec![],
            tables: vec![],
            figures: vec![],
            notes: vec![],
            provenance: vec![],
        }
    }

    fn state(&mut self, sampler: Sampler, text: &str, verdict: Verdict, evidence: String) {
        self.statements.push(Statement {
            text: text.to_string(),
            sampler,
            verdict,
            evidence,
        });
    }
}

/// Judges every claim of the plan.
pub fn judge(plan: &Plan, results: &Results) -> Vec<ClaimReport> {
    plan.claims
        .iter()
        .map(|claim| {
            let mut reader = Reader {
                plan,
                results,
                report: ClaimReport::new(*claim, claim.stages()),
            };
            match claim {
                Claim::Siss => reader.siss(),
                Claim::Erasediff => reader.erasediff(),
                Claim::Vdu => reader.vdu(),
                Claim::Dimra => reader.dimra(),
            }
            reader.report
        })
        .collect()
}

/// A metric of an evaluation.
type Metric = fn(&Evaluation) -> Option<f64>;

fn copy_rate(e: &Evaluation) -> Option<f64> {
    Some(e.forget_copy_rate)
}
fn fid(e: &Evaluation) -> Option<f64> {
    e.fid
}
fn confident(e: &Evaluation) -> Option<f64> {
    e.confident_kept_rate
}
fn class_probability(e: &Evaluation) -> Option<f64> {
    e.forgotten_class_probability
}
fn class_rate(e: &Evaluation) -> Option<f64> {
    e.forgotten_class_rate
}
fn entropy(e: &Evaluation) -> Option<f64> {
    e.mean_entropy
}

/// Per seed: relative change `after / before − 1`.
fn relative(before: &[Option<f64>], after: &[Option<f64>]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some((*a)? / (*b)? - 1.0))
        .filter(|v| v.is_finite())
        .collect()
}

/// Per seed: PUL `100·(before − after)/before` (seeds whose original shows none dropped).
fn pul(before: &[Option<f64>], after: &[Option<f64>]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| crate::metrics::evaluation::percentage_of_unlearning((*b)?, (*a)?))
        .collect()
}

/// A percentage (of a change: may be negative or above 100).
fn pct(i: &Option<Interval>) -> String {
    i.map_or("–".into(), |i| format!("{}%", i.show(100.0, 1)))
}

/// A share as a percentage; its interval's ends are clipped to [0, 100] for display (a
/// t-interval of a share can cross them; the verdicts use it unclipped).
fn share(i: &Option<Interval>) -> String {
    i.map_or("–".into(), |i| {
        let clipped = Interval {
            lo: i.lo.max(0.0),
            hi: i.hi.min(1.0),
            ..i
        };
        format!("{}%", clipped.show(100.0, 1))
    })
}
fn num(i: &Option<Interval>, decimals: usize) -> String {
    i.map_or("–".into(), |i| i.show(1.0, decimals))
}
/// A share's interval clipped to [0, 1] for a plot.
fn clip_share(i: Interval) -> Interval {
    Interval {
        lo: i.lo.max(0.0),
        hi: i.hi.min(1.0),
        ..i
    }
}
fn of(values: &[Option<f64>]) -> Option<Interval> {
    Interval::of(&values.iter().flatten().copied().collect::<Vec<_>>())
}

/// One statement's figure and rule.
struct Check {
    text: &'static str,
    interval: Option<Interval>,
    rule: fn(&Interval) -> Verdict,
    how: String,
    /// Whether the original must show the forgotten content for it to mean anything.
    needs_forgetting: bool,
}

struct Reader<'a> {
    plan: &'a Plan,
    results: &'a Results,
    report: ClaimReport,
}

impl Reader<'_> {
    /// `metric` before and after, per seed, of `arm` in `stage`.
    fn series(
        &self,
        stage: Stage,
        arm: &str,
        sampler: Sampler,
        metric: Metric,
    ) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
        self.plan
            .seeds()
            .into_iter()
            .map(|seed| {
                let (b, a) = self
                    .results
                    .before_after(self.plan, stage, arm, seed, sampler);
                (b.and_then(metric), a.and_then(metric))
            })
            .unzip()
    }

    /// Why the original cannot show the forgetting (its evaluation's caveat), if it cannot.
    fn caveat(&self, stage: Stage, arm: &str, sampler: Sampler) -> Option<String> {
        self.plan.seeds().into_iter().find_map(|seed| {
            let (b, _) = self
                .results
                .before_after(self.plan, stage, arm, seed, sampler);
            b?.how.as_ref()?.caveat.clone()
        })
    }

    /// Provenance lines of the first seed's result under `sampler`.
    fn note_provenance(&mut self, stage: Stage, arm: &str, sampler: Sampler, what: &str) {
        let (before, after) = self.results.before_after(self.plan, stage, arm, 0, sampler);
        for (role, e) in [("original", before), ("result", after)] {
            if let Some(e) = e {
                let fid = e.fid.map(|_| e.label("FID")).unwrap_or_default();
                self.report.provenance.push((
                    format!("{what}, {}, {role}", sampler.name()),
                    format!("{} {fid}", e.provenance).trim().to_string(),
                ));
            }
        }
    }

    fn arms(&self, stage: Stage) -> Vec<(String, String)> {
        self.plan.stage(stage).map(|p| p.arms()).unwrap_or_default()
    }

    fn siss(&mut self) {
        let stage = Stage::Tshirt;
        let arms = self.arms(stage);
        let siss_arms: Vec<&(String, String)> =
            arms.iter().filter(|(a, _)| a.starts_with("siss")).collect();
        for sampler in Sampler::BOTH {
            let mut rows = Vec::new();
            let mut points = Vec::new();
            let (orig_copy, _) = self.series(stage, &arms[0].0, sampler, copy_rate);
            let (orig_fid, _) = self.series(stage, &arms[0].0, sampler, fid);
            let (orig_conf, _) = self.series(stage, &arms[0].0, sampler, confident);
            rows.push(vec![
                "original".into(),
                share(&of(&orig_copy)),
                num(&of(&orig_fid), 1),
                share(&of(&orig_conf)),
            ]);
            if let (Some(c), Some(f)) = (of(&orig_copy), of(&orig_fid)) {
                points.push(("original".to_string(), clip_share(c), f));
            }
            let mut figures: Vec<(String, Option<Interval>, Option<Interval>)> = Vec::new();
            for (arm, label) in &arms {
                let (_, copies) = self.series(stage, arm, sampler, copy_rate);
                let (_, fids) = self.series(stage, arm, sampler, fid);
                let (_, conf) = self.series(stage, arm, sampler, confident);
                let (c, f) = (of(&copies), of(&fids));
                rows.push(vec![
                    label.clone(),
                    share(&c),
                    num(&f, 1),
                    share(&of(&conf)),
                ]);
                if let (Some(c), Some(f)) = (c, f) {
                    points.push((label.clone(), clip_share(c), f));
                }
                figures.push((arm.clone(), c, f));
            }
            self.report.tables.push(Table {
                title: format!(
                    "The T-shirt after {} steps, {} (mean [95% CI] over {} seeds)",
                    self.plan.settings.tshirt_steps,
                    sampler.name(),
                    self.plan.settings.seeds
                ),
                header: ["model", "T-shirt copies", "FID", "confident digits"]
                    .map(String::from)
                    .to_vec(),
                rows,
            });
            self.report.figures.push((
                format!("siss-pareto-{}", sampler.name().to_lowercase()),
                Figure::Scatter {
                    title: format!("Forgetting vs quality ({})", sampler.name()),
                    x_label: "T-shirt copies (share of samples)".into(),
                    y_label: "FID (lower is better)".into(),
                    points,
                },
            ));
            let none_drawn = of(&orig_copy).is_none_or(|i| i.mean == 0.0);
            let caveat = none_drawn.then(|| {
                format!(
                    "the original draws no T-shirt copy in these {} samples under {}: forgetting cannot show",
                    self.plan.settings.samples,
                    sampler.name()
                )
            });
            self.siss_pareto(sampler, &figures, caveat.as_deref());
            self.neggrad_collapse(sampler, &orig_conf);
            self.naive_slow(sampler, &siss_arms, caveat.as_deref());
            self.note_provenance(stage, &arms[0].0, sampler, "T-shirt");
        }
    }

    fn siss_pareto(
        &mut self,
        sampler: Sampler,
        figures: &[(String, Option<Interval>, Option<Interval>)],
        caveat: Option<&str>,
    ) {
        let text = "SISS is on the Pareto front of (T-shirt copies, FID) against naive deletion and NegGrad";
        let competitors: Vec<_> = figures
            .iter()
            .filter(|(a, _, _)| a == "finetune" || a == "neggrad")
            .filter_map(|(a, c, f)| Some((a.clone(), (*c)?, (*f)?)))
            .collect();
        let siss: Vec<_> = figures
            .iter()
            .filter(|(a, _, _)| a.starts_with("siss"))
            .filter_map(|(a, c, f)| Some((a.clone(), (*c)?, (*f)?)))
            .collect();
        if let Some(why) = caveat {
            self.report
                .state(sampler, text, Verdict::Inconclusive, why.to_string());
            return;
        }
        if siss.is_empty() || competitors.len() < 2 {
            self.report.state(
                sampler,
                text,
                Verdict::Inconclusive,
                "runs missing (see Runs)".into(),
            );
            return;
        }
        let clearly_lower = |a: &Interval, b: &Interval| a.bounded() && b.bounded() && a.hi < b.lo;
        // S is clearly on the front: every competitor is clearly worse on some axis.
        let on_front = |s: &(String, Interval, Interval)| {
            competitors
                .iter()
                .all(|c| clearly_lower(&s.1, &c.1) || clearly_lower(&s.2, &c.2))
        };
        // S is clearly dominated: some competitor is no worse in mean on both axes and
        // clearly better on one.
        let dominated = |s: &(String, Interval, Interval)| {
            competitors.iter().any(|c| {
                c.1.mean <= s.1.mean
                    && c.2.mean <= s.2.mean
                    && (clearly_lower(&c.1, &s.1) || clearly_lower(&c.2, &s.2))
            })
        };
        let verdict = if siss.iter().any(on_front) {
            Verdict::Holds
        } else if siss.iter().all(dominated) {
            Verdict::DoesNotHold
        } else {
            Verdict::Inconclusive
        };
        let describe = |(a, c, f): &(String, Interval, Interval)| {
            format!("{a}: copies {}%, FID {}", c.show(100.0, 1), f.show(1.0, 1))
        };
        let evidence = format!(
            "holds when some SISS λ is clearly better than each competitor on one axis (95% intervals apart), does not when every SISS λ is clearly dominated; {}",
            siss.iter()
                .chain(&competitors)
                .map(describe)
                .collect::<Vec<_>>()
                .join("; ")
        );
        self.report.state(sampler, text, verdict, evidence);
    }

    fn neggrad_collapse(&mut self, sampler: Sampler, orig_conf: &[Option<f64>]) {
        let text = "NegGrad collapses quality";
        let (_, after) = self.series(Stage::Tshirt, "neggrad", sampler, confident);
        let (Some(neg), Some(orig)) = (of(&after), of(orig_conf)) else {
            self.report.state(
                sampler,
                text,
                Verdict::Inconclusive,
                "runs missing (see Runs)".into(),
            );
            return;
        };
        let threshold = COLLAPSE_SHARE * orig.mean;
        self.report.state(
            sampler,
            text,
            Verdict::below(&neg, threshold),
            format!(
                "confident digits after NegGrad {}% vs the original's {:.1}%: holds when the interval lies below half the original's ({:.1}%)",
                neg.show(100.0, 1),
                100.0 * orig.mean,
                100.0 * threshold
            ),
        );
    }

    fn naive_slow(
        &mut self,
        sampler: Sampler,
        siss_arms: &[&(String, String)],
        caveat: Option<&str>,
    ) {
        let text =
            "Naive deletion forgets slowly (more T-shirt copies than SISS after the same steps)";
        if let Some(why) = caveat {
            self.report
                .state(sampler, text, Verdict::Inconclusive, why.to_string());
            return;
        }
        // SISS at the λ nearest its default 0.5.
        let Some((siss_arm, siss_label)) = siss_arms.iter().min_by(|a, b| {
            let d = |s: &str| (lambda_of(s) - 0.5).abs();
            d(&a.0).total_cmp(&d(&b.0))
        }) else {
            return;
        };
        let (_, naive) = self.series(Stage::Tshirt, "finetune", sampler, copy_rate);
        let (_, siss) = self.series(Stage::Tshirt, siss_arm, sampler, copy_rate);
        match Interval::paired(&naive, &siss) {
            Some(d) => self.report.state(
                sampler,
                text,
                Verdict::above(&d, 0.0),
                format!(
                    "naive deletion − {siss_label}, T-shirt copies, paired by seed: {} points; holds when the interval lies above 0",
                    d.show(100.0, 1)
                ),
            ),
            None => self.report.state(
                sampler,
                text,
                Verdict::Inconclusive,
                "runs missing (see Runs)".into(),
            ),
        }
    }

    fn erasediff(&mut self) {
        let stage = Stage::Class7;
        let arm = "erasediff";
        for sampler in Sampler::BOTH {
            let caveat = self.caveat(stage, arm, sampler);
            let (p_before, p_after) = self.series(stage, arm, sampler, class_probability);
            let (h_before, h_after) = self.series(stage, arm, sampler, entropy);
            let (f_before, f_after) = self.series(stage, arm, sampler, fid);
            let (r_before, r_after) = self.series(stage, arm, sampler, class_rate);
            self.report.tables.push(Table {
                title: format!(
                    "EraseDiff forgetting the 7 after {} steps, {} (mean [95% CI] over {} seeds)",
                    self.plan.settings.class_steps,
                    sampler.name(),
                    self.plan.settings.seeds
                ),
                header: [
                    "model",
                    "P(y = 7)",
                    "7s among class-7 samples",
                    "entropy (nats)",
                    "FID (unguided)",
                ]
                .map(String::from)
                .to_vec(),
                rows: vec![
                    vec![
                        "original".into(),
                        num(&of(&p_before), 3),
                        share(&of(&r_before)),
                        num(&of(&h_before), 3),
                        num(&of(&f_before), 1),
                    ],
                    vec![
                        "EraseDiff".into(),
                        num(&of(&p_after), 3),
                        share(&of(&r_after)),
                        num(&of(&h_after), 3),
                        num(&of(&f_after), 1),
                    ],
                ],
            });
            let bars = [
                ("P(y=7) original", of(&p_before)),
                ("P(y=7) EraseDiff", of(&p_after)),
            ]
            .into_iter()
            .filter_map(|(l, i)| Some((l.to_string(), i?)))
            .collect();
            self.report.figures.push((
                format!("erasediff-{}", sampler.name().to_lowercase()),
                Figure::Bars {
                    title: format!("P(y = 7) on class-7 prompts ({})", sampler.name()),
                    y_label: "mean P(y = 7)".into(),
                    bars,
                },
            ));
            let checks = [
                Check {
                    text: "P(y = c_f) falls on forgotten-class prompts",
                    interval: Interval::paired(&p_after, &p_before),
                    rule: |d| Verdict::below(d, 0.0),
                    how: "after − before, paired by seed; holds when the interval lies below 0"
                        .into(),
                    needs_forgetting: true,
                },
                Check {
                    text: "the classifier's entropy on forgotten-class prompts rises",
                    interval: Interval::paired(&h_after, &h_before),
                    rule: |d| Verdict::above(d, 0.0),
                    how: "after − before (nats), paired by seed; holds when the interval lies above 0"
                        .into(),
                    needs_forgetting: true,
                },
                Check {
                    text: "at a small quality cost",
                    interval: Interval::of(&relative(&f_before, &f_after)),
                    rule: |d| Verdict::below(d, SMALL_QUALITY_COST),
                    how: format!(
                        "relative rise of the unguided samples' FID, paired by seed; holds when the interval lies below {:.0}%",
                        100.0 * SMALL_QUALITY_COST
                    ),
                    needs_forgetting: false,
                },
            ];
            for check in checks {
                let (verdict, evidence) = match (&caveat, check.interval) {
                    (Some(why), _) if check.needs_forgetting => {
                        (Verdict::Inconclusive, format!("uninformative: {why}"))
                    }
                    (_, Some(i)) => (
                        (check.rule)(&i),
                        format!("{}: {}", i.show(1.0, 3), check.how),
                    ),
                    (_, None) => (Verdict::Inconclusive, "runs missing (see Runs)".into()),
                };
                self.report.state(sampler, check.text, verdict, evidence);
            }
            self.note_provenance(stage, arm, sampler, "class 7");
        }
    }

    fn vdu(&mut self) {
        let stage = Stage::Digit1;
        let arms = self.arms(stage);
        for sampler in Sampler::BOTH {
            let mut rows = Vec::new();
            let mut pul_bars = Vec::new();
            let mut figures: Vec<(String, String, Option<Interval>, Option<Interval>)> = vec![];
            let (orig_rate, _) = self.series(stage, &arms[0].0, sampler, class_rate);
            rows.push(vec![
                "original".into(),
                share(&of(&orig_rate)),
                "–".into(),
                num(&of(&self.series(stage, &arms[0].0, sampler, fid).0), 1),
                "–".into(),
            ]);
            for (arm, label) in &arms {
                let (r_before, r_after) = self.series(stage, arm, sampler, class_rate);
                let (f_before, f_after) = self.series(stage, arm, sampler, fid);
                let p = Interval::of(&pul(&r_before, &r_after));
                let rise = Interval::of(&relative(&f_before, &f_after));
                rows.push(vec![
                    label.clone(),
                    share(&of(&r_after)),
                    num(&p, 1),
                    num(&of(&f_after), 1),
                    pct(&rise),
                ]);
                if let Some(p) = p {
                    pul_bars.push((label.clone(), p));
                }
                figures.push((arm.clone(), label.clone(), p, rise));
            }
            self.report.tables.push(Table {
                title: format!(
                    "Forgetting the digit 1 from the unconditional branch, forget data only, {} steps, {} (mean [95% CI] over {} seeds; VDU's paper reports PUL {VDU_PAPER_PUL_DIGIT1}% for the digit 1)",
                    self.plan.settings.vdu_steps,
                    sampler.name(),
                    self.plan.settings.seeds
                ),
                header: ["model", "1s among samples", "PUL (%)", "FID", "FID rise"]
                    .map(String::from)
                    .to_vec(),
                rows,
            });
            self.report.figures.push((
                format!("vdu-pul-{}", sampler.name().to_lowercase()),
                Figure::Bars {
                    title: format!(
                        "Percentage of unlearning of the digit 1 ({})",
                        sampler.name()
                    ),
                    y_label: "PUL (%)".into(),
                    bars: pul_bars,
                },
            ));
            self.vdu_verdicts(sampler, &figures);
            self.note_provenance(stage, &arms[0].0, sampler, "digit 1");
        }
    }

    fn vdu_verdicts(
        &mut self,
        sampler: Sampler,
        figures: &[(String, String, Option<Interval>, Option<Interval>)],
    ) {
        let neg = figures.iter().find(|f| f.0 == "neggrad");
        let vdus: Vec<_> = figures.iter().filter(|f| f.0.starts_with("vdu")).collect();
        let (Some(neg), Some(paper)) = (neg, vdus.first()) else {
            return;
        };
        let keeps = |rise: &Option<Interval>| {
            rise.map_or(Verdict::Inconclusive, |r| {
                Verdict::below(&r, SMALL_QUALITY_COST)
            })
        };
        let neg_loses = keeps(&neg.3).negated();
        // The best γ: the highest PUL among those that keep quality, else the smallest rise.
        let best = vdus
            .iter()
            .filter(|f| keeps(&f.3) == Verdict::Holds)
            .max_by(|a, b| mean(&a.2).total_cmp(&mean(&b.2)))
            .or_else(|| {
                vdus.iter()
                    .min_by(|a, b| mean_or_inf(&a.3).total_cmp(&mean_or_inf(&b.3)))
            })
            .unwrap_or(paper);
        let show = |f: &(String, String, Option<Interval>, Option<Interval>)| {
            format!("{}: PUL {}%, FID rise {}", f.1, num(&f.2, 1), pct(&f.3))
        };
        let best_of = format!("the best γ of the {} tried", vdus.len());
        for (which, f) in [
            ("Lethe's default γ (the paper publishes none)", paper),
            (best_of.as_str(), best),
        ] {
            self.report.state(
                sampler,
                &format!("VDU keeps quality where NegGrad does not, at {which}: {}", f.1),
                keeps(&f.3).and(neg_loses),
                format!(
                    "holds when VDU's FID rise lies below {:.0}% and NegGrad's above it (95% intervals); {}; {}",
                    100.0 * SMALL_QUALITY_COST,
                    show(f),
                    show(neg)
                ),
            );
        }
    }

    fn dimra(&mut self) {
        let arms = self.arms(Stage::Class7);
        let steps = self.plan.settings.attack_steps;
        // The curves (DDIM: the attack runs' own probes).
        let mut series: Series = Vec::new();
        for (arm, label) in &arms {
            let mut by_step: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
            for seed in self.plan.seeds() {
                let Some(trial) = self
                    .plan
                    .stage(Stage::Dimra)
                    .and_then(|p| p.find(arm, seed))
                else {
                    continue;
                };
                let Some(run) = self.results.run(Stage::Dimra, &trial.name) else {
                    continue;
                };
                let start = run.baseline.as_ref().map(|e| (0, e));
                for (step, e) in start
                    .into_iter()
                    .chain(run.curve.iter().map(|(s, e)| (*s, e)))
                {
                    if let Some(r) = e.forgotten_class_rate {
                        by_step.entry(step).or_default().push(r);
                    }
                }
            }
            let points: Vec<(f64, Interval)> = by_step
                .iter()
                .filter_map(|(s, v)| Some((*s as f64, clip_share(Interval::of(v)?))))
                .collect();
            series.push((label.clone(), points));
        }
        let (orig, _) = self.series(Stage::Class7, &arms[0].0, Sampler::Ddim, class_rate);
        self.report.figures.push((
            "dimra-curves-ddim".into(),
            Figure::Curves {
                title: "7s among class-7 samples along the DiMRA attack (DDIM)".into(),
                x_label: "attack step".into(),
                y_label: "share classified 7".into(),
                series,
                reference: of(&orig).map(|i| ("original".to_string(), i.mean)),
            },
        ));
        for sampler in Sampler::BOTH {
            let (orig, _) = self.series(Stage::Class7, &arms[0].0, sampler, class_rate);
            let mut rows = vec![vec![
                "original".into(),
                share(&of(&orig)),
                "–".into(),
                "–".into(),
                "–".into(),
            ]];
            let mut rises: Vec<(String, String, Vec<Option<f64>>)> = Vec::new();
            // Whether each arm's unlearning removed 7s at all (original − start > 0, paired):
            // an attack cannot reverse forgetting that did not happen.
            let mut forgot: Vec<(String, Option<Interval>)> = Vec::new();
            for (arm, label) in &arms {
                let (start, end) = self.series(Stage::Dimra, arm, sampler, class_rate);
                forgot.push((arm.clone(), Interval::paired(&orig, &start)));
                let rise: Vec<Option<f64>> = end
                    .iter()
                    .zip(&start)
                    .map(|(e, s)| Some((*e)? - (*s)?))
                    .collect();
                let recovered: Vec<f64> = start
                    .iter()
                    .zip(&end)
                    .zip(&orig)
                    .filter_map(|((s, e), o)| {
                        let (o, s, e) = ((*o)?, (*s)?, (*e)?);
                        let gap = o - s;
                        (gap > 0.0).then(|| (e - s) / gap)
                    })
                    .collect();
                rows.push(vec![
                    label.clone(),
                    share(&of(&start)),
                    share(&of(&end)),
                    pct(&of(&rise)),
                    pct(&Interval::of(&recovered)),
                ]);
                rises.push((arm.clone(), label.clone(), rise));
            }
            self.report.tables.push(Table {
                title: format!(
                    "DiMRA, {steps} attack steps, {} (mean [95% CI] over {} seeds)",
                    sampler.name(),
                    self.plan.settings.seeds
                ),
                header: [
                    "unlearned with",
                    "7s after unlearning",
                    "after the attack",
                    "rise",
                    "share of the forgotten 7s recovered",
                ]
                .map(String::from)
                .to_vec(),
                rows,
            });
            let caveat = self.caveat(Stage::Class7, &arms[0].0, sampler);
            let not_forgotten = |arm: &str, label: &str| -> Option<String> {
                let removed = forgot.iter().find(|f| f.0 == arm)?.1?;
                (Verdict::above(&removed, 0.0) != Verdict::Holds).then(|| {
                    format!(
                        "{label} did not clearly remove 7s in these runs (original − after unlearning: {} points, paired by seed): nothing to reverse",
                        removed.show(100.0, 1)
                    )
                })
            };
            for (arm, label, rise) in rises.iter().filter(|r| r.0 != "dimum") {
                let text =
                    format!("fine-tuning-based unlearning ({label}) is reversed by the attack");
                let (verdict, evidence) = match (&caveat, of(rise)) {
                    (Some(why), _) => (Verdict::Inconclusive, format!("uninformative: {why}")),
                    _ if not_forgotten(arm, label).is_some() => (
                        Verdict::Inconclusive,
                        not_forgotten(arm, label).unwrap_or_default(),
                    ),
                    (_, Some(i)) => (
                        Verdict::above(&i, 0.0),
                        format!(
                            "rise of the share of 7s over {steps} attack steps, paired by seed: {} points; holds when the interval lies above 0 (the table gives how much of the forgotten share came back)",
                            i.show(100.0, 1)
                        ),
                    ),
                    _ => (
                        Verdict::Inconclusive,
                        format!("runs missing ({arm}; see Runs)"),
                    ),
                };
                self.report.state(sampler, &text, verdict, evidence);
            }
            let rise_of = |a: &str| rises.iter().find(|r| r.0 == a).map(|r| r.2.clone());
            if let (Some(ed), Some(dm)) = (rise_of("erasediff"), rise_of("dimum")) {
                let text =
                    "DiMUM resists the attack (its forgetting comes back less than EraseDiff's)";
                let unforgotten =
                    not_forgotten("erasediff", "EraseDiff").or(not_forgotten("dimum", "DiMUM"));
                let (verdict, evidence) = match (&caveat, Interval::paired(&ed, &dm)) {
                    (Some(why), _) => (Verdict::Inconclusive, format!("uninformative: {why}")),
                    _ if unforgotten.is_some() => {
                        (Verdict::Inconclusive, unforgotten.unwrap_or_default())
                    }
                    (_, Some(d)) => (
                        Verdict::above(&d, 0.0),
                        format!(
                            "EraseDiff's rise − DiMUM's, paired by seed: {} points; holds when the interval lies above 0",
                            d.show(100.0, 1)
                        ),
                    ),
                    _ => (Verdict::Inconclusive, "runs missing (see Runs)".into()),
                };
                self.report.state(sampler, text, verdict, evidence);
            }
            self.note_provenance(Stage::Dimra, &arms[0].0, sampler, "attack");
        }
    }
}

fn lambda_of(arm: &str) -> f64 {
    arm.trim_start_matches("siss-lambda")
        .parse()
        .unwrap_or(f64::NAN)
}
fn mean(i: &Option<Interval>) -> f64 {
    i.map_or(f64::NEG_INFINITY, |i| i.mean)
}
fn mean_or_inf(i: &Option<Interval>) -> f64 {
    i.map_or(f64::INFINITY, |i| i.mean)
}
