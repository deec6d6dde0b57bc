#!/usr/bin/env python3
"""The device engine against PyTorch on one machine: what scripts/gpu-check.sh runs.

1. Accuracy: every golden package (tests/fixtures/golden, one per candle
   architecture) stepped 10 times from its initial state by the `atheria`
   binary's device engine and by the PyTorch reference engine
   (python/atheria_ref) on the same device; max |diff| of psi and of a
   recurrent law's memory. PyTorch runs in strict f32 here (TF32 off), as
   candle does, so that the bound (1e-4) measures the engines, not TF32.
2. Speed: steps/s of both at each size, with a D=64 conv3x3 and a D=64
   U-Net (hidden 32), seeded random weights written here by the exporter's
   own functions. The binary's rate is the difference of two runs (N and 3N
   steps), so start-up and the first step's kernel loading drop out;
   PyTorch's is timed after warm-up, synchronised, in strict f32 and with
   its defaults (TF32 convolutions on CUDA).
3. Peak device memory: PyTorch's allocator peak (torch.cuda), and the
   binary's as nvidia-smi's used memory above the idle level, polled every
   50 ms.

Everything goes to one JSON file. Each run of the binary has a timeout and
the whole check a deadline: what does not fit is recorded as skipped, never
waited for.

    python3 python/gpu_check.py --bin gpu/atheria --out $OUT          # on the GPU machine
    python3 python/gpu_check.py --cpu --bin target/release/atheria --out out/gpu-check
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from atheria_ref.engine import ReferenceEngine, initial_state  # noqa: E402
from atheria_ref.exporter import make_model, model_json, write_safetensors  # noqa: E402
from atheria_ref.state_io import read_state  # noqa: E402
from reference_engine import load_package  # noqa: E402

GOLDEN = ROOT / "tests" / "fixtures" / "golden"
ACCURACY_STEPS = 10
ACCURACY_BOUND = 1e-4
STARTED = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {msg}", file=sys.stderr, flush=True)


class Deadline(Exception):
    pass


def time_left(deadline: float) -> float:
    return deadline - (time.monotonic() - STARTED)


def run_binary(cmd: list[str], timeout: float, poll_memory: bool) -> tuple[str, float | None]:
    """Runs the binary; returns its stderr and, when polled, the peak MiB nvidia-smi saw above idle."""
    if timeout <= 1:
        raise Deadline("no time left")
    idle = gpu_used_mib() if poll_memory else None
    peak = [idle]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            used = gpu_used_mib()
            if used is not None and (peak[0] is None or used > peak[0]):
                peak[0] = used
            stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True) if poll_memory else None
    if poller:
        poller.start()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
    finally:
        stop.set()
        if poller:
            poller.join()
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"exit {done.returncode}: {' '.join(cmd)}: {' | '.join(last)}")
    extra = None if idle is None or peak[0] is None else peak[0] - idle
    return done.stdout + done.stderr, extra


def gpu_used_mib() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip().splitlines()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def engine_args(device: str) -> list[str]:
    return ["--engine", "device", "--device", device]


def set_strict(strict: bool) -> None:
    torch.backends.cudnn.allow_tf32 = not strict
    torch.backends.cuda.matmul.allow_tf32 = not strict


def reference(model_dir: Path, state, gamma: float, dev: torch.device):
    model, spec = load_package(model_dir)
    model = model.to(dev)
    psi = torch.from_numpy(state.psi.copy())[None].to(dev)
    engine = ReferenceEngine(model, psi, gamma=gamma, unitary=spec.get("update") == "unitary",
                             step_count=state.step, memory=state.memory)
    if engine.memory is not None:
        engine.memory = [m.to(dev) for m in engine.memory]
    return engine, spec


def accuracy(args, dev: torch.device, out: Path, results: dict) -> None:
    set_strict(True)
    for case in sorted(p for p in GOLDEN.iterdir() if (p / "model.safetensors").is_file()):
        entry = {"case": case.name}
        results["accuracy"].append(entry)
        try:
            gamma = float(json.loads((case / "case.json").read_text())["gamma"])
            save = out / f"accuracy_{case.name}.safetensors"
            cmd = [args.bin, "run", "--model", str(case), "--init", str(case / "initial.safetensors"),
                   "--gamma", str(gamma), "--steps", str(ACCURACY_STEPS), "--every", str(ACCURACY_STEPS),
                   "--save", str(save), *engine_args(args.device)]
            run_binary(cmd, min(60, time_left(args.deadline)), poll_memory=False)
            spec = json.loads((case / "model.json").read_text())
            state = read_state(case / "initial.safetensors", memory=spec.get("memory"))
            engine, spec = reference(case, state, gamma, dev)
            engine.run(ACCURACY_STEPS)
            want = engine.psi[0].cpu().numpy()
            got = read_state(save, memory=spec.get("memory"))
            entry.update(architecture=spec["architecture"], steps=ACCURACY_STEPS, gamma=gamma,
                         max_abs_diff_psi=float(np.abs(got.psi - want).max()))
            memory = engine.memory_dict()
            if memory:
                entry["max_abs_diff_memory"] = max(
                    float(np.abs(got.memory[n] - t.cpu().numpy()).max()) for n, t in memory.items())
            worst = max(entry["max_abs_diff_psi"], entry.get("max_abs_diff_memory", 0.0))
            entry["ok"] = worst <= ACCURACY_BOUND
            log(f"accuracy {case.name}: psi {entry['max_abs_diff_psi']:.2e}"
                + (f", memory {entry['max_abs_diff_memory']:.2e}" if memory else ""))
            save.unlink()
        except Deadline:
            entry["skipped"] = "out of time"
        except Exception as e:  # noqa: BLE001 - every failure is a result
            entry["error"] = str(e)
            log(f"accuracy {case.name}: {e}")


def speed_model(arch: str, out: Path) -> Path:
    """A D=64 package of seeded random weights (model.json + safetensors only)."""
    d, hidden = 64, (32 if arch != "conv3x3" else None)
    model, d, hidden = make_model(arch, d, hidden, seed=1)
    path = out / f"speed_{arch}_d{d}"
    path.mkdir(parents=True, exist_ok=True)
    spec = model_json(arch, path.name, d, hidden)
    spec["files"] = {"safetensors": "model.safetensors"}
    (path / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
    write_safetensors(model, path / "model.safetensors")
    return path


RATE = re.compile(r"(\d+) steps in ([0-9.]+) s")


def atheria_rate(args, model: Path, size: int, steps: int) -> tuple[float, float | None]:
    """Steps/s of the binary from two runs (steps and 3 x steps), and its peak device MiB."""
    times, peak = [], None
    for n in (steps, 3 * steps):
        cmd = [args.bin, "run", "--model", str(model), "--grid", str(size), "--init", "random",
               "--steps", str(n), "--every", str(n), *engine_args(args.device)]
        err, extra = run_binary(cmd, min(120, time_left(args.deadline)), poll_memory=args.device != "cpu")
        m = RATE.findall(err)
        if not m:
            raise RuntimeError(f"no 'steps in' line from {' '.join(cmd)}")
        times.append(float(m[-1][1]))
        if extra is not None:
            peak = extra if peak is None else max(peak, extra)
    return 2 * steps / max(times[1] - times[0], 1e-9), peak


def torch_rate(model_dir: Path, size: int, steps: int, dev: torch.device, strict: bool) -> tuple[float, float | None]:
    set_strict(strict)
    model, spec = load_package(model_dir)
    model = model.to(dev)
    psi = initial_state("random", size, size, int(spec["d_state"]), 0).to(dev)
    engine = ReferenceEngine(model, psi, unitary=spec.get("update") == "unitary")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine.run(2)
    sync()
    t = time.perf_counter()
    engine.run(steps)
    sync()
    rate = steps / (time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    del engine, model, psi
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return rate, peak


def speed(args, dev: torch.device, out: Path, results: dict) -> None:
    for arch in ("conv3x3", "unet"):
        model = speed_model(arch, out)
        for size in args.sizes:
            # Steps per timed run: enough to dwarf launch jitter, few at 2048.
            steps = max(5, min(args.steps, (args.steps * 128 * 128) // (size * size) * 4))
            entry = {"model": f"{arch} D=64" + (" hidden 32" if arch != "conv3x3" else ""), "size": size,
                     "steps": steps}
            results["speed"].append(entry)
            try:
                if time_left(args.deadline) < 20:
                    raise Deadline("out of time")
                entry["atheria_steps_per_s"], entry["atheria_peak_mib_nvidia_smi"] = atheria_rate(
                    args, model, size, steps)
                entry["torch_steps_per_s"], entry["torch_peak_mib_allocated"] = torch_rate(
                    model, size, steps, dev, strict=True)
                entry["torch_tf32_steps_per_s"], _ = torch_rate(model, size, steps, dev, strict=False)
                entry["atheria_over_torch"] = entry["atheria_steps_per_s"] / entry["torch_steps_per_s"]
                log(f"speed {entry['model']} {size}x{size}: atheria {entry['atheria_steps_per_s']:.1f}, "
                    f"torch {entry['torch_steps_per_s']:.1f} (TF32 {entry['torch_tf32_steps_per_s']:.1f}) steps/s")
            except Deadline:
                entry["skipped"] = "out of time"
            except Exception as e:  # noqa: BLE001
                entry["error"] = str(e)
                log(f"speed {arch} {size}: {e}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="the atheria binary")
    p.add_argument("--out", required=True, type=Path, help="folder for gpu-check.json")
    p.add_argument("--cpu", action="store_true", help="dry run: the CPU, tiny sizes")
    p.add_argument("--deadline", type=float, default=270.0, help="seconds for the whole check")
    a = p.parse_args()
    a.device = "cpu" if a.cpu else "cuda"
    a.sizes = [32, 64] if a.cpu else [128, 512, 2048]
    a.steps = 8 if a.cpu else 100
    if not a.cpu and not torch.cuda.is_available():
        print("error: torch sees no CUDA device (use --cpu for the dry run)", file=sys.stderr)
        return 2
    dev = torch.device(a.device)
    a.out.mkdir(parents=True, exist_ok=True)
    results = {
        "mode": a.device,
        "binary": a.bin,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
        "accuracy_bound": ACCURACY_BOUND,
        "accuracy": [],
        "speed": [],
    }
    if dev.type == "cuda":
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        results["driver"] = smi.stdout.strip()
    try:
        version = subprocess.run([a.bin, "--version"], capture_output=True, text=True, timeout=10)
        results["binary_version"] = version.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"error: cannot run {a.bin}: {e}", file=sys.stderr)
        return 2
    try:
        accuracy(a, dev, a.out, results)
        speed(a, dev, a.out, results)
    finally:
        results["accuracy_ok"] = bool(results["accuracy"]) and all(e.get("ok") for e in results["accuracy"])
        results["elapsed_s"] = time.monotonic() - STARTED
        tmp = a.out / "gpu-check.json.tmp"
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(a.out / "gpu-check.json")
        log(f"wrote {a.out / 'gpu-check.json'}")
    return 0 if results["accuracy_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
