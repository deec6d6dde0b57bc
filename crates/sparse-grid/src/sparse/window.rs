//! The step of a global model (no receptive radius): one dense window over
//! the tiles holding matter plus one ring of tiles, padded with vacuum to the
//! model's `spatial_multiple`, run in one forward and written back.
//!
//! A recurrent law's memory lies over the window of the last successful
//! step. When the next window is that one the memory goes to the forward
//! as it is; otherwise it is laid out for the new window in a reused
//! buffer first ([`crate::recurrent::remap_into`]: the reduced cells both
//! windows share keep their values, new ones start at zero, the rest are
//! dropped). The forward's next memory is committed with the step, never
//! before: a failed step leaves the memory and its window as they were.

use std::time::Instant;

use engine_api::{BatchShape, Error, Result};
use rayon::prelude::*;

use super::local::{non_finite, too_much_matter, StepContext};
use super::query::CellBox;
use super::tiles::{TileStore, NOT_ACTIVE};
use crate::recurrent::{remap_into, Memory};
use crate::state::check_size;
use crate::update::{first_non_finite, update_rows, PlaneRun};
use crate::StepStats;

/// The window of a global step, with every buffer reused from step to step.
pub(crate) struct WindowBatch {
    /// Height and width must be multiples of this.
    multiple: usize,
    /// The window of the last successful step: the layout of `delta`.
    pub window: Option<CellBox>,
    /// The last delta, `[2D][H][W]` over `window`.
    pub delta: Vec<f32>,
    psi: Vec<f32>,
    input: Vec<f32>,
    occ_old: Vec<u8>,
    occ_new: Vec<u8>,
    norm: Vec<f32>,
    tile_counts: Vec<u32>,
    tile_slots: Vec<u32>,
    slot_batch: Vec<u32>,
    /// A recurrent law's memory, laid out over `memory_window` (empty for
    /// other laws, and until the first step or import).
    pub memory: Memory,
    /// The window `memory` is laid out for: its first cell is the lattice
    /// cell of the memory's reduced cell (0, 0).
    pub memory_window: Option<CellBox>,
    /// The memory laid out for a window that is not `memory_window`.
    memory_in: Vec<f32>,
    /// The forward's next memory, committed with the step.
    memory_next: Vec<f32>,
}

impl WindowBatch {
    /// An empty batch for a model whose sizes must be multiples of `multiple`.
    pub fn new(multiple: usize) -> Self {
        Self {
            multiple: multiple.max(1),
            window: None,
            delta: Vec::new(),
            psi: Vec::new(),
            input: Vec::new(),
            occ_old: Vec::new(),
            occ_new: Vec::new(),
            norm: Vec::new(),
            tile_counts: Vec::new(),
            tile_slots: Vec::new(),
            slot_batch: Vec::new(),
            memory: Memory::none(),
            memory_window: None,
            memory_in: Vec::new(),
            memory_next: Vec::new(),
        }
    }

    /// The window the next step runs on: the bounding box of the tiles that
    /// hold matter, grown by one tile on every side, its height and width
    /// rounded up to the model's multiple. `None` when there is no matter;
    /// an error message when the window would leave the i32 lattice.
    pub fn next_window(&self, store: &TileStore) -> std::result::Result<Option<CellBox>, String> {
        let mut keys = store.live_slots().map(|s| store.keys[s]);
        let Some(first) = keys.next() else {
            return Ok(None);
        };
        let (mut x0, mut y0, mut x1, mut y1) = (first.0, first.1, first.0, first.1);
        for (x, y) in keys {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let t = store.t as i64;
        let m = self.multiple as i64;
        let span = |lo: i32, hi: i32| -> (i64, i64) {
            let start = (lo as i64 - 1) * t;
            let len = (hi as i64 - lo as i64 + 3) * t;
            (start, (len + m - 1) / m * m)
        };
        let ((sx, w), (sy, h)) = (span(x0, x1), span(y0, y1));
        let fits = |s: i64, len: i64| s >= i32::MIN as i64 && s + len - 1 <= i32::MAX as i64;
        if !fits(sx, w) || !fits(sy, h) {
            return Err(format!(
                "a global model's window ({w} x {h} cells at x = {sx}, y = {sy}) would reach past the i32 lattice: move the pattern inward"
            ));
        }
        Ok(Some(CellBox::new(
            sx as i32,
            sy as i32,
            (sx + w - 1) as i32,
            (sy + h - 1) as i32,
        )))
    }

    /// One step. On error the tiles are as before the call.
    pub fn step(&mut self, store: &mut TileStore, cx: &StepContext) -> Result<StepStats> {
        let t0 = Instant::now();
        self.window = None;
        let Some(win) = self
            .next_window(store)
            .map_err(|m| cx.fail(Error::InvalidArgument(m)))?
        else {
            return Ok(StepStats {
                step: cx.step + 1,
                window: Some((0, 0)),
                ..StepStats::default()
            });
        };
        let (h, w, d) = (win.height(), win.width(), store.d);
        // A global model steps the whole window around the matter, which
        // the cell limit holds too.
        let n = check_size(h, w, d, cx.max_cells).map_err(|e| cx.fail(e))?;
        let (t, area, tl) = (store.t, store.area(), store.tile_len());
        self.psi.resize(2 * d * n, 0.0);
        self.delta.resize(2 * d * n, 0.0);
        self.occ_old.resize(n, 0);
        self.occ_new.resize(n, 0);
        self.norm.resize(n, 0.0);

        let st: &TileStore = store;
        let (x0, y0) = (win.min_x as i64, win.min_y as i64);
        // Copies row y of plane p (or of the mask) from the tiles, zeros where none.
        let row_source = |y: usize, x: usize| -> (Option<usize>, usize) {
            let (key, i) = st.locate((x0 + x as i64) as i32, (y0 + y as i64) as i32);
            (st.slot(key), i)
        };
        let (psi, occ_old) = (&mut self.psi, &mut self.occ_old);
        cx.pool.run(|| {
            psi.par_chunks_mut(w).enumerate().for_each(|(pi, row)| {
                let (p, y) = (pi / h, pi % h);
                for xa in (0..w).step_by(t) {
                    let len = t.min(w - xa);
                    match row_source(y, xa) {
                        (Some(s), i) => row[xa..xa + len]
                            .copy_from_slice(&st.data[s * tl + p * area + i..][..len]),
                        (None, _) => row[xa..xa + len].fill(0.0),
                    }
                }
            });
            occ_old.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
                for xa in (0..w).step_by(t) {
                    let len = t.min(w - xa);
                    match row_source(y, xa) {
                        (Some(s), i) => {
                            row[xa..xa + len].copy_from_slice(&st.occ[s * area + i..][..len])
                        }
                        (None, _) => row[xa..xa + len].fill(0),
                    }
                }
            });
        });
        if !cx.vacuum.is_zero() {
            self.input.resize(2 * d * n, 0.0);
            let (occ_old, psi, input) = (&self.occ_old, &self.psi, &mut self.input);
            cx.pool.run(|| {
                input.par_chunks_mut(w).enumerate().for_each(|(pi, row)| {
                    let (p, y) = (pi / h, pi % h);
                    row.copy_from_slice(&psi[pi * w..(pi + 1) * w]);
                    for (x, v) in row.iter_mut().enumerate() {
                        if occ_old[y * w + x] == 0 {
                            let (re, im) = cx.vacuum.value(
                                cx.seed,
                                x0 + x as i64,
                                y0 + y as i64,
                                cx.step,
                                p % d,
                            );
                            *v = if p < d { re } else { im };
                        }
                    }
                })
            });
        }
        let input: &[f32] = if cx.vacuum.is_zero() {
            &self.psi
        } else {
            &self.input
        };
        let gather = t0.elapsed();

        // A recurrent law's memory, laid out for this window: as it is when
        // the window has not changed, else in `memory_in` (module docs).
        let spec = cx.backend.spec();
        let recurrent = spec.is_recurrent();
        let memory: &[f32] = if !recurrent {
            &[]
        } else if self.memory_window == Some(win) {
            self.memory.data()
        } else {
            let from = self
                .memory_window
                .map(|m| (&self.memory, (m.min_x, m.min_y)));
            remap_into(
                spec,
                from,
                (win.min_x, win.min_y),
                h,
                w,
                &mut self.memory_in,
            )
            .map_err(|e| cx.fail(e))?;
            &self.memory_in
        };
        self.memory_next.resize(memory.len(), 0.0);

        // The forward runs here, on the stepping thread, never in a pool.
        let tf = Instant::now();
        // One call for every law: without memory, `memory` and
        // `memory_next` are empty and this is the plain forward.
        cx.backend
            .forward_with_memory(
                input,
                BatchShape::new(1, 2 * d, h, w),
                memory,
                &mut self.delta,
                &mut self.memory_next,
            )
            .map_err(|e| cx.fail(e))?;
        let forward = tf.elapsed();

        let ts = Instant::now();
        let delta = &self.delta;
        let bad = cx.pool.run(|| {
            (0..h).into_par_iter().find_map_first(|y| {
                let run = PlaneRun {
                    ptr: delta[y * w..].as_ptr(),
                    stride: n,
                };
                // SAFETY: `delta` holds 2D planes of n cells; row y spans w of each.
                unsafe { first_non_finite(run, w, 2 * d) }
                    .err()
                    .map(|(x, c)| (x, y, c))
            })
        });
        if let Some((x, y, c)) = bad {
            return Err(cx.fail(non_finite(x0 + x as i64, y0 + y as i64, c, d)));
        }
        let (psi, occ_new, norm) = (&mut self.psi, &mut self.occ_new, &mut self.norm);
        cx.pool
            .run(|| update_rows(psi, delta, w, &cx.params, norm, occ_new));
        let total = self.occ_new.iter().filter(|&&o| o != 0).count();
        if total > cx.max_cells {
            return Err(cx.fail(too_much_matter(total, cx.max_cells)));
        }

        // Write back: tiles of the window that hold matter exist afterwards,
        // the others do not.
        let (wtw, wth) = (w.div_ceil(t), h.div_ceil(t));
        self.tile_counts.clear();
        self.tile_counts.resize(wtw * wth, 0);
        for (y, row) in self.occ_new.chunks_exact(w).enumerate() {
            for (x, &o) in row.iter().enumerate() {
                self.tile_counts[(y / t) * wtw + x / t] += o as u32;
            }
        }
        let (kx0, ky0) = (win.min_x >> store.shift, win.min_y >> store.shift);
        self.tile_slots.clear();
        for wi in 0..wtw * wth {
            let key = (kx0 + (wi % wtw) as i32, ky0 + (wi / wtw) as i32);
            if self.tile_counts[wi] > 0 {
                self.tile_slots.push(store.get_or_create(key).0 as u32);
            } else {
                if let Some(s) = store.slot(key) {
                    store.release(s);
                }
                self.tile_slots.push(NOT_ACTIVE);
            }
        }
        let (psi, occ_new, counts) = (&self.psi, &self.occ_new, &self.tile_counts);
        let (tile_slots, slot_batch) = (&self.tile_slots, &mut self.slot_batch);
        cx.pool.run(|| {
            store.commit(tile_slots, slot_batch, |wi, tile, occ, count| {
                let (wx, wy) = ((wi % wtw) * t, (wi / wtw) * t);
                let (rows, cols) = (t.min(h - wy), t.min(w - wx));
                for ly in 0..rows {
                    let src = (wy + ly) * w + wx;
                    for p in 0..2 * d {
                        tile[p * area + ly * t..][..cols]
                            .copy_from_slice(&psi[p * n + src..][..cols]);
                    }
                    occ[ly * t..][..cols].copy_from_slice(&occ_new[src..][..cols]);
                }
                *count = counts[wi];
            })
        });
        store.occupied = total;
        self.window = Some(win);
        if recurrent {
            // The step commits: its next memory, over its window, with it.
            self.memory.relayout(spec, h, w, &mut self.memory_next);
            self.memory_window = Some(win);
        }
        Ok(StepStats {
            step: cx.step + 1,
            occupied_cells: total,
            active_tiles: wtw * wth,
            staged_tiles: 0,
            model_cells: h * w,
            window: Some((h, w)),
            gather,
            forward,
            scatter: ts.elapsed(),
        })
    }
}
