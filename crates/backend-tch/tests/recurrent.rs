//! Recurrent laws on libtorch: the golden unet_convlstm package against
//! PyTorch (delta and memory), the golden unet_unitary_rmsnorm package, and
//! small scripted modules (tests/data/make_recurrent.py) for in-place memory
//! updates and for every way a module can break the memory contract.

mod common;

use backend_tch::TchBackend;
use common::{load, max_diff, package_with, package_with_memory, tensor, TempDir};
use engine_api::{BackendOptions, BatchShape, ComputeBackend, ModelPackage};

/// Tolerance against PyTorch's own forward of the same TorchScript file
/// (float32, same kernels; measured differences are printed).
const TOL: f32 = 1e-4;

/// The memory of model.json for the scripted modules: `h_state` 3 channels
/// at half resolution, `c_state` 1 channel at full resolution.
const MEMORY: &str = r#"[{"name":"h_state","channels":3,"stride":2},
                         {"name":"c_state","channels":1,"stride":1}]"#;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn load_err(package: &ModelPackage) -> String {
    match TchBackend::load(package, &BackendOptions::default()) {
        Ok(_) => panic!("loading {} should fail", package.origin().display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unet_convlstm_matches_pytorch_in_delta_and_memory() {
    let case = "unet_convlstm_d2_h8";
    let backend = load(case);
    assert!(backend.spec().is_recurrent());
    let (dims, x) = tensor(case, "x");
    let shape = BatchShape::new(dims[0], dims[1], dims[2], dims[3]);
    let (h_dims, h) = tensor(case, "h_state");
    let (_, c) = tensor(case, "c_state");
    let (_, y) = tensor(case, "y");
    let (_, h_next) = tensor(case, "h_state_next");
    let (_, c_next) = tensor(case, "c_state_next");
    assert_eq!(h_dims, backend.spec().memory[0].dims(shape));
    let memory: Vec<f32> = h.iter().chain(&c).copied().collect();
    assert_eq!(memory.len(), backend.spec().memory_len(shape));
    let before = memory.clone();
    // Twice: the second forward reuses the staged tensors of the first.
    for call in 0..2 {
        let mut out = vec![f32::NAN; shape.len()];
        let mut next = vec![f32::NAN; memory.len()];
        backend
            .forward_with_memory(&x, shape, &memory, &mut out, &mut next)
            .unwrap();
        let (dy, dh, dc) = (
            max_diff(&out, &y),
            max_diff(&next[..h.len()], &h_next),
            max_diff(&next[h.len()..], &c_next),
        );
        println!("tch {case} call {call}: max |diff| delta {dy:e}, h_state_next {dh:e}, c_state_next {dc:e}");
        assert!(dy <= TOL && dh <= TOL && dc <= TOL, "{dy} {dh} {dc}");
    }
    assert_eq!(
        memory, before,
        "the backend must not change its memory input"
    );
}

#[test]
fn a_recurrent_law_refuses_forward_without_memory_and_wrong_memory_lengths() {
    let case = "unet_convlstm_d2_h8";
    let backend = load(case);
    let shape = BatchShape::new(1, 4, 8, 8);
    let (x, mut out) = (vec![0.0; shape.len()], vec![0.0; shape.len()]);
    let err = backend
        .forward(&x, shape, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("forward_with_memory"), "{err}");
    let len = backend.spec().memory_len(shape);
    assert_eq!(len, 2 * 32 * 2 * 2);
    let err = backend
        .forward_with_memory(
            &x,
            shape,
            &vec![0.0; len - 1],
            &mut out,
            &mut vec![0.0; len],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("h_state, c_state") && err.contains(&len.to_string()),
        "{err}"
    );
}

#[test]
fn unet_unitary_rmsnorm_matches_pytorch_and_runs_with_no_memory() {
    let case = "unet_unitary_rmsnorm_d2_h8";
    let backend = load(case);
    assert!(!backend.spec().is_recurrent());
    let f = common::forward(case);
    let mut out = vec![0.0; f.x.len()];
    backend.forward(&f.x, f.shape, &mut out).unwrap();
    let diff = max_diff(&out, &f.y);
    println!("tch {case}: max |diff| delta {diff:e}");
    assert!(diff <= TOL, "{diff}");
    // The engines' call: no memory, the same forward.
    let mut again = vec![0.0; f.x.len()];
    backend
        .forward_with_memory(&f.x, f.shape, &[], &mut again, &mut [])
        .unwrap();
    assert_eq!(out, again);
}

#[test]
fn a_module_updating_its_memory_in_place_leaves_the_callers_memory_alone() {
    let dir = TempDir::new("recurrent");
    let package = package_with_memory(&dir.0, 2, 2, MEMORY, &data("recurrent.pt"));
    let backend = TchBackend::load(&package, &BackendOptions::default()).unwrap();
    let shape = BatchShape::new(2, 4, 4, 6);
    let x: Vec<f32> = (0..shape.len()).map(|i| i as f32 * 0.125 - 3.0).collect();
    let (h_len, c_len) = (2 * 3 * 2 * 3, 2 * 4 * 6);
    assert_eq!(backend.spec().memory_len(shape), h_len + c_len);
    let memory: Vec<f32> = (0..h_len + c_len).map(|i| i as f32 * 0.5 - 7.0).collect();
    let mut out = vec![0.0; shape.len()];
    let mut next = vec![0.0; memory.len()];
    for _ in 0..3 {
        backend
            .forward_with_memory(&x, shape, &memory, &mut out, &mut next)
            .unwrap();
        let twice: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
        assert_eq!(out, twice);
        // h_state + 1, then 3 c_state + the field's first channel.
        for (i, (n, m)) in next[..h_len].iter().zip(&memory[..h_len]).enumerate() {
            assert_eq!(*n, m + 1.0, "h_state_next[{i}]");
        }
        for b in 0..2 {
            for p in 0..24 {
                let i = b * 24 + p;
                let want = 3.0 * memory[h_len + i] + x[b * 4 * 24 + p];
                assert_eq!(next[h_len + i], want, "c_state_next[{i}]");
            }
        }
    }
    assert_eq!(memory[0], -7.0, "the caller's memory changed");
}

#[test]
fn a_module_that_returns_only_the_delta_is_refused_at_load_naming_the_memory() {
    let dir = TempDir::new("delta-only");
    let package = package_with_memory(&dir.0, 2, 2, MEMORY, &data("delta_only.pt"));
    let err = load_err(&package);
    assert!(err.contains("returns only a tensor"), "{err}");
    assert!(
        err.contains("forward(x, h_state, c_state) -> (delta, h_state_next, c_state_next)"),
        "{err}"
    );
    assert!(err.contains("model.pt") && !err.contains('\n'), "{err}");
}

#[test]
fn a_module_missing_a_memory_output_is_refused_naming_it() {
    let dir = TempDir::new("short");
    let package = package_with_memory(&dir.0, 2, 2, MEMORY, &data("short.pt"));
    let err = load_err(&package);
    assert!(err.contains("tuple of 2 values, not 3"), "{err}");
    assert!(err.contains("missing c_state_next"), "{err}");
}

#[test]
fn a_memory_output_of_the_wrong_shape_is_refused_naming_it() {
    let dir = TempDir::new("wrong-shape");
    let package = package_with_memory(&dir.0, 2, 2, MEMORY, &data("wrong_shape.pt"));
    let err = load_err(&package);
    assert!(
        err.contains("`h_state_next` has shape [1, 1, 2, 2]"),
        "{err}"
    );
    assert!(
        err.contains("memory `h_state` (3 channels, stride 2)"),
        "{err}"
    );
}

#[test]
fn a_module_without_memory_arguments_is_refused_when_model_json_lists_memory() {
    let dir = TempDir::new("no-memory-args");
    let bytes = std::fs::read(common::golden("unet_d2_h8").join("model.pt")).unwrap();
    let package = package_with_memory(&dir.0, 2, 4, MEMORY, &bytes);
    let err = load_err(&package);
    assert!(
        err.contains("memory h_state [1, 3, 4, 4], c_state [1, 1, 8, 8]"),
        "{err}"
    );
    assert!(err.contains("forward(x, h_state, c_state)"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    // And the other way round: a recurrent module in a package without memory.
    let dir = TempDir::new("memory-args");
    let package = package_with(&dir.0, 2, &data("recurrent.pt"));
    assert!(TchBackend::load(&package, &BackendOptions::default()).is_err());
}
