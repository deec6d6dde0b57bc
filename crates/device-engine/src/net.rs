//! The laws as candle tensor programs: every architecture the candle
//! backend runs, written with candle's own ops (conv2d, conv_transpose2d,
//! max_pool2d, elu, reductions) so that they run on whatever device their
//! weights live on. The definitions are the PyTorch reference modules'
//! (`python/atheria_ref/models.py`); the names are their `state_dict` names.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};
use engine_api::{Architecture, ModelSpec, Result};

use crate::candle_err;

/// GroupNorm's epsilon in the reference modules (PyTorch's default).
const GROUP_NORM_EPS: f64 = 1e-5;
/// Atheria's `RMSNorm2d` epsilon.
const RMS_NORM_EPS: f64 = 1e-6;

/// Weights on the device, by `state_dict` name.
pub(crate) struct DeviceWeights(HashMap<String, Tensor>);

impl DeviceWeights {
    /// Uploads `(name, shape, values)` tensors to `device`.
    pub(crate) fn upload(
        tensors: &[(String, Vec<usize>, Vec<f32>)],
        device: &Device,
    ) -> Result<Self> {
        let mut map = HashMap::with_capacity(tensors.len());
        for (name, shape, values) in tensors {
            let t = Tensor::from_slice(values, shape.as_slice(), device).map_err(candle_err)?;
            map.insert(name.clone(), t);
        }
        Ok(Self(map))
    }

    fn take(&mut self, name: &str) -> Result<Tensor> {
        // The names were checked against the architecture when the host law
        // loaded (backend_candle), so a miss is a bug of this crate.
        self.0.remove(name).ok_or_else(|| {
            engine_api::Error::backend(
                crate::NAME,
                format!("tensor `{name}` is missing from checked weights"),
            )
        })
    }
}

/// `Conv2d` with optional bias, PyTorch's `padding = k / 2`.
pub(crate) struct Conv {
    weight: Tensor,
    /// `[1, out, 1, 1]`, ready to broadcast.
    bias: Option<Tensor>,
    padding: usize,
    groups: usize,
}

impl Conv {
    fn build(w: &mut DeviceWeights, prefix: &str, bias: bool, groups: usize) -> Result<Self> {
        let weight = w.take(&format!("{prefix}.weight"))?;
        let k = weight.dim(3).map_err(candle_err)?;
        let bias = if bias {
            let b = w.take(&format!("{prefix}.bias"))?;
            Some(b.reshape((1, (), 1, 1)).map_err(candle_err)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            padding: k / 2,
            groups,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, 1, 1, self.groups)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `Conv2d(i, h, 1), ELU, Conv2d(h, h, 1), ELU, Conv2d(h, o, 1)`.
pub(crate) struct Mlp([Conv; 3]);

impl Mlp {
    fn build(w: &mut DeviceWeights, prefix: &str) -> Result<Self> {
        let layer = |w: &mut DeviceWeights, i| Conv::build(w, &format!("{prefix}.{i}"), true, 1);
        Ok(Self([layer(w, 0)?, layer(w, 2)?, layer(w, 4)?]))
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let a = self.0[0].forward(x)?.elu(1.0)?;
        let b = self.0[1].forward(&a)?.elu(1.0)?;
        self.0[2].forward(&b)
    }
}

/// A conv block's norm (each followed by ELU in the block).
enum Norm {
    /// `GroupNorm(groups, channels, eps = 1e-5)`.
    Group {
        groups: usize,
        weight: Tensor,
        bias: Tensor,
    },
    /// Atheria's `RMSNorm2d(channels, eps = 1e-6)`.
    Rms { weight: Tensor },
}

impl Norm {
    fn build(w: &mut DeviceWeights, name: &str, rms: bool) -> Result<Self> {
        let shape = |t: Tensor| t.reshape((1, (), 1, 1)).map_err(candle_err);
        let weight = w.take(&format!("{name}.weight"))?;
        let channels = weight.dim(0).map_err(candle_err)?;
        Ok(if rms {
            Norm::Rms {
                weight: shape(weight)?,
            }
        } else {
            Norm::Group {
                groups: group_count(channels),
                weight: shape(weight)?,
                bias: shape(w.take(&format!("{name}.bias"))?)?,
            }
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Norm::Group {
                groups,
                weight,
                bias,
            } => {
                let (b, c, h, w) = x.dims4()?;
                let g = x.reshape((b, *groups, (c / groups) * h * w))?;
                let mean = g.mean_keepdim(D::Minus1)?;
                let centred = g.broadcast_sub(&mean)?;
                // The biased variance, as PyTorch's GroupNorm.
                let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = centred.broadcast_div(&(var + GROUP_NORM_EPS)?.sqrt()?)?;
                normed
                    .reshape((b, c, h, w))?
                    .broadcast_mul(weight)?
                    .broadcast_add(bias)
            }
            Norm::Rms { weight } => {
                let ms = x.sqr()?.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
                x.broadcast_div(&(ms + RMS_NORM_EPS)?.sqrt()?)?
                    .broadcast_mul(weight)
            }
        }
    }
}

/// The reference U-Net's GroupNorm group count (`groups_for`): c / 8 above
/// 8 channels, 1 when that does not divide c.
fn group_count(channels: usize) -> usize {
    let g = if channels > 8 { channels / 8 } else { 1 };
    if g == 0 || !channels.is_multiple_of(g) {
        1
    } else {
        g
    }
}

/// `(3x3 conv without bias, norm, ELU)` twice.
struct Block {
    first: Conv,
    first_norm: Norm,
    second: Conv,
    second_norm: Norm,
}

impl Block {
    fn build(w: &mut DeviceWeights, prefix: &str, rms: bool) -> Result<Self> {
        let p = |i: usize| format!("{prefix}.conv_block.{i}");
        Ok(Self {
            first: Conv::build(w, &p(0), false, 1)?,
            first_norm: Norm::build(w, &p(1), rms)?,
            second: Conv::build(w, &p(3), false, 1)?,
            second_norm: Norm::build(w, &p(4), rms)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let a = self.first_norm.forward(&self.first.forward(x)?)?.elu(1.0)?;
        self.second_norm
            .forward(&self.second.forward(&a)?)?
            .elu(1.0)
    }
}

/// `ConvTranspose2d(i, o, 2, stride = 2)` with bias.
struct Up {
    weight: Tensor,
    bias: Tensor,
}

impl Up {
    fn build(w: &mut DeviceWeights, name: &str) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{name}.weight"))?,
            bias: w
                .take(&format!("{name}.bias"))?
                .reshape((1, (), 1, 1))
                .map_err(candle_err)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv_transpose2d(&self.weight, 0, 0, 2, 1)?
            .broadcast_add(&self.bias)
    }
}

/// The two-level U-Net; with `lstm`, Atheria's ConvLSTM before the bottleneck.
pub(crate) struct Unet {
    inc: Block,
    down1: Block,
    down2: Block,
    lstm: Option<Conv>,
    bot: Block,
    up1: Up,
    conv_up1: Block,
    up2: Up,
    conv_up2: Block,
    outc: Conv,
}

/// A recurrent law's memory on the device: `h_state` and `c_state`, each
/// `[1, 4c, H / 4, W / 4]`.
pub(crate) type Memory = (Tensor, Tensor);

fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    // 1 / (1 + e^-x): e^-x overflows to inf for x below ~-88, giving 0, as
    // the exact value rounds to in f32.
    (x.neg()?.exp()? + 1.0)?.recip()
}

impl Unet {
    fn build(w: &mut DeviceWeights, rms: bool, recurrent: bool) -> Result<Self> {
        let lstm = if recurrent {
            Some(Conv::build(w, "conv_gates", true, 1)?)
        } else {
            None
        };
        Ok(Self {
            inc: Block::build(w, "inc", rms)?,
            down1: Block::build(w, "down1.1", rms)?,
            down2: Block::build(w, "down2.1", rms)?,
            lstm,
            bot: Block::build(w, "bot", rms)?,
            up1: Up::build(w, "up1")?,
            conv_up1: Block::build(w, "conv_up1", rms)?,
            up2: Up::build(w, "up2")?,
            conv_up2: Block::build(w, "conv_up2", rms)?,
            outc: Conv::build(w, "outc", true, 1)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        memory: Option<&Memory>,
    ) -> candle_core::Result<(Tensor, Option<Memory>)> {
        let x1 = self.inc.forward(x)?;
        let x2 = self.down1.forward(&x1.max_pool2d(2)?)?;
        let x3 = self.down2.forward(&x2.max_pool2d(2)?)?;
        let (b, next) = match (&self.lstm, memory) {
            (Some(gates), Some((h, c))) => {
                let g = gates.forward(&Tensor::cat(&[&x3, h], 1)?)?;
                // Chunks in Atheria's order: forget, input, output, candidate.
                let k = g.chunk(4, 1)?;
                let c_next = (sigmoid(&k[0])?.mul(c)? + sigmoid(&k[1])?.mul(&k[3].tanh()?)?)?;
                let h_next = sigmoid(&k[2])?.mul(&c_next.tanh()?)?;
                (self.bot.forward(&h_next)?, Some((h_next, c_next)))
            }
            _ => (self.bot.forward(&x3)?, None),
        };
        let u = self
            .conv_up1
            .forward(&Tensor::cat(&[&self.up1.forward(&b)?, &x2], 1)?)?;
        let u = self
            .conv_up2
            .forward(&Tensor::cat(&[&self.up2.forward(&u)?, &x1], 1)?)?;
        Ok((self.outc.forward(&u)?, next))
    }
}

/// A law, built on the device its weights were uploaded to.
pub(crate) enum Net {
    Conv(Conv),
    Mlp(Mlp),
    DeepQca(Conv, Mlp),
    Unet(Box<Unet>),
}

impl Net {
    /// The network of `spec` from weights already checked against it.
    pub(crate) fn build(spec: &ModelSpec, mut w: DeviceWeights) -> Result<Self> {
        let c = spec.channels();
        Ok(match spec.architecture {
            Architecture::Conv3x3 => Net::Conv(Conv::build(&mut w, "conv", true, 1)?),
            Architecture::Mlp => Net::Mlp(Mlp::build(&mut w, "net")?),
            Architecture::DeepQca => Net::DeepQca(
                Conv::build(&mut w, "conv_neighbors", false, c)?,
                Mlp::build(&mut w, "processing_net")?,
            ),
            Architecture::Unet | Architecture::UnetUnitary => {
                Net::Unet(Box::new(Unet::build(&mut w, false, false)?))
            }
            Architecture::UnetUnitaryRmsnorm => {
                Net::Unet(Box::new(Unet::build(&mut w, true, false)?))
            }
            Architecture::UnetConvlstm => Net::Unet(Box::new(Unet::build(&mut w, false, true)?)),
            other => {
                return Err(engine_api::Error::BackendUnavailable {
                    backend: crate::NAME,
                    message: format!(
                        "architecture `{other}` does not run on the device engine (it runs the candle backend's architectures)"
                    ),
                })
            }
        })
    }

    /// The delta of `x` `[1, 2D, H, W]`, and a recurrent law's next memory.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        memory: Option<&Memory>,
    ) -> candle_core::Result<(Tensor, Option<Memory>)> {
        match self {
            Net::Conv(conv) => Ok((conv.forward(x)?, None)),
            Net::Mlp(mlp) => Ok((mlp.forward(x)?, None)),
            Net::DeepQca(neighbours, mlp) => Ok((mlp.forward(&neighbours.forward(x)?)?, None)),
            Net::Unet(unet) => unet.forward(x, memory),
        }
    }
}

/// Float tensors of a safetensors file as `(name, shape, f32 values)`.
pub(crate) fn read_safetensors(
    origin: &std::path::Path,
    bytes: &[u8],
) -> Result<crate::NamedTensors> {
    let loaded = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| {
        engine_api::Error::model(origin, format!("not a readable safetensors file ({e})"))
    })?;
    loaded
        .into_iter()
        .map(|(name, t)| {
            let shape = t.dims().to_vec();
            let values = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| engine_api::Error::model(origin, format!("tensor `{name}`: {e}")))?;
            Ok((name, shape, values))
        })
        .collect()
}
