"""Writes tuple.pt: a TorchScript module whose forward returns (2 * x, x.sum()).

The golden fixtures all return a plain tensor; this covers models that return
a tuple whose first element is the delta. Run with the project venv:
    /work/main/.venv/bin/python crates/backend-tch/tests/data/make_tuple.py
"""
import os

import torch


class Tuple(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return 2.0 * x, x.sum()


here = os.path.dirname(os.path.abspath(__file__))
torch.jit.script(Tuple()).save(os.path.join(here, "tuple.pt"))
