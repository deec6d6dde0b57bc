//! The architectures, assembled from kernels and checked weights.

use engine_api::{copy_interior, Architecture, BatchShape, Error, ModelSpec, Result};
use rayon::prelude::*;

use crate::kernels::{elu_in_place, Conv2d, Depthwise3x3, Dims};
use crate::layout::Norm;
use crate::unet::{Memory, Unet};
use crate::weights::Weights;
use crate::workspace::Workspace;

/// A runnable model.
#[derive(Debug)]
pub enum Network {
    /// One 3x3 convolution.
    Conv(Conv2d),
    /// Three 1x1 convolutions with ELU between.
    Mlp(Mlp),
    /// The neighbour-sum depthwise conv, then the per-cell MLP.
    DeepQca(Depthwise3x3, Mlp),
    /// The two-level U-Net, with GroupNorm or RMSNorm, with or without a
    /// ConvLSTM.
    Unet(Box<Unet>),
}

impl Network {
    /// Builds the network for `spec` from weights already checked against it.
    pub fn build(spec: &ModelSpec, w: &mut Weights) -> Result<Self> {
        let c = spec.channels();
        let h = spec.hidden_channels.unwrap_or(0);
        Ok(match spec.architecture {
            Architecture::Conv3x3 => Network::Conv(conv(w, "conv", c, c, 3, true)?),
            Architecture::Mlp => Network::Mlp(Mlp::build(w, "net", c, h, c)?),
            Architecture::DeepQca => Network::DeepQca(
                Depthwise3x3::new(c, 8, w.take("conv_neighbors.weight")?),
                Mlp::build(w, "processing_net", 8 * c, h, c)?,
            ),
            Architecture::Unet | Architecture::UnetUnitary => {
                Network::Unet(Box::new(Unet::build(w, c, h, Norm::Group, false)?))
            }
            Architecture::UnetUnitaryRmsnorm => {
                Network::Unet(Box::new(Unet::build(w, c, h, Norm::Rms, false)?))
            }
            Architecture::UnetConvlstm => {
                Network::Unet(Box::new(Unet::build(w, c, h, Norm::Group, true)?))
            }
            _ => {
                let message = crate::layout::expected(spec).err().unwrap_or_default();
                return Err(engine_api::Error::BackendUnavailable {
                    backend: "candle",
                    message,
                });
            }
        })
    }

    /// Runs the model on `x` (`d`) into `out`, inside the backend's pool;
    /// `memory` for a recurrent model (only a U-Net can be), else `None`.
    pub fn forward(
        &self,
        x: &[f32],
        d: Dims,
        out: &mut [f32],
        ws: &mut Workspace,
        memory: Option<Memory<'_>>,
    ) -> Result<()> {
        if memory.is_some() && !matches!(self, Network::Unet(_)) {
            return Err(Error::InvalidArgument(
                "this model has no memory: call forward, without memory".into(),
            ));
        }
        match self {
            Network::Conv(conv) => conv.forward(x, d, out),
            Network::Mlp(mlp) => {
                let hidden = mlp.hidden_len(d);
                let [a, b] = ws.slots([hidden, hidden]);
                mlp.forward(x, d, out, a, b);
            }
            Network::DeepQca(neighbors, mlp) => {
                let nd = d.with_c(neighbors.out_channels());
                let hidden = mlp.hidden_len(d);
                let [n, a, b] = ws.slots([nd.len(), hidden, hidden]);
                neighbors.forward(x, d, n);
                mlp.forward(n, nd, out, a, b);
            }
            Network::Unet(unet) => unet.forward(x, d, out, ws, memory)?,
        }
        Ok(())
    }
}

impl Network {
    /// Whether [`Network::forward_interior`] skips the margin's work: a 3x3
    /// on the Winograd path computes only the interior, the per-cell MLP
    /// runs on the cropped input, and the neighbour-sum law sums the whole
    /// field (8 multiply-adds per channel and cell) but runs its MLP, the
    /// bulk of its work, on the interior; a U-Net (global) and a narrow 3x3
    /// (im2col) compute every cell.
    pub fn has_interior(&self) -> bool {
        match self {
            Network::Conv(conv) => conv.has_interior(),
            Network::Mlp(_) | Network::DeepQca(..) => true,
            Network::Unet(_) => false,
        }
    }

    /// [`Network::forward`]'s output without its outer `margin` rows and
    /// columns, into `out` (`[b, c, h - 2 margin, w - 2 margin]`): the 3x3
    /// convolution skips the margin's Winograd tiles, and the per-cell
    /// layers run on the interior alone. Inside the backend's pool; needs
    /// [`Network::has_interior`].
    pub fn forward_interior(
        &self,
        x: &[f32],
        d: Dims,
        margin: usize,
        out: &mut [f32],
        ws: &mut Workspace,
    ) -> Result<()> {
        let inner = Dims::new(d.b, d.c, d.h - 2 * margin, d.w - 2 * margin);
        match self {
            Network::Conv(conv) if conv.has_interior() => conv.forward_interior(x, d, margin, out),
            Network::Mlp(mlp) => {
                let hidden = mlp.hidden_len(inner);
                let [xi, a, b] = ws.slots([inner.len(), hidden, hidden]);
                crop(x, d, margin, xi);
                mlp.forward(xi, inner, out, a, b);
            }
            Network::DeepQca(neighbors, mlp) => {
                let (nd, ni) = (
                    d.with_c(neighbors.out_channels()),
                    inner.with_c(neighbors.out_channels()),
                );
                let hidden = mlp.hidden_len(inner);
                let [n, n_inner, a, b] = ws.slots([nd.len(), ni.len(), hidden, hidden]);
                neighbors.forward(x, d, n);
                crop(n, nd, margin, n_inner);
                mlp.forward(n_inner, ni, out, a, b);
            }
            Network::Conv(_) | Network::Unet(_) => {
                return Err(Error::InvalidArgument(
                    "this model computes every cell: call forward (has_interior is false)".into(),
                ))
            }
        }
        Ok(())
    }
}

/// Copies every plane of `x` (`d`) without `margin` rows and columns into
/// `out`, the planes in parallel (inside the backend's pool).
fn crop(x: &[f32], d: Dims, margin: usize, out: &mut [f32]) {
    let plane = BatchShape::new(1, 1, d.h, d.w);
    let inner = (d.h - 2 * margin) * (d.w - 2 * margin);
    out.par_chunks_mut(inner)
        .zip(x.par_chunks(d.plane()))
        .for_each(|(o, p)| copy_interior(p, plane, margin, o));
}

/// A `Conv2d` layer named `prefix` from the checked weights.
pub fn conv(
    w: &mut Weights,
    prefix: &str,
    ci: usize,
    co: usize,
    k: usize,
    bias: bool,
) -> Result<Conv2d> {
    let weight = w.take(&format!("{prefix}.weight"))?;
    let bias = if bias {
        Some(w.take(&format!("{prefix}.bias"))?)
    } else {
        None
    };
    Ok(Conv2d::new(co, ci, k, weight, bias))
}

/// `Conv2d(i, h, 1), ELU, Conv2d(h, h, 1), ELU, Conv2d(h, o, 1)`.
#[derive(Debug)]
pub struct Mlp {
    layers: [Conv2d; 3],
}

impl Mlp {
    fn build(w: &mut Weights, prefix: &str, i: usize, h: usize, o: usize) -> Result<Self> {
        Ok(Self {
            layers: [
                conv(w, &format!("{prefix}.0"), i, h, 1, true)?,
                conv(w, &format!("{prefix}.2"), h, h, 1, true)?,
                conv(w, &format!("{prefix}.4"), h, o, 1, true)?,
            ],
        })
    }

    /// Floats in one hidden activation for a batch shaped like `d`.
    fn hidden_len(&self, d: Dims) -> usize {
        d.with_c(self.layers[0].out_channels()).len()
    }

    /// Runs the three layers; `a` and `b` are hidden-sized scratch.
    fn forward(&self, x: &[f32], d: Dims, out: &mut [f32], a: &mut [f32], b: &mut [f32]) {
        let hd = d.with_c(self.layers[0].out_channels());
        self.layers[0].forward(x, d, a);
        elu_in_place(a);
        self.layers[1].forward(a, hd, b);
        elu_in_place(b);
        self.layers[2].forward(b, hd, out);
    }
}
