//! An unbounded lattice: put matter far from the origin, step it, and ask
//! which cells lie within a radius of a point.
//!
//! cargo run --example sparse_embed

use atheria::{DenseState, EngineKind, Simulation};

fn main() -> Result<(), atheria::Error> {
    // The embedded default law on the sparse engine, starting empty.
    let d = atheria::default_law::D_STATE;
    let mut sim = Simulation::builder()
        .engine(EngineKind::Sparse)
        .initial_state(DenseState::zeros(1, 1, d)?) // one vacuum cell: nothing
        .build()?;

    // A disc of radius 6 a million cells out: the lattice has no edge.
    let (cx, cy, r) = (1_000_000i32, -2_000_000i32, 6i32);
    for y in cy - r..=cy + r {
        for x in cx - r..=cx + r {
            if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                let phase = 0.3 * (x - cx) as f32 + 0.7 * (y - cy) as f32;
                let v = (
                    phase.cos() / (d as f32).sqrt(),
                    phase.sin() / (d as f32).sqrt(),
                );
                sim.set_cell(x, y, &vec![v; d])?;
            }
        }
    }
    println!(
        "inserted {} cells around ({cx}, {cy})",
        sim.occupied_count()
    );

    for _ in 0..10 {
        let stats = sim.step()?;
        println!(
            "step {}: {} cells in {} tiles",
            stats.step, stats.occupied_cells, stats.active_tiles
        );
    }

    // Matter spreads at most one cell per step (the law's receptive radius).
    let b = sim.extent().expect("matter is left");
    println!(
        "bounding box x {}..={}, y {}..={}",
        b.min_x, b.max_x, b.min_y, b.max_y
    );
    let lattice = sim.sparse().expect("a sparse simulation");
    let near = lattice.cells_within(cx, cy, 8).count();
    let far = lattice.cells_within(0, 0, 1000).count();
    println!("cells within 8 of ({cx}, {cy}): {near}; within 1000 of the origin: {far}");
    let (x, y) = (cx + 3, cy - 2);
    match sim.cell(x, y) {
        Some(psi) => println!("psi({x}, {y})[0] = {:.6} {:+.6}i", psi[0].0, psi[0].1),
        None => println!("({x}, {y}) is vacuum"),
    }
    Ok(())
}
