"""atheria_native.compat as a drop-in for atheria_core.

The first tests drive compat the way Atheria's NativeEngineWrapper
(src/engines/native_engine_wrapper.py) drives atheria_core: trace a law with
torch.jit.trace(model, x, strict=False) as its export_model_to_jit does,
Engine(d_state=, device=, grid_size=), load_model(path), add_particle for
every cell of a dense complex_noise state, step_native() ten times, then
read the dense state back through get_active_coords() (z = 0 and inside the
grid) and get_state_at(), and the maps through compute_visualization(). They
compare with the PyTorch reference engine (python/atheria_ref/engine.py,
Atheria's CartesianEngine step). The rest test each class and function.
"""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "python"))

from atheria_ref.engine import initial_state, step as ref_step  # noqa: E402
from atheria_ref.models import UNet, build_model, init_weights  # noqa: E402

import atheria_native as an  # noqa: E402
import atheria_native.compat as ac  # noqa: E402

#: Tolerance of compat (candle, float32) against PyTorch (float32) after 10
#: steps: the engines sum in different orders; measured 2e-7..1.4e-6.
TOL = 2e-5

D, G, STEPS = 4, 16, 10


class UNetUnitary(UNet):
    """Atheria's UNetUnitary: the U-Net's parameters; the class name is what
    tells the two apart in a traced file."""


CASES = [("conv3x3", None), ("mlp", 8), ("deep_qca", 8), ("unet", 8), ("unet_unitary", 8)]


def traced(tmp_path, arch, hidden, seed=1):
    """(module, path) of a law traced as Atheria's export_model_to_jit traces it."""
    model = build_model("unet" if arch == "unet_unitary" else arch, D, hidden)
    if arch == "unet_unitary":
        unitary = UNetUnitary(D, hidden).eval()
        unitary.load_state_dict(model.state_dict())
        model = unitary
    init_weights(model, "unet" if arch == "unet_unitary" else arch, seed=seed)
    with torch.no_grad():
        ts = torch.jit.trace(model, torch.randn(1, 2 * D, G, G), strict=False)
    path = tmp_path / f"model_jit_{arch}.pt"
    ts.save(str(path))
    return model, str(path)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHERIA_COMPAT_CACHE", str(tmp_path / "cache"))


def dense_from_engine(engine):
    """The wrapper's _update_dense_state_from_sparse: [1, G, G, D] complex64."""
    psi = torch.zeros(1, G, G, D, dtype=torch.complex64)
    for c in engine.get_active_coords():
        if c.z != 0:
            continue
        s = engine.get_state_at(c)
        if s.shape == (D,) and 0 <= c.x < G and 0 <= c.y < G:
            psi[0, c.y, c.x] = s
    return psi


@pytest.mark.parametrize("arch,hidden", CASES)
def test_wrapper_flow_matches_the_reference_engine(tmp_path, arch, hidden):
    model, path = traced(tmp_path, arch, hidden)
    engine = ac.Engine(d_state=D, device="cpu", grid_size=G)
    assert engine.load_model(path), engine.get_last_error()
    assert engine.get_last_error() == ""
    psi = initial_state("complex_noise", G, G, D, seed=7)
    cells = torch.nonzero(psi.abs().pow(2)[0].sum(-1) > 1e-9)
    for y, x in cells.tolist():
        engine.add_particle(ac.Coord3D(x, y, 0), psi[0, y, x, :])
    assert engine.get_matter_count() == G * G
    ref = psi
    unitary = arch == "unet_unitary"
    for i in range(STEPS):
        assert engine.step_native() == G * G
        ref = ref_step(model, ref, unitary=unitary)
        err = (dense_from_engine(engine) - ref).abs().max().item()
        assert err < TOL, f"{arch} step {i + 1}: max |compat - reference| = {err}"
    assert engine.get_step_count() == STEPS
    # The state must have moved: a law that did nothing would pass the comparison.
    assert (ref - psi).abs().max().item() > 0.05
    density = engine.compute_visualization("density")
    assert isinstance(density, torch.Tensor) and density.shape == (G, G) and density.dtype == torch.float32
    want = ref[0].abs().pow(2).sum(-1)
    assert (density - want).abs().max().item() < TOL
    phase = engine.compute_visualization("phase")
    assert (phase - torch.angle(ref[0, :, :, 0])).abs().max().item() < 1e-4
    bulk = engine.compute_visualization("holographic_bulk")
    assert bulk.shape == (5, G, G)
    blurred = torch.nn.functional.conv2d(want[None, None], torch.tensor([[1., 2, 1], [2, 4, 2], [1, 2, 1]])[None, None] / 16, padding=1)
    assert (bulk[1] - blurred[0, 0]).abs().max().item() < TOL
    holo = engine.compute_visualization("holographic")
    assert holo.shape == (G, G, 3) and float(holo.min()) >= 0 and float(holo.max()) <= 1
    assert engine.compute_visualization("no_such_map").abs().sum().item() == 0


def test_the_converted_package_is_cached_and_names_the_architecture(tmp_path):
    _, path = traced(tmp_path, "unet_unitary", 8)
    for _ in range(2):
        assert ac.Engine(D, grid_size=G).load_model(path)
    packages = [p for p in (tmp_path / "cache").iterdir()]
    assert len(packages) == 1 and packages[0].name.endswith("-unet_unitary")
    import json

    spec = json.loads((packages[0] / "model.json").read_text())
    assert spec["update"] == "unitary" and spec["d_state"] == D and spec["hidden_channels"] == 8


def test_dense_engine_matches_the_reference_and_aliases_its_state(tmp_path):
    model, path = traced(tmp_path, "conv3x3", None)
    e = ac.DenseEngine(G, D, "cpu")
    assert e.step() == 0  # no model: nothing happens
    assert e.load_model(path)
    psi = initial_state("random", G, G, D, seed=2)
    e.set_state(psi.permute(0, 3, 1, 2).contiguous())
    view = e.get_state()
    assert view.shape == (1, D, G, G) and view.dtype == torch.complex64
    ref = psi
    for _ in range(3):
        assert e.step() == G * G
        ref = ref_step(model, ref)
    assert e.get_step_count() == 3
    got = e.get_state().permute(0, 2, 3, 1)
    assert (got - ref).abs().max().item() < TOL
    assert (view.permute(0, 2, 3, 1) - ref).abs().max().item() < TOL  # updated in place, as C++
    e.set_state(psi[0].permute(2, 0, 1))  # [D, H, W] is taken too
    assert e.get_state().shape == (1, D, G, G)
    assert e.apply_tool("vortex", {"x": 1.0}) is False


def test_dense_engine_errors_are_false_and_minus_one(tmp_path, capfd):
    e = ac.DenseEngine(G, D)
    assert e.load_model(str(tmp_path / "missing.pt")) is False
    assert "no such file" in capfd.readouterr().err
    _, path = traced(tmp_path, "conv3x3", None)
    assert e.load_model(path)
    e.set_state(torch.zeros(1, D, G, G + 1, dtype=torch.complex64))
    assert e.step() == -1
    assert "square" in capfd.readouterr().err


def test_generate_bulk_state():
    e = ac.DenseEngine(G, D)
    base = torch.rand(2, G, G)
    out = e.generate_bulk_state(base, 3)
    assert out.shape == (1, 6, G, G)
    k = torch.tensor([[1., 2, 1], [2, 4, 2], [1, 2, 1]])[None, None].repeat(2, 1, 1, 1) / 16
    one = torch.nn.functional.conv2d(base[None], k, padding=1, groups=2)
    two = torch.nn.functional.conv2d(one, k, padding=1, groups=2)
    assert torch.allclose(out, torch.cat([base[None], one, two], 1), atol=1e-6)
    assert e.generate_bulk_state(torch.rand(G, G), 1).shape == (1, 1, G, G)


def test_engine_errors_return_false_with_last_error(tmp_path):
    e = ac.Engine(d_state=D)
    assert e.get_last_error() == ""
    assert e.load_model(str(tmp_path / "nope.pt")) is False
    assert "no such file" in e.get_last_error()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript file")
    assert e.load_model(str(bad)) is False
    assert "torch.jit.load" in e.get_last_error()
    _, path = traced(tmp_path, "conv3x3", None)
    assert ac.Engine(d_state=D + 1).load_model(path) is False
    wrong = ac.Engine(d_state=D + 1)
    wrong.load_model(path)
    assert "d_state" in wrong.get_last_error()

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv2d(2 * D, 2 * D, 1)

        def forward(self, x):
            return self.head(x)

    odd = tmp_path / "odd.pt"
    torch.jit.trace(Odd(), torch.randn(1, 2 * D, G, G)).save(str(odd))
    ok = e.load_model(str(odd))
    if "tch" in an.backends():
        assert ok, e.get_last_error()
    else:
        assert ok is False and "tch" in e.get_last_error() and "match none of" in e.get_last_error()
    assert e.load_model(path) and e.get_last_error() == ""


def test_engine_without_a_model_keeps_its_matter():
    e = ac.Engine(d_state=2, grid_size=8)
    e.add_particle(ac.Coord3D(3, 4, 0), torch.tensor([1 + 1j, 0], dtype=torch.complex64))
    assert e.step_native() == 1 and e.get_step_count() == 1
    assert torch.equal(e.get_state_at(ac.Coord3D(3, 4, 0)), torch.tensor([1 + 1j, 0], dtype=torch.complex64))
    e.clear()
    assert e.get_matter_count() == 0 and e.get_step_count() == 0 and e.get_active_coords() == []


def test_active_region_vacuum_and_query_radius():
    e = ac.Engine(d_state=3, grid_size=8)
    e.add_particle(ac.Coord3D(0, 0, 0), np.ones(3, np.complex64))
    keys = {(c.x, c.y, c.z) for c in e.get_active_coords()}
    # A 3 x 3 x 3 cube around the particle, out of the grid and z = +-1 included (as C++).
    assert keys == {(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)}
    e.activate_neighborhood(ac.Coord3D(5, 5, 0), radius=2)
    assert len({(c.x, c.y, c.z) for c in e.get_active_coords()}) == 27 + 125
    # get_state_at on vacuum: the harmonic vacuum, |psi_c| = 1 per channel, never None.
    v = e.get_state_at(ac.Coord3D(1, 1, 0))
    assert v.shape == (3,) and torch.allclose(v.abs(), torch.ones(3))
    assert torch.equal(v, e.get_state_at(ac.Coord3D(1, 1, 0)))  # the same at the same step
    assert not torch.equal(v, e.get_state_at(ac.Coord3D(2, 1, 0)))
    # Matter outside the grid plane is kept (not stepped) and counted.
    e.add_particle(ac.Coord3D(20, -3, 2), np.full(3, 0.5, np.complex64))
    assert e.get_matter_count() == 2
    assert torch.allclose(e.get_state_at(ac.Coord3D(20, -3, 2)), torch.full((3,), 0.5 + 0j))
    found = e.query_radius(ac.Coord3D(1, 1, 1), 1)
    assert found == [ac.Coord3D(0, 0, 0)]
    assert len(e.query_radius(ac.Coord3D(0, 0, 0), 30)) == 2
    with pytest.raises(ValueError, match="d_state"):
        e.add_particle(ac.Coord3D(1, 1, 0), np.ones(4, np.complex64))


def test_numpy_without_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(ac, "_HAS_TORCH", False)
    assert ac.has_torch_support() is False
    e = ac.Engine(d_state=2, grid_size=4)
    e.add_particle(ac.Coord3D(1, 1, 0), np.array([1, 1j], np.complex64))
    s = e.get_state_at(ac.Coord3D(1, 1, 0))
    assert isinstance(s, np.ndarray) and s.dtype == np.complex64
    assert isinstance(e.compute_visualization("density"), np.ndarray)
    d = ac.DenseEngine(4, 2)
    assert isinstance(d.get_state(), np.ndarray)
    assert isinstance(ac.SparseMap().get_tensor(ac.Coord3D()), np.ndarray)
    monkeypatch.setattr(ac, "_HAS_TORCH", True)
    assert ac.has_torch_support() is True
    assert isinstance(e.get_state_at(ac.Coord3D(1, 1, 0)), torch.Tensor)


def test_coord3d():
    c = ac.Coord3D(1, -2, 3)
    assert (c.x, c.y, c.z) == (1, -2, 3) and repr(c) == "Coord3D(1, -2, 3)"
    c.x = 7
    assert c.x == 7 and ac.Coord3D().x == 0
    assert ac.Coord3D(1, 2, 3) == ac.Coord3D(1, 2, 3) and len({ac.Coord3D(1, 2, 3), ac.Coord3D(1, 2, 3)}) == 1
    assert ac.Coord3D(x=1, y=2, z=3) != ac.Coord3D(1, 2, 4)


def test_sparse_map_protocol():
    m = ac.SparseMap()
    assert m.empty() and len(m) == 0 and repr(m) == "<SparseMap with 0 elements>"
    m.insert(5, 1.5)
    m[7] = 2.0
    assert m.contains(5) and 7 in m and 9 not in m
    assert m.get(5) == 1.5 and m.get(9) == 0.0 and m.get(9, default_value=3.0) == 3.0
    assert m[7] == 2.0 and sorted(m.keys()) == [5, 7] and sorted(m.values()) == [1.5, 2.0]
    with pytest.raises(KeyError):
        m[9]
    del m[7]
    m.remove(5)
    m.remove(42)  # absent: nothing
    assert m.size() == 0
    t = torch.ones(3, dtype=torch.complex64)
    m.insert_tensor(ac.Coord3D(1, 2, 3), t)
    assert m.contains_coord(ac.Coord3D(1, 2, 3)) and not m.contains_coord(ac.Coord3D(0, 0, 0))
    assert m.get_tensor(ac.Coord3D(1, 2, 3)) is t and m.get_tensor(ac.Coord3D()).numel() == 0
    assert m.coord_keys() == [ac.Coord3D(1, 2, 3)] and len(m) == 1
    m.remove_coord(ac.Coord3D(1, 2, 3))
    m.insert(1, 1.0)
    m.clear()
    assert m.empty()


def test_module_functions():
    assert ac.get_version() == ac.__version__ and isinstance(ac.__version__, str)
    assert ac.has_torch_support() is True
    ac.set_num_threads(2)
    assert ac.get_max_threads() == 2
    ac.set_num_threads(1)
    assert ac.get_max_threads() == 1
    for name in ("Engine", "DenseEngine", "Coord3D", "SparseMap"):
        assert hasattr(ac, name)


def test_sys_modules_drop_in(monkeypatch):
    monkeypatch.setitem(sys.modules, "atheria_core", ac)
    import atheria_core

    assert atheria_core.Engine(d_state=1, device="cpu").get_matter_count() == 0
