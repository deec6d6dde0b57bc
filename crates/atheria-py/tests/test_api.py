"""The Pythonic API: psi's dtype/shape/order handling, tools, fields,
readouts, the sparse engine's cells, and errors."""

import numpy as np
import pytest

import atheria_native as an
from atheria_native import AtheriaError, InvalidInput, StepFailed


def test_exception_classes():
    assert issubclass(InvalidInput, AtheriaError) and issubclass(InvalidInput, ValueError)
    assert issubclass(StepFailed, AtheriaError) and issubclass(StepFailed, RuntimeError)
    assert "candle" in an.backends()
    assert isinstance(an.__version__, str)


def test_psi_is_a_complex64_copy(small_sim):
    psi = small_sim.psi
    assert psi.dtype == np.complex64 and psi.shape == (16, 16, small_sim.d_state)
    assert psi.flags.c_contiguous and psi.flags.writeable
    psi[:] = 0
    assert np.abs(small_sim.psi).sum() > 0, "changing the copy changed the simulation"
    # Unit norm per cell (the random init is normalised).
    np.testing.assert_allclose((np.abs(small_sim.psi) ** 2).sum(-1), 1.0, rtol=1e-5)


def test_psi_channels_are_where_they_belong(small_sim):
    d = small_sim.d_state
    want = np.zeros((16, 16, d), np.complex64)
    want[2, 5, 1] = 0.5 + 0.25j  # row 2, column 5, channel 1
    want[7, 0, d - 1] = -1j
    small_sim.psi = want
    np.testing.assert_array_equal(small_sim.psi, want)
    np.testing.assert_array_equal(small_sim.get(5, 2), want[2, 5])  # get(x, y)


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(np.complex128),
        lambda a: np.asfortranarray(a),
        lambda a: np.asfortranarray(a.astype(np.complex128)),
        lambda a: np.ascontiguousarray(a[::-1])[::-1],  # negative strides
        lambda a: np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2),
    ],
    ids=["complex128", "fortran", "fortran-complex128", "negative-strides", "transposed-view"],
)
def test_psi_setter_converts_any_layout_correctly(small_sim, convert):
    rng = np.random.default_rng(0)
    d = small_sim.d_state
    want = (rng.standard_normal((16, 16, d)) + 1j * rng.standard_normal((16, 16, d))).astype(np.complex64)
    given = convert(want)
    np.testing.assert_array_equal(given, want)
    small_sim.psi = given
    np.testing.assert_array_equal(small_sim.psi, want)


def test_psi_setter_takes_real_arrays(small_sim):
    d = small_sim.d_state
    real = np.linspace(-1, 1, 16 * 16 * d).reshape(16, 16, d)  # float64
    small_sim.psi = real
    np.testing.assert_array_equal(small_sim.psi, real.astype(np.complex64))
    small_sim.psi = real.astype(np.float32)
    np.testing.assert_array_equal(small_sim.psi, real.astype(np.complex64))


@pytest.mark.parametrize(
    "bad, words",
    [
        (lambda d: np.zeros((16, 15, d), np.complex64), "shape"),
        (lambda d: np.zeros((16, 16, d + 1), np.complex64), "channels"),
        (lambda d: np.zeros((16, 16), np.complex64), "3 dimensions"),
        (lambda d: np.zeros((16, 16, d), np.int32), "dtype"),
        (lambda d: np.zeros((16, 16, d), bool), "dtype"),
        (lambda d: np.full((16, 16, d), "x"), "dtype"),
        (lambda d: np.full((16, 16, d), np.nan, np.complex64), "finite"),
        (lambda d: np.full((16, 16, d), 1e300, np.complex128), "finite"),
        (lambda d: "not an array", "dtype"),
        (lambda d: None, "dtype"),
    ],
)
def test_psi_setter_refuses_bad_arrays_and_changes_nothing(small_sim, bad, words):
    before = small_sim.psi
    with np.errstate(over="ignore"), pytest.raises(InvalidInput, match=words):
        small_sim.psi = bad(small_sim.d_state)
    np.testing.assert_array_equal(small_sim.psi, before)


def test_step_returns_the_count_and_zero_steps_is_fine(small_sim):
    assert small_sim.step() == 1
    assert small_sim.step(0) == 1
    assert small_sim.step(3) == 4 == small_sim.step_count


def test_tools_fields_and_metrics(small_sim):
    before = small_sim.psi
    small_sim.apply_tool("vortex", x=8, y=8, radius=4, strength=1.0)
    assert not np.array_equal(small_sim.psi, before)
    after_vortex = small_sim.psi
    small_sim.apply_tool("wave:k_x=1,k_y=2")
    assert not np.array_equal(small_sim.psi, after_vortex)
    small_sim.apply_tool("click_out", enabled=False)
    small_sim.apply_tool("inject_energy", mode="symmetric_seed", x=3, y=3, seed=1)
    small_sim.step()

    m = small_sim.metrics()
    assert m["step"] == 1 and isinstance(m["step"], int)
    for key in ("norm", "energy", "fidelity", "entropy", "clustering", "symmetry", "mean_density"):
        assert isinstance(m[key], float), key
    assert m["norm"] == pytest.approx(np.sqrt((np.abs(small_sim.psi) ** 2).sum()), rel=1e-5)

    density = small_sim.field("density", mask=False)
    assert density.shape == (16, 16) and density.dtype == np.float32
    np.testing.assert_allclose(density, (np.abs(small_sim.psi) ** 2).sum(-1), rtol=1e-5, atol=1e-7)
    assert small_sim.field("phase_hsv").shape == (16, 16, 3)
    assert small_sim.field("holographic_bulk").shape[0] == 5
    assert small_sim.field("phase:1").shape == (16, 16)
    assert small_sim.field("energy").shape == (16, 16)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda s: s.apply_tool("nope"), "nope"),
        (lambda s: s.apply_tool("vortex", x=8, y=8, radius=-1), "radius"),
        (lambda s: s.apply_tool("vortex", x=8, y=8, colour=1), "colour"),
        (lambda s: s.apply_tool("vortex", x=1000, y=8), "x"),
        (lambda s: s.apply_tool("vortex", x="1,y=2"), "may not contain"),
        (lambda s: s.apply_tool("vortex", x=[1]), "expected a number"),
        (lambda s: s.apply_tool("vortex:x=1@step=3"), "step"),
        (lambda s: s.apply_tool("stamp", x=1, y=1, file="/nonexistent/state.safetensors"), "nonexistent"),
        (lambda s: s.field("nope"), "nope"),
        (lambda s: s.field("phase:99"), "99"),
        (lambda s: s.step(-1), "at least 0"),
        (lambda s: s.load("/nonexistent/file.safetensors"), "nonexistent"),
        (lambda s: s.save("/nonexistent/dir/file.safetensors"), "nonexistent"),
        (lambda s: s.insert(100, 100, np.ones(s.d_state)), "outside"),
        (lambda s: s.insert(1, 1, np.ones(s.d_state + 1)), "value"),
        (lambda s: s.insert(1, 1, np.ones((2, 2))), "dimension"),
        (lambda s: s.remove(1, 1), "sparse"),
        (lambda s: s.cells_within(1, 1, 3), "sparse"),
        (lambda s: setattr(s, "gamma", -1.0), "gamma"),
        (lambda s: setattr(s, "gamma", float("nan")), "gamma"),
    ],
)
def test_bad_calls_raise_invalid_input_and_change_nothing(small_sim, call, words):
    before = small_sim.psi
    with pytest.raises(InvalidInput, match=words):
        call(small_sim)
    np.testing.assert_array_equal(small_sim.psi, before)
    assert small_sim.step_count == 0


def test_garbage_state_file_is_refused(small_sim, tmp_path):
    p = tmp_path / "garbage.safetensors"
    p.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(InvalidInput, match="garbage.safetensors"):
        small_sim.load(p)
    p.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        small_sim.load(p)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(backend="nope"), "unknown backend"),
        (dict(engine="nope"), "unknown engine"),
        (dict(init="nope"), "unknown initial state"),
        (dict(init="out/no-such-state"), "no-such-state"),
        (dict(grid=0), "grid"),
        (dict(grid=-5), "grid"),
        (dict(grid=10**7), "limit"),
        (dict(gamma=-0.5), "gamma"),
        (dict(gamma=float("inf")), "gamma"),
        (dict(threads=0), "threads"),
        (dict(threads=10**6), "at most"),
        (dict(threshold=-1.0), "threshold"),
        (dict(model="/nonexistent/model"), "nonexistent"),
        (dict(model="/tmp"), "model.json"),
    ],
)
def test_bad_construction_raises_invalid_input(kwargs, words):
    with pytest.raises(InvalidInput, match=words):
        an.Simulation(grid=kwargs.pop("grid", 8), **kwargs)


def test_wrong_argument_types_raise_type_errors():
    with pytest.raises(TypeError):
        an.Simulation(grid="big")
    with pytest.raises((TypeError, OverflowError)):
        an.Simulation(grid=8, seed=-1)


def test_sparse_engine_cells():
    sim = an.Simulation(engine="sparse", grid=16, seed=1)
    assert sim.engine == "sparse"
    box = sim.bounding_box()
    assert box is not None
    min_x, min_y, max_x, max_y = box
    psi = sim.psi
    assert psi.shape == (max_y - min_y + 1, max_x - min_x + 1, sim.d_state)
    n = sim.occupied_count
    assert n == np.count_nonzero(np.abs(psi).sum(-1))

    far = np.arange(sim.d_state, dtype=np.complex64) * (1 + 1j) / 10
    sim.insert(1000, -1000, far)
    assert sim.occupied_count == n + 1
    np.testing.assert_array_equal(sim.get(1000, -1000), far)
    assert sim.bounding_box() == (min_x, -1000, 1000, max_y)
    coords, values = sim.cells_within(1000, -1000, 2)
    np.testing.assert_array_equal(coords, [[1000, -1000]])
    np.testing.assert_array_equal(values, [far])
    np.testing.assert_array_equal(sim.remove(1000, -1000), far)
    assert sim.get(1000, -1000) is None and sim.remove(1000, -1000) is None
    assert sim.bounding_box() == box

    coords, values = sim.cells_within(0, 0, 3)
    assert coords.shape == (len(values), 2) and values.shape == (len(coords), sim.d_state)
    assert len(coords) > 0 and (coords**2).sum(1).max() <= 9
    for (x, y), v in zip(coords, values):
        np.testing.assert_array_equal(sim.get(int(x), int(y)), v)

    sim.step(2)
    assert sim.step_count == 2
    assert sim.metrics()["matter_cells"] > 0


def test_sparse_psi_setter_places_matter_at_the_box_corner():
    sim = an.Simulation(engine="sparse", grid=16, seed=1)
    min_x, min_y, _, _ = sim.bounding_box()
    d = sim.d_state
    new = np.zeros((3, 4, d), np.complex64)
    new[1, 2, 0] = 1.0
    new[2, 3, :] = 0.5j
    sim.psi = new
    assert sim.occupied_count == 2
    np.testing.assert_array_equal(sim.get(min_x + 2, min_y + 1), new[1, 2])
    np.testing.assert_array_equal(sim.get(min_x + 3, min_y + 2), new[2, 3])
    assert sim.get(min_x, min_y) is None


def test_empty_sparse_lattice():
    sim = an.Simulation(engine="sparse", grid=8, init="zeros")
    assert sim.bounding_box() is None
    assert sim.occupied_count == 0
    sim.step(2)
    assert sim.psi.shape[2] == sim.d_state
    assert sim.metrics()["matter_cells"] == 0


def test_repr(small_sim):
    assert "dense" in repr(small_sim) and "step=0" in repr(small_sim)


def test_a_failed_step_raises_step_failed_and_leaves_the_state():
    from conftest import GOLDEN

    d = GOLDEN / "conv3x3_d4"
    sim = an.Simulation(model=d, init=str(d / "initial.safetensors"))
    assert sim.step(2) == 2
    # Finite in f32, but the law's sums overflow: the model returns infinity.
    huge = np.full(sim.psi.shape, 3e38 + 3e38j, np.complex64)
    sim.psi = huge
    with pytest.raises(StepFailed, match=r"step 3 failed: the model returned a non-finite delta"):
        sim.step(5)
    assert sim.step_count == 2
    np.testing.assert_array_equal(sim.psi, huge)
    # Fixable: a sane state steps again.
    sim.psi = np.ones_like(huge)
    assert sim.step() == 3


def test_read_psi_into_a_preallocated_array(small_sim):
    small_sim.step(2)
    out = np.full(small_sim.psi.shape, 7 + 7j, np.complex64)
    assert small_sim.read_psi(out) is out
    np.testing.assert_array_equal(out, small_sim.psi)
    np.testing.assert_array_equal(small_sim.read_psi(), small_sim.psi)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda s: np.empty((16, 15, s), np.complex64), "shape"),
        (lambda s: np.empty((16, 16, s), np.complex128), "complex64"),
        (lambda s: np.empty((16, 16, s), np.complex64, order="F"), "C-contiguous"),
        (lambda s: np.empty((16, 16 * s), np.complex64), "complex64"),
        (lambda s: "not an array", "complex64"),
    ],
)
def test_read_psi_refuses_an_unfit_out(small_sim, make, words):
    out = make(small_sim.d_state)
    with pytest.raises(InvalidInput, match=words):
        small_sim.read_psi(out)


def test_read_psi_refuses_a_read_only_out(small_sim):
    out = np.empty(small_sim.psi.shape, np.complex64)
    out.flags.writeable = False
    with pytest.raises(InvalidInput, match="written"):
        small_sim.read_psi(out)


def test_sparse_options_tile_and_atomic_steps():
    atomic = an.Simulation(engine="sparse", grid=48, seed=3, tile=8)
    rolling = an.Simulation(engine="sparse", grid=48, seed=3, tile=8, atomic_steps=False)
    atomic.step(4)
    rolling.step(4)
    # Writing rows of tiles as the step goes gives the same lattice.
    assert rolling.bounding_box() == atomic.bounding_box()
    np.testing.assert_array_equal(rolling.psi, atomic.psi)

    with pytest.raises(InvalidInput, match="atomic steps off is an option of the sparse engine"):
        an.Simulation(engine="dense", grid=8, atomic_steps=False)
    with pytest.raises(InvalidInput, match="tile size 12 must be a power of two"):
        an.Simulation(engine="sparse", grid=8, tile=12)
    with pytest.raises(InvalidInput, match="tile must be a power of two"):
        an.Simulation(engine="sparse", grid=8, tile=-4)
