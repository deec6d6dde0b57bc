//! A recurrent law's memory beside the field: the tensors a model such as
//! `unet_convlstm` reads with the field and writes back for the next step
//! ([`engine_api::MemoryTensor`]), for one dense block (batch of one).
//!
//! The engines keep it as the backend wants it, one flat buffer of the
//! model's tensors one after another in model.json order
//! ([`engine_api::ModelSpec::memory_len`]), so a step hands it to
//! [`engine_api::ComputeBackend::forward_with_memory`] without a copy. State
//! files store each tensor under its own name, `[channels, H/stride,
//! W/stride]` ([`crate::state_file`]); one read from a file is matched to
//! the model by name when an engine adopts it ([`Memory::adopt`]).

use engine_api::{Error, MemoryTensor, ModelSpec, Result};

/// One named tensor of a [`Memory`]: `[channels, rows, cols]` floats at
/// `offset` in the memory's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEntry {
    /// The model's name for it (`h_state`).
    pub name: String,
    /// `[channels, rows, cols]`: the batch-of-one tensor without its batch.
    pub dims: [usize; 3],
    /// Where its values start in [`Memory::data`].
    pub offset: usize,
}

impl MemoryEntry {
    /// Floats in this tensor.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The memory of a recurrent law for one dense block: named tensors stored
/// one after another in one buffer. Empty for a law without memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Memory {
    entries: Vec<MemoryEntry>,
    data: Vec<f32>,
}

impl Memory {
    /// No memory (a law without memory, or a state file without it).
    pub fn none() -> Self {
        Self::default()
    }

    /// The memory `spec`'s law starts from on a `height` x `width` block:
    /// every tensor zero, as Atheria's engine starts it.
    pub fn zeros(spec: &ModelSpec, height: usize, width: usize) -> Result<Self> {
        let shape = engine_api::BatchShape::new(1, spec.channels(), height, width);
        let mut entries = Vec::with_capacity(spec.memory.len());
        let mut offset = 0;
        for t in &spec.memory {
            let [_, c, h, w] = t.dims(shape);
            entries.push(MemoryEntry {
                name: t.name.clone(),
                dims: [c, h, w],
                offset,
            });
            offset += c * h * w;
        }
        let data = crate::state::zeroed(offset, || {
            format!("the memory of model `{}` ({offset} values)", spec.name)
        })?;
        Ok(Self { entries, data })
    }

    /// A memory from named tensors, in the given order (as a state file
    /// holds them). Each value vector must hold `dims`' product of floats.
    pub fn from_tensors(tensors: Vec<(String, [usize; 3], Vec<f32>)>) -> Result<Self> {
        let mut entries = Vec::with_capacity(tensors.len());
        let mut data = Vec::with_capacity(tensors.iter().map(|t| t.2.len()).sum());
        for (name, dims, values) in tensors {
            let len: usize = dims.iter().product();
            if values.len() != len {
                return Err(Error::InvalidArgument(format!(
                    "memory `{name}` is {dims:?} ({len} values) but {} values were given",
                    values.len()
                )));
            }
            if entries.iter().any(|e: &MemoryEntry| e.name == name) {
                return Err(Error::InvalidArgument(format!(
                    "memory `{name}` is given twice"
                )));
            }
            entries.push(MemoryEntry {
                name,
                dims,
                offset: data.len(),
            });
            data.extend_from_slice(&values);
        }
        Ok(Self { entries, data })
    }

    /// True when there is no memory.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensors, in buffer order.
    pub fn entries(&self) -> &[MemoryEntry] {
        &self.entries
    }

    /// Every value, the tensors one after another: what
    /// [`engine_api::ComputeBackend::forward_with_memory`] reads.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Every value, to change (tests, tools that reset memory).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The values of the tensor named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &self.data[e.offset..e.offset + e.len()])
    }

    /// Sets every value to zero (Atheria's reset does this).
    pub fn clear(&mut self) {
        self.data.fill(0.0);
    }

    /// Exchanges the values with `next` (same length): an engine writes the
    /// next memory aside and commits it only when the step succeeds.
    pub(crate) fn swap_data(&mut self, next: &mut Vec<f32>) {
        debug_assert_eq!(next.len(), self.data.len());
        std::mem::swap(&mut self.data, next);
    }

    /// This memory laid out for `spec`'s law on a `height` x `width` block:
    /// zeros when there is none (a new run, or a state file without it, as
    /// in Atheria); the same tensors reordered to the model's order when
    /// every name and shape matches; otherwise an error naming the tensor
    /// that does not fit. Memory given to a law without memory is an error
    /// too: it belongs to another law.
    pub fn adopt(self, spec: &ModelSpec, height: usize, width: usize) -> Result<Self> {
        let want = Self::zeros(spec, height, width)?;
        if self.is_empty() {
            return Ok(want);
        }
        if !spec.is_recurrent() {
            return Err(Error::InvalidArgument(format!(
                "the state holds memory ({}) but model `{}` ({}) keeps none: \
                 it was written by a recurrent law; start from psi alone with another state file",
                self.names(),
                spec.name,
                spec.architecture
            )));
        }
        for e in &self.entries {
            if !spec.memory.iter().any(|t| t.name == e.name) {
                return Err(Error::InvalidArgument(format!(
                    "the state holds memory `{}` but model `{}` keeps {}",
                    e.name,
                    spec.name,
                    list(&spec.memory)
                )));
            }
        }
        let mut out = want;
        for target in &out.entries {
            let Some(source) = self.entries.iter().find(|e| e.name == target.name) else {
                return Err(Error::InvalidArgument(format!(
                    "the state holds memory {} but not `{}`, which model `{}` keeps: \
                     a memory is restored whole or not at all",
                    self.names(),
                    target.name,
                    spec.name
                )));
            };
            if source.dims != target.dims {
                return Err(Error::InvalidArgument(format!(
                    "memory `{}` is {:?} but model `{}` on a {height} x {width} grid keeps it as {:?}",
                    target.name, source.dims, spec.name, target.dims
                )));
            }
        }
        for target in &out.entries {
            let source = self.get(&target.name).expect("checked above");
            out.data[target.offset..target.offset + target.len()].copy_from_slice(source);
        }
        Ok(out)
    }

    /// The names, comma separated, for messages.
    fn names(&self) -> String {
        let names: Vec<_> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }
}

fn list(memory: &[MemoryTensor]) -> String {
    if memory.is_empty() {
        return "none".into();
    }
    let names: Vec<_> = memory.iter().map(|t| t.name.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convlstm(hidden: usize) -> ModelSpec {
        let mut spec = ModelSpec::from_json(
            &format!(
                r#"{{"format": "atheria-model/1", "name": "m", "architecture": "unet_convlstm",
                "d_state": 2, "hidden_channels": {hidden}, "update": "additive",
                "receptive_radius": null, "spatial_multiple": 4, "files": {{}},
                "memory": [{{"name": "h_state", "channels": {c}, "stride": 4}},
                           {{"name": "c_state", "channels": {c}, "stride": 4}}]}}"#,
                c = 4 * hidden
            ),
            std::path::Path::new("model.json"),
        )
        .unwrap();
        spec.name = "m".into();
        spec
    }

    #[test]
    fn a_new_memory_is_zeros_in_the_models_order_and_shapes() {
        let m = Memory::zeros(&convlstm(2), 8, 12).unwrap();
        let names: Vec<_> = m.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["h_state", "c_state"]);
        assert_eq!(m.entries()[0].dims, [8, 2, 3]);
        assert_eq!(m.entries()[1].offset, 48);
        assert_eq!(m.data().len(), 96);
        assert!(m.data().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn adopting_reorders_by_name_and_refuses_what_does_not_fit() {
        let spec = convlstm(1);
        let (h, c) = (vec![1.0; 4], vec![2.0; 4]);
        // Written in the other order: read by name.
        let file = Memory::from_tensors(vec![
            ("c_state".into(), [4, 1, 1], c.clone()),
            ("h_state".into(), [4, 1, 1], h.clone()),
        ])
        .unwrap();
        let m = file.adopt(&spec, 4, 4).unwrap();
        assert_eq!(m.get("h_state").unwrap(), &h[..]);
        assert_eq!(&m.data()[4..], &c[..]);

        let half = Memory::from_tensors(vec![("h_state".into(), [4, 1, 1], h.clone())]).unwrap();
        let err = half.adopt(&spec, 4, 4).unwrap_err().to_string();
        assert!(err.contains("not `c_state`"), "{err}");

        let wrong = Memory::from_tensors(vec![
            ("h_state".into(), [4, 1, 1], h.clone()),
            ("c_state".into(), [4, 1, 1], c.clone()),
        ])
        .unwrap();
        let err = wrong.adopt(&spec, 8, 8).unwrap_err().to_string();
        assert!(
            err.contains("[4, 1, 1]") && err.contains("[4, 2, 2]"),
            "{err}"
        );

        let stray = Memory::from_tensors(vec![("z".into(), [1, 1, 1], vec![0.0])]).unwrap();
        let err = stray.adopt(&spec, 4, 4).unwrap_err().to_string();
        assert!(err.contains("memory `z`"), "{err}");
    }

    #[test]
    fn no_memory_adopts_as_zeros_and_a_stateless_law_refuses_memory() {
        let m = Memory::none().adopt(&convlstm(1), 4, 4).unwrap();
        assert_eq!(m.data(), &[0.0; 8]);
        let mut stateless = convlstm(1);
        stateless.architecture = engine_api::Architecture::Unet;
        stateless.memory.clear();
        let file = Memory::from_tensors(vec![("h_state".into(), [1, 1, 1], vec![1.0])]).unwrap();
        let err = file.adopt(&stateless, 4, 4).unwrap_err().to_string();
        assert!(err.contains("keeps none"), "{err}");
    }
}
