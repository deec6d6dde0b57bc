"""Steps per second of `atheria_native.Simulation` against the PyTorch reference engine, in one process.

    .venv/bin/python -m atheria_native.bench            # from the repository root
    .venv/bin/python -m atheria_native.bench --cases conv3x3 --windows 7 --json out/py-bench.json

For each case the same seeded law (built by the repository's PyTorch models,
python/atheria_ref) runs on both engines from the same initial state:
`Simulation.step` on candle, and the PyTorch reference step (Atheria's
`CartesianEngine` step) on torch, both with the same number of threads.
Windows of the two engines alternate, so both see the same machine (it is
shared and changes speed); the ratio is the median of the per-window ratios of
neighbouring windows. Three more kinds of window measure what reading the
state from Python costs: `step(1)` called once a step, the same with a read
of `psi` after each step, reads of `psi` alone, and `step(1)` with
`read_psi(out)` (into one preallocated array) after each. "psi read" is the
time of one read over the time of one `step(1)`; "in a loop" is the extra
time of the loop that reads `psi` after each step (it also pays for a new
array's fresh pages and for the step after a read running with the caches
the read filled); "into out" the same with `read_psi(out)`. Before timing, both engines run 10 steps from
the same state and their states are compared (the `max |diff|` column).

Needs torch (the project's .venv has it) and the repository's python/
directory (found from the working directory, or `--reference-dir`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import atheria_native

#: name -> (architecture, d_state, hidden): the `atheria bench` configurations
#: `dense-128` (conv3x3, D=64) and `unet-128` (U-Net, D=8, hidden 32).
CASES = {
    "conv3x3": ("conv3x3", 64, None),
    "unet": ("unet", 8, 32),
}

#: Steps both engines run from the same state before timing, then compared.
CHECK_STEPS = 10


class BenchError(Exception):
    """A bench that cannot run as asked (one line for the user)."""


def log(msg: str) -> None:
    """Progress on stderr, so that stdout stays the result."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def find_reference(given: str | None) -> Path:
    """The repository's python/ directory, which holds the PyTorch reference (atheria_ref)."""
    candidates = [Path(given)] if given else [Path.cwd() / "python", *(p / "python" for p in Path.cwd().parents)]
    for c in candidates:
        if (c / "atheria_ref" / "engine.py").is_file():
            return c.resolve()
    where = given or f"{Path.cwd()} or its parents"
    raise BenchError(f"no python/atheria_ref (the PyTorch reference) under {where}: run from the repository "
                     "root or pass --reference-dir REPO/python")


def timed(run, steps: int) -> float:
    """Seconds `run(steps)` took."""
    t = time.perf_counter()
    run(steps)
    return time.perf_counter() - t


def steps_per_window(run, target_s: float) -> int:
    """How many steps of `run` take about `target_s` seconds (at least 2)."""
    n = 2
    while True:
        dt = timed(run, n)
        if dt >= target_s / 4 or n >= 4096:
            return max(2, int(n * target_s / max(dt, 1e-9)))
        n *= 2


def bench_case(name: str, args, ref) -> dict:
    """Times one case; returns its figures."""
    import torch

    arch, d_state, hidden = CASES[name]
    grid = args.grid
    model, _, _ = ref.exporter.make_model(arch, d_state, hidden, seed=0)
    model = model.float().eval()
    with tempfile.TemporaryDirectory(prefix="atheria-bench-") as tmp:
        package = Path(tmp)
        spec = ref.exporter.model_json(arch, f"bench-{name}", d_state, hidden)
        (package / "model.json").write_text(json.dumps(spec))
        ref.exporter.write_safetensors(model, package / "model.safetensors")
        sim = atheria_native.Simulation(model=str(package), backend="candle", grid=grid, threads=args.threads,
                                        init="zeros")
    psi0 = ref.engine.initial_state("random", grid, grid, d_state, seed=args.seed)
    sim.psi = psi0[0].numpy()  # the reference keeps a batch axis: [1, H, W, D]
    torch_engine = ref.engine.ReferenceEngine(model, psi0.clone(), unitary=(arch == "unet_unitary"),
                                              threads=args.threads)

    def ours(n):
        sim.step(n)

    def ours_one_by_one(n):
        for _ in range(n):
            sim.step(1)

    def ours_reading_psi(n):
        for _ in range(n):
            sim.step(1)
            sim.psi  # noqa: B018  (the read is what is timed)

    buffer = np.empty(sim.psi.shape, np.complex64)

    def ours_reading_psi_into(n):
        for _ in range(n):
            sim.step(1)
            sim.read_psi(buffer)

    def psi_reads(n):
        for _ in range(n):
            sim.psi  # noqa: B018

    def pytorch(n):
        torch_engine.run(n)

    log(f"{name}: {arch} d_state={d_state}{f' hidden={hidden}' if hidden else ''} grid {grid}x{grid}, "
        f"{args.threads} threads, torch {torch.__version__}")
    # Same law, same start, the same steps: the engines must agree before their speeds mean anything.
    # (Compared over the first steps only: a chaotic law, as random U-Nets are, amplifies float32
    # rounding over hundreds of steps.)
    ours(CHECK_STEPS)
    pytorch(CHECK_STEPS)
    diff = float(np.max(np.abs(sim.psi - torch_engine.psi[0].numpy())))
    ours_reading_psi(2)  # warm-up: the first read's costs out of the windows
    n_ours = steps_per_window(ours, args.window_secs)
    n_torch = steps_per_window(pytorch, args.window_secs)
    rates = {"atheria_native": [], "pytorch": [], "atheria_native step(1)": [], "atheria_native+psi": [],
             "atheria_native+read_psi(out)": [], "psi reads": []}
    for w in range(args.windows):
        r_ours = n_ours / timed(ours, n_ours)
        r_torch = n_torch / timed(pytorch, n_torch)
        r_one = n_ours / timed(ours_one_by_one, n_ours)
        r_psi = n_ours / timed(ours_reading_psi, n_ours)
        rates["psi reads"].append(n_ours / timed(psi_reads, n_ours))
        rates["atheria_native+read_psi(out)"].append(n_ours / timed(ours_reading_psi_into, n_ours))
        rates["atheria_native"].append(r_ours)
        rates["pytorch"].append(r_torch)
        rates["atheria_native step(1)"].append(r_one)
        rates["atheria_native+psi"].append(r_psi)
        log(f"  window {w + 1}/{args.windows}: atheria_native {r_ours:.2f} steps/s, pytorch {r_torch:.2f}, "
            f"one step(1) call a step {r_one:.2f}, and psi read after each {r_psi:.2f}")
    ratio = statistics.median(a / b for a, b in zip(rates["atheria_native"], rates["pytorch"]))
    psi_cost = statistics.median(a / b for a, b in zip(rates["atheria_native step(1)"], rates["psi reads"]))
    psi_in_loop, into_in_loop = (
        statistics.median(a / b - 1 for a, b in zip(rates["atheria_native step(1)"], rates[k]))
        for k in ("atheria_native+psi", "atheria_native+read_psi(out)"))
    return {
        "case": name,
        "architecture": arch,
        "d_state": d_state,
        "hidden": hidden,
        "grid": grid,
        "threads": args.threads,
        "windows": args.windows,
        "steps_per_s_median": {k: round(statistics.median(v), 3) for k, v in rates.items()},
        "steps_per_s_windows": {k: [round(x, 3) for x in v] for k, v in rates.items()},
        "vs_pytorch": round(ratio, 3),
        "psi_read_cost": round(psi_cost, 4),
        "psi_read_cost_in_loop": round(psi_in_loop, 4),
        "read_psi_out_cost_in_loop": round(into_in_loop, 4),
        "steps_compared": CHECK_STEPS,
        "max_abs_diff_vs_pytorch": diff,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m atheria_native.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--grid", type=int, default=128, help="N x N grid (default 128)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both engines (all cores)")
    p.add_argument("--windows", type=int, default=5, help="timed windows per engine (default 5)")
    p.add_argument("--window-secs", type=float, default=1.0, help="about how long one window runs (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial state")
    p.add_argument("--reference-dir", help="the repository's python/ directory (default: found from the cwd)")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.cases:
        if c not in CASES:
            p.error(f"unknown case `{c}`: expected one of {', '.join(CASES)}")
    if args.windows < 1 or args.threads < 1 or args.grid < 4 or args.window_secs <= 0:
        p.error("--windows and --threads must be at least 1, --grid at least 4, --window-secs above 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ref_dir = find_reference(args.reference_dir)
        sys.path.insert(0, str(ref_dir))
        try:
            import atheria_ref.engine
            import atheria_ref.exporter
        except ImportError as e:
            raise BenchError(f"cannot import the PyTorch reference from {ref_dir} ({e}): use the project's "
                             ".venv (scripts/setup-python.sh)") from e
        ref = atheria_ref
        results = [bench_case(c, args, ref) for c in args.cases]
    except (BenchError, atheria_native.AtheriaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{'case':<10} {'atheria_native':>15} {'pytorch':>10} {'vs torch':>9} {'psi read':>9} {'in a loop':>10} "
          f"{'into out':>9} {'max |diff|':>11}")
    for r in results:
        m = r["steps_per_s_median"]
        print(f"{r['case']:<10} {m['atheria_native']:>9.2f} st/s {m['pytorch']:>10.2f} {r['vs_pytorch']:>8.2f}x "
              f"{100 * r['psi_read_cost']:>8.1f}% {100 * r['psi_read_cost_in_loop']:>9.1f}% "
              f"{100 * r['read_psi_out_cost_in_loop']:>8.1f}% "
              f"{r['max_abs_diff_vs_pytorch']:>11.2e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
