#!/usr/bin/env python3
"""Export an Atheria law as a model package (model.json + safetensors + TorchScript + ONNX).

    python python/export.py --arch unet --d-state 4 --hidden 32 --seed 0 --out models/unet_d4
    python python/export.py --arch unet --checkpoint ckpt.pt --out models/trained

Exit status 1 with one line on stderr when the arguments or checkpoint are wrong.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atheria_ref.exporter import ExportError, export_package, log, make_model  # noqa: E402
from atheria_ref.models import ARCHITECTURES  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, choices=list(ARCHITECTURES))
    p.add_argument("--d-state", type=int, help="complex channels per cell (read from --checkpoint if omitted)")
    p.add_argument("--hidden", type=int, help="hidden channels (mlp, deep_qca, unet*; read from --checkpoint if omitted)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seed", type=int, help="seeded random weights")
    src.add_argument("--checkpoint", type=Path, help="torch.save file: a state_dict, or a dict with `model_state_dict`")
    p.add_argument("--init", choices=["random", "identity"], default="random",
                   help="weights with --seed: random, or identity (conv3x3 only: psi' = 2 psi, normalised = psi)")
    p.add_argument("--zero-bias", action="store_true", help="set every conv bias to zero")
    p.add_argument("--last-std", type=float,
                   help="std of the last layer's random weights (default 0.05 for unet*, 0.2 otherwise; "
                        "0.2 makes the U-Nets' harsh, chaotic test law)")
    p.add_argument("--out", required=True, type=Path, help="package directory to write")
    p.add_argument("--name", help="model name in model.json (default: the --out folder name)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        if args.init == "identity" and args.checkpoint is not None:
            raise ExportError("--init identity makes its own weights: drop --checkpoint")
        t = time.perf_counter()
        model, d_state, hidden = make_model(args.arch, args.d_state, args.hidden, seed=args.seed,
                                            checkpoint=args.checkpoint, init=args.init, zero_bias=args.zero_bias,
                                            last_std=args.last_std)
        source = f"checkpoint {args.checkpoint}" if args.checkpoint else f"{args.init} weights, seed {args.seed}"
        if args.last_std is not None:
            source += f", last layer std {args.last_std}"
        log(f"model {args.arch} d_state={d_state} hidden={hidden} from {source}: {time.perf_counter() - t:.2f} s")
        name = args.name or args.out.resolve().name
        export_package(model, args.arch, d_state, hidden, args.out, name)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log(f"done: {args.out} in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
