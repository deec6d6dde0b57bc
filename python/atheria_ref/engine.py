"""The PyTorch engine: the definition of one Atheria step.

Written the way the original PyTorch engine wrote it (a complex tensor
[1, H, W, D], permutes, chunk, torch.complex), deliberately not optimised:
it is the yardstick the native engines are checked and timed against.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import is_recurrent

#: Added to the per-cell norm so an all-zero cell stays finite.
NORM_EPS = 1e-9

INITS = ("complex_noise", "random", "zeros")


def advance(model: nn.Module, psi: torch.Tensor, gamma: float = 0.0, unitary: bool = False,
            memory: list[torch.Tensor] | None = None):
    """psi + delta for ``psi`` (complex64 [1, H, W, D]): a step before normalisation.

    For a recurrent law pass its ``memory`` (the tensors ``forward`` takes
    after x, e.g. [h_state, c_state], each [1, C, H', W']); it then returns
    (psi + delta, the memory for the next step), as Atheria's CartesianEngine
    feeds the model's h_next, c_next to the next step.
    """
    x = torch.cat([psi.real, psi.imag], dim=-1).permute(0, 3, 1, 2)
    if memory is not None:
        delta, *memory = model(x, *memory)
    else:
        delta = model(x)
    delta = delta.permute(0, 2, 3, 1)
    delta_real, delta_imag = delta.chunk(2, dim=-1)
    delta = torch.complex(delta_real, delta_imag)
    if unitary:
        delta = delta * psi
    if gamma > 0:
        delta = delta - gamma * psi
    if memory is not None:
        return psi + delta, memory
    return psi + delta


def cell_norm(psi: torch.Tensor) -> torch.Tensor:
    """The norm of every cell, [1, H, W, 1]."""
    return torch.sqrt(torch.sum(torch.abs(psi) ** 2, dim=-1, keepdim=True))


def step(model: nn.Module, psi: torch.Tensor, gamma: float = 0.0, unitary: bool = False) -> torch.Tensor:
    """One step of ``psi`` (complex64 [1, H, W, D]) by a law without memory; returns the new psi."""
    psi = advance(model, psi, gamma, unitary)
    return psi / (cell_norm(psi) + NORM_EPS)


def step_with_memory(model: nn.Module, psi: torch.Tensor, memory: list[torch.Tensor], gamma: float = 0.0,
                     unitary: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One step of a recurrent law: (new psi, the memory the model returned)."""
    psi, memory = advance(model, psi, gamma, unitary, memory)
    return psi / (cell_norm(psi) + NORM_EPS), memory


def zero_memory(model: nn.Module, height: int, width: int, batch: int = 1) -> list[torch.Tensor]:
    """A recurrent model's memory at the start of a run: zeros, as in Atheria
    (its QuantumState starts with h_state = c_state = None, which the model reads as zeros)."""
    return [torch.zeros(s) for s in model.memory_shapes(batch, height, width)]


def initial_state(kind: str, height: int, width: int, d_state: int, seed: int = 0) -> torch.Tensor:
    """A seeded initial psi, complex64 [1, H, W, D].

    ``complex_noise``: psi = exp(i theta), theta ~ 0.1 N(0, 1) per channel
    (|psi| = 1 per channel; the first step normalises each cell).
    ``random``: re and im ~ N(0, 1), normalised per cell.
    ``zeros``: all zero.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (1, height, width, d_state)
    if kind == "complex_noise":
        theta = torch.randn(shape, generator=gen) * 0.1
        return torch.polar(torch.ones(shape), theta)
    if kind == "random":
        re = torch.randn(shape, generator=gen)
        im = torch.randn(shape, generator=gen)
        psi = torch.complex(re, im)
        norm = torch.sqrt(torch.sum(torch.abs(psi) ** 2, dim=-1, keepdim=True))
        return psi / (norm + NORM_EPS)
    if kind == "zeros":
        return torch.zeros(shape, dtype=torch.complex64)
    raise ValueError(f"unknown initial state `{kind}`: use {', '.join(INITS)} or a state file")


class ReferenceEngine:
    """A dense grid stepped by the PyTorch reference step.

    A recurrent law's memory (``self.memory``: one tensor per name in
    ``self.memory_names``, each [1, C, H', W']) starts as zeros unless
    ``memory`` is given (a dict name -> [C, H', W'] or [1, C, H', W'] array,
    e.g. from a state file; a name left out starts from zeros), and after
    every step is what the model returned, as in Atheria's CartesianEngine.
    It is None for a law without memory.
    """

    def __init__(self, model: nn.Module, psi: torch.Tensor, gamma: float = 0.0, unitary: bool = False,
                 threads: int | None = None, step_count: int = 0, memory: dict | None = None):
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.psi = psi
        self.gamma = float(gamma)
        self.unitary = unitary
        self.step_count = step_count
        self.memory_names: tuple[str, ...] = tuple(model.MEMORY) if is_recurrent(model) else ()
        self.memory: list[torch.Tensor] | None = None
        if self.memory_names:
            self.memory = zero_memory(model, psi.shape[1], psi.shape[2], psi.shape[0])
            for i, name in enumerate(self.memory_names):
                given = (memory or {}).get(name)
                if given is None:
                    continue
                t = torch.as_tensor(given, dtype=torch.float32).clone()
                if t.dim() == 3:
                    t = t[None]
                if tuple(t.shape) != tuple(self.memory[i].shape):
                    raise ValueError(f"memory `{name}` has shape {list(given.shape)}, the model needs "
                                     f"{list(self.memory[i].shape[1:])} for a {psi.shape[1]} x {psi.shape[2]} grid")
                self.memory[i] = t
        elif memory:
            raise ValueError(f"memory {sorted(memory)} given for a law without memory")

    def memory_dict(self) -> dict[str, torch.Tensor]:
        """The memory as name -> [C, H', W'] (the state file's layout); empty without memory."""
        if self.memory is None:
            return {}
        return {n: t[0] for n, t in zip(self.memory_names, self.memory)}

    def run(self, steps: int) -> torch.Tensor:
        """Advances ``steps`` steps; returns the new psi."""
        with torch.inference_mode():
            psi, memory = self.psi, self.memory
            for _ in range(steps):
                if memory is None:
                    psi = step(self.model, psi, self.gamma, self.unitary)
                else:
                    psi, memory = step_with_memory(self.model, psi, memory, self.gamma, self.unitary)
            self.psi, self.memory = psi, memory
        self.step_count += steps
        return self.psi


#: The sparse engine's defaults (``SparseOptions`` in crates/sparse-grid).
DEFAULT_TILE = 16
DEFAULT_THRESHOLD = 0.01


class SparseWindowEngine:
    """The sparse engine's step of a global model (receptive radius null),
    written independently of the Rust one (crates/sparse-grid/src/sparse/window.rs).

    The lattice is unbounded; the state is held as a box of cells at
    (``origin_x``, ``origin_y``) with an ``occupied`` mask: matter where it
    is set, zero vacuum elsewhere. One step:

    1. Tiles are ``tile`` x ``tile`` cells aligned at multiples of ``tile``
       in absolute lattice coordinates (floor division, also below zero).
       The window is the bounding box of the tiles holding matter, grown by
       one tile on every side; its width and height are then rounded up
       (extending right and down) to ``multiple``.
    2. The window holds psi on matter cells and zero elsewhere; the reference
       ``step`` runs on it once (one forward over the whole window).
    3. A cell whose norm before normalisation is below ``threshold`` becomes
       vacuum (psi 0, not matter); every other cell of the window is matter.

    A global law's output depends on the window it is shown, so this equals
    the Rust sparse engine, not a dense run of the same law.
    """

    def __init__(self, model: nn.Module, psi, occupied=None, origin=(0, 0), gamma: float = 0.0,
                 unitary: bool = False, multiple: int = 1, tile: int = DEFAULT_TILE,
                 threshold: float = DEFAULT_THRESHOLD, threads: int | None = None, step_count: int = 0):
        """``psi``: complex [H, W, D] (numpy or torch; complex128 with a float64 model runs in float64,
        anything else in complex64); ``occupied``: [H, W] (None: every cell is matter)."""
        if threads is not None:
            torch.set_num_threads(threads)
        if tile < 1 or multiple < 1:
            raise ValueError(f"tile ({tile}) and multiple ({multiple}) must be at least 1")
        #: A recurrent law's memory (a list of [1, C, h/s, w/s] tensors, s = 4 for UNetConvLSTM) and the
        #: lattice cell of its reduced cell (0, 0): the window of the last step; None before the first.
        self.memory: list[torch.Tensor] | None = None
        self.memory_origin: tuple[int, int] | None = None
        if is_recurrent(model) and tile % 4:
            raise ValueError(f"a recurrent law's memory grid (stride 4) needs a tile that is a multiple of 4, got {tile}")
        self.model = model.eval()
        psi = torch.as_tensor(psi)
        psi = psi.to(torch.complex128 if psi.dtype == torch.complex128 else torch.complex64)
        if psi.ndim != 3:
            raise ValueError(f"psi must be [H, W, D], got shape {tuple(psi.shape)}")
        occ = (torch.ones(psi.shape[:2], dtype=torch.bool) if occupied is None
               else torch.as_tensor(occupied).to(torch.bool))
        if tuple(occ.shape) != tuple(psi.shape[:2]):
            raise ValueError(f"occupied must be [H, W] = {tuple(psi.shape[:2])}, got {tuple(occ.shape)}")
        self.psi = torch.where(occ[..., None], psi, torch.zeros((), dtype=psi.dtype))
        self.occupied = occ
        self.origin_x, self.origin_y = (int(v) for v in origin)
        self.gamma = float(gamma)
        self.unitary = unitary
        self.multiple = int(multiple)
        self.tile = int(tile)
        self.threshold = float(threshold)
        self.step_count = step_count
        #: (x, y, width, height) of each step's window, in order.
        self.windows: list[tuple[int, int, int, int]] = []

    def matter_cells(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Absolute (x, y) of every cell of matter."""
        ys, xs = torch.nonzero(self.occupied, as_tuple=True)
        return xs + self.origin_x, ys + self.origin_y

    def next_window(self) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) of the next step's window; None without matter."""
        xs, ys = self.matter_cells()
        if xs.numel() == 0:
            return None
        t, m = self.tile, self.multiple

        def span(lo: int, hi: int) -> tuple[int, int]:
            first, last = lo // t - 1, hi // t + 1  # tiles, one ring grown
            length = (last - first + 1) * t
            return first * t, -(-length // m) * m  # rounded up

        (x, w), (y, h) = span(int(xs.min()), int(xs.max())), span(int(ys.min()), int(ys.max()))
        return x, y, w, h

    def run(self, steps: int) -> None:
        """Advances ``steps`` steps."""
        with torch.inference_mode():
            for _ in range(steps):
                self._step()

    def _step(self) -> None:
        self.step_count += 1
        win = self.next_window()
        if win is None:
            return
        x, y, w, h = win
        self.windows.append(win)
        d = self.psi.shape[-1]
        field = torch.zeros((1, h, w, d), dtype=self.psi.dtype)
        oy, ox = self.origin_y - y, self.origin_x - x
        bh, bw = self.occupied.shape
        field[0, oy:oy + bh, ox:ox + bw] = self.psi
        if is_recurrent(self.model):
            memory = self._memory_for(x, y, w, h)
            new, memory = advance(self.model, field, self.gamma, self.unitary, memory)
            self.memory, self.memory_origin = [m.detach() for m in memory], (x, y)
        else:
            new = advance(self.model, field, self.gamma, self.unitary)
        norm = cell_norm(new)
        alive = norm >= self.threshold
        new = torch.where(alive, new / (norm + NORM_EPS), torch.zeros((), dtype=new.dtype))
        self.psi, self.occupied = new[0], alive[0, :, :, 0]
        self.origin_x, self.origin_y = x, y

    def _memory_for(self, x: int, y: int, w: int, h: int) -> list[torch.Tensor]:
        """The memory for the window at (x, y) of w x h cells: zeros, with the values of the last
        window's memory copied where the two windows' reduced grids (cells of 4 x 4 lattice cells,
        aligned at multiples of 4 since windows start on tiles) overlap."""
        out = [torch.zeros(s) for s in self.model.memory_shapes(1, h, w)]
        if self.memory is None:
            return out
        s = 4
        (px, py), (nx, ny) = self.memory_origin, (x, y)
        for new, old in zip(out, self.memory):
            oh, ow = old.shape[-2:]
            nh, nw = new.shape[-2:]
            # Overlap in absolute reduced coordinates.
            x0, x1 = max(px // s, nx // s), min(px // s + ow, nx // s + nw)
            y0, y1 = max(py // s, ny // s), min(py // s + oh, ny // s + nh)
            if x0 < x1 and y0 < y1:
                new[..., y0 - ny // s:y1 - ny // s, x0 - nx // s:x1 - nx // s] = \
                    old[..., y0 - py // s:y1 - py // s, x0 - px // s:x1 - px // s]
        return out

    def matter_box(self):
        """The smallest box holding every cell of matter, as (psi [h, w, D], occupied u8 [h, w],
        origin_x, origin_y), vacuum zero; a 1 x 1 box of vacuum at (0, 0) when no matter is left
        (what ``atheria run --engine sparse --save`` writes)."""
        ys, xs = torch.nonzero(self.occupied, as_tuple=True)
        d = self.psi.shape[-1]
        if ys.numel() == 0:
            return torch.zeros((1, 1, d), dtype=self.psi.dtype), torch.zeros((1, 1), dtype=torch.uint8), 0, 0
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        return (self.psi[y0:y1, x0:x1].clone(), self.occupied[y0:y1, x0:x1].to(torch.uint8),
                self.origin_x + x0, self.origin_y + y0)
