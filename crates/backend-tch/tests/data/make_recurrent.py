"""Writes the small recurrent TorchScript modules of tests/recurrent.rs.

A recurrent package lists memory in model.json (here `h_state`, 3 channels,
stride 2, and `c_state`, 1 channel, stride 1, for a field of d_state 2) and
its forward is forward(x, h_state, c_state) -> (delta, h_state_next,
c_state_next). The golden unet_convlstm case covers a real law; these cover
what the golden cannot: a module that updates its memory in place, and
modules that break the contract in each way the backend must name.

- recurrent.pt:   (2 x, h_state + 1 (in place), 3 c_state + x[:, :1])
- delta_only.pt:  2 x                 (no memory outputs)
- short.pt:       (2 x, h_state + 1)  (no c_state_next)
- wrong_shape.pt: (2 x, h_state[:, :1], c_state)  (h_state_next has 1 channel, not 3)

Run with the project venv from the repository root:
    .venv/bin/python crates/backend-tch/tests/data/make_recurrent.py
"""
import os
from typing import Tuple

import torch


class Recurrent(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, h_state: torch.Tensor, c_state: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # In place on purpose: the backend must not let this reach the
        # caller's memory buffer.
        h_next = h_state.add_(1.0)
        return 2.0 * x, h_next, 3.0 * c_state + x[:, :1]


class DeltaOnly(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, h_state: torch.Tensor, c_state: torch.Tensor
    ) -> torch.Tensor:
        return 2.0 * x


class Short(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, h_state: torch.Tensor, c_state: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return 2.0 * x, h_state + 1.0


class WrongShape(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, h_state: torch.Tensor, c_state: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return 2.0 * x, h_state[:, :1], c_state


here = os.path.dirname(os.path.abspath(__file__))
for name, module in [
    ("recurrent", Recurrent()),
    ("delta_only", DeltaOnly()),
    ("short", Short()),
    ("wrong_shape", WrongShape()),
]:
    torch.jit.script(module).save(os.path.join(here, f"{name}.pt"))
