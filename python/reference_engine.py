#!/usr/bin/env python3
"""The PyTorch reference engine: run a model package, or time it.

    python python/reference_engine.py run --model models/unet_d4 --init complex_noise --grid 64 \\
        --seed 0 --steps 100 --gamma 0.01 --threads 2 --save out/final.safetensors
    python python/reference_engine.py bench --model models/unet_d4 --grid 256 --steps 50 \\
        --warmup 5 --threads 2 --windows 5

    python python/reference_engine.py run --engine sparse --model models/unet_d4 --init start.safetensors \
        --steps 10 --gamma 0.01 --save out/sparse.safetensors

`--grid` is N (N x N) or HxW (rows x columns). `--engine sparse` steps a
global model (a U-Net) the way `atheria run --engine sparse` does: on the
window around the matter (see SparseWindowEngine), from a state file. `bench` prints one JSON line on
stdout (the side-by-side reference for `atheria bench`); progress goes to stderr.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

_T_IMPORT = time.perf_counter() - _T0

sys.path.insert(0, str(Path(__file__).resolve().parent))

from atheria_ref.engine import (DEFAULT_THRESHOLD, DEFAULT_TILE, INITS, ReferenceEngine,  # noqa: E402
                                SparseWindowEngine, initial_state)
from atheria_ref.models import ARCHITECTURES, build_model  # noqa: E402
from atheria_ref.state_io import State, StateFileError, read_state, write_state  # noqa: E402


class UserError(Exception):
    """Wrong arguments or files; printed as one line, exit status 1."""


def log(msg: str) -> None:
    print(f"[reference] {msg}", file=sys.stderr, flush=True)


def parse_grid(text: str) -> tuple[int, int]:
    try:
        if "x" in text:
            h, w = (int(v) for v in text.split("x"))
        else:
            h = w = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid `{text}` must be N or HxW, e.g. 64 or 48x64")
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"grid `{text}` must be positive")
    return h, w


def load_package(model_dir) -> tuple[torch.nn.Module, dict]:
    """The reference module with the package's safetensors weights, and its model.json."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    spec_path = model_dir / "model.json"
    try:
        spec = json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise UserError(f"model package {model_dir}: no model.json (make one with python/export.py)")
    except json.JSONDecodeError as e:
        raise UserError(f"model package {spec_path}: not valid JSON: {e}")
    arch = spec.get("architecture")
    if arch not in ARCHITECTURES:
        raise UserError(f"model package {model_dir}: architecture {arch!r} has no reference module "
                        f"(known: {', '.join(ARCHITECTURES)})")
    rel = (spec.get("files") or {}).get("safetensors")
    if not rel:
        raise UserError(f"model package {model_dir}: model.json lists no safetensors file")
    try:
        model = build_model(arch, int(spec["d_state"]), spec.get("hidden_channels"))
        weights = load_file(str(model_dir / rel))
    except (KeyError, ValueError, FileNotFoundError, OSError) as e:
        raise UserError(f"model package {model_dir}: {e}")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise UserError(f"model package {model_dir}: weights do not fit {arch}: {' '.join(str(e).split())}")
    return model.eval(), spec


def make_state(init: str, grid, seed: int, spec: dict) -> State:
    d = int(spec["d_state"])
    if init in INITS:
        if grid is None:
            raise UserError(f"--init {init} needs --grid")
        h, w = grid
        return State(initial_state(init, h, w, d, seed)[0].numpy())
    try:
        state = read_state(init, memory=spec.get("memory"))
    except StateFileError as e:
        raise UserError(str(e))
    if state.psi.shape[2] != d:
        raise UserError(f"state file {init} has D={state.psi.shape[2]} but the model has d_state {d}")
    if grid is not None and tuple(grid) != state.psi.shape[:2]:
        raise UserError(f"--grid {grid[0]}x{grid[1]} disagrees with state file {init} ({state.psi.shape[0]}x{state.psi.shape[1]})")
    return state


def make_engine(model, spec, state: State, gamma: float, threads) -> ReferenceEngine:
    m = int(spec.get("spatial_multiple", 1))
    h, w = state.psi.shape[:2]
    if h % m or w % m:
        raise UserError(f"grid {h}x{w}: height and width must be multiples of {m} for {spec['architecture']}")
    if gamma < 0:
        raise UserError(f"--gamma must be >= 0, got {gamma}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    psi = torch.from_numpy(state.psi.copy())[None]
    return ReferenceEngine(model, psi, gamma=gamma, unitary=spec.get("update") == "unitary",
                           threads=threads, step_count=state.step, memory=state.memory)


def make_sparse_engine(model, spec, state: State, args) -> SparseWindowEngine:
    args.tile = DEFAULT_TILE if args.tile is None else args.tile
    args.threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    args.vacuum = args.vacuum or "zero"
    if spec.get("receptive_radius") is not None:
        raise UserError(f"--engine sparse: {spec['architecture']} is a local model (receptive radius "
                        f"{spec['receptive_radius']}); the reference sparse engine steps only global models "
                        "(receptive_radius null, the U-Nets) on their window. A local model's sparse step "
                        "equals the dense step: use --engine dense")
    if spec.get("memory"):
        raise UserError(f"--engine sparse: {spec['architecture']} is a recurrent law (memory "
                        f"{', '.join(t['name'] for t in spec['memory'])}); the sparse window moves and "
                        "resizes, so its memory has no place: use --engine dense")
    if args.vacuum != "zero":
        raise UserError(f"--vacuum {args.vacuum}: the reference sparse engine has only the zero vacuum")
    if args.tile < 1 or args.tile & (args.tile - 1):
        raise UserError(f"--tile {args.tile} must be a power of two")
    if not args.threshold >= 0 or args.threshold == float("inf"):
        raise UserError(f"--threshold {args.threshold} must be a finite number >= 0")
    if args.gamma < 0:
        raise UserError(f"--gamma must be >= 0, got {args.gamma}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    return SparseWindowEngine(model, state.psi.copy(), state.occupied, (state.origin_x, state.origin_y),
                              gamma=args.gamma, unitary=spec.get("update") == "unitary",
                              multiple=int(spec.get("spatial_multiple", 1)), tile=args.tile,
                              threshold=args.threshold, threads=args.threads, step_count=state.step)


def cmd_run_sparse(args) -> int:
    t = time.perf_counter()
    model, spec = load_package(args.model)
    if args.init in INITS:
        raise UserError(f"--engine sparse needs --init STATE_FILE (its occupied cells at its origin), "
                        f"not {args.init}: write one with --steps 0")
    state = make_state(args.init, args.grid, args.seed, spec)
    engine = make_sparse_engine(model, spec, state, args)
    log(f"{spec['architecture']} d_state={spec['d_state']} sparse from {args.init} "
        f"({int(engine.occupied.sum())} cells of matter), gamma {args.gamma}, tile {args.tile}, "
        f"threshold {args.threshold}, {torch.get_num_threads()} threads: ready in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    engine.run(args.steps)
    dt = time.perf_counter() - t
    last = engine.windows[-1] if engine.windows else None
    log(f"{args.steps} steps in {dt:.2f} s; last window "
        + (f"{last[2]} x {last[3]} cells at ({last[0]}, {last[1]})" if last else "none (no matter)"))
    psi, occupied, x, y = engine.matter_box()
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    write_state(args.save, State(psi.numpy(), engine.step_count, x, y, occupied.numpy()))
    log(f"saved step {engine.step_count}, {psi.shape[0]} x {psi.shape[1]} box at ({x}, {y}), to {args.save}")
    return 0


def cmd_run(args) -> int:
    if args.engine == "sparse":
        return cmd_run_sparse(args)
    for flag, value in (("--threshold", args.threshold), ("--tile", args.tile), ("--vacuum", args.vacuum)):
        if value is not None:
            raise UserError(f"{flag} is for --engine sparse (the dense reference engine has no threshold)")
    t = time.perf_counter()
    model, spec = load_package(args.model)
    state = make_state(args.init, args.grid, args.seed, spec)
    engine = make_engine(model, spec, state, args.gamma, args.threads)
    h, w, d = state.psi.shape
    log(f"{spec['architecture']} d_state={d} grid {h}x{w} from {args.init}, gamma {args.gamma}, "
        f"{torch.get_num_threads()} threads: ready in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    psi = engine.run(args.steps)
    dt = time.perf_counter() - t
    log(f"{args.steps} steps in {dt:.2f} s ({args.steps / dt if dt > 0 else float('inf'):.2f} steps/s)")
    memory = {k: v.numpy() for k, v in engine.memory_dict().items()} or None
    out = State(psi[0].numpy(), engine.step_count, state.origin_x, state.origin_y, state.occupied, memory)
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    write_state(args.save, out)
    log(f"saved step {engine.step_count} to {args.save}")
    return 0


def cmd_bench(args) -> int:
    if args.windows < 1 or args.steps < args.windows:
        raise UserError(f"--steps ({args.steps}) must be at least --windows ({args.windows}), which must be >= 1")
    startup = {"import_torch": round(_T_IMPORT, 4)}
    t = time.perf_counter()
    model, spec = load_package(args.model)
    startup["load_model"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    state = make_state(args.init, args.grid, args.seed, spec)
    engine = make_engine(model, spec, state, args.gamma, args.threads)
    startup["init_state"] = round(time.perf_counter() - t, 4)
    h, w = args.grid
    log(f"{spec['architecture']} d_state={spec['d_state']} grid {h}x{w}, {torch.get_num_threads()} threads, "
        f"warmup {args.warmup}, {args.windows} windows over {args.steps} steps")
    t = time.perf_counter()
    engine.run(args.warmup)
    startup["warmup"] = round(time.perf_counter() - t, 4)
    per = [args.steps // args.windows] * args.windows
    per[-1] += args.steps - sum(per)
    rates = []
    for i, n in enumerate(per):
        t = time.perf_counter()
        engine.run(n)
        dt = time.perf_counter() - t
        rates.append(n / dt if dt > 0 else float("inf"))
        log(f"window {i + 1}/{args.windows}: {n} steps in {dt:.3f} s = {rates[-1]:.3f} steps/s")
    result = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "grid": h if h == w else f"{h}x{w}",
        "model": spec.get("name"),
        "architecture": spec["architecture"],
        "d_state": spec["d_state"],
        "steps": args.steps,
        "warmup": args.warmup,
        "steps_per_s_median": round(statistics.median(rates), 4),
        "steps_per_s_windows": [round(r, 4) for r in rates],
        "startup_s": startup,
    }
    print(json.dumps(result), flush=True)
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="step a model and save the final state")
    r.add_argument("--model", required=True, type=Path, help="model package directory")
    r.add_argument("--init", required=True, help=f"{' | '.join(INITS)} | a state file")
    r.add_argument("--grid", type=parse_grid, help="N or HxW (required unless --init is a state file)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--gamma", type=float, default=0.0)
    r.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    r.add_argument("--save", required=True, type=Path, help="state file to write")
    r.add_argument("--engine", choices=["dense", "sparse"], default="dense",
                   help="dense grid, or the sparse engine's window step of a global model")
    r.add_argument("--threshold", type=float, help=f"sparse: existence threshold (default {DEFAULT_THRESHOLD})")
    r.add_argument("--tile", type=int, help=f"sparse: tile side, a power of two (default {DEFAULT_TILE})")
    r.add_argument("--vacuum", help="sparse: what unoccupied cells hold; only `zero` (the default)")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="time steps/s; one JSON line on stdout")
    b.add_argument("--model", required=True, type=Path)
    b.add_argument("--grid", required=True, type=parse_grid)
    b.add_argument("--steps", type=int, required=True, help="timed steps, split evenly into --windows")
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--threads", type=int, required=True)
    b.add_argument("--windows", type=int, default=5)
    b.add_argument("--init", default="complex_noise", choices=list(INITS))
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--gamma", type=float, default=0.0)
    b.set_defaults(func=cmd_bench)
    args = p.parse_args(argv)
    if getattr(args, "steps", 0) < 0 or getattr(args, "warmup", 0) < 0:
        p.error("--steps and --warmup must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
