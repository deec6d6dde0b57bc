#!/usr/bin/env python3
"""Writes the golden fixtures under tests/fixtures/ (deterministic: fixed seeds).

    python python/make_golden.py [--out tests/fixtures] [--case NAME ...]

For each case, tests/fixtures/golden/<case>/ gets a model package written by
the exporter (model.json, model.safetensors, model.pt, model.onnx, each
verified against PyTorch), forward.safetensors (x [2, 2D, H, W], y = M(x)),
initial.safetensors and expected.safetensors (state files, `steps` steps of
the PyTorch engine apart), and case.json. Also
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
from atheria_ref.state_io import State, write_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3

#: name: (arch, d_state, hidden, init, height, width, gamma, initial state, seed)
CASES = {
    "conv3x3_d4": ("conv3x3", 4, None, "random", 10, 12, 0.05, "random", 11),
    "conv3x3_identity_d4": ("conv3x3", 4, None, "identity", 12, 10, 0.0, "random", 12),
    "mlp_d2_h8": ("mlp", 2, 8, "random", 10, 12, 0.01, "complex_noise", 13),
    "deep_qca_d2_h8": ("deep_qca", 2, 8, "random", 12, 10, 0.0, "random", 14),
    "unet_d2_h8": ("unet", 2, 8, "random", 12, 16, 0.05, "complex_noise", 15),
    "unet_unitary_d2_h8": ("unet_unitary", 2, 8, "random", 16, 12, 0.01, "random", 16),
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

    gen = torch.Generator().manual_seed(seed + 1000)
    x = torch.randn((2, 2 * d, h, w), generator=gen)
    with torch.inference_mode():
        y = model(x)
    save_file({"x": x.contiguous(), "y": y.contiguous()}, str(case_dir / "forward.safetensors"))

    psi0 = initial_state(init_state, h, w, d, seed + 2000)
    write_state(case_dir / "initial.safetensors", State(psi0[0].numpy()))
    engine = ReferenceEngine(model, psi0, gamma=gamma, unitary=arch == "unet_unitary", threads=1)
    psi = engine.run(STEPS)
    write_state(case_dir / "expected.safetensors", State(psi[0].numpy(), step=engine.step_count))

    case = {"steps": STEPS, "gamma": gamma, "height": h, "width": w}
    (case_dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return model


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
