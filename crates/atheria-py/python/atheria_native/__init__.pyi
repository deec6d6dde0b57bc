"""Type stubs of atheria_native (see the package docstring)."""

import os
from typing import Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]

class AtheriaError(Exception):
    """Any error of the Atheria engine; the message is the library's."""

class InvalidInput(AtheriaError, ValueError):
    """An argument, array, model package or state file that cannot be used."""

class StepFailed(AtheriaError, RuntimeError):
    """A step failed; the state is as it was before it."""

def backends() -> list[str]:
    """Backends compiled into this module: some of candle, tch, onnx."""

class Simulation:
    """One running universe: a law, an engine and its lattice.

    Every call runs with the GIL released; one simulation may be used from
    several threads (calls take turns), and several simulations step at once.
    """

    def __init__(
        self,
        model: Optional[PathLike] = None,
        backend: str = "candle",
        engine: str = "dense",
        grid: int = 128,
        init: str = "random",
        seed: int = 0,
        gamma: float = 0.0,
        threads: Optional[int] = None,
        threshold: Optional[float] = None,
        experiment: Optional[PathLike] = None,
        tile: Optional[int] = None,
        atomic_steps: bool = True,
    ) -> None:
        """Loads the law and makes the initial state.

        model: a model package directory (model.json), or None for the
        built-in law (candle only). backend: "candle", "tch" or "onnx".
        engine: "dense" or "sparse". grid: side of the initial square field.
        init: "random", "complex_noise", "zeros" or a state file's path.
        seed: the initial field's seed. gamma: the decay term. threads: the
        backend's threads (default one per core). threshold: the existence
        threshold (default off for dense, 0.01 for sparse). experiment: an
        Atheria experiment folder (its law, gamma, grid and initial state).
        tile: the sparse engine's tile side (a power of two, default 16).
        atomic_steps: sparse engine; True (default) holds each step's writes
        until it has succeeded, so a failed step changes nothing; False
        writes rows of tiles as the step goes (about half the peak memory of
        a large lattice) and a step that fails part-way leaves the lattice
        part stepped: StepFailed, and every later step or read of the state
        raises until a state is assigned.
        """
    def step(self, n: int = 1) -> int:
        """Advances n steps (GIL released); returns the step count.

        Ctrl-C raises KeyboardInterrupt after a whole step; a failed step
        raises StepFailed with the state as before that step.
        """
    @property
    def step_count(self) -> int:
        """Steps taken since the run began (a loaded state's count included)."""
    @property
    def d_state(self) -> int:
        """Complex channels per cell (D)."""
    @property
    def engine(self) -> str:
        """"dense" or "sparse"."""
    @property
    def gamma(self) -> float:
        """The decay term of the next steps."""
    @gamma.setter
    def gamma(self, value: float) -> None: ...
    @property
    def occupied_count(self) -> int:
        """Cells holding matter."""
    @property
    def psi(self) -> npt.NDArray[np.complex64]:
        """A copy of psi, complex64 [H, W, D] (sparse: over the bounding box).

        Assigning an array [H, W, D] (complex or real, any order) replaces the
        state: the dense engine needs its grid's shape; the sparse engine takes
        the cells that are not all zero, at its bounding box's corner.
        """
    @psi.setter
    def psi(self, value: npt.ArrayLike) -> None: ...
    def read_psi(self, out: Optional[npt.NDArray[np.complex64]] = None) -> npt.NDArray[np.complex64]:
        """Reads psi into `out` (writable, C-ordered complex64 of psi's shape) and returns it;
        without `out`, a new array as `psi`. For loops that read every step."""
    def apply_tool(self, name: str, **params: Union[int, float, bool, str, PathLike]) -> None:
        """Applies a tool, e.g. apply_tool("vortex", x=40, y=40, radius=6).

        Tools: vortex, wave, collapse, click_out, inject_energy, phase_vortex,
        stamp (docs/instruments.md). A whole tool string also works:
        apply_tool("vortex:x=40,y=40").
        """
    def field(self, viz: str, mask: bool = True) -> npt.NDArray[np.float32]:
        """A visualization: [H, W], [H, W, 3] (RGB maps) or [5, H, W] (holographic_bulk)."""
    def metrics(self) -> Dict[str, Union[int, float]]:
        """The readouts: step, norm, mean_density, max_density, matter_cells,
        energy, fidelity, entropy, clustering, symmetry, epoch."""
    def save(self, path: PathLike) -> None:
        """Writes the state to a state file (safetensors), atomically."""
    def load(self, path: PathLike) -> None:
        """Replaces the state (step count included) with a state file's."""
    def insert(self, x: int, y: int, values: npt.ArrayLike) -> None:
        """Makes cell (x, y) matter holding D complex values."""
    def get(self, x: int, y: int) -> Optional[npt.NDArray[np.complex64]]:
        """Psi at (x, y), complex64 [D], or None for vacuum."""
    def remove(self, x: int, y: int) -> Optional[npt.NDArray[np.complex64]]:
        """Removes the matter at (x, y) (sparse engine); returns what it held."""
    def cells_within(
        self, x: int, y: int, radius: int
    ) -> Tuple[npt.NDArray[np.int32], npt.NDArray[np.complex64]]:
        """Matter within distance radius of (x, y) (sparse engine): coords [N, 2], values [N, D]."""
    def bounding_box(self) -> Optional[Tuple[int, int, int, int]]:
        """(min_x, min_y, max_x, max_y) of the matter (or the dense grid); None when empty."""
