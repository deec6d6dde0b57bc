use std::time::Duration;

/// What one step did and where its time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepStats {
    /// The step count after this step.
    pub step: u64,
    /// Cells holding matter after the step.
    pub occupied_cells: usize,
    /// Tiles the model ran on (0 for the dense engine).
    pub active_tiles: usize,
    /// Updated tiles held staged at once, beside the lattice, before being
    /// written: every active tile for an atomic step, a few rows of them
    /// for a rolling one ([`crate::SparseOptions::atomic_steps`] off); 0
    /// for the dense engines and a global law's window.
    pub staged_tiles: usize,
    /// Cells whose delta the model computed: the grid or window, or for
    /// the sparse engine its strips of active tiles with their halo, or
    /// without it (the tiles' rows) when the backend skips the halo's work
    /// (`ComputeBackend::computes_interior`); either way with the columns
    /// between runs of tiles and the empty end of a strip.
    pub model_cells: usize,
    /// The dense window a global model ran on, or the dense grid (rows, columns).
    pub window: Option<(usize, usize)>,
    /// Time copying cells into the batch.
    pub gather: Duration,
    /// Time in the backend's forward.
    pub forward: Duration,
    /// Time applying the update and writing cells back.
    pub scatter: Duration,
}

/// The time of several steps added up, for per-step averages.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    /// Steps added.
    pub steps: u32,
    /// Total [`StepStats::gather`].
    pub gather: Duration,
    /// Total [`StepStats::forward`].
    pub forward: Duration,
    /// Total [`StepStats::scatter`].
    pub scatter: Duration,
}

impl StepTimes {
    /// Runs `step` `steps` times, adding up their times; returns them with
    /// the last step's statistics (default ones when `steps` is 0).
    pub fn measure<E>(
        steps: usize,
        mut step: impl FnMut() -> Result<StepStats, E>,
    ) -> Result<(StepTimes, StepStats), E> {
        let (mut times, mut last) = (StepTimes::default(), StepStats::default());
        for _ in 0..steps {
            last = step()?;
            times.add(&last);
        }
        Ok((times, last))
    }

    /// Adds one step's times.
    pub fn add(&mut self, stats: &StepStats) {
        self.steps += 1;
        self.gather += stats.gather;
        self.forward += stats.forward;
        self.scatter += stats.scatter;
    }

    /// Mean milliseconds per step of (gather, forward, scatter); zeros
    /// before any step.
    pub fn per_step_ms(&self) -> (f64, f64, f64) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(self.steps.max(1));
        (ms(self.gather), ms(self.forward), ms(self.scatter))
    }

    /// The share of the step spent outside the backend's forward (gather and
    /// scatter), from 0 to 1; 0 before any step.
    pub fn outside_forward_share(&self) -> f64 {
        let total = (self.gather + self.forward + self.scatter).as_secs_f64();
        if total > 0.0 {
            (self.gather + self.scatter).as_secs_f64() / total
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_adds_every_step_and_keeps_the_last_or_stops_at_an_error() {
        let mut n = 0u64;
        let step = |n: &mut u64| {
            *n += 1;
            StepStats {
                step: *n,
                forward: Duration::from_millis(2),
                ..StepStats::default()
            }
        };
        let (times, last) = StepTimes::measure(3, || Ok::<_, ()>(step(&mut n))).expect("no error");
        assert_eq!((times.steps, last.step), (3, 3));
        assert_eq!(times.forward, Duration::from_millis(6));
        let mut calls = 0;
        let failed = StepTimes::measure(5, || {
            calls += 1;
            if calls == 2 {
                Err("step 2")
            } else {
                Ok(step(&mut n))
            }
        });
        assert_eq!(failed, Err("step 2"));
        assert_eq!(calls, 2, "measure must stop at the first error");
    }

    #[test]
    fn step_times_average_over_the_steps_added() {
        let mut t = StepTimes::default();
        assert_eq!(t.per_step_ms(), (0.0, 0.0, 0.0));
        assert_eq!(t.outside_forward_share(), 0.0);
        for ms in [1, 3] {
            t.add(&StepStats {
                gather: Duration::from_millis(ms),
                forward: Duration::from_millis(6 * ms),
                scatter: Duration::from_millis(ms),
                ..StepStats::default()
            });
        }
        assert_eq!(t.steps, 2);
        let (g, f, s) = t.per_step_ms();
        assert!((g - 2.0).abs() < 1e-9 && (f - 12.0).abs() < 1e-9 && (s - 2.0).abs() < 1e-9);
        assert!((t.outside_forward_share() - 0.25).abs() < 1e-9);
    }
}
