#!/usr/bin/env python3
"""Writes the golden fixtures under tests/fixtures/ (deterministic: fixed seeds).

    python python/make_golden.py [--out tests/fixtures] [--case NAME ...]

For each case, tests/fixtures/golden/<case>/ gets a model package written by
the exporter (model.json, model.safetensors, model.pt, model.onnx, each
verified against PyTorch), forward.safetensors (x [2, 2D, H, W], y = M(x)),
initial.safetensors and expected.safetensors (state files, `steps` steps of
the PyTorch engine apart), and case.json. A recurrent law's forward.safetensors
also holds nonzero memory inputs and the memory outputs (h_state, c_state ->
h_state_next, c_state_next, each [2, 4h, H/4, W/4]); its initial state has no
memory (zeros), expected.safetensors carries the memory after `steps` steps,
and mid.safetensors is the state with memory after `mid_step` steps, from
which the remaining steps must reach expected.safetensors (the resume test). Also
tests/fixtures/checkpoint_unet_d2_h8.pt: a training-style checkpoint holding
the same weights as golden/unet_d2_h8, so converting it must reproduce that
package's safetensors exactly.

Rerunning reproduces every file byte for byte except model.pt, whose zip holds
a random serialization id and debug records (its weights and graph are the same);
``--case`` rewrites only the named cases (and the checkpoint with its case), so
a change to one law leaves the other fixtures untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atheria_ref.engine import ReferenceEngine, initial_state  # noqa: E402
from atheria_ref.exporter import export_package, make_model  # noqa: E402
from atheria_ref.models import is_recurrent  # noqa: E402
from atheria_ref.state_io import State, write_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: Steps from initial to expected, unless STEPS_FOR names the case.
STEPS = 3
#: The recurrent laws run longer, so the memory's effect builds up over steps.
STEPS_FOR = {"unet_convlstm_d2_h8": 10, "unet_unitary_rmsnorm_d2_h8": 10}

#: name: (arch, d_state, hidden, init, height, width, gamma, initial state, seed)
CASES = {
    "conv3x3_d4": ("conv3x3", 4, None, "random", 10, 12, 0.05, "random", 11),
    "conv3x3_identity_d4": ("conv3x3", 4, None, "identity", 12, 10, 0.0, "random", 12),
    "mlp_d2_h8": ("mlp", 2, 8, "random", 10, 12, 0.01, "complex_noise", 13),
    "deep_qca_d2_h8": ("deep_qca", 2, 8, "random", 12, 10, 0.0, "random", 14),
    "unet_d2_h8": ("unet", 2, 8, "random", 12, 16, 0.05, "complex_noise", 15),
    "unet_unitary_d2_h8": ("unet_unitary", 2, 8, "random", 16, 12, 0.01, "random", 16),
    "unet_convlstm_d2_h8": ("unet_convlstm", 2, 8, "random", 16, 12, 0.02, "complex_noise", 17),
    "unet_unitary_rmsnorm_d2_h8": ("unet_unitary_rmsnorm", 2, 8, "random", 12, 16, 0.0, "random", 18),
}

CHECKPOINT_CASE = "unet_d2_h8"
CHECKPOINT_NAME = "checkpoint_unet_d2_h8.pt"


def write_case(out: Path, name: str) -> torch.nn.Module:
    arch, d, hidden, init, h, w, gamma, init_state, seed = CASES[name]
    case_dir = out / "golden" / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    model, d, hidden = make_model(arch, d, hidden, seed=seed, init=init)
    export_package(model, arch, d, hidden, case_dir, name, quiet=True)

    steps = STEPS_FOR.get(name, STEPS)
    gen = torch.Generator().manual_seed(seed + 1000)
    x = torch.randn((2, 2 * d, h, w), generator=gen)
    if is_recurrent(model):
        # Memory as a run leaves it: h = o * tanh(c) in (-1, 1), c unbounded.
        h_state, c_state = (torch.randn(s, generator=gen) for s in model.memory_shapes(2, h, w))
        h_state = torch.tanh(h_state)
        with torch.inference_mode():
            y, h_next, c_next = model(x, h_state, c_state)
        tensors = {"x": x, "h_state": h_state, "c_state": c_state, "y": y, "h_state_next": h_next,
                   "c_state_next": c_next}
    else:
        with torch.inference_mode():
            y = model(x)
        tensors = {"x": x, "y": y}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(case_dir / "forward.safetensors"))

    psi0 = initial_state(init_state, h, w, d, seed + 2000)
    write_state(case_dir / "initial.safetensors", State(psi0[0].numpy()))
    engine = ReferenceEngine(model, psi0, gamma=gamma, unitary=arch == "unet_unitary", threads=1)
    case = {"steps": steps, "gamma": gamma, "height": h, "width": w}
    if engine.memory is not None:
        mid = steps // 2
        engine.run(mid)
        write_state(case_dir / "mid.safetensors", engine_state(engine))
        case.update(mid_step=mid, memory=spec_memory(case_dir))
    engine.run(steps - engine.step_count)
    write_state(case_dir / "expected.safetensors", engine_state(engine))

    (case_dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return model


def engine_state(engine: ReferenceEngine) -> State:
    """The engine's psi, step and memory as a state file's contents."""
    memory = {k: v.numpy() for k, v in engine.memory_dict().items()} or None
    return State(engine.psi[0].numpy(), step=engine.step_count, memory=memory)


def spec_memory(case_dir: Path) -> list[str]:
    """The memory names the written model.json lists."""
    return [t["name"] for t in json.loads((case_dir / "model.json").read_text()).get("memory", [])]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    p.add_argument("--case", action="append", choices=list(CASES), dest="cases",
                   help="rewrite only this case (repeatable; default: every case)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.cases or CASES:
        t = time.perf_counter()
        model = write_case(args.out, name)
        print(f"[golden] {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        if name == CHECKPOINT_CASE:
            sd = {k: v.clone() for k, v in model.state_dict().items()}
            torch.save({"model_state_dict": sd, "epoch": 3}, str(args.out / CHECKPOINT_NAME))
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"[golden] wrote {args.out}: {total / 1e6:.2f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
