"""The module computes what PyTorch's reference engine computed.

tests/fixtures/golden/<case> holds, per architecture, a model package, the
initial state and PyTorch's state after `steps` steps (python/make_golden.py).
The tolerance is tests/golden.rs's for a run: |got - want| <= 1e-5 + 1e-5 |want|.
"""

import json

import numpy as np
import pytest

import atheria_native as an
from conftest import GOLDEN, GOLDEN_CASES, read_psi


def test_every_architecture_has_a_golden_case():
    assert len(GOLDEN_CASES) >= 6, GOLDEN_CASES


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_dense_run_equals_pytorch(case):
    d = GOLDEN / case
    spec = json.loads((d / "case.json").read_text())
    initial, _ = read_psi(d / "initial.safetensors")
    want, meta = read_psi(d / "expected.safetensors")

    sim = an.Simulation(model=d, init=str(d / "initial.safetensors"), gamma=spec["gamma"], threads=2)
    assert sim.step_count == 0
    np.testing.assert_array_equal(sim.psi, initial)
    assert sim.step(spec["steps"]) == spec["steps"]
    got = sim.psi
    assert got.dtype == np.complex64
    assert got.shape == want.shape == (spec["height"], spec["width"], sim.d_state)
    assert sim.step_count == int(meta["step"]) == spec["steps"]
    for part in (np.real, np.imag):
        np.testing.assert_allclose(part(got), part(want), rtol=1e-5, atol=1e-5)


def test_an_atheria_experiment_runs_from_its_folder(tmp_path):
    """Atheria's experiment folder as its trainer leaves it: the law of the checkpoint its loader picks,
    with the config's gamma, matches PyTorch's 10 steps (python/ATHERIA_EXPERIMENTS.md)."""
    out = GOLDEN.parent / "atheria_output"
    expected = out / "expected" / "convlstm_d2_h2_g16"
    want, _ = read_psi(expected / "expected.safetensors")
    sim = an.Simulation(experiment=out / "experiments" / "convlstm_d2_h2_g16",
                        init=str(expected / "initial.safetensors"), threads=2)
    assert sim.gamma == pytest.approx(0.02)
    sim.step(5)
    # Saved mid-run with its memory: a simulation loaded from it continues the same run.
    sim.save(tmp_path / "mid.safetensors")
    sim.step(5)
    np.testing.assert_allclose(sim.psi, want, rtol=0, atol=1e-5)
    resumed = an.Simulation(experiment=out / "experiments" / "convlstm_d2_h2_g16",
                            init=str(expected / "initial.safetensors"), threads=2)
    resumed.load(tmp_path / "mid.safetensors")
    resumed.step(5)
    np.testing.assert_array_equal(resumed.psi, sim.psi)
    with pytest.raises(an.InvalidInput, match="not both"):
        an.Simulation(experiment=out / "experiments" / "convlstm_d2_h2_g16", model=GOLDEN / "unet_d2_h8")


@pytest.mark.parametrize("case", ["conv3x3_d4", "unet_d2_h8"])
def test_psi_setter_then_steps_equal_pytorch(case, tmp_path):
    """The same run, the initial state given as an array instead of a file."""
    d = GOLDEN / case
    spec = json.loads((d / "case.json").read_text())
    initial, _ = read_psi(d / "initial.safetensors")
    want, _ = read_psi(d / "expected.safetensors")
    sim = an.Simulation(model=d, init=str(d / "initial.safetensors"), gamma=spec["gamma"])
    sim.psi = np.zeros_like(initial)
    # The field comes back as an array, in Fortran order and complex128, to
    # exercise the conversion.
    sim.psi = np.asfortranarray(initial.astype(np.complex128))
    sim.step(spec["steps"])
    np.testing.assert_allclose(sim.psi, want, rtol=1e-5, atol=1e-5)


def test_default_law_matches_a_run_resumed_from_its_saved_state(tmp_path):
    """Saving, loading and stepping on is the same run as stepping straight on."""
    a = an.Simulation(grid=24, seed=5, gamma=0.01)
    a.step(4)
    a.save(tmp_path / "mid.safetensors")
    a.step(3)
    b = an.Simulation(grid=24, seed=99, gamma=0.01)
    b.load(tmp_path / "mid.safetensors")
    assert b.step_count == 4
    b.step(3)
    np.testing.assert_array_equal(a.psi, b.psi)
    assert a.step_count == b.step_count == 7


def test_state_file_written_by_save_is_what_psi_says(tmp_path):
    sim = an.Simulation(grid=12, seed=2)
    sim.step(2)
    sim.save(tmp_path / "s.safetensors")
    psi, meta = read_psi(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(psi, sim.psi)
    assert meta["step"] == "2"


def _reference_package(d):
    """The PyTorch module of a golden case's package and its model.json (python/reference_engine.py)."""
    import sys

    sys.path.insert(0, str(GOLDEN.parents[2] / "python"))
    import reference_engine

    return reference_engine.load_package(d)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_sparse_run_equals_pytorch(case):
    """The sparse engine from the golden's initial state (every cell of its box is matter, at the origin).

    A global law (the U-Nets) sees the window the sparse engine shows it: the
    PyTorch reference of that step (atheria_ref's SparseWindowEngine, written
    apart from the Rust one) must give the same matter box, cell for cell. A
    local law of receptive radius r sees zero vacuum beyond the box, as the
    dense PyTorch run sees zero padding, but the sparse lattice grows matter
    there: after k steps the cells farther than (k - 1) r from the box's
    edge equal PyTorch's dense run (the golden); those nearer differ by design.
    A recurrent law (unet_convlstm) keeps its memory over the moving window
    by the same rule on both sides (the reference's ``_memory_for`` is written
    apart from the Rust ``remap_into``): reduced cells both windows cover keep
    their values, new ones start at zero.
    Tolerance: as above for local laws; for the U-Nets 2e-4 (GroupNorm over a
    window that is mostly vacuum amplifies float32 rounding: 6e-5 measured
    over these 3 steps; crates/atheria-cli/tests/unet.rs allows 1e-3 over 10).
    """
    d = GOLDEN / case
    spec = json.loads((d / "case.json").read_text())
    initial, _ = read_psi(d / "initial.safetensors")
    sim = an.Simulation(model=d, engine="sparse", init=str(d / "initial.safetensors"), gamma=spec["gamma"], threads=2)
    assert sim.occupied_count == initial.shape[0] * initial.shape[1]
    sim.step(spec["steps"])
    got = sim.psi
    min_x, min_y, max_x, max_y = sim.bounding_box()
    assert got.shape == (max_y - min_y + 1, max_x - min_x + 1, sim.d_state)

    model, package = _reference_package(d)
    from atheria_ref.engine import SparseWindowEngine

    radius = package["receptive_radius"]
    if radius is None:
        ref = SparseWindowEngine(model, initial, gamma=spec["gamma"], unitary=package.get("update") == "unitary",
                                 multiple=int(package.get("spatial_multiple", 1)))
        ref.run(spec["steps"])
        want, occupied, x, y = ref.matter_box()
        assert (min_x, min_y) == (x, y)
        assert got.shape == tuple(want.shape)
        np.testing.assert_array_equal(np.abs(got).sum(axis=-1) > 0, occupied.numpy().astype(bool))
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=2e-4)
    else:
        want, _ = read_psi(d / "expected.safetensors")
        m = (spec["steps"] - 1) * radius
        h, w = initial.shape[:2]
        # The initial box sits at the origin: its cell (row r, column c) is got[r - min_y, c - min_x].
        inner = got[m - min_y : h - m - min_y, m - min_x : w - m - min_x]
        assert inner.shape == (h - 2 * m, w - 2 * m, sim.d_state)
        np.testing.assert_allclose(inner, want[m : h - m, m : w - m], rtol=1e-5, atol=1e-5)
