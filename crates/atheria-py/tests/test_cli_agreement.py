"""The module computes what the `atheria` program computes: the same run
(the built-in law, both engines, a tool) through the CLI's state file and
through Python.

The program is $ATHERIA_BIN when set, else `atheria` on PATH, else built
here with `cargo build --release -p atheria-cli` (minutes the first time;
CARGO_TARGET_DIR is honoured).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import atheria_native as an
from conftest import ROOT, read_psi


@pytest.fixture(scope="module")
def atheria_bin():
    given = os.environ.get("ATHERIA_BIN") or shutil.which("atheria")
    if given:
        return given
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "atheria-cli"], cwd=ROOT, check=True
    )
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    path = Path(json.loads(meta.stdout)["target_directory"]) / "release" / "atheria"
    assert path.is_file(), path
    return str(path)


def run_cli(atheria_bin, tmp_path, *args):
    out = tmp_path / "cli.safetensors"
    subprocess.run(
        [atheria_bin, "run", "--threads", "1", "--save", str(out), *args],
        check=True,
        capture_output=True,
    )
    return read_psi(out)


@pytest.mark.parametrize("engine", ["dense", "sparse"])
def test_default_law_run_equals_the_cli(atheria_bin, tmp_path, engine):
    want, meta = run_cli(
        atheria_bin, tmp_path, "--engine", engine, "--grid", "24", "--seed", "5",
        "--gamma", "0.01", "--steps", "7",
    )
    sim = an.Simulation(engine=engine, grid=24, seed=5, gamma=0.01, threads=1)
    assert sim.step(7) == 7 == int(meta["step"])
    got = sim.psi
    assert got.shape == want.shape
    if engine == "sparse":
        min_x, min_y, _, _ = sim.bounding_box()
        assert (min_x, min_y) == (int(meta["origin_x"]), int(meta["origin_y"]))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_tool_equals_the_cli_tool(atheria_bin, tmp_path):
    want, _ = run_cli(
        atheria_bin, tmp_path, "--grid", "32", "--seed", "2", "--steps", "3",
        "--tool", "vortex:x=12,y=20,radius=5,strength=2",
    )
    sim = an.Simulation(grid=32, seed=2, threads=1)
    sim.apply_tool("vortex", x=12, y=20, radius=5, strength=2)
    sim.step(3)
    np.testing.assert_allclose(sim.psi, want, rtol=1e-6, atol=1e-6)
