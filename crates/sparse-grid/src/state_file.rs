//! The state file: safetensors holding `psi_real` and `psi_imag` as f32
//! `[H, W, D]` (the layout of the PyTorch engine's `psi[0]`, so numpy and
//! PyTorch read it directly), an optional `occupied` u8 `[H, W]`, and string
//! metadata `format`, `step`, `origin_x`, `origin_y`.
//!
//! A recurrent law's memory ([`crate::Memory`]) is stored beside them, one
//! f32 tensor `[channels, H / stride, W / stride]` per memory tensor, under
//! the model's name for it (`h_state`, `c_state` for `unet_convlstm`; the
//! batch of one is dropped). Every other tensor in the file is read as
//! memory; a file without any starts the law's memory from zeros, as
//! Atheria's engine does.
//!
//! Metadata `memory_origin_x`, `memory_origin_y` give the lattice cell of
//! the memory's reduced cell (0, 0) when it is not the state's origin
//! ([`DenseState::memory_origin`]): the sparse engine writes its memory as
//! laid out over the window of its last step. Absent, the memory lies from
//! the state's origin, as every dense file's does.

use std::collections::HashMap;
use std::path::Path;

use engine_api::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::state::check_size;
use crate::DenseState;

/// The `format` metadata value of a state file.
pub const STATE_FORMAT: &str = "atheria-state/1";

/// Reads a state file; every problem is an [`Error::State`] naming the file.
///
/// The header is read first and the declared grid checked against
/// `max_cells`, so a file declaring more cells than allowed (or not a
/// safetensors file at all) is refused by its first bytes, before its data
/// is read or any of it allocated.
pub fn read_state(path: &Path, max_cells: usize) -> Result<DenseState> {
    use std::io::{Read, Seek, SeekFrom};
    // One open: a missing or unreadable file is an I/O error; what its
    // header says is about the state file; then the rest is read.
    let io = |e| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let header =
        engine_api::header::read_header(&mut file, len).map_err(|m| Error::state(path, m))?;
    if let Some(shape) = header.shape("psi_real") {
        if let [h, w, d] = shape[..] {
            let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            check_size(size(h), size(w), size(d), max_cells)
                .map_err(|e| Error::state(path, e.to_string()))?;
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.read_to_end(&mut bytes).map_err(io)?;
    parse_state(&bytes, max_cells).map_err(|m| Error::state(path, m))
}

/// Parses state-file bytes; the error is a message for [`Error::State`].
pub fn parse_state(bytes: &[u8], max_cells: usize) -> std::result::Result<DenseState, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let empty = HashMap::new();
    let meta = meta.metadata().as_ref().unwrap_or(&empty);
    match meta.get("format").map(String::as_str) {
        Some(STATE_FORMAT) => {}
        Some(other) => {
            return Err(format!(
                "metadata format is `{other}`, expected `{STATE_FORMAT}`"
            ))
        }
        None => {
            return Err(format!(
                "no `format` metadata: not an Atheria state file (expected `{STATE_FORMAT}`)"
            ))
        }
    }
    let number = |key: &str| -> std::result::Result<i64, String> {
        match meta.get(key) {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("metadata `{key}` is `{v}`, not an integer")),
        }
    };
    // The step is written as a u64 and read as one: every count a run can
    // reach reads back (an i64 would refuse steps from 2^63 on).
    let step = match meta.get("step") {
        None => 0,
        Some(v) if v.trim().starts_with('-') => return Err("metadata `step` is negative".into()),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("metadata `step` is `{v}`, not a whole number of steps"))?,
    };
    let coord = |key: &str| -> std::result::Result<i32, String> {
        i32::try_from(number(key)?)
            .map_err(|_| format!("metadata `{key}` is outside the lattice (i32)"))
    };
    let origin = (coord("origin_x")?, coord("origin_y")?);
    let memory_origin =
        match (meta.get("memory_origin_x"), meta.get("memory_origin_y")) {
            (None, None) => None,
            (Some(_), Some(_)) => Some((coord("memory_origin_x")?, coord("memory_origin_y")?)),
            _ => return Err(
                "metadata gives one of memory_origin_x and memory_origin_y: give both or neither"
                    .into(),
            ),
        };

    let re = tensor(&tensors, "psi_real")?;
    let im = tensor(&tensors, "psi_imag")?;
    for t in [&re, &im] {
        if t.dtype() != Dtype::F32 || t.shape().len() != 3 {
            return Err(format!(
                "psi tensors must be f32 [H, W, D], found {:?} {:?}",
                t.dtype(),
                t.shape()
            ));
        }
    }
    if re.shape() != im.shape() {
        return Err(format!(
            "psi_real is {:?} but psi_imag is {:?}: they must match",
            re.shape(),
            im.shape()
        ));
    }
    let (h, w, d) = (re.shape()[0], re.shape()[1], re.shape()[2]);
    let cells = check_size(h, w, d, max_cells).map_err(|e| e.to_string())?;
    let mut state = DenseState::zeros_limited(h, w, d, max_cells).map_err(|e| e.to_string())?;
    state.origin = origin;
    state.step = step;
    let (planes, mask) = state.split_mut();
    for (values, half) in [(&re, 0), (&im, d)] {
        // [H, W, D] -> planes [2D][H][W]: a transpose, done once per file.
        for (i, chunk) in values.data().chunks_exact(4 * d).enumerate() {
            for (c, b) in chunk.chunks_exact(4).enumerate() {
                planes[(half + c) * cells + i] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
    match tensors.tensor("occupied") {
        Err(_) => mask.fill(1),
        Ok(t) => {
            if t.dtype() != Dtype::U8 || t.shape() != [h, w] {
                return Err(format!(
                    "occupied must be u8 [{h}, {w}], found {:?} {:?}",
                    t.dtype(),
                    t.shape()
                ));
            }
            for (m, &b) in mask.iter_mut().zip(t.data()) {
                *m = (b != 0) as u8;
            }
        }
    }
    if let Some(i) = planes.iter().position(|v| !v.is_finite()) {
        let cell = i % cells;
        return Err(format!(
            "non-finite value at row {}, column {}",
            cell / w,
            cell % w
        ));
    }
    state.zero_vacuum();
    state.memory = read_memory(&tensors)?;
    state.memory_origin = memory_origin;
    Ok(state)
}

/// The tensors that are not psi or the mask: a recurrent law's memory, in
/// name order (the engine that adopts it reorders it to its model's order).
fn read_memory(tensors: &SafeTensors<'_>) -> std::result::Result<crate::Memory, String> {
    let mut names: Vec<_> = tensors
        .names()
        .into_iter()
        .filter(|n| !["psi_real", "psi_imag", "occupied"].contains(n))
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let t = tensors.tensor(name).map_err(|e| e.to_string())?;
        let dims: [usize; 3] = match (t.dtype(), t.shape()) {
            (Dtype::F32, &[c, h, w]) => [c, h, w],
            (dtype, shape) => {
                return Err(format!(
                    "tensor `{name}` is {dtype:?} {shape:?}: besides psi and occupied a state file \
                     holds only a recurrent law's memory, f32 [channels, H / stride, W / stride]"
                ))
            }
        };
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("memory `{name}` holds a non-finite value"));
        }
        out.push((name.to_string(), dims, values));
    }
    crate::Memory::from_tensors(out).map_err(|e| e.to_string())
}

fn tensor<'a>(
    tensors: &'a SafeTensors<'a>,
    name: &str,
) -> std::result::Result<TensorView<'a>, String> {
    tensors.tensor(name).map_err(|_| {
        format!("missing tensor `{name}` (a state file holds psi_real and psi_imag, f32 [H, W, D])")
    })
}

/// Serialises a state to state-file bytes. `occupied` is written only when
/// some cell is vacuum.
pub fn state_bytes(state: &DenseState) -> Result<Vec<u8>> {
    let (h, w, d) = (state.height(), state.width(), state.d_state());
    let cells = state.cells();
    let planes = state.planes();
    let hwd = |half: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(cells * d * 4);
        for i in 0..cells {
            for c in 0..d {
                out.extend_from_slice(&planes[(half + c) * cells + i].to_le_bytes());
            }
        }
        out
    };
    let (re, im) = (hwd(0), hwd(d));
    let bad = |e: safetensors::SafeTensorError| {
        Error::InvalidArgument(format!("cannot encode state: {e}"))
    };
    let mut views = vec![
        (
            "psi_real".to_string(),
            TensorView::new(Dtype::F32, vec![h, w, d], &re).map_err(bad)?,
        ),
        (
            "psi_imag".to_string(),
            TensorView::new(Dtype::F32, vec![h, w, d], &im).map_err(bad)?,
        ),
    ];
    if state.occupied().contains(&0) {
        views.push((
            "occupied".to_string(),
            TensorView::new(Dtype::U8, vec![h, w], state.occupied()).map_err(bad)?,
        ));
    }
    let memory = state.memory.data();
    let memory_bytes: Vec<Vec<u8>> = state
        .memory
        .entries()
        .iter()
        .map(|e| {
            memory[e.offset..e.offset + e.len()]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    for (e, bytes) in state.memory.entries().iter().zip(&memory_bytes) {
        views.push((
            e.name.clone(),
            TensorView::new(Dtype::F32, e.dims.to_vec(), bytes).map_err(bad)?,
        ));
    }
    let mut meta = HashMap::from([
        ("format".to_string(), STATE_FORMAT.to_string()),
        ("step".to_string(), state.step.to_string()),
        ("origin_x".to_string(), state.origin.0.to_string()),
        ("origin_y".to_string(), state.origin.1.to_string()),
    ]);
    if let Some((x, y)) = state.memory_origin {
        meta.insert("memory_origin_x".to_string(), x.to_string());
        meta.insert("memory_origin_y".to_string(), y.to_string());
    }
    safetensors::serialize(views, Some(meta)).map_err(bad)
}

/// Writes a state file by [`crate::output::write`]: atomically (a run killed
/// mid-write never leaves a truncated state), links followed, devices
/// written through, read-only and hard-linked files refused.
pub fn write_state(state: &DenseState, path: &Path) -> Result<()> {
    crate::output::write(path, &state_bytes(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{fill, InitKind};
    use proptest::prelude::*;

    fn sample(h: usize, w: usize, d: usize) -> DenseState {
        let mut s = DenseState::zeros(h, w, d).unwrap();
        s.origin = (-5, 7);
        s.step = 42;
        fill(&mut s, InitKind::Random, 3);
        s
    }

    #[test]
    fn round_trip_keeps_values_origin_step_and_mask() {
        let mut s = sample(3, 5, 2);
        s.occupied_mut()[4] = 0;
        s.zero_vacuum();
        let back = parse_state(&state_bytes(&s).unwrap(), usize::MAX).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_recurrent_laws_memory_round_trips_by_name() {
        let mut s = sample(4, 4, 1);
        s.memory = crate::Memory::from_tensors(vec![
            ("h_state".into(), [3, 1, 1], vec![0.5, -1.0, 2.0]),
            ("c_state".into(), [3, 1, 1], vec![1e-7, 3.0, -0.25]),
        ])
        .unwrap();
        let back = parse_state(&state_bytes(&s).unwrap(), usize::MAX).unwrap();
        assert_eq!(
            back.memory.get("h_state").unwrap(),
            s.memory.get("h_state").unwrap()
        );
        assert_eq!(
            back.memory.get("c_state").unwrap(),
            s.memory.get("c_state").unwrap()
        );
        assert_eq!(back.memory_origin, None);
        // A sparse run's memory says where it lies.
        s.memory_origin = Some((-16, 32));
        let back = parse_state(&state_bytes(&s).unwrap(), usize::MAX).unwrap();
        assert_eq!(back.memory_origin, Some((-16, 32)));
        assert_eq!(back.memory.get("c_state"), s.memory.get("c_state"));
        // One coordinate alone is refused.
        let mut bytes = state_bytes(&s).unwrap();
        let at = bytes
            .windows(15)
            .position(|w| w == b"memory_origin_y")
            .unwrap();
        bytes[at..at + 15].copy_from_slice(b"memory_origin_z");
        let err = parse_state(&bytes, usize::MAX).unwrap_err();
        assert!(err.contains("give both or neither"), "{err}");
        // Without memory, none is read back.
        let plain = parse_state(&state_bytes(&sample(2, 2, 1)).unwrap(), usize::MAX).unwrap();
        assert!(plain.memory.is_empty());
    }

    #[test]
    fn a_stray_tensor_that_is_not_memory_is_named() {
        let re = vec![0u8; 4 * 4];
        let odd = vec![0u8; 2];
        let views = vec![
            (
                "psi_real",
                TensorView::new(Dtype::F32, vec![2, 2, 1], &re).unwrap(),
            ),
            (
                "psi_imag",
                TensorView::new(Dtype::F32, vec![2, 2, 1], &re).unwrap(),
            ),
            (
                "h_state",
                TensorView::new(Dtype::U8, vec![2], &odd).unwrap(),
            ),
        ];
        let meta = HashMap::from([("format".to_string(), STATE_FORMAT.to_string())]);
        let bytes = safetensors::serialize(views, Some(meta)).unwrap();
        let err = parse_state(&bytes, 100).unwrap_err();
        assert!(err.contains("`h_state`") && err.contains("memory"), "{err}");
    }

    #[test]
    fn every_step_count_reads_back() {
        for step in [0, 1, (1u64 << 63) - 1, 1 << 63, u64::MAX] {
            let mut s = sample(2, 2, 1);
            s.step = step;
            let back = parse_state(&state_bytes(&s).unwrap(), usize::MAX).unwrap();
            assert_eq!(back.step, step);
        }
    }

    #[test]
    fn written_files_are_replaced_atomically() {
        let dir = std::env::temp_dir().join(format!("atheria-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.safetensors");
        write_state(&sample(2, 2, 1), &path).unwrap();
        write_state(&sample(4, 3, 2), &path).unwrap();
        assert_eq!(read_state(&path, usize::MAX).unwrap().width(), 3);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(parse_state(b"", 100).unwrap_err().contains("empty"));
        assert!(parse_state(b"garbage!", 100)
            .unwrap_err()
            .contains("not a safetensors"));
        let bytes = state_bytes(&sample(3, 3, 2)).unwrap();
        assert!(
            parse_state(&bytes[..bytes.len() - 5], 100).is_err(),
            "truncated file accepted"
        );
        assert!(
            parse_state(&bytes, 4).unwrap_err().contains("limit"),
            "cell limit ignored"
        );
    }

    #[test]
    fn disagreeing_tensors_are_named() {
        let re = vec![0u8; (2 * 2) * 4];
        let im = vec![0u8; (2 * 3) * 4];
        let views = vec![
            (
                "psi_real",
                TensorView::new(Dtype::F32, vec![2, 2, 1], &re).unwrap(),
            ),
            (
                "psi_imag",
                TensorView::new(Dtype::F32, vec![2, 3, 1], &im).unwrap(),
            ),
        ];
        let meta = HashMap::from([("format".to_string(), STATE_FORMAT.to_string())]);
        let bytes = safetensors::serialize(views, Some(meta)).unwrap();
        let err = parse_state(&bytes, 100).unwrap_err();
        assert!(err.contains("must match"), "{err}");
    }

    proptest! {
        /// The reader's fuzz target: arbitrary bytes, and valid files with
        /// bytes flipped, never panic or allocate beyond the cell limit.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                       flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
            let _ = parse_state(&bytes, 1 << 16);
            let mut good = state_bytes(&sample(2, 3, 2)).unwrap();
            for (i, b) in flips {
                let n = good.len();
                good[i % n] ^= b;
            }
            let _ = parse_state(&good, 1 << 16);
        }
    }
}
