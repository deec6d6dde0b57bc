//! The reference two-level U-Net (see the project brief for its definition).

use engine_api::Result;
use rayon::prelude::*;

use crate::kernels::{max_pool2, Conv2d, ConvTranspose2x2, Dims, GroupNormElu};
use crate::layout::group_count;
use crate::net::conv;
use crate::weights::Weights;
use crate::workspace::Workspace;

/// `Conv3x3 -> GroupNorm -> ELU`, twice.
#[derive(Debug)]
struct ConvBlock {
    first: Conv2d,
    first_norm: GroupNormElu,
    second: Conv2d,
    second_norm: GroupNormElu,
}

impl ConvBlock {
    fn build(w: &mut Weights, prefix: &str, ci: usize, co: usize) -> Result<Self> {
        let p = |i: usize, what: &str| format!("{prefix}.conv_block.{i}{what}");
        let norm = |w: &mut Weights, i: usize| -> Result<GroupNormElu> {
            Ok(GroupNormElu::new(
                group_count(co),
                w.take(&p(i, ".weight"))?,
                w.take(&p(i, ".bias"))?,
            ))
        };
        Ok(Self {
            first: conv(w, &p(0, ""), ci, co, 3, false)?,
            first_norm: norm(w, 1)?,
            second: conv(w, &p(3, ""), co, co, 3, false)?,
            second_norm: norm(w, 4)?,
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

/// `UNet(D, c)`: inc, two pooled levels, a bottleneck, two upsampling levels.
#[derive(Debug)]
pub struct Unet {
    c: usize,
    inc: ConvBlock,
    down1: ConvBlock,
    down2: ConvBlock,
    bot: ConvBlock,
    up1: ConvTranspose2x2,
    conv_up1: ConvBlock,
    up2: ConvTranspose2x2,
    conv_up2: ConvBlock,
    outc: Conv2d,
}

impl Unet {
    /// Builds the U-Net for `channels = 2D` and `hidden = c` from checked weights.
    pub fn build(w: &mut Weights, channels: usize, c: usize) -> Result<Self> {
        let up = |w: &mut Weights, name: &str, ci: usize, co: usize| -> Result<ConvTranspose2x2> {
            let weight = w.take(&format!("{name}.weight"))?;
            Ok(ConvTranspose2x2::new(
                ci,
                co,
                &weight,
                w.take(&format!("{name}.bias"))?,
            ))
        };
        Ok(Self {
            c,
            inc: ConvBlock::build(w, "inc", channels, c)?,
            down1: ConvBlock::build(w, "down1.1", c, 2 * c)?,
            down2: ConvBlock::build(w, "down2.1", 2 * c, 4 * c)?,
            bot: ConvBlock::build(w, "bot", 4 * c, 8 * c)?,
            up1: up(w, "up1", 8 * c, 4 * c)?,
            conv_up1: ConvBlock::build(w, "conv_up1", 6 * c, 4 * c)?,
            up2: up(w, "up2", 4 * c, 2 * c)?,
            conv_up2: ConvBlock::build(w, "conv_up2", 3 * c, c)?,
            outc: conv(w, "outc", c, channels, 1, true)?,
        })
    }

    /// Runs the U-Net on `x` (`d`, h and w multiples of 4) into `out`.
    pub fn forward(&self, x: &[f32], d: Dims, out: &mut [f32], ws: &mut Workspace) {
        let c = self.c;
        let full = Dims::new(d.b, c, d.h, d.w);
        let half = Dims::new(d.b, c, d.h / 2, d.w / 2);
        let quarter = Dims::new(d.b, c, d.h / 4, d.w / 4);
        // The largest conv-block intermediate: c at full size, or 8c at a quarter.
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
        self.bot.forward(x3, quarter.with_c(4 * c), tmp, b);

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
