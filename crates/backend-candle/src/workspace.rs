//! Activation buffers reused across forwards, so steady-state calls with one
//! shape do not allocate.

use std::sync::Mutex;

/// A set of growable f32 buffers for one forward at a time.
#[derive(Debug, Default)]
pub struct Workspace {
    bufs: Vec<Vec<f32>>,
}

impl Workspace {
    /// `N` disjoint buffers of the given lengths (contents unspecified).
    pub fn slots<const N: usize>(&mut self, lens: [usize; N]) -> [&mut [f32]; N] {
        if self.bufs.len() < N {
            self.bufs.resize_with(N, Vec::new);
        }
        let mut rest = &mut self.bufs[..];
        lens.map(|len| {
            let (first, tail) = std::mem::take(&mut rest)
                .split_first_mut()
                .expect("slots: the buffer list was just grown to N");
            rest = tail;
            if first.len() < len {
                first.resize(len, 0.0);
            }
            &mut first[..len]
        })
    }
}

/// Workspaces for concurrent callers: each forward borrows one and returns it.
#[derive(Debug, Default)]
pub struct WorkspacePool {
    free: Mutex<Vec<Workspace>>,
}

impl WorkspacePool {
    /// Runs `f` with a workspace of its own.
    pub fn with<R>(&self, f: impl FnOnce(&mut Workspace) -> R) -> R {
        let mut ws = self.lock().pop().unwrap_or_default();
        let out = f(&mut ws);
        self.lock().push(ws);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Workspace>> {
        // A panic elsewhere cannot leave a Vec of buffers inconsistent.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}
