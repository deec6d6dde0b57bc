"""PyTorch reference for Atheria Native.

- ``models``: the reference nn.Modules (their state_dict names are the
  safetensors names the Rust backends read), ``build_model``, ``init_weights``.
- ``state_io``: read and write the ``atheria-state/1`` state file.
- ``engine``: the PyTorch engine that defines one step, and initial states.
- ``export``: write a model package (model.json, safetensors, TorchScript, ONNX).
"""

from .models import ARCHITECTURES, build_model, init_weights, spec_for
from .state_io import read_state, write_state
from .engine import ReferenceEngine, initial_state, step

__all__ = [
    "ARCHITECTURES",
    "build_model",
    "init_weights",
    "spec_for",
    "read_state",
    "write_state",
    "ReferenceEngine",
    "initial_state",
    "step",
]
