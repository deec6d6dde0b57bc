"""The atheria CLI's bad-input list (crates/atheria-cli/tests/bad_input.rs), through Python.

Each broken model package or state file raises `InvalidInput` (a
`ValueError`) naming what is wrong: never a crash, a hang or a
half-built simulation.
"""

import shutil

import pytest

import atheria_native as an
from conftest import GOLDEN

GOOD = GOLDEN / "conv3x3_d4"

JSON_EDITS = [
    ("unknown-field", lambda j: j.replace("{", '{"colour": "blue",', 1), "colour"),
    ("missing-field", lambda j: j.replace('"update": "additive",', ""), "update"),
    ("wrong-type", lambda j: j.replace('"d_state": 4', '"d_state": "four"'), "model.json"),
    ("unknown-arch", lambda j: j.replace('"conv3x3"', '"resnet"'), "resnet"),
    ("unknown-rule", lambda j: j.replace('"additive"', '"sideways"'), "sideways"),
    ("empty", lambda j: "", "model.json"),
    ("truncated", lambda j: j[: len(j) // 2], "model.json"),
]


def package(tmp_path, name):
    """A copy of the golden conv3x3 package to break."""
    d = tmp_path / name
    shutil.copytree(GOOD, d)
    return d


def test_each_edit_changes_the_file():
    text = (GOOD / "model.json").read_text()
    for name, edit, _ in JSON_EDITS:
        assert edit(text) != text, name


@pytest.mark.parametrize("name, edit, words", JSON_EDITS, ids=[c[0] for c in JSON_EDITS])
def test_broken_model_json_is_named(tmp_path, name, edit, words):
    d = package(tmp_path, name)
    (d / "model.json").write_text(edit((d / "model.json").read_text()))
    with pytest.raises(an.InvalidInput, match=words):
        an.Simulation(model=d, grid=8)


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "missing", "swapped"])
def test_missing_and_corrupt_weight_files_are_refused(tmp_path, kind):
    d = package(tmp_path, kind)
    weights = d / "model.safetensors"
    full = weights.read_bytes()
    if kind == "empty":
        weights.write_bytes(b"")
    elif kind == "garbage":
        weights.write_bytes(b"this is not a model at all")
    elif kind == "truncated":
        weights.write_bytes(full[: len(full) // 2])
    elif kind == "missing":
        weights.unlink()
    else:  # a file of another format under the expected name
        shutil.copy(d / "model.onnx", weights)
    with pytest.raises(an.InvalidInput, match="model.safetensors" if kind == "missing" else "."):
        an.Simulation(model=d, grid=8)


@pytest.mark.parametrize("kind", ["empty", "truncated", "flipped"])
def test_empty_truncated_and_corrupt_state_files_are_named(tmp_path, kind):
    good = (GOOD / "initial.safetensors").read_bytes()
    bad = {"empty": b"", "truncated": good[:-7], "flipped": good[:20] + bytes([good[20] ^ 0xFF]) + good[21:]}[kind]
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(bad)
    with pytest.raises(an.InvalidInput, match=path.name):
        an.Simulation(model=GOOD, init=str(path))
    sim = an.Simulation(model=GOOD, grid=8)
    before = sim.psi
    with pytest.raises(an.InvalidInput, match=path.name):
        sim.load(path)
    assert (sim.psi == before).all() and sim.step_count == 0
