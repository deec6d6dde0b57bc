//! Fingerprints this crate for [`plugin::ABI`](src/plugin.rs): the compiler's
//! version and a hash of the sources, so a backend library built from other
//! sources or by another compiler is refused before any Rust type crosses.

use std::env;
use std::fs;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "rustc unknown".into());
    let mut files: Vec<_> = fs::read_dir(Path::new("src"))
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    // FNV-1a over names and contents: not cryptographic, only "same sources?".
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in &files {
        let name = file.to_string_lossy().into_owned().into_bytes();
        for byte in name.into_iter().chain(fs::read(file).unwrap_or_default()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=ATHERIA_ABI_FINGERPRINT={version}; sources {hash:016x}");
}
