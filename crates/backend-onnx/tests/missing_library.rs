//! A missing or unusable ONNX Runtime library is one clear error, quickly.
//!
//! ort loads the library once per process, so each case re-runs this test
//! binary as a child with its own `ORT_DYLIB_PATH`: the child has never loaded
//! ONNX Runtime, whatever other tests did in the parent.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use engine_api::{BackendOptions, ModelPackage};

const CHILD: &str = "ATHERIA_ONNX_LIBRARY_CHILD";
const EXPECT: &str = "ATHERIA_ONNX_LIBRARY_EXPECT";
const TEST: &str = "unusable_libraries_are_clear_errors_in_well_under_a_second";

#[test]
fn unusable_libraries_are_clear_errors_in_well_under_a_second() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("onnx-libs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("libonnxruntime.so.txt");
    std::fs::write(&text, "not a shared library\n").unwrap();
    // Any shared library without ONNX Runtime's entry point: this test binary's own libc.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file());
    let mut cases = vec![
        (
            "/nonexistent".to_string(),
            "/nonexistent (no such file)".to_string(),
        ),
        (
            dir.display().to_string(),
            "(not a regular file)".to_string(),
        ),
        (text.display().to_string(), "cannot load: ".to_string()),
    ];
    if let Some(libc) = libc {
        cases.push((libc.to_string(), "is not ONNX Runtime".to_string()));
    }
    for (path, expect) in cases {
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture"])
            .env(CHILD, "1")
            .env(EXPECT, &expect)
            .env("ORT_DYLIB_PATH", &path)
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "ORT_DYLIB_PATH={path}: child failed:\n{stdout}\n{stderr}"
        );
        let line = stdout.lines().find(|l| l.contains("CHILD OK"));
        assert!(
            line.is_some(),
            "ORT_DYLIB_PATH={path}: child did not run:\n{stdout}\n{stderr}"
        );
        println!("{}", line.unwrap_or_default());
        assert!(
            elapsed < Duration::from_secs(5),
            "ORT_DYLIB_PATH={path}: the child took {elapsed:?} (process start included)"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn child() {
    let expect = std::env::var(EXPECT).unwrap();
    let started = Instant::now();
    let err = backend_onnx::check().expect_err("an unusable library passed check()");
    let first = started.elapsed();
    let msg = err.to_string();
    assert!(msg.contains(&expect), "expected `{expect}` in: {msg}");
    assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    assert!(msg.contains("scripts/setup-python.sh"), "{msg}");
    assert!(!msg.contains('\n'), "one line, please: {msg}");

    // Loading a model reports the same thing (model.json is read first,
    // then the library, before the onnx file is looked at).
    let dir = std::env::temp_dir().join(format!("atheria-onnx-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model.json"),
        r#"{"format":"atheria-model/1","name":"m","architecture":"custom","d_state":1,
            "update":"additive","receptive_radius":0,"files":{"onnx":"model.onnx"}}"#,
    )
    .unwrap();
    let package = ModelPackage::load(&dir).unwrap();
    let load = backend_onnx::OnnxBackend::load(&package, &BackendOptions::default());
    std::fs::remove_dir_all(&dir).unwrap();
    let Err(load_err) = load else {
        panic!("load succeeded without a usable library")
    };
    assert!(load_err.to_string().contains(&expect), "{load_err}");

    let total = started.elapsed();
    assert!(
        first < Duration::from_millis(500) && total < Duration::from_secs(1),
        "too slow: check() {first:?}, both {total:?}"
    );
    println!("CHILD OK ({first:?}): {msg}");
}
