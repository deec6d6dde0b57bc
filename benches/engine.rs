//! The engines' own work, without a real model: the fused update kernel,
//! the sparse step's gather and scatter+update at a fixed tile count, the
//! harmonic vacuum over one tile, and state files.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use atheria::sparse::DEFAULT_TILE;
use atheria::{
    state_file, Architecture, BatchShape, ComputeBackend, DenseState, Device, InitKind, ModelSpec,
    SparseEngine, SparseOptions, UpdateRule, Vacuum,
};
use criterion::{criterion_group, criterion_main, Criterion};
use sparse_grid::update::{update_field, UpdateParams};

const D: usize = 64;

/// The cheapest radius-1 law: delta = 0.1 x. Matter stays matter (psi' =
/// 1.1 psi, normalised back), vacuum stays vacuum, so every step of a
/// pattern costs the same and the timings are the engine's own.
struct Scale {
    spec: ModelSpec,
}

impl ComputeBackend for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn run(&self, input: &[f32], _: BatchShape, output: &mut [f32]) -> atheria::Result<()> {
        for (o, i) in output.iter_mut().zip(input) {
            *o = 0.1 * i;
        }
        Ok(())
    }
}

fn cheap_engine(side: usize) -> SparseEngine {
    let mut spec = atheria::default_law::spec();
    spec.name = "scale".into();
    spec.d_state = D;
    spec.architecture = Architecture::Conv3x3;
    let backend = Arc::new(Scale { spec });
    let mut e = SparseEngine::new(backend, SparseOptions::default()).expect("engine");
    let mut s = DenseState::zeros(side, side, D).expect("state");
    atheria::init::fill(&mut s, InitKind::ComplexNoise, 0);
    s.occupied_mut().fill(1);
    e.insert_dense(&s).expect("insert");
    e.step().expect("first step");
    e
}

fn bench_update(c: &mut Criterion) {
    let n = 64 * DEFAULT_TILE * DEFAULT_TILE;
    let mut psi = common::values(2 * D * n, 1);
    let delta: Vec<f32> = common::values(2 * D * n, 2)
        .iter()
        .map(|x| 0.01 * x)
        .collect();
    let (mut norm, mut occ) = (vec![0.0f32; n], vec![0u8; n]);
    for rule in [UpdateRule::Additive, UpdateRule::Unitary] {
        let p = UpdateParams {
            d_state: D,
            rule,
            gamma: 0.01,
            threshold: Some(0.01),
        };
        c.bench_function(&format!("update_field/{rule}_d{D}_{n}_cells"), |b| {
            b.iter(|| update_field(&mut psi, black_box(&delta), n, &p, &mut norm, &mut occ))
        });
    }
}

/// A 128 x 128 block of matter: 64 tiles, 100 active with the halo ring.
fn bench_sparse_step(c: &mut Criterion) {
    let mut e = cheap_engine(128);
    let tiles = e.step().expect("step").active_tiles;
    let mut part = |name: &str, pick: fn(&atheria::StepStats) -> Duration| {
        c.bench_function(
            &format!("sparse_step/{name}_d{D}_{tiles}_active_tiles"),
            |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| pick(&e.step().expect("step")))
                        .sum::<Duration>()
                })
            },
        );
    };
    part("gather", |s| s.gather);
    part("scatter_update", |s| s.scatter);
    part("whole_step_cheap_model", |s| {
        s.gather + s.forward + s.scatter
    });
}

fn bench_vacuum(c: &mut Criterion) {
    let v = Vacuum::Harmonic { strength: 0.1 };
    let t = DEFAULT_TILE as i64;
    c.bench_function(&format!("vacuum/harmonic_tile{t}x{t}_d{D}"), |b| {
        b.iter(|| {
            let mut acc = 0.0f32;
            for y in 0..t {
                for x in 0..t {
                    for ch in 0..D {
                        let (re, im) = v.value(7, black_box(1000 + x), y, 3, ch);
                        acc += re + im;
                    }
                }
            }
            acc
        })
    });
}

fn bench_state_file(c: &mut Criterion) {
    let (side, d) = (256, 8);
    let mut s = DenseState::zeros(side, side, d).expect("state");
    atheria::init::fill(&mut s, InitKind::Random, 1);
    let dir = std::env::temp_dir().join(format!("atheria-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("state.safetensors");
    let name = format!("{side}x{side}_d{d}");
    c.bench_function(&format!("state_file/save_{name}"), |b| {
        b.iter(|| state_file::write_state(black_box(&s), &path).expect("write"))
    });
    c.bench_function(&format!("state_file/load_{name}"), |b| {
        b.iter(|| state_file::read_state(black_box(&path), usize::MAX).expect("read"))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = bench_update, bench_sparse_step, bench_vacuum, bench_state_file
}
criterion_main!(benches);
