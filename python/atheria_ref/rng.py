"""The workspace's counter-based random generator, ported exactly from Rust.

A port of ``crates/sparse-grid/src/rng.rs`` (``mix``, ``bits``, ``unit``,
``uniform``, ``normal``, ``cell_key``): every value is a pure function of a key
of 64-bit words, so the reference, the engines and every backend draw the same
number for the same cell. Vectorised: each word of a key may be a numpy array
(the words broadcast together) and the result has the broadcast shape.

- ``bits(key)``: 64 bits (uint64), SplitMix64's finaliser folded over the words.
- ``uniform(key)``: float32 in [0, 1), ``(bits >> 40) * 2^-24`` (exact in f32).
- ``normal(key)``: float32, Box-Muller in float64 on two hashes, then cast.
- ``cell_key(seed, x, y, step, channel, stream)``: the key of one lattice value
  (negative x, y as two's complement, like Rust's ``x as u64``).

``normal`` calls Python's ``math.log`` and ``math.cos`` (the C library's, as
Rust's ``f64::ln`` and ``f64::cos`` do on Linux) element by element, so the
float64 intermediates are those of Rust and the float32 result is bit-exact.
"""

from __future__ import annotations

import math

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NORMAL_SALT = np.uint64(0x5851F42D4C957F2D)
_S11, _S27, _S30, _S31, _S40 = (np.uint64(s) for s in (11, 27, 30, 31, 40))


def as_word(v) -> np.ndarray:
    """A key word as uint64: integers wrap to u64 (negative ones as two's complement)."""
    a = np.asarray(v)
    if a.dtype == np.uint64:
        return a
    if a.dtype.kind == "O":  # Python ints beyond int64
        return np.vectorize(lambda z: np.uint64(int(z) % (1 << 64)), otypes=[np.uint64])(a)
    if a.dtype.kind not in "iub":
        raise TypeError(f"a key word must be an integer, not {a.dtype}")
    return a.astype(np.int64).astype(np.uint64) if a.dtype.kind == "i" else a.astype(np.uint64)


def mix(z) -> np.ndarray:
    """SplitMix64's finaliser (wrapping u64 arithmetic), element-wise."""
    z = as_word(z)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def bits(key) -> np.ndarray:
    """64 uniformly distributed bits (uint64) determined by the words of ``key``."""
    words = [as_word(k) for k in key]
    h = np.broadcast_to(_GOLDEN, np.broadcast_shapes(*(w.shape for w in words))).copy() if words else _GOLDEN
    with np.errstate(over="ignore"):
        for k in words:
            h = mix(h ^ mix(k + _GOLDEN))
    return h


def unit(h) -> np.ndarray:
    """A uniform float64 in (0, 1) from the top 53 bits of ``h``."""
    return ((as_word(h) >> _S11).astype(np.float64) + 0.5) * (1.0 / float(1 << 53))


def uniform(key) -> np.ndarray:
    """A float32 in [0, 1) determined by ``key`` (24 bits: every value is an exact f32)."""
    return (bits(key) >> _S40).astype(np.float32) * np.float32(1.0 / float(1 << 24))


def normal(key) -> np.ndarray:
    """A standard normal float32 determined by ``key`` (Box-Muller in float64, then cast)."""
    h = bits(key)
    u1 = unit(h)
    u2 = unit(mix(h ^ _NORMAL_SALT))
    shape = np.shape(u1)
    log_u1 = np.fromiter(map(math.log, np.ravel(u1)), dtype=np.float64, count=u1.size).reshape(shape)
    cos_u2 = np.fromiter(map(math.cos, np.ravel(math.tau * u2)), dtype=np.float64, count=u2.size).reshape(shape)
    return (np.sqrt(-2.0 * log_u1) * cos_u2).astype(np.float32)


def cell_key(seed, x, y, step, channel, stream) -> list[np.ndarray]:
    """The key of one lattice value: [seed, x as u64, y as u64, step, channel, stream]."""
    return [as_word(seed), as_word(x), as_word(y), as_word(step), as_word(channel), as_word(stream)]
