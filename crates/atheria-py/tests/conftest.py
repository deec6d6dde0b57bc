"""Shared helpers of the atheria_native tests."""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
GOLDEN_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").is_file())

_DTYPES = {"F32": np.float32, "F64": np.float64, "U8": np.uint8, "I64": np.int64}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, read with numpy alone.

    Independent of the engine's own reader, so that the tests compare with
    the files as PyTorch wrote them.
    """
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        tensors[name] = np.frombuffer(raw[base + start : base + end], dtype=_DTYPES[t["dtype"]]).reshape(
            t["shape"]
        )
    return tensors, meta


def read_psi(path):
    """Psi of a state file as complex64 [H, W, D], and its metadata."""
    t, meta = read_safetensors(path)
    return (t["psi_real"] + 1j * t["psi_imag"]).astype(np.complex64), meta


def rss_bytes():
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def small_sim():
    import atheria_native as an

    return an.Simulation(grid=16, seed=3, threads=1)


def pytest_sessionfinish(session, exitstatus):
    """Where every test must run (CI: ATHERIA_REQUIRE_BACKENDS=all), a skip fails the run.

    A skipped test is not a pass: this keeps a missing dependency from
    turning the suite green without running it.
    """
    import os

    if os.environ.get("ATHERIA_REQUIRE_BACKENDS") != "all":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"error: {len(skipped)} test(s) skipped where every test must run (ATHERIA_REQUIRE_BACKENDS=all)")
        session.exitstatus = 1
