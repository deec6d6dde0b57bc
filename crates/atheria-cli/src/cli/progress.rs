//! Progress for long loops: a bar with steps/s on a terminal, plain periodic
//! lines otherwise (logs, CI), so a long run is never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports progress through a loop of known length.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    start: Instant,
    last_line: Instant,
}

/// How often a plain line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    /// Starts reporting `total` units of work labelled `label`.
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let style =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            label: label.to_string(),
            total,
            start: now,
            last_line: now,
        }
    }

    /// Records that `done` units are complete.
    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if self.last_line.elapsed() >= LINE_EVERY || done == self.total => {
                self.last_line = Instant::now();
                let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
                tracing::info!(
                    "{} {done}/{} ({:.0}%), {rate:.1}/s",
                    self.label,
                    self.total,
                    100.0 * done as f64 / self.total.max(1) as f64
                );
            }
            None => {}
        }
    }

    /// Ends the bar (it stays on screen).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
