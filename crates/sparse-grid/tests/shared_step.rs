//! `SparseEngine::stage_early` and `step_shared`, the hooks the MPI engine
//! (crate `atheria-distributed`) steps with, without MPI: two engines in
//! one process, owning the tiles of a checkerboard (every tile on a
//! boundary) or two halves (most tiles interior, staged before the halo
//! arrives), exchanging their cells as encoded halo each step, equal one
//! engine holding everything, bit for bit, on candle; an agreement that
//! fails leaves an engine exactly as it was.

mod common;

use std::sync::Arc;

use common::{cells, Reference, Rng};
use engine_api::{ComputeBackend, Error, UpdateRule};
use sparse_grid::sparse::{CellBox, SharedStep};
use sparse_grid::{SparseEngine, SparseOptions};

const ALL: CellBox = CellBox {
    min_x: i32::MIN,
    min_y: i32::MIN,
    max_x: i32::MAX,
    max_y: i32::MAX,
};

/// Which of the two engines owns tile (tx, ty): a checkerboard, where
/// every tile borders the other engine's.
fn checkerboard(tx: i32, ty: i32) -> usize {
    (tx + ty).rem_euclid(2) as usize
}

/// Halves: tiles left of x = 0 and the rest, where most tiles are
/// interior and are staged early, before the halo arrives.
fn halves(tx: i32, _: i32) -> usize {
    (tx >= 0) as usize
}

/// One shared step of the tiles `owns` keeps, agreed by every process.
fn step_agreed(e: &mut SparseEngine, owns: &(dyn Fn(i32, i32) -> bool + Sync)) {
    let mut yes = |_: Option<&Error>| Ok(());
    e.step_shared(&mut SharedStep {
        owns,
        agree: &mut yes,
    })
    .unwrap();
}

fn engine(backend: &Arc<dyn ComputeBackend>) -> SparseEngine {
    let mut options = SparseOptions::default();
    options.tile = 8;
    SparseEngine::new(Arc::clone(backend), options).unwrap()
}

#[test]
fn two_engines_on_a_checkerboard_equal_one_engine_bit_for_bit() {
    split_equals_whole(checkerboard);
}

#[test]
fn two_halves_staging_their_interior_early_equal_one_engine_bit_for_bit() {
    split_equals_whole(halves);
}

fn split_equals_whole(owner: fn(i32, i32) -> usize) {
    let d = 2;
    // deep_qca: a 3x3 conv then 1x1 layers, receptive radius 1.
    let reference = Reference::deep_qca(d, 6, UpdateRule::Additive, 0.6, 3);
    assert_eq!(reference.spec.receptive_radius, Some(1));
    let backend: Arc<dyn ComputeBackend> = Arc::new(reference.candle());
    let mut whole = engine(&backend);
    let mut parts = [engine(&backend), engine(&backend)];
    let mut rng = Rng::new(9);
    for _ in 0..400 {
        let (x, y) = (rng.below(60) as i32 - 30, rng.below(60) as i32 - 30);
        let v: Vec<(f32, f32)> = (0..d).map(|_| (rng.normal(), rng.normal())).collect();
        whole.insert(x, y, &v).unwrap();
        parts[owner(x >> 3, y >> 3)].insert(x, y, &v).unwrap();
    }
    let mut halo = [Vec::new(), Vec::new()];
    for step in 1..=10 {
        whole.step().unwrap();
        for (k, part) in parts.iter_mut().enumerate() {
            // As the MPI engine does while the halo is in flight.
            let interior = |tx: i32, ty: i32| {
                (-1..=1).all(|dy| (-1..=1).all(|dx| owner(tx + dx, ty + dy) == k))
            };
            part.stage_early(&interior);
        }
        for (k, h) in halo.iter_mut().enumerate() {
            h.clear();
            // All of the other engine's cells: more than a halo, which the
            // MPI engine trims; the hooks must read only what they need.
            parts[1 - k].encode_cells(ALL, h);
        }
        for (k, part) in parts.iter_mut().enumerate() {
            part.insert_encoded(&halo[k]).unwrap();
            let owns = |tx: i32, ty: i32| owner(tx, ty) == k;
            let mut agree = |local: Option<&Error>| {
                local
                    .map_or(Ok(()), |e| Err(e.to_string()))
                    .map_err(Error::InvalidArgument)
            };
            part.step_shared(&mut SharedStep {
                owns: &owns,
                agree: &mut agree,
            })
            .unwrap();
            part.retain_tiles(|tx, ty| owner(tx, ty) == k);
        }
        let mut split = cells(&parts[0]);
        split.extend(cells(&parts[1]));
        split.sort_unstable_by_key(|c| (c.0, c.1));
        assert_eq!(split, cells(&whole), "step {step}");
        assert_eq!(
            parts[0].occupied_count() + parts[1].occupied_count(),
            whole.occupied_count(),
            "step {step}: the cell counts"
        );
        assert!(whole.occupied_count() > 400, "the matter did not grow");
    }
}

#[test]
fn a_failed_agreement_leaves_the_engine_as_it_was() {
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(2, UpdateRule::Additive, 0.3, 4).candle());
    let mut e = engine(&backend);
    for i in 0..20 {
        e.insert(i * 3, 7, &[(1.0, 0.5), (-0.25, 2.0)]).unwrap();
    }
    let (before, tiles, step) = (cells(&e), e.tile_count(), e.step_count());
    let owns = |_: i32, _: i32| true;
    let mut asked = 0;
    let mut agree = |local: Option<&Error>| {
        asked += 1;
        assert!(local.is_none(), "this engine's own step was fine");
        Err(Error::Rank {
            rank: 3,
            message: "the model returned a non-finite delta".into(),
        })
    };
    let err = e
        .step_shared(&mut SharedStep {
            owns: &owns,
            agree: &mut agree,
        })
        .unwrap_err();
    assert_eq!(asked, 1);
    assert!(err.to_string().contains("rank 3 failed"), "{err}");
    assert_eq!(cells(&e), before);
    assert_eq!((e.tile_count(), e.step_count()), (tiles, step));
    // The next step, agreed, runs from the same state as a fresh engine's.
    let mut fresh = engine(&backend);
    for i in 0..20 {
        fresh.insert(i * 3, 7, &[(1.0, 0.5), (-0.25, 2.0)]).unwrap();
    }
    step_agreed(&mut e, &owns);
    fresh.step().unwrap();
    assert_eq!(cells(&e), cells(&fresh));
}

#[test]
fn a_shared_step_leaves_the_tiles_it_does_not_own_as_they_were() {
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(2, UpdateRule::Additive, 0.3, 5).candle());
    let mut e = engine(&backend);
    // A row of matter across tiles x = 0..4 (tile 8); the engine owns
    // tiles 0 and 1, the rest are another process's halo.
    for x in 0..32 {
        e.insert(x, 3, &[(1.0, 0.5), (-0.25, 2.0)]).unwrap();
    }
    let halo = |c: &Vec<(i32, i32, Vec<u32>)>| -> Vec<_> {
        c.iter().filter(|c| c.0 >= 16).cloned().collect()
    };
    let before = cells(&e);
    let owns = |tx: i32, _: i32| tx < 2;
    for _ in 0..2 {
        step_agreed(&mut e, &owns);
        let after = cells(&e);
        assert_eq!(halo(&after), halo(&before), "the halo tiles changed");
        let own = |c: &Vec<(i32, i32, Vec<u32>)>| c.iter().filter(|c| c.0 < 16).count();
        assert!(
            own(&after) > own(&before),
            "the owned tiles were not stepped"
        );
    }
}

#[test]
fn a_nan_staged_early_fails_the_shared_step_through_the_agreement() {
    let mut reference = Reference::conv3x3(2, UpdateRule::Additive, 0.3, 6);
    // Channel 0 holding 0.5 makes the model's output there NaN.
    reference.poison = Some(0.5);
    let calls = Arc::new(reference);
    let backend: Arc<dyn ComputeBackend> = Arc::clone(&calls) as _;
    let mut e = engine(&backend);
    for i in 0..12 {
        e.insert(i, 3, &[(0.25, 0.1), (-0.5, 1.0)]).unwrap();
    }
    e.insert(20, 4, &[(0.5, 0.0), (0.0, 0.0)]).unwrap();
    let (before, tiles) = (cells(&e), e.tile_count());
    let all = |_: i32, _: i32| true;
    let forwards = calls.calls.load(std::sync::atomic::Ordering::SeqCst);
    e.stage_early(&all);
    assert!(
        calls.calls.load(std::sync::atomic::Ordering::SeqCst) > forwards,
        "nothing was staged early"
    );
    let mut told = None;
    let mut agree = |local: Option<&Error>| {
        told = local.map(|e| e.to_string());
        local.map_or(Ok(()), |e| Err(Error::InvalidArgument(e.to_string())))
    };
    let err = e
        .step_shared(&mut SharedStep {
            owns: &all,
            agree: &mut agree,
        })
        .unwrap_err();
    assert!(err.to_string().contains("x = 20, y = 4"), "{err}");
    assert!(
        told.is_some_and(|t| t.contains("non-finite")),
        "the agreement was not told"
    );
    assert_eq!(
        (cells(&e), e.tile_count(), e.step_count()),
        (before, tiles, 0)
    );
}
