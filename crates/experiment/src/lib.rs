//! Atheria's experiments as Atheria saves them, read as model packages with
//! no Python present.
//!
//! Atheria's trainer writes an experiment in two places under its output
//! folder: `experiments/<name>/config.json` (the architecture, its
//! parameters and the physics settings) and
//! `training_checkpoints/<name>/*.pth` (PyTorch checkpoints holding
//! `model_state_dict`, the optimizer's state and more). This crate reads
//! both and hands back an in-memory [`ModelPackage`] (model.json and
//! safetensors weights) that every engine and the candle backend run.
//!
//! | item | what it does |
//! |---|---|
//! | [`Experiment::open`] | reads `config.json`, finds the checkpoint Atheria's loader would pick ([`pick_checkpoint`]) |
//! | [`ExperimentConfig`] | what this project uses of `config.json`: architecture, d_state, hidden channels, gamma, grid size, initial state |
//! | [`Experiment::package`] | reads the `.pth` (PyTorch's zip of pickles) and builds the package |
//! | [`Experiment::convert`] | converts the checkpoint with the project's exporter (PyTorch) into a full package for the tch and onnx backends, cached ([`conversion_cache`]) |
//! | [`architecture`] | Atheria's `MODEL_ARCHITECTURE` names to this project's architectures; the ones it cannot run are named |
//!
//! Where this crate differs from Atheria on purpose: Atheria loads weights
//! with `strict=False`, so a checkpoint that misses a layer runs with that
//! layer's random initial weights and a warning in a log; here a missing or
//! unexpected tensor is an error naming it.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use engine_api::{Architecture, Error, ModelFile, ModelPackage, ModelSpec, Result};
use serde_json::Value;
use sparse_grid::InitKind;

/// The decay when config.json has no `GAMMA_DECAY`: 0, because Atheria's
/// engine reads only the experiment's `GAMMA_DECAY` (its global 0.01 in
/// src/config.py is what the trainer copies into config.json, not a
/// fallback; python/ATHERIA_EXPERIMENTS.md).
pub const ATHERIA_DEFAULT_GAMMA: f32 = 0.0;
/// Atheria's default `GRID_SIZE_INFERENCE` (src/config.py).
pub const ATHERIA_DEFAULT_GRID: usize = 128;
/// The initial state when config.json has no `INITIAL_STATE_MODE_INFERENCE`,
/// as Atheria's engine falls back.
pub const ATHERIA_DEFAULT_INITIAL: &str = "complex_noise";

/// Maps Atheria's `MODEL_ARCHITECTURE` (its `MODEL_MAP` keys in
/// src/model_loader.py) to this project's architecture. The laws this
/// project does not run (`SNN_UNET`, Lagrangian or quantum-kernel models)
/// are an error naming them.
pub fn architecture(atheria_name: &str) -> std::result::Result<Architecture, String> {
    Ok(match atheria_name {
        "UNET" => Architecture::Unet,
        "UNET_UNITARY" => Architecture::UnetUnitary,
        "MLP" => Architecture::Mlp,
        "DEEP_QCA" => Architecture::DeepQca,
        "UNET_CONVLSTM" => Architecture::UnetConvlstm,
        "UNET_UNITARY_RMSNORM" => Architecture::UnetUnitaryRmsnorm,
        other => {
            return Err(format!(
                "architecture `{other}` is not one this project runs (it runs UNET, UNET_UNITARY, \
                 MLP, DEEP_QCA, UNET_CONVLSTM and UNET_UNITARY_RMSNORM); export it to ONNX or \
                 TorchScript as a custom package instead"
            ))
        }
    })
}

/// What this project uses of an experiment's `config.json`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ExperimentConfig {
    /// `MODEL_ARCHITECTURE`, Atheria's name (`UNET_CONVLSTM`).
    pub atheria_architecture: String,
    /// The architecture it maps to.
    pub architecture: Architecture,
    /// `MODEL_PARAMS.d_state` (or the old top-level `D_STATE`, 8 when
    /// absent, as Atheria's loader fills it).
    pub d_state: usize,
    /// `MODEL_PARAMS.hidden_channels` (or `HIDDEN_CHANNELS`, 32).
    pub hidden_channels: usize,
    /// `GAMMA_DECAY`, or Atheria's default [`ATHERIA_DEFAULT_GAMMA`].
    pub gamma: f32,
    /// `GRID_SIZE_INFERENCE`, or Atheria's default [`ATHERIA_DEFAULT_GRID`].
    pub grid_size: usize,
    /// `INITIAL_STATE_MODE_INFERENCE`, or [`ATHERIA_DEFAULT_INITIAL`].
    pub initial_mode: String,
    /// The generated field of that mode. Atheria draws it from torch's
    /// global generator, which no one can reproduce; this project draws
    /// the same distribution from its own seeded generator.
    pub initial_kind: InitKind,
}

impl ExperimentConfig {
    /// Parses config.json text; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let bad = |m: String| Error::model(origin, m);
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("config.json must hold a JSON object".into()))?;
        let atheria_architecture = object
            .get("MODEL_ARCHITECTURE")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    "config.json has no string `MODEL_ARCHITECTURE`: not an Atheria experiment"
                        .into(),
                )
            })?
            .to_string();
        let architecture = architecture(&atheria_architecture).map_err(bad)?;
        // Atheria's loader (src/utils.py, load_experiment_config) fills
        // MODEL_PARAMS from the old top-level keys when it is missing.
        let params = object.get("MODEL_PARAMS").and_then(Value::as_object);
        let count = |key: &str, old: &str, default: usize| -> Result<usize> {
            let v = params
                .and_then(|p| p.get(key))
                .or_else(|| object.get(old).filter(|_| params.is_none()));
            match v {
                None if params.is_none() => Ok(default),
                None => Err(bad(format!("config.json: MODEL_PARAMS has no `{key}`"))),
                Some(v) => positive(v).ok_or_else(|| {
                    bad(format!(
                        "config.json: `{key}` is {v}, not a positive whole number"
                    ))
                }),
            }
        };
        let d_state = count("d_state", "D_STATE", 8)?;
        let hidden_channels = count("hidden_channels", "HIDDEN_CHANNELS", 32)?;
        let gamma = match object.get("GAMMA_DECAY") {
            None | Some(Value::Null) => ATHERIA_DEFAULT_GAMMA,
            Some(v) => v
                .as_f64()
                .filter(|g| g.is_finite() && *g >= 0.0)
                .map(|g| g as f32)
                .ok_or_else(|| {
                    bad(format!(
                        "config.json: GAMMA_DECAY is {v}, not a number >= 0"
                    ))
                })?,
        };
        let grid_size = match object.get("GRID_SIZE_INFERENCE") {
            None | Some(Value::Null) => ATHERIA_DEFAULT_GRID,
            Some(v) => positive(v).ok_or_else(|| {
                bad(format!(
                    "config.json: GRID_SIZE_INFERENCE is {v}, not a positive whole number"
                ))
            })?,
        };
        let initial_mode = match object.get("INITIAL_STATE_MODE_INFERENCE") {
            None | Some(Value::Null) => ATHERIA_DEFAULT_INITIAL.to_string(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| {
                    bad(format!(
                        "config.json: INITIAL_STATE_MODE_INFERENCE is {v}, not a string"
                    ))
                })?
                .to_string(),
        };
        // Atheria turns an unknown mode into an all-zero field, a universe
        // with nothing in it; here it is an error naming the mode.
        let initial_kind = match initial_mode.as_str() {
            "complex_noise" | "random" | "zeros" => initial_mode.parse().map_err(|e: Error| bad(e.to_string()))?,
            other => {
                return Err(bad(format!(
                    "config.json: INITIAL_STATE_MODE_INFERENCE `{other}` is not one this project draws \
                     (complex_noise, random, zeros); start from a state file instead"
                )))
            }
        };
        Ok(Self {
            atheria_architecture,
            architecture,
            d_state,
            hidden_channels,
            gamma,
            grid_size,
            initial_mode,
            initial_kind,
        })
    }
}

/// A JSON number that is a whole number of at least 1.
fn positive(v: &Value) -> Option<usize> {
    v.as_u64()
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
}

/// An experiment folder: its config and the checkpoint to run.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The folder holding config.json.
    pub dir: PathBuf,
    /// The experiment's name: the folder's name, as Atheria names them.
    pub name: String,
    /// What config.json says.
    pub config: ExperimentConfig,
    /// The checkpoint [`pick_checkpoint`] chose (or the one given).
    pub checkpoint: PathBuf,
}

impl Experiment {
    /// Opens the experiment in `dir` (Atheria's
    /// `output/experiments/<name>`): reads its config.json and picks its
    /// checkpoint with Atheria's rule ([`pick_checkpoint`]) from the first
    /// of these folders that holds `.pth` files: Atheria's
    /// `output/training_checkpoints/<name>` (two levels up from `dir`),
    /// `dir/checkpoints`, `dir` itself.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = dir.join("config.json");
        let text = match std::fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::model(
                &dir,
                "no config.json here: an Atheria experiment folder is output/experiments/<name>, \
                     which holds config.json",
            )),
            Err(e) => return Err(Error::io(&config_path, e)),
        };
        let config = ExperimentConfig::from_json(&text, &config_path)?;
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
        let places = checkpoint_folders(&dir, &name);
        let mut checkpoint = None;
        for place in &places {
            if let Some(found) = pick_checkpoint(place)? {
                checkpoint = Some(found);
                break;
            }
        }
        let checkpoint = checkpoint.ok_or_else(|| {
            let list: Vec<_> = places.iter().map(|p| p.display().to_string()).collect();
            Error::model(
                &dir,
                format!(
                    "no checkpoint (.pth) for experiment `{name}`: looked in {}",
                    list.join(", ")
                ),
            )
        })?;
        tracing::info!(experiment = %name, checkpoint = %checkpoint.display(), "checkpoint picked");
        Ok(Self {
            dir,
            name,
            config,
            checkpoint,
        })
    }

    /// The same experiment run from `checkpoint` instead of the picked one.
    pub fn with_checkpoint(mut self, checkpoint: impl Into<PathBuf>) -> Self {
        self.checkpoint = checkpoint.into();
        self
    }

    /// The model description: the architecture with config.json's sizes,
    /// as the exporter writes it ([`ModelSpec::for_architecture`]).
    pub fn spec(&self) -> Result<ModelSpec> {
        let c = &self.config;
        let mut spec = ModelSpec::for_architecture(
            self.name.clone(),
            c.architecture,
            c.d_state,
            Some(c.hidden_channels),
        )
        .map_err(|m| Error::model(self.dir.join("config.json"), m))?;
        spec.files.safetensors = Some("model.safetensors".into());
        Ok(spec)
    }

    /// Reads the checkpoint and returns the package: model.json from the
    /// config and safetensors weights from the checkpoint's
    /// `model_state_dict` (or `state_dict`, or the file itself when it is a
    /// plain state dict), with the `_orig_mod.` prefix of a compiled model
    /// removed as Atheria's loader removes it. Errors name the checkpoint.
    pub fn package(&self) -> Result<ModelPackage> {
        let spec = self.spec()?;
        let weights = read_state_dict(&self.checkpoint)?;
        let bytes = safetensors_bytes(&weights).map_err(|m| Error::model(&self.checkpoint, m))?;
        Ok(
            ModelPackage::from_bytes(spec, [(ModelFile::Safetensors, bytes)])?
                .with_origin(&self.checkpoint),
        )
    }
}

impl Experiment {
    /// Converts the checkpoint into a full model package (safetensors,
    /// TorchScript and ONNX, each verified against PyTorch) with this
    /// project's exporter (`python/export.py`) run by `python`, for the tch
    /// and ONNX Runtime backends. The package goes to a folder under
    /// `cache` named after the experiment, the checkpoint's path, size and
    /// modification time and the law config.json describes, and is reused
    /// while those stay the same.
    /// Returns the package's folder.
    pub fn export_package(&self, python: &Path, exporter: &Path, cache: &Path) -> Result<PathBuf> {
        let meta =
            std::fs::metadata(&self.checkpoint).map_err(|e| Error::io(&self.checkpoint, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        // What the package depends on: the checkpoint (path, size, time)
        // and the law config.json describes.
        let law = &self.config;
        let key = fnv1a(
            format!(
                "{}|{}|{modified}|{}|{}|{}",
                self.checkpoint.display(),
                meta.len(),
                law.architecture,
                law.d_state,
                law.hidden_channels
            )
            .as_bytes(),
        );
        let out = cache.join(format!("{}-{key:016x}", self.name));
        if out.join("model.json").is_file() && out.join("model.onnx").is_file() {
            tracing::info!(package = %out.display(), "converted checkpoint reused");
            return Ok(out);
        }
        std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
        // Written aside and renamed, so a killed conversion leaves no half package.
        let partial = cache.join(format!(".{}-{key:016x}.{}", self.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let c = &self.config;
        tracing::info!(exporter = %exporter.display(), "converting the checkpoint with PyTorch");
        let output = std::process::Command::new(python)
            .arg(exporter)
            .args(["--arch", c.architecture.as_str()])
            .args(["--d-state", &c.d_state.to_string()])
            .args(["--hidden", &c.hidden_channels.to_string()])
            .arg("--checkpoint")
            .arg(&self.checkpoint)
            .args(["--name", &self.name])
            .arg("--out")
            .arg(&partial)
            .output()
            .map_err(|e| {
                Error::model(
                    &self.checkpoint,
                    format!(
                        "cannot run {} to convert the checkpoint ({e}): the tch and onnx backends need the \
                         project's Python environment (scripts/setup-python.sh); --backend candle runs it without Python",
                        python.display()
                    ),
                )
            })?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&partial);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(Error::model(
                &self.checkpoint,
                format!("the exporter could not convert it: {last}"),
            ));
        }
        let _ = std::fs::remove_dir_all(&out);
        std::fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
        Ok(out)
    }
}

impl Experiment {
    /// [`Experiment::export_package`] with the defaults: [`exporter`] and
    /// [`conversion_cache`], run by `python` (an interpreter with torch:
    /// [`project_python`] for a program, `sys.executable` from Python).
    pub fn convert(&self, python: &Path) -> Result<PathBuf> {
        let exporter = exporter();
        if !exporter.is_file() {
            return Err(Error::model(
                &self.checkpoint,
                format!(
                    "the tch and onnx backends need the checkpoint converted by PyTorch, and the exporter {} \
                     is not here: set ATHERIA_EXPORTER to python/export.py of an Atheria Native checkout, \
                     or use the candle backend, which needs no Python",
                    exporter.display()
                ),
            ));
        }
        self.export_package(python, &exporter, &conversion_cache())
    }
}

/// The source tree this crate was built from (the exporter and the
/// project's Python environment live there).
fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The exporter: `ATHERIA_EXPORTER`, or `python/export.py` of the source
/// tree this program was built from.
pub fn exporter() -> PathBuf {
    std::env::var_os("ATHERIA_EXPORTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| source_root().join("python/export.py"))
}

/// The project's Python (with torch): `ATHERIA_PYTHON`, or the source
/// tree's `.venv/bin/python` (scripts/setup-python.sh makes it).
pub fn project_python() -> PathBuf {
    std::env::var_os("ATHERIA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| source_root().join(".venv/bin/python"))
}

/// Where converted checkpoints are kept: `$ATHERIA_CACHE/experiments`,
/// else `~/.cache/atheria/experiments`.
pub fn conversion_cache() -> PathBuf {
    std::env::var_os("ATHERIA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/atheria")))
        .unwrap_or_else(std::env::temp_dir)
        .join("experiments")
}

/// A 64-bit FNV-1a hash: a stable name for a converted checkpoint.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where an experiment's checkpoints may be, in the order they are searched.
fn checkpoint_folders(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if let Some(output) = abs.parent().and_then(Path::parent) {
        out.push(output.join("training_checkpoints").join(name));
    }
    out.push(dir.join("checkpoints"));
    out.push(dir.to_path_buf());
    out
}

/// The episode number Atheria's `get_latest_checkpoint` (src/utils.py)
/// reads from a checkpoint's file name: the last `_`-separated part before
/// the first `.`, with `ep` removed, as an integer; 0 when that is not a
/// number (`best_model.pth`).
pub fn episode_of(file_name: &str) -> i64 {
    let last = file_name.rsplit('_').next().unwrap_or(file_name);
    let stem = last.split('.').next().unwrap_or(last);
    stem.replace("ep", "").trim().parse().unwrap_or(0)
}

/// The checkpoint Atheria's loader picks in `folder`: of the files ending
/// in `.pth`, the one with the largest episode number ([`episode_of`]).
/// Where several share it (Atheria's `max` keeps the first in directory
/// order, which the file system decides) the first in name order is taken,
/// so the choice does not depend on the file system. `None` when the folder
/// does not exist or holds no `.pth` file.
pub fn pick_checkpoint(folder: &Path) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(Error::io(folder, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_file() || t.is_symlink())
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pth"))
        .collect();
    names.sort();
    let mut best: Option<(i64, &String)> = None;
    for name in &names {
        let ep = episode_of(name);
        if best.is_none_or(|(b, _)| ep > b) {
            best = Some((ep, name));
        }
    }
    Ok(best.map(|(_, n)| folder.join(n)))
}

/// A state dict's tensors as f32: name, shape, values.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Reads the model's state dict out of a PyTorch checkpoint (zip of
/// pickles), as f32, with the `_orig_mod.` prefix removed.
pub fn read_state_dict(path: &Path) -> Result<Tensors> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::io(path, e));
    }
    let not_a_checkpoint = |e: candle_core::Error| {
        if let Some(root) = misread_archive_root(path) {
            return Error::model(
                path,
                format!(
                    "a PyTorch checkpoint the zip reader under candle (zip 9.8) misreads: it was saved under a \
                     name of 21 characters (its archive folder is `{root}`), which places a directory entry where \
                     that reader looks for the directory's start; load and re-save it under a name of another \
                     length (torch.save(torch.load(p, weights_only=False), \"model.pth\")) and use that file"
                ),
            );
        }
        Error::model(
            path,
            format!(
                "not a readable PyTorch checkpoint (truncated, or not written by torch.save): {e}"
            ),
        )
    };
    // Atheria's load_weights: `model_state_dict`, else `state_dict`, else
    // the file is the state dict itself.
    let mut pth = None;
    for key in [Some("model_state_dict"), Some("state_dict"), None] {
        match candle_core::pickle::PthTensors::new(path, key) {
            Ok(p) if !p.tensor_infos().is_empty() => {
                pth = Some(p);
                break;
            }
            Ok(_) => continue,
            Err(e) if e.to_string().contains("not found") => continue,
            Err(e) => return Err(not_a_checkpoint(e)),
        }
    }
    let pth = pth.ok_or_else(|| {
        Error::model(
            path,
            "the checkpoint holds no tensors under `model_state_dict` or `state_dict`, nor is it a state dict",
        )
    })?;
    let mut names: Vec<&String> = pth.tensor_infos().keys().collect();
    names.sort();
    let compiled = names.iter().any(|n| n.starts_with("_orig_mod."));
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let tensor = pth
            .get(name)
            .map_err(not_a_checkpoint)?
            .ok_or_else(|| Error::model(path, format!("tensor `{name}` vanished while reading")))?;
        let shape = tensor.dims().to_vec();
        let values = tensor
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::model(path, format!("tensor `{name}`: {e}")))?;
        let name = if compiled {
            name.replacen("_orig_mod.", "", 1)
        } else {
            name.clone()
        };
        out.push((name, shape, values));
    }
    Ok(out)
}

/// The archive folder of a PyTorch checkpoint that the `zip` crate (9.8)
/// misreads, or None.
///
/// torch.save always writes ZIP64 end records (76 bytes) between the central
/// directory and the end record, and names every entry `<stem>/...` after the
/// file it was saved as. The `zip` crate, when the 32-bit end record does not
/// ask for ZIP64, takes "end record minus directory size" as the directory's
/// start if a directory entry sits there. The first entry is `<stem>/data.pkl`,
/// 46 + len bytes long: with a 21-character stem it is exactly 76 bytes, so the
/// second entry sits there, the reader assumes 76 bytes of prepended data and
/// fails. Python and libtorch read such files; only the stem's length matters.
fn misread_archive_root(path: &Path) -> Option<String> {
    use std::io::Read;
    // The first local header: signature, fixed fields, then the name.
    let mut head = [0u8; 30 + 64];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    if n < 30 || head[..4] != *b"PK\x03\x04" {
        return None;
    }
    let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
    let name = std::str::from_utf8(head.get(30..30 + name_len)?).ok()?;
    let root = name.strip_suffix("/data.pkl")?;
    (46 + name.len() == 76).then(|| root.to_string())
}

/// The tensors as safetensors bytes.
fn safetensors_bytes(tensors: &Tensors) -> std::result::Result<Vec<u8>, String> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        views.push((
            name.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| e.to_string())?,
        ));
    }
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_numbers_follow_atheria_rule() {
        assert_eq!(episode_of("checkpoint_ep120.pth"), 120);
        assert_eq!(episode_of("checkpoint_7.pth"), 7);
        assert_eq!(episode_of("best_model.pth"), 0);
        assert_eq!(episode_of("weird.pth"), 0);
    }

    #[test]
    fn the_largest_episode_is_picked_and_ties_go_by_name() {
        let dir = std::env::temp_dir().join(format!("atheria-exp-pick-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [
            "best_model.pth",
            "checkpoint_ep9.pth",
            "checkpoint_ep10.pth",
            "notes.txt",
        ] {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
        assert_eq!(
            pick_checkpoint(&dir).unwrap().unwrap(),
            dir.join("checkpoint_ep10.pth")
        );
        std::fs::remove_file(dir.join("checkpoint_ep9.pth")).unwrap();
        std::fs::remove_file(dir.join("checkpoint_ep10.pth")).unwrap();
        std::fs::write(dir.join("a_model.pth"), b"x").unwrap();
        assert_eq!(
            pick_checkpoint(&dir).unwrap().unwrap(),
            dir.join("a_model.pth")
        );
        assert!(pick_checkpoint(&dir.join("missing")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_reads_atheria_keys_and_defaults() {
        let origin = Path::new("config.json");
        let c = ExperimentConfig::from_json(
            r#"{"MODEL_ARCHITECTURE": "UNET_CONVLSTM", "MODEL_PARAMS": {"d_state": 2, "hidden_channels": 4, "d_memory": 2},
                "GAMMA_DECAY": 0.05}"#,
            origin,
        )
        .unwrap();
        assert_eq!(c.architecture, Architecture::UnetConvlstm);
        assert_eq!((c.d_state, c.hidden_channels), (2, 4));
        assert_eq!(c.gamma, 0.05);
        assert_eq!(c.grid_size, ATHERIA_DEFAULT_GRID);
        assert_eq!(c.initial_mode, "complex_noise");
        assert_eq!(c.initial_kind, InitKind::ComplexNoise);
        let old =
            ExperimentConfig::from_json(r#"{"MODEL_ARCHITECTURE": "UNET", "D_STATE": 4}"#, origin)
                .unwrap();
        assert_eq!((old.d_state, old.hidden_channels), (4, 32));
    }

    #[test]
    fn laws_this_project_cannot_run_are_named() {
        for (text, what) in [
            (r#"{"MODEL_ARCHITECTURE": "SNN_UNET"}"#, "SNN_UNET"),
            (r#"{"MODEL_ARCHITECTURE": "LAGRANGIAN"}"#, "LAGRANGIAN"),
            (r#"{"MODEL_PARAMS": {}}"#, "MODEL_ARCHITECTURE"),
            (
                r#"{"MODEL_ARCHITECTURE": "MLP", "MODEL_PARAMS": {"d_state": -1}}"#,
                "d_state",
            ),
            (
                r#"{"MODEL_ARCHITECTURE": "MLP", "INITIAL_STATE_MODE_INFERENCE": "ionq"}"#,
                "ionq",
            ),
        ] {
            let err = ExperimentConfig::from_json(text, Path::new("config.json"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
