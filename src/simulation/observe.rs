//! The instruments on a [`Simulation`]: tools that poke it, visualizations
//! that draw it and readouts that measure it. The definitions live in the
//! `instruments` crate (docs/instruments.md); this file cuts the frames they
//! work on from either engine and writes the tools' results back.
//!
//! On the dense engine a frame is the grid, read where it lies (readouts do
//! not copy it) and written in place (a tool checks every argument before
//! it writes, so a failed tool changes nothing). On the sparse engine a tool
//! works on the box it may write ([`Tool::footprint`]): the box is exported,
//! changed, and imported back in one all-or-nothing import; pictures and
//! readouts cover the matter's extent.

use engine_api::{Error, Result};
use instruments::frame::{Frame, FrameMut, FrameRef};
use instruments::metrics::{energy_of, metrics};
use instruments::tools::{ClickOut, Lattice, Tool};
use instruments::viz::{self, Viz, VizMap};
use instruments::Metrics;
use sparse_grid::sparse::CellBox;
use sparse_grid::summary::PLANES;
use sparse_grid::DenseState;

use super::{for_overlap, grid_box, Engine, Simulation};

/// What a simulation keeps for its instruments.
#[derive(Debug, Default)]
pub(super) struct Observe {
    /// The fidelity's psi0: the field when the simulation was built or its
    /// state last replaced.
    baseline: Option<Frame>,
    /// Click-out, while it is on.
    click_out: Option<ClickOut>,
    /// False after a tool changed the field: the last delta no longer
    /// belongs to it (Atheria forgets it then too), so `energy`, `physics`,
    /// `flow` and `delta` wait for the next step.
    stale_delta: bool,
}

impl Simulation {
    /// Applies a tool (docs/instruments.md, "Tools"). Every argument is
    /// checked first; an error names the argument and changes nothing.
    /// [`Tool::ClickOut`] is a setting: it turns click-out on (or off) for
    /// the steps that follow.
    ///
    /// On the dense engine tools are clipped to the grid and their centres
    /// must lie inside it; on the sparse engine they work at any
    /// coordinates and create matter where they write.
    pub fn apply(&mut self, tool: &Tool) -> Result<()> {
        let d = self.d_state();
        let lattice = self.lattice();
        if let Tool::ClickOut {
            enabled,
            chance,
            seed,
        } = *tool
        {
            tool.check(&lattice, d)?;
            self.observe.click_out = enabled.then_some(ClickOut { chance, seed });
            return Ok(());
        }
        // The device engine's grid is changed in a downloaded copy and
        // uploaded back (`on_grid`).
        match self.on_grid(|s| tool.apply(&mut FrameMut::new(s), &lattice)) {
            Ok(done) => done?,
            Err(e) => {
                let Some(area) = tool.footprint(&lattice, d)? else {
                    return Ok(());
                };
                let mut part = e.export_cells(area)?;
                tool.apply(&mut FrameMut::new(&mut part), &lattice)?;
                e.import(&part)?;
            }
        }
        self.observe.stale_delta = true;
        Ok(())
    }

    /// Click-out's setting, `None` while it is off.
    pub fn click_out(&self) -> Option<ClickOut> {
        self.observe.click_out
    }

    /// The lattice tools see: the dense grid, or the unbounded lattice with
    /// its matter's extent.
    pub fn lattice(&self) -> Lattice {
        match &self.engine {
            Engine::Dense(_) | Engine::Device(_) => {
                Lattice::Bounded(self.extent().expect("a grid has a box"))
            }
            Engine::Sparse(e) => Lattice::Unbounded {
                extent: e.bounding_box(),
            },
        }
    }

    /// A visualization over `area` (docs/instruments.md, "Visualizations"),
    /// with Atheria's vacuum mask: the raw float map; normalise it with
    /// [`instruments::viz::normalize`] or draw it with
    /// `atheria::render::write_viz`. Cells outside a dense grid, or without
    /// matter, are vacuum.
    pub fn field(&self, viz: Viz, area: CellBox) -> Result<VizMap> {
        self.field_with(viz, area, true)
    }

    /// As [`Simulation::field`], choosing whether the vacuum mask applies.
    pub fn field_with(&self, viz: Viz, area: CellBox, mask: bool) -> Result<VizMap> {
        let frame = self.frame(area)?;
        viz::field(viz, &frame.as_ref(), mask)
    }

    /// The flow's vectors over `area` (mean_c Re delta_c, mean_c Im
    /// delta_c, masked and scaled as Atheria's), row-major.
    pub fn flow_vectors(&self, area: CellBox) -> Result<(Vec<f32>, Vec<f32>)> {
        let frame = self.frame(area)?;
        Ok(viz::flow_vectors(&frame.as_ref(), true))
    }

    /// The cells of `area` with the last step's delta summary: what
    /// visualizations read.
    pub fn frame(&self, area: CellBox) -> Result<Frame> {
        let state = self.state_in(area)?;
        let summary = self.summary_in(area, &state)?;
        Frame::new(state, summary)
    }

    /// The readouts now (docs/instruments.md, "Readouts"), over the dense
    /// grid or the sparse lattice's extent. Cheap enough for every step: on
    /// the dense engine nothing is copied.
    pub fn metrics(&self) -> Result<Metrics> {
        let step = self.step_count();
        let baseline = self.observe.baseline.as_ref().map(Frame::as_ref);
        let exported;
        let (state, energy, threshold) = match &self.engine {
            Engine::Device(e) => {
                exported = e.state()?;
                let energy = e.last_delta_energy().filter(|_| !self.observe.stale_delta);
                (&exported, energy, e.options().threshold)
            }
            Engine::Dense(e) => (
                e.state(),
                e.last_delta_energy().filter(|_| !self.observe.stale_delta),
                e.threshold(),
            ),
            Engine::Sparse(e) => {
                let area = e.bounding_box().unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
                exported = e.export_cells(area)?;
                let summary = self.summary_in(area, &exported)?;
                let energy = energy_of(&FrameRef::new(&exported, summary.as_deref())?);
                (&exported, energy, Some(e.options().threshold))
            }
        };
        let frame = FrameRef::new(state, None)?;
        // In the engine's pool when it has one: the readouts split their
        // channels among its threads, never beyond them.
        let read = || metrics(&frame, baseline.as_ref(), energy, threshold, step);
        Ok(match self.engine.pool() {
            Some(pool) => pool.install(read),
            None => read(),
        })
    }

    /// Makes the field now the fidelity's psi0 (done when the simulation is
    /// built and whenever its state is replaced).
    pub fn reset_baseline(&mut self) -> Result<()> {
        self.observe.baseline = Some(Frame::new(self.state()?, None)?);
        self.observe.stale_delta = false;
        Ok(())
    }

    /// The delta summary over `area` (laid out as `state`, a cut of it), or
    /// `None` before a step or after a tool.
    fn summary_in(&self, area: CellBox, state: &DenseState) -> Result<Option<Vec<f32>>> {
        if self.observe.stale_delta {
            return Ok(None);
        }
        match &self.engine {
            Engine::Sparse(e) => e.delta_summary(area),
            Engine::Dense(_) | Engine::Device(_) => {
                // The grid's box is all it takes to place the summary: the
                // device engine's psi stays on the device.
                let (full, grid) = match &self.engine {
                    Engine::Dense(e) => {
                        let s = e.state();
                        (
                            e.delta_summary(),
                            grid_box(s.origin, s.height(), s.width())?,
                        )
                    }
                    Engine::Device(e) => {
                        let ((h, w), origin) = e.extent();
                        (e.delta_summary()?, grid_box(origin, h, w)?)
                    }
                    Engine::Sparse(_) => unreachable!("matched above"),
                };
                let Some(full) = full else {
                    return Ok(None);
                };
                let (n, m) = (grid.width() * grid.height(), state.cells());
                let mut out = vec![0.0f32; PLANES * m];
                for_overlap(grid, area, |i, j| {
                    for p in 0..PLANES {
                        out[p * m + j] = full[p * n + i];
                    }
                });
                Ok(Some(out))
            }
        }
    }

    /// Click-out after step `step`, when it is on.
    pub(super) fn after_step(&mut self, step: u64) -> Result<()> {
        self.observe.stale_delta = false;
        let Some(click) = self.observe.click_out else {
            return Ok(());
        };
        let fail = |e: Error| {
            Error::InvalidArgument(format!(
                "click_out after step {step}: {e} (the step itself stands)"
            ))
        };
        if let Engine::Device(_) = self.engine {
            if !click.fires(step) {
                // Not a download per step for nothing.
                return Ok(());
            }
        }
        match self.on_grid(|s| {
            let mut frame = FrameMut::new(s);
            let region = frame.cell_box();
            click.apply(&mut frame, region, step).map(|_| ())
        }) {
            Ok(done) => done.map_err(fail)?,
            Err(e) => {
                let Some(region) = e.bounding_box() else {
                    return Ok(());
                };
                if !click.fires(step) {
                    return Ok(());
                }
                let mut part = e.export_cells(region).map_err(fail)?;
                click
                    .apply(&mut FrameMut::new(&mut part), region, step)
                    .map_err(fail)?;
                e.import(&part).map_err(fail)?;
            }
        }
        Ok(())
    }
}
