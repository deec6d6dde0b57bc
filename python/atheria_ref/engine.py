"""The PyTorch engine: the definition of one Atheria step.

Written the way the original PyTorch engine wrote it (a complex tensor
[1, H, W, D], permutes, chunk, torch.complex), deliberately not optimised:
it is the yardstick the native engines are checked and timed against.
"""

from __future__ import annotations

import torch
from torch import nn

#: Added to the per-cell norm so an all-zero cell stays finite.
NORM_EPS = 1e-9

INITS = ("complex_noise", "random", "zeros")


def step(model: nn.Module, psi: torch.Tensor, gamma: float = 0.0, unitary: bool = False) -> torch.Tensor:
    """One step of ``psi`` (complex64 [1, H, W, D]); returns the new psi."""
    x = torch.cat([psi.real, psi.imag], dim=-1).permute(0, 3, 1, 2)
    delta = model(x).permute(0, 2, 3, 1)
    delta_real, delta_imag = delta.chunk(2, dim=-1)
    delta = torch.complex(delta_real, delta_imag)
    if unitary:
        delta = delta * psi
    if gamma > 0:
        delta = delta - gamma * psi
    psi = psi + delta
    norm = torch.sqrt(torch.sum(torch.abs(psi) ** 2, dim=-1, keepdim=True))
    return psi / (norm + NORM_EPS)


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
    """A dense grid stepped by the PyTorch reference step."""

    def __init__(self, model: nn.Module, psi: torch.Tensor, gamma: float = 0.0, unitary: bool = False,
                 threads: int | None = None, step_count: int = 0):
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.psi = psi
        self.gamma = float(gamma)
        self.unitary = unitary
        self.step_count = step_count

    def run(self, steps: int) -> torch.Tensor:
        """Advances ``steps`` steps; returns the new psi."""
        with torch.inference_mode():
            psi = self.psi
            for _ in range(steps):
                psi = step(self.model, psi, self.gamma, self.unitary)
            self.psi = psi
        self.step_count += steps
        return self.psi
