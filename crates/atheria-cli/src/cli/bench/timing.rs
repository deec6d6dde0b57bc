//! Warm-up and timed windows: steps/s as the median of several windows, so
//! one disturbed window on a shared machine moves the figure little.

use std::time::{Duration, Instant};

use atheria::StepStats;

use crate::cli::progress::Progress;

/// What the timed windows measured.
pub struct Timing {
    /// Steps/s of each window.
    pub windows: Vec<f64>,
    /// Timed steps.
    pub steps: u64,
    /// Wall time of all timed steps.
    pub total: Duration,
    /// Sums over the timed steps, as the engine reports them.
    pub gather: Duration,
    /// See `gather`.
    pub forward: Duration,
    /// See `gather`.
    pub scatter: Duration,
    /// Forward time of each window.
    pub forward_windows: Vec<Duration>,
    /// What the probe measured after each window (see [`time_windows`]).
    pub probe_windows: Vec<f64>,
    /// Steps per window.
    pub per_window: u64,
    /// The last step's statistics (active tiles, cells).
    pub last: StepStats,
}

impl Timing {
    /// Median steps/s over the windows.
    pub fn median(&self) -> f64 {
        median(&self.windows)
    }

    /// Share of the wall time spent in the backend's forward.
    pub fn forward_share(&self) -> f64 {
        self.forward.as_secs_f64() / self.total.as_secs_f64().max(1e-12)
    }

    /// Forward seconds per step of each window.
    pub fn forward_secs_windows(&self) -> Vec<f64> {
        self.forward_windows
            .iter()
            .map(|d| d.as_secs_f64() / self.per_window.max(1) as f64)
            .collect()
    }

    /// Milliseconds per timed step of one part.
    pub fn per_step_ms(&self, part: Duration) -> f64 {
        part.as_secs_f64() * 1e3 / self.steps.max(1) as f64
    }
}

/// The median (upper median for an even count); NaN for no values.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Lowest and highest value.
pub fn spread(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        })
}

/// An engine timed in windows interleaved with the main one's, so that a
/// ratio between the two compares moments of the same machine state.
pub struct Companion<'a> {
    /// One step of the companion.
    pub step: &'a mut dyn FnMut() -> anyhow::Result<StepStats>,
    /// Its steps per window.
    pub per_window: u64,
    /// Steps/s of each of its windows (filled in).
    pub windows: Vec<f64>,
}

/// Steps that fill about `window_secs` at `step_secs` per step (at least one).
pub fn steps_for(window_secs: f64, step_secs: f64) -> u64 {
    ((window_secs / step_secs.max(1e-6)).round() as u64).clamp(1, 10_000)
}

/// Warms up, then times `windows` windows of about `window_secs` each
/// (at least one step each), sized from the first step's time; after each
/// window, one window of the companion, if any, then the probe (a
/// measurement of the machine's state, such as an sgemm's GFLOP/s).
pub fn time_windows(
    label: &str,
    first_step: Duration,
    windows: usize,
    window_secs: f64,
    mut step: impl FnMut() -> anyhow::Result<StepStats>,
    mut companion: Option<&mut Companion>,
    mut probe: Option<&mut dyn FnMut() -> Option<f64>>,
) -> anyhow::Result<Timing> {
    let per_window = steps_for(window_secs, first_step.as_secs_f64());
    let warmup = (per_window / 4).clamp(1, 50);
    let mut progress = Progress::new(&format!("{label} warm-up"), warmup, false);
    for i in 0..warmup {
        step()?;
        progress.set(i + 1);
    }
    progress.finish();
    let mut t = Timing {
        windows: Vec::new(),
        steps: 0,
        total: Duration::ZERO,
        gather: Duration::ZERO,
        forward: Duration::ZERO,
        scatter: Duration::ZERO,
        forward_windows: Vec::new(),
        probe_windows: Vec::new(),
        per_window,
        last: StepStats::default(),
    };
    let mut progress = Progress::new(
        &format!("{label} timed"),
        per_window * windows as u64,
        false,
    );
    for w in 0..windows {
        let start = Instant::now();
        let mut forward = Duration::ZERO;
        for i in 0..per_window {
            let s = step()?;
            forward += s.forward;
            t.gather += s.gather;
            t.forward += s.forward;
            t.scatter += s.scatter;
            t.last = s;
            progress.set(w as u64 * per_window + i + 1);
        }
        let took = start.elapsed();
        t.total += took;
        t.steps += per_window;
        t.windows.push(per_window as f64 / took.as_secs_f64());
        t.forward_windows.push(forward);
        if let Some(c) = companion.as_deref_mut() {
            let start = Instant::now();
            for _ in 0..c.per_window {
                (c.step)()?;
            }
            c.windows
                .push(c.per_window as f64 / start.elapsed().as_secs_f64());
        }
        if let Some(value) = probe.as_deref_mut().and_then(|p| p()) {
            t.probe_windows.push(value);
        }
    }
    progress.finish();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (1.0, 3.0));
    }
}
