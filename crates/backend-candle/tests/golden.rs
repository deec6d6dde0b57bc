//! What is particular to the candle backend, on the golden fixtures that
//! python/make_golden.py writes to tests/fixtures/golden/: a batch equals
//! its entries run one by one, and threads share one backend. That every
//! golden case matches PyTorch (on 1 and 2 threads), on every backend, is
//! the one golden suite's job (tests/golden.rs at the repository root).

use std::path::PathBuf;
use std::sync::Arc;

use backend_candle::CandleBackend;
use candle_core::Device;
use engine_api::{BackendOptions, BatchShape, ComputeBackend, ModelPackage};

/// |candle - torch| allowed per value, as in the golden suite's forward check.
const TOLERANCE: f32 = 1e-4;

fn case_dir(case: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden")
        .join(case);
    assert!(
        dir.join("forward.safetensors").is_file() && dir.join("model.safetensors").is_file(),
        "golden fixtures are missing: {} has no forward.safetensors / model.safetensors; \
         generate them with python/make_golden.py",
        dir.display()
    );
    dir
}

fn backend(case: &str, threads: usize) -> CandleBackend {
    let package = ModelPackage::load(case_dir(case)).expect("fixture model.json");
    let options = BackendOptions::default().with_threads(threads);
    CandleBackend::load(&package, &options).expect("fixture loads")
}

/// The fixture's input and PyTorch's output.
fn io(case: &str) -> (BatchShape, Vec<f32>, Vec<f32>) {
    let path = case_dir(case).join("forward.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("forward.safetensors");
    let get = |name: &str| {
        let t = tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing in {}", path.display()));
        let v = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("f32 tensor");
        (t.dims().to_vec(), v)
    };
    let (dims, x) = get("x");
    let (ydims, y) = get("y");
    assert_eq!(dims, ydims);
    (BatchShape::new(dims[0], dims[1], dims[2], dims[3]), x, y)
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    let mut worst = (0.0f32, 0);
    for (i, (a, e)) in got.iter().zip(want).enumerate() {
        assert!(a.is_finite(), "{what}: value {i} is {a}");
        let diff = (a - e).abs();
        if diff > worst.0 {
            worst = (diff, i);
        }
    }
    let (diff, i) = worst;
    assert!(
        approx::abs_diff_eq!(got[i], want[i], epsilon = tolerance),
        "{what}: value {i} is {} but should be {} (|diff| {diff:.2e} > {tolerance:.0e})",
        got[i],
        want[i]
    );
}

/// The sparse engine sends many tiles at once: a batch must equal its entries
/// run one by one (the batch path gathers images into one gemm).
fn batch_equals_single_entries(case: &str) {
    let (shape, x, _) = io(case);
    let b = backend(case, 2);
    let reps = 5;
    let big = BatchShape::new(
        shape.batch * reps,
        shape.channels,
        shape.height,
        shape.width,
    );
    let xs: Vec<f32> = (0..reps).flat_map(|_| x.iter().copied()).collect();
    let mut all = vec![0.0; big.len()];
    b.forward(&xs, big, &mut all).expect("batched forward");
    let one = BatchShape::new(1, shape.channels, shape.height, shape.width);
    let n = one.len();
    for (i, field) in xs.chunks(n).enumerate() {
        let mut out = vec![0.0; n];
        b.forward(field, one, &mut out).expect("single forward");
        assert_close(
            &all[i * n..][..n],
            &out,
            1e-5,
            &format!("{case} batch entry {i}"),
        );
    }
}

macro_rules! golden {
    ($($case:ident),*) => {$(
        mod $case {
            #[test]
            fn batch_equals_single_entries() {
                super::batch_equals_single_entries(stringify!($case));
            }
        }
    )*};
}

golden!(
    conv3x3_d4,
    conv3x3_identity_d4,
    mlp_d2_h8,
    deep_qca_d2_h8,
    unet_d2_h8,
    unet_unitary_d2_h8
);

#[test]
fn threads_share_one_backend() {
    let (shape, x, y) = io("unet_d2_h8");
    let b = Arc::new(backend("unet_d2_h8", 2));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (b, x) = (Arc::clone(&b), x.clone());
            std::thread::spawn(move || {
                let mut out = vec![0.0; shape.len()];
                for _ in 0..5 {
                    b.forward(&x, shape, &mut out).expect("forward");
                }
                out
            })
        })
        .collect();
    for h in handles {
        assert_close(&h.join().expect("thread"), &y, TOLERANCE, "concurrent unet");
    }
}
