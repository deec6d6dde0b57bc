"""atheria_native: Atheria Native's Rust engine from Python.

    import atheria_native as an
    sim = an.Simulation(grid=64, seed=1)   # the built-in law on candle
    sim.step(100)                          # GIL released; Ctrl-C stops between steps
    psi = sim.psi                          # complex64 numpy array [H, W, D] (a copy)
    print(sim.step_count, sim.metrics()["norm"])

`Simulation` wraps the library's `atheria::Simulation`: the dense engine (one
forward over the whole grid, as the PyTorch reference engine) or the sparse
engine (an unbounded lattice). Errors are `InvalidInput` (a `ValueError`) for
input that cannot be used and `StepFailed` (a `RuntimeError`) for a failed
step, both `AtheriaError`.
"""

import numpy as _numpy  # noqa: F401  (imported here, not by the first psi read)

from ._errors import AtheriaError, InvalidInput, StepFailed
from ._native import Simulation, __version__, backends

__all__ = [
    "AtheriaError",
    "InvalidInput",
    "Simulation",
    "StepFailed",
    "__version__",
    "backends",
]
