//! Wrong weights, broken files and bad calls give one clear error, never a panic.

use std::collections::HashMap;
use std::path::PathBuf;

use backend_candle::CandleBackend;
use candle_core::{DType, Device, Tensor};
use engine_api::{
    BackendOptions, BatchShape, ComputeBackend, Device as EngineDevice, ModelPackage, ModelSpec,
};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atheria-candle-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn model_json(arch: &str, d: usize, hidden: Option<usize>) -> String {
    let (radius, multiple, update) = match arch {
        "conv3x3" | "deep_qca" => ("1", 1, "additive"),
        "mlp" => ("0", 1, "additive"),
        "unet" => ("null", 4, "additive"),
        _ => ("null", 1, "additive"),
    };
    let hidden = hidden.map_or(String::new(), |h| format!(r#""hidden_channels":{h},"#));
    format!(
        r#"{{"format":"atheria-model/1","name":"t","architecture":"{arch}","d_state":{d},{hidden}
            "update":"{update}","receptive_radius":{radius},"spatial_multiple":{multiple},
            "files":{{"safetensors":"model.safetensors"}}}}"#
    )
}

fn tensor(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.1).sin()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
}

fn conv_weights(c: usize) -> HashMap<String, Tensor> {
    HashMap::from([
        ("conv.weight".to_string(), tensor(&[c, c, 3, 3])),
        ("conv.bias".to_string(), tensor(&[c])),
    ])
}

/// Writes a package and returns the error (or backend) of loading it.
fn load(
    name: &str,
    json: &str,
    weights: &HashMap<String, Tensor>,
) -> engine_api::Result<CandleBackend> {
    let dir = scratch(name);
    std::fs::write(dir.join("model.json"), json).expect("model.json");
    candle_core::safetensors::save(weights, dir.join("model.safetensors")).expect("save");
    let package = ModelPackage::load(&dir)?;
    let result = CandleBackend::load(&package, &BackendOptions::default());
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn load_bytes(name: &str, bytes: &[u8]) -> String {
    let dir = scratch(name);
    std::fs::write(dir.join("model.json"), model_json("conv3x3", 2, None)).expect("model.json");
    std::fs::write(dir.join("model.safetensors"), bytes).expect("weights");
    let package = ModelPackage::load(&dir).expect("package");
    let err = CandleBackend::load(&package, &BackendOptions::default())
        .expect_err("a broken file must not load")
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    err
}

fn err(r: engine_api::Result<CandleBackend>) -> String {
    r.expect_err("must fail").to_string()
}

#[test]
fn wrong_names_and_shapes_are_listed_in_one_error() {
    let weights = HashMap::from([
        ("conv.weight".to_string(), tensor(&[4, 4, 1, 1])),
        ("conv.extra".to_string(), tensor(&[4])),
    ]);
    let e = err(load("names", &model_json("conv3x3", 2, None), &weights));
    assert!(e.contains("missing: conv.bias [4]"), "{e}");
    assert!(e.contains("unexpected: conv.extra"), "{e}");
    assert!(
        e.contains("mis-shaped: conv.weight is [4, 4, 1, 1], expected [4, 4, 3, 3]"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn weights_for_another_d_state_name_both_numbers() {
    let e = err(load(
        "dstate",
        &model_json("conv3x3", 2, None),
        &conv_weights(8),
    ));
    assert!(e.contains("8 input channels (d_state 4)"), "{e}");
    assert!(e.contains("d_state 2 (4 channels)"), "{e}");
}

#[test]
fn an_mlp_with_another_hidden_width_lists_the_misshaped_layers() {
    let weights = HashMap::from([
        ("net.0.weight".to_string(), tensor(&[8, 4, 1, 1])),
        ("net.0.bias".to_string(), tensor(&[8])),
        ("net.2.weight".to_string(), tensor(&[8, 8, 1, 1])),
        ("net.2.bias".to_string(), tensor(&[8])),
        ("net.4.weight".to_string(), tensor(&[4, 8, 1, 1])),
        ("net.4.bias".to_string(), tensor(&[4])),
    ]);
    let e = err(load("hidden", &model_json("mlp", 2, Some(16)), &weights));
    assert!(e.contains("hidden_channels 16"), "{e}");
    assert!(
        e.contains("net.0.weight is [8, 4, 1, 1], expected [16, 4, 1, 1]"),
        "{e}"
    );
    assert!(
        e.contains("net.4.weight is [4, 8, 1, 1], expected [4, 16, 1, 1]"),
        "{e}"
    );
    assert!(!e.contains("missing") && !e.contains("unexpected"), "{e}");
}

#[test]
fn a_unet_given_conv_weights_lists_what_is_missing() {
    let spec = ModelSpec::from_json(&model_json("unet", 2, Some(8)), "m.json".as_ref()).unwrap();
    // A conv3x3's tensors are all unexpected for a U-Net, and its are all missing.
    let tensors = vec![("conv.weight".to_string(), vec![4, 4, 3, 3], vec![0.0; 144])];
    let e = CandleBackend::from_tensors(spec, tensors, &BackendOptions::default())
        .expect_err("must fail")
        .to_string();
    assert!(
        e.contains("missing: inc.conv_block.0.weight [8, 4, 3, 3]"),
        "{e}"
    );
    assert!(e.contains("unexpected: conv.weight"), "{e}");
}

#[test]
fn empty_truncated_and_corrupt_files_are_clear_errors() {
    let e = load_bytes("empty", b"");
    assert!(e.contains("empty"), "{e}");
    let dir = scratch("valid");
    let path = dir.join("w.safetensors");
    candle_core::safetensors::save(&conv_weights(4), &path).expect("save");
    let good = std::fs::read(&path).expect("read");
    for cut in [4, 8, 20, good.len() / 2, good.len() - 1] {
        let e = load_bytes(&format!("cut{cut}"), &good[..cut]);
        assert!(e.contains("truncated or corrupt"), "cut at {cut}: {e}");
    }
    let e = load_bytes("garbage", &[0xff; 64]);
    assert!(e.contains("truncated or corrupt"), "{e}");
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let e = load_bytes("huge", &huge);
    assert!(e.contains("truncated or corrupt"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn integer_tensors_are_refused_and_wider_floats_converted() {
    let mut weights = conv_weights(4);
    weights.insert(
        "conv.bias".into(),
        Tensor::zeros(4, DType::U8, &Device::Cpu).unwrap(),
    );
    let e = err(load("ints", &model_json("conv3x3", 2, None), &weights));
    assert!(
        e.contains("conv.bias") && e.contains("floating point"),
        "{e}"
    );

    let f32s = conv_weights(4);
    let f64s: HashMap<_, _> = f32s
        .iter()
        .map(|(k, t)| (k.clone(), t.to_dtype(DType::F64).unwrap()))
        .collect();
    let a = load("f32", &model_json("conv3x3", 2, None), &f32s).expect("f32 loads");
    let b = load("f64", &model_json("conv3x3", 2, None), &f64s).expect("f64 loads");
    let shape = BatchShape::new(1, 4, 3, 5);
    let x: Vec<f32> = (0..shape.len()).map(|i| i as f32 * 0.01).collect();
    let (mut ya, mut yb) = (vec![0.0; shape.len()], vec![0.0; shape.len()]);
    a.forward(&x, shape, &mut ya).unwrap();
    b.forward(&x, shape, &mut yb).unwrap();
    assert_eq!(ya, yb);
}

#[test]
fn custom_models_and_cuda_are_refused() {
    let json = model_json("custom", 2, None)
        .replace(r#""receptive_radius":null"#, r#""receptive_radius":2"#);
    let e = err(load("custom", &json, &conv_weights(4)));
    assert!(e.contains("custom models run on tch or onnx only"), "{e}");

    let spec = ModelSpec::from_json(&model_json("conv3x3", 2, None), "m.json".as_ref()).unwrap();
    let tensors = vec![
        ("conv.weight".to_string(), vec![4, 4, 3, 3], vec![0.0; 144]),
        ("conv.bias".to_string(), vec![4], vec![0.0; 4]),
    ];
    let cuda = BackendOptions::default().with_device(EngineDevice::Cuda(0));
    let e = CandleBackend::from_tensors(spec.clone(), tensors.clone(), &cuda)
        .expect_err("no cuda")
        .to_string();
    assert!(e.contains("cuda:0") && e.contains("CPU only"), "{e}");

    let zero = BackendOptions::default().with_threads(0);
    let e = CandleBackend::from_tensors(spec.clone(), tensors, &zero)
        .expect_err("no threads")
        .to_string();
    assert!(e.contains("threads"), "{e}");

    let short = vec![("conv.weight".to_string(), vec![4, 4, 3, 3], vec![0.0; 10])];
    let e = CandleBackend::from_tensors(spec, short, &BackendOptions::default())
        .expect_err("short")
        .to_string();
    assert!(e.contains("shape [4, 4, 3, 3] but 10 values"), "{e}");
}

#[test]
fn bad_forward_calls_are_errors() {
    let b = load("fwd", &model_json("conv3x3", 2, None), &conv_weights(4)).expect("loads");
    let shape = BatchShape::new(2, 4, 3, 3);
    let x = vec![0.0; shape.len()];
    let mut y = vec![0.0; shape.len()];
    assert!(b.forward(&x, BatchShape::new(2, 6, 3, 3), &mut y).is_err());
    assert!(b.forward(&x[1..], shape, &mut y).is_err());
    assert!(b.forward(&x, shape, &mut y[1..]).is_err());
    b.forward(&x, shape, &mut y).expect("a right call works");
    // Empty batches are valid and touch nothing.
    b.forward(&[], BatchShape::new(0, 4, 3, 3), &mut [])
        .expect("empty batch");
}

#[test]
fn check_reports_a_version() {
    let v = backend_candle::check().expect("backend works here");
    assert!(v.contains("candle"), "{v}");
}

/// The golden package of `case`, its weights with `edit` applied: the error
/// of loading it.
fn load_golden_edited(case: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden")
        .join(case);
    let json = std::fs::read_to_string(dir.join("model.json")).expect("golden model.json");
    let mut weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("golden model.safetensors");
    edit(&mut weights);
    err(load(case, &json, &weights))
}

#[test]
fn a_convlstm_unet_without_its_gates_names_them() {
    let e = load_golden_edited("unet_convlstm_d2_h8", |w| {
        w.remove("conv_gates.bias");
        w.insert("conv_gates.weight".into(), tensor(&[128, 32, 3, 3]));
    });
    assert!(e.contains("missing: conv_gates.bias [128]"), "{e}");
    assert!(
        e.contains("mis-shaped: conv_gates.weight is [128, 32, 3, 3], expected [128, 64, 3, 3]"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn an_rmsnorm_unet_given_groupnorm_biases_lists_them() {
    // A GroupNorm U-Net's norms have biases; RMSNorm2d has none.
    let e = load_golden_edited("unet_unitary_rmsnorm_d2_h8", |w| {
        w.insert("bot.conv_block.1.bias".into(), tensor(&[64]));
    });
    assert!(e.contains("unexpected: bot.conv_block.1.bias"), "{e}");
}

#[test]
fn recurrent_calls_with_wrong_memory_are_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/golden/unet_convlstm_d2_h8");
    let package = ModelPackage::load(&dir).expect("golden package");
    let b = CandleBackend::load(&package, &BackendOptions::default()).expect("loads");
    let shape = BatchShape::new(1, 4, 8, 8);
    let x = vec![0.1; shape.len()];
    let mut y = vec![0.0; shape.len()];
    // [1, 32, 2, 2] twice.
    let good = vec![0.0; 256];
    let mut next = vec![0.0; 256];
    b.forward_with_memory(&x, shape, &good, &mut y, &mut next)
        .expect("right memory");
    let short = vec![0.0; 255];
    let e = b
        .forward_with_memory(&x, shape, &short, &mut y, &mut next)
        .expect_err("short memory")
        .to_string();
    assert!(
        e.contains("256 memory values") && e.contains("h_state, c_state"),
        "{e}"
    );
    let e = b
        .forward(&x, shape, &mut y)
        .expect_err("no memory")
        .to_string();
    assert!(e.contains("forward_with_memory"), "{e}");
}
