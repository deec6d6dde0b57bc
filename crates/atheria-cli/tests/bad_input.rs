//! Bad input, as a user would hand it to `atheria run`: each case is one
//! `error:` line naming the problem, a non-zero exit and no panic.

mod common;

use std::path::Path;

use common::*;

/// Runs `atheria run` with `args` and checks the failure is one clear line
/// mentioning every string in `expect`.
fn fails_cleanly(args: &[&std::ffi::OsStr], expect: &[&str]) {
    let out = atheria()
        .arg("run")
        .args(args)
        .args(["--steps", "1", "--grid", "8"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {args:?}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<_> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "not one error line for {args:?}: {err}");
    for e in expect {
        assert!(
            lines[0].contains(e),
            "`{}` does not mention `{e}`",
            lines[0]
        );
    }
}

/// A copy of the conv3x3_d4 package with `edit` applied to its model.json.
fn package_with(name: &str, edit: impl Fn(&str) -> String) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let src = golden("conv3x3_d4");
    for f in ["model.safetensors", "model.pt", "model.onnx"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let json = std::fs::read_to_string(src.join("model.json")).unwrap();
    std::fs::write(dir.join("model.json"), edit(&json)).unwrap();
    dir
}

fn os(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

/// `atheria run --backend KIND --model DIR` fails cleanly, naming `expect`.
fn package_fails(kind: atheria::BackendKind, dir: &Path, expect: &[&str]) {
    fails_cleanly(
        &[
            os(Path::new("--backend")),
            kind.name().as_ref(),
            os(Path::new("--model")),
            os(dir),
        ],
        expect,
    );
}

/// A named edit of model.json and the words its error must contain.
type JsonCase = (&'static str, fn(&str) -> String, &'static [&'static str]);

#[test]
fn broken_model_json_is_named() {
    let cases: [JsonCase; 7] = [
        (
            "unknown-field",
            |j| j.replacen('{', "{\"colour\": \"blue\",", 1),
            &["colour"],
        ),
        (
            "missing-field",
            |j| j.replace("\"update\": \"additive\",", ""),
            &["update"],
        ),
        (
            "wrong-type",
            |j| j.replace("\"d_state\": 4", "\"d_state\": \"four\""),
            &["model.json"],
        ),
        (
            "unknown-arch",
            |j| j.replace("\"conv3x3\"", "\"resnet\""),
            &["resnet"],
        ),
        (
            "unknown-rule",
            |j| j.replace("\"additive\"", "\"sideways\""),
            &["sideways"],
        ),
        ("empty", |_| String::new(), &["model.json"]),
        (
            "truncated",
            |j| j[..j.len() / 2].to_string(),
            &["model.json"],
        ),
    ];
    for (name, edit, expect) in cases {
        let dir = package_with(name, edit);
        for kind in backends() {
            package_fails(kind, &dir, expect);
        }
    }
}

#[test]
fn missing_and_corrupt_weight_files_are_named() {
    for kind in backends() {
        let file = match kind {
            atheria::BackendKind::Candle => "model.safetensors",
            atheria::BackendKind::Tch => "model.pt",
            atheria::BackendKind::Onnx => "model.onnx",
        };
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("garbage", b"this is not a model at all".to_vec()),
        ] {
            let dir = package_with(&format!("weights-{kind}-{name}"), |j| j.to_string());
            std::fs::write(dir.join(file), bytes).unwrap();
            package_fails(kind, &dir, &[]);
        }
        let dir = package_with(&format!("weights-{kind}-truncated"), |j| j.to_string());
        let full = std::fs::read(golden("conv3x3_d4").join(file)).unwrap();
        std::fs::write(dir.join(file), &full[..full.len() / 2]).unwrap();
        package_fails(kind, &dir, &[]);
        let dir = package_with(&format!("weights-{kind}-missing"), |j| j.to_string());
        std::fs::remove_file(dir.join(file)).unwrap();
        package_fails(kind, &dir, &[file]);
        // A file of another format under the expected name.
        let dir = package_with(&format!("weights-{kind}-swapped"), |j| j.to_string());
        let other = if file == "model.onnx" {
            "model.pt"
        } else {
            "model.onnx"
        };
        std::fs::copy(golden("conv3x3_d4").join(other), dir.join(file)).unwrap();
        package_fails(kind, &dir, &[]);
    }
}

#[test]
fn empty_truncated_and_corrupt_state_files_are_named() {
    let dir = temp_dir("bad-states");
    let good = std::fs::read(golden("conv3x3_d4").join("initial.safetensors")).unwrap();
    let mut flipped = good.clone();
    flipped[20] ^= 0xff;
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 7].to_vec()),
        ("flipped", flipped),
    ] {
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        fails_cleanly(
            &[
                os(Path::new("--model")),
                os(&golden("conv3x3_d4")),
                os(Path::new("--init")),
                os(&path),
            ],
            &[name_of(&path)],
        );
    }
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}
