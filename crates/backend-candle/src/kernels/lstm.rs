//! The ConvLSTM cell's pointwise half: gates to the next cell and hidden state.
//!
//! The gates' 3x3 convolution is an ordinary [`Conv2d`](super::Conv2d); this
//! kernel applies Atheria's `UNetConvLSTM` update to its output:
//! `c' = sigmoid(f) * c + sigmoid(i) * tanh(g)`, `h' = sigmoid(o) * tanh(c')`.

use rayon::prelude::*;

use super::norm::exp_neg;
use super::plan::Dims;

/// Writes the next cell state `c_next` and hidden state `h_next` (both `d`,
/// `d.c` the memory channels) from `gates` (`d.with_c(4 * d.c)`, channel
/// chunks in the order forget, input, output, candidate, as
/// `torch.chunk(gates, 4, dim=1)` splits them) and the cell state `c` (`d`).
///
/// Must run inside the backend's rayon pool.
pub fn conv_lstm_cell(gates: &[f32], c: &[f32], d: Dims, h_next: &mut [f32], c_next: &mut [f32]) {
    assert_eq!(gates.len(), 4 * d.len());
    assert_eq!(c.len(), d.len());
    assert_eq!(h_next.len(), d.len());
    assert_eq!(c_next.len(), d.len());
    let hw = d.plane();
    if hw == 0 {
        return;
    }
    // One task per (image, channel) plane; the plane's four gates lie at the
    // same channel of each chunk of that image's gates.
    h_next
        .par_chunks_mut(hw)
        .zip(c_next.par_chunks_mut(hw))
        .zip(c.par_chunks(hw))
        .enumerate()
        .for_each(|(i, ((h_out, c_out), c_in))| {
            let (img, ch) = (i / d.c, i % d.c);
            let gate = |k: usize| &gates[((img * 4 + k) * d.c + ch) * hw..][..hw];
            let (f, ig, o, g) = (gate(0), gate(1), gate(2), gate(3));
            for p in 0..hw {
                let cn = sigmoid(f[p]) * c_in[p] + sigmoid(ig[p]) * tanh(g[p]);
                c_out[p] = cn;
                h_out[p] = sigmoid(o[p]) * tanh(cn);
            }
        });
}

/// The logistic function, without overflow for any `x`, NaN kept NaN.
///
/// `exp` is only ever taken of `-|x|`, so it lies in (0, 1]: for `x >= 0`
/// `1 / (1 + e^-x)`, for `x < 0` the same identity times `e^x`.
#[inline]
fn sigmoid(x: f32) -> f32 {
    let e = exp_neg(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x < 0.0 {
        e * s
    } else {
        s
    }
}

/// Below this `|x|` [`tanh`] uses its Taylor series, where `1 - e^-2|x|`
/// would lose digits to cancellation.
const TANH_SERIES_BELOW: f32 = 0.0625;

/// `tanh(x)` within a few f32 ulp, without overflow for any `x`, NaN kept NaN.
///
/// `(1 - e) / (1 + e)` with `e = exp(-2|x|)` in (0, 1], sign restored; for
/// small `|x|` the odd series to `x^7` (the next term is below 1e-12 there).
#[inline]
fn tanh(x: f32) -> f32 {
    let a = x.abs();
    if a < TANH_SERIES_BELOW {
        let x2 = x * x;
        // x - x^3/3 + 2x^5/15 - 17x^7/315, by Horner.
        x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))))
    } else {
        let e = exp_neg(-2.0 * a);
        let t = (1.0 - e) / (1.0 + e);
        t.copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sigmoid64(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// A sweep over [-100, 100] with extra points near 0: both functions stay
    /// within 3e-7 absolute (and 1e-6 relative near zero, where the values
    /// themselves are small) of f64's.
    #[test]
    fn sigmoid_and_tanh_match_f64_everywhere() {
        let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-4).collect();
        xs.extend((-1000..=1000).map(|i| i as f32 * 1e-4));
        xs.extend([1e-30, -1e-30, 1e-8, -1e-8, 0.062_499, 0.0625, -0.0625]);
        let (mut ws, mut wt) = (0.0f64, 0.0f64);
        for &x in &xs {
            let xd = x as f64;
            let (s, t) = (sigmoid(x) as f64, tanh(x) as f64);
            ws = ws.max((s - sigmoid64(xd)).abs());
            wt = wt.max((t - xd.tanh()).abs());
            if xd.abs() < 0.0625 {
                // The series' range: relative accuracy, so tiny inputs are exact-ish.
                let rel = (t - xd.tanh()).abs() / xd.tanh().abs().max(f64::MIN_POSITIVE);
                assert!(rel <= 1e-6, "tanh({x}) = {t}, f64 says {}", xd.tanh());
            }
        }
        assert!(ws <= 3e-7, "max |sigmoid - f64| {ws:e}");
        assert!(wt <= 3e-7, "max |tanh - f64| {wt:e}");
    }

    #[test]
    fn saturates_without_overflow_and_keeps_nan() {
        for big in [90.0f32, 1e4, 1e30, f32::INFINITY] {
            assert_eq!(sigmoid(big), 1.0);
            assert!(
                sigmoid(-big) >= 0.0 && sigmoid(-big) < 1e-37,
                "{}",
                sigmoid(-big)
            );
            assert_eq!(tanh(big), 1.0);
            assert_eq!(tanh(-big), -1.0);
        }
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(tanh(0.0), 0.0);
        assert!(
            sigmoid(f32::NAN).is_nan(),
            "NaN must reach the engine's check"
        );
        assert!(tanh(f32::NAN).is_nan(), "NaN must reach the engine's check");
    }

    /// The cell in f64, written from the equations.
    fn naive_cell(gates: &[f32], c: &[f32], d: Dims) -> (Vec<f64>, Vec<f64>) {
        let hw = d.plane();
        let (mut h_next, mut c_next) = (vec![0.0; d.len()], vec![0.0; d.len()]);
        for b in 0..d.b {
            for ch in 0..d.c {
                for p in 0..hw {
                    let g = |k: usize| gates[((b * 4 + k) * d.c + ch) * hw + p] as f64;
                    let at = (b * d.c + ch) * hw + p;
                    let cn = sigmoid64(g(0)) * c[at] as f64 + sigmoid64(g(1)) * g(3).tanh();
                    c_next[at] = cn;
                    h_next[at] = sigmoid64(g(2)) * cn.tanh();
                }
            }
        }
        (h_next, c_next)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        /// Any shape, gates up to +-30 and cell states up to +-10: h' and c'
        /// within 2e-6 (relative above 1) of the f64 cell.
        #[test]
        fn cell_matches_naive(
            b in 1usize..=3, ch in 1usize..=5, h in 1usize..=6, w in 1usize..=6, seed: u64,
        ) {
            let d = Dims::new(b, ch, h, w);
            let mut s = seed | 1;
            let mut next = || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            };
            let gates: Vec<f32> = (0..4 * d.len()).map(|_| next() * 30.0).collect();
            let c: Vec<f32> = (0..d.len()).map(|_| next() * 10.0).collect();
            let (mut hn, mut cn) = (vec![f32::NAN; d.len()], vec![f32::NAN; d.len()]);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            pool.install(|| conv_lstm_cell(&gates, &c, d, &mut hn, &mut cn));
            let (wh, wc) = naive_cell(&gates, &c, d);
            for i in 0..d.len() {
                prop_assert!((hn[i] as f64 - wh[i]).abs() <= 2e-6, "h at {i}: {} vs {}", hn[i], wh[i]);
                prop_assert!((cn[i] as f64 - wc[i]).abs() <= 2e-6 * wc[i].abs().max(1.0), "c at {i}: {} vs {}", cn[i], wc[i]);
            }
        }
    }
}
