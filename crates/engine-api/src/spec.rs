use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The `format` value every `model.json` carries.
pub const MODEL_FORMAT: &str = "atheria-model/1";

/// Upper bound on `d_state`: far above any trained law, low enough that a typo
/// cannot make an engine allocate terabytes before it notices.
const MAX_D_STATE: usize = 4096;

/// The network a model package holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Architecture {
    /// One 3x3 convolution 2D -> 2D with bias (the seed's benchmark model).
    Conv3x3,
    /// Per-cell 1x1 convolutions 2D -> h -> h -> 2D with ELU between.
    Mlp,
    /// A fixed neighbour-sum depthwise 3x3 conv then a per-cell MLP.
    DeepQca,
    /// A two-level U-Net (global: depends on the whole field).
    Unet,
    /// The U-Net with the unitary update rule.
    UnetUnitary,
    /// Atheria's `UNetConvLSTM`: the U-Net with a ConvLSTM at its bottleneck,
    /// a recurrent law whose memory (`h_state`, `c_state`) is carried from
    /// step to step.
    UnetConvlstm,
    /// Atheria's `UNetUnitaryRMSNorm`: the U-Net with RMSNorm in place of
    /// GroupNorm. Despite its name Atheria's engine adds its output (the
    /// unitary multiply is applied to the class `UNetUnitary` only).
    UnetUnitaryRmsnorm,
    /// Anything else, runnable only from TorchScript or ONNX files.
    Custom,
}

impl Architecture {
    /// Every architecture, in the order the docs list them.
    pub const ALL: [Architecture; 8] = [
        Architecture::Conv3x3,
        Architecture::Mlp,
        Architecture::DeepQca,
        Architecture::Unet,
        Architecture::UnetUnitary,
        Architecture::UnetConvlstm,
        Architecture::UnetUnitaryRmsnorm,
        Architecture::Custom,
    ];

    /// The name used in model.json and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Conv3x3 => "conv3x3",
            Architecture::Mlp => "mlp",
            Architecture::DeepQca => "deep_qca",
            Architecture::Unet => "unet",
            Architecture::UnetUnitary => "unet_unitary",
            Architecture::UnetConvlstm => "unet_convlstm",
            Architecture::UnetUnitaryRmsnorm => "unet_unitary_rmsnorm",
            Architecture::Custom => "custom",
        }
    }

    /// The receptive radius the architecture implies, if it is fixed by the
    /// architecture: `Some(Some(r))` for local laws, `Some(None)` for global
    /// ones, `None` when the package decides (custom).
    pub fn implied_radius(self) -> Option<Option<usize>> {
        match self {
            Architecture::Conv3x3 | Architecture::DeepQca => Some(Some(1)),
            Architecture::Mlp => Some(Some(0)),
            Architecture::Unet
            | Architecture::UnetUnitary
            | Architecture::UnetConvlstm
            | Architecture::UnetUnitaryRmsnorm => Some(None),
            Architecture::Custom => None,
        }
    }

    /// True for the two-level U-Nets (they pool twice: sizes must be
    /// multiples of 4).
    pub fn is_unet(self) -> bool {
        matches!(
            self,
            Architecture::Unet
                | Architecture::UnetUnitary
                | Architecture::UnetConvlstm
                | Architecture::UnetUnitaryRmsnorm
        )
    }

    /// The memory the architecture implies for `hidden` channels: `Some`
    /// list (empty for a law without memory), or `None` when the package
    /// decides (custom). `unet_convlstm` keeps `h_state` and `c_state`, each
    /// `4 * hidden` channels at the bottleneck's quarter resolution, as
    /// Atheria's engine keeps them.
    pub fn implied_memory(self, hidden: Option<usize>) -> Option<Vec<MemoryTensor>> {
        match self {
            Architecture::Custom => None,
            Architecture::UnetConvlstm => {
                let channels = 4 * hidden.unwrap_or(0);
                Some(vec![
                    MemoryTensor::new("h_state", channels, 4),
                    MemoryTensor::new("c_state", channels, 4),
                ])
            }
            _ => Some(Vec::new()),
        }
    }

    /// True when the architecture has a `hidden_channels` parameter.
    pub fn has_hidden(self) -> bool {
        matches!(self, Architecture::Mlp | Architecture::DeepQca) || self.is_unet()
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Architecture {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Architecture::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Architecture::ALL.iter().map(|a| a.as_str()).collect();
                Error::InvalidArgument(format!(
                    "unknown architecture `{s}`: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// How a model's output becomes the change of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpdateRule {
    /// delta = M(x).
    Additive,
    /// delta = M(x) * psi (complex multiply per cell and channel).
    Unitary,
}

impl fmt::Display for UpdateRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpdateRule::Additive => "additive",
            UpdateRule::Unitary => "unitary",
        })
    }
}

/// One tensor of a recurrent law's memory: what the model reads beside the
/// field and writes back for the next step (for `unet_convlstm`, the
/// ConvLSTM's `h_state` and `c_state`).
///
/// For a batch of shape `[B, 2D, H, W]` the tensor is f32
/// `[B, channels, H / stride, W / stride]`. A model's tensors travel
/// together as one buffer, one after another in the order model.json lists
/// them ([`ModelSpec::memory_len`]), and start as zeros, as in Atheria.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryTensor {
    /// The tensor's name: the ONNX input (the output is `<name>_next`), the
    /// TorchScript argument and the state file's tensor.
    pub name: String,
    /// Channels per cell of the reduced grid.
    pub channels: usize,
    /// The field's height and width are divided by this (a divisor of the
    /// model's `spatial_multiple`).
    pub stride: usize,
}

impl MemoryTensor {
    /// A memory tensor description.
    pub fn new(name: impl Into<String>, channels: usize, stride: usize) -> Self {
        Self {
            name: name.into(),
            channels,
            stride,
        }
    }

    /// `[B, channels, H / stride, W / stride]` for a batch of `shape`.
    pub fn dims(&self, shape: crate::BatchShape) -> [usize; 4] {
        let s = self.stride.max(1);
        [
            shape.batch,
            self.channels,
            shape.height / s,
            shape.width / s,
        ]
    }

    /// Floats of this tensor for a batch of `shape`.
    pub fn len(&self, shape: crate::BatchShape) -> usize {
        self.dims(shape).iter().product()
    }

    /// True when this tensor holds no values for a batch of `shape`.
    pub fn is_empty(&self, shape: crate::BatchShape) -> bool {
        self.len(shape) == 0
    }
}

/// Names a memory tensor may not take: the state file's own tensors.
const RESERVED_NAMES: [&str; 3] = ["psi_real", "psi_imag", "occupied"];

/// The model files a package lists, relative to its directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelFiles {
    /// Weights for the candle backend, named as PyTorch's `state_dict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safetensors: Option<PathBuf>,
    /// TorchScript module for the tch backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torchscript: Option<PathBuf>,
    /// ONNX graph for the ONNX Runtime backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<PathBuf>,
}

/// The description of a model: the contents of a package's `model.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Human-readable model name.
    pub name: String,
    /// The network.
    pub architecture: Architecture,
    /// Complex channels per cell (D); the model takes and returns 2D channels.
    pub d_state: usize,
    /// Width of the hidden layers, where the architecture has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_channels: Option<usize>,
    /// The update rule.
    pub update: UpdateRule,
    /// Cells the output at one cell can see in each direction; `None` for a
    /// global model (its output at a cell depends on the whole field).
    pub receptive_radius: Option<usize>,
    /// Height and width must be multiples of this (1 unless the model pools).
    #[serde(default = "one")]
    pub spatial_multiple: usize,
    /// The model files in the package.
    pub files: ModelFiles,
    /// The recurrent law's memory, carried from step to step (empty for a
    /// law without memory). Must be what the architecture implies
    /// ([`Architecture::implied_memory`]); a `custom` package lists its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryTensor>,
}

impl ModelFiles {
    /// The listed path of a `kind` file, if any.
    pub fn get(&self, kind: ModelFile) -> Option<&Path> {
        match kind {
            ModelFile::Safetensors => self.safetensors.as_deref(),
            ModelFile::TorchScript => self.torchscript.as_deref(),
            ModelFile::Onnx => self.onnx.as_deref(),
        }
    }

    /// The same list with a `kind` file at `path` (relative to the package).
    pub fn with(mut self, kind: ModelFile, path: impl Into<PathBuf>) -> Self {
        let slot = match kind {
            ModelFile::Safetensors => &mut self.safetensors,
            ModelFile::TorchScript => &mut self.torchscript,
            ModelFile::Onnx => &mut self.onnx,
        };
        *slot = Some(path.into());
        self
    }
}

fn one() -> usize {
    1
}

/// Fields a `model.json` must spell out, even where their value may be null:
/// a missing `receptive_radius` is a mistake, not a global model.
const REQUIRED_FIELDS: [&str; 7] = [
    "format",
    "name",
    "architecture",
    "d_state",
    "update",
    "receptive_radius",
    "files",
];

impl ModelSpec {
    /// The description of a named architecture with `d_state` complex
    /// channels and `hidden` channels (where it has them), with everything
    /// the architecture fixes filled in as the exporter writes it: the
    /// radius, the spatial multiple (4 for the U-Nets), the update rule
    /// (unitary only for `unet_unitary`, as in Atheria's engine) and the
    /// memory. `files` is empty: the caller says where the weights are.
    /// `custom` has no such description.
    pub fn for_architecture(
        name: impl Into<String>,
        architecture: Architecture,
        d_state: usize,
        hidden: Option<usize>,
    ) -> std::result::Result<Self, String> {
        let Some(radius) = architecture.implied_radius() else {
            return Err(format!(
                "architecture {architecture} is described by its own model.json"
            ));
        };
        let hidden = hidden.filter(|_| architecture.has_hidden());
        let spec = ModelSpec {
            format: MODEL_FORMAT.into(),
            name: name.into(),
            architecture,
            d_state,
            hidden_channels: hidden,
            update: if architecture == Architecture::UnetUnitary {
                UpdateRule::Unitary
            } else {
                UpdateRule::Additive
            },
            receptive_radius: radius,
            spatial_multiple: if architecture.is_unet() { 4 } else { 1 },
            files: ModelFiles::default(),
            memory: architecture.implied_memory(hidden).unwrap_or_default(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates `model.json` text. `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::model(origin, format!("not valid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| Error::model(origin, "model.json must hold a JSON object"))?;
        for field in REQUIRED_FIELDS {
            if !object.contains_key(field) {
                return Err(Error::model(
                    origin,
                    format!("model.json is missing the field `{field}`"),
                ));
            }
        }
        let spec: ModelSpec = serde_json::from_value(value)
            .map_err(|e| Error::model(origin, format!("model.json: {e}")))?;
        spec.validate().map_err(|m| Error::model(origin, m))?;
        Ok(spec)
    }

    /// Checks the fields against each other; returns the problem as a message.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format != MODEL_FORMAT {
            return Err(format!(
                "format is `{}`, expected `{MODEL_FORMAT}`",
                self.format
            ));
        }
        if self.d_state == 0 || self.d_state > MAX_D_STATE {
            return Err(format!(
                "d_state {} is out of range 1..={MAX_D_STATE}",
                self.d_state
            ));
        }
        if self.spatial_multiple == 0 || self.spatial_multiple > 1024 {
            return Err(format!(
                "spatial_multiple {} is out of range 1..=1024",
                self.spatial_multiple
            ));
        }
        let arch = self.architecture;
        match self.hidden_channels {
            None if arch.has_hidden() => {
                return Err(format!("architecture {arch} needs `hidden_channels`"))
            }
            Some(0) => return Err("hidden_channels must be at least 1".into()),
            Some(h) if h > 65536 => {
                return Err(format!("hidden_channels {h} is out of range 1..=65536"))
            }
            _ => {}
        }
        if let Some(implied) = arch.implied_radius() {
            if implied != self.receptive_radius {
                return Err(format!(
                    "receptive_radius {} does not match architecture {arch} (expected {})",
                    show_radius(self.receptive_radius),
                    show_radius(implied)
                ));
            }
        }
        if matches!(self.receptive_radius, Some(r) if r > 64) {
            return Err(
                "receptive_radius above 64 is not supported: use null for a global model".into(),
            );
        }
        if arch.is_unet() && !self.spatial_multiple.is_multiple_of(4) {
            return Err(format!(
                "architecture {arch} pools twice: spatial_multiple must be a multiple of 4"
            ));
        }
        if arch == Architecture::UnetUnitary && self.update != UpdateRule::Unitary {
            return Err("architecture unet_unitary needs update `unitary`".into());
        }
        self.validate_memory()?;
        for kind in [
            ModelFile::Safetensors,
            ModelFile::TorchScript,
            ModelFile::Onnx,
        ] {
            if let Some(path) = self.files.get(kind) {
                check_inside_package(kind, path)?;
            }
        }
        Ok(())
    }

    /// The memory list against the architecture and itself.
    fn validate_memory(&self) -> std::result::Result<(), String> {
        let arch = self.architecture;
        if let Some(implied) = arch.implied_memory(self.hidden_channels) {
            if implied != self.memory {
                let show = |m: &[MemoryTensor]| {
                    if m.is_empty() {
                        return "none".to_string();
                    }
                    m.iter()
                        .map(|t| {
                            format!("{} ({} channels, stride {})", t.name, t.channels, t.stride)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(format!(
                    "memory is {} but architecture {arch} keeps {}",
                    show(&self.memory),
                    show(&implied)
                ));
            }
        }
        for (i, t) in self.memory.iter().enumerate() {
            let name = &t.name;
            let plain = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain || RESERVED_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "memory name `{name}` must be 1 to 64 letters, digits or `_`, and not one of {}",
                    RESERVED_NAMES.join(", ")
                ));
            }
            if self.memory[..i].iter().any(|o| &o.name == name) {
                return Err(format!("memory name `{name}` is listed twice"));
            }
            if t.channels == 0 || t.channels > 65536 {
                return Err(format!(
                    "memory `{name}`: channels {} is out of range 1..=65536",
                    t.channels
                ));
            }
            if t.stride == 0 || !self.spatial_multiple.is_multiple_of(t.stride) {
                return Err(format!(
                    "memory `{name}`: stride {} must divide spatial_multiple {}",
                    t.stride, self.spatial_multiple
                ));
            }
        }
        Ok(())
    }

    /// True when the law carries memory from step to step.
    pub fn is_recurrent(&self) -> bool {
        !self.memory.is_empty()
    }

    /// Floats of the whole memory (every tensor, one after another) for a
    /// batch of `shape`; 0 for a law without memory.
    pub fn memory_len(&self, shape: crate::BatchShape) -> usize {
        self.memory.iter().map(|t| t.len(shape)).sum()
    }

    /// Model input and output channels: `2 * d_state`.
    pub fn channels(&self) -> usize {
        2 * self.d_state
    }

    /// True when the output at a cell depends on the whole field.
    pub fn is_global(&self) -> bool {
        self.receptive_radius.is_none()
    }

    /// Estimated bytes per cell at the peak of a dense step of this model:
    /// the engine's state, delta and scratch, plus the backend's activations
    /// for one forward, per architecture. Measured peaks (candle, 1024 x
    /// 1024): U-Net D 2 hidden 8 about 364 bytes, MLP about 100; the
    /// estimate is rounded up from such measurements so that a default cell
    /// limit made from it does not admit a grid that cannot fit.
    pub fn bytes_per_cell(&self) -> u64 {
        let c = self.channels() as u64;
        let h = self.hidden_channels.unwrap_or(0) as u64;
        // State planes, delta, one staged copy, and the norm/occupancy bytes.
        let engine = 3 * 4 * c + 8;
        let floats = match self.architecture {
            // Input, output and the Winograd/im2col transforms.
            Architecture::Conv3x3 => 4 * c,
            // Input, two hidden activations (and ELU's), output.
            Architecture::Mlp => 2 * c + 3 * h,
            // The neighbour sum, then the MLP.
            Architecture::DeepQca => 3 * c + 3 * h,
            // Full-resolution encoder and decoder activations, GroupNorm,
            // skip and concatenation buffers, and the coarser levels.
            Architecture::Unet
            | Architecture::UnetUnitary
            | Architecture::UnetConvlstm
            | Architecture::UnetUnitaryRmsnorm => 2 * c + 12 * h,
            // Unknown layers: a generous guess.
            Architecture::Custom => 16 * c + 64,
        };
        engine + 4 * floats
    }
}

/// A `files` entry names a file inside the package: a relative path that
/// never climbs out (`..`), so that a package cannot make a program read
/// `/etc/passwd` or a neighbour's files as its weights.
fn check_inside_package(kind: ModelFile, path: &Path) -> std::result::Result<(), String> {
    use std::path::Component;
    let leaves = path.as_os_str().is_empty()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if leaves {
        return Err(format!(
            "files.{kind} is `{}`: model files must be relative paths inside the package \
             directory (no `..`, no absolute path)",
            path.display()
        ));
    }
    Ok(())
}

fn show_radius(r: Option<usize>) -> String {
    r.map_or_else(|| "null".to_string(), |r| r.to_string())
}

/// One kind of model file a package may hold: the file a runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelFile {
    /// Safetensors weights, named as PyTorch's `state_dict` (candle).
    Safetensors,
    /// A TorchScript module (tch).
    TorchScript,
    /// An ONNX graph (ONNX Runtime).
    Onnx,
}

impl ModelFile {
    /// Every kind, in the order model.json lists them.
    pub const ALL: [ModelFile; 3] = [
        ModelFile::Safetensors,
        ModelFile::TorchScript,
        ModelFile::Onnx,
    ];

    /// The key in model.json's `files` object: `safetensors`, `torchscript`, `onnx`.
    pub fn key(self) -> &'static str {
        match self {
            ModelFile::Safetensors => "safetensors",
            ModelFile::TorchScript => "torchscript",
            ModelFile::Onnx => "onnx",
        }
    }
}

impl fmt::Display for ModelFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A model package: its validated `model.json` and its model files, either
/// in a directory ([`ModelPackage::load`]) or in memory
/// ([`ModelPackage::from_bytes`], for a program that ships its model inside
/// itself or receives it over the network).
#[derive(Debug, Clone)]
pub struct ModelPackage {
    spec: ModelSpec,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    /// The package directory; files are read from it when a backend needs them.
    Dir(PathBuf),
    /// Files held in memory; `origin` names the package in errors.
    Memory {
        origin: PathBuf,
        files: Vec<(ModelFile, Arc<[u8]>)>,
    },
}

impl ModelPackage {
    /// Reads and validates `dir/model.json`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::model(&dir, "not a directory: pass the folder that holds model.json (make one with python/export.py)"));
        }
        let json = dir.join("model.json");
        let text = std::fs::read_to_string(&json)
            .map_err(|e| Error::model(&json, format!("cannot read: {e}")))?;
        let spec = ModelSpec::from_json(&text, &json)?;
        Ok(Self {
            spec,
            source: Source::Dir(dir),
        })
    }

    /// A package held in memory: `spec` (validated here) and the bytes of
    /// its model files by kind. The paths in `spec.files` are not used.
    ///
    /// Errors name the package `<in-memory model NAME>` unless
    /// [`with_origin`](Self::with_origin) says otherwise.
    pub fn from_bytes<B: Into<Arc<[u8]>>>(
        spec: ModelSpec,
        files: impl IntoIterator<Item = (ModelFile, B)>,
    ) -> Result<Self> {
        let origin = PathBuf::from(format!("<in-memory model `{}`>", spec.name));
        spec.validate().map_err(|m| Error::model(&origin, m))?;
        let mut list: Vec<(ModelFile, Arc<[u8]>)> = Vec::new();
        for (kind, bytes) in files {
            if list.iter().any(|(k, _)| *k == kind) {
                return Err(Error::model(
                    &origin,
                    format!("the `{kind}` file is given twice"),
                ));
            }
            list.push((kind, bytes.into()));
        }
        Ok(Self {
            spec,
            source: Source::Memory {
                origin,
                files: list,
            },
        })
    }

    /// Names an in-memory package (and its files) in error messages, e.g.
    /// the path it was downloaded from. No effect on a package on disk.
    pub fn with_origin(mut self, name: impl Into<PathBuf>) -> Self {
        if let Source::Memory { origin, .. } = &mut self.source {
            *origin = name.into();
        }
        self
    }

    /// The package's parsed, validated `model.json`.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The package directory, or `None` for a package in memory.
    pub fn dir(&self) -> Option<&Path> {
        match &self.source {
            Source::Dir(dir) => Some(dir),
            Source::Memory { .. } => None,
        }
    }

    /// What errors call the package: its directory, or the in-memory name.
    pub fn origin(&self) -> &Path {
        match &self.source {
            Source::Dir(dir) => dir,
            Source::Memory { origin, .. } => origin,
        }
    }

    /// True when the package has a `kind` file (on disk: listed in
    /// model.json; whether it exists is checked by [`file`](Self::file)).
    pub fn has(&self, kind: ModelFile) -> bool {
        match &self.source {
            Source::Dir(_) => self.spec.files.get(kind).is_some(),
            Source::Memory { files, .. } => files.iter().any(|(k, _)| *k == kind),
        }
    }

    /// The package's `kind` file: where it is (for messages) and its bytes,
    /// read from disk or shared from memory; or an error naming what is
    /// missing.
    pub fn file(&self, kind: ModelFile) -> Result<PackageFile> {
        match &self.source {
            Source::Dir(dir) => {
                let rel = self.spec.files.get(kind).ok_or_else(|| {
                    Error::model(
                        dir,
                        format!(
                            "model.json lists no `{kind}` file; export one with python/export.py"
                        ),
                    )
                })?;
                let path = dir.join(rel);
                let what = match std::fs::metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
                    Err(e) => return Err(Error::io(&path, e)),
                    Ok(m) if m.is_dir() => Some("is a directory"),
                    Ok(m) if !m.is_file() => {
                        Some("is not a regular file (a FIFO, socket or device)")
                    }
                    Ok(_) => None,
                };
                if let Some(what) = what {
                    return Err(Error::model(
                        &path,
                        format!("the `{kind}` file listed in model.json {what}"),
                    ));
                }
                if kind == ModelFile::Safetensors {
                    // Its first bytes can refuse it: not a whole read of a
                    // large file that was never weights.
                    crate::header::safetensors_header(&path)
                        .map_err(|message| Error::model(&path, message))?;
                }
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                Ok(PackageFile {
                    origin: path,
                    bytes: bytes.into(),
                })
            }
            Source::Memory { origin, files } => {
                let bytes = files
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, b)| Arc::clone(b))
                    .ok_or_else(|| {
                        Error::model(origin, format!("the package holds no `{kind}` file"))
                    })?;
                Ok(PackageFile {
                    origin: origin.clone(),
                    bytes,
                })
            }
        }
    }
}

/// One model file of a [`ModelPackage`], in memory.
#[derive(Debug, Clone)]
pub struct PackageFile {
    origin: PathBuf,
    bytes: Arc<[u8]>,
}

impl PackageFile {
    /// Where the file came from, for error messages: its path on disk, or
    /// the name of the in-memory package.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The file's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The contents, shared (for a backend that builds more instances later).
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        Arc::clone(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(extra: &str) -> String {
        format!(
            r#"{{"format":"atheria-model/1","name":"t","architecture":"conv3x3","d_state":4,
               "update":"additive","receptive_radius":1,"files":{{"safetensors":"model.safetensors"}}{extra}}}"#
        )
    }

    fn parse(text: &str) -> Result<ModelSpec> {
        ModelSpec::from_json(text, Path::new("model.json"))
    }

    #[test]
    fn a_complete_spec_parses_with_defaults() {
        let spec = parse(&json("")).unwrap();
        assert_eq!(spec.architecture, Architecture::Conv3x3);
        assert_eq!(spec.spatial_multiple, 1);
        assert_eq!(spec.channels(), 8);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = parse(&json(r#","colour":"blue""#)).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn a_missing_radius_is_an_error_not_a_global_model() {
        let text = json("").replace(r#""receptive_radius":1,"#, "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("missing the field `receptive_radius`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_unknown_architectures_and_rules_are_named() {
        let err = parse(&json("").replace(r#""d_state":4"#, r#""d_state":"four""#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d_state") || err.contains("invalid type"),
            "{err}"
        );
        let err = parse(&json("").replace("conv3x3", "resnet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("resnet"), "{err}");
        let err = parse(&json("").replace("additive", "sideways"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn radius_must_agree_with_architecture() {
        let err = parse(&json("").replace(r#""receptive_radius":1"#, r#""receptive_radius":null"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match architecture conv3x3"), "{err}");
    }

    #[test]
    fn zero_and_huge_d_state_are_rejected() {
        assert!(parse(&json("").replace(r#""d_state":4"#, r#""d_state":0"#)).is_err());
        assert!(parse(&json("").replace(r#""d_state":4"#, r#""d_state":100000000"#)).is_err());
        assert!(parse(&json("").replace(r#""d_state":4"#, r#""d_state":-3"#)).is_err());
    }

    #[test]
    fn an_in_memory_package_hands_out_its_files_by_kind() {
        let spec = parse(&json("")).unwrap();
        let package = ModelPackage::from_bytes(
            spec.clone(),
            [
                (ModelFile::Onnx, vec![1u8, 2, 3]),
                (ModelFile::TorchScript, vec![4]),
            ],
        )
        .unwrap();
        assert_eq!(package.spec(), &spec);
        assert_eq!(package.dir(), None);
        assert!(package.has(ModelFile::Onnx) && !package.has(ModelFile::Safetensors));
        let onnx = package.file(ModelFile::Onnx).unwrap();
        assert_eq!(onnx.bytes(), [1, 2, 3]);
        assert_eq!(onnx.origin(), Path::new("<in-memory model `t`>"));
        let err = package
            .file(ModelFile::Safetensors)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no `safetensors` file"), "{err}");
        let named = package.with_origin("https://example.org/t");
        let file = named.file(ModelFile::TorchScript).unwrap();
        assert_eq!(file.origin(), Path::new("https://example.org/t"));

        let twice = ModelPackage::from_bytes(
            spec.clone(),
            [(ModelFile::Onnx, vec![1u8]), (ModelFile::Onnx, vec![2])],
        );
        assert!(twice.unwrap_err().to_string().contains("given twice"));
        let mut bad = spec;
        bad.d_state = 0;
        let none: [(ModelFile, Vec<u8>); 0] = [];
        assert!(ModelPackage::from_bytes(bad, none).is_err());
    }

    #[test]
    fn a_package_on_disk_reads_the_file_model_json_lists() {
        let dir = std::env::temp_dir().join(format!("engine-api-package-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.json"), json("")).unwrap();
        let package = ModelPackage::load(&dir).unwrap();
        assert_eq!(package.dir(), Some(dir.as_path()));
        assert!(package.has(ModelFile::Safetensors) && !package.has(ModelFile::Onnx));
        let missing = package
            .file(ModelFile::Safetensors)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        let unlisted = package.file(ModelFile::Onnx).unwrap_err().to_string();
        assert!(unlisted.contains("lists no `onnx` file"), "{unlisted}");
        // Not safetensors: refused by its first bytes.
        std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
        let garbage = package
            .file(ModelFile::Safetensors)
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("not a safetensors file"), "{garbage}");
        // The smallest safetensors file: an empty header.
        let weights = [&2u64.to_le_bytes()[..], b"{}"].concat();
        std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
        let file = package.file(ModelFile::Safetensors).unwrap();
        assert_eq!(
            (file.bytes(), file.origin()),
            (&weights[..], dir.join("model.safetensors").as_path())
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            ModelFiles::default()
                .with(ModelFile::Onnx, "m.onnx")
                .get(ModelFile::Onnx),
            Some(Path::new("m.onnx"))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = parse(&text);
        }
    }
}
