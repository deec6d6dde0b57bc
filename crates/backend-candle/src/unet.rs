//! The reference two-level U-Net (see the project brief for its definition),
//! and its two variants: RMSNorm in the conv blocks (`unet_unitary_rmsnorm`)
//! and a ConvLSTM before the bottleneck (`unet_convlstm`).

use engine_api::{Error, Result};
use rayon::prelude::*;

use crate::kernels::{
    conv_lstm_cell, max_pool2, Conv2d, ConvTranspose2x2, Dims, GroupNormElu, RmsNormElu,
};
use crate::layout::{group_count, Norm};
use crate::net::conv;
use crate::weights::Weights;
use crate::workspace::Workspace;

/// A conv block's norm, each fused with the ELU after it.
#[derive(Debug)]
enum BlockNorm {
    Group(GroupNormElu),
    Rms(RmsNormElu),
}

impl BlockNorm {
    /// The norm whose tensors are `{name}.weight` (and `.bias` for
    /// GroupNorm), over `channels` channels.
    fn build(w: &mut Weights, norm: Norm, name: &str, channels: usize) -> Result<Self> {
        let weight = w.take(&format!("{name}.weight"))?;
        Ok(match norm {
            Norm::Group => BlockNorm::Group(GroupNormElu::new(
                group_count(channels),
                weight,
                w.take(&format!("{name}.bias"))?,
            )),
            Norm::Rms => BlockNorm::Rms(RmsNormElu::new(weight)),
        })
    }

    /// Normalises `x` (`d`) in place, then applies ELU.
    fn forward(&self, x: &mut [f32], d: Dims) {
        match self {
            BlockNorm::Group(n) => n.forward(x, d),
            BlockNorm::Rms(n) => n.forward(x, d),
        }
    }
}

/// `Conv3x3 -> norm -> ELU`, twice.
#[derive(Debug)]
struct ConvBlock {
    first: Conv2d,
    first_norm: BlockNorm,
    second: Conv2d,
    second_norm: BlockNorm,
}

impl ConvBlock {
    fn build(w: &mut Weights, prefix: &str, ci: usize, co: usize, norm: Norm) -> Result<Self> {
        let p = |i: usize| format!("{prefix}.conv_block.{i}");
        Ok(Self {
            first: conv(w, &p(0), ci, co, 3, false)?,
            first_norm: BlockNorm::build(w, norm, &p(1), co)?,
            second: conv(w, &p(3), co, co, 3, false)?,
            second_norm: BlockNorm::build(w, norm, &p(4), co)?,
        })
    }

    /// `x` (`d`) into `out`; `tmp` holds at least `out.len()` floats.
    fn forward(&self, x: &[f32], d: Dims, tmp: &mut [f32], out: &mut [f32]) {
        let od = d.with_c(self.first.out_channels());
        let tmp = &mut tmp[..od.len()];
        self.first.forward(x, d, tmp);
        self.first_norm.forward(tmp, od);
        self.second.forward(tmp, od, out);
        self.second_norm.forward(out, od);
    }
}

/// Atheria's ConvLSTM at the bottleneck: `gates = conv3x3(cat(x3, h))`, then
/// the cell ([`conv_lstm_cell`]); `bot` runs on the new hidden state.
#[derive(Debug)]
struct ConvLstm {
    gates: Conv2d,
}

impl ConvLstm {
    /// Reads `x3` (`d`, `d.c` the memory channels) and `state` (`h` then
    /// `c`, each `d`), writes `h'` then `c'` into `next`. `cat` holds
    /// `2 * d.len()` floats and `gates` `4 * d.len()`, both scratch.
    fn forward(
        &self,
        x3: &[f32],
        d: Dims,
        state: &[f32],
        next: &mut [f32],
        cat: &mut [f32],
        gates: &mut [f32],
    ) {
        let (h, c) = state.split_at(d.len());
        let (h_next, c_next) = next.split_at_mut(d.len());
        // torch.cat([x3, h], dim=1): per image, x3's channels then h's.
        let image = d.image();
        cat.par_chunks_mut(2 * image)
            .zip(x3.par_chunks(image).zip(h.par_chunks(image)))
            .for_each(|(dst, (xi, hi))| {
                dst[..image].copy_from_slice(xi);
                dst[image..].copy_from_slice(hi);
            });
        self.gates.forward(cat, d.with_c(2 * d.c), gates);
        conv_lstm_cell(gates, c, d, h_next, c_next);
    }
}

/// A recurrent U-Net's memory for one forward: `state` to read, `next` to
/// write, each `h_state` then `c_state`, `[B, 4c, H / 4, W / 4]` apiece.
#[derive(Debug)]
pub struct Memory<'a> {
    /// The memory the step starts from (left unchanged).
    pub state: &'a [f32],
    /// Receives the memory for the next step.
    pub next: &'a mut [f32],
}

/// `UNet(D, c)`: inc, two pooled levels, a bottleneck, two upsampling levels;
/// with a ConvLSTM before the bottleneck when the law is recurrent.
#[derive(Debug)]
pub struct Unet {
    c: usize,
    inc: ConvBlock,
    down1: ConvBlock,
    down2: ConvBlock,
    lstm: Option<ConvLstm>,
    bot: ConvBlock,
    up1: ConvTranspose2x2,
    conv_up1: ConvBlock,
    up2: ConvTranspose2x2,
    conv_up2: ConvBlock,
    outc: Conv2d,
}

impl Unet {
    /// Builds the U-Net for `channels = 2D` and `hidden = c` from checked
    /// weights, with `norm` in its conv blocks and, if `recurrent`, the
    /// ConvLSTM's `conv_gates`.
    pub fn build(
        w: &mut Weights,
        channels: usize,
        c: usize,
        norm: Norm,
        recurrent: bool,
    ) -> Result<Self> {
        let up = |w: &mut Weights, name: &str, ci: usize, co: usize| -> Result<ConvTranspose2x2> {
            let weight = w.take(&format!("{name}.weight"))?;
            Ok(ConvTranspose2x2::new(
                ci,
                co,
                &weight,
                w.take(&format!("{name}.bias"))?,
            ))
        };
        let block = |w: &mut Weights, p: &str, ci, co| ConvBlock::build(w, p, ci, co, norm);
        let lstm = if recurrent {
            Some(ConvLstm {
                gates: conv(w, "conv_gates", 8 * c, 16 * c, 3, true)?,
            })
        } else {
            None
        };
        Ok(Self {
            c,
            inc: block(w, "inc", channels, c)?,
            down1: block(w, "down1.1", c, 2 * c)?,
            down2: block(w, "down2.1", 2 * c, 4 * c)?,
            lstm,
            bot: block(w, "bot", 4 * c, 8 * c)?,
            up1: up(w, "up1", 8 * c, 4 * c)?,
            conv_up1: block(w, "conv_up1", 6 * c, 4 * c)?,
            up2: up(w, "up2", 4 * c, 2 * c)?,
            conv_up2: block(w, "conv_up2", 3 * c, c)?,
            outc: conv(w, "outc", c, channels, 1, true)?,
        })
    }

    /// Runs the U-Net on `x` (`d`, h and w multiples of 4) into `out`; a
    /// recurrent U-Net needs `memory` (of [`Memory`]'s layout), any other
    /// none.
    pub fn forward(
        &self,
        x: &[f32],
        d: Dims,
        out: &mut [f32],
        ws: &mut Workspace,
        memory: Option<Memory<'_>>,
    ) -> Result<()> {
        let c = self.c;
        let full = Dims::new(d.b, c, d.h, d.w);
        let half = Dims::new(d.b, c, d.h / 2, d.w / 2);
        let quarter = Dims::new(d.b, c, d.h / 4, d.w / 4);
        let mem_len = 2 * quarter.with_c(4 * c).len();
        match (&self.lstm, &memory) {
            (None, None) => {}
            (Some(_), Some(m)) if m.state.len() == mem_len && m.next.len() == mem_len => {}
            (Some(_), _) => {
                return Err(Error::InvalidArgument(format!(
                    "this U-Net keeps a ConvLSTM memory: pass h_state and c_state ({mem_len} values for a batch of {} x {} x {}) through forward_with_memory",
                    d.b, d.h, d.w
                )))
            }
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "this U-Net has no memory: call forward, without memory".into(),
                ))
            }
        }
        // The largest conv-block intermediate: c at full size, or 8c at a
        // quarter. It also holds the ConvLSTM's 16c gates at a quarter
        // (exactly c at full size), and `b` its 8c input before `bot` writes
        // there, so the recurrent U-Net needs no buffer of its own.
        let tmp_len = full.len().max(quarter.with_c(8 * c).len());
        let [tmp, x1, p1, x2, p2, x3, b, cat1, u1, cat2, u2] = ws.slots([
            tmp_len,
            full.len(),
            half.len(),
            half.with_c(2 * c).len(),
            quarter.with_c(2 * c).len(),
            quarter.with_c(4 * c).len(),
            quarter.with_c(8 * c).len(),
            half.with_c(6 * c).len(),
            half.with_c(4 * c).len(),
            full.with_c(3 * c).len(),
            full.len(),
        ]);
        self.inc.forward(x, d, tmp, x1);
        max_pool2(x1, full, p1);
        self.down1.forward(p1, half, tmp, x2);
        max_pool2(x2, half.with_c(2 * c), p2);
        self.down2.forward(p2, quarter.with_c(2 * c), tmp, x3);
        let q4 = quarter.with_c(4 * c);
        match (&self.lstm, memory) {
            (Some(lstm), Some(m)) => {
                let gates = &mut tmp[..4 * q4.len()];
                lstm.forward(x3, q4, m.state, m.next, b, gates);
                // The bottleneck runs on h', the first half of the new memory.
                self.bot.forward(&m.next[..q4.len()], q4, tmp, b);
            }
            _ => self.bot.forward(x3, q4, tmp, b),
        }

        // Concatenations put the upsampled tensor first, the skip after it.
        let cat1_image = half.with_c(6 * c).image();
        self.up1.forward(b, quarter.with_c(8 * c), cat1, cat1_image);
        copy_skip(x2, half.with_c(2 * c), cat1, cat1_image);
        self.conv_up1.forward(cat1, half.with_c(6 * c), tmp, u1);

        let cat2_image = full.with_c(3 * c).image();
        self.up2.forward(u1, half.with_c(4 * c), cat2, cat2_image);
        copy_skip(x1, full, cat2, cat2_image);
        self.conv_up2.forward(cat2, full.with_c(3 * c), tmp, u2);
        self.outc.forward(u2, full, out);
        Ok(())
    }
}
/// Copies `skip` (`d`) into the trailing channels of each `cat_image`-sized
/// image of `cat`.
fn copy_skip(skip: &[f32], d: Dims, cat: &mut [f32], cat_image: usize) {
    let n = d.image();
    cat.par_chunks_mut(cat_image)
        .zip(skip.par_chunks(n))
        .for_each(|(dst, src)| dst[cat_image - n..].copy_from_slice(src));
}
