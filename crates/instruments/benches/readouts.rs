//! The readouts of a 128 x 128 grid of 64 channels (the size the issue
//! budgets at 10% of a step), with a fidelity baseline of the same box.

use criterion::{criterion_group, criterion_main, Criterion};
use instruments::frame::FrameRef;
use instruments::metrics::metrics;
use sparse_grid::rng::Rng;
use sparse_grid::DenseState;

fn field(seed: u64) -> DenseState {
    let (h, w, d) = (128, 128, 64);
    let mut rng = Rng::new(seed);
    let planes = (0..2 * d * h * w).map(|_| rng.normal()).collect();
    DenseState::from_planes(h, w, d, planes, vec![1; h * w]).unwrap()
}

fn readouts(c: &mut Criterion) {
    let (psi, psi0) = (field(1), field(2));
    let (frame, base) = (
        FrameRef::new(&psi, None).unwrap(),
        FrameRef::new(&psi0, None).unwrap(),
    );
    c.bench_function("metrics 128x128x64", |b| {
        b.iter(|| metrics(&frame, Some(&base), Some(1.0), None, 1))
    });
}

criterion_group!(benches, readouts);
criterion_main!(benches);
