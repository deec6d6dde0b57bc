"""Reference of the instruments: tools, visualizations and readouts.

A plain numpy transcription of ``docs/instruments.md`` (the spec: read it for
the definitions; this module follows it line by line). The Rust crate
``crates/instruments`` implements the same page and is checked against the
fixtures ``python/make_instruments_golden.py`` writes with this module.

Conventions (as in the spec):

- A cell is addressed by absolute ``(x, y)``: x the column, y the row. A
  field is ``psi`` complex ``[H, W, D]`` (row, column, channel).
- A **frame** is ``Frame(psi, occupied, origin)``: psi complex ``[H, W, D]``,
  ``occupied`` bool ``[H, W]`` (1 = matter) and ``origin = (x0, y0)``, the
  absolute coordinates of ``psi[0, 0]``.
- A :class:`Lattice` is *bounded* (the dense engine's grid: coordinates outside
  it are errors, footprints are clipped) or *unbounded* (the sparse engine:
  nothing is clipped, a tool creates matter where it writes; "the grid" of wave,
  click-out and energy injection is the *extent*, the bounding box of the matter
  before the tool runs).

Arithmetic is float64 (complex128) inside; fields come back complex64 and maps
float32. Random numbers come from :mod:`atheria_ref.rng` (the Rust generator,
ported bit for bit), so a seeded tool gives the same numbers as the engines.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import rng

#: Atheria's vacuum threshold (``src/pipelines/viz/core.py``: ``VACUUM_THRESHOLD``).
VACUUM = 0.05
#: The largest radius / core a tool accepts.
MAX_SIZE = 4096
#: The largest |charge| of a phase vortex.
MAX_CHARGE = 64
#: Random streams (spec, "Random numbers").
STREAM_COLLAPSE_RE, STREAM_COLLAPSE_IM = 5, 6
STREAM_CLICK_GATE, STREAM_CLICK_PAIRS = 7, 8
STREAM_SOUP_GATE = 9
STREAM_ENERGY_RE, STREAM_ENERGY_IM = 10, 11

ENERGY_MODES = ("primordial_soup", "dense_monolith", "symmetric_seed")
VIZ_NAMES = ("density", "phase", "real", "imag", "energy", "gradient", "spectral", "physics",
             "fields", "flow", "phase_hsv", "holographic", "holographic_bulk", "delta")
SUMMARY_PLANES = ("energy", "flow_x", "flow_y", "flow_mag", "physics")


class ToolError(ValueError):
    """A tool string or argument that is refused (the message names the part)."""


# --------------------------------------------------------------------------- frames


class Frame(NamedTuple):
    """A dense rectangle of the lattice: psi [H, W, D], occupied [H, W], origin (x0, y0)."""

    psi: np.ndarray
    occupied: np.ndarray
    origin: tuple[int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), inclusive."""
        h, w = self.occupied.shape
        x0, y0 = self.origin
        return x0, y0, x0 + w - 1, y0 + h - 1


@dataclass(frozen=True)
class Lattice:
    """Where a tool may write.

    ``Lattice.bounded(origin, width, height)``: the dense engine's grid.
    ``Lattice.unbounded(extent)``: the sparse engine; ``extent`` is the bounding
    box ``(x0, y0, x1, y1)`` (inclusive) of the matter, or None when there is none.
    """

    is_bounded: bool
    box: tuple[int, int, int, int] | None

    @classmethod
    def bounded(cls, origin, width: int, height: int) -> "Lattice":
        if width < 1 or height < 1:
            raise ToolError(f"a grid is at least 1 x 1, not {width} x {height}")
        x0, y0 = (int(v) for v in origin)
        return cls(True, (x0, y0, x0 + int(width) - 1, y0 + int(height) - 1))

    @classmethod
    def unbounded(cls, extent=None) -> "Lattice":
        return cls(False, None if extent is None else tuple(int(v) for v in extent))

    def region(self) -> tuple[int, int, int, int] | None:
        """The grid (or extent) as (x0, y0, W, H), or None on an empty unbounded lattice."""
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        return x0, y0, x1 - x0 + 1, y1 - y0 + 1

    def contains(self, x: int, y: int) -> bool:
        """Whether (x, y) may be written: always on an unbounded lattice."""
        if not self.is_bounded:
            return True
        x0, y0, x1, y1 = self.box
        return x0 <= x <= x1 and y0 <= y <= y1


class _Canvas:
    """A mutable copy of a frame (complex128) that grows when an unbounded tool writes outside it."""

    def __init__(self, frame: Frame, lattice: Lattice):
        psi, occ, (x0, y0) = frame
        psi = np.asarray(psi)
        if psi.ndim != 3 or np.shape(occ) != psi.shape[:2]:
            raise ToolError(f"a frame is psi [H, W, D] with occupied [H, W], not {psi.shape} and {np.shape(occ)}")
        if lattice.is_bounded and Frame(psi, np.asarray(occ), (x0, y0)).box != lattice.box:
            raise ToolError("on a bounded lattice the frame is the grid")
        self.psi = psi.astype(np.complex128)
        self.occ = np.asarray(occ).astype(bool)
        self.x0, self.y0 = int(x0), int(y0)
        self.lattice = lattice

    @property
    def d(self) -> int:
        return self.psi.shape[2]

    def grow(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Extends the canvas to the union of its box and (x0, y0, x1, y1)."""
        h, w = self.occ.shape
        if h == 0 or w == 0:  # an empty frame (no matter yet): the footprint alone
            self.x0, self.y0, h, w = x0, y0, 0, 0
            self.psi, self.occ = np.zeros((0, 0, self.d), np.complex128), np.zeros((0, 0), bool)
        nx0, ny0 = min(self.x0, x0), min(self.y0, y0)
        nx1, ny1 = max(self.x0 + w - 1, x1), max(self.y0 + h - 1, y1)
        if (nx0, ny0, nx1, ny1) == (self.x0, self.y0, self.x0 + w - 1, self.y0 + h - 1):
            return
        psi = np.zeros((ny1 - ny0 + 1, nx1 - nx0 + 1, self.d), dtype=np.complex128)
        occ = np.zeros(psi.shape[:2], dtype=bool)
        r, c = self.y0 - ny0, self.x0 - nx0
        psi[r:r + h, c:c + w] = self.psi
        occ[r:r + h, c:c + w] = self.occ
        self.psi, self.occ, self.x0, self.y0 = psi, occ, nx0, ny0

    def footprint(self, xs, ys):
        """The cells (xs, ys) a tool writes: clipped on a bounded lattice, grown into when unbounded.

        Returns (X, Y, rows, cols) flattened, for the cells kept, in the given order."""
        X = np.asarray(xs, dtype=np.int64).ravel()
        Y = np.asarray(ys, dtype=np.int64).ravel()
        if self.lattice.is_bounded:
            bx0, by0, bx1, by1 = self.lattice.box
            keep = (X >= bx0) & (X <= bx1) & (Y >= by0) & (Y <= by1)
            X, Y = X[keep], Y[keep]
        elif X.size:
            self.grow(int(X.min()), int(Y.min()), int(X.max()), int(Y.max()))
        return X, Y, Y - self.y0, X - self.x0

    def frame(self) -> Frame:
        return Frame(self.psi.astype(np.complex64), self.occ.copy(), (self.x0, self.y0))


# --------------------------------------------------------------------------- tool arguments

_INT = re.compile(r"^[+-]?[0-9]+$")
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")

#: name: ({key: kind}, required keys, defaults). kind: int, float, seed, bool, mode, file.
TOOLS = {
    "vortex": ({"x": "int", "y": "int", "radius": "int", "strength": "float"}, ("x", "y"),
               {"radius": 5, "strength": 1.0}),
    "wave": ({"k_x": "float", "k_y": "float"}, (), {"k_x": 1.0, "k_y": 1.0}),
    "collapse": ({"x": "int", "y": "int", "intensity": "float", "seed": "seed"}, ("x", "y"),
                 {"intensity": 0.5, "seed": 0}),
    "click_out": ({"enabled": "bool", "chance": "float", "seed": "seed"}, (),
                  {"enabled": True, "chance": 0.01, "seed": 0}),
    "inject_energy": ({"mode": "mode", "x": "int", "y": "int", "seed": "seed"}, ("mode",), {"seed": 0}),
    "phase_vortex": ({"x": "int", "y": "int", "charge": "int", "core": "float"}, ("x", "y"),
                     {"charge": 1, "core": 2.0}),
    "stamp": ({"x": "int", "y": "int", "file": "file"}, ("x", "y", "file"), {}),
}


def _parse_value(tool: str, key: str, kind: str, text: str):
    if kind in ("int", "seed"):
        if not _INT.match(text):
            what = "an integer" if _NUMBER.match(text) else "a number"
            raise ToolError(f"{tool}: {key} '{text}' is not {what}")
        return int(text)
    if kind == "float":
        if not _NUMBER.match(text):
            raise ToolError(f"{tool}: {key} '{text}' is not a number")
        return float(text)
    if kind == "bool":
        if text not in ("true", "false"):
            raise ToolError(f"{tool}: {key} '{text}' must be true or false")
        return text == "true"
    if kind == "mode":
        if text not in ENERGY_MODES:
            raise ToolError(f"{tool}: mode '{text}' is not one of {', '.join(ENERGY_MODES)}")
        return text
    return text  # file


def parse_tool(s: str):
    """Parses ``name[:key=value[,key=value...]][@step=N]`` (spec, "Tool strings").

    Returns ``(name, args, step)``: ``args`` holds the keys given (typed: int,
    float, bool or str; defaults are filled by :func:`with_defaults`), ``step``
    is N or None. Errors (:class:`ToolError`, naming the part): unknown tool or
    key, repeated key, missing required key (x and y, mode, file), a value that
    is not a number (or not an integer where one is needed), ``@step`` not an
    integer >= 1, and every range check of :func:`check_args` that does not
    need the lattice.
    """
    step = None
    head = s
    if "@" in s:
        head, tail = s.split("@", 1)
        m = re.fullmatch(r"step=(.*)", tail)
        if not m:
            raise ToolError(f"'@{tail}': expected @step=N")
        if not _INT.match(m.group(1)) or int(m.group(1)) < 1:
            raise ToolError(f"'@{tail}': the step must be an integer >= 1")
        step = int(m.group(1))
    name, _, rest = head.partition(":")
    if name not in TOOLS:
        raise ToolError(f"unknown tool '{name}' (tools: {', '.join(TOOLS)})")
    kinds, required, _ = TOOLS[name]
    args = {}
    if ":" in head:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key or not value:
                raise ToolError(f"{name}: '{part}' is not key=value")
            if key not in kinds:
                raise ToolError(f"{name}: unknown key '{key}' (keys: {', '.join(kinds)})")
            if key in args:
                raise ToolError(f"{name}: key '{key}' given twice")
            args[key] = _parse_value(name, key, kinds[key], value)
    missing = [k for k in required if k not in args]
    if missing:
        raise ToolError(f"{name}: missing {', '.join(missing)}")
    check_args(name, args)
    return name, args, step


def format_tool(name: str, args: dict, step: int | None = None) -> str:
    """The tool string of (name, args, step): the inverse of :func:`parse_tool`."""
    def text(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, float) else str(v)
    s = name + (":" + ",".join(f"{k}={text(v)}" for k, v in args.items()) if args else "")
    return s + (f"@step={step}" if step is not None else "")


def with_defaults(name: str, args: dict) -> dict:
    """``args`` with the tool's defaults for the keys not given."""
    return {**TOOLS[name][2], **args}


def check_args(name: str, args: dict, lattice: Lattice | None = None, d_state: int | None = None,
               patch: Frame | None = None) -> None:
    """Every check of the spec's "Tools" section; the lattice checks only when ``lattice`` is given.

    Raises :class:`ToolError` naming the argument (``vortex: radius 0 must be
    between 1 and 4096``); nothing is ever clipped.
    """
    if name not in TOOLS:
        raise ToolError(f"unknown tool '{name}' (tools: {', '.join(TOOLS)})")
    kinds = TOOLS[name][0]
    for key in args:
        if key not in kinds:
            raise ToolError(f"{name}: unknown key '{key}' (keys: {', '.join(kinds)})")
    a = with_defaults(name, args)
    missing = [k for k in TOOLS[name][1] if k not in a and k != "file"]  # a stamp's patch comes apart
    if missing:
        raise ToolError(f"{name}: missing {', '.join(missing)}")

    def need(ok: bool, key: str, rule: str):
        if not ok:
            raise ToolError(f"{name}: {key} {a[key]} {rule}")

    for key, kind in kinds.items():
        if key in a and kind in ("int", "seed"):
            if isinstance(a[key], bool) or not isinstance(a[key], (int, np.integer)):
                raise ToolError(f"{name}: {key} {a[key]!r} is not an integer")
        if key in a and kind == "float" and not isinstance(a[key], (int, float, np.floating, np.integer)):
            raise ToolError(f"{name}: {key} {a[key]!r} is not a number")
        if key in a and kind == "seed":
            need(0 <= a[key] < 1 << 64, key, "must be between 0 and 2^64 - 1")
    if name == "vortex":
        need(1 <= a["radius"] <= MAX_SIZE, "radius", f"must be between 1 and {MAX_SIZE}")
        need(0 <= a["strength"] <= 1000, "strength", "must be between 0 and 1000")
    elif name == "wave":
        need(math.isfinite(a["k_x"]), "k_x", "must be finite")
        need(math.isfinite(a["k_y"]), "k_y", "must be finite")
    elif name == "collapse":
        need(0 <= a["intensity"] <= 1, "intensity", "must be between 0 and 1")
    elif name == "click_out":
        need(0 <= a["chance"] <= 1, "chance", "must be between 0 and 1")
    elif name == "inject_energy":
        if a.get("mode") not in ENERGY_MODES:
            raise ToolError(f"{name}: mode {a.get('mode')!r} is not one of {', '.join(ENERGY_MODES)}")
        if ("x" in a) != ("y" in a):
            raise ToolError(f"{name}: x and y go together (or neither: the centre)")
    elif name == "phase_vortex":
        need(a["charge"] != 0 and abs(a["charge"]) <= MAX_CHARGE, "charge",
             f"must be a non-zero integer between -{MAX_CHARGE} and {MAX_CHARGE}")
        need(0 < a["core"] <= MAX_SIZE, "core", f"must be > 0 and <= {MAX_SIZE}")
    if lattice is None:
        return
    if lattice.is_bounded and "x" in a and "y" in a and not lattice.contains(a["x"], a["y"]):
        x0, y0, x1, y1 = lattice.box
        raise ToolError(f"{name}: ({a['x']}, {a['y']}) is outside the grid "
                        f"x {x0}..={x1}, y {y0}..={y1}")
    if name == "wave" and lattice.box is None:
        raise ToolError("wave: the lattice is empty (no extent to cover)")
    if name == "stamp":
        if patch is None:
            raise ToolError("stamp: no patch")
        pd = patch.psi.shape[2]
        if d_state is not None and pd != d_state:
            raise ToolError(f"stamp: the patch has D = {pd}, the model {d_state}")
        ph, pw = patch.occupied.shape
        if lattice.is_bounded and not lattice.contains(a["x"] + pw - 1, a["y"] + ph - 1):
            raise ToolError(f"stamp: the {pw} x {ph} patch at ({a['x']}, {a['y']}) does not fit in the grid")


# --------------------------------------------------------------------------- tools


def linspace_at(n: int, k):
    """``linspace(-1, 1, n)[k] = -1 + 2 k / (n - 1)`` (float64)."""
    return -1.0 + 2.0 * np.asarray(k, dtype=np.float64) / (n - 1)


def vortex(frame: Frame, lattice: Lattice, x: int, y: int, radius: int = 5, strength: float = 1.0) -> Frame:
    """Atheria's ``QuantumSteering.inject(state, 'vortex', x, y, radius)`` with ``_mock_pattern``
    (``src/physics/steering.py``), the pattern scaled by ``strength``:
    ``psi_c <- 0.2 psi_c + 0.8 strength p_i p_j`` on the 2r x 2r box at (x - r, y - r),
    ``p_k = exp(-2 u_k^2) exp(i pi u_k)``, ``u_k = linspace(-1, 1, 2r)[k]``."""
    check_args("vortex", {"x": x, "y": y, "radius": radius, "strength": strength}, lattice)
    cv = _Canvas(frame, lattice)
    n = 2 * radius
    u = linspace_at(n, np.arange(n))
    p = np.exp(-2.0 * u * u) * np.exp(1j * np.pi * u)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # i: row, j: column of the box
    X, Y, rows, cols = cv.footprint(x - radius + j, y - radius + i)
    pat = (p[Y - (y - radius)] * p[X - (x - radius)])[:, None]
    cv.psi[rows, cols] = 0.2 * cv.psi[rows, cols] + 0.8 * strength * pat
    cv.occ[rows, cols] = True
    return cv.frame()


def wave(frame: Frame, lattice: Lattice, k_x: float = 1.0, k_y: float = 1.0) -> Frame:
    """Atheria's ``apply_tool('wave')`` (``src/engines/qca_engine.py``): ``inject('plane_wave')``
    centred on the grid with radius = grid size, ``_mock_pattern`` amplitude 0.5 per axis:
    ``psi_c <- 0.2 psi_c + 0.8 * 0.25 exp(i (k_x u_j + k_y v_i))`` over the grid (or extent),
    ``u_j = linspace(-1, 1, 2W)[W - floor(W/2) + j]``, v likewise with H."""
    check_args("wave", {"k_x": k_x, "k_y": k_y}, lattice)
    cv = _Canvas(frame, lattice)
    x0, y0, w, h = lattice.region()
    u = linspace_at(2 * w, w - w // 2 + np.arange(w))
    v = linspace_at(2 * h, h - h // 2 + np.arange(h))
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    X, Y, rows, cols = cv.footprint(x0 + j, y0 + i)
    pat = np.exp(1j * (k_x * u[X - x0] + k_y * v[Y - y0]))[:, None]
    cv.psi[rows, cols] = 0.2 * cv.psi[rows, cols] + 0.8 * 0.25 * pat
    cv.occ[rows, cols] = True
    return cv.frame()


def collapse_region(lattice: Lattice, x: int) -> tuple[int, int]:
    """The columns [start, end) of a collapse at column x: Atheria's 11-qubit row
    (``IonQCollapse.collapse``, ``src/physics/quantum_collapse.py``), shifted inside a bounded grid."""
    start = x - 5
    if not lattice.is_bounded:
        return start, start + 11
    x0, _, w, _ = lattice.region()
    start = max(x0, x - 5)
    end = min(x0 + w, start + 11)
    if end - start < 11:
        start = max(x0, end - 11)
    return start, end


def collapse(frame: Frame, lattice: Lattice, x: int, y: int, intensity: float = 0.5, seed: int = 0) -> Frame:
    """Atheria's ``IonQCollapse`` mock path (``torch.randn_like(psi) * intensity``: real and
    imaginary parts each of variance 1/2), local to the collapse region's 11 cells of row y:
    ``psi_c += intensity (normal(seed, X, y, 0, c, 5) + i normal(seed, X, y, 0, c, 6)) / sqrt(2)``."""
    check_args("collapse", {"x": x, "y": y, "intensity": intensity, "seed": seed}, lattice)
    cv = _Canvas(frame, lattice)
    start, end = collapse_region(lattice, x)
    X, Y, rows, cols = cv.footprint(np.arange(start, end), np.full(end - start, y))
    c = np.arange(cv.d)[None, :]
    n_re = rng.normal(rng.cell_key(seed, X[:, None], Y[:, None], 0, c, STREAM_COLLAPSE_RE)).astype(np.float64)
    n_im = rng.normal(rng.cell_key(seed, X[:, None], Y[:, None], 0, c, STREAM_COLLAPSE_IM)).astype(np.float64)
    cv.psi[rows, cols] += intensity * (n_re + 1j * n_im) / math.sqrt(2.0)
    cv.occ[rows, cols] = True
    return cv.frame()


def click_out_gate(seed: int, step: int, chance: float) -> bool:
    """Whether click-out swaps after step ``step``: ``chance > 0`` and ``uniform(seed, 0, 0, step, 0, 7) <= chance``."""
    return chance > 0 and not float(rng.uniform(rng.cell_key(seed, 0, 0, step, 0, STREAM_CLICK_GATE))) > chance


def click_out_pairs(seed: int, step: int, region) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The n = floor(max(W, H) / 2) pairs (src_x, src_y, dst_x, dst_y) of a click-out after ``step``."""
    x0, y0, w, h = region
    i = np.arange(max(w, h) // 2)

    def coord(word, size, base):
        u = rng.uniform(rng.cell_key(seed, i, word, step, 0, STREAM_CLICK_PAIRS)).astype(np.float64)
        return base + np.floor(u * size).astype(np.int64)  # exact in f64
    return coord(0, w, x0), coord(1, h, y0), coord(2, w, x0), coord(3, h, y0)


def click_out(frame: Frame, args: dict, lattice: Lattice, step: int) -> Frame:
    """Atheria's ``_apply_click_out`` (``src/engines/qca_engine.py``) after step ``step`` (>= 1):
    if the gate says yes, n pairs of cells of the grid (or extent after the step) swap their
    values and occupancy; all cells are read first, then src_i <- dst_i for i in order, then
    dst_i <- src_i for i in order (later writes win)."""
    check_args("click_out", args, lattice)
    if step < 1:
        raise ToolError(f"click_out: step {step} must be >= 1 (it runs after a step)")
    a = with_defaults("click_out", args)
    cv = _Canvas(frame, lattice)
    region = lattice.region()
    if not a["enabled"] or region is None or not click_out_gate(a["seed"], step, a["chance"]):
        return cv.frame()
    x0, y0, w, h = region
    cv.footprint([x0, x0 + w - 1], [y0, y0 + h - 1])  # the frame covers the region
    sx, sy, dx, dy = click_out_pairs(a["seed"], step, region)
    sr, sc, dr, dc = sy - cv.y0, sx - cv.x0, dy - cv.y0, dx - cv.x0
    src_vals, src_occ = cv.psi[sr, sc].copy(), cv.occ[sr, sc].copy()
    dst_vals, dst_occ = cv.psi[dr, dc].copy(), cv.occ[dr, dc].copy()
    for k in range(len(sx)):
        cv.psi[sr[k], sc[k]], cv.occ[sr[k], sc[k]] = dst_vals[k], dst_occ[k]
    for k in range(len(sx)):
        cv.psi[dr[k], dc[k]], cv.occ[dr[k], dc[k]] = src_vals[k], src_occ[k]
    return cv.frame()


def energy_centre(lattice: Lattice) -> tuple[int, int]:
    """The default centre of an energy injection: (x0 + floor(W/2), y0 + floor(H/2)); (0, 0) when empty."""
    region = lattice.region()
    if region is None:
        return 0, 0
    x0, y0, w, h = region
    return x0 + w // 2, y0 + h // 2


def energy_sizes(lattice: Lattice) -> tuple[int, int, int]:
    """(R, S_monolith, S_seed) = (min(20, W//4), min(10, W//8), min(8, W//10)); the caps when unbounded."""
    if not lattice.is_bounded:
        return 20, 10, 8
    w = lattice.region()[2]
    return min(20, w // 4), min(10, w // 8), min(8, w // 10)


def _energy_noise(seed: int, X, Y, d: int) -> np.ndarray:
    """``normal(seed, X, Y, 0, c, 10) + i normal(seed, X, Y, 0, c, 11)``, [n, D] complex128."""
    c = np.arange(d)[None, :]
    X, Y = np.asarray(X)[:, None], np.asarray(Y)[:, None]
    re_ = rng.normal(rng.cell_key(seed, X, Y, 0, c, STREAM_ENERGY_RE)).astype(np.float64)
    im_ = rng.normal(rng.cell_key(seed, X, Y, 0, c, STREAM_ENERGY_IM)).astype(np.float64)
    return re_ + 1j * im_


def inject_energy(frame: Frame, lattice: Lattice, mode: str, x: int | None = None, y: int | None = None,
                  seed: int = 0) -> Frame:
    """Atheria's ``handle_inject_energy`` (``src/pipelines/handlers/inference_handlers.py``), its
    three modes around (cx, cy), sizes from the grid's width W (caps when unbounded), every
    random number keyed by the cell; cells outside a bounded grid are skipped, every written
    cell becomes matter."""
    args = {"mode": mode, "seed": seed, **({"x": x, "y": y} if x is not None or y is not None else {})}
    check_args("inject_energy", args, lattice)
    cv = _Canvas(frame, lattice)
    cx, cy = (x, y) if x is not None else energy_centre(lattice)
    R, S_mono, S_seed = energy_sizes(lattice)
    if mode == "primordial_soup":
        if R == 0:
            return cv.frame()
        Yg, Xg = np.meshgrid(np.arange(cy - R, cy + R), np.arange(cx - R, cx + R), indexing="ij")
        Xg, Yg = Xg.ravel(), Yg.ravel()
        dist = np.sqrt((Xg - cx).astype(np.float64) ** 2 + (Yg - cy).astype(np.float64) ** 2)
        prob = 0.3 * np.exp(-dist / (R / 2.0))
        gate = rng.uniform(rng.cell_key(seed, Xg, Yg, 0, 0, STREAM_SOUP_GATE)).astype(np.float64) < prob
        cv.footprint(Xg, Yg)  # unbounded: the frame covers the whole 2R x 2R box, seeded or not
        X, Y, rows, cols = cv.footprint(Xg[gate], Yg[gate])
        cv.psi[rows, cols] += 0.1 * _energy_noise(seed, X, Y, cv.d)
        cv.occ[rows, cols] = True
    elif mode == "dense_monolith":
        S = S_mono
        Yg, Xg = np.meshgrid(np.arange(cy - S, cy + S), np.arange(cx - S, cx + S), indexing="ij")
        X, Y, rows, cols = cv.footprint(Xg, Yg)
        cv.psi[rows, cols] = 0.2 * _energy_noise(seed, X, Y, cv.d)
        cv.occ[rows, cols] = True
    else:  # symmetric_seed
        S = S_seed
        for X in range(cx - S, cx):
            for Y in range(cy - S, cy):
                b = 0.15 * _energy_noise(seed, [X], [Y], cv.d)[0]
                dx, dy = cx - X, cy - Y
                for tx, ty in ((cx + dx, cy + dy), (cx - dx, cy + dy), (cx + dx, cy - dy), (cx - dx, cy - dy)):
                    _, _, rows, cols = cv.footprint([tx], [ty])
                    cv.psi[rows, cols] = b
                    cv.occ[rows, cols] = True
    return cv.frame()


def phase_vortex(frame: Frame, lattice: Lattice, x: int, y: int, charge: int = 1, core: float = 2.0) -> Frame:
    """Not in Atheria: a vortex of winding number ``charge``, ``psi_c <- tanh(r/core) e^{i charge theta} u_c``
    with u = psi / |psi| (1/sqrt(D) per channel when |psi| <= 1e-6). Bounded: every grid cell;
    unbounded: every cell of matter and every cell with |dx|, |dy| <= ceil(4 core)."""
    check_args("phase_vortex", {"x": x, "y": y, "charge": charge, "core": core}, lattice)
    cv = _Canvas(frame, lattice)
    if lattice.is_bounded:
        rows, cols = np.nonzero(np.ones_like(cv.occ))
    else:
        k = math.ceil(4 * core)
        Yg, Xg = np.meshgrid(np.arange(y - k, y + k + 1), np.arange(x - k, x + k + 1), indexing="ij")
        cv.footprint(Xg, Yg)
        near = np.zeros_like(cv.occ)
        near[y - k - cv.y0:y + k + 1 - cv.y0, x - k - cv.x0:x + k + 1 - cv.x0] = True
        rows, cols = np.nonzero(cv.occ | near)
    X, Y = cols + cv.x0, rows + cv.y0
    dx, dy = (X - x).astype(np.float64), (Y - y).astype(np.float64)
    r = np.sqrt(dx * dx + dy * dy)
    f = np.tanh(r / core)
    theta = np.arctan2(dy, dx)
    psi = cv.psi[rows, cols]
    norm = np.sqrt(np.sum(np.abs(psi) ** 2, axis=-1, keepdims=True))
    u = np.where(norm > 1e-6, psi / np.where(norm > 1e-6, norm, 1.0), 1.0 / math.sqrt(cv.d))
    cv.psi[rows, cols] = (f * np.exp(1j * charge * theta))[:, None] * u
    cv.occ[rows, cols] = True
    return cv.frame()


def stamp(frame: Frame, lattice: Lattice, x: int, y: int, patch: Frame, d_state: int | None = None) -> Frame:
    """Writes ``patch`` (values and occupancy) with its first cell at (x, y): cell (x + j, y + i)
    takes the patch's cell (j, i). Bounded: the whole patch must lie inside the grid."""
    patch = Frame(np.asarray(patch[0]), np.asarray(patch[1]).astype(bool), tuple(patch[2]) if len(patch) > 2 else (0, 0))
    check_args("stamp", {"x": x, "y": y, "file": "<patch>"}, lattice,
               d_state if d_state is not None else frame[0].shape[2], patch)
    cv = _Canvas(frame, lattice)
    ph, pw = patch.occupied.shape
    i, j = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
    _, _, rows, cols = cv.footprint(x + j, y + i)
    cv.psi[rows, cols] = patch.psi.astype(np.complex128).reshape(-1, cv.d)
    cv.occ[rows, cols] = patch.occupied.ravel()
    return cv.frame()


def apply_tool(frame, tool, lattice: Lattice, d_state: int, patch=None) -> Frame:
    """Applies ``tool`` (a tool string, or ``(name, args)``) to ``frame``; returns the new frame.

    On an unbounded lattice the result covers the union of the frame and the
    tool's footprint: its box (vortex 2r x 2r, collapse 11 cells, wave the
    extent, primordial soup 2R x 2R, monolith 2S x 2S, symmetric seed
    (2S + 1)^2, phase vortex the cells within ceil(4 core), stamp the patch),
    whether or not every cell of it is written. ``click_out`` needs the step it runs after: ``@step=N`` in the
    string (or call :func:`click_out`); for the other tools ``@step=N`` only says
    when the caller applies them (before step N) and is ignored here. ``stamp`` takes its block from ``patch``
    (a Frame or (psi, occupied)); the string's ``file`` is not read here.
    """
    step = None
    if isinstance(tool, str):
        name, args, step = parse_tool(tool)
    else:
        name, args = tool
        check_args(name, args)
    frame = Frame(np.asarray(frame[0]), np.asarray(frame[1]).astype(bool), tuple(frame[2]))
    if frame.psi.shape[2] != d_state:
        raise ToolError(f"the frame has D = {frame.psi.shape[2]}, the model {d_state}")
    a = with_defaults(name, args)
    if name == "vortex":
        return vortex(frame, lattice, a["x"], a["y"], a["radius"], a["strength"])
    if name == "wave":
        return wave(frame, lattice, a["k_x"], a["k_y"])
    if name == "collapse":
        return collapse(frame, lattice, a["x"], a["y"], a["intensity"], a["seed"])
    if name == "click_out":
        if step is None:
            raise ToolError("click_out runs after a step: give @step=N (or call click_out)")
        return click_out(frame, args, lattice, step)
    if name == "inject_energy":
        return inject_energy(frame, lattice, a["mode"], a.get("x"), a.get("y"), a["seed"])
    if name == "phase_vortex":
        return phase_vortex(frame, lattice, a["x"], a["y"], a["charge"], a["core"])
    if patch is None:
        raise ToolError("stamp: no patch")
    return stamp(frame, lattice, a["x"], a["y"], patch, d_state)


# --------------------------------------------------------------------------- delta summary


def delta_summary(psi, delta) -> np.ndarray:
    """The five planes kept after a step (spec, "The delta summary"), float32 [5, H, W].

    ``psi`` is the field after the step, ``delta`` the model output of the step
    (complex [H, W, D]). Follows Atheria's ``last_delta_psi`` readouts: energy
    (``get_visualization_data('energy')``), flow (``calculate_flow_data``) and
    physics (``get_physics_matrix_map``, with psi after the step)."""
    psi = np.asarray(psi).astype(np.complex128)
    delta = np.asarray(delta).astype(np.complex128)
    a = np.abs(delta)
    p = np.abs(psi)
    ratio = np.where(p > 1e-10, a / np.where(p > 1e-10, p, 1.0), 0.0)
    planes = [np.sum(a * a, axis=-1), delta.real.mean(-1), delta.imag.mean(-1), a.mean(-1), ratio.mean(-1)]
    return np.stack(planes).astype(np.float32)


# --------------------------------------------------------------------------- visualizations


def vacuum_mask(psi, summary=None):
    """Atheria's vacuum mask (``src/pipelines/viz/core.py``): cells with |psi| <= 0.05 get psi
    and summary zero (exact +0). Returns (psi complex128, summary float64 or None, kept bool [H, W])."""
    psi = np.asarray(psi).astype(np.complex128)
    keep = np.sqrt(np.sum(np.abs(psi) ** 2, axis=-1)) > VACUUM
    psi = np.where(keep[..., None], psi, 0)
    if summary is not None:
        summary = np.where(keep[None], np.asarray(summary, dtype=np.float64), 0.0)
    return psi, summary, keep


def angle(z) -> np.ndarray:
    """angle(z) with angle(0) = 0 (also for signed zeros)."""
    z = np.asarray(z)
    return np.where(z == 0, 0.0, np.angle(z))


def density(psi) -> np.ndarray:
    """sum_c |psi_c|^2 (float64)."""
    return np.sum(np.abs(np.asarray(psi).astype(np.complex128)) ** 2, axis=-1)


def circular_phase(psi) -> np.ndarray:
    """Atheria's ``calculate_basic_quantities`` phase: atan2(mean_c sin a_c, mean_c cos a_c)."""
    a = angle(psi)
    return np.arctan2(np.sin(a).mean(-1), np.cos(a).mean(-1))


def gradient_magnitude(d) -> np.ndarray:
    """sqrt(gx^2 + gy^2) of ``numpy.gradient`` (``calculate_gradient_magnitude``); 0 along an axis of length 1."""
    gy = np.gradient(d, axis=0) if d.shape[0] > 1 else np.zeros_like(d)
    gx = np.gradient(d, axis=1) if d.shape[1] > 1 else np.zeros_like(d)
    return np.sqrt(gx * gx + gy * gy)


def spectral(d) -> np.ndarray:
    """``select_map_data('spectral')``: log1p |fftshift(fft2(d))| with the centre (H//2, W//2)
    replaced by the max of its neighbours inside the map."""
    a = np.abs(np.fft.fftshift(np.fft.fft2(d)))
    h, w = a.shape
    cy, cx = h // 2, w // 2
    neigh = [a[cy + dy, cx + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
             if (dy or dx) and 0 <= cy + dy < h and 0 <= cx + dx < w]
    if neigh:
        a[cy, cx] = max(neigh)
    return np.log1p(a)


def hsv_to_rgb(h, s, v) -> np.ndarray:
    """The usual HSV to RGB (``colorsys.hsv_to_rgb``, vectorised): [..., 3]."""
    h6 = np.asarray(h, dtype=np.float64) * 6.0
    i = np.floor(h6)
    f = h6 - i
    i = i.astype(np.int64) % 6
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), h6.shape)
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), h6.shape)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def blur121(m) -> np.ndarray:
    """The 3x3 binomial blur [1 2 1]^T [1 2 1] / 16 with zero padding (``sparse_engine.cpp``)."""
    h, w = m.shape
    p = np.zeros((h + 2, w + 2))
    p[1:-1, 1:-1] = m
    k = np.array([1.0, 2.0, 1.0])
    out = np.zeros_like(m, dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            out += k[dy] * k[dx] / 16.0 * p[dy:dy + h, dx:dx + w]
    return out


def _phase_channel(viz: str, d: int) -> int | None:
    m = re.fullmatch(r"phase:([0-9]+)", viz)
    if not m:
        return None
    c = int(m.group(1))
    if c >= d:
        raise ValueError(f"{viz}: channel {c} does not exist (D = {d})")
    return c


def field(viz: str, psi, summary=None, mask: bool = True) -> np.ndarray:
    """The raw map of visualization ``viz`` (spec, "Visualizations"), float32.

    ``psi`` complex [H, W, D]; ``summary`` float [5, H, W] or None before the first
    step. With ``mask`` (the default) Atheria's vacuum mask applies first.
    Shapes: [H, W], or [H, W, 3] (fields, phase_hsv, holographic), or [5, H, W]
    (holographic_bulk). Follows ``src/pipelines/viz/core.py`` (density, phase,
    real, imag, gradient, spectral, fields), ``advanced.py`` (flow, phase_hsv),
    ``qca_engine.get_visualization_data`` (energy), ``get_physics_matrix_map``
    (physics) and ``sparse_engine.cpp``'s ``compute_visualization`` (holographic,
    holographic_bulk). Before any step ``physics``, ``flow`` and ``delta`` are 0
    and ``energy`` is the density.
    """
    psi = np.asarray(psi).astype(np.complex128)
    if mask:
        psi, summary, keep = vacuum_mask(psi, summary)
    else:
        keep = np.ones(psi.shape[:2], dtype=bool)
        summary = None if summary is None else np.asarray(summary, dtype=np.float64)
    h, w, d = psi.shape
    dens = density(psi)
    zeros = np.zeros((h, w))
    channel = _phase_channel(viz, d)
    if channel is not None:
        out = angle(psi[..., channel])
    elif viz == "density":
        out = dens
    elif viz == "phase":
        out = circular_phase(psi)
    elif viz == "real":
        out = psi.real.mean(-1)
    elif viz == "imag":
        out = psi.imag.mean(-1)
    elif viz == "energy":
        out = dens if summary is None else summary[0]
    elif viz == "gradient":
        out = gradient_magnitude(dens)
    elif viz == "spectral":
        out = spectral(dens)
    elif viz == "physics":
        out = zeros if summary is None else summary[4]
    elif viz == "fields":
        out = np.zeros((h, w, 3))
        out[..., :min(d, 3)] = np.abs(psi[..., :3])
    elif viz == "flow":
        out = zeros if summary is None else summary[3]
    elif viz == "phase_hsv":
        # Deliberately not Atheria's min-max (which stretches the f32
        # rounding of a normalised field into noise): the density's own
        # absolute [0, 1], as the density picture.
        value = np.clip(dens, 0.0, 1.0)
        out = hsv_to_rgb((circular_phase(psi) + np.pi) / (2 * np.pi), 1.0, value)
    elif viz == "holographic":
        p0 = psi[..., 0]
        out = np.stack([np.minimum(1.0, 5.0 * dens),
                        (angle(p0) + np.pi) / (2 * np.pi),
                        np.clip((p0.real + 1.0) / 2.0, 0.0, 1.0)], axis=-1)
        out[~keep] = 0.0
    elif viz == "holographic_bulk":
        layers = [dens]
        for _ in range(4):
            layers.append(blur121(layers[-1]))
        out = np.stack(layers)
    elif viz == "delta":
        out = zeros if summary is None else np.sqrt(summary[0])
    else:
        raise ValueError(f"unknown visualization '{viz}' (known: {', '.join(VIZ_NAMES)}, phase:N)")
    return np.asarray(out).astype(np.float32)


def min_max(v) -> np.ndarray:
    """Atheria's ``normalize_map_data``: (v - min) / (max - min), 0.5 everywhere when max - min < 1e-10."""
    v = np.asarray(v, dtype=np.float64)
    lo, hi = v.min(), v.max()
    if hi - lo < 1e-10:
        return np.full(v.shape, 0.5, dtype=np.float32)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def normalize(viz: str, raw) -> np.ndarray:
    """Maps a raw map to [0, 1] as the spec's table says (column "normalisation"), float32."""
    v = np.asarray(raw, dtype=np.float64)
    if viz == "density":
        out = np.clip(v, 0.0, 1.0)
    elif viz == "phase" or viz.startswith("phase:"):
        out = (v + np.pi) / (2 * np.pi)
    elif viz == "flow":
        top = v.max()
        out = v / top if top > 0 else np.zeros_like(v)
    elif viz in ("phase_hsv", "holographic"):
        out = v
    elif viz in ("real", "imag", "energy", "gradient", "spectral", "physics", "fields",
                 "holographic_bulk", "delta"):
        return min_max(v)
    else:
        raise ValueError(f"unknown visualization '{viz}'")
    return out.astype(np.float32)


def flow_vectors(psi, summary, mask: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The flow arrows (summary ``flow_x``, ``flow_y``) after the mask, scaled as Atheria's
    ``calculate_flow_data`` (``src/pipelines/viz/advanced.py``): both times 1 / max(max|dx|, max|dy|)
    (1 when that is 0). Zero before any step."""
    psi = np.asarray(psi)
    if summary is None:
        z = np.zeros(psi.shape[:2], dtype=np.float32)
        return z, z.copy()
    if mask:
        _, summary, _ = vacuum_mask(psi, summary)
    s = np.asarray(summary, dtype=np.float64)
    dx, dy = s[1], s[2]
    top = max(np.abs(dx).max(), np.abs(dy).max())
    scale = 1.0 / top if top > 0 else 1.0
    return (dx * scale).astype(np.float32), (dy * scale).astype(np.float32)


# --------------------------------------------------------------------------- readouts


def fidelity(psi, origin, psi0, psi0_origin) -> float:
    """|<psi0|psi>|^2 / (<psi0|psi0> <psi|psi>), cells paired by absolute coordinates
    (Atheria's ``calculate_fidelity``, ``src/physics/metrics.py``, divided by the norms); 0 when a norm is 0."""
    psi = np.asarray(psi).astype(np.complex128)
    psi0 = np.asarray(psi0).astype(np.complex128)
    n = np.sum(np.abs(psi) ** 2)
    n0 = np.sum(np.abs(psi0) ** 2)
    if n == 0 or n0 == 0:
        return 0.0
    (x0, y0), (p0x, p0y) = origin, psi0_origin
    h, w = psi.shape[:2]
    h0, w0 = psi0.shape[:2]
    ax0, ay0 = max(x0, p0x), max(y0, p0y)
    ax1, ay1 = min(x0 + w, p0x + w0), min(y0 + h, p0y + h0)
    if ax1 <= ax0 or ay1 <= ay0:
        return 0.0
    a = psi[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    b = psi0[ay0 - p0y:ay1 - p0y, ax0 - p0x:ax1 - p0x]
    overlap = np.sum(np.conj(b) * a)
    return float(abs(overlap) ** 2 / (n0 * n))


def symmetry(psi) -> float:
    """Atheria's ``EpochDetector.analyze_state`` symmetry (``src/analysis/epoch_detector.py``):
    1 / (1 + 100 m), m = mean (|psi_c(i, j)| - |psi_c(j, S-1-i)|)^2 on the S x S square
    (S = max(W, H), the frame centred in it, zeros outside), i.e. ``torch.rot90(psi, 1, [0, 1])``."""
    a = np.abs(np.asarray(psi).astype(np.complex128))
    h, w, d = a.shape
    s = max(w, h)
    sq = np.zeros((s, s, d))
    oy, ox = (s - h) // 2, (s - w) // 2
    sq[oy:oy + h, ox:ox + w] = a
    rot = np.rot90(sq, 1, axes=(0, 1))  # rot[i, j] = sq[j, s - 1 - i]
    m = np.mean((sq - rot) ** 2)
    return float(1.0 / (1.0 + 100.0 * m))


def determine_epoch(e: float, c: float, s: float) -> int:
    """Atheria's ``EpochDetector.determine_epoch``."""
    if e < 1.0:
        return 0
    if s < 0.2 and c < 0.1:
        return 1
    if s > 0.6:
        return 2
    if s > 0.3 and c > 0.5:
        return 3
    if c > 2.0:
        return 4
    return 1


def metrics(psi, summary, psi0, psi0_origin, origin, threshold=None, step: int = 0) -> dict:
    """Every readout of the spec's "Readouts" table over the frame (no vacuum mask).

    ``psi`` the frame's field at ``origin``; ``summary`` [5, H, W] or None before
    the first step; ``psi0`` the field the simulation started from (or was last
    replaced by) at ``psi0_origin``; ``threshold`` the existence threshold or None.
    Sums in float64."""
    psi = np.asarray(psi).astype(np.complex128)
    d = density(psi)
    n = d.size
    total = float(d.sum())
    t = VACUUM if threshold is None else float(threshold)
    clustering = float(np.var(d, ddof=1)) if n > 1 else 0.0
    sym = symmetry(psi)
    p = d / (total + 1e-10)
    return {
        "step": int(step),
        "norm": math.sqrt(total),
        "mean_density": total / n,
        "max_density": float(d.max()),
        "matter_cells": int(np.count_nonzero(np.sqrt(d) > t)),
        "energy": 0.0 if summary is None else float(np.sum(np.asarray(summary, dtype=np.float64)[0])),
        "fidelity": fidelity(psi, origin, psi0, psi0_origin),
        "entropy": float(-np.sum(p * np.log(p + 1e-10))),
        "clustering": clustering,
        "symmetry": sym,
        "epoch": determine_epoch(total, clustering, sym),
    }


def metrics_json(m: dict) -> str:
    """The metrics as one JSON object (floats with full precision)."""
    return json.dumps(m, sort_keys=False)
