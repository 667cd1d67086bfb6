//! Means over seeds with Student-t 95% confidence intervals, and the three-way verdict a
//! claim gets from an interval: the whole interval on the claim's side (holds), the whole
//! interval on the other side (does not hold), or straddling it (inconclusive).

use serde::Serialize;

/// `scipy.stats.t.ppf(0.975, df)` for df = 1…30 (`tests/fixtures/golden/t_quantiles.json`
/// holds scipy's values and a test compares them): the two-sided 95% quantile.
const T975: [f64; 30] = [
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.04523, 2.042272,
];

/// The two-sided 95% Student-t quantile with `df` degrees of freedom (df > 30: the
/// Cornish–Fisher expansion around the normal quantile to 1/ν², within 1e-4 of scipy's).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T975[df - 1],
        _ => {
            let (z, nu) = (1.959_963_985, df as f64);
            let z3 = z * z * z;
            let z5 = z3 * z * z;
            z + (z3 + z) / (4.0 * nu) + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * nu * nu)
        }
    }
}

/// A mean over seeds with its 95% confidence interval (`lo`/`hi` NaN below two values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl Interval {
    /// The t-interval of the mean of `values` (NaNs dropped).
    pub fn of(values: &[f64]) -> Option<Self> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return None;
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let half = if n < 2 {
            f64::NAN
        } else {
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t975(n - 1) * (var / n as f64).sqrt()
        };
        Some(Self {
            mean,
            lo: mean - half,
            hi: mean + half,
            n,
        })
    }

    /// The interval of the mean paired difference `a[i] − b[i]` (pairs with a missing side
    /// are dropped).
    pub fn paired(a: &[Option<f64>], b: &[Option<f64>]) -> Option<Self> {
        let d: Vec<f64> = a
            .iter()
            .zip(b)
            .filter_map(|(a, b)| Some((*a)? - (*b)?))
            .collect();
        Self::of(&d)
    }

    /// Whether the interval is known (two values or more).
    pub fn bounded(&self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }

    /// `12.3 [9.1, 15.5]` with `scale` applied (100 for percentages).
    pub fn show(&self, scale: f64, decimals: usize) -> String {
        if self.bounded() {
            format!(
                "{:.d$} [{:.d$}, {:.d$}]",
                self.mean * scale,
                self.lo * scale,
                self.hi * scale,
                d = decimals
            )
        } else {
            format!("{:.d$} (n = {})", self.mean * scale, self.n, d = decimals)
        }
    }
}

/// A claim's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    DoesNotHold,
    Inconclusive,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::DoesNotHold => "does not hold",
            Self::Inconclusive => "inconclusive",
        }
    }

    /// Holds when the whole interval is above `threshold`, does not when it is wholly below
    /// it; an unbounded interval (one seed) is inconclusive.
    pub fn above(interval: &Interval, threshold: f64) -> Self {
        if !interval.bounded() {
            Self::Inconclusive
        } else if interval.lo > threshold {
            Self::Holds
        } else if interval.hi < threshold {
            Self::DoesNotHold
        } else {
            Self::Inconclusive
        }
    }

    /// Holds when the whole interval is below `threshold`.
    pub fn below(interval: &Interval, threshold: f64) -> Self {
        Self::above(interval, threshold).negated()
    }

    /// The verdict on the opposite statement.
    pub fn negated(self) -> Self {
        match self {
            Self::Holds => Self::DoesNotHold,
            Self::DoesNotHold => Self::Holds,
            Self::Inconclusive => Self::Inconclusive,
        }
    }

    /// Both must hold; either failing fails it.
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::DoesNotHold, _) | (_, Self::DoesNotHold) => Self::DoesNotHold,
            (Self::Holds, Self::Holds) => Self::Holds,
            _ => Self::Inconclusive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_t_interval_matches_the_textbook_one() {
        // 1, 2, 3: mean 2, s = 1, half width t(2) / √3 = 4.302653 / 1.7320508.
        let i = Interval::of(&[1.0, 2.0, 3.0]).unwrap();
        assert!((i.mean - 2.0).abs() < 1e-12);
        assert!((i.hi - 2.0 - 4.302653 / 3f64.sqrt()).abs() < 1e-9);
        assert!(!Interval::of(&[5.0]).unwrap().bounded());
        assert!(Interval::of(&[f64::NAN]).is_none());
        assert!((t975(31) - 2.039513).abs() < 1e-4 && (t975(120) - 1.979930).abs() < 1e-4);
    }

    #[test]
    fn paired_differences_drop_incomplete_pairs() {
        let i = Interval::paired(
            &[Some(3.0), Some(5.0), None],
            &[Some(1.0), Some(2.0), Some(9.0)],
        )
        .unwrap();
        assert_eq!(i.n, 2);
        assert!((i.mean - 2.5).abs() < 1e-12);
    }

    #[test]
    fn verdicts_need_the_whole_interval_on_one_side() {
        let i = |lo, hi| Interval {
            mean: (lo + hi) / 2.0,
            lo,
            hi,
            n: 3,
        };
        assert_eq!(Verdict::above(&i(0.1, 0.4), 0.0), Verdict::Holds);
        assert_eq!(Verdict::above(&i(-0.4, -0.1), 0.0), Verdict::DoesNotHold);
        assert_eq!(Verdict::above(&i(-0.1, 0.4), 0.0), Verdict::Inconclusive);
        assert_eq!(Verdict::below(&i(-0.4, -0.1), 0.0), Verdict::Holds);
        let one = Interval::of(&[1.0]).unwrap();
        assert_eq!(Verdict::above(&one, 0.0), Verdict::Inconclusive);
        assert_eq!(
            Verdict::Holds.and(Verdict::Inconclusive),
            Verdict::Inconclusive
        );
        assert_eq!(
            Verdict::Holds.and(Verdict::DoesNotHold),
            Verdict::DoesNotHold
        );
    }
}
