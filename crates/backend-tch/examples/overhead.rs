//! Measures what the module pool costs, and what libgomp's spin-waiting costs.
//!
//! ```sh
//! cargo run --release -p backend-tch --example overhead -- tests/fixtures/golden/conv3x3_d4
//! OMP_WAIT_POLICY=PASSIVE cargo run --release -p backend-tch --example overhead -- <package>
//! ```
//! 1. Single-thread forward time through `TchBackend` (pool) against the same
//!    work behind a `Mutex<CModule>` and on a bare, unshared `CModule`, on a
//!    small field (overhead dominates) and a larger one.
//! 2. CPU time the process burns in the 20 ms after a forward returns, while
//!    the caller sleeps: libgomp workers spin-waiting for more work. That is
//!    CPU an engine's rayon update would otherwise get.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backend_tch::{check, TchBackend};
use engine_api::{BackendOptions, BatchShape, ComputeBackend, ModelFile, ModelPackage};
use tch::{CModule, Kind, Tensor};

fn main() {
    if std::env::var_os("OVERHEAD_SETENV").is_some() {
        // Too late to matter: libgomp read its environment when it was loaded,
        // before main. The figure printed below shows it.
        std::env::set_var("OMP_WAIT_POLICY", "PASSIVE");
    }
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tests/fixtures/golden/conv3x3_d4".into());
    let threads = std::env::args().nth(2).and_then(|s| s.parse().ok());
    let package = ModelPackage::load(&dir).expect("package");
    let mut options = BackendOptions::default();
    options.threads = threads;
    let backend = TchBackend::load(&package, &options).expect("load");
    println!("{}", check().expect("check"));
    println!(
        "OMP_WAIT_POLICY={:?} GOMP_SPINCOUNT={:?} threads={threads:?}",
        std::env::var("OMP_WAIT_POLICY").ok(),
        std::env::var("GOMP_SPINCOUNT").ok()
    );
    let file = package.file(ModelFile::TorchScript).unwrap();
    let bytes = file.bytes();
    let bare = CModule::load_data(&mut { bytes }).unwrap();
    let locked: Mutex<(CModule, Option<Tensor>)> =
        Mutex::new((CModule::load_data(&mut { bytes }).unwrap(), None));
    let c = package.spec().channels();
    for side in [16, 64] {
        let shape = BatchShape::new(1, c, side, side);
        let input: Vec<f32> = (0..shape.len()).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0; shape.len()];
        let iters = if side == 16 { 4000 } else { 400 };
        let pool = time(iters, || backend.forward(&input, shape, &mut out).unwrap());
        let mutex = time(iters, || {
            let mut guard = locked.lock().unwrap();
            let (module, staged) = &mut *guard;
            forward_by_hand(module, staged, &input, shape, &mut out);
        });
        locked.lock().unwrap().1 = None;
        let mut staged = None;
        let unshared = time(iters, || {
            forward_by_hand(&bare, &mut staged, &input, shape, &mut out)
        });
        println!(
            "{shape}: pool {pool:.2} us, Mutex<CModule> {mutex:.2} us, bare CModule {unshared:.2} us \
             (pool - mutex = {:+.2} us)",
            pool - mutex
        );
    }
    let shape = BatchShape::new(1, c, 64, 64);
    let input = vec![0.5f32; shape.len()];
    let mut out = vec![0.0; shape.len()];
    let rounds = 20;
    let mut burned = Duration::ZERO;
    for _ in 0..rounds {
        backend.forward(&input, shape, &mut out).unwrap();
        let before = cpu_time();
        std::thread::sleep(Duration::from_millis(20));
        burned += cpu_time() - before;
    }
    println!(
        "CPU burned in the 20 ms after a forward (caller asleep): {:.2} ms",
        burned.as_secs_f64() * 1e3 / rounds as f64
    );
}

/// What `TchBackend::forward` does, minus the pool, for comparison.
fn forward_by_hand(
    module: &CModule,
    staged: &mut Option<Tensor>,
    input: &[f32],
    shape: BatchShape,
    out: &mut [f32],
) {
    let _g = tch::no_grad_guard();
    let dims = shape.dims_i64();
    let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
    let staged = staged.get_or_insert_with(|| Tensor::empty(dims, (Kind::Float, tch::Device::Cpu)));
    let src = unsafe {
        Tensor::f_from_blob(
            input.as_ptr().cast(),
            &dims,
            &strides,
            Kind::Float,
            tch::Device::Cpu,
        )
    }
    .unwrap();
    staged.copy_(&src);
    let y = module.forward_ts(&[&*staged]).unwrap();
    let mut dst = unsafe {
        Tensor::f_from_blob(
            out.as_mut_ptr().cast_const().cast(),
            &dims,
            &strides,
            Kind::Float,
            tch::Device::Cpu,
        )
    }
    .unwrap();
    dst.copy_(&y);
}

/// Median microseconds per call over `iters` calls, in 10 batches, after a warm-up.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut per_call: Vec<f64> = (0..10)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters / 10 {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / (iters / 10) as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[5]
}

/// CPU time of every thread of this process (from /proc, nanosecond resolution).
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}
