//! The threading rule, enforced (ARCHITECTURE.md): an engine steps only
//! from an ordinary thread, never from inside a rayon worker, and runs its
//! own parallel loops either on rayon's global pool or on a pool it was
//! given, while `forward` stays on the stepping thread.

use std::sync::Arc;

use engine_api::{Error, Result};
use rayon::ThreadPool;

/// Where an engine's own parallel sections (update, gather, scatter) run:
/// rayon's global pool, or a pool the caller gave the engine.
#[derive(Clone, Default)]
pub(crate) struct LoopPool(Option<Arc<ThreadPool>>);

impl LoopPool {
    /// The pool given to the engine, if any.
    pub fn get(&self) -> Option<&Arc<ThreadPool>> {
        self.0.as_ref()
    }

    /// Sets or clears the engine's own pool.
    pub fn set(&mut self, pool: Option<Arc<ThreadPool>>) {
        self.0 = pool;
    }

    /// Runs one parallel section: inside the engine's pool when it has one,
    /// else here (its rayon loops then use the global pool). Never call
    /// `forward` in `f`.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The start of every step: [`Error::NestedPool`] when the caller is a
    /// rayon worker (of any pool), where the backend's own pool would nest
    /// inside rayon's. Checked before anything is touched.
    pub fn check_caller(&self) -> Result<()> {
        let Some(index) = rayon::current_thread_index() else {
            return Ok(());
        };
        let whose = match &self.0 {
            Some(own) if own.current_thread_index().is_some() => "the engine's own pool",
            _ => "a rayon pool",
        };
        Err(Error::NestedPool {
            pool: format!(
                "worker {index} of {whose}, {} threads",
                rayon::current_num_threads()
            ),
        })
    }
}

impl std::fmt::Debug for LoopPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(p) => write!(f, "LoopPool(own, {} threads)", p.current_num_threads()),
            None => f.write_str("LoopPool(global)"),
        }
    }
}
