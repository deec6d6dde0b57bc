#!/usr/bin/env python3
"""Tests of the RNG port and the instrument reference (docs/instruments.md).

    /work/main/.venv/bin/python python/test_instruments.py     (also run by test_python_tools.py)
"""

from __future__ import annotations

import math
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from atheria_ref import instruments as I  # noqa: E402
from atheria_ref import rng  # noqa: E402

#: (key, bits, uniform as f32 bits, normal as f32 bits). Written by the Python port
#: (python/atheria_ref/rng.py); for other ports to compare with.
RNG_VECTORS = [
    ([11, 0], 1692379982054866315, 0x3DBBE450, 0xBF660F41),
    ([7, 2**64 - 3, 4, 2, 1, 0], 3174578408770525785, 0x3E303978, 0x3F834E33),  # cell_key(7, -3, 4, 2, 1, 0)
    ([0, 0, 0, 0, 0, 5], 4016205395182202196, 0x3E5EF1B4, 0xBF3D034A),
    ([42, 2**64 - 40, 1000, 7, 3, 10], 8150300509043164547, 0x3EE2375E, 0xBF984DD9),  # cell_key(42, -40, 1000, ...)
    ([2**64 - 1, 2**64 - 1, 2**63, 2**63, 0, 11], 1449682603667303050, 0x3DA0F270, 0x3FE1F558),  # x -1, y i64::MIN
    ([12345], 11902691426747243822, 0x3F252EDA, 0x3F66B1E7),
    ([3, 5, 9, 12, 0, 7], 11562910714452994987, 0x3F2077B6, 0x3EE4D93E),
    ([1, 2, 3, 4, 5, 6, 7, 8], 11918082170363421260, 0x3F256588, 0xBE5C2C69),
]


def f32_bits(v) -> int:
    return int(np.float32(v).view(np.uint32))


def random_frame(h, w, d, seed=0, origin=(0, 0)):
    rs = np.random.default_rng(seed)
    psi = rs.normal(size=(h, w, d)) + 1j * rs.normal(size=(h, w, d))
    psi /= np.sqrt(np.sum(np.abs(psi) ** 2, axis=-1, keepdims=True))
    return I.Frame(psi.astype(np.complex64), np.ones((h, w), dtype=bool), origin)


def zero_frame(h, w, d, origin=(0, 0)):
    return I.Frame(np.zeros((h, w, d), np.complex64), np.ones((h, w), dtype=bool), origin)


class RngTest(unittest.TestCase):
    def test_vectors(self):
        for key, b, u, n in RNG_VECTORS:
            with self.subTest(key=key):
                self.assertEqual(int(rng.bits(key)), b)
                self.assertEqual(f32_bits(rng.uniform(key)), u)
                self.assertEqual(f32_bits(rng.normal(key)), n)

    def test_cell_key_wraps_negative_coordinates_and_vectorises(self):
        self.assertEqual([int(w) for w in rng.cell_key(7, -3, 4, 2, 1, 0)], RNG_VECTORS[1][0])
        xs = np.arange(-5, 5)
        many = rng.normal(rng.cell_key(3, xs[:, None], 1000, 2, np.arange(4)[None, :], 6))
        self.assertEqual(many.shape, (10, 4))
        self.assertEqual(many.dtype, np.float32)
        for i, x in enumerate(xs):
            for c in range(4):
                self.assertEqual(many[i, c], rng.normal(rng.cell_key(3, int(x), 1000, 2, c, 6)))

    def test_moments(self):
        n = rng.normal(rng.cell_key(1, np.arange(50_000), 0, 0, 0, 0)).astype(np.float64)
        u = rng.uniform(rng.cell_key(1, np.arange(50_000), 0, 0, 0, 1)).astype(np.float64)
        self.assertLess(abs(n.mean()), 0.02)
        self.assertLess(abs(n.var() - 1), 0.03)
        self.assertTrue(((u >= 0) & (u < 1)).all())
        self.assertLess(abs(u.mean() - 0.5), 0.01)


class ToolStringTest(unittest.TestCase):
    def test_the_spec_examples_parse(self):
        cases = {
            "vortex:x=40,y=40,radius=6,strength=1@step=50":
                ("vortex", {"x": 40, "y": 40, "radius": 6, "strength": 1.0}, 50),
            "wave:k_x=3,k_y=0": ("wave", {"k_x": 3.0, "k_y": 0.0}, None),
            "wave": ("wave", {}, None),
            "collapse:x=10,y=12,intensity=0.3,seed=7": ("collapse", {"x": 10, "y": 12, "intensity": 0.3, "seed": 7}, None),
            "click_out:chance=0.5,seed=2": ("click_out", {"chance": 0.5, "seed": 2}, None),
            "click_out:enabled=false": ("click_out", {"enabled": False}, None),
            "inject_energy:mode=dense_monolith": ("inject_energy", {"mode": "dense_monolith"}, None),
            "phase_vortex:x=64,y=64,charge=-2,core=3": ("phase_vortex", {"x": 64, "y": 64, "charge": -2, "core": 3.0}, None),
            "stamp:x=5,y=5,file=patch.safetensors": ("stamp", {"x": 5, "y": 5, "file": "patch.safetensors"}, None),
            "vortex:x=-3,y=1e0@step=1": None,  # y must be an integer: checked below
        }
        for s, want in cases.items():
            if want is None:
                continue
            with self.subTest(s=s):
                self.assertEqual(I.parse_tool(s), want)
                self.assertEqual(I.parse_tool(I.format_tool(*want)), want)

    def test_errors_name_the_part(self):
        cases = {
            "vortx:x=1,y=1": "unknown tool 'vortx'",
            "vortex:x=1,y=1,radiu=3": "unknown key 'radiu'",
            "vortex:x=1,x=2,y=1": "key 'x' given twice",
            "vortex:x=1": "vortex: missing y",
            "collapse": "collapse: missing x, y",
            "inject_energy:seed=1": "inject_energy: missing mode",
            "stamp:x=1,y=1": "stamp: missing file",
            "vortex:x=1,y=1,strength=abc": "strength 'abc' is not a number",
            "vortex:x=1,y=1e0": "y '1e0' is not an integer",
            "wave:k_x=": "'k_x=' is not key=value",
            "click_out:enabled=yes": "enabled 'yes' must be true or false",
            "inject_energy:mode=soup": "mode 'soup' is not one of",
            "inject_energy:mode=dense_monolith,x=3": "x and y go together",
            "wave@step=0": "the step must be an integer >= 1",
            "wave@step=-1": "the step must be an integer >= 1",
            "wave@step=two": "the step must be an integer >= 1",
            "wave@stop=3": "expected @step=N",
            "collapse:x=1,y=1,seed=-1": "seed -1 must be between 0 and 2^64 - 1",
        }
        for s, message in cases.items():
            with self.subTest(s=s):
                with self.assertRaises(I.ToolError) as e:
                    I.parse_tool(s)
                self.assertIn(message, str(e.exception))

    def test_range_errors(self):
        cases = {
            "vortex:x=1,y=1,radius=0": "vortex: radius 0 must be between 1 and 4096",
            "vortex:x=1,y=1,radius=4097": "vortex: radius 4097 must be between 1 and 4096",
            "vortex:x=1,y=1,strength=-0.5": "vortex: strength -0.5 must be between 0 and 1000",
            "collapse:x=1,y=1,intensity=1.5": "collapse: intensity 1.5 must be between 0 and 1",
            "click_out:chance=-0.1": "click_out: chance -0.1 must be between 0 and 1",
            "click_out:chance=1.01": "click_out: chance 1.01 must be between 0 and 1",
            "phase_vortex:x=1,y=1,charge=0": "phase_vortex: charge 0 must be a non-zero integer",
            "phase_vortex:x=1,y=1,charge=65": "phase_vortex: charge 65 must be a non-zero integer",
            "phase_vortex:x=1,y=1,core=0": "phase_vortex: core 0.0 must be > 0",
        }
        for s, message in cases.items():
            with self.subTest(s=s):
                with self.assertRaises(I.ToolError) as e:
                    I.parse_tool(s)
                self.assertIn(message, str(e.exception))
        with self.assertRaises(I.ToolError) as e:
            I.vortex(zero_frame(4, 4, 2), I.Lattice.bounded((0, 0), 4, 4), 1, 1, strength=math.inf)
        self.assertIn("strength inf must be between 0 and 1000", str(e.exception))
        with self.assertRaises(I.ToolError):
            I.wave(zero_frame(4, 4, 2), I.Lattice.bounded((0, 0), 4, 4), k_x=math.nan)

    def test_coordinates_outside_a_bounded_grid(self):
        lat = I.Lattice.bounded((10, 20), 16, 12)
        frame = random_frame(12, 16, 2, origin=(10, 20))
        for tool in ("vortex:x=26,y=25", "vortex:x=9,y=25", "collapse:x=12,y=32", "phase_vortex:x=12,y=19",
                     "inject_energy:mode=dense_monolith,x=0,y=0", "stamp:x=25,y=20,file=p"):
            with self.subTest(tool=tool):
                with self.assertRaises(I.ToolError) as e:
                    I.apply_tool(frame, tool, lat, 2, patch=(np.zeros((1, 2, 2), np.complex64), np.ones((1, 2))))
                self.assertRegex(str(e.exception), "outside the grid|does not fit")
        # The same tools are fine on the unbounded lattice, and a corner inside is fine.
        I.apply_tool(frame, "vortex:x=26,y=25", I.Lattice.unbounded((10, 20, 25, 31)), 2)
        I.apply_tool(frame, "vortex:x=25,y=31", lat, 2)
        with self.assertRaises(I.ToolError):
            I.apply_tool(frame, "stamp:x=1,y=1,file=p", lat, 2, patch=(np.zeros((1, 1, 3), np.complex64), np.ones((1, 1))))
        with self.assertRaises(I.ToolError):
            I.apply_tool(zero_frame(1, 1, 2), "wave", I.Lattice.unbounded(None), 2)


class ToolTest(unittest.TestCase):
    lat = I.Lattice.bounded((0, 0), 16, 16)

    def test_vortex_strength_zero_scales_the_box_only(self):
        f = random_frame(16, 16, 3, seed=1)
        g = I.apply_tool(f, "vortex:x=6,y=9,radius=3,strength=0", self.lat, 3)
        box = np.zeros((16, 16), bool)
        box[6:12, 3:9] = True
        np.testing.assert_allclose(g.psi[box], 0.2 * f.psi[box], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(g.psi[~box], f.psi[~box])

    def test_vortex_is_the_mock_brush_on_a_zero_field(self):
        g = I.apply_tool(zero_frame(16, 16, 2), "vortex:x=8,y=8,radius=2,strength=1", self.lat, 2)
        u = np.linspace(-1, 1, 4)
        p = np.exp(-2 * u**2) * np.exp(1j * np.pi * u)
        np.testing.assert_allclose(g.psi[6:10, 6:10, 1], 0.8 * np.outer(p, p), atol=1e-7)

    def test_wave_has_modulus_two_tenths_on_a_zero_field(self):
        g = I.apply_tool(zero_frame(6, 10, 2), "wave:k_x=2,k_y=-1", I.Lattice.bounded((0, 0), 10, 6), 2)
        np.testing.assert_allclose(np.abs(g.psi), 0.2, rtol=1e-6)
        # Column 5 sits at u = linspace(-1, 1, 20)[10 - 5 + 5] = 1/19, row 3 at v = linspace(-1, 1, 12)[6] = 1/11.
        self.assertAlmostEqual(float(np.angle(g.psi[3, 5, 0])), 2 / 19 - 1 / 11, places=6)
        self.assertAlmostEqual(float(np.angle(g.psi[0, 0, 0])), 2 * (-1 + 10 / 19) - (-1 + 6 / 11), places=6)

    def test_collapse_region_and_noise(self):
        lat = self.lat
        self.assertEqual(I.collapse_region(lat, 8), (3, 14))
        self.assertEqual(I.collapse_region(lat, 2), (0, 11))
        self.assertEqual(I.collapse_region(lat, 14), (5, 16))
        self.assertEqual(I.collapse_region(I.Lattice.bounded((0, 0), 7, 3), 3), (0, 7))
        self.assertEqual(I.collapse_region(I.Lattice.unbounded((0, 0, 15, 15)), 14), (9, 20))
        f = random_frame(16, 16, 4, seed=2)
        g = I.apply_tool(f, "collapse:x=2,y=10,intensity=0.8,seed=5", lat, 4)
        changed = np.any(g.psi != f.psi, axis=-1)
        self.assertEqual(sorted(zip(*np.nonzero(changed))), [(10, c) for c in range(11)])
        noise = 0.8 * complex(rng.normal(rng.cell_key(5, 4, 10, 0, 1, 5)),
                              rng.normal(rng.cell_key(5, 4, 10, 0, 1, 6))) / math.sqrt(2)
        self.assertEqual(g.psi[10, 4, 1], np.complex64(complex(f.psi[10, 4, 1]) + noise))
        # Noise statistics on a big unbounded row: each part has std intensity / sqrt(2).
        zero = I.Frame(np.zeros((1, 1, 256), np.complex64), np.ones((1, 1), bool), (0, 0))
        n = I.collapse(zero, I.Lattice.unbounded((0, 0, 0, 0)), 0, 0, 0.6, 1).psi
        self.assertAlmostEqual(float(n.real.std()), 0.6 / math.sqrt(2), delta=0.05)
        self.assertEqual(n.shape, (1, 11, 256))

    def test_click_out(self):
        f = random_frame(16, 16, 2, seed=3)
        for s in range(1, 30):
            g = I.click_out(f, {"chance": 0.0, "seed": 1}, self.lat, s)
            np.testing.assert_array_equal(g.psi, f.psi)
        g = I.click_out(f, {"chance": 1.0, "enabled": False}, self.lat, 5)
        np.testing.assert_array_equal(g.psi, f.psi)
        g = I.click_out(f, {"chance": 1.0, "seed": 4}, self.lat, 5)
        changed = np.any(g.psi != f.psi, axis=-1)
        self.assertTrue(0 < changed.sum() <= 16)
        # Every value after is one of the values before (a permutation with repeats).
        before = {tuple(v) for v in f.psi.reshape(-1, 2).tolist()}
        self.assertTrue(all(tuple(v) in before for v in g.psi.reshape(-1, 2).tolist()))
        # The pairs, applied by hand: src takes dst, then dst takes src, later writes win.
        sx, sy, dx, dy = I.click_out_pairs(4, 5, (0, 0, 16, 16))
        want = f.psi.copy()
        sv, dv = f.psi[sy, sx].copy(), f.psi[dy, dx].copy()
        for k in range(8):
            want[sy[k], sx[k]] = dv[k]
        for k in range(8):
            want[dy[k], dx[k]] = sv[k]
        np.testing.assert_array_equal(g.psi, want)
        with self.assertRaises(I.ToolError):
            I.apply_tool(f, "click_out:chance=1", self.lat, 2)  # no @step

    def test_symmetric_seed_is_mirror_symmetric(self):
        lat = I.Lattice.bounded((0, 0), 40, 30)
        g = I.apply_tool(zero_frame(30, 40, 3), "inject_energy:mode=symmetric_seed,seed=9", lat, 3)
        cx, cy = 20, 15
        self.assertEqual(int(np.any(g.psi != 0, axis=-1).sum()), 4 * 4 * 4)  # S = min(8, 40 // 10) = 4
        np.testing.assert_array_equal(g.psi[:, 1:], g.psi[:, 1:][:, ::-1])  # x -> 2 cx - x (cx = 20)
        np.testing.assert_array_equal(g.psi[1:], g.psi[1:][::-1])  # y -> 2 cy - y (cy = 15)
        self.assertTrue(np.all(g.psi[cy, :] == 0) and np.all(g.psi[:, cx] == 0))

    def test_energy_modes_write_their_boxes(self):
        lat = I.Lattice.bounded((0, 0), 40, 40)
        g = I.apply_tool(zero_frame(40, 40, 2), "inject_energy:mode=dense_monolith,seed=1", lat, 2)
        written = np.any(g.psi != 0, axis=-1)
        self.assertEqual(sorted(set(np.nonzero(written)[0])), list(range(15, 25)))  # S = 5, cy = 20
        self.assertAlmostEqual(float(np.abs(g.psi[written]).std()), 0.2 * 0.65, delta=0.05)
        g = I.apply_tool(zero_frame(40, 40, 2), "inject_energy:mode=primordial_soup,seed=1", lat, 2)
        written = np.nonzero(np.any(g.psi != 0, axis=-1))
        self.assertTrue(10 < len(written[0]) < 200)
        self.assertTrue(all(10 <= v < 30 for v in np.concatenate(written)))  # R = 10 around (20, 20)
        # Unbounded: the caps, around the extent's centre, and the frame grows.
        g = I.apply_tool(zero_frame(2, 2, 2, origin=(5, 5)), "inject_energy:mode=dense_monolith",
                         I.Lattice.unbounded((5, 5, 6, 6)), 2)
        self.assertEqual((g.origin, g.psi.shape[:2]), ((-4, -4), (20, 20)))

    def test_phase_vortex_winds_charge_times(self):
        for charge in (1, -2, 3):
            g = I.apply_tool(zero_frame(21, 21, 2), f"phase_vortex:x=10,y=10,charge={charge},core=2",
                             I.Lattice.bounded((0, 0), 21, 21), 2)
            loop = [(10 + dx, 5) for dx in range(-5, 5)] + [(15, 5 + dy) for dy in range(10)] + \
                   [(15 - dx, 15) for dx in range(10)] + [(5, 15 - dy) for dy in range(10)]  # anticlockwise in (x, y)
            ph = np.array([np.angle(g.psi[y, x, 0]) for x, y in loop + loop[:1]])
            winding = np.sum(np.angle(np.exp(1j * np.diff(ph)))) / (2 * np.pi)
            self.assertAlmostEqual(winding, charge, places=6)
            self.assertEqual(g.psi[10, 10, 0], 0)
            np.testing.assert_allclose(np.abs(g.psi[10, 20, 0]), np.tanh(5) / math.sqrt(2), rtol=1e-6)
        # A normalised field keeps its direction in the channels.
        f = random_frame(9, 9, 3, seed=4)
        g = I.apply_tool(f, "phase_vortex:x=4,y=4,charge=1,core=1", I.Lattice.bounded((0, 0), 9, 9), 3)
        ratio = np.abs(g.psi[0, 0]) / np.abs(f.psi[0, 0])
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)

    def test_unbounded_tools_create_matter_and_grow_the_frame(self):
        f = random_frame(3, 4, 2, origin=(-10, 50))
        lat = I.Lattice.unbounded(f.box)
        g = I.apply_tool(f, "vortex:x=-11,y=50,radius=2", lat, 2)
        self.assertEqual((g.origin, g.psi.shape[:2]), ((-13, 48), (5, 7)))
        self.assertEqual(int(g.occupied.sum()), 12 + 16 - 2)  # box rows 48..51, cols -13..-10
        g = I.apply_tool(f, "phase_vortex:x=0,y=0,charge=1,core=0.5", lat, 2)
        self.assertEqual((g.origin, g.psi.shape[:2]), ((-10, -2), (55, 13)))
        self.assertEqual(int(g.occupied.sum()), 12 + 25)
        patch = (np.ones((2, 3, 2), np.complex64), np.array([[1, 0, 1], [1, 1, 1]], bool))
        g = I.apply_tool(f, "stamp:x=-7,y=52,file=p", lat, 2, patch=patch)
        self.assertEqual((g.origin, g.psi.shape[:2]), ((-10, 50), (4, 6)))
        np.testing.assert_array_equal(g.occupied[2:4, 3:6], patch[1])
        empty = I.Frame(np.zeros((0, 0, 2), np.complex64), np.zeros((0, 0), bool), (0, 0))
        g = I.apply_tool(empty, "vortex:x=100,y=-7,radius=2", I.Lattice.unbounded(None), 2)
        self.assertEqual((g.origin, g.psi.shape[:2], int(g.occupied.sum())), ((98, -9), (4, 4), 16))
        g = I.apply_tool(empty, "inject_energy:mode=dense_monolith", I.Lattice.unbounded(None), 2)
        self.assertEqual((g.origin, g.psi.shape[:2]), ((-10, -10), (20, 20)))  # around (0, 0)


class VizAndMetricsTest(unittest.TestCase):
    def test_summary(self):
        psi = np.array([[[1, 0], [0.6, 0.8j]]], np.complex64).reshape(1, 2, 2)
        delta = np.array([[[0.1, 0.2j], [0.3, -0.4]]], np.complex64).reshape(1, 2, 2)
        s = I.delta_summary(psi, delta)
        np.testing.assert_allclose(s[:, 0, 0], [0.05, 0.05, 0.1, 0.15, 0.05], rtol=1e-6)  # physics: 0.2 / 0 -> 0
        np.testing.assert_allclose(s[:, 0, 1], [0.25, -0.05, 0, 0.35, (0.5 + 0.5) / 2], rtol=1e-6)

    def test_mask_and_normalisation(self):
        f = random_frame(6, 5, 3, seed=5)
        psi = f.psi.copy()
        psi[2, 3] *= 0.049  # below the threshold: masked
        psi[4, 1] = -0.01 - 0.0j
        summary = I.delta_summary(psi, 0.1 * psi)
        for name in I.VIZ_NAMES:
            raw = I.field(name, psi, summary)
            self.assertEqual(raw.dtype, np.float32)
            norm = I.normalize(name, raw)
            self.assertTrue(norm.min() >= 0 and norm.max() <= 1, name)
        self.assertEqual(I.field("density", psi)[2, 3], 0)
        self.assertEqual(I.field("phase", psi)[4, 1], 0)  # angle(0) = 0 also for -0
        self.assertNotEqual(I.field("phase", psi, mask=False)[4, 1], 0)
        self.assertEqual(I.field("physics", psi, summary)[2, 3], 0)
        np.testing.assert_array_equal(I.field("holographic", psi)[2, 3], 0)
        np.testing.assert_array_equal(I.normalize("energy", np.full((3, 3), 2.0)), 0.5)
        np.testing.assert_array_equal(I.normalize("flow", np.zeros((3, 3))), 0)
        np.testing.assert_allclose(I.field("energy", psi), I.field("density", psi))  # before a step
        np.testing.assert_array_equal(I.field("physics", psi), 0)
        self.assertEqual(I.field("fields", psi[..., :2]).shape, (6, 5, 3))
        self.assertEqual(I.field("holographic_bulk", psi).shape, (5, 6, 5))
        dx, dy = I.flow_vectors(psi, summary)
        self.assertAlmostEqual(float(max(np.abs(dx).max(), np.abs(dy).max())), 1.0, places=6)

    def test_gradient_and_spectral_follow_numpy(self):
        d = np.random.default_rng(6).random((7, 9))
        gy, gx = np.gradient(d)
        np.testing.assert_allclose(I.gradient_magnitude(d), np.hypot(gx, gy))
        np.testing.assert_array_equal(I.gradient_magnitude(np.ones((1, 4))), 0)
        a = np.abs(np.fft.fftshift(np.fft.fft2(d)))
        n = a[2:5, 3:6].copy()
        n[1, 1] = -1
        a[3, 4] = n.max()
        np.testing.assert_allclose(I.spectral(d), np.log1p(a))

    def test_metrics(self):
        f = random_frame(8, 8, 2, seed=7)
        m = I.metrics(f.psi, None, f.psi * np.exp(0.7j), (0, 0), (0, 0), None, 0)
        self.assertAlmostEqual(m["fidelity"], 1.0, places=6)
        self.assertAlmostEqual(m["norm"], 8.0, places=5)
        self.assertEqual((m["matter_cells"], m["energy"], m["epoch"]), (64, 0.0, 1))
        self.assertAlmostEqual(m["entropy"], math.log(64), places=5)
        self.assertEqual(I.metrics(f.psi, None, f.psi, (8, 0), (0, 0))["fidelity"], 0.0)  # no overlap
        self.assertEqual(I.metrics(f.psi, None, 0 * f.psi, (0, 0), (0, 0))["fidelity"], 0.0)
        # Fidelity pairs cells by coordinates: a shifted copy overlaps on the shared cells only.
        half = I.fidelity(f.psi, (0, 0), f.psi[:, 4:], (4, 0))
        self.assertAlmostEqual(half, float(np.sum(np.abs(f.psi[:, 4:]) ** 2) / np.sum(np.abs(f.psi) ** 2)), places=6)
        # A field invariant under 90-degree rotation has symmetry 1; a W x H frame is centred.
        yy, xx = np.mgrid[0:9, 0:9]
        radial = np.exp(-((xx - 4) ** 2 + (yy - 4) ** 2) / 6.0)[..., None] * np.array([1, 0.5j])
        self.assertEqual(I.symmetry(radial), 1.0)
        self.assertEqual(I.symmetry(radial[2:7]), I.symmetry(radial[2:7].transpose(1, 0, 2)))
        self.assertLess(I.symmetry(f.psi), 0.9)
        self.assertEqual(I.metrics(radial[:1, :1], None, radial, (0, 0), (0, 0))["clustering"], 0.0)
        for (e, c, s), epoch in {(0.5, 9, 1): 0, (5, 0.05, 0.1): 1, (5, 0, 0.7): 2, (5, 0.6, 0.4): 3,
                                 (5, 2.5, 0.25): 4, (5, 0.2, 0.25): 1}.items():
            self.assertEqual(I.determine_epoch(e, c, s), epoch)


class FixtureTest(unittest.TestCase):
    def test_fixtures_are_up_to_date(self):
        """The committed fixtures are what make_instruments_golden.py writes now."""
        import make_instruments_golden as gen
        with tempfile.TemporaryDirectory() as tmp:
            for case in ("square", "rect", "sparse"):
                t, meta = gen.build(case)
                path = Path(tmp) / f"{case}.safetensors"
                gen.save_sorted(t, path, meta)
                committed = ROOT / "tests" / "fixtures" / "instruments" / f"{case}.safetensors"
                self.assertEqual(path.read_bytes(), committed.read_bytes(), case)
        got = load_file(str(committed))
        with safe_open(str(committed), "np") as f:
            meta = f.metadata()
        self.assertEqual(meta["extent"], "-40,1000,-27,1008")
        self.assertEqual(got["viz.holographic_bulk.raw"].shape, (5, 9, 14))


if __name__ == "__main__":
    unittest.main(verbosity=2)
