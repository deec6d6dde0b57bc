"""`atheria_core` compatibility: a drop-in for Atheria's C++/pybind11 module.

    import sys, atheria_native.compat
    sys.modules["atheria_core"] = atheria_native.compat   # before Atheria imports it

Same names and signatures as `atheria_core`: `Engine`, `DenseEngine`,
`Coord3D`, `SparseMap`, `set_num_threads`, `get_max_threads`,
`has_torch_support`, `get_version`, `__version__`. Tensors come back as
torch tensors when torch is installed, numpy arrays when not. `load_model`
takes the TorchScript file Atheria's exporter traced; it is converted to a
model package (cached) and run on candle, or on tch for an architecture
candle does not know. Steps are `atheria_native.Simulation` steps: what
Atheria's Python engine computes. Where `atheria_core` behaves oddly, this
module reproduces it; crates/atheria-py/COMPAT.md lists each case.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from . import _torchscript
from ._errors import AtheriaError
from ._native import Simulation, backends

#: atheria_core's version string that this module stands in for.
__version__ = "4.1.0-atheria-native"

#: C++'s existence threshold: a cell whose norm is at most this after a step is dropped.
EXISTENCE_THRESHOLD = 0.01

#: Strength of the harmonic vacuum's phase noise (harmonic_vacuum.cpp).
VACUUM_STRENGTH = 0.1

#: Depth of the volume compute_visualization("holographic_bulk") returns.
BULK_DEPTH = 5

_HAS_TORCH = importlib.util.find_spec("torch") is not None
_threads: int | None = None


def _torch():
    import torch

    return torch


def get_version() -> str:
    """The version string (`__version__`)."""
    return __version__


def has_torch_support() -> bool:
    """True when torch is importable: tensors are then torch tensors."""
    return _HAS_TORCH


def set_num_threads(num_threads: int) -> None:
    """Threads for models loaded from now on (OpenMP's in atheria_core)."""
    global _threads
    _threads = max(1, int(num_threads))


def get_max_threads() -> int:
    """The threads a model will use: set_num_threads's value, else one per core."""
    return _threads if _threads is not None else (os.cpu_count() or 1)


def _out(array: np.ndarray):
    """`array` as the caller's tensor type (torch when present), sharing memory."""
    return _torch().from_numpy(array) if _HAS_TORCH else array


def _complex(value, what: str) -> np.ndarray:
    """A torch tensor or array-like as a complex64 numpy array."""
    if _HAS_TORCH:
        torch = _torch()
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().resolve_conj().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{what} must be a tensor of numbers, got dtype {array.dtype}")
    return array.astype(np.complex64, copy=False)


class Coord3D:
    """A lattice coordinate with read-write `x`, `y`, `z` (integers).

    Unlike pybind11's, equal coordinates compare equal and hash alike."""

    __slots__ = ("x", "y", "z")

    def __init__(self, x: int = 0, y: int = 0, z: int = 0):
        self.x, self.y, self.z = int(x), int(y), int(z)

    def _key(self) -> tuple[int, int, int]:
        return (self.x, self.y, self.z)

    def __eq__(self, other):
        return isinstance(other, Coord3D) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Coord3D({self.x}, {self.y}, {self.z})"


def _key(coord) -> tuple[int, int, int]:
    """(x, y, z) of a Coord3D (or any object with x, y, z)."""
    try:
        return (int(coord.x), int(coord.y), int(coord.z))
    except AttributeError:
        raise TypeError(f"expected a Coord3D, got {type(coord).__name__}") from None


class SparseMap:
    """atheria_core's SparseMap: integer keys to floats, plus tensors by Coord3D."""

    def __init__(self):
        self._data: dict[int, float] = {}
        self._tensors: dict[tuple[int, int, int], object] = {}

    def insert(self, key: int, value: float) -> None:
        """Inserts or replaces `key`'s value."""
        self._data[int(key)] = float(value)

    def contains(self, key: int) -> bool:
        """True when `key` is present."""
        return int(key) in self._data

    def get(self, key: int, default_value: float = 0.0) -> float:
        """`key`'s value, else `default_value`."""
        return self._data.get(int(key), float(default_value))

    def remove(self, key: int) -> None:
        """Removes `key` (nothing when absent)."""
        self._data.pop(int(key), None)

    def clear(self) -> None:
        """Removes every value and tensor."""
        self._data.clear()
        self._tensors.clear()

    def size(self) -> int:
        """Values plus tensors held (C++ counts both)."""
        return len(self._data) + len(self._tensors)

    def empty(self) -> bool:
        """True when nothing is held."""
        return self.size() == 0

    def keys(self) -> list[int]:
        """The integer keys."""
        return list(self._data)

    def values(self) -> list[float]:
        """The values of the integer keys."""
        return list(self._data.values())

    def __len__(self) -> int:
        return self.size()

    def __contains__(self, key) -> bool:
        return self.contains(key)

    def __setitem__(self, key, value) -> None:
        self.insert(key, value)

    def __getitem__(self, key) -> float:
        if not self.contains(key):
            raise KeyError("Key not found")
        return self._data[int(key)]

    def __delitem__(self, key) -> None:
        self.remove(key)

    def __repr__(self) -> str:
        return f"<SparseMap with {self.size()} elements>"

    def insert_tensor(self, coord, tensor) -> None:
        """Stores `tensor` at `coord`."""
        self._tensors[_key(coord)] = tensor

    def contains_coord(self, coord) -> bool:
        """True when a tensor is stored at `coord`."""
        return _key(coord) in self._tensors

    def get_tensor(self, coord):
        """The tensor at `coord`; an empty tensor when there is none (as C++)."""
        t = self._tensors.get(_key(coord))
        if t is None:
            return _torch().empty(0) if _HAS_TORCH else np.empty(0, np.float32)
        return t

    def remove_coord(self, coord) -> None:
        """Removes the tensor at `coord` (nothing when absent)."""
        self._tensors.pop(_key(coord), None)

    def coord_keys(self) -> list[Coord3D]:
        """The coordinates holding tensors."""
        return [Coord3D(*k) for k in self._tensors]


def _vacuum(key: tuple[int, int, int], step: int, d_state: int) -> np.ndarray:
    """The harmonic vacuum's value at `key` and `step`: exp(i theta) per
    channel, theta ~ 0.1 N(0, 1), the same for the same (coord, step)."""
    seed = [k % (1 << 64) for k in key] + [step]
    theta = np.random.default_rng(seed).standard_normal(d_state).astype(np.float32) * VACUUM_STRENGTH
    return (np.cos(theta) + 1j * np.sin(theta)).astype(np.complex64)


def _load(path, d_state: int, grid: int) -> Simulation:
    """A dense Simulation of `grid` x `grid` running the TorchScript law at `path`."""
    package, backend, d = _torchscript.package_for(os.fspath(path), backends())
    if d != d_state:
        raise ValueError(f"the model has d_state {d} but the engine was built with d_state {d_state}")
    return Simulation(model=str(package), backend=backend, engine="dense", grid=grid, init="zeros",
                      gamma=0.0, threads=_threads)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Engine:
    """atheria_core's sparse engine: matter at Coord3D's, stepped by a TorchScript law.

    The z = 0 plane's `grid_size` x `grid_size` square is stepped as Atheria's
    Python engine steps its grid (one dense forward, zero vacuum at the
    border); matter elsewhere is kept but not stepped. COMPAT.md lists how
    this differs from the C++ engine."""

    def __init__(self, d_state: int, device: str = "cpu", grid_size: int = 64):
        if int(d_state) < 1 or int(grid_size) < 1:
            raise ValueError(f"d_state and grid_size must be at least 1, got {d_state} and {grid_size}")
        self._d = int(d_state)
        self._g = int(grid_size)
        self._device = device
        self._sim: Simulation | None = None
        self._last_error = ""
        self.clear()

    # -- bookkeeping -------------------------------------------------------
    def _in_grid(self, k) -> bool:
        return k[2] == 0 and 0 <= k[0] < self._g and 0 <= k[1] < self._g

    def _activate(self, k, radius: int = 1) -> None:
        r = range(-radius, radius + 1)
        self._extra_active.update((k[0] + dx, k[1] + dy, k[2] + dz) for dx in r for dy in r for dz in r)

    def clear(self) -> None:
        """Removes all matter, the active region and the step count."""
        self._psi = np.zeros((self._g, self._g, self._d), np.complex64)  # zero where no matter
        self._matter = np.zeros((self._g, self._g), bool)
        self._outside: dict[tuple[int, int, int], np.ndarray] = {}
        self._extra_active: set[tuple[int, int, int]] = set()
        self._added: set[tuple[int, int, int]] = set()  # C++'s octree: add_particle's coords
        self._steps = 0

    # -- the API -----------------------------------------------------------
    def load_model(self, model_path) -> bool:
        """Loads a TorchScript law; False (see get_last_error) when it cannot."""
        try:
            self._sim = _load(model_path, self._d, self._g)
        except (AtheriaError, _torchscript.ConversionError, ValueError, OSError) as e:
            self._last_error = _one_line(e)
            self._sim = None
            return False
        self._last_error = ""
        return True

    def add_particle(self, coord, state) -> None:
        """Makes `coord` matter holding `state` ([d_state] complex) and activates its neighbourhood."""
        k = _key(coord)
        values = _complex(state, "state").reshape(-1)
        if values.shape[0] != self._d:
            raise ValueError(f"state has {values.shape[0]} values but d_state is {self._d}")
        if self._in_grid(k):
            self._psi[k[1], k[0]] = values
            self._matter[k[1], k[0]] = True
        else:
            self._outside[k] = values.copy()
        self._added.add(k)
        self._activate(k)

    def get_state_at(self, coord):
        """The matter at `coord`, else the vacuum's fluctuation there (never None)."""
        k = _key(coord)
        if self._in_grid(k) and self._matter[k[1], k[0]]:
            return _out(self._psi[k[1], k[0]].copy())
        if k in self._outside:
            return _out(self._outside[k].copy())
        return _out(_vacuum(k, self._steps, self._d))

    def step_native(self) -> int:
        """One step; returns the matter count. Without a model only the count advances."""
        self._steps += 1
        self._extra_active.clear()  # C++ rebuilds the active region from the matter
        for k in self._outside:
            self._activate(k)
        if self._sim is None:
            return self.get_matter_count()
        try:
            self._sim.psi = self._psi
            self._sim.step(1)
            new = self._sim.psi
        except (AtheriaError, ValueError) as e:
            # C++ logs a failed batch to stderr and carries on; the state is kept.
            self._last_error = _one_line(e)
            print(f"atheria_native.compat: step failed: {self._last_error}", file=sys.stderr)
            return self.get_matter_count()
        matter = np.sqrt(np.sum(np.abs(new) ** 2, axis=-1)) > EXISTENCE_THRESHOLD
        new[~matter] = 0
        self._psi, self._matter = new, matter
        return self.get_matter_count()

    def get_matter_count(self) -> int:
        """Cells holding matter."""
        return int(self._matter.sum()) + len(self._outside)

    def get_step_count(self) -> int:
        """Steps taken since construction or clear()."""
        return self._steps

    def activate_neighborhood(self, coord, radius: int = 1) -> None:
        """Adds the (2 radius + 1)^3 cube around `coord` to the active region."""
        self._activate(_key(coord), int(radius))

    def _active_keys(self) -> list[tuple[int, int, int]]:
        # The grid's matter dilated by one cell in x, y and z.
        g = self._g
        m = np.zeros((g + 2, g + 2), bool)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                m[dy:dy + g, dx:dx + g] |= self._matter
        ys, xs = np.nonzero(m)
        xs, ys = (xs - 1).tolist(), (ys - 1).tolist()
        keys = [(x, y, 0) for x, y in zip(xs, ys)]
        seen = set(keys)
        for z in (-1, 1):
            keys.extend((x, y, z) for x, y in zip(xs, ys))
        seen.update(keys[len(xs):])
        keys.extend(k for k in self._extra_active if k not in seen)
        return keys

    def get_active_coords(self) -> list[Coord3D]:
        """The active region (matter and its neighbours, and activated cells)."""
        return [Coord3D(*k) for k in self._active_keys()]

    def get_last_error(self) -> str:
        """The last load_model (or step) error; "" when none."""
        return self._last_error

    def compute_visualization(self, viz_type: str):
        """A map of the grid plane's matter as atheria_core draws it: density,
        energy, phase [G, G]; holographic [G, G, 3]; holographic_bulk [5, G, G];
        zeros [G, G] for any other name."""
        psi, m = self._psi, self._matter
        density = np.where(m, np.sum(np.abs(psi) ** 2, axis=-1), 0).astype(np.float32)
        if viz_type in ("density", "energy"):
            return _out(density)
        if viz_type == "phase":
            return _out(np.where(m, np.angle(psi[..., 0]), 0).astype(np.float32))
        if viz_type == "holographic":
            rgb = np.zeros((self._g, self._g, 3), np.float32)
            rgb[..., 0] = np.minimum(1.0, density * 5.0)
            rgb[..., 1] = (np.angle(psi[..., 0]) + np.pi) / (2 * np.pi)
            rgb[..., 2] = np.clip((psi[..., 0].real + 1.0) * 0.5, 0.0, 1.0)
            rgb[~m] = 0
            return _out(rgb)
        if viz_type == "holographic_bulk":
            return _out(_blur_stack(density[None], BULK_DEPTH))
        return _out(np.zeros((self._g, self._g), np.float32))

    def query_radius(self, center, radius: int) -> list[Coord3D]:
        """The coordinates add_particle was given that lie in the cube of
        half-side `radius` around `center` (C++'s octree: steps do not update it)."""
        c, r = _key(center), int(radius)
        return [Coord3D(*k) for k in sorted(self._added) if all(abs(k[i] - c[i]) <= r for i in range(3))]


#: The 3x3 Gaussian of the renormalisation flow.
_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16.0


def _blur_stack(field: np.ndarray, depth: int) -> np.ndarray:
    """[C, H, W] -> [depth * C, H, W]: the field and depth - 1 successive 3x3
    Gaussian blurs (zero padding), layer-major as torch.cat puts them."""
    layers, cur = [field.astype(np.float32)], field.astype(np.float32)
    h, w = field.shape[1:]
    for _ in range(1, depth):
        p = np.pad(cur, ((0, 0), (1, 1), (1, 1)))
        cur = sum(_KERNEL[dy, dx] * p[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)).astype(np.float32)
        layers.append(cur)
    return np.concatenate(layers, axis=0)


class DenseEngine:
    """atheria_core's dense engine: a [1, d_state, H, W] complex64 state
    stepped by a TorchScript law (psi + delta, per-cell normalisation)."""

    def __init__(self, grid_size: int, d_state: int, device: str = "cpu"):
        if int(d_state) < 1 or int(grid_size) < 1:
            raise ValueError(f"d_state and grid_size must be at least 1, got {d_state} and {grid_size}")
        self._d, self._g, self._device = int(d_state), int(grid_size), device
        self._state = np.zeros((1, self._d, self._g, self._g), np.complex64)
        self._sim: Simulation | None = None
        self._path = None
        self._steps = 0

    def load_model(self, path) -> bool:
        """Loads a TorchScript law; False (and a line on stderr, as C++) when it cannot."""
        try:
            self._sim = _load(path, self._d, self._state.shape[2])
            self._path = path
            return True
        except (AtheriaError, _torchscript.ConversionError, ValueError, OSError) as e:
            print(f"Error loading model: {_one_line(e)}", file=sys.stderr)
            self._sim = None
            return False

    def step(self) -> int:
        """One step; returns H * W, 0 without a model, -1 (and a line on stderr) on failure.

        The state is updated in place: a tensor get_state returned sees it."""
        if self._sim is None:
            return 0
        try:
            _, d, h, w = self._state.shape
            if h != w:
                raise ValueError(f"the state must be square, got {h} x {w}")
            if d != self._d:
                raise ValueError(f"the state has {d} channels but d_state is {self._d}")
            if self._sim.psi.shape[0] != h:
                self._sim = _load(self._path, self._d, h)
            self._sim.psi = self._state[0].transpose(1, 2, 0)
            self._sim.step(1)
            self._state[0] = self._sim.psi.transpose(2, 0, 1)
        except (AtheriaError, ValueError, _torchscript.ConversionError) as e:
            print(f"Error in step(): {_one_line(e)}", file=sys.stderr)
            return -1
        self._steps += 1
        return h * w

    def get_state(self):
        """The state [1, d_state, H, W] complex64 (the engine's own, not a copy, as C++)."""
        return _out(self._state)

    def set_state(self, state) -> None:
        """Replaces the state: [1, d_state, H, W] or [d_state, H, W] complex."""
        array = _complex(state, "state")
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"state must be [1, d_state, H, W] or [d_state, H, W], got shape {list(array.shape)}")
        self._state = np.ascontiguousarray(array)

    def apply_tool(self, action: str, params: dict) -> bool:
        """Always False, as atheria_core (its native tools are placeholders):
        Atheria then applies the tool in Python."""
        return False

    def generate_bulk_state(self, base_field, depth: int):
        """[1, depth * C, H, W]: `base_field` ([H, W], [C, H, W] or [1, C, H, W])
        and depth - 1 successive 3x3 Gaussian blurs of it."""
        if _HAS_TORCH and isinstance(base_field, _torch().Tensor):
            base_field = base_field.detach().cpu().numpy()
        f = np.asarray(base_field, np.float32)
        if f.ndim == 2:
            f = f[None]
        elif f.ndim == 4:
            f = f[0]
        if f.ndim != 3 or int(depth) < 1:
            raise ValueError(f"base_field must be [H, W], [C, H, W] or [1, C, H, W] and depth >= 1, got {list(np.shape(base_field))}, {depth}")
        return _out(_blur_stack(f, int(depth))[None])

    def get_step_count(self) -> int:
        """Steps taken."""
        return self._steps


__all__ = [
    "Coord3D",
    "DenseEngine",
    "Engine",
    "SparseMap",
    "__version__",
    "get_max_threads",
    "get_version",
    "has_torch_support",
    "set_num_threads",
]
