//! The sparse engine against the dense engine: one sparse step equals one
//! dense step (zero vacuum, bias-free local law, same threshold), cell for
//! cell, on any dense grid that keeps matter r cells from its border.

mod common;

use std::sync::Arc;

use common::{Reference, Rng};
use engine_api::{ComputeBackend, UpdateRule};
use proptest::prelude::*;
use sparse_grid::sparse::CellBox;
use sparse_grid::{DenseEngine, DenseState, SparseEngine, SparseOptions, StepOptions};

/// A cell of a pattern: x, y and D values.
type Cell = (i32, i32, Vec<(f32, f32)>);

/// Where patterns are placed: the origin, tile edges, negative and far
/// coordinates, and both ends of the i32 lattice.
const BASES: [(i32, i32); 8] = [
    (0, 0),
    (-37, 5),
    (15, -17),
    (-16, -16),
    (1_000_000_000, -1_000_000_000),
    (-1_000_000_007, 999_999_937),
    (i32::MAX - 90, 3),
    (i32::MIN + 20, i32::MIN + 20),
];

/// A random pattern of matter: cells relative to the base, with values.
fn pattern(kind: u8, d: usize, rng: &mut Rng) -> Vec<Cell> {
    let mut pos: Vec<(i32, i32)> = match kind % 4 {
        // Scattered cells.
        0 => (0..1 + rng.below(30))
            .map(|_| (rng.below(48) as i32, rng.below(48) as i32))
            .collect(),
        // A blob.
        1 => {
            let (x0, y0) = (rng.below(20) as i32, rng.below(20) as i32);
            let (w, h) = (1 + rng.below(20) as i32, 1 + rng.below(20) as i32);
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x0 + x, y0 + y)))
                .collect()
        }
        // Along a tile edge (columns 15 and 16, 31 and 32 at T = 16).
        2 => (0..1 + rng.below(40))
            .map(|_| {
                (
                    15 + 16 * rng.below(2) as i32 + rng.below(2) as i32,
                    rng.below(48) as i32,
                )
            })
            .collect(),
        // Around tile corners.
        _ => (0..1 + rng.below(12))
            .map(|_| {
                let (cx, cy) = (
                    16 * (1 + rng.below(2) as i32),
                    16 * (1 + rng.below(2) as i32),
                );
                (cx - 1 + rng.below(2) as i32, cy - 1 + rng.below(2) as i32)
            })
            .collect(),
    };
    pos.sort_unstable();
    pos.dedup();
    pos.into_iter()
        .map(|(x, y)| {
            let v: Vec<(f32, f32)> = (0..d)
                .map(|_| (rng.uniform_in(-1.0, 1.0), rng.uniform_in(-1.0, 1.0)))
                .collect();
            let norm = v.iter().map(|(a, b)| a * a + b * b).sum::<f32>().sqrt() + 1e-6;
            (
                x,
                y,
                v.into_iter().map(|(a, b)| (a / norm, b / norm)).collect(),
            )
        })
        .collect()
}

/// Runs both engines `steps` steps and compares every cell after each step.
#[allow(clippy::too_many_arguments)]
fn check(
    backend: Arc<dyn ComputeBackend>,
    base: (i32, i32),
    cells: &[Cell],
    steps: usize,
    threshold: f32,
    gamma: f32,
    tile: usize,
    tol: f32,
) -> Result<(), TestCaseError> {
    let d = backend.spec().d_state;
    let r = backend.spec().receptive_radius.unwrap() as i32;
    let margin = (steps as i32 + 1) * r + 2;
    let (w, h) = (48 + 2 * margin, 48 + 2 * margin);
    let mut dense = DenseState::zeros(h as usize, w as usize, d).unwrap();
    dense.origin = (base.0 - margin, base.1 - margin);
    for (x, y, v) in cells {
        for (c, &val) in v.iter().enumerate() {
            dense.set((x + margin) as usize, (y + margin) as usize, c, val);
        }
        dense.occupied_mut()[((y + margin) * w + x + margin) as usize] = 1;
    }
    let mut sparse = SparseEngine::new(
        backend.clone(),
        SparseOptions::default()
            .with_tile(tile)
            .with_threshold(threshold)
            .with_gamma(gamma),
    )
    .unwrap();
    sparse.insert_dense(&dense).unwrap();
    let region =
        CellBox::from_origin(dense.origin.0, dense.origin.1, w as usize, h as usize).unwrap();
    let mut engine = DenseEngine::new(
        backend,
        dense,
        StepOptions::default()
            .with_gamma(gamma)
            .with_threshold(threshold),
    )
    .unwrap();
    for step in 1..=steps {
        engine.step().unwrap();
        let stats = sparse.step().unwrap();
        let want = engine.state();
        let got = sparse.export(region).unwrap();
        prop_assert_eq!(stats.step, step as u64);
        prop_assert_eq!(
            got.occupied(),
            want.occupied(),
            "occupancy differs at step {}",
            step
        );
        let dense_count = want.occupied().iter().filter(|&&o| o != 0).count();
        prop_assert_eq!(
            sparse.occupied_count(),
            dense_count,
            "matter outside the dense grid"
        );
        prop_assert_eq!(stats.occupied_cells, dense_count);
        for (i, (a, b)) in got.planes().iter().zip(want.planes()).enumerate() {
            prop_assert!(
                (a - b).abs() <= tol,
                "step {step}, value {i}: sparse {a} vs dense {b}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sparse_equals_dense_conv3x3(
        // D = 8 is 16 channels: candle's Winograd path, whose sparse
        // forward computes the tiles alone (forward_interior).
        seed in any::<u64>(), base in 0usize..BASES.len(), kind in any::<u8>(),
        d in prop_oneof![1usize..4, Just(8)], unitary in any::<bool>(), scale in 0.05f32..0.6,
        threshold in prop_oneof![Just(0.01f32), 0.01f32..1.1], gamma in prop_oneof![Just(0.0f32), 0.0f32..0.3],
        tile in prop_oneof![Just(16usize), Just(4), Just(8)], steps in 1usize..4,
        candle in any::<bool>(),
    ) {
        let mut rng = Rng::new(seed);
        // With D = 8 on candle the two engines' Winograd tiles start at
        // different cells (each sparse tile's origin, the dense grid's), so
        // values differ by float32 roundings (~1e-7, within `tol`); occupancy
        // could differ only for a norm within that of the threshold, which
        // none of 3000 cases (PROPTEST_CASES=3000) produced.
        let rule = if unitary { UpdateRule::Unitary } else { UpdateRule::Additive };
        let reference = Reference::conv3x3(d, rule, scale, seed);
        let backend: Arc<dyn ComputeBackend> = if candle {
            Arc::new(reference.candle())
        } else {
            Arc::new(reference)
        };
        let cells = pattern(kind, d, &mut rng);
        check(backend, BASES[base], &cells, steps, threshold, gamma, tile, 1e-5)?;
    }

    #[test]
    fn sparse_equals_dense_deep_qca(
        seed in any::<u64>(), base in 0usize..BASES.len(), kind in any::<u8>(),
        d in 1usize..3, hidden in 2usize..9, scale in 0.2f32..1.5,
        threshold in prop_oneof![Just(0.01f32), 0.01f32..1.1],
        tile in prop_oneof![Just(16usize), Just(4)], steps in 1usize..4,
        candle in any::<bool>(),
    ) {
        let mut rng = Rng::new(seed);
        let reference = Reference::deep_qca(d, hidden, UpdateRule::Additive, scale, seed);
        let backend: Arc<dyn ComputeBackend> = if candle {
            Arc::new(reference.candle())
        } else {
            Arc::new(reference)
        };
        let cells = pattern(kind, d, &mut rng);
        check(backend, BASES[base], &cells, steps, threshold, 0.0, tile, 1e-5)?;
    }
}

#[test]
fn a_small_forward_budget_splits_the_batch_without_changing_the_result() {
    let d = 2;
    let backend = Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.3, 5));
    let mut rng = Rng::new(9);
    let cells = pattern(1, d, &mut rng);
    let run = |bytes: usize| {
        let mut e = SparseEngine::new(
            backend.clone(),
            SparseOptions::default().with_forward_bytes(bytes),
        )
        .unwrap();
        for (x, y, v) in &cells {
            e.insert(*x, *y, v).unwrap();
        }
        for _ in 0..3 {
            e.step().unwrap();
        }
        e.export(e.bounding_box().unwrap()).unwrap()
    };
    let calls_before = backend.calls.load(std::sync::atomic::Ordering::Relaxed);
    let one = run(1);
    let calls = backend.calls.load(std::sync::atomic::Ordering::Relaxed) - calls_before;
    assert!(
        calls > 3,
        "a one-byte budget must split every step into one tile per call"
    );
    assert_eq!(one, run(usize::MAX));
}

#[test]
fn the_equivalence_holds_on_the_candle_backend() {
    for (i, deep) in [false, true, false, true, false].into_iter().enumerate() {
        let seed = 40 + i as u64;
        // The last case has 16 channels: candle's Winograd path.
        let d = if i == 4 { 8 } else { 2 };
        let reference = if deep {
            Reference::deep_qca(d, 6, UpdateRule::Additive, 0.8, seed)
        } else {
            Reference::conv3x3(d, UpdateRule::Additive, 0.3, seed)
        };
        let backend: Arc<dyn ComputeBackend> = Arc::new(reference.candle());
        assert_eq!(backend.name(), "candle");
        let mut rng = Rng::new(seed);
        let cells = pattern(i as u8, d, &mut rng);
        check(
            backend,
            BASES[i * 2 % BASES.len()],
            &cells,
            3,
            0.05,
            0.0,
            16,
            1e-5,
        )
        .unwrap();
    }
}

/// The model's work per step follows what the backend can skip: candle's
/// Winograd conv and neighbour-sum law compute each strip's tiles alone
/// (T rows of `width - 2r` cells), the reference backend (and candle's
/// narrow im2col conv) the whole strip with its halo; the state after the
/// step is the same either way.
#[test]
fn a_backend_that_computes_the_interior_skips_the_halo() {
    let cases = [
        (Reference::conv3x3(8, UpdateRule::Additive, 0.3, 7), true),
        (
            Reference::deep_qca(2, 6, UpdateRule::Additive, 0.8, 8),
            true,
        ),
        (Reference::conv3x3(2, UpdateRule::Additive, 0.3, 9), false),
    ];
    for (reference, skips) in cases {
        let d = reference.spec.d_state;
        let candle: Arc<dyn ComputeBackend> = Arc::new(reference.candle());
        assert_eq!(
            candle.computes_interior(1),
            skips,
            "{}",
            reference.spec.name
        );
        assert!(!reference.computes_interior(1));
        let mut rng = Rng::new(11);
        // A band of matter 12 tiles wide and 6 high: runs longer than a
        // strip, and tiles enough for full strips.
        let tile = 8;
        let cells: Vec<Cell> = pattern(1, d, &mut rng)
            .into_iter()
            .cycle()
            .take(96 * 48)
            .enumerate()
            .map(|(i, (_, _, v))| ((i % 96) as i32, (i / 96) as i32, v))
            .collect();
        let run = |backend: Arc<dyn ComputeBackend>| {
            let mut e =
                SparseEngine::new(backend, SparseOptions::default().with_tile(tile)).unwrap();
            for (x, y, v) in &cells {
                e.insert(*x, *y, v).unwrap();
            }
            let stats = e.step().unwrap();
            let field = e.full_chunk().unwrap();
            (stats, field, e.export(e.bounding_box().unwrap()).unwrap())
        };
        let (with_candle, field, got) = run(candle);
        let (with_reference, _, want) = run(Arc::new(reference));
        assert_eq!(with_candle.active_tiles, with_reference.active_tiles);
        let (tiles, side, width) = (with_candle.active_tiles, tile + 2, field.width);
        assert_eq!(
            (field.height, width),
            (side, 8 * tile + 4),
            "strips of 8 tiles, with room for two windows' halos"
        );
        // Both engines lay the tiles out alike: in fewer fields than tiles,
        // as the pattern has runs of neighbouring tiles.
        assert_eq!(with_reference.model_cells % (side * width), 0);
        let fields = with_reference.model_cells / (side * width);
        assert!(fields < tiles, "{fields} fields for {tiles} tiles");
        let per_field = if skips {
            tile * (width - 2)
        } else {
            side * width
        };
        assert_eq!(with_candle.model_cells, fields * per_field);
        assert_eq!(got.occupied(), want.occupied());
        for (a, b) in got.planes().iter().zip(want.planes()) {
            assert!((a - b).abs() <= 1e-5, "candle {a} vs reference {b}");
        }
    }
}
