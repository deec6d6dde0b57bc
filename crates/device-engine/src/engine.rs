//! The engine: a dense state on the device and the step that advances it.
//!
//! A step is the dense engine's step (`sparse_grid::DenseEngine`, the
//! physics in ARCHITECTURE.md) as tensor operations: the forward, the
//! non-finite check (the delta's sum of squares, downloaded with the
//! occupied count: the only transfer of a step), then the update rule. The
//! new psi, occupancy and memory replace the old ones only when all of that
//! succeeded, so a failed step leaves the state as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use engine_api::{Error, Result, UpdateRule};
use sparse_grid::update::NORM_EPS;
use sparse_grid::{DenseState, Memory, StepOptions, StepStats};

use crate::candle_err;
use crate::law::DeviceLaw;
use crate::net;

/// Steps a dense state held on a law's device.
pub struct DeviceEngine {
    law: Arc<DeviceLaw>,
    /// `[1, 2D, H, W]`: real planes, then imaginary, as the model's input.
    psi: Tensor,
    /// `[H, W]` u8: 1 for matter, 0 for vacuum.
    occupied: Tensor,
    /// A recurrent law's memory (`h_state`, `c_state`), `None` otherwise.
    memory: Option<net::Memory>,
    /// The memory's host layout (names, shapes), to download it by name.
    memory_layout: Memory,
    /// The last step's delta, `None` before the first (or after the state
    /// was replaced): pictures summarise it on demand.
    delta: Option<Tensor>,
    /// sum of |delta|^2 of the last step.
    energy: Option<f64>,
    occupied_count: usize,
    /// All ones, the occupancy of a step without threshold.
    all_occupied: Tensor,
    height: usize,
    width: usize,
    d_state: usize,
    origin: (i32, i32),
    step: u64,
    options: StepOptions,
}

impl std::fmt::Debug for DeviceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEngine")
            .field("law", &self.law)
            .field("grid", &(self.height, self.width, self.d_state))
            .field("step", &self.step)
            .finish()
    }
}

impl DeviceEngine {
    /// An engine over `state`, uploaded to the law's device. The checks are
    /// the dense engine's: the model's d_state, a size that is a multiple of
    /// the model's `spatial_multiple`, valid options, and a recurrent law's
    /// memory adopted from the state (zeros when it has none).
    pub fn new(law: Arc<DeviceLaw>, mut state: DenseState, options: StepOptions) -> Result<Self> {
        sparse_grid::fit_state(law.spec(), &mut state, &options)?;
        let (h, w, d) = (state.height(), state.width(), state.d_state());
        let memory_layout = std::mem::take(&mut state.memory);
        let dev = law.candle_device().clone();
        let upload = || -> candle_core::Result<_> {
            let psi = Tensor::from_slice(state.planes(), (1, 2 * d, h, w), &dev)?;
            let occupied = Tensor::from_slice(state.occupied(), (h, w), &dev)?;
            let all = Tensor::ones((h, w), DType::U8, &dev)?;
            let mut tensors = Vec::new();
            for e in memory_layout.entries() {
                let data = &memory_layout.data()[e.offset..e.offset + e.len()];
                let [c, mh, mw] = e.dims;
                tensors.push(Tensor::from_slice(data, (1, c, mh, mw), &dev)?);
            }
            Ok((psi, occupied, all, tensors))
        };
        let (psi, occupied, all_occupied, tensors) = upload().map_err(candle_err)?;
        let memory = match <[Tensor; 2]>::try_from(tensors) {
            Ok([h_state, c_state]) => Some((h_state, c_state)),
            Err(t) if t.is_empty() => None,
            Err(t) => {
                return Err(Error::backend(
                    crate::NAME,
                    format!("a recurrent law with {} memory tensors (the device engine runs h_state and c_state)", t.len()),
                ))
            }
        };
        let occupied_count = state.occupied().iter().filter(|&&o| o != 0).count();
        Ok(Self {
            law,
            psi,
            occupied,
            memory,
            memory_layout,
            delta: None,
            energy: None,
            occupied_count,
            all_occupied,
            height: h,
            width: w,
            d_state: d,
            origin: state.origin,
            step: state.step,
            options,
        })
    }

    /// The law this engine steps with.
    pub fn law(&self) -> &Arc<DeviceLaw> {
        &self.law
    }

    /// Steps taken by the state (counting those before it was uploaded).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Cells holding matter now.
    pub fn occupied_count(&self) -> usize {
        self.occupied_count
    }

    /// The grid's `(height, width)` and its first cell's lattice coordinates.
    pub fn extent(&self) -> ((usize, usize), (i32, i32)) {
        ((self.height, self.width), self.origin)
    }

    /// The decay term of the next steps.
    pub fn gamma(&self) -> f32 {
        self.options.gamma
    }

    /// Changes the decay term from the next step on; an invalid value
    /// changes nothing.
    pub fn set_gamma(&mut self, gamma: f32) -> Result<()> {
        sparse_grid::update::check_gamma(gamma)?;
        self.options.gamma = gamma;
        Ok(())
    }

    /// The step options (gamma, threshold).
    pub fn options(&self) -> StepOptions {
        self.options
    }

    /// sum of |delta|^2 of the last step (the `energy` readout); `None`
    /// before the first step.
    pub fn last_delta_energy(&self) -> Option<f64> {
        self.energy
    }

    /// The state, downloaded: psi, occupancy, step, origin and a recurrent
    /// law's memory.
    pub fn state(&self) -> Result<DenseState> {
        let (h, w, d) = (self.height, self.width, self.d_state);
        let planes = download(&self.psi)?;
        let occupied = self
            .occupied
            .flatten_all()
            .and_then(|t| t.to_vec1::<u8>())
            .map_err(candle_err)?;
        let mut state = DenseState::from_planes(h, w, d, planes, occupied)?;
        state.origin = self.origin;
        state.step = self.step;
        if let Some((hs, cs)) = &self.memory {
            let mut memory = self.memory_layout.clone();
            let data = memory.data_mut();
            let hv = download(hs)?;
            let cv = download(cs)?;
            data[..hv.len()].copy_from_slice(&hv);
            data[hv.len()..].copy_from_slice(&cv);
            state.memory = memory;
        }
        Ok(state)
    }

    /// Replaces the state (same size and d_state: e.g. the host copy a
    /// tool changed), uploading it; the last delta is forgotten, as after
    /// a tool on the dense engine.
    pub fn set_state(&mut self, state: DenseState) -> Result<()> {
        if (state.height(), state.width()) != (self.height, self.width) {
            return Err(Error::InvalidArgument(format!(
                "the new state is {} x {} but the device grid is {} x {}",
                state.height(),
                state.width(),
                self.height,
                self.width
            )));
        }
        *self = Self::new(Arc::clone(&self.law), state, self.options)?;
        Ok(())
    }

    /// The last step's delta, downloaded (`[2D][H][W]`); `None` before the
    /// first step.
    pub fn last_delta(&self) -> Result<Option<Vec<f32>>> {
        self.delta.as_ref().map(download).transpose()
    }

    /// The delta summary of the last step (`sparse_grid::summary`), computed
    /// on the host from the downloaded delta and state; `None` before the
    /// first step.
    pub fn delta_summary(&self) -> Result<Option<Vec<f32>>> {
        let Some(delta) = self.last_delta()? else {
            return Ok(None);
        };
        let psi = download(&self.psi)?;
        let n = self.height * self.width;
        let mut out = vec![0.0; sparse_grid::summary::PLANES * n];
        sparse_grid::summary::summarize(&psi, &delta, n, self.d_state, &mut out);
        Ok(Some(out))
    }

    /// Advances one step. On error the state is exactly as before the call.
    pub fn step(&mut self) -> Result<StepStats> {
        let step = self.step + 1;
        let fail = |cause: Error| Error::step(step, cause);
        let t0 = Instant::now();
        let (delta, next_memory) = self
            .law
            .forward(&self.psi, self.memory.as_ref())
            .map_err(fail)?;
        let forward = t0.elapsed();

        let t1 = Instant::now();
        let (psi, occupied, alive) = self.update(&delta).map_err(|e| fail(candle_err(e)))?;
        // The step's one transfer: the energy (finite exactly when every
        // delta value is) and the occupied count.
        let sums = delta
            .sqr()
            .and_then(|t| t.sum_all())
            .and_then(|energy| Tensor::stack(&[energy, alive], 0))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| fail(candle_err(e)))?;
        let energy = f64::from(sums[0]);
        if !energy.is_finite() {
            if let Some(cause) = self.first_non_finite(&delta)? {
                return Err(fail(cause));
            }
            // All finite, only their squares overflowed f32: go on.
        }
        self.psi = psi;
        self.occupied = occupied;
        if next_memory.is_some() {
            self.memory = next_memory;
        }
        self.delta = Some(delta);
        self.energy = Some(energy);
        self.occupied_count = sums[1].round() as usize;
        self.step = step;
        Ok(StepStats {
            step,
            occupied_cells: self.occupied_count,
            active_tiles: 0,
            staged_tiles: 0,
            model_cells: self.height * self.width,
            window: Some((self.height, self.width)),
            gather: Duration::ZERO,
            forward,
            scatter: t1.elapsed(),
        })
    }

    /// The update rule on the device: the new psi, occupancy and the
    /// number of occupied cells (a 0-d f32 tensor). Equals
    /// `sparse_grid::update` but for the order of the per-cell sum over
    /// channels (a few ulp), and for a cell whose sum of squares overflows
    /// f32, which becomes zero here as in PyTorch.
    fn update(&self, delta: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let d = self.d_state;
        let (a, b) = (self.psi.narrow(1, 0, d)?, self.psi.narrow(1, d, d)?);
        let (mut u, mut v) = (delta.narrow(1, 0, d)?, delta.narrow(1, d, d)?);
        if self.law.spec().update == UpdateRule::Unitary {
            (u, v) = ((u.mul(&a)? - v.mul(&b)?)?, (u.mul(&b)? + v.mul(&a)?)?);
        }
        let gamma = f64::from(self.options.gamma);
        if gamma > 0.0 {
            u = (u - a.affine(gamma, 0.0)?)?;
            v = (v - b.affine(gamma, 0.0)?)?;
        }
        let (a, b) = ((a + u)?, (b + v)?);
        let len = (a.sqr()? + b.sqr()?)?.sum_keepdim(1)?.sqrt()?;
        let mut scale = (len.clone() + f64::from(NORM_EPS))?.recip()?;
        let occupied = match self.options.threshold {
            Some(t) => {
                let alive = len.ge(f64::from(t))?;
                scale = scale.mul(&alive.to_dtype(DType::F32)?)?;
                alive.reshape((self.height, self.width))?
            }
            None => self.all_occupied.clone(),
        };
        let psi = Tensor::cat(&[a.broadcast_mul(&scale)?, b.broadcast_mul(&scale)?], 1)?;
        let count = occupied.to_dtype(DType::F32)?.sum_all()?;
        Ok((psi, occupied, count))
    }

    /// The first non-finite value of `delta` as the dense engine reports
    /// it (only on the error path: downloads the delta).
    fn first_non_finite(&self, delta: &Tensor) -> Result<Option<Error>> {
        let values = download(delta)?;
        let n = self.height * self.width;
        Ok(values.iter().position(|v| !v.is_finite()).map(|i| {
            let (c, cell) = (i / n, i % n);
            Error::NonFinite {
                x: i64::from(self.origin.0) + (cell % self.width) as i64,
                y: i64::from(self.origin.1) + (cell / self.width) as i64,
                channel: c % self.d_state,
                imaginary: c >= self.d_state,
            }
        }))
    }
}

/// A tensor's values on the host, in its (contiguous) order.
fn download(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_err)
}
