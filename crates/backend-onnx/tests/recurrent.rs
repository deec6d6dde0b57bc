//! Recurrent laws on ONNX Runtime: the golden unet_convlstm package against
//! PyTorch (delta and memory), the golden unet_unitary_rmsnorm package, and
//! small graphs written here for binding by name and for every way a graph
//! can break the memory contract.

mod common;

use backend_onnx::OnnxBackend;
use common::onnx::{graph_model, Dim, Node};
use common::{cpu, golden_dir, golden_package, max_abs_diff, read_tensor, scratch_dir};
use engine_api::{BatchShape, ComputeBackend, ModelPackage};

/// Tolerance against PyTorch's forward of the same law (float32, different
/// kernels; measured differences are printed).
const TOL: f32 = 1e-4;

/// model.json's memory of the small graphs: `h_state` 3 channels at half
/// resolution, `c_state` 1 channel at full resolution.
const MEMORY: &str = r#"[{"name":"h_state","channels":3,"stride":2},
                         {"name":"c_state","channels":1,"stride":1}]"#;

fn field() -> [Dim; 4] {
    [
        Dim::Dynamic("batch"),
        Dim::Fixed(4),
        Dim::Dynamic("height"),
        Dim::Dynamic("width"),
    ]
}

fn h_state() -> [Dim; 4] {
    [
        Dim::Dynamic("batch"),
        Dim::Fixed(3),
        Dim::Dynamic("h_height"),
        Dim::Dynamic("h_width"),
    ]
}

fn c_state() -> [Dim; 4] {
    [
        Dim::Dynamic("batch"),
        Dim::Fixed(1),
        Dim::Dynamic("height"),
        Dim::Dynamic("width"),
    ]
}

/// delta = 2 x, h_state_next = h_state + 1, c_state_next = 3 c_state.
const NODES: [Node<'static>; 3] = [
    ("Add", &["x", "x"], "delta"),
    ("Add", &["h_state", "one"], "h_state_next"),
    ("Mul", &["c_state", "three"], "c_state_next"),
];

fn small_graph(inputs: &[(&str, [Dim; 4])], outputs: &[(&str, [Dim; 4])]) -> Vec<u8> {
    graph_model(
        &NODES,
        &[("one", &[1], &[1.0]), ("three", &[1], &[3.0])],
        inputs,
        outputs,
    )
}

/// A custom package listing [`MEMORY`], with `spatial_multiple` 2.
fn package(name: &str, onnx: &[u8]) -> ModelPackage {
    let dir = scratch_dir(name);
    std::fs::write(dir.join("model.onnx"), onnx).unwrap();
    let json = format!(
        r#"{{"format":"atheria-model/1","name":"{name}","architecture":"custom","d_state":2,
            "update":"additive","receptive_radius":null,"spatial_multiple":2,"memory":{MEMORY},
            "files":{{"onnx":"model.onnx"}}}}"#
    );
    std::fs::write(dir.join("model.json"), json).unwrap();
    ModelPackage::load(&dir).unwrap()
}

fn load_err(package: &ModelPackage) -> String {
    match OnnxBackend::load(package, &cpu(1)) {
        Ok(_) => panic!("loading {} should fail", package.origin().display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unet_convlstm_matches_pytorch_in_delta_and_memory() {
    let case = "unet_convlstm_d2_h8";
    let backend = OnnxBackend::load(&golden_package(case), &cpu(2)).unwrap();
    let file = golden_dir(case).join("forward.safetensors");
    let (dims, x) = read_tensor(&file, "x");
    let shape = BatchShape::new(dims[0], dims[1], dims[2], dims[3]);
    let (h_dims, h) = read_tensor(&file, "h_state");
    let (_, c) = read_tensor(&file, "c_state");
    let (_, y) = read_tensor(&file, "y");
    let (_, h_next) = read_tensor(&file, "h_state_next");
    let (_, c_next) = read_tensor(&file, "c_state_next");
    assert_eq!(h_dims, backend.spec().memory[0].dims(shape));
    let memory: Vec<f32> = h.iter().chain(&c).copied().collect();
    let before = memory.clone();
    let mut out = vec![f32::NAN; shape.len()];
    let mut next = vec![f32::NAN; memory.len()];
    backend
        .forward_with_memory(&x, shape, &memory, &mut out, &mut next)
        .unwrap();
    let (dy, dh, dc) = (
        max_abs_diff(&out, &y),
        max_abs_diff(&next[..h.len()], &h_next),
        max_abs_diff(&next[h.len()..], &c_next),
    );
    println!("onnx {case}: max |diff| delta {dy:e}, h_state_next {dh:e}, c_state_next {dc:e}");
    assert!(dy <= TOL && dh <= TOL && dc <= TOL, "{dy} {dh} {dc}");
    assert_eq!(memory, before);
    let err = backend
        .forward(&x, shape, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("forward_with_memory"), "{err}");
}

#[test]
fn unet_unitary_rmsnorm_matches_pytorch() {
    let case = "unet_unitary_rmsnorm_d2_h8";
    let backend = OnnxBackend::load(&golden_package(case), &cpu(2)).unwrap();
    let file = golden_dir(case).join("forward.safetensors");
    let (dims, x) = read_tensor(&file, "x");
    let (_, y) = read_tensor(&file, "y");
    let shape = BatchShape::new(dims[0], dims[1], dims[2], dims[3]);
    let mut out = vec![0.0; shape.len()];
    backend
        .forward_with_memory(&x, shape, &[], &mut out, &mut [])
        .unwrap();
    let diff = max_abs_diff(&out, &y);
    println!("onnx {case}: max |diff| delta {diff:e}");
    assert!(diff <= TOL, "{diff}");
}

#[test]
fn memory_is_bound_by_name_whatever_the_graphs_order() {
    // Inputs and outputs in another order than model.json's.
    let onnx = small_graph(
        &[
            ("c_state", c_state()),
            ("x", field()),
            ("h_state", h_state()),
        ],
        &[
            ("c_state_next", c_state()),
            ("delta", field()),
            ("h_state_next", h_state()),
        ],
    );
    let backend = OnnxBackend::load(&package("by-name", &onnx), &cpu(1)).unwrap();
    let shape = BatchShape::new(2, 4, 4, 6);
    let (h_len, c_len) = (2 * 3 * 2 * 3, 2 * 4 * 6);
    assert_eq!(backend.spec().memory_len(shape), h_len + c_len);
    let x: Vec<f32> = (0..shape.len()).map(|i| i as f32 * 0.125 - 3.0).collect();
    let memory: Vec<f32> = (0..h_len + c_len).map(|i| i as f32 * 0.5 - 7.0).collect();
    let mut out = vec![0.0; shape.len()];
    let mut next = vec![0.0; memory.len()];
    backend
        .forward_with_memory(&x, shape, &memory, &mut out, &mut next)
        .unwrap();
    assert!(out.iter().zip(&x).all(|(o, x)| *o == 2.0 * x));
    assert!(next[..h_len]
        .iter()
        .zip(&memory[..h_len])
        .all(|(n, m)| *n == m + 1.0));
    assert!(next[h_len..]
        .iter()
        .zip(&memory[h_len..])
        .all(|(n, m)| *n == 3.0 * m));
}

#[test]
fn a_graph_that_returns_only_the_delta_is_refused_naming_the_memory() {
    // The law without memory: delta = 2 x, one input, one output.
    let onnx = graph_model(&NODES[..1], &[], &[("x", field())], &[("delta", field())]);
    let err = load_err(&package("delta-only", &onnx));
    assert!(err.contains("no input `h_state`"), "{err}");
    assert!(
        err.contains("inputs x, h_state, c_state and return delta, h_state_next, c_state_next"),
        "{err}"
    );
    assert!(err.contains("model.onnx") && !err.contains('\n'), "{err}");
}

#[test]
fn a_graph_missing_a_memory_output_is_refused_naming_it() {
    let onnx = small_graph(
        &[
            ("x", field()),
            ("h_state", h_state()),
            ("c_state", c_state()),
        ],
        &[("delta", field()), ("h_state_next", h_state())],
    );
    let err = load_err(&package("short", &onnx));
    assert!(err.contains("no output `c_state_next`"), "{err}");
    assert!(err.contains("its outputs: delta, h_state_next"), "{err}");
}

#[test]
fn a_memory_input_with_other_channels_is_refused_naming_it() {
    let mut wrong = h_state();
    wrong[1] = Dim::Fixed(5);
    let onnx = small_graph(
        &[("x", field()), ("h_state", wrong), ("c_state", c_state())],
        &[
            ("delta", field()),
            ("h_state_next", h_state()),
            ("c_state_next", c_state()),
        ],
    );
    let err = load_err(&package("channels", &onnx));
    assert!(err.contains("input `h_state` has 5 channels"), "{err}");
}

#[test]
fn a_recurrent_graph_in_a_package_without_memory_says_where_memory_is_listed() {
    let onnx = small_graph(
        &[
            ("x", field()),
            ("h_state", h_state()),
            ("c_state", c_state()),
        ],
        &[
            ("delta", field()),
            ("h_state_next", h_state()),
            ("c_state_next", c_state()),
        ],
    );
    let package = common::write_package_with_multiple("no-memory", 2, 2, &onnx);
    let err = load_err(&package);
    assert!(err.contains("3 inputs (x, h_state, c_state)"), "{err}");
    assert!(err.contains("model.json's \"memory\""), "{err}");
}
