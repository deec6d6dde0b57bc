//! Tools: what pokes a field. Each one checks its arguments first (an error
//! names the argument; nothing is clipped silently), then writes a
//! [`FrameMut`]. Definitions: docs/instruments.md, "Tools".
//!
//! On a [`Lattice::Bounded`] grid (the dense engine) footprints are
//! clipped to the grid and centres must lie inside it. On an
//! [`Lattice::Unbounded`] lattice (the sparse engine) nothing is clipped and
//! a tool creates matter where it writes: the caller exports
//! [`Tool::footprint`], applies the tool to it and writes it back.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use engine_api::{Error, Result};
use sparse_grid::rng::{cell_key, normal, uniform};
use sparse_grid::sparse::CellBox;
use sparse_grid::DenseState;

use crate::frame::FrameMut;

/// Random streams of the tools (0-4 belong to initial states and the vacuum).
pub mod stream {
    /// Collapse noise, real part.
    pub const COLLAPSE_RE: u64 = 5;
    /// Collapse noise, imaginary part.
    pub const COLLAPSE_IM: u64 = 6;
    /// Click-out: does this step swap?
    pub const CLICK_GATE: u64 = 7;
    /// Click-out: pair coordinates.
    pub const CLICK_PAIR: u64 = 8;
    /// Primordial soup: is this cell seeded?
    pub const SOUP_GATE: u64 = 9;
    /// Energy injection noise, real part.
    pub const ENERGY_RE: u64 = 10;
    /// Energy injection noise, imaginary part.
    pub const ENERGY_IM: u64 = 11;
}

/// The largest vortex radius and phase-vortex core accepted.
pub const MAX_RADIUS: u32 = 4096;
/// The largest vortex strength (beyond it the field overflows f32 in a
/// few steps).
pub const MAX_STRENGTH: f32 = 1000.0;
/// The largest |charge| of a phase vortex.
pub const MAX_CHARGE: i32 = 64;
/// Atheria's brush blends its pattern in with this weight.
const ALPHA: f64 = 0.8;
/// Cells of the row a collapse touches (Atheria's 11 qubits).
const COLLAPSE_CELLS: i64 = 11;

/// The lattice a tool works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lattice {
    /// The dense engine's grid: this box, nothing outside it.
    Bounded(CellBox),
    /// The sparse engine's lattice; `extent` is the bounding box of its
    /// matter (`None` when there is none).
    Unbounded {
        /// The bounding box of the matter before the tool runs.
        extent: Option<CellBox>,
    },
}

impl Lattice {
    /// What a tool takes for "the grid": the grid, or the matter's extent.
    pub fn region(&self) -> Option<CellBox> {
        match *self {
            Lattice::Bounded(b) => Some(b),
            Lattice::Unbounded { extent } => extent,
        }
    }

    fn check_inside(&self, tool: &str, x: i32, y: i32) -> Result<()> {
        if let Lattice::Bounded(b) = self {
            for (axis, v, lo, hi) in [("x", x, b.min_x, b.max_x), ("y", y, b.min_y, b.max_y)] {
                if v < lo || v > hi {
                    return Err(bad(
                        tool,
                        format!("{axis} {v} is outside the grid ({axis} from {lo} to {hi})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `b` clipped to the grid (unchanged when unbounded); `None` if empty.
    fn clip(&self, b: Box64) -> Option<CellBox> {
        let b = match self {
            Lattice::Bounded(g) => Box64 {
                x0: b.x0.max(g.min_x as i64),
                y0: b.y0.max(g.min_y as i64),
                x1: b.x1.min(g.max_x as i64),
                y1: b.y1.min(g.max_y as i64),
            },
            Lattice::Unbounded { .. } => b,
        };
        (b.x0 <= b.x1 && b.y0 <= b.y1).then_some(())?;
        // Centres are i32 and reaches at most a few thousand cells: clamping
        // to the i32 lattice only trims what lies beyond its edge.
        Some(CellBox::new(
            b.x0.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            b.y0.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            b.x1.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            b.y1.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
        ))
    }
}

/// An inclusive box in i64, before it is clipped to the i32 lattice.
#[derive(Debug, Clone, Copy)]
struct Box64 {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

impl Box64 {
    fn of(b: CellBox) -> Self {
        Self {
            x0: b.min_x as i64,
            y0: b.min_y as i64,
            x1: b.max_x as i64,
            y1: b.max_y as i64,
        }
    }

    fn union(self, o: Self) -> Self {
        Self {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

/// Atheria's three energy injections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyMode {
    /// Sparse Gaussian noise, denser toward the centre.
    PrimordialSoup,
    /// A square of strong noise replacing the field.
    DenseMonolith,
    /// A four-fold mirror-symmetric seed of noise.
    SymmetricSeed,
}

impl EnergyMode {
    /// Every mode, in Atheria's order.
    pub const ALL: [EnergyMode; 3] = [
        EnergyMode::PrimordialSoup,
        EnergyMode::DenseMonolith,
        EnergyMode::SymmetricSeed,
    ];

    /// Atheria's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            EnergyMode::PrimordialSoup => "primordial_soup",
            EnergyMode::DenseMonolith => "dense_monolith",
            EnergyMode::SymmetricSeed => "symmetric_seed",
        }
    }

    /// The mode's size on a grid `width` wide (`None`: unbounded, the cap).
    fn size(self, width: Option<usize>) -> i64 {
        let (cap, div) = match self {
            EnergyMode::PrimordialSoup => (20, 4),
            EnergyMode::DenseMonolith => (10, 8),
            EnergyMode::SymmetricSeed => (8, 10),
        };
        width.map_or(cap, |w| cap.min(w as i64 / div))
    }
}

impl FromStr for EnergyMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                "unknown energy mode `{s}`: use primordial_soup, dense_monolith or symmetric_seed"
            ))
            })
    }
}

impl fmt::Display for EnergyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tool: one change to the field (or, for `ClickOut`, a setting of the
/// steps that follow).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Tool {
    /// Atheria's vortex brush: a Gaussian-weighted phase pattern blended
    /// into the `2 radius` box around (x, y).
    Vortex {
        /// Column of the centre.
        x: i32,
        /// Row of the centre.
        y: i32,
        /// Half the box's side, 1 to 4096.
        radius: u32,
        /// Scales the pattern (Atheria ignores it: 1 is its brush), 0 to 1000.
        strength: f32,
    },
    /// Atheria's plane wave over the whole grid (the matter's extent on the
    /// sparse lattice).
    Wave {
        /// Wave number along x.
        k_x: f32,
        /// Wave number along y.
        k_y: f32,
    },
    /// Atheria's collapse without a quantum backend: seeded Gaussian noise
    /// on the 11 cells of row y around x.
    Collapse {
        /// Column of the centre.
        x: i32,
        /// Row.
        y: i32,
        /// Noise scale, 0 to 1.
        intensity: f32,
        /// Seed of the noise.
        seed: u64,
    },
    /// Atheria's click-out: after every step, with probability `chance`,
    /// swap random pairs of cells. A setting: it changes nothing now.
    ClickOut {
        /// On or off.
        enabled: bool,
        /// Probability per step, 0 to 1.
        chance: f32,
        /// Seed of the draws.
        seed: u64,
    },
    /// Atheria's energy injection in one of its three modes.
    InjectEnergy {
        /// Which injection.
        mode: EnergyMode,
        /// The centre; `None` for the centre of the grid (or extent).
        center: Option<(i32, i32)>,
        /// Seed of the noise.
        seed: u64,
    },
    /// A vortex of integer winding number imprinted on the field: phase
    /// `charge * atan2`, magnitude `tanh(r / core)`.
    PhaseVortex {
        /// Column of the core.
        x: i32,
        /// Row of the core.
        y: i32,
        /// Winding number, non-zero, |charge| <= 64.
        charge: i32,
        /// Core radius in cells, > 0.
        core: f32,
    },
    /// Writes a block of cells (values and occupancy) with its first cell at
    /// (x, y).
    Stamp {
        /// Column of the patch's first cell.
        x: i32,
        /// Row of the patch's first cell.
        y: i32,
        /// The cells written (its origin is ignored).
        patch: DenseState,
    },
}

fn bad(tool: &str, what: String) -> Error {
    Error::InvalidArgument(format!("{tool}: {what}"))
}

impl Tool {
    /// The tool's name in tool strings.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Vortex { .. } => "vortex",
            Tool::Wave { .. } => "wave",
            Tool::Collapse { .. } => "collapse",
            Tool::ClickOut { .. } => "click_out",
            Tool::InjectEnergy { .. } => "inject_energy",
            Tool::PhaseVortex { .. } => "phase_vortex",
            Tool::Stamp { .. } => "stamp",
        }
    }

    /// Checks the arguments against the lattice and the model's `d`; the
    /// error names the argument.
    pub fn check(&self, lattice: &Lattice, d: usize) -> Result<()> {
        let name = self.name();
        let finite = |arg: &str, v: f32| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(bad(name, format!("{arg} {v} must be a finite number")))
            }
        };
        match self {
            Tool::Vortex {
                x,
                y,
                radius,
                strength,
            } => {
                if !(1..=MAX_RADIUS).contains(radius) {
                    return Err(bad(
                        name,
                        format!("radius {radius} must be between 1 and {MAX_RADIUS}"),
                    ));
                }
                if !(0.0..=MAX_STRENGTH).contains(strength) {
                    return Err(bad(
                        name,
                        format!("strength {strength} must be between 0 and {MAX_STRENGTH}"),
                    ));
                }
                lattice.check_inside(name, *x, *y)
            }
            Tool::Wave { k_x, k_y } => {
                finite("k_x", *k_x)?;
                finite("k_y", *k_y)?;
                if lattice.region().is_none() {
                    return Err(bad(
                        name,
                        "the lattice is empty: a wave needs matter to span".into(),
                    ));
                }
                Ok(())
            }
            Tool::Collapse {
                x, y, intensity, ..
            } => {
                if !(0.0..=1.0).contains(intensity) {
                    return Err(bad(
                        name,
                        format!("intensity {intensity} must be between 0 and 1"),
                    ));
                }
                lattice.check_inside(name, *x, *y)
            }
            Tool::ClickOut { chance, .. } => {
                if !(0.0..=1.0).contains(chance) {
                    return Err(bad(
                        name,
                        format!("chance {chance} must be between 0 and 1"),
                    ));
                }
                Ok(())
            }
            Tool::InjectEnergy { center, .. } => match center {
                Some((x, y)) => lattice.check_inside(name, *x, *y),
                None => Ok(()),
            },
            Tool::PhaseVortex { x, y, charge, core } => {
                if *charge == 0 || charge.abs() > MAX_CHARGE {
                    return Err(bad(name, format!("charge {charge} must be a non-zero integer between -{MAX_CHARGE} and {MAX_CHARGE}")));
                }
                if !(core.is_finite() && *core > 0.0 && *core <= MAX_RADIUS as f32) {
                    return Err(bad(
                        name,
                        format!("core {core} must be > 0 and <= {MAX_RADIUS}"),
                    ));
                }
                lattice.check_inside(name, *x, *y)
            }
            Tool::Stamp { x, y, patch } => {
                if patch.d_state() != d {
                    return Err(bad(
                        name,
                        format!(
                            "the patch has d_state {} but the model has {d}",
                            patch.d_state()
                        ),
                    ));
                }
                if patch.planes().iter().any(|v| !v.is_finite()) {
                    return Err(bad(name, "the patch holds a non-finite value".into()));
                }
                let far = (
                    *x as i64 + patch.width() as i64 - 1,
                    *y as i64 + patch.height() as i64 - 1,
                );
                if far.0 > i32::MAX as i64 || far.1 > i32::MAX as i64 {
                    return Err(bad(name, "the patch reaches past the i32 lattice".into()));
                }
                if let Lattice::Bounded(b) = lattice {
                    lattice.check_inside(name, *x, *y)?;
                    if far.0 > b.max_x as i64 || far.1 > b.max_y as i64 {
                        return Err(bad(name, format!(
                            "a {} x {} patch at x {x}, y {y} does not fit inside the grid (to x {}, y {})",
                            patch.width(), patch.height(), b.max_x, b.max_y
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// The box of cells the tool may write (clipped to a bounded grid), after
    /// checking its arguments; `None` when it writes nothing (click-out, a
    /// zero-sized injection).
    pub fn footprint(&self, lattice: &Lattice, d: usize) -> Result<Option<CellBox>> {
        self.check(lattice, d)?;
        let square = |cx: i64, cy: i64, lo: i64, hi: i64| Box64 {
            x0: cx - lo,
            y0: cy - lo,
            x1: cx + hi,
            y1: cy + hi,
        };
        let b = match self {
            Tool::Vortex { x, y, radius, .. } => {
                let r = *radius as i64;
                square(*x as i64, *y as i64, r, r - 1)
            }
            Tool::Wave { .. } => Box64::of(lattice.region().expect("checked")),
            Tool::Collapse { x, y, .. } => {
                let (s, e) = collapse_span(lattice, *x);
                Box64 {
                    x0: s,
                    y0: *y as i64,
                    x1: e - 1,
                    y1: *y as i64,
                }
            }
            Tool::ClickOut { .. } => return Ok(None),
            Tool::InjectEnergy { mode, center, .. } => {
                let (cx, cy, w) = energy_center(lattice, *center);
                let s = mode.size(w);
                if s <= 0 {
                    return Ok(None);
                }
                match mode {
                    EnergyMode::SymmetricSeed => square(cx, cy, s, s),
                    _ => square(cx, cy, s, s - 1),
                }
            }
            Tool::PhaseVortex { x, y, core, .. } => {
                let reach = (4.0 * *core as f64).ceil() as i64;
                let b = square(*x as i64, *y as i64, reach, reach);
                match lattice {
                    Lattice::Bounded(g) => Box64::of(*g),
                    Lattice::Unbounded { extent: Some(e) } => b.union(Box64::of(*e)),
                    Lattice::Unbounded { extent: None } => b,
                }
            }
            Tool::Stamp { x, y, patch } => Box64 {
                x0: *x as i64,
                y0: *y as i64,
                x1: *x as i64 + patch.width() as i64 - 1,
                y1: *y as i64 + patch.height() as i64 - 1,
            },
        };
        Ok(lattice.clip(b))
    }

    /// Checks the arguments, then applies the tool to `frame`, which must
    /// hold the whole [`Tool::footprint`]. `ClickOut` changes nothing here:
    /// it is a setting of the steps (see [`ClickOut`]).
    pub fn apply(&self, frame: &mut FrameMut<'_>, lattice: &Lattice) -> Result<()> {
        let fp = self.footprint(lattice, frame.d)?;
        if let Some(fp) = fp {
            check_holds(frame, fp, self.name())?;
        }
        match self {
            Tool::Vortex {
                x,
                y,
                radius,
                strength,
            } => vortex(frame, fp, *x, *y, *radius, *strength),
            Tool::Wave { k_x, k_y } => wave(frame, lattice.region().expect("checked"), *k_x, *k_y),
            Tool::Collapse {
                y, intensity, seed, ..
            } => {
                if let Some(fp) = fp {
                    collapse(frame, fp, *y, *intensity, *seed)
                }
            }
            Tool::ClickOut { .. } => {}
            Tool::InjectEnergy { mode, center, seed } => {
                let (cx, cy, w) = energy_center(lattice, *center);
                inject_energy(frame, lattice, *mode, cx, cy, mode.size(w), *seed)
            }
            Tool::PhaseVortex { x, y, charge, core } => {
                phase_vortex(frame, lattice, *x, *y, *charge, *core)
            }
            Tool::Stamp { x, y, patch } => stamp(frame, *x, *y, patch),
        }
        Ok(())
    }
}

/// An error unless `frame` holds every cell of `area` (what `tool` writes).
fn check_holds(frame: &FrameMut<'_>, area: CellBox, tool: &str) -> Result<()> {
    let fb = frame.cell_box();
    if area.min_x < fb.min_x
        || area.min_y < fb.min_y
        || area.max_x > fb.max_x
        || area.max_y > fb.max_y
    {
        return Err(Error::InvalidArgument(format!(
            "{tool}: the frame {fb:?} does not hold the cells it writes, {area:?}"
        )));
    }
    Ok(())
}

/// The [start, end) columns of a collapse around `x`, as Atheria shifts them
/// to stay inside a grid.
fn collapse_span(lattice: &Lattice, x: i32) -> (i64, i64) {
    let x = x as i64;
    match lattice {
        Lattice::Bounded(g) => {
            let (lo, hi) = (g.min_x as i64, g.max_x as i64 + 1);
            let mut start = lo.max(x - COLLAPSE_CELLS / 2);
            let end = hi.min(start + COLLAPSE_CELLS);
            if end - start < COLLAPSE_CELLS {
                start = lo.max(end - COLLAPSE_CELLS);
            }
            (start, end)
        }
        Lattice::Unbounded { .. } => (
            x - COLLAPSE_CELLS / 2,
            x - COLLAPSE_CELLS / 2 + COLLAPSE_CELLS,
        ),
    }
}

/// The centre of an energy injection and the width its sizes come from
/// (`None` on the unbounded lattice).
fn energy_center(lattice: &Lattice, center: Option<(i32, i32)>) -> (i64, i64, Option<usize>) {
    let width = match lattice {
        Lattice::Bounded(g) => Some(g.width()),
        Lattice::Unbounded { .. } => None,
    };
    let (cx, cy) = match (center, lattice.region()) {
        (Some((x, y)), _) => (x as i64, y as i64),
        (None, Some(r)) => (
            r.min_x as i64 + r.width() as i64 / 2,
            r.min_y as i64 + r.height() as i64 / 2,
        ),
        (None, None) => (0, 0),
    };
    (cx, cy, width)
}

/// `linspace(-1, 1, n)[k]`.
fn linspace(k: i64, n: i64) -> f64 {
    if n <= 1 {
        -1.0
    } else {
        -1.0 + 2.0 * k as f64 / (n - 1) as f64
    }
}

/// psi_c <- (1 - alpha) psi_c + alpha * v in every channel of cell `i`.
fn blend(frame: &mut FrameMut<'_>, i: usize, v: (f64, f64)) {
    for c in 0..frame.d {
        let (re, im) = frame.get(i, c);
        frame.set(
            i,
            c,
            (
                ((1.0 - ALPHA) * re as f64 + ALPHA * v.0) as f32,
                ((1.0 - ALPHA) * im as f64 + ALPHA * v.1) as f32,
            ),
        );
    }
}

fn cmul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn vortex(
    frame: &mut FrameMut<'_>,
    fp: Option<CellBox>,
    x: i32,
    y: i32,
    radius: u32,
    strength: f32,
) {
    let Some(fp) = fp else { return };
    let (r, n) = (radius as i64, 2 * radius as i64);
    // Atheria's _mock_pattern('vortex'): a Gaussian with a linear phase.
    let p = |k: i64| {
        let u = linspace(k, n);
        let m = (-2.0 * u * u).exp();
        (m * (PI * u).cos(), m * (PI * u).sin())
    };
    for yy in fp.min_y as i64..=fp.max_y as i64 {
        let pi = p(yy - (y as i64 - r));
        for xx in fp.min_x as i64..=fp.max_x as i64 {
            let v = cmul(pi, p(xx - (x as i64 - r)));
            let i = frame
                .index(xx, yy)
                .expect("the footprint is inside the frame");
            blend(frame, i, (strength as f64 * v.0, strength as f64 * v.1));
        }
    }
}

fn wave(frame: &mut FrameMut<'_>, region: CellBox, k_x: f32, k_y: f32) {
    let (w, h) = (region.width() as i64, region.height() as i64);
    for i in 0..h {
        let v = linspace(h - h / 2 + i, 2 * h);
        for j in 0..w {
            let u = linspace(w - w / 2 + j, 2 * w);
            let phase = k_x as f64 * u + k_y as f64 * v;
            let cell = frame
                .index(region.min_x as i64 + j, region.min_y as i64 + i)
                .expect("the region is inside the frame");
            blend(frame, cell, (0.25 * phase.cos(), 0.25 * phase.sin()));
        }
    }
}

fn collapse(frame: &mut FrameMut<'_>, fp: CellBox, y: i32, intensity: f32, seed: u64) {
    let s = intensity as f64 / std::f64::consts::SQRT_2;
    for x in fp.min_x..=fp.max_x {
        let i = frame.index(x as i64, y as i64).expect("inside");
        for c in 0..frame.d {
            let (re, im) = frame.get(i, c);
            let nr = normal(&cell_key(
                seed,
                x as i64,
                y as i64,
                0,
                c,
                stream::COLLAPSE_RE,
            )) as f64;
            let ni = normal(&cell_key(
                seed,
                x as i64,
                y as i64,
                0,
                c,
                stream::COLLAPSE_IM,
            )) as f64;
            frame.set(
                i,
                c,
                ((re as f64 + s * nr) as f32, (im as f64 + s * ni) as f32),
            );
        }
    }
}

/// Seeded complex noise `(n_re + i n_im) * scale` for channel `c` of (x, y).
fn energy_noise(seed: u64, x: i64, y: i64, c: usize, scale: f64) -> (f64, f64) {
    (
        normal(&cell_key(seed, x, y, 0, c, stream::ENERGY_RE)) as f64 * scale,
        normal(&cell_key(seed, x, y, 0, c, stream::ENERGY_IM)) as f64 * scale,
    )
}

fn inject_energy(
    frame: &mut FrameMut<'_>,
    lattice: &Lattice,
    mode: EnergyMode,
    cx: i64,
    cy: i64,
    s: i64,
    seed: u64,
) {
    if s <= 0 {
        return;
    }
    let inside = |x: i64, y: i64| match lattice {
        Lattice::Bounded(g) => {
            g.contains(x as i32, y as i32) && x == x as i32 as i64 && y == y as i32 as i64
        }
        Lattice::Unbounded { .. } => true,
    };
    let d = frame.d;
    match mode {
        EnergyMode::PrimordialSoup => {
            for x in cx - s..cx + s {
                for y in cy - s..cy + s {
                    if !inside(x, y) {
                        continue;
                    }
                    let dist = (((x - cx).pow(2) + (y - cy).pow(2)) as f64).sqrt();
                    let prob = 0.3 * (-dist / (s as f64 / 2.0)).exp();
                    if (uniform(&cell_key(seed, x, y, 0, 0, stream::SOUP_GATE)) as f64) < prob {
                        let i = frame.index(x, y).expect("inside");
                        for c in 0..d {
                            let (re, im) = frame.get(i, c);
                            let (nr, ni) = energy_noise(seed, x, y, c, 0.1);
                            frame.set(i, c, ((re as f64 + nr) as f32, (im as f64 + ni) as f32));
                        }
                    }
                }
            }
        }
        EnergyMode::DenseMonolith => {
            for x in cx - s..cx + s {
                for y in cy - s..cy + s {
                    if inside(x, y) {
                        let i = frame.index(x, y).expect("inside");
                        for c in 0..d {
                            let (nr, ni) = energy_noise(seed, x, y, c, 0.2);
                            frame.set(i, c, (nr as f32, ni as f32));
                        }
                    }
                }
            }
        }
        EnergyMode::SymmetricSeed => {
            for x in cx - s..cx {
                for y in cy - s..cy {
                    let (dx, dy) = (cx - x, cy - y);
                    for (tx, ty) in [
                        (cx + dx, cy + dy),
                        (cx - dx, cy + dy),
                        (cx + dx, cy - dy),
                        (cx - dx, cy - dy),
                    ] {
                        if inside(tx, ty) {
                            let i = frame.index(tx, ty).expect("inside");
                            for c in 0..d {
                                let (nr, ni) = energy_noise(seed, x, y, c, 0.15);
                                frame.set(i, c, (nr as f32, ni as f32));
                            }
                        }
                    }
                }
            }
        }
    }
}

fn phase_vortex(
    frame: &mut FrameMut<'_>,
    lattice: &Lattice,
    x: i32,
    y: i32,
    charge: i32,
    core: f32,
) {
    let reach = (4.0 * core as f64).ceil() as i64;
    let (w, d) = (frame.width, frame.d);
    let uniform_dir = 1.0 / (d as f64).sqrt();
    for i in 0..frame.cells() {
        let (cx, cy) = (
            frame.origin.0 as i64 + (i % w) as i64,
            frame.origin.1 as i64 + (i / w) as i64,
        );
        let (dx, dy) = (cx - x as i64, cy - y as i64);
        let near = dx.abs() <= reach && dy.abs() <= reach;
        let write = match lattice {
            Lattice::Bounded(_) => true,
            Lattice::Unbounded { .. } => near || frame.occupied[i] != 0,
        };
        if !write {
            continue;
        }
        let (dx, dy) = (dx as f64, dy as f64);
        let f = ((dx * dx + dy * dy).sqrt() / core as f64).tanh();
        let theta = charge as f64 * dy.atan2(dx);
        let rot = (f * theta.cos(), f * theta.sin());
        let len = (0..d)
            .map(|c| {
                let (a, b) = frame.get(i, c);
                a as f64 * a as f64 + b as f64 * b as f64
            })
            .sum::<f64>()
            .sqrt();
        for c in 0..d {
            let u = if len > 1e-6 {
                let (a, b) = frame.get(i, c);
                (a as f64 / len, b as f64 / len)
            } else {
                (uniform_dir, 0.0)
            };
            let v = cmul(rot, u);
            frame.set(i, c, (v.0 as f32, v.1 as f32));
        }
    }
}

fn stamp(frame: &mut FrameMut<'_>, x: i32, y: i32, patch: &DenseState) {
    let (pw, pn, d) = (patch.width(), patch.cells(), patch.d_state());
    let (planes, occ) = (patch.planes(), patch.occupied());
    for k in 0..pn {
        let i = frame
            .index(x as i64 + (k % pw) as i64, y as i64 + (k / pw) as i64)
            .expect("the patch is inside the frame");
        for c in 0..d {
            frame.set(i, c, (planes[c * pn + k], planes[(c + d) * pn + k]));
        }
        frame.occupied[i] = occ[k];
    }
}

/// Click-out while it is on: after every step, with probability `chance`,
/// `floor(max(W, H) / 2)` random pairs of cells of the region swap their
/// values and occupancy (Atheria's `_apply_click_out`, seeded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClickOut {
    /// Probability that a step swaps, 0 to 1.
    pub chance: f32,
    /// Seed of the draws.
    pub seed: u64,
}

impl ClickOut {
    /// Whether the step numbered `step` (from 1) swaps.
    pub fn fires(&self, step: u64) -> bool {
        uniform(&cell_key(self.seed, 0, 0, step, 0, stream::CLICK_GATE)) <= self.chance
            && self.chance > 0.0
    }

    /// Applies click-out after step `step` to `region` (the grid, or the
    /// matter's extent after the step), which `frame` must hold. Returns
    /// whether it swapped.
    pub fn apply(&self, frame: &mut FrameMut<'_>, region: CellBox, step: u64) -> Result<bool> {
        check_holds(frame, region, "click_out")?;
        if !self.fires(step) {
            return Ok(false);
        }
        let (w, h) = (region.width(), region.height());
        let pairs = w.max(h) / 2;
        let coord = |i: usize, word: u64, size: usize| -> usize {
            let u = uniform(&cell_key(
                self.seed,
                i as i64,
                word as i64,
                step,
                0,
                stream::CLICK_PAIR,
            ));
            ((u as f64 * size as f64) as usize).min(size - 1)
        };
        let at = |frame: &FrameMut<'_>, x: usize, y: usize| {
            frame
                .index(
                    region.min_x as i64 + x as i64,
                    region.min_y as i64 + y as i64,
                )
                .expect("inside")
        };
        let src: Vec<usize> = (0..pairs)
            .map(|i| at(frame, coord(i, 0, w), coord(i, 1, h)))
            .collect();
        let dst: Vec<usize> = (0..pairs)
            .map(|i| at(frame, coord(i, 2, w), coord(i, 3, h)))
            .collect();
        let read = |frame: &FrameMut<'_>, cells: &[usize]| -> Vec<(Vec<(f32, f32)>, u8)> {
            cells
                .iter()
                .map(|&i| {
                    (
                        (0..frame.d).map(|c| frame.get(i, c)).collect(),
                        frame.occupied[i],
                    )
                })
                .collect()
        };
        let (src_vals, dst_vals) = (read(frame, &src), read(frame, &dst));
        for (targets, values) in [(&src, &dst_vals), (&dst, &src_vals)] {
            for (&i, (v, o)) in targets.iter().zip(values) {
                for (c, &val) in v.iter().enumerate() {
                    frame.set(i, c, val);
                }
                frame.occupied[i] = *o;
            }
        }
        Ok(true)
    }
}
