//! The header of a safetensors file, read alone.
//!
//! A safetensors file is an 8-byte little-endian length `n`, `n` bytes of
//! JSON (each tensor's dtype, shape and byte range, and `__metadata__`),
//! then the data. Reading the header first lets a reader refuse a file by
//! its first bytes (a length that does not fit the file, JSON that is not
//! there) or by the sizes it declares (more cells than the limit) before it
//! reads, or allocates, the data.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

/// The largest header accepted: safetensors' own limit (100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A safetensors header: its JSON object and the file's length.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    /// The header's JSON object (tensors by name, and `__metadata__`).
    pub json: Map<String, Value>,
    /// The whole file's length in bytes.
    pub file_len: u64,
}

impl SafetensorsHeader {
    /// The declared shape of tensor `name`, if the header has it.
    pub fn shape(&self, name: &str) -> Option<Vec<u64>> {
        self.json
            .get(name)?
            .get("shape")?
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect()
    }
}

/// Reads the header of the safetensors file at `path` (8 + n bytes, never
/// the data); the error is a message for the caller's error naming the file.
pub fn safetensors_header(path: &Path) -> Result<SafetensorsHeader, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    read_header(&mut file, file_len)
}

/// Reads the header of a safetensors file from `file`, positioned at its
/// start, whose length is `file_len` (8 + n bytes are read, never the
/// data): for a caller that keeps the file open to read the rest.
pub fn read_header(file: &mut impl Read, file_len: u64) -> Result<SafetensorsHeader, String> {
    if file_len == 0 {
        return Err("the file is empty".into());
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| {
        format!("not a safetensors file (truncated or corrupt): {file_len} bytes, shorter than its 8-byte header length")
    })?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || n > file_len - 8 {
        return Err(format!(
            "not a safetensors file (truncated or corrupt): its first 8 bytes declare a \
             {n}-byte header, which does not fit the {file_len}-byte file"
        ));
    }
    let mut text = vec![0u8; n as usize];
    file.read_exact(&mut text).map_err(|e| {
        format!("not a safetensors file (truncated or corrupt): its header cannot be read: {e}")
    })?;
    let json: Map<String, Value> = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "not a safetensors file (truncated or corrupt): its header is not a JSON object: {e}"
        )
    })?;
    Ok(SafetensorsHeader { json, file_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("atheria-header-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_header_is_read_without_the_data() {
        let json =
            br#"{"psi_real":{"dtype":"F32","shape":[6000,6000,2],"data_offsets":[0,288000000]}}"#;
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json);
        bytes.extend_from_slice(&[0; 16]); // far less data than declared: never read
        let h = safetensors_header(&file("big.safetensors", &bytes)).unwrap();
        assert_eq!(h.shape("psi_real"), Some(vec![6000, 6000, 2]));
        assert_eq!(h.shape("psi_imag"), None);
        assert_eq!(h.file_len, bytes.len() as u64);
    }

    #[test]
    fn first_bytes_refuse_what_is_not_safetensors() {
        for (name, bytes, words) in [
            ("empty", vec![], "empty"),
            ("short", vec![1, 2, 3], "shorter than"),
            ("zeros-len", vec![0; 64], "not a JSON object"),
            (
                "huge-len",
                [u64::MAX.to_le_bytes().to_vec(), vec![0; 64]].concat(),
                "does not fit",
            ),
            (
                "past-end",
                [100u64.to_le_bytes().to_vec(), b"{}".to_vec()].concat(),
                "does not fit",
            ),
            (
                "not-json",
                [4u64.to_le_bytes().to_vec(), b"abcd".to_vec()].concat(),
                "not a JSON object",
            ),
        ] {
            let e = safetensors_header(&file(name, &bytes)).unwrap_err();
            assert!(e.contains(words), "{name}: {e}");
        }
    }
}
