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
    /// The dense window a global model ran on, or the dense grid (rows, columns).
    pub window: Option<(usize, usize)>,
    /// Time copying cells into the batch.
    pub gather: Duration,
    /// Time in the backend's forward.
    pub forward: Duration,
    /// Time applying the update and writing cells back.
    pub scatter: Duration,
}
