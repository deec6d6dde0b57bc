//! The experiment fixture written the way Atheria's trainer lays out a run
//! (python/make_experiment_fixture.py, python/ATHERIA_EXPERIMENTS.md).

use std::path::{Path, PathBuf};

use atheria_experiment::{read_state_dict, Experiment};
use engine_api::{Architecture, ModelFile};

fn output() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/atheria_output")
}

fn experiment_dir() -> PathBuf {
    output().join("experiments/convlstm_d2_h2_g16")
}

#[test]
fn the_checkpoint_atheria_would_load_is_picked_from_its_training_folder() {
    let e = Experiment::open(experiment_dir()).unwrap();
    assert_eq!(e.name, "convlstm_d2_h2_g16");
    // checkpoint_ep119 beats checkpoint_ep99 (numbers, not names) and the
    // episode-less best_model.pth and last_checkpoint.pth.
    assert_eq!(
        e.checkpoint.file_name().unwrap(),
        "checkpoint_ep119.pth",
        "{}",
        e.checkpoint.display()
    );
    assert!(e.checkpoint.starts_with(
        output()
            .canonicalize()
            .unwrap()
            .join("training_checkpoints")
    ));
    assert_eq!(e.config.architecture, Architecture::UnetConvlstm);
    assert_eq!((e.config.d_state, e.config.hidden_channels), (2, 2));
    assert_eq!(e.config.gamma, 0.02);
}

#[test]
fn a_training_checkpoint_reads_without_python_and_loses_its_compile_prefix() {
    let e = Experiment::open(experiment_dir()).unwrap();
    let tensors = read_state_dict(&e.checkpoint).unwrap();
    let names: Vec<_> = tensors.iter().map(|t| t.0.as_str()).collect();
    assert!(names.contains(&"conv_gates.weight"), "{names:?}");
    assert!(
        names.iter().all(|n| !n.starts_with("_orig_mod.")),
        "{names:?}"
    );
    // The optimizer's state (also tensors) is not mistaken for weights.
    assert!(names.iter().all(|n| !n.contains("exp_avg")), "{names:?}");
    let gates = tensors.iter().find(|t| t.0 == "conv_gates.weight").unwrap();
    // 4 gates of 4h = 8 channels over cat(x3, h): 16 in, 32 out, 3 x 3.
    assert_eq!(gates.1, [32, 16, 3, 3]);

    let package = e.package().unwrap();
    assert!(package.has(ModelFile::Safetensors));
    let spec = package.spec();
    assert_eq!(spec.memory.len(), 2);
    assert_eq!((spec.memory[0].channels, spec.memory[0].stride), (8, 4));
}

#[test]
fn missing_truncated_and_foreign_checkpoints_are_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("atheria-exp-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exp = dir.join("experiments/x");
    std::fs::create_dir_all(&exp).unwrap();
    std::fs::copy(
        experiment_dir().join("config.json"),
        exp.join("config.json"),
    )
    .unwrap();

    // No checkpoint anywhere: the places searched are named.
    let err = Experiment::open(&exp).unwrap_err().to_string();
    assert!(
        err.contains("no checkpoint") && err.contains("training_checkpoints"),
        "{err}"
    );

    // A truncated checkpoint.
    let ckpts = dir.join("training_checkpoints/x");
    std::fs::create_dir_all(&ckpts).unwrap();
    let good = std::fs::read(
        output().join("training_checkpoints/convlstm_d2_h2_g16/checkpoint_ep119.pth"),
    )
    .unwrap();
    std::fs::write(ckpts.join("checkpoint_ep5.pth"), &good[..good.len() / 2]).unwrap();
    let e = Experiment::open(&exp).unwrap();
    let err = e.package().unwrap_err().to_string();
    assert!(
        err.contains("checkpoint_ep5.pth") && err.contains("not a readable PyTorch checkpoint"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");

    // Not a checkpoint at all.
    std::fs::write(ckpts.join("checkpoint_ep6.pth"), b"hello").unwrap();
    let err = Experiment::open(&exp)
        .unwrap()
        .package()
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoint_ep6.pth"), "{err}");

    // No config.json.
    let err = Experiment::open(&dir).unwrap_err().to_string();
    assert!(err.contains("no config.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_the_state_dict_itself_reads_the_same_weights() {
    // Atheria's loader takes `model_state_dict`, else `state_dict`, else
    // the whole file; this one is `torch.save(model.state_dict())`.
    let plain = read_state_dict(&output().join("plain_state_dict/model_only.pth")).unwrap();
    let e = Experiment::open(experiment_dir()).unwrap();
    let training = read_state_dict(&e.checkpoint).unwrap();
    assert_eq!(plain.len(), training.len());
    assert_eq!(plain, training, "the two files hold the same weights");
}

#[test]
fn a_checkpoint_the_zip_reader_misreads_says_how_to_re_save_it() {
    // tests/fixtures/checkpoint_unet_d2_h8.pt was saved under a 21-character
    // stem, the one length the zip crate under candle misreads (see
    // misread_archive_root). Python reads it; we must say what to do.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/checkpoint_unet_d2_h8.pt");
    let err = read_state_dict(&fixture).unwrap_err().to_string();
    assert!(
        err.contains("checkpoint_unet_d2_h8")
            && err.contains("21 characters")
            && err.contains("re-save"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}
