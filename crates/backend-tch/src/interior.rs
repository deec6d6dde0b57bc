//! A local law's layers run without their padding, so that
//! [`ComputeBackend::forward_interior`] computes each field's interior alone.
//!
//! The sparse engine hands a local law fields of a tile plus a halo of the
//! law's receptive radius and keeps only the tile. A TorchScript module's
//! convolutions pad their input (the padding is a constant of the compiled
//! code, which libtorch offers no way to change), so its forward computes
//! the halo's cells too (1.27x the tile's at 16 x 16) for the engine to drop.
//! For the laws whose layers are known, a chain of stride-1 convolutions and
//! ELUs (`conv3x3`, `deep_qca`), this module runs the same layers with the
//! module's own parameters and no padding: every convolution shrinks the
//! field by its radius, and the output is exactly the interior. The load
//! checks the chain against the module's forward on a probe batch
//! (`engine_api::check_interior_rewrite`, input staged as every forward
//! stages it); any other law keeps the module's forward, cropped.
//!
//! [`ComputeBackend::forward_interior`]: engine_api::ComputeBackend::forward_interior

use engine_api::{Architecture, ModelSpec};
use tch::{CModule, Tensor};

/// One layer of a chain.
enum Layer {
    /// A stride-1 convolution run without padding; `groups` from its weight.
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        groups: i64,
        /// The kernel's reach from its centre: the cells it trims per side.
        radius: usize,
    },
    /// An ELU (alpha 1), as `nn.ELU()`.
    Elu,
}

/// What a chain is made of, by parameter name: a convolution's prefix
/// (`<prefix>.weight`, optional `<prefix>.bias`) or an ELU.
enum Part {
    Conv(&'static str),
    Elu,
}

/// The layers of the architectures this module knows: those of
/// `python/atheria_ref/models.py`, whose parameter names the package format
/// fixes.
fn parts(architecture: Architecture) -> Option<&'static [Part]> {
    use Part::{Conv, Elu};
    match architecture {
        Architecture::Conv3x3 => Some(&[Conv("conv")]),
        Architecture::DeepQca => Some(&[
            Conv("conv_neighbors"),
            Conv("processing_net.0"),
            Elu,
            Conv("processing_net.2"),
            Elu,
            Conv("processing_net.4"),
        ]),
        _ => None,
    }
}

/// A module's layers without padding, built from its parameters.
pub(crate) struct Chain {
    layers: Vec<Layer>,
}

impl Chain {
    /// The chain of `module`'s layers for `spec`'s architecture, or why
    /// there is none. Its tensors share the module's storage (no copy).
    pub(crate) fn of(module: &CModule, spec: &ModelSpec) -> Result<Self, String> {
        let parts = parts(spec.architecture).ok_or_else(|| {
            format!(
                "its layers are not known for architecture {:?}",
                spec.architecture
            )
        })?;
        let mut params = module
            .named_parameters()
            .map_err(|e| format!("cannot read its parameters: {e}"))?;
        let mut take = |name: String| {
            params
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| params.swap_remove(i).1)
        };
        let mut channels = spec.channels() as i64;
        let mut layers = Vec::with_capacity(parts.len());
        for part in parts {
            let Part::Conv(prefix) = part else {
                layers.push(Layer::Elu);
                continue;
            };
            let weight = take(format!("{prefix}.weight"))
                .ok_or_else(|| format!("the module has no parameter `{prefix}.weight`"))?;
            let bias = take(format!("{prefix}.bias"));
            let &[out, per_group, kh, kw] = &weight.size()[..] else {
                return Err(format!(
                    "`{prefix}.weight` is not a 2D convolution's weight"
                ));
            };
            if kh != kw || kh % 2 == 0 || per_group == 0 || channels % per_group != 0 {
                return Err(format!(
                    "`{prefix}.weight` of shape {:?} does not fit a centred convolution of {channels} channels",
                    weight.size()
                ));
            }
            layers.push(Layer::Conv {
                weight,
                bias,
                groups: channels / per_group,
                radius: (kh / 2) as usize,
            });
            channels = out;
        }
        Ok(Self { layers })
    }

    /// The cells the chain trims from every side: the sum of its kernels'
    /// radii.
    pub(crate) fn margin(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv { radius, .. } => *radius,
                Layer::Elu => 0,
            })
            .sum()
    }

    /// Runs the chain on `input` (NCHW, any memory layout): each field's
    /// interior without [`margin`](Self::margin) cells per side.
    pub(crate) fn forward(&self, input: &Tensor) -> Result<Tensor, tch::TchError> {
        let mut x = input.shallow_clone();
        for layer in &self.layers {
            x = match layer {
                Layer::Conv {
                    weight,
                    bias,
                    groups,
                    ..
                } => x.f_conv2d(weight, bias.as_ref(), [1, 1], [0, 0], [1, 1], *groups)?,
                Layer::Elu => x.f_elu()?,
            };
        }
        Ok(x)
    }
}
