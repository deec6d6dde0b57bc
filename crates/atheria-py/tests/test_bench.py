"""`python -m atheria_native.bench` runs, and its engines agree (its speeds are not tested: the machine is shared)."""

import json
import subprocess
import sys

from conftest import ROOT


def test_bench_runs_both_engines_and_they_agree(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "atheria_native.bench", "--cases", "conv3x3,unet", "--grid", "16",
         "--windows", "1", "--window-secs", "0.05", "--threads", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())
    assert [r["case"] for r in results] == ["conv3x3", "unet"]
    for r in results:
        # The same law from the same state for 10 steps: PyTorch and the engine agree (float32).
        assert r["steps_compared"] == 10
        assert r["max_abs_diff_vs_pytorch"] < 1e-4, r
        for engine in ("atheria_native", "pytorch", "atheria_native step(1)", "atheria_native+psi", "psi reads",
                       "atheria_native+read_psi(out)"):
            assert r["steps_per_s_median"][engine] > 0
    assert "vs torch" in run.stdout and "conv3x3" in run.stdout


def test_bench_refuses_an_unknown_case_and_a_missing_reference(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "atheria_native.bench", "--cases", "resnet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown case `resnet`" in bad.stderr
    lost = subprocess.run([sys.executable, "-m", "atheria_native.bench", "--cases", "conv3x3", "--grid", "8"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert lost.returncode == 1
    assert lost.stderr.startswith("error: no python/atheria_ref") and "--reference-dir" in lost.stderr
