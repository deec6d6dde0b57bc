//! A pool of TorchScript modules, so concurrent forwards never queue on one lock.
//!
//! A caller checks a module out (a lock held for one `Vec::pop`), runs its
//! forward with no lock held, and puts it back (one `Vec::push`). When every
//! module is busy, the pool loads one more from the bytes it kept: the pool
//! grows to the number of threads that ever forwarded at once, and no more.
//! Each module also keeps the input tensor it last used, so a steady stream of
//! same-shaped batches reuses it instead of asking libtorch for a new one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tch::{CModule, Device, Tensor};

use crate::error::{load_error, torch_message};
use engine_api::Result;

/// One pooled module and its reusable input tensor.
pub(crate) struct Slot {
    /// The loaded module, in eval mode, on the backend's device.
    pub module: CModule,
    /// The input tensor of the last forward on this module, reused while the
    /// batch shape stays the same.
    pub input: Option<([i64; 4], Tensor)>,
}

/// Idle modules plus what it takes to load another.
pub(crate) struct ModulePool {
    bytes: Vec<u8>,
    device: Device,
    path: std::path::PathBuf,
    idle: Mutex<Vec<Slot>>,
    loaded: AtomicUsize,
}

impl ModulePool {
    /// A pool holding `first` (already loaded and probed) that loads more from `bytes`.
    pub fn new(first: CModule, bytes: Vec<u8>, device: Device, path: std::path::PathBuf) -> Self {
        Self {
            bytes,
            device,
            path,
            idle: Mutex::new(vec![Slot {
                module: first,
                input: None,
            }]),
            loaded: AtomicUsize::new(1),
        }
    }

    /// Loads a module from TorchScript bytes onto `device`, in eval mode.
    pub fn load_module(bytes: &[u8], device: Device, path: &std::path::Path) -> Result<CModule> {
        let mut reader = bytes;
        let mut module = CModule::load_data_on_device(&mut reader, device)
            .map_err(|e| load_error(path, &torch_message(&e)))?;
        module
            .f_set_eval()
            .map_err(|e| load_error(path, &torch_message(&e)))?;
        Ok(module)
    }

    /// Runs `work` on an idle module, loading a new one if all are busy, and
    /// returns the module to the pool afterwards (also when `work` fails; a
    /// panic drops it and the pool loads a fresh one next time).
    pub fn with_module<T>(&self, work: impl FnOnce(&mut Slot) -> Result<T>) -> Result<T> {
        let idle = lock(&self.idle).pop();
        let mut slot = match idle {
            Some(slot) => slot,
            None => {
                let module = Self::load_module(&self.bytes, self.device, &self.path)?;
                self.loaded.fetch_add(1, Ordering::Relaxed);
                Slot {
                    module,
                    input: None,
                }
            }
        };
        let result = work(&mut slot);
        lock(&self.idle).push(slot);
        result
    }

    /// How many modules the pool has loaded so far (idle or busy).
    pub fn loaded(&self) -> usize {
        self.loaded.load(Ordering::Relaxed)
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked (a `Vec`
/// push or pop), so poisoning is not an error here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
