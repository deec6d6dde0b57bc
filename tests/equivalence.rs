//! Cross-backend equivalence: every compiled-in backend against every other,
//! on the golden model packages (one per architecture).
//!
//! - One forward: a proptest over batch size, height, width (respecting the
//!   model's `spatial_multiple`) and input values; every pair of backends
//!   agrees within 1e-4 absolute + 1e-4 relative.
//! - Whole runs: 20 dense steps and 20 sparse steps (zero vacuum, default
//!   threshold; U-Nets through the global window) from the same seeded state,
//!   all backends in lockstep; after every step every pair agrees within
//!   1e-3 and in occupancy. Where the law itself amplifies forward noise
//!   beyond that (measured by a probe run, see [`DriftLog`]), the pair must
//!   agree within the probe's drift instead, up to the step where the probe
//!   says the run has become chaotic at f32 precision. A failure reports the
//!   drift (max |diff|) after every step beside the probe's.
//!
//! The golden tests check each backend against PyTorch on fixed inputs; these
//! check them against each other on inputs nobody chose by hand, and over runs
//! long enough for small differences to grow.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use atheria::sparse::{self, CellBox};
use atheria::{
    init, BackendKind, BatchShape, ComputeBackend, DenseEngine, DenseState, Device, InitKind,
    ModelPackage, ModelSpec, SparseEngine, SparseOptions, StepOptions,
};
use common::*;
use proptest::prelude::*;
use sparse_grid::rng::{self, Rng};

/// Forward agreement: |a - b| <= FORWARD_TOL + FORWARD_TOL * max(|a|, |b|).
const FORWARD_TOL: f32 = 1e-4;
/// Whole runs: |a - b| <= RUN_TOL after each step (where the law allows it).
const RUN_TOL: f32 = 1e-3;
/// Steps of each whole run.
const RUN_STEPS: usize = 20;
/// Grid of the dense runs and of the block of matter the sparse runs start
/// from: non-square, a multiple of 4 (U-Nets), larger than a tile.
const RUN_HEIGHT: usize = 20;
const RUN_WIDTH: usize = 24;
/// Seed of the runs' initial state.
const RUN_SEED: u64 = 2024;
/// The probe run's forward noise: up to PROBE_EPS (1 + |y|) on every output
/// value y, the most the forward contract lets a backend differ from PyTorch.
const PROBE_EPS: f32 = FORWARD_TOL;
/// A probe drift past which the run no longer depends on the start at f32
/// precision (states are unit vectors: drifts saturate near 2).
const UNPREDICTABLE: f32 = 0.1;

/// The compiled-in backends able to run a golden case.
type Loaded = Vec<(BackendKind, Arc<dyn ComputeBackend>)>;

/// The backends for `case`, each loaded once per test binary: loading (a
/// TorchScript module, an ONNX session) costs more than a small forward.
fn loaded(case: &'static str) -> Arc<Loaded> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Arc<Loaded>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache
        .entry(case)
        .or_insert_with(|| {
            let package = ModelPackage::load(golden(case)).expect("golden package");
            Arc::new(
                backends()
                    .into_iter()
                    .filter(|&k| supports(k, &package))
                    .map(|k| (k, load(k, case)))
                    .collect(),
            )
        })
        .clone()
}

/// `d <= limit`, false for NaN: a NaN anywhere is a failure.
fn within(d: f32, limit: f32) -> bool {
    d <= limit
}

/// Index pairs (i, j), i < j: every backend against every other once.
fn pairs(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |i| (i + 1..n).map(move |j| (i, j)))
}

/// True (after saying why) when fewer than two backends can run `case`.
fn nothing_to_compare(case: &str, backends: &Loaded) -> bool {
    if backends.len() < 2 {
        eprintln!(
            "SKIPPED: {case}: fewer than two backends compiled in ({:?}), no pair to compare",
            backends.iter().map(|(k, _)| k.name()).collect::<Vec<_>>()
        );
        return true;
    }
    false
}

/// What the model input looks like.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Independent normal values times a scale: off the states' manifold.
    Normal(f32),
    /// A state: every cell's D complex channels normalised to norm 1.
    Psi,
    /// What the sparse engine feeds: a state in a fraction of the cells,
    /// exact zeros (vacuum) elsewhere.
    Sparse(f32),
}

fn values() -> impl Strategy<Value = Values> {
    prop_oneof![
        (0.01f32..4.0).prop_map(Values::Normal),
        Just(Values::Psi),
        (0.0f32..1.0).prop_map(Values::Sparse),
    ]
}

/// A side length from 1 to 24 that is a multiple of `m`.
fn side(m: usize) -> impl Strategy<Value = usize> {
    (1..=24 / m).prop_map(move |k| k * m)
}

/// An NCHW input of `shape` (channels 2D: real planes, then imaginary).
fn input(shape: BatchShape, values: Values, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let (hw, ch) = (shape.height * shape.width, shape.channels);
    let d = ch / 2;
    let mut x = vec![0.0f32; shape.len()];
    if let Values::Normal(scale) = values {
        x.iter_mut().for_each(|v| *v = rng.normal() * scale);
        return x;
    }
    for b in 0..shape.batch {
        for cell in 0..hw {
            if let Values::Sparse(fraction) = values {
                if rng.uniform() >= fraction {
                    continue;
                }
            }
            let at = |c: usize| (b * ch + c) * hw + cell;
            let v: Vec<f32> = (0..ch).map(|_| rng.normal()).collect();
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt() + 1e-6;
            for c in 0..d {
                x[at(c)] = v[c] / norm;
                x[at(d + c)] = v[d + c] / norm;
            }
        }
    }
    x
}

/// Runs one input through every backend of `case` and compares every pair.
fn check_forward(
    case: &'static str,
    multiple: usize,
    batch: usize,
    height: usize,
    width: usize,
    values: Values,
    seed: u64,
) -> Result<(), TestCaseError> {
    let backends = loaded(case);
    if nothing_to_compare(case, &backends) {
        return Ok(());
    }
    let spec = backends[0].1.spec();
    // The strategy table below must follow the models.
    prop_assert_eq!(spec.spatial_multiple.max(1), multiple, "{}", case);
    let shape = BatchShape::new(batch, 2 * spec.d_state, height, width);
    let x = input(shape, values, seed);
    let outputs: Vec<Vec<f32>> = backends
        .iter()
        .map(|(kind, backend)| {
            let mut y = vec![f32::NAN; x.len()];
            backend
                .forward(&x, shape, &mut y)
                .map(|()| y)
                .map_err(|e| TestCaseError::fail(format!("{kind} {case} {shape}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let (hw, ch) = (height * width, shape.channels);
    for (i, j) in pairs(backends.len()) {
        let (a, b) = (&outputs[i], &outputs[j]);
        let bad = a.iter().zip(b).position(|(p, q)| {
            !within(
                (p - q).abs(),
                FORWARD_TOL + FORWARD_TOL * p.abs().max(q.abs()),
            )
        });
        if let Some(k) = bad {
            let (n, c, y, xx) = (k / (ch * hw), k / hw % ch, k % hw / width, k % width);
            let (worst, _) = max_abs_diff(a, b);
            return Err(TestCaseError::fail(format!(
                "{case} forward {shape} ({values:?}, seed {seed}): {} gives {} and {} gives {} at (n {n}, c {c}, y {y}, x {xx}); worst |diff| {worst}",
                backends[i].0, a[k], backends[j].0, b[k]
            )));
        }
    }
    Ok(())
}

/// One proptest per golden case: `name: case, spatial multiple`.
macro_rules! forward_equivalence {
    ($($name:ident: $case:literal, $multiple:literal;)*) => {
        proptest! {
            // 12 cases, each checking every pair: the suite stays fast on 2 cores.
            #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(
                    batch in 1usize..=4,
                    height in side($multiple),
                    width in side($multiple),
                    values in values(),
                    seed in any::<u64>(),
                ) {
                    check_forward($case, $multiple, batch, height, width, values, seed)?;
                }
            )*
        }
    };
}

forward_equivalence! {
    forward_conv3x3_d4_agrees_across_backends: "conv3x3_d4", 1;
    forward_conv3x3_identity_d4_agrees_across_backends: "conv3x3_identity_d4", 1;
    forward_mlp_d2_h8_agrees_across_backends: "mlp_d2_h8", 1;
    forward_deep_qca_d2_h8_agrees_across_backends: "deep_qca_d2_h8", 1;
    forward_unet_d2_h8_agrees_across_backends: "unet_d2_h8", 4;
    forward_unet_unitary_d2_h8_agrees_across_backends: "unet_unitary_d2_h8", 4;
}

/// Runs one input through every backend's
/// [`forward_interior`](ComputeBackend::forward_interior) with `margin` and
/// compares each with the first backend's whole forward, cropped: a backend
/// that computes the interior alone (ONNX Runtime's graph without padding,
/// candle's Winograd band) must return the cells a whole forward would.
fn check_interior(
    case: &'static str,
    batch: usize,
    side: (usize, usize),
    margin: usize,
    values: Values,
    seed: u64,
) -> Result<(), TestCaseError> {
    let backends = loaded(case);
    let spec = backends[0].1.spec();
    let shape = BatchShape::new(batch, 2 * spec.d_state, side.0, side.1);
    let Some(inner) = atheria::interior_shape(shape, margin) else {
        return Ok(());
    };
    let x = input(shape, values, seed);
    let mut whole = vec![f32::NAN; x.len()];
    let (first, reference) = &backends[0];
    reference
        .forward(&x, shape, &mut whole)
        .map_err(|e| TestCaseError::fail(format!("{first} {case} {shape}: {e}")))?;
    let mut want = vec![f32::NAN; inner.len()];
    engine_api::copy_interior(&whole, shape, margin, &mut want);
    for (kind, backend) in backends.iter() {
        let mut got = vec![f32::NAN; inner.len()];
        backend
            .forward_interior(&x, shape, margin, &mut got)
            .map_err(|e| {
                TestCaseError::fail(format!("{kind} {case} {shape} margin {margin}: {e}"))
            })?;
        let bad = got.iter().zip(&want).position(|(p, q)| {
            !within(
                (p - q).abs(),
                FORWARD_TOL + FORWARD_TOL * p.abs().max(q.abs()),
            )
        });
        if let Some(k) = bad {
            return Err(TestCaseError::fail(format!(
                "{case} interior of {shape} with margin {margin} ({values:?}, seed {seed}): {kind} gives {} where {first}'s \
                 forward gives {} (value {k} of {inner}; computes the interior itself: {})",
                got[k],
                want[k],
                backend.computes_interior(margin)
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn every_backends_interior_is_its_whole_forward_cropped(
        case in prop::sample::select(vec!["conv3x3_d4", "conv3x3_identity_d4", "mlp_d2_h8", "deep_qca_d2_h8"]),
        batch in 1usize..=3,
        height in 3usize..=14,
        width in 3usize..=14,
        margin in 1usize..=2,
        values in values(),
        seed in any::<u64>(),
    ) {
        check_interior(case, batch, (height, width), margin, values, seed)?;
    }
}

/// Which backends skip the halo's work: ONNX Runtime (its graph without
/// padding) and tch (the module's layers without padding) for every golden
/// law made of padded convolutions and ELUs, at its receptive radius only
/// (what the sparse engine asks for); never for a per-cell MLP (nothing to
/// skip) or a U-Net (global).
#[test]
fn onnx_and_tch_compute_the_interior_of_padded_convolution_chains() {
    let kinds: Vec<BackendKind> = backends()
        .into_iter()
        .filter(|k| matches!(k, BackendKind::Onnx | BackendKind::Tch))
        .collect();
    if kinds.is_empty() {
        eprintln!("SKIPPED: neither onnx nor tch is compiled in");
    }
    for kind in kinds {
        for (case, at_radius) in [
            ("conv3x3_d4", true),
            ("conv3x3_identity_d4", true),
            ("deep_qca_d2_h8", true),
            ("mlp_d2_h8", false),
            ("unet_d2_h8", false),
        ] {
            let backend = load(kind, case);
            assert_eq!(
                backend.computes_interior(1),
                at_radius,
                "{kind} {case}: {}",
                backend.describe()
            );
            assert!(
                !backend.computes_interior(2),
                "{kind} {case}: margin 2 is not its radius"
            );
        }
    }
}

/// The seeded initial state of the runs: normalised random cells, all matter,
/// placed off the origin and across tile edges.
fn run_state(d_state: usize) -> DenseState {
    let mut state = DenseState::zeros(RUN_HEIGHT, RUN_WIDTH, d_state).expect("state");
    state.origin = (-7, 3);
    init::fill(&mut state, InitKind::Random, RUN_SEED);
    state
}

/// A backend whose every output value y gets seeded noise of up to
/// PROBE_EPS (1 + |y|): a backend exactly as far from PyTorch as the forward
/// contract allows. Deterministic: the noise depends on the call count and
/// the value's index only.
struct Noisy {
    inner: Arc<dyn ComputeBackend>,
    calls: AtomicU64,
}

impl ComputeBackend for Noisy {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }

    fn device(&self) -> Device {
        self.inner.device()
    }

    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> atheria::Result<()> {
        self.inner.forward(input, shape, output)?;
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        for (i, y) in output.iter_mut().enumerate() {
            let noise = 2.0 * rng::uniform(&[RUN_SEED, call, i as u64]) - 1.0;
            *y += PROBE_EPS * (1.0 + y.abs()) * noise;
        }
        Ok(())
    }
}

/// Max |diff| of the planes and the number of cells whose occupancy differs.
fn drift(a: &DenseState, b: &DenseState) -> (f32, usize) {
    let (diff, _) = max_abs_diff(a.planes(), b.planes());
    let occupancy = a
        .occupied()
        .iter()
        .zip(b.occupied())
        .filter(|(p, q)| p != q)
        .count();
    (diff, occupancy)
}

/// Per-step drift of every pair of backends, and of the probe: the first
/// backend again, its forward made [`Noisy`].
///
/// The probe measures the law's own conditioning: how far a run drifts when
/// every forward is off by as much as the forward contract allows. Where that
/// exceeds RUN_TOL, no set of correct backends can promise RUN_TOL, so after
/// each step a pair must agree within max(RUN_TOL, probe drift), and match
/// in occupancy while the probe does. Once the probe drifts past
/// UNPREDICTABLE the law has amplified the allowed noise into a different
/// state (chaos at f32 precision): later steps are reported, not checked.
/// A real backend difference shows up as a jump in the first steps, where
/// the probe is far below RUN_TOL.
struct DriftLog {
    what: String,
    kinds: Vec<BackendKind>,
    /// Per pair (in `pairs` order): (max |diff|, occupancy mismatches) per step.
    steps: Vec<Vec<(f32, usize)>>,
    /// The probe against the first backend, per step.
    probe: Vec<(f32, usize)>,
}

/// What a pair may differ by after one step.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    /// Largest max |diff|.
    diff: f32,
    /// Whether the occupancy must match.
    occupancy: bool,
}

impl DriftLog {
    fn new(what: String, kinds: Vec<BackendKind>) -> Self {
        let n = pairs(kinds.len()).count();
        Self {
            what,
            kinds,
            steps: vec![Vec::new(); n],
            probe: Vec::new(),
        }
    }

    /// Records one step: a snapshot per backend, then the probe's, all over
    /// the same box.
    fn record(&mut self, snapshots: &[DenseState]) {
        let (probe, states) = snapshots.split_last().expect("probe snapshot");
        for (p, (i, j)) in pairs(states.len()).enumerate() {
            self.steps[p].push(drift(&states[i], &states[j]));
        }
        self.probe.push(drift(&states[0], probe));
    }

    /// Steps (counted from 0) the comparison checks: up to the first one
    /// where the probe drifts past UNPREDICTABLE.
    fn horizon(&self) -> usize {
        self.probe
            .iter()
            .position(|&(d, _)| !within(d, UNPREDICTABLE))
            .unwrap_or(self.probe.len())
    }

    /// What a pair may differ by after step `s` (counted from 0).
    fn allowed(&self, s: usize) -> Allowed {
        let (probe, occupancy) = self.probe[s];
        Allowed {
            diff: RUN_TOL.max(probe),
            occupancy: probe <= RUN_TOL && occupancy == 0,
        }
    }

    /// The per-step drift of pair `p` beside the probe's, for a message.
    fn per_step(&self, p: usize) -> String {
        let steps: Vec<String> = self.steps[p]
            .iter()
            .zip(&self.probe)
            .enumerate()
            .map(|(s, ((d, o), (pd, _)))| {
                let occ = if *o == 0 {
                    String::new()
                } else {
                    format!(", {o} cells' occupancy differs")
                };
                format!("{}: {d:.2e} (probe {pd:.1e}{occ})", s + 1)
            })
            .collect();
        steps.join(", ")
    }

    fn check(&self) {
        let steps = self.probe.len();
        let horizon = self.horizon();
        let checked = if horizon < steps {
            format!(
                "chaotic: the probe drifts {:.1e} by step {}, so steps 1 to {horizon} are checked",
                self.probe[horizon].0,
                horizon + 1
            )
        } else {
            let (s, (d, _)) = self
                .probe
                .iter()
                .enumerate()
                .fold(
                    (0, (0.0f32, 0)),
                    |m, (s, &p)| if p.0 > m.1 .0 { (s, p) } else { m },
                );
            format!(
                "probe drift at most {d:.1e} (step {}), {:.1e} after step {steps}",
                s + 1,
                self.probe[steps - 1].0
            )
        };
        eprintln!("{}: {checked}", self.what);
        let mut failures = Vec::new();
        for (p, (i, j)) in pairs(self.kinds.len()).enumerate() {
            let (diff, occupancy) = self.steps[p][steps - 1];
            eprintln!(
                "{}: {} vs {}: max |diff| {diff:.3e} and {occupancy} occupancy differences after {steps} steps",
                self.what, self.kinds[i], self.kinds[j],
            );
            let first_bad = self.steps[p][..horizon]
                .iter()
                .enumerate()
                .find(|&(s, &(d, o))| {
                    let allowed = self.allowed(s);
                    !within(d, allowed.diff) || (allowed.occupancy && o != 0)
                });
            if let Some((s, &(d, o))) = first_bad {
                failures.push(format!(
                    "{} vs {}: after step {} max |diff| {d:.3e} (allowed {:.1e}), {o} cells' occupancy differs; drift per step [{}]",
                    self.kinds[i],
                    self.kinds[j],
                    s + 1,
                    self.allowed(s).diff,
                    self.per_step(p)
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} ({checked}): backends disagree beyond {RUN_TOL:e} (or, where larger, the drift of the probe: the first backend with forward noise {PROBE_EPS:e} (1 + |y|)):\n{}",
            self.what,
            failures.join("\n")
        );
    }
}

/// The backends of one comparison: each compiled-in one, then the probe
/// (the first, made [`Noisy`]).
fn with_probe(backends: &Loaded) -> Vec<(BackendKind, Arc<dyn ComputeBackend>)> {
    let mut all = backends.to_vec();
    let probe = Noisy {
        inner: backends[0].1.clone(),
        calls: AtomicU64::new(0),
    };
    all.push((backends[0].0, Arc::new(probe)));
    all
}

/// 20 dense steps on every backend in lockstep from the same state.
fn dense_runs_agree(case: &'static str) {
    let backends = loaded(case);
    if nothing_to_compare(case, &backends) {
        return;
    }
    let (_, gamma) = case_params(case);
    let d = backends[0].1.spec().d_state;
    let options = StepOptions::default().with_gamma(gamma);
    let mut engines: Vec<(BackendKind, DenseEngine)> = with_probe(&backends)
        .into_iter()
        .map(|(kind, backend)| {
            let engine = DenseEngine::new(backend, run_state(d), options)
                .unwrap_or_else(|e| panic!("{kind} {case}: {e}"));
            (kind, engine)
        })
        .collect();
    let kinds: Vec<BackendKind> = backends.iter().map(|(k, _)| *k).collect();
    let mut log = DriftLog::new(format!("{case} dense run (gamma {gamma})"), kinds);
    for step in 1..=RUN_STEPS {
        for (kind, engine) in engines.iter_mut() {
            engine
                .step()
                .unwrap_or_else(|e| panic!("{kind} {case} dense step {step}: {e}"));
        }
        let states: Vec<DenseState> = engines.iter().map(|(_, e)| e.state().clone()).collect();
        log.record(&states);
    }
    log.check();
}

/// The smallest box holding every box in `boxes` (None: no matter anywhere).
fn union(boxes: impl Iterator<Item = Option<CellBox>>) -> Option<CellBox> {
    boxes.flatten().reduce(|a, b| {
        CellBox::new(
            a.min_x.min(b.min_x),
            a.min_y.min(b.min_y),
            a.max_x.max(b.max_x),
            a.max_y.max(b.max_y),
        )
    })
}

/// 20 sparse steps (zero vacuum, default threshold) on every backend in
/// lockstep from the same block of matter; compared over the union of the
/// lattices' bounding boxes, so matter one backend has and another lacks
/// counts as an occupancy difference.
fn sparse_runs_agree(case: &'static str) {
    let backends = loaded(case);
    if nothing_to_compare(case, &backends) {
        return;
    }
    let (_, gamma) = case_params(case);
    let spec = backends[0].1.spec();
    let d = spec.d_state;
    // A global law that makes matter from vacuum fills its window, and the
    // window grows by a ring of tiles every step: with 16-cell tiles 20
    // steps end on a 688 x 672 window. 4-cell tiles show the same behaviour
    // (window, vacuum padding, growth) on a 188 x 184 one.
    let tile = if spec.receptive_radius.is_none() {
        4
    } else {
        sparse::DEFAULT_TILE
    };
    let options = SparseOptions::default().with_gamma(gamma).with_tile(tile);
    let mut engines: Vec<(BackendKind, SparseEngine)> = with_probe(&backends)
        .into_iter()
        .map(|(kind, backend)| {
            let mut engine = SparseEngine::new(backend, options)
                .unwrap_or_else(|e| panic!("{kind} {case}: {e}"));
            engine
                .import(&run_state(d))
                .unwrap_or_else(|e| panic!("{kind} {case}: {e}"));
            (kind, engine)
        })
        .collect();
    let global = engines[0].1.is_global();
    let kinds: Vec<BackendKind> = backends.iter().map(|(k, _)| *k).collect();
    let mut log = DriftLog::new(
        format!(
            "{case} sparse run ({}, tile {tile}, gamma {gamma})",
            if global { "global window" } else { "local" }
        ),
        kinds,
    );
    for step in 1..=RUN_STEPS {
        for (kind, engine) in engines.iter_mut() {
            let stats = engine
                .step()
                .unwrap_or_else(|e| panic!("{kind} {case} sparse step {step}: {e}"));
            assert_eq!(stats.step, step as u64, "{kind} {case}: step count");
            assert_eq!(
                stats.window.is_some(),
                global,
                "{kind} {case}: a global model runs on a window, a local one on tiles"
            );
        }
        let Some(area) = union(engines.iter().map(|(_, e)| e.bounding_box())) else {
            panic!("{case} sparse step {step}: no matter left on any backend");
        };
        let states: Vec<DenseState> = engines
            .iter()
            .map(|(_, e)| e.export(area).expect("export"))
            .collect();
        log.record(&states);
    }
    log.check();
}

#[test]
fn dense_runs_of_conv3x3_d4_agree_across_backends() {
    dense_runs_agree("conv3x3_d4");
}

#[test]
fn dense_runs_of_conv3x3_identity_d4_agree_across_backends() {
    dense_runs_agree("conv3x3_identity_d4");
}

#[test]
fn dense_runs_of_mlp_d2_h8_agree_across_backends() {
    dense_runs_agree("mlp_d2_h8");
}

#[test]
fn dense_runs_of_deep_qca_d2_h8_agree_across_backends() {
    dense_runs_agree("deep_qca_d2_h8");
}

#[test]
fn dense_runs_of_unet_d2_h8_agree_across_backends() {
    dense_runs_agree("unet_d2_h8");
}

#[test]
fn dense_runs_of_unet_unitary_d2_h8_agree_across_backends() {
    dense_runs_agree("unet_unitary_d2_h8");
}

#[test]
fn sparse_runs_of_conv3x3_d4_agree_across_backends() {
    sparse_runs_agree("conv3x3_d4");
}

#[test]
fn sparse_runs_of_conv3x3_identity_d4_agree_across_backends() {
    sparse_runs_agree("conv3x3_identity_d4");
}

#[test]
fn sparse_runs_of_mlp_d2_h8_agree_across_backends() {
    sparse_runs_agree("mlp_d2_h8");
}

#[test]
fn sparse_runs_of_deep_qca_d2_h8_agree_across_backends() {
    sparse_runs_agree("deep_qca_d2_h8");
}

#[test]
fn sparse_runs_of_unet_d2_h8_agree_across_backends() {
    sparse_runs_agree("unet_d2_h8");
}

#[test]
fn sparse_runs_of_unet_unitary_d2_h8_agree_across_backends() {
    sparse_runs_agree("unet_unitary_d2_h8");
}
