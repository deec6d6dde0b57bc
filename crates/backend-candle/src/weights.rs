//! Reading weights (through candle's safetensors loader) and checking them
//! against the architecture before any layer is built.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use engine_api::{Error, ModelSpec, Result};

use crate::layout;

/// A model's tensors as f32, by state_dict name, checked against its spec.
#[derive(Debug)]
pub struct Weights {
    origin: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// Reads safetensors bytes; `path` names them in errors. Float tensors
    /// of any width are converted to f32.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |what: String| Error::model(path, what);
        if bytes.is_empty() {
            return Err(bad(
                "the safetensors file is empty: re-export the model with python/export.py".into(),
            ));
        }
        let loaded = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| {
            bad(format!(
                "not a readable safetensors file ({e}): it may be truncated or corrupt; re-export it with python/export.py"
            ))
        })?;
        let mut tensors = HashMap::with_capacity(loaded.len());
        for (name, t) in loaded {
            if !t.dtype().is_float() {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {:?}; weights must be floating point",
                    t.dtype()
                )));
            }
            let shape = t.dims().to_vec();
            let values = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(format!("cannot read tensor `{name}`: {e}")))?;
            tensors.insert(name, (shape, values));
        }
        Ok(Self {
            origin: path.to_path_buf(),
            tensors,
        })
    }

    /// Wraps in-memory tensors; `origin` names them in errors.
    pub fn from_tensors(
        origin: PathBuf,
        list: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Result<Self> {
        let mut tensors = HashMap::with_capacity(list.len());
        for (name, shape, values) in list {
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if n != Some(values.len()) {
                return Err(Error::model(
                    &origin,
                    format!(
                        "tensor `{name}` has shape {shape:?} but {} values",
                        values.len()
                    ),
                ));
            }
            if tensors.insert(name.clone(), (shape, values)).is_some() {
                return Err(Error::model(
                    &origin,
                    format!("tensor `{name}` is given twice"),
                ));
            }
        }
        Ok(Self { origin, tensors })
    }

    /// Checks names and shapes against `spec`: one error listing every
    /// missing, unexpected and mis-shaped tensor.
    pub fn check(&self, spec: &ModelSpec) -> Result<()> {
        let expected = layout::expected(spec).map_err(|m| Error::model(&self.origin, m))?;
        let shape_of = |name: &str| self.tensors.get(name).map(|(s, _)| s.clone());
        if let Some(n) = layout::input_channels(spec.architecture, shape_of) {
            if n != spec.channels() {
                let d = if n.is_multiple_of(2) {
                    format!("d_state {}", n / 2)
                } else {
                    "no valid d_state".to_string()
                };
                return Err(Error::model(
                    &self.origin,
                    format!(
                        "the weights take {n} input channels ({d}) but model.json says d_state {} ({} channels): use the model.json exported with these weights",
                        spec.d_state,
                        spec.channels()
                    ),
                ));
            }
        }
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (name, shape) in &expected {
            match self.tensors.get(name) {
                None => missing.push(format!("{name} {shape:?}")),
                Some((got, _)) if got != shape => {
                    misshaped.push(format!("{name} is {got:?}, expected {shape:?}"))
                }
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<_> = self
            .tensors
            .keys()
            .filter(|k| !expected.iter().any(|(n, _)| n == *k))
            .cloned()
            .collect();
        unexpected.sort();
        if missing.is_empty() && misshaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        for (label, list) in [
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}: {}", list.join(", ")));
            }
        }
        Err(Error::model(
            &self.origin,
            format!(
                "weights do not match architecture {} (d_state {}, hidden_channels {}): {}",
                spec.architecture,
                spec.d_state,
                spec.hidden_channels
                    .map_or_else(|| "none".to_string(), |h| h.to_string()),
                parts.join("; ")
            ),
        ))
    }

    /// Moves one checked tensor's values out.
    pub fn take(&mut self, name: &str) -> Result<Vec<f32>> {
        self.tensors
            .remove(name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::model(&self.origin, format!("tensor `{name}` is missing")))
    }
}
