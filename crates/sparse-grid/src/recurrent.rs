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
//!
//! # Where the memory lies
//!
//! A memory tensor of stride `s` is a grid of reduced cells: reduced cell
//! (i, j) of a memory laid out from lattice cell (x0, y0) stands for the
//! `s` x `s` cells from (x0 + s j, y0 + s i). The dense engine lays it out
//! over its grid (from the state's origin). The sparse engine lays it out
//! over the window of its last step, which follows the matter: when the
//! next window is not that one ([`remap_into`]), the reduced cells the two
//! windows share keep their values, the new window's other cells start at
//! zero (as a new run's memory), and those outside the new window are
//! dropped. A window that does not change keeps the memory whole, so a run
//! whose window stays put computes exactly what the dense engine computes
//! over that window. State files say where the memory lies
//! ([`crate::state_file`]: `memory_origin_x`, `memory_origin_y`).

use engine_api::{BatchShape, Error, MemoryTensor, ModelSpec, Result};

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
        if self.is_empty() {
            return Self::zeros(spec, height, width);
        }
        // The names and channels as for any grid, then this block's rows
        // and columns.
        let grid = self.adopt_grid(spec)?;
        let shape = engine_api::BatchShape::new(1, spec.channels(), height, width);
        for (e, t) in grid.entries.iter().zip(&spec.memory) {
            let [_, c, h, w] = t.dims(shape);
            if e.dims != [c, h, w] {
                return Err(Error::InvalidArgument(format!(
                    "memory `{}` is {:?} but model `{}` on a {height} x {width} grid keeps it as {:?}",
                    t.name,
                    e.dims,
                    spec.name,
                    [c, h, w]
                )));
            }
        }
        Ok(grid)
    }

    /// This memory, laid out from lattice cell `from`, for `spec`'s law on
    /// a `height` x `width` block whose cell (0, 0) is lattice cell `to`:
    /// [`Memory::adopt`] when `from` is `to`; otherwise the tensors are
    /// matched by name ([`Memory::adopt_grid`]) and laid out again by the
    /// overlap rule of [`remap_into`] (shared reduced cells kept, new ones
    /// zero). A sparse run's state file loads on the dense engine this way.
    pub fn adopt_at(
        self,
        spec: &ModelSpec,
        from: (i32, i32),
        to: (i32, i32),
        height: usize,
        width: usize,
    ) -> Result<Self> {
        if from == to || self.is_empty() {
            return self.adopt(spec, height, width);
        }
        let grid = self.adopt_grid(spec)?;
        let mut data = Vec::new();
        remap_into(spec, Some((&grid, from)), to, height, width, &mut data)?;
        let mut out = grid;
        out.relayout(spec, height, width, &mut data);
        Ok(out)
    }

    /// This memory with its tensors reordered to `spec`'s order, each
    /// keeping its own rows and columns (the window it was laid out for,
    /// which need not be the block it goes to): the names must be the
    /// model's and the channels its channels. Memory given to a law without
    /// memory is an error, as in [`Memory::adopt`].
    pub fn adopt_grid(self, spec: &ModelSpec) -> Result<Self> {
        if self.is_empty() {
            return Ok(self);
        }
        if !spec.is_recurrent() {
            return Err(self.stateless(spec));
        }
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| !spec.memory.iter().any(|t| t.name == e.name))
        {
            return Err(Error::InvalidArgument(format!(
                "the state holds memory `{}` but model `{}` keeps {}",
                e.name,
                spec.name,
                list(&spec.memory)
            )));
        }
        let mut tensors = Vec::with_capacity(spec.memory.len());
        for t in &spec.memory {
            let Some(e) = self.entries.iter().find(|e| e.name == t.name) else {
                return Err(Error::InvalidArgument(format!(
                    "the state holds memory {} but not `{}`, which model `{}` keeps: \
                     a memory is restored whole or not at all",
                    self.names(),
                    t.name,
                    spec.name
                )));
            };
            if e.dims[0] != t.channels {
                return Err(Error::InvalidArgument(format!(
                    "memory `{}` has {} channels but model `{}` keeps {}",
                    t.name, e.dims[0], spec.name, t.channels
                )));
            }
            tensors.push((
                e.name.clone(),
                e.dims,
                self.data[e.offset..e.offset + e.len()].to_vec(),
            ));
        }
        Self::from_tensors(tensors)
    }

    /// The cells (height, width) the memory covers when laid out for
    /// `spec`'s law: its first tensor's rows and columns times its stride.
    pub fn extent(&self, spec: &ModelSpec) -> (usize, usize) {
        match (self.entries.first(), spec.memory.first()) {
            (Some(e), Some(t)) => (e.dims[1] * t.stride.max(1), e.dims[2] * t.stride.max(1)),
            _ => (0, 0),
        }
    }

    /// Lays the tensors out for `spec`'s law on a `height` x `width` block
    /// and takes `data` (in that layout) as their values, handing the old
    /// values back in `data`: an engine commits a step's next memory, for
    /// a window that may have changed size, without allocating.
    pub(crate) fn relayout(
        &mut self,
        spec: &ModelSpec,
        height: usize,
        width: usize,
        data: &mut Vec<f32>,
    ) {
        let shape = BatchShape::new(1, spec.channels(), height, width);
        self.entries.resize_with(spec.memory.len(), || MemoryEntry {
            name: String::new(),
            dims: [0; 3],
            offset: 0,
        });
        let mut offset = 0;
        for (e, t) in self.entries.iter_mut().zip(&spec.memory) {
            let [_, c, h, w] = t.dims(shape);
            if e.name != t.name {
                e.name.clone_from(&t.name);
            }
            e.dims = [c, h, w];
            e.offset = offset;
            offset += c * h * w;
        }
        debug_assert_eq!(offset, data.len());
        std::mem::swap(&mut self.data, data);
    }

    /// The error for memory given to `spec`'s law, which keeps none.
    fn stateless(&self, spec: &ModelSpec) -> Error {
        Error::InvalidArgument(format!(
            "the state holds memory ({}) but model `{}` ({}) keeps none: \
             it was written by a recurrent law; start from psi alone with another state file",
            self.names(),
            spec.name,
            spec.architecture
        ))
    }

    /// The names, comma separated, for messages.
    fn names(&self) -> String {
        let names: Vec<_> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }
}

/// Writes into `out` (resized; its allocation reused) the memory of
/// `spec`'s law for a `height` x `width` window whose cell (0, 0) is lattice
/// cell `to`, from `from`: a memory in the model's tensor order
/// ([`Memory::adopt_grid`]) laid out from lattice cell `from.1`, or `None`
/// for no memory yet. Reduced cells the two layouts share keep their
/// values; the others are zero; those of `from` outside the window are
/// dropped. Fails when the layouts are not a whole number of reduced cells
/// apart (the sparse engine's windows always are: their origins are
/// multiples of the tile, which is a multiple of every stride).
pub fn remap_into(
    spec: &ModelSpec,
    from: Option<(&Memory, (i32, i32))>,
    to: (i32, i32),
    height: usize,
    width: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let shape = BatchShape::new(1, spec.channels(), height, width);
    out.clear();
    out.resize(spec.memory_len(shape), 0.0);
    let Some((memory, origin)) = from else {
        return Ok(());
    };
    let (dx, dy) = (to.0 as i64 - origin.0 as i64, to.1 as i64 - origin.1 as i64);
    let mut offset = 0;
    for (t, e) in spec.memory.iter().zip(memory.entries()) {
        let s = t.stride.max(1) as i64;
        if dx % s != 0 || dy % s != 0 {
            return Err(Error::InvalidArgument(format!(
                "memory `{}` lies from ({}, {}), which is not a whole number of its {s}-cell steps \
                 from ({}, {}): it cannot be laid out there",
                t.name, origin.0, origin.1, to.0, to.1
            )));
        }
        let [_, c, rh, rw] = t.dims(shape);
        let [sc, sh, sw] = e.dims;
        debug_assert_eq!(sc, c);
        // New reduced cell (i, j) is old reduced cell (i + oy, j + ox).
        let (ox, oy) = (dx / s, dy / s);
        let (i0, i1) = ((-oy).max(0), (rh as i64).min(sh as i64 - oy));
        let (j0, j1) = ((-ox).max(0), (rw as i64).min(sw as i64 - ox));
        if i0 < i1 && j0 < j1 {
            let src = &memory.data()[e.offset..e.offset + e.len()];
            let (j0, j1) = (j0 as usize, j1 as usize);
            let sj = (j0 as i64 + ox) as usize;
            for ch in 0..c.min(sc) {
                for i in i0..i1 {
                    let d = offset + (ch * rh + i as usize) * rw;
                    let si = (ch * sh + (i + oy) as usize) * sw + sj;
                    out[d + j0..d + j1].copy_from_slice(&src[si..si + (j1 - j0)]);
                }
            }
        }
        offset += c * rh * rw;
    }
    Ok(())
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

    #[test]
    fn a_window_that_grows_or_moves_keeps_the_shared_memory_and_zeros_the_rest() {
        let spec = convlstm(1); // two tensors of 4 channels at stride 4
                                // The old window: 8 x 8 cells from (16, -16), 2 x 2 reduced cells.
        let mut old = Memory::zeros(&spec, 8, 8).unwrap();
        for (i, v) in old.data_mut().iter_mut().enumerate() {
            *v = i as f32 + 1.0;
        }
        let at = |m: &[f32], t: usize, ch: usize, i: usize, j: usize, rows: usize, cols: usize| {
            m[t * 4 * rows * cols + (ch * rows + i) * cols + j]
        };
        // Grown by 16 cells on every side: 40 x 40 from (0, -32), 10 x 10
        // reduced cells; the old ones sit at rows and columns 4 and 5.
        let mut out = Vec::new();
        remap_into(&spec, Some((&old, (16, -16))), (0, -32), 40, 40, &mut out).unwrap();
        assert_eq!(out.len(), 2 * 4 * 100);
        for t in 0..2 {
            for ch in 0..4 {
                for i in 0..10 {
                    for j in 0..10 {
                        let want = if (4..6).contains(&i) && (4..6).contains(&j) {
                            at(old.data(), t, ch, i - 4, j - 4, 2, 2)
                        } else {
                            0.0
                        };
                        assert_eq!(at(&out, t, ch, i, j, 10, 10), want, "{t} {ch} {i} {j}");
                    }
                }
            }
        }
        // Moved right by 4 cells and narrowed: 8 x 4 from (20, -16); reduced
        // column 0 is the old column 1, the old column 0 is dropped.
        remap_into(&spec, Some((&old, (16, -16))), (20, -16), 8, 4, &mut out).unwrap();
        assert_eq!(out.len(), 2 * 4 * 2);
        for t in 0..2 {
            for ch in 0..4 {
                for i in 0..2 {
                    assert_eq!(
                        at(&out, t, ch, i, 0, 2, 1),
                        at(old.data(), t, ch, i, 1, 2, 2)
                    );
                }
            }
        }
        // No memory yet: zeros. Out of step with the reduced grid: refused.
        remap_into(&spec, None, (0, 0), 8, 8, &mut out).unwrap();
        assert!(out.len() == 32 && out.iter().all(|&v| v == 0.0));
        let err = remap_into(&spec, Some((&old, (16, -16))), (18, -16), 8, 8, &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("4-cell steps"), "{err}");

        // adopt_at lays a memory from elsewhere out over a dense block.
        let moved = old
            .clone()
            .adopt_at(&spec, (16, -16), (12, -16), 8, 8)
            .unwrap();
        assert_eq!(moved.entries()[0].dims, [4, 2, 2]);
        assert_eq!(
            at(moved.data(), 1, 3, 1, 1, 2, 2),
            at(old.data(), 1, 3, 1, 0, 2, 2)
        );
        assert_eq!(at(moved.data(), 1, 3, 1, 0, 2, 2), 0.0);
    }
}
