//! Frame-time statistics of the workbench's own work per frame (draining events, laying
//! out panels and plots) — shown in the status bar and printed by `lethe bench gui`.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Frames kept for the percentiles.
const WINDOW: usize = 600;

#[derive(Debug, Clone, Default)]
pub struct FrameStats {
    recent: VecDeque<f64>,
    pub frames: u64,
}

impl FrameStats {
    pub fn record(&mut self, frame: Duration) {
        self.recent.push_back(frame.as_secs_f64() * 1e3);
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
        self.frames += 1;
    }

    /// The `q`-quantile (0..=1) of the recent frame times in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        quantile(self.recent.iter().copied().collect(), q)
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

/// `lethe --frame-log FILE`: the frame statistics appended as a JSON line every few seconds,
/// with the process's resident memory, for soak tests (tools/soak_gui.sh).
pub struct FrameLog {
    path: PathBuf,
    started: Instant,
    last: Instant,
}

impl FrameLog {
    const EVERY: Duration = Duration::from_secs(5);

    pub fn new(path: PathBuf) -> Self {
        let now = Instant::now();
        Self {
            path,
            started: now,
            last: now,
        }
    }

    /// Appends a line when the last one is `EVERY` old. `step` is the run's, if one runs.
    pub fn tick(&mut self, stats: &FrameStats, step: Option<usize>) {
        if self.last.elapsed() < Self::EVERY {
            return;
        }
        self.last = Instant::now();
        let line = serde_json::json!({
            "seconds": self.started.elapsed().as_secs_f64(),
            "frames": stats.frames,
            "window": stats.len(),
            "p50_ms": stats.quantile_ms(0.5),
            "p99_ms": stats.quantile_ms(0.99),
            "max_ms": stats.quantile_ms(1.0),
            "step": step,
            "rss_kib": resident_kib(),
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("--frame-log {}: {e}", self.path.display());
        }
    }
}

/// VmRSS from /proc (Linux); `None` elsewhere.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Nearest-rank quantile of `values` (ms); `None` when empty.
pub fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(v.clone(), 0.99), Some(99.0));
        assert_eq!(quantile(v.clone(), 0.5), Some(50.0));
        assert_eq!(quantile(v, 1.0), Some(100.0));
        assert_eq!(quantile(vec![], 0.5), None);
        let mut s = FrameStats::default();
        for ms in [1, 2, 3, 40] {
            s.record(Duration::from_millis(ms));
        }
        assert_eq!(s.quantile_ms(0.99), Some(40.0));
    }
}
