//! Exact reference backends for the engine tests: the reference modules'
//! arithmetic written out in plain Rust, batched, summing in a fixed order so
//! that a cell's output does not depend on where its field lies in a batch.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use engine_api::{
    Architecture, BatchShape, ComputeBackend, Device, ModelFiles, ModelSpec, Result, UpdateRule,
    MODEL_FORMAT,
};

/// The workspace's one generator, for weights and patterns.
pub use sparse_grid::rng::Rng;

pub fn spec(arch: Architecture, d: usize, hidden: Option<usize>, update: UpdateRule) -> ModelSpec {
    ModelSpec {
        format: MODEL_FORMAT.into(),
        name: format!("reference-{arch}"),
        architecture: arch,
        d_state: d,
        hidden_channels: hidden,
        update,
        receptive_radius: arch.implied_radius().unwrap_or(None),
        spatial_multiple: 1,
        files: ModelFiles::default(),
        memory: Vec::new(),
    }
}

/// The network a [`Reference`] runs.
pub enum Net {
    /// `conv.weight` [2D, 2D, 3, 3] and `conv.bias` [2D], zero padding.
    Conv3x3 { w: Vec<f32>, b: Vec<f32> },
    /// The same 3x3 conv with its taps `dilation` cells apart: receptive
    /// radius `dilation`, for a halo wider than a tile.
    Dilated {
        w: Vec<f32>,
        b: Vec<f32>,
        dilation: usize,
    },
    /// The fixed neighbour sum, then 1x1 convs 16D -> h -> h -> 2D with ELU.
    DeepQca {
        h: usize,
        w0: Vec<f32>,
        b0: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
        w4: Vec<f32>,
        b4: Vec<f32>,
    },
    /// A global law: out[o] = sum_i a[o][i] * mean(in[i]) + sum_i c[o][i] * in[i].
    Global { a: Vec<f32>, c: Vec<f32> },
}

/// A reference backend. `poison`: an input value in channel 0 that makes the
/// output at that cell NaN (to test the engines' checks).
pub struct Reference {
    pub spec: ModelSpec,
    pub net: Net,
    pub poison: Option<f32>,
    pub calls: AtomicU64,
}

impl Reference {
    pub fn new(spec: ModelSpec, net: Net) -> Self {
        Self {
            spec,
            net,
            poison: None,
            calls: AtomicU64::new(0),
        }
    }

    /// A conv3x3 law with random weights of size `scale` and zero bias.
    pub fn conv3x3(d: usize, update: UpdateRule, scale: f32, seed: u64) -> Self {
        let c = 2 * d;
        let mut rng = Rng::new(seed);
        let w = rng.uniform_vec(c * c * 9, -scale, scale);
        Self::new(
            spec(Architecture::Conv3x3, d, None, update),
            Net::Conv3x3 { w, b: vec![0.0; c] },
        )
    }

    /// A 3x3 conv law whose taps lie `dilation` cells apart (receptive
    /// radius `dilation`), random weights of size `scale`, zero bias.
    pub fn dilated(d: usize, dilation: usize, scale: f32, seed: u64) -> Self {
        let c = 2 * d;
        let mut rng = Rng::new(seed);
        let w = rng.uniform_vec(c * c * 9, -scale, scale);
        let mut spec = spec(Architecture::Custom, d, None, UpdateRule::Additive);
        spec.receptive_radius = Some(dilation);
        Self::new(
            spec,
            Net::Dilated {
                w,
                b: vec![0.0; c],
                dilation,
            },
        )
    }

    /// A deep_qca law with random weights and zero biases.
    pub fn deep_qca(d: usize, h: usize, update: UpdateRule, scale: f32, seed: u64) -> Self {
        let c = 2 * d;
        let mut rng = Rng::new(seed);
        let mut v = |n: usize, s: f32| -> Vec<f32> { rng.uniform_vec(n, -s, s) };
        let net = Net::DeepQca {
            h,
            w0: v(h * 8 * c, scale / 4.0),
            b0: vec![0.0; h],
            w2: v(h * h, scale),
            b2: vec![0.0; h],
            w4: v(c * h, scale),
            b4: vec![0.0; c],
        };
        Self::new(spec(Architecture::DeepQca, d, Some(h), update), net)
    }

    /// The tiny global law, spatial multiple `m`.
    pub fn global(d: usize, m: usize, seed: u64) -> Self {
        let c = 2 * d;
        let mut rng = Rng::new(seed);
        let a = rng.uniform_vec(c * c, -3.0, 3.0);
        let cc = rng.uniform_vec(c * c, -0.5, 0.5);
        let mut spec = spec(Architecture::Custom, d, None, UpdateRule::Additive);
        spec.receptive_radius = None;
        spec.spatial_multiple = m;
        Self::new(spec, Net::Global { a, c: cc })
    }

    /// The weights as PyTorch names them, for loading into a real backend.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let c = self.spec.channels();
        let t = |name: &str, shape: Vec<usize>, v: &Vec<f32>| (name.to_string(), shape, v.clone());
        match &self.net {
            Net::Conv3x3 { w, b } => vec![
                t("conv.weight", vec![c, c, 3, 3], w),
                t("conv.bias", vec![c], b),
            ],
            Net::DeepQca {
                h,
                w0,
                b0,
                w2,
                b2,
                w4,
                b4,
            } => {
                let ring: Vec<f32> = (0..8 * c)
                    .flat_map(|_| (0..9).map(|k| if k == 4 { 0.0 } else { 1.0 }))
                    .collect();
                vec![
                    t("conv_neighbors.weight", vec![8 * c, 1, 3, 3], &ring),
                    t("processing_net.0.weight", vec![*h, 8 * c, 1, 1], w0),
                    t("processing_net.0.bias", vec![*h], b0),
                    t("processing_net.2.weight", vec![*h, *h, 1, 1], w2),
                    t("processing_net.2.bias", vec![*h], b2),
                    t("processing_net.4.weight", vec![c, *h, 1, 1], w4),
                    t("processing_net.4.bias", vec![c], b4),
                ]
            }
            Net::Global { .. } => panic!("the test-only global law has no PyTorch module"),
            Net::Dilated { .. } => panic!("the test-only dilated law has no PyTorch module"),
        }
    }

    /// The same law on the candle backend.
    pub fn candle(&self) -> backend_candle::CandleBackend {
        let options = engine_api::BackendOptions::default().with_threads(2);
        backend_candle::CandleBackend::from_tensors(self.spec.clone(), self.tensors(), &options)
            .expect("the reference weights load on candle")
    }

    fn field(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let c2 = self.spec.channels();
        let n = h * w;
        match &self.net {
            Net::Conv3x3 { w: k, b } => conv3x3(x, h, w, c2, (k, b), 1, out),
            Net::Dilated { w: k, b, dilation } => conv3x3(x, h, w, c2, (k, b), *dilation, out),
            Net::DeepQca {
                h: hid,
                w0,
                b0,
                w2,
                b2,
                w4,
                b4,
            } => {
                let elu = |v: f32| if v > 0.0 { v } else { v.exp_m1() };
                let mut feat = vec![0f32; 8 * c2];
                let (mut h0, mut h1) = (vec![0f32; *hid], vec![0f32; *hid]);
                for y in 0..h {
                    for xx in 0..w {
                        for i in 0..c2 {
                            let mut s = 0.0;
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (sy, sx) = (y as isize + ky - 1, xx as isize + kx - 1);
                                    if (ky, kx) == (1, 1)
                                        || sy < 0
                                        || sx < 0
                                        || sy >= h as isize
                                        || sx >= w as isize
                                    {
                                        continue;
                                    }
                                    s += x[i * n + sy as usize * w + sx as usize];
                                }
                            }
                            feat[8 * i..8 * i + 8].fill(s);
                        }
                        for j in 0..*hid {
                            let v: f32 = (0..8 * c2).map(|f| w0[j * 8 * c2 + f] * feat[f]).sum();
                            h0[j] = elu(v + b0[j]);
                        }
                        for j in 0..*hid {
                            let v: f32 = (0..*hid).map(|f| w2[j * hid + f] * h0[f]).sum();
                            h1[j] = elu(v + b2[j]);
                        }
                        for o in 0..c2 {
                            let v: f32 = (0..*hid).map(|f| w4[o * hid + f] * h1[f]).sum();
                            out[o * n + y * w + xx] = v + b4[o];
                        }
                    }
                }
            }
            Net::Global { a, c } => {
                let means: Vec<f32> = (0..c2)
                    .map(|i| x[i * n..(i + 1) * n].iter().sum::<f32>() / n as f32)
                    .collect();
                for o in 0..c2 {
                    let g: f32 = (0..c2).map(|i| a[o * c2 + i] * means[i]).sum();
                    for p in 0..n {
                        let l: f32 = (0..c2).map(|i| c[o * c2 + i] * x[i * n + p]).sum();
                        out[o * n + p] = g + l;
                    }
                }
            }
        }
        if let Some(v) = self.poison {
            for p in 0..n {
                if x[p] == v {
                    out[p] = f32::NAN;
                }
            }
        }
    }
}

impl ComputeBackend for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        assert!(
            rayon::current_thread_index().is_none(),
            "forward called from inside a rayon worker"
        );
        self.calls.fetch_add(1, Ordering::Relaxed);
        let fl = shape.field_len();
        for (x, y) in input.chunks_exact(fl).zip(output.chunks_exact_mut(fl)) {
            self.field(x, shape.height, shape.width, y);
        }
        Ok(())
    }
}

/// A 3x3 conv with zero padding whose taps lie `dil` cells apart, on one
/// `[c2][h][w]` field: `(k, b)` are the weight `[c2][c2][3][3]` and bias.
#[allow(clippy::too_many_arguments)]
fn conv3x3(
    x: &[f32],
    h: usize,
    w: usize,
    c2: usize,
    (k, b): (&[f32], &[f32]),
    dil: usize,
    out: &mut [f32],
) {
    let n = h * w;
    let dil = dil as isize;
    for o in 0..c2 {
        let out = &mut out[o * n..(o + 1) * n];
        out.fill(b[o]);
        for i in 0..c2 {
            let src = &x[i * n..(i + 1) * n];
            for ky in 0..3 {
                for kx in 0..3 {
                    let wv = k[((o * c2 + i) * 3 + ky) * 3 + kx];
                    for y in 0..h {
                        let sy = y as isize + (ky as isize - 1) * dil;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        for xx in 0..w {
                            let sx = xx as isize + (kx as isize - 1) * dil;
                            if sx < 0 || sx >= w as isize {
                                continue;
                            }
                            out[y * w + xx] += wv * src[sy as usize * w + sx as usize];
                        }
                    }
                }
            }
        }
    }
}

/// Every cell of `e` as (x, y, bits of its values), sorted.
pub fn cells(e: &sparse_grid::SparseEngine) -> Vec<(i32, i32, Vec<u32>)> {
    let mut v: Vec<_> = e
        .cells()
        .map(|(x, y, c)| {
            let bits = c.iter().flat_map(|(re, im)| [re.to_bits(), im.to_bits()]);
            (x, y, bits.collect())
        })
        .collect();
    v.sort_unstable_by_key(|c| (c.0, c.1));
    v
}
