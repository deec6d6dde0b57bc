//! `SparseOptions::atomic_steps`: a rolling step (atomic steps off) writes
//! each row of tiles as soon as no later gather reads it. It must give the
//! atomic step's result bit for bit whatever the tile, the chunk, the
//! pattern's shape and a halo wider than a tile, and hold only a few rows
//! of tiles staged; a failure before its first write changes nothing, one
//! after it leaves an engine that says so and refuses to go on.

mod common;

use std::sync::Arc;

use common::{cells, Reference, Rng};
use engine_api::{ComputeBackend, Error, UpdateRule};
use sparse_grid::sparse::CellBox;
use sparse_grid::{SparseEngine, SparseOptions};

fn unit(d: usize, rng: &mut Rng) -> Vec<(f32, f32)> {
    (0..d).map(|_| (rng.normal(), rng.normal())).collect()
}

/// Patterns whose rows of tiles are many and short, few and long, or
/// scattered: a filled block, a wide band, a tall band, loose cells.
fn pattern(e: &mut SparseEngine, seed: u64) {
    let (d, mut rng) = (e.d_state(), Rng::new(seed));
    for y in 0..14 {
        for x in 0..14 {
            e.insert(x - 40, y - 30, &unit(d, &mut rng)).unwrap();
        }
    }
    for x in 0..90 {
        e.insert(x - 45, 20 + x % 2, &unit(d, &mut rng)).unwrap();
    }
    for y in 0..70 {
        e.insert(30, y - 35, &unit(d, &mut rng)).unwrap();
    }
    for _ in 0..40 {
        let (x, y) = (rng.below(120) as i32 - 60, rng.below(120) as i32 - 60);
        e.insert(x, y, &unit(d, &mut rng)).unwrap();
    }
}

#[test]
fn rolling_steps_equal_atomic_steps_bit_for_bit() {
    let d = 2;
    let laws: [(&str, Reference); 3] = [
        (
            "conv3x3",
            Reference::conv3x3(d, UpdateRule::Additive, 0.4, 11),
        ),
        (
            "deep_qca",
            Reference::deep_qca(d, 5, UpdateRule::Unitary, 0.6, 12),
        ),
        // Radius 5: a gather reaches two rows of 4-cell tiles up.
        ("dilated 5", Reference::dilated(d, 5, 0.3, 13)),
    ];
    let mut rolled_somewhere = false;
    for (name, law) in laws {
        let backend: Arc<dyn ComputeBackend> = Arc::new(law);
        for tile in [4, 8, 16] {
            // One tile per chunk, a few, and every tile in one chunk.
            for forward_bytes in [1, 20_000, 64 << 20] {
                let options = SparseOptions::default()
                    .with_tile(tile)
                    .with_forward_bytes(forward_bytes);
                let mut atomic = SparseEngine::new(Arc::clone(&backend), options).unwrap();
                let mut rolling =
                    SparseEngine::new(Arc::clone(&backend), options.with_atomic_steps(false))
                        .unwrap();
                pattern(&mut atomic, 5);
                pattern(&mut rolling, 5);
                for step in 1..=4 {
                    let a = atomic.step().unwrap();
                    let r = rolling.step().unwrap();
                    let at = format!("{name}, tile {tile}, {forward_bytes} B, step {step}");
                    assert_eq!(cells(&rolling), cells(&atomic), "{at}");
                    assert_eq!(rolling.tile_count(), atomic.tile_count(), "{at}");
                    assert_eq!(rolling.occupied_count(), atomic.occupied_count(), "{at}");
                    assert_eq!(r.active_tiles, a.active_tiles, "{at}");
                    assert_eq!(a.staged_tiles, a.active_tiles, "{at}: atomic stages all");
                    assert!(r.staged_tiles <= a.staged_tiles, "{at}");
                    rolled_somewhere |= r.staged_tiles < a.staged_tiles;
                    let all = rolling.bounding_box().unwrap();
                    assert_eq!(
                        rolling.delta_summary(all).unwrap(),
                        atomic.delta_summary(all).unwrap(),
                        "{at}: delta summary"
                    );
                }
            }
        }
    }
    assert!(
        rolled_somewhere,
        "no configuration wrote before the end of a step"
    );
}

#[test]
fn a_rolling_step_of_a_tall_lattice_stages_a_few_rows_of_tiles() {
    let d = 2;
    let backend: Arc<dyn ComputeBackend> =
        Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.3, 3));
    // 8-cell tiles, a block 16 tiles wide and 48 tall; a chunk of 16 tiles.
    let field = 4 * 2 * d * 10 * 10;
    let options = SparseOptions::default()
        .with_tile(8)
        .with_forward_bytes(16 * field)
        .with_atomic_steps(false);
    let mut e = SparseEngine::new(backend, options).unwrap();
    let mut rng = Rng::new(4);
    for y in 0..384 {
        for x in 0..128 {
            e.insert(x, y, &unit(d, &mut rng)).unwrap();
        }
    }
    let stats = e.step().unwrap();
    // 18 x 50 active tiles (the block and a ring); a gather reads one row
    // up, so about two rows of 18 plus a chunk are held, not all 900.
    assert_eq!(stats.active_tiles, 18 * 50);
    assert!(
        stats.staged_tiles <= 3 * 18 + 16,
        "{} tiles staged",
        stats.staged_tiles
    );
}

#[test]
fn a_rolling_step_that_fails_before_writing_changes_nothing() {
    let d = 2;
    let mut law = Reference::conv3x3(d, UpdateRule::Additive, 0.3, 6);
    law.poison = Some(0.5);
    let backend: Arc<dyn ComputeBackend> = Arc::new(law);
    let options = SparseOptions::default()
        .with_tile(8)
        .with_forward_bytes(1)
        .with_atomic_steps(false);
    let mut e = SparseEngine::new(backend, options).unwrap();
    pattern(&mut e, 7);
    e.step().unwrap();
    // The poison in the first row of tiles: the first chunk fails.
    let top = e.bounding_box().unwrap();
    e.insert(top.min_x + 50, top.min_y, &[(0.5, 0.0), (0.0, 0.0)])
        .unwrap();
    let before = (
        cells(&e),
        e.tile_count(),
        e.step_count(),
        e.occupied_count(),
    );
    let err = e.step().unwrap_err();
    assert!(matches!(err, Error::Step { step: 2, .. }), "{err}");
    assert!(matches!(err.cause(), Error::NonFinite { .. }), "{err:?}");
    assert_eq!(
        (
            cells(&e),
            e.tile_count(),
            e.step_count(),
            e.occupied_count()
        ),
        before
    );
    assert!(!e.is_torn());
}

#[test]
fn a_rolling_step_that_fails_after_writing_says_so_and_the_engine_refuses_to_go_on() {
    let d = 2;
    let mut law = Reference::conv3x3(d, UpdateRule::Additive, 0.3, 6);
    law.poison = Some(0.5);
    let backend: Arc<dyn ComputeBackend> = Arc::new(law);
    let options = SparseOptions::default().with_tile(8).with_forward_bytes(1);
    let mut atomic = SparseEngine::new(Arc::clone(&backend), options).unwrap();
    let mut rolling = SparseEngine::new(backend, options.with_atomic_steps(false)).unwrap();
    for e in [&mut atomic, &mut rolling] {
        pattern(e, 7);
        e.step().unwrap();
        // The poison in the last row of tiles: every row above is written
        // by the time its chunk runs.
        let all = e.bounding_box().unwrap();
        e.insert(all.max_x - 3, all.max_y, &[(0.5, 0.0), (0.0, 0.0)])
            .unwrap();
    }
    let before = cells(&atomic);

    // Atomic: the same failure changes nothing.
    let err = atomic.step().unwrap_err();
    assert!(matches!(err, Error::Step { step: 2, .. }), "{err}");
    assert_eq!(cells(&atomic), before);

    let err = rolling.step().unwrap_err();
    let Error::TornStep {
        step,
        written,
        active,
        ..
    } = &err
    else {
        panic!("expected a torn step, got {err:?}");
    };
    assert_eq!(*step, 2);
    assert!(0 < *written && written < active, "{written} of {active}");
    assert!(matches!(err.cause(), Error::NonFinite { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("part before and part after this step"),
        "{msg}"
    );
    assert!(msg.contains("load the last saved state"), "{msg}");
    assert_ne!(cells(&rolling), before, "the written rows are stepped");
    assert_eq!(rolling.step_count(), 1);
    assert!(rolling.is_torn());

    // Nothing steps or exports a torn lattice.
    let refused = rolling.step().unwrap_err();
    assert!(matches!(refused, Error::Torn { step: 2 }), "{refused:?}");
    let all = CellBox::from_origin(-100, -100, 200, 200).unwrap();
    assert!(matches!(rolling.export(all), Err(Error::Torn { step: 2 })));
    assert!(refused
        .to_string()
        .contains("load the last saved state into a new engine"));
}
