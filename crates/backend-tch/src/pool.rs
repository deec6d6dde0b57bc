//! The TorchScript modules of one backend, one per concurrent forward.
//!
//! The pool itself is [`engine_api::pool::Pool`], the bounded pool ONNX
//! Runtime's sessions use too: a caller checks a module out (a lock held for
//! one `Vec::pop`), runs its forward with no lock held, and puts it back (one
//! `Vec::push`). When every module is busy and the pool is below its cap, it
//! loads one more from the bytes it kept; at the cap, the caller waits for a
//! module to come back. Each module also keeps the input tensors it last used
//! (the field's, and one per memory tensor of a recurrent law), so a steady
//! stream of same-shaped batches reuses them instead of asking libtorch for
//! new ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine_api::pool::{Factory, Pool};
use engine_api::Result;
use tch::{CModule, Device, Tensor};

use crate::error::{load_error, torch_message};
use crate::interior::Chain;

/// A reusable input tensor and the shape it was made for.
pub(crate) type Staged = Option<([i64; 4], Tensor)>;

/// One pooled module and its reusable input tensors.
pub(crate) struct Slot {
    /// The loaded module, in eval mode, on the backend's device.
    pub module: CModule,
    /// The input tensor of the last forward on this module, reused while the
    /// batch shape stays the same.
    pub input: Staged,
    /// The memory tensors of the last forward of a recurrent law, in
    /// model.json order (empty until the first such forward), reused the
    /// same way.
    pub memory: Vec<Staged>,
    /// The module's layers without padding ([`Chain`]), built on this
    /// module's first interior forward when the backend computes interiors.
    pub chain: Option<Chain>,
}

impl Slot {
    /// A slot for a freshly loaded module.
    fn new(module: CModule) -> Self {
        Self {
            module,
            input: None,
            memory: Vec::new(),
            chain: None,
        }
    }
}

/// A pool holding `first` (already loaded and probed) that loads more from
/// `bytes`, up to `max` modules.
pub(crate) fn module_pool(
    first: CModule,
    bytes: Arc<[u8]>,
    device: Device,
    origin: PathBuf,
    max: usize,
) -> Pool<Slot> {
    let factory: Factory<Slot> =
        Box::new(move || Ok(Slot::new(load_module(&bytes, device, &origin)?)));
    Pool::new(Slot::new(first), factory, max)
}

/// Loads a module from TorchScript bytes onto `device`, in eval mode.
pub(crate) fn load_module(bytes: &[u8], device: Device, origin: &Path) -> Result<CModule> {
    let mut reader = bytes;
    let mut module = CModule::load_data_on_device(&mut reader, device)
        .map_err(|e| load_error(origin, &torch_message(&e)))?;
    module
        .f_set_eval()
        .map_err(|e| load_error(origin, &torch_message(&e)))?;
    Ok(module)
}
