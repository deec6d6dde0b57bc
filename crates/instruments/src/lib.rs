//! Atheria's instruments: what a researcher uses to poke a running universe
//! and to watch it. Everything here works on a [`Frame`], a dense rectangle
//! of the lattice (the dense engine's grid, or a box of the sparse
//! lattice), so one definition serves both engines; `atheria::Simulation`
//! cuts the frames and writes the tools' results back.
//!
//! The definitions, and where they follow or deliberately leave Atheria's,
//! are in `docs/instruments.md`; the PyTorch reference
//! (`python/atheria_ref/instruments.py`) implements the same page and the
//! workspace's tests compare the two.
//!
//! | module | what it holds |
//! |---|---|
//! | [`frame`] | [`Frame`], [`FrameRef`], [`FrameMut`]: a dense box of cells with its occupancy and delta summary |
//! | [`tools`] | [`Tool`] (vortex, wave, collapse, click-out, energy injection, phase vortex, stamp), [`Lattice`], [`ClickOut`] |
//! | [`parse`] | the one tool-string syntax (`vortex:x=40,y=40,radius=6@step=50`): [`ScheduledTool`] |
//! | [`viz`] | [`Viz`]: the visualizations as float maps ([`VizMap`]), their normalisation and the flow's vectors |
//! | [`metrics`] | [`Metrics`]: the readouts (norm, densities, matter, energy, fidelity, entropy, Atheria's epoch) |

#![warn(missing_docs)]

pub mod frame;
pub mod metrics;
pub mod parse;
pub mod tools;
pub mod viz;

pub use frame::{Frame, FrameMut, FrameRef};
pub use metrics::{Metrics, EPOCH_NAMES};
pub use parse::ScheduledTool;
pub use tools::{ClickOut, EnergyMode, Lattice, Tool};
pub use viz::{Viz, VizMap};
