#!/usr/bin/env python3
"""Writes tests/fixtures/conv_error.json: PyTorch's own float32 error on 3x3 convolutions.

    python python/make_conv_error.py [--out tests/fixtures/conv_error.json] [--emulate]

For each case (the bench's conv3x3 at D = 64, 128 -> 128 channels, and a
U-Net-sized 32 -> 32), the inputs, weights and bias are drawn from the
workspace's keyed generator (``atheria_ref.rng``, an exact port of
``sparse_grid::rng::Rng``), so the Rust test regenerates the very same
float32 values from the seeds. The script convolves them with PyTorch in
float32 and in float64 (``F.conv2d`` with padding 1, the layer of
``Conv3x3Law``) and writes PyTorch's float32 error against float64 (max and
mean absolute) plus checksums of the inputs and of the float64 output, with
which the Rust test checks that it regenerated the inputs and that its own
float64 reference is PyTorch's. The Rust test
(``backend-candle``'s ``kernels::conv`` tests) then asserts that candle's
convolution (Winograd and im2col) is within 2x PyTorch's error.

``--emulate`` also prints the error of Winograd F(2x2, 3x3), F(3x3, 3x3) and
F(4x4, 3x3) emulated in numpy float32 on the same inputs (transforms and
products rounded to float32 at each stage), the measurement behind keeping
F(2x2, 3x3) in the candle backend: it is not written to the fixture.

Deterministic: rerunning writes the same file (up to the torch version field).
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atheria_ref import rng  # noqa: E402

# (name, ci, co, h, w, seed). The seeds of weight and bias are seed + 1 and + 2.
CASES = [
    ("conv3x3_d64", 128, 128, 16, 16, 17),
    ("unet_32", 32, 32, 24, 24, 23),
]


def uniform_vec(seed: int, n: int, lo: float, hi: float) -> np.ndarray:
    """``sparse_grid::rng::Rng::new(seed).uniform_vec(n, lo, hi)``: f32 ``lo + (hi - lo) * u``."""
    u = rng.uniform([np.uint64(seed), np.arange(n, dtype=np.uint64)])
    lo32, hi32 = np.float32(lo), np.float32(hi)
    return (lo32 + (hi32 - lo32) * u).astype(np.float32)


def case_tensors(ci: int, co: int, h: int, w: int, seed: int):
    """x [1, ci, h, w] in [-1, 1), weight [co, ci, 3, 3] and bias [co] in +-1/sqrt(9 ci)."""
    bound = float(np.float32(1.0) / np.sqrt(np.float32(9 * ci)))
    x = uniform_vec(seed, ci * h * w, -1.0, 1.0).reshape(1, ci, h, w)
    weight = uniform_vec(seed + 1, co * ci * 9, -bound, bound).reshape(co, ci, 3, 3)
    bias = uniform_vec(seed + 2, co, -bound, bound)
    return x, weight, bias, bound


def winograd_matrices(points: list[Fraction], m: int):
    """Toom-Cook F(m, 3) on ``points`` plus infinity: A^T [m, n], G [n, 3], B^T [n, n] (n = m + 2).

    A^T and G are Vandermonde; B^T solves A^T diag(G g) B^T d = correlation(d, g)
    exactly. Rows of B^T are scaled to coprime integers (the scale moves into G).
    """
    n = m + 2
    at = [[Fraction(0)] * n for _ in range(m)]
    g = [[Fraction(0)] * 3 for _ in range(n)]
    for i, a in enumerate(points):
        for k in range(m):
            at[k][i] = a**k
        for j in range(3):
            g[i][j] = a**j
    at[m - 1][n - 1] = Fraction(1)
    g[n - 1][2] = Fraction(1)
    # B^T column l: sum_i at[k][i] g[i][j] bt[i][l] = [l == k + j], solved in
    # floats (exact up to rounding) then rationalised.
    kmat = np.array([[float(at[k][i] * g[i][j]) for i in range(n)] for k in range(m) for j in range(3)])
    rhs = np.array([[1.0 if l == k + j else 0.0 for l in range(n)] for k in range(m) for j in range(3)])
    bt = np.linalg.lstsq(kmat, rhs, rcond=None)[0]
    assert np.abs(kmat @ bt - rhs).max() < 1e-9
    btf = [[Fraction(v).limit_denominator(1000) for v in row] for row in bt]
    for i, row in enumerate(btf):
        den = np.lcm.reduce([v.denominator for v in row])
        ints = [int(v * den) for v in row]
        gcd = np.gcd.reduce([abs(v) for v in ints if v])
        scale = Fraction(int(den), int(gcd))
        btf[i] = [v * scale for v in row]
        g[i] = [v / scale for v in g[i]]
    f = lambda mat: np.array([[float(v) for v in row] for row in mat])  # noqa: E731
    return f(at), f(g), f(btf)


def emulate(x, weight, bias, y64, m: int, points) -> tuple[float, float]:
    """Winograd F(m x m, 3x3) in float32 at every stage (weights transformed in float64, as candle does)."""
    at, g, bt = winograd_matrices([Fraction(p) for p in points], m)
    n = m + 2
    _, ci, h, w = x.shape
    u = np.einsum("ia,ocab,jb->ijoc", g, weight.astype(np.float64), g).astype(np.float32)
    th, tw = -(-h // m), -(-w // m)
    pad = np.zeros((ci, th * m + 2, tw * m + 2), np.float32)
    pad[:, 1 : h + 1, 1 : w + 1] = x[0]
    tiles = np.stack([pad[:, ty * m : ty * m + n, tx * m : tx * m + n] for ty in range(th) for tx in range(tw)])
    v = np.einsum("ia,tcab,jb->ijct", bt.astype(np.float32), tiles, bt.astype(np.float32))
    mm = np.matmul(u, v)  # [n, n, co, tiles], float32 products and sums
    y = np.einsum("ki,ijot,lj->tokl", at.astype(np.float32), mm, at.astype(np.float32))
    y = y.reshape(th, tw, -1, m, m).transpose(2, 0, 3, 1, 4).reshape(-1, th * m, tw * m)[:, :h, :w]
    err = np.abs((y + bias[:, None, None]).astype(np.float64) - y64[0])
    return float(err.max()), float(err.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/conv_error.json")
    ap.add_argument("--emulate", action="store_true", help="also print emulated Winograd errors")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cases = []
    for name, ci, co, h, w, seed in CASES:
        x, weight, bias, bound = case_tensors(ci, co, h, w, seed)
        xt, wt, bt = (torch.from_numpy(a) for a in (x, weight, bias))
        y32 = F.conv2d(xt, wt, bt, padding=1)
        y64 = F.conv2d(xt.double(), wt.double(), bt.double(), padding=1)
        err = (y32.double() - y64).abs()
        case = {
            "name": name,
            "ci": ci,
            "co": co,
            "h": h,
            "w": w,
            "seed": seed,
            "bound": bound,
            "torch_f32_max_abs_err": err.max().item(),
            "torch_f32_mean_abs_err": err.mean().item(),
            "x_sum": float(x.astype(np.float64).sum()),
            "weight_sum": float(weight.astype(np.float64).sum()),
            "y64_sum": y64.sum().item(),
            "y64_abs_max": y64.abs().max().item(),
        }
        cases.append(case)
        print(
            f"{name}: torch f32 vs f64 max {case['torch_f32_max_abs_err']:.3e} "
            f"mean {case['torch_f32_mean_abs_err']:.3e} (|y| max {case['y64_abs_max']:.3f})"
        )
        if args.emulate:
            y64n = y64.numpy()
            for label, m, points in [
                ("F(2x2) 0,+-1", 2, ["0", "1", "-1"]),
                ("F(3x3) 0,+-1,1/2", 3, ["0", "1", "-1", "1/2"]),
                ("F(4x4) 0,+-1,+-1/2", 4, ["0", "1", "-1", "1/2", "-1/2"]),
                ("F(4x4) 0,+-1,+-2", 4, ["0", "1", "-1", "2", "-2"]),
                ("F(4x4) 0,+-1,1/2,-2", 4, ["0", "1", "-1", "1/2", "-2"]),
            ]:
                mx, mean = emulate(x, weight, bias, y64n, m, points)
                print(
                    f"  emulated {label:22} max {mx:.3e} ({mx / case['torch_f32_max_abs_err']:.2f}x torch) "
                    f"mean {mean:.3e} ({mean / case['torch_f32_mean_abs_err']:.2f}x torch)"
                )
    doc = {
        "what": "PyTorch's float32 3x3 conv (padding 1, bias) error against float64 on inputs "
        "from sparse_grid::rng::Rng: x = Rng::new(seed).uniform_vec(ci*h*w, -1, 1), "
        "weight = Rng::new(seed+1).uniform_vec(co*ci*9, -bound, bound), "
        "bias = Rng::new(seed+2).uniform_vec(co, -bound, bound); written by python/make_conv_error.py",
        "torch": torch.__version__,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
