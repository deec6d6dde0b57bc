#!/usr/bin/env python3
"""Writes the instrument fixtures tests/fixtures/instruments/<case>.safetensors (fixed seeds).

    .venv/bin/python python/make_instruments_golden.py [--out tests/fixtures/instruments]

Three cases (docs/instruments.md is the spec, python/atheria_ref/instruments.py
the reference that computes every expected value):

- ``square``: bounded 16 x 16 grid at (0, 0), D = 4;
- ``rect``: bounded grid W = 20, H = 12 at (0, 0), D = 2;
- ``sparse``: unbounded lattice, D = 4, an irregular blob whose bounding box
  (14 x 9 at (-40, 1000)) is the frame and the extent.

Each file holds the state (``psi.re/.im`` [H, W, D], ``occupied`` u8 [H, W],
``delta.re/.im``, ``psi0.re/.im``, ``summary`` [5, H, W]), every visualization
(``viz.<name>.raw`` / ``.norm`` with the vacuum mask, ``.raw_nomask``;
``viz.flow.dx/.dy``; ``viz.energy.raw_nostep``, ``viz.physics.raw_nostep``)
and the frame after each tool (``tool.<i>.re/.im/.occupied``, the tool
string in metadata ``tool.<i>``, its frame origin in ``tool.<i>.origin``;
a stamp's block in ``stamp.<i>.re/.im/.occupied``; its string says ``file=patch.safetensors``).
Metadata also has ``case``, ``lattice``, ``origin``, ``extent`` (unbounded),
``psi0_origin``, ``threshold``, ``step`` and ``metrics`` (JSON).
A click-out's ``@step=N`` is the step s it runs after (the first step after it
is switched on "before step N"); its frame is click-out run once on the state.
Rerunning rewrites every file byte for byte.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atheria_ref import instruments as I  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEP = 7
VIZ = ("density", "phase", "phase:1", "real", "imag", "energy", "gradient", "spectral", "physics",
       "fields", "flow", "phase_hsv", "holographic", "holographic_bulk", "delta")

#: The sparse case's blob (rows top to bottom, '#' = matter): its bounding box is the whole 14 x 9.
BLOB = """
....###.......
..#######.....
.##########...
############..
#############.
.###########.#
..#########...
...######.....
.....##.......
"""


def random_field(rs: np.random.Generator, h: int, w: int, d: int) -> np.ndarray:
    """Complex normal noise normalised per cell to 1, complex64 [H, W, D]."""
    psi = rs.normal(size=(h, w, d)) + 1j * rs.normal(size=(h, w, d))
    psi /= np.sqrt(np.sum(np.abs(psi) ** 2, axis=-1, keepdims=True))
    return psi.astype(np.complex64)


def make_state(seed: int, h: int, w: int, d: int, blob: np.ndarray | None, shift=(0, 0)):
    """psi (vacuum and tiny cells included), occupied, delta, and psi0: a box of the same size
    moved by ``shift``, holding psi's value at the same coordinates (0 outside psi's box) plus
    noise, normalised per cell, so the fidelity is far from 0 only if cells pair by coordinates."""
    rs = np.random.default_rng(seed)
    psi = random_field(rs, h, w, d)
    occ = np.ones((h, w), dtype=bool) if blob is None else blob.copy()
    cells = np.argwhere(occ[1:-1, 1:-1]) + 1  # inside the border: the matter's box stays the frame
    pick = rs.choice(len(cells), size=8, replace=False)
    for r, c in cells[pick[:4]]:  # vacuum: zero, not matter
        occ[r, c] = False
    for r, c in cells[pick[4:]]:  # tiny: |psi| = 0.03, still matter
        psi[r, c] *= np.float32(0.03)
    psi[~occ] = 0
    delta = (0.1 * (rs.normal(size=(h, w, d)) + 1j * rs.normal(size=(h, w, d)))).astype(np.complex64)
    sx, sy = shift
    under = np.zeros_like(psi)
    # psi0's cell (r, c) lies at psi's cell (r + sy, c + sx).
    under[max(0, -sy):min(h, h - sy), max(0, -sx):min(w, w - sx)] = psi[max(0, sy):min(h, h + sy),
                                                                        max(0, sx):min(w, w + sx)]
    psi0 = under + 0.6 * random_field(rs, h, w, d)
    psi0 = (psi0 / np.sqrt(np.sum(np.abs(psi0) ** 2, axis=-1, keepdims=True))).astype(np.complex64)
    return psi, occ, delta, psi0


def gate_steps(seed: int, chance: float) -> tuple[int, int]:
    """The first steps s >= 1 at which the click-out gate says no and yes."""
    no = next(s for s in range(1, 10_000) if not I.click_out_gate(seed, s, chance))
    yes = next(s for s in range(1, 10_000) if I.click_out_gate(seed, s, chance))
    return no, yes


def tools_for(case: str) -> list[str]:
    """The tool strings of a case (a stamp's ``file=patch.safetensors`` is the block stored as ``stamp.<i>``)."""
    if case == "square":
        no, yes = gate_steps(5, 0.3)
        tools = [
            "vortex:x=8,y=7,radius=4,strength=1",      # inside
            "vortex:x=14,y=1,radius=5,strength=0.6",   # clipped at the top-right corner
            "wave:k_x=3,k_y=-2",
            "wave:k_x=0.5,k_y=1.5",
            "collapse:x=8,y=5,intensity=0.5,seed=3",   # inside
            "collapse:x=2,y=10,intensity=0.3,seed=4",  # left edge: starts at 0
            "collapse:x=14,y=3,intensity=1,seed=5",    # right edge: shifted to 5..15
            f"click_out:chance=1,seed=2@step={STEP}",
            f"click_out:chance=0.3,seed=5@step={no}",  # the gate says no
            f"click_out:chance=0.3,seed=5@step={yes}",  # the gate says yes
            "inject_energy:mode=primordial_soup,seed=3",  # seeds 7 cells
            "inject_energy:mode=dense_monolith,seed=2",
            "inject_energy:mode=symmetric_seed,seed=3",
            "phase_vortex:x=7,y=9,charge=1,core=2",
            "phase_vortex:x=4,y=4,charge=-2,core=3",
            "stamp:x=10,y=12,file=patch.safetensors",
        ]
    elif case == "rect":
        no, yes = gate_steps(6, 0.3)
        tools = [
            "vortex:x=10,y=6,radius=3,strength=1",
            "vortex:x=1,y=10,radius=4,strength=0.8",   # clipped at the bottom-left corner
            "wave:k_x=2,k_y=0",
            "wave:k_x=-1.5,k_y=4",
            "collapse:x=9,y=4,intensity=0.5,seed=1",
            "collapse:x=0,y=7,intensity=0.8,seed=2",   # left edge
            "collapse:x=19,y=11,intensity=0.25,seed=3",  # right edge: shifted to 9..19
            f"click_out:chance=1,seed=4@step={STEP}",
            f"click_out:chance=0.3,seed=6@step={no}",
            f"click_out:chance=0.3,seed=6@step={yes}",
            "inject_energy:mode=primordial_soup,seed=4",  # seeds 8 cells
            "inject_energy:mode=dense_monolith,seed=2",
            "inject_energy:mode=symmetric_seed,seed=3",
            "phase_vortex:x=12,y=5,charge=1,core=2",
            "phase_vortex:x=3,y=8,charge=-2,core=1.5",
            "stamp:x=17,y=10,file=patch.safetensors",  # fills the bottom-right corner exactly
        ]
    else:
        no, yes = gate_steps(8, 0.3)
        tools = [
            "vortex:x=-33,y=1004,radius=3,strength=1",    # inside the extent
            "vortex:x=-40,y=1001,radius=4,strength=0.7",  # partly outside: creates matter
            "wave:k_x=3,k_y=-2",
            "wave:k_x=0.5,k_y=1.5",
            "collapse:x=-33,y=1004,intensity=0.5,seed=3",
            "collapse:x=-28,y=1008,intensity=0.3,seed=4",  # runs past the extent: no shift
            f"click_out:chance=1,seed=2@step={STEP}",
            f"click_out:chance=0.3,seed=8@step={no}",
            f"click_out:chance=0.3,seed=8@step={yes}",
            "inject_energy:mode=primordial_soup,seed=1",  # R = 20 (cap)
            "inject_energy:mode=dense_monolith,seed=2",   # S = 10 (cap)
            "inject_energy:mode=symmetric_seed,seed=3",   # S = 8 (cap)
            "inject_energy:mode=primordial_soup,x=-45,y=1010,seed=7",
            "phase_vortex:x=-34,y=1003,charge=1,core=2",
            "phase_vortex:x=-30,y=1006,charge=-2,core=1.25",
            "stamp:x=-28,y=1008,file=patch.safetensors",  # partly outside the extent
        ]
    return tools


def make_patch(seed: int, d: int) -> I.Frame:
    """A 3 x 2 block (w 3, h 2) with one unoccupied (zero) cell."""
    rs = np.random.default_rng(seed)
    psi = random_field(rs, 2, 3, d)
    occ = np.ones((2, 3), dtype=bool)
    occ[1, 0] = False
    psi[1, 0] = 0
    return I.Frame(psi, occ, (0, 0))


def put_complex(t: dict, name: str, z: np.ndarray) -> None:
    t[f"{name}.re"] = np.ascontiguousarray(z.real, dtype=np.float32)
    t[f"{name}.im"] = np.ascontiguousarray(z.imag, dtype=np.float32)


def save_sorted(tensors: dict, path: Path, meta: dict) -> None:
    """``safetensors.numpy.save_file`` with the header's keys sorted, so a rerun writes the same bytes
    (the library writes the metadata map in hash order). Data offsets are unchanged."""
    save_file(tensors, str(path), metadata=meta)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + n:])


def build(case: str):
    if case == "square":
        h, w, d, origin, seed, blob = 16, 16, 4, (0, 0), 101, None
    elif case == "rect":
        h, w, d, origin, seed, blob = 12, 20, 2, (0, 0), 102, None
    else:
        rows = [r for r in BLOB.strip().splitlines()]
        blob = np.array([[ch == "#" for ch in r] for r in rows])
        h, w, d, origin, seed = 9, 14, 4, (-40, 1000), 103
    shift = (3, -2) if case == "sparse" else (0, 0)
    psi, occ, delta, psi0 = make_state(seed, h, w, d, blob, shift)
    x0, y0 = origin
    if case == "sparse":
        lattice = I.Lattice.unbounded((x0, y0, x0 + w - 1, y0 + h - 1))
        psi0_origin, threshold = (x0 + shift[0], y0 + shift[1]), None
        rows, cols = np.nonzero(occ)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, h - 1, 0, w - 1), "the blob fills its box"
    else:
        lattice = I.Lattice.bounded(origin, w, h)
        psi0_origin, threshold = origin, (None if case == "square" else 0.5)
    summary = I.delta_summary(psi, delta)

    t: dict[str, np.ndarray] = {}
    meta = {"case": case, "lattice": "bounded" if lattice.is_bounded else "unbounded",
            "origin": f"{x0},{y0}", "psi0_origin": "{},{}".format(*psi0_origin),
            "threshold": "none" if threshold is None else repr(threshold), "step": str(STEP)}
    if not lattice.is_bounded:
        meta["extent"] = ",".join(map(str, lattice.box))
    put_complex(t, "psi", psi)
    t["occupied"] = occ.astype(np.uint8)
    put_complex(t, "delta", delta)
    put_complex(t, "psi0", psi0)
    t["summary"] = summary

    for name in VIZ:
        raw = I.field(name, psi, summary, mask=True)
        t[f"viz.{name}.raw"] = raw
        t[f"viz.{name}.norm"] = I.normalize(name, raw)
        t[f"viz.{name}.raw_nomask"] = I.field(name, psi, summary, mask=False)
    t["viz.flow.dx"], t["viz.flow.dy"] = I.flow_vectors(psi, summary, mask=True)
    t["viz.energy.raw_nostep"] = I.field("energy", psi, None, mask=True)
    t["viz.physics.raw_nostep"] = I.field("physics", psi, None, mask=True)

    m = I.metrics(psi, summary, psi0, psi0_origin, origin, threshold, STEP)
    meta["metrics"] = json.dumps(m)

    frame = I.Frame(psi, occ, origin)
    for i, tool in enumerate(tools_for(case)):
        patch = None
        if tool.startswith("stamp:"):
            assert "file=patch.safetensors" in tool, tool  # stands for the tensors stamp.<i>.*
            patch = make_patch(200 + i, d)
            put_complex(t, f"stamp.{i}", patch.psi)
            t[f"stamp.{i}.occupied"] = patch.occupied.astype(np.uint8)
        out = I.apply_tool(frame, tool, lattice, d, patch)
        put_complex(t, f"tool.{i}", out.psi)
        t[f"tool.{i}.occupied"] = out.occupied.astype(np.uint8)
        meta[f"tool.{i}"] = tool
        meta[f"tool.{i}.origin"] = "{},{}".format(*out.origin)
    return t, meta


README = """# Instrument fixtures

`square`, `rect` (bounded grids) and `sparse` (unbounded lattice) `.safetensors`: a state (psi, occupancy, delta,
psi0, delta summary), every visualization of `docs/instruments.md` (raw, normalised, unmasked), the readouts
(metadata `metrics`, JSON) and the whole frame after each tool (metadata `tool.<i>`: the tool string; a click-out's
`@step=N` is the step it runs after; a stamp's `file=patch.safetensors` is the block `stamp.<i>.*`), all computed by the
reference `python/atheria_ref/instruments.py`. Regenerate (deterministic, byte for byte):
`.venv/bin/python python/make_instruments_golden.py`; the full list of names is in that script's docstring.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "instruments"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for case in ("square", "rect", "sparse"):
        t, meta = build(case)
        path = out / f"{case}.safetensors"
        save_sorted(t, path, meta)
        print(f"{path}: {len(t)} tensors, {path.stat().st_size} bytes", file=sys.stderr)
    (out / "README.md").write_text(README)


if __name__ == "__main__":
    main()
