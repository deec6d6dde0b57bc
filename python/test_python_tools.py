#!/usr/bin/env python3
"""Tests of the exporter, the checkpoint conversion, the state file, the reference engine and the instruments.

    /work/main/.venv/bin/python python/test_python_tools.py      (or: -m unittest from python/)
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(HERE))

from atheria_ref.engine import ReferenceEngine, SparseWindowEngine, initial_state, step, zero_memory  # noqa: E402
from atheria_ref.exporter import ExportError, export_package, make_model, model_from_checkpoint  # noqa: E402
from atheria_ref.models import (ARCHITECTURES, RMSNorm2d, build_model, convlstm_groups, groups_for,  # noqa: E402
                                init_weights, is_recurrent, last_layer, memory_spec)
from atheria_ref.state_io import State, StateFileError, read_state, write_state  # noqa: E402
# The instrument reference's tests (docs/instruments.md) run with these.
from test_instruments import (FixtureTest, RngTest, ToolStringTest, ToolTest,  # noqa: E402,F401
                              VizAndMetricsTest)

PY = sys.executable


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def sizes(arch):
    return (2, 8) if ARCHITECTURES[arch][3] else (3, None)


def call(model, x, memory=None):
    """delta for x: a recurrent model gets ``memory`` (default zeros) and its delta is returned."""
    if not is_recurrent(model):
        return model(x)
    if memory is None:
        memory = zero_memory(model, x.shape[2], x.shape[3], x.shape[0])
    return model(x, *memory)[0]


class ExporterTest(unittest.TestCase):
    def test_every_arch_round_trips_with_state_dict_names(self):
        for arch in ARCHITECTURES:
            with self.subTest(arch=arch), tempfile.TemporaryDirectory() as tmp:
                d, h = sizes(arch)
                model, d, h = make_model(arch, d, h, seed=5)
                export_package(model, arch, d, h, tmp, f"t_{arch}", quiet=True)
                sd = model.state_dict()
                with safe_open(str(Path(tmp) / "model.safetensors"), framework="pt") as f:
                    self.assertEqual(sorted(f.keys()), sorted(sd.keys()))
                    for k in f.keys():
                        t = f.get_tensor(k)
                        self.assertEqual(t.dtype, torch.float32, k)
                        self.assertTrue(torch.equal(t, sd[k]), k)
                spec = json.loads((Path(tmp) / "model.json").read_text())
                update, radius, multiple, has_hidden = ARCHITECTURES[arch]
                self.assertEqual(spec["format"], "atheria-model/1")
                self.assertEqual(spec["architecture"], arch)
                self.assertEqual(spec["d_state"], d)
                self.assertEqual(spec.get("hidden_channels"), h if has_hidden else None)
                self.assertEqual((spec["update"], spec["receptive_radius"], spec["spatial_multiple"]),
                                 (update, radius, multiple))
                self.assertIn("receptive_radius", spec)
                self.assertEqual(spec.get("memory", []), memory_spec(arch, h))
                for kind in ("safetensors", "torchscript", "onnx"):
                    self.assertTrue((Path(tmp) / spec["files"][kind]).is_file(), kind)

    def test_last_layer_is_not_near_zero_and_deep_qca_kernel_is_fixed(self):
        for arch in ARCHITECTURES:
            d, h = sizes(arch)
            model = init_weights(build_model(arch, d, h), arch, 0)
            x = torch.randn(1, 2 * d, 8, 8)
            with torch.no_grad():
                self.assertGreater(call(model, x).abs().mean().item(), 0.05, arch)
        model = init_weights(build_model("deep_qca", 2, 8), "deep_qca", 0)
        w = model.conv_neighbors.weight
        self.assertEqual(tuple(w.shape), (32, 1, 3, 3))
        self.assertTrue(torch.all(w[:, :, 1, 1] == 0))
        self.assertEqual(w.sum().item(), 32 * 8)

    def test_unet_state_dict_names_follow_the_brief(self):
        names = set(build_model("unet", 2, 8).state_dict())
        for k in ["inc.conv_block.0.weight", "inc.conv_block.1.weight", "inc.conv_block.4.bias",
                  "down1.1.conv_block.3.weight", "down2.1.conv_block.0.weight", "bot.conv_block.0.weight",
                  "up1.weight", "up1.bias", "conv_up1.conv_block.0.weight", "up2.weight",
                  "conv_up2.conv_block.0.weight", "outc.weight", "outc.bias"]:
            self.assertIn(k, names)
        self.assertFalse(any(k.endswith("conv_block.0.bias") for k in names))
        sd = build_model("unet", 2, 8).state_dict()
        self.assertEqual(tuple(sd["conv_up1.conv_block.0.weight"].shape), (32, 48, 3, 3))
        self.assertEqual(tuple(sd["conv_up2.conv_block.0.weight"].shape), (8, 24, 3, 3))
        self.assertEqual(build_model("unet", 2, 8).bot.conv_block[1].num_groups, 8)

    def test_unet_last_layers_are_gentler_and_last_std_brings_back_the_harsh_law(self):
        # Only the last layer's weights scale with the std: the draws stay the same.
        for arch in ARCHITECTURES:
            d, h = sizes(arch)
            default, _, _ = make_model(arch, d, h, seed=4)
            harsh, _, _ = make_model(arch, d, h, seed=4, last_std=0.2)
            scale = 0.25 if arch.startswith("unet") else 1.0
            for (name, a), (_, b) in zip(default.state_dict().items(), harsh.state_dict().items()):
                last = a.data_ptr() == last_layer(default).weight.data_ptr()
                torch.testing.assert_close(a, b * scale if last else b, rtol=0, atol=0, msg=f"{arch} {name}")
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = FIXTURES / "checkpoint_unet_d2_h8.pt"
            r = run_cli(HERE / "export.py", "--arch", "unet", "--checkpoint", ckpt, "--last-std", 0.2, "--out", tmp)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("--last-std", r.stderr)
            self.assertNotIn("Traceback", r.stderr)
        with self.assertRaisesRegex(ExportError, "last layer's std"):
            make_model("unet", 2, 8, seed=1, last_std=0.0)
        with self.assertRaisesRegex(ExportError, "identity"):
            make_model("conv3x3", 2, None, seed=1, init="identity", last_std=0.2)

    def test_zero_bias_and_identity(self):
        model, _, _ = make_model("mlp", 2, 8, seed=1, zero_bias=True)
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                self.assertEqual(p.abs().max().item(), 0.0, n)
        with self.assertRaises(ExportError):
            make_model("mlp", 2, 8, seed=1, init="identity")


class CheckpointTest(unittest.TestCase):
    ckpt = FIXTURES / "checkpoint_unet_d2_h8.pt"

    def test_training_checkpoint_converts_to_the_golden_package(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = run_cli(HERE / "export.py", "--arch", "unet", "--checkpoint", self.ckpt, "--out", tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("model.onnx", r.stderr)
            spec = json.loads((Path(tmp) / "model.json").read_text())
            self.assertEqual((spec["d_state"], spec["hidden_channels"]), (2, 8))
            got = load_file(str(Path(tmp) / "model.safetensors"))
            want = load_file(str(FIXTURES / "golden" / "unet_d2_h8" / "model.safetensors"))
            self.assertEqual(sorted(got), sorted(want))
            for k in want:
                np.testing.assert_array_equal(got[k], want[k], err_msg=k)

    def test_plain_state_dict_and_prefixes(self):
        sd = torch.load(self.ckpt, weights_only=True)["model_state_dict"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "plain.pt"
            torch.save({"module." + k: v for k, v in sd.items()}, path)
            model, d, h = model_from_checkpoint("unet", path)
            self.assertEqual((d, h), (2, 8))

    def _bad(self, mutate, *flags):
        sd = dict(torch.load(self.ckpt, weights_only=True)["model_state_dict"])
        mutate(sd)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bad.pt"
            torch.save({"model_state_dict": sd}, path)
            r = run_cli(HERE / "export.py", "--arch", "unet", "--checkpoint", path, "--out", Path(tmp) / "o", *flags)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        self.assertEqual(len(errors), 1, r.stderr)
        return errors[0]

    def test_wrong_keys_are_one_clear_error(self):
        def mutate(sd):
            sd["bot.conv_block.0.weights"] = sd.pop("bot.conv_block.0.weight")
            sd["extra.bias"] = torch.zeros(3)
            del sd["outc.bias"]
        err = self._bad(mutate)
        self.assertIn("missing keys: bot.conv_block.0.weight, outc.bias", err)
        self.assertIn("unexpected keys: bot.conv_block.0.weights, extra.bias", err)

    def test_wrong_shape_is_one_clear_error(self):
        def mutate(sd):
            sd["bot.conv_block.3.weight"] = torch.zeros(64, 32, 3, 3)
        err = self._bad(mutate)
        self.assertIn("shape mismatches: bot.conv_block.3.weight [64, 32, 3, 3] (model wants [64, 64, 3, 3])", err)
        self.assertNotIn("missing", err)

    def test_flags_are_checked_against_the_checkpoint(self):
        err = self._bad(lambda sd: None, "--d-state", "3")
        self.assertIn("d_state 2 but --d-state is 3", err)
        err = self._bad(lambda sd: None, "--hidden", "16")
        self.assertIn("hidden 8 but --hidden is 16", err)

    def test_not_a_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "junk.pt"
            path.write_text("not a checkpoint")
            r = run_cli(HERE / "export.py", "--arch", "unet", "--checkpoint", path, "--out", Path(tmp) / "o")
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("Traceback", r.stderr)


class RecurrentModelTest(unittest.TestCase):
    """unet_convlstm and unet_unitary_rmsnorm against Atheria's definitions, written out by hand."""

    def test_state_dict_names_and_shapes_are_atheria_s(self):
        sd = build_model("unet_convlstm", 2, 8).state_dict()
        self.assertEqual(tuple(sd["conv_gates.weight"].shape), (128, 64, 3, 3))
        self.assertEqual(tuple(sd["conv_gates.bias"].shape), (128,))
        self.assertEqual(tuple(sd["bot.conv_block.0.weight"].shape), (64, 32, 3, 3))
        self.assertEqual(tuple(sd["outc.bias"].shape), (4,))
        self.assertEqual(len(sd), len(build_model("unet", 2, 8).state_dict()) + 2)
        # Atheria's module order: the gates come between down2 and bot.
        keys = list(sd)
        self.assertLess(keys.index("down2.1.conv_block.4.bias"), keys.index("conv_gates.weight"))
        self.assertLess(keys.index("conv_gates.bias"), keys.index("bot.conv_block.0.weight"))
        rms = build_model("unet_unitary_rmsnorm", 2, 8).state_dict()
        # The U-Net's names less the GroupNorm biases (RMSNorm2d has a weight only).
        self.assertEqual(sorted(rms), sorted(k for k in build_model("unet", 2, 8).state_dict()
                                             if not k.endswith(("conv_block.1.bias", "conv_block.4.bias"))))
        self.assertIn("inc.conv_block.1.weight", rms)
        self.assertNotIn("inc.conv_block.1.bias", rms)
        self.assertEqual(tuple(rms["bot.conv_block.4.weight"].shape), (64,))
        self.assertEqual(memory_spec("unet_convlstm", 8), [{"name": "h_state", "channels": 32, "stride": 4},
                                                           {"name": "c_state", "channels": 32, "stride": 4}])
        self.assertEqual(memory_spec("unet_unitary_rmsnorm", 8), [])
        self.assertEqual((ARCHITECTURES["unet_convlstm"][0], ARCHITECTURES["unet_unitary_rmsnorm"][0]),
                         ("additive", "additive"))

    def test_convlstm_group_rule_is_the_unet_s(self):
        for c in range(1, 1025):
            self.assertEqual(convlstm_groups(c), groups_for(c), c)
        self.assertEqual(build_model("unet_convlstm", 2, 8).bot.conv_block[1].num_groups, 8)

    def test_convlstm_cell_is_f_i_o_g(self):
        model = init_weights(build_model("unet_convlstm", 2, 4), "unet_convlstm", 7).double()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((2, 4, 8, 12), generator=gen, dtype=torch.float64)
        h = torch.tanh(torch.randn((2, 16, 2, 3), generator=gen, dtype=torch.float64))
        c = torch.randn((2, 16, 2, 3), generator=gen, dtype=torch.float64)
        with torch.no_grad():
            delta, h1, c1 = model(x, h, c)
            x3 = model.down2(model.down1(model.inc(x)))
            g = torch.nn.functional.conv2d(torch.cat([x3, h], 1), model.conv_gates.weight, model.conv_gates.bias,
                                           padding=1)
            sig = lambda t: 1 / (1 + torch.exp(-t))  # noqa: E731
            f_, i_, o_, g_ = g[:, :16], g[:, 16:32], g[:, 32:48], g[:, 48:]
            want_c = sig(f_) * c + sig(i_) * torch.tanh(g_)
            want_h = sig(o_) * torch.tanh(want_c)
            b = model.bot(want_h)
            u = model.conv_up1(torch.cat([model.up1(b), model.down1(model.inc(x))], 1))
            want_delta = model.outc(model.conv_up2(torch.cat([model.up2(u), model.inc(x)], 1)))
        for got, want in ((c1, want_c), (h1, want_h), (delta, want_delta)):
            self.assertEqual(got.shape, want.shape)
            self.assertLess((got - want).abs().max().item(), 1e-12)
        # The memory changes delta by far more than any tolerance of the goldens (1e-4).
        with torch.no_grad():
            d0 = model(x, torch.zeros_like(h), torch.zeros_like(c))[0]
        self.assertGreater((d0 - delta).abs().max().item(), 1e-2)

    def test_rmsnorm_follows_atheria_s_formula_and_its_weight_is_drawn(self):
        norm = RMSNorm2d(3)
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
        want = x / torch.sqrt((x ** 2).mean(dim=(2, 3), keepdim=True) + 1e-6) * torch.tensor([0.5, 1.0, 2.0],
                                                                                            dtype=torch.float64).view(1, 3, 1, 1)
        self.assertLess((norm.double()(x) - want).abs().max().item(), 1e-12)
        self.assertEqual(norm.eps, 1e-6)
        model = init_weights(build_model("unet_unitary_rmsnorm", 2, 8), "unet_unitary_rmsnorm", 3)
        weights = torch.cat([m.weight for m in model.modules() if isinstance(m, RMSNorm2d)])
        self.assertGreater(weights.std().item(), 0.05)
        self.assertLess((weights.mean() - 1).abs().item(), 0.05)

    def test_recurrent_package_files_take_and_return_the_memory(self):
        import onnx
        import onnxruntime as ort
        case = FIXTURES / "golden" / "unet_convlstm_d2_h8"
        fwd = load_file(str(case / "forward.safetensors"))
        self.assertEqual(sorted(fwd), ["c_state", "c_state_next", "h_state", "h_state_next", "x", "y"])
        self.assertEqual(fwd["h_state"].shape, (2, 32, fwd["x"].shape[2] // 4, fwd["x"].shape[3] // 4))
        self.assertGreater(np.abs(fwd["c_state"]).min(), 0.0)
        ts = torch.jit.load(str(case / "model.pt"))
        args = [torch.from_numpy(fwd[k]) for k in ("x", "h_state", "c_state")]
        with torch.no_grad():
            out = ts(*args)
        self.assertIsInstance(out, tuple)
        for got, k in zip(out, ("y", "h_state_next", "c_state_next")):
            np.testing.assert_allclose(got.numpy(), fwd[k], atol=1e-5, err_msg=k)
        proto = onnx.load(str(case / "model.onnx"))
        self.assertEqual([i.name for i in proto.graph.input], ["x", "h_state", "c_state"])
        self.assertEqual([o.name for o in proto.graph.output], ["delta", "h_state_next", "c_state_next"])
        sess = ort.InferenceSession(str(case / "model.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(None, {k: fwd[k] for k in ("x", "h_state", "c_state")})
        for g, k in zip(got, ("y", "h_state_next", "c_state_next")):
            np.testing.assert_allclose(g, fwd[k], atol=1e-4, err_msg=k)
        spec = json.loads((case / "model.json").read_text())
        self.assertEqual(spec["memory"], memory_spec("unet_convlstm", 8))
        self.assertEqual(spec["update"], "additive")

    def test_checkpoints_of_both_laws_convert_with_wrapper_prefixes(self):
        for arch in ("unet_convlstm", "unet_unitary_rmsnorm"):
            model, _, _ = make_model(arch, 2, 4, seed=9)
            sd = model.state_dict()
            for prefix in ("_orig_mod.", "module."):
                with self.subTest(arch=arch, prefix=prefix), tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "ckpt.pth"
                    torch.save({"model_state_dict": {prefix + k: v for k, v in sd.items()}, "episode": 3}, path)
                    got, d, h = model_from_checkpoint(arch, path)
                    self.assertEqual((d, h), (2, 4))
                    for k, v in got.state_dict().items():
                        self.assertTrue(torch.equal(v, sd[k]), k)
        # A U-Net checkpoint is not a ConvLSTM one: the missing gates are named.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "unet.pth"
            torch.save(make_model("unet", 2, 4, seed=1)[0].state_dict(), path)
            with self.assertRaisesRegex(ExportError, "missing keys: conv_gates.weight, conv_gates.bias"):
                model_from_checkpoint("unet_convlstm", path)


class AtheriaExperimentFixtureTest(unittest.TestCase):
    """tests/fixtures/atheria_output, written by make_experiment_fixture.py as Atheria's trainer leaves a run."""

    out = FIXTURES / "atheria_output"

    @classmethod
    def setUpClass(cls):
        cls.case = json.loads(next((cls.out / "expected").iterdir()).joinpath("case.json").read_text())
        cls.name = cls.case["experiment"]

    def test_config_has_atheria_s_keys_and_types(self):
        cfg = json.loads((self.out / "experiments" / self.name / "config.json").read_text())
        self.assertEqual(cfg["MODEL_ARCHITECTURE"], "UNET_CONVLSTM")
        self.assertEqual(cfg["MODEL_PARAMS"], {"d_state": 2, "hidden_channels": 2})
        self.assertIsInstance(cfg["GAMMA_DECAY"], float)
        self.assertEqual(cfg["GAMMA_DECAY"], self.case["gamma"])
        self.assertIsInstance(cfg["GRID_SIZE_TRAINING"], int)
        self.assertIs(cfg["CONTINUE_TRAINING"], False)
        self.assertEqual(cfg["EXPERIMENT_NAME"], self.name)
        self.assertEqual(cfg["TRAINER_VERSION"], "v4")
        # Atheria writes json.dump(indent=4), keys in insertion order.
        text = (self.out / "experiments" / self.name / "config.json").read_text()
        self.assertEqual(text, json.dumps(cfg, indent=4))
        self.assertEqual(list(cfg)[:3], ["EXPERIMENT_NAME", "MODEL_ARCHITECTURE", "LR_RATE_M"])

    def test_the_pick_is_atheria_s_and_no_simpler_rule_gives_it(self):
        from make_experiment_fixture import atheria_pick
        ckpt_dir = self.out / "training_checkpoints" / self.name
        names = sorted(f.name for f in ckpt_dir.iterdir())
        self.assertEqual(atheria_pick(names), "checkpoint_ep119.pth")
        self.assertEqual(self.case["checkpoint"], f"training_checkpoints/{self.name}/checkpoint_ep119.pth")
        self.assertNotEqual(max(n for n in names if n.endswith(".pth")), "checkpoint_ep119.pth")
        self.assertEqual(atheria_pick(["best_model.pth", "last_checkpoint.pth", "model_ep7.pth", "x_12.pth"]),
                         "x_12.pth")
        self.assertEqual(atheria_pick(["checkpoint_ep3.pth", "snapshot_ep9.pt"]), "checkpoint_ep3.pth")
        sds = {}
        for n in names:
            if n.endswith(".pth"):
                ck = torch.load(ckpt_dir / n, weights_only=True)
                self.assertEqual(sorted(ck), ["combined_metric", "episode", "loss", "metrics", "model_state_dict",
                                              "optimizer_state_dict", "scheduler_state_dict"], n)
                self.assertTrue(all(k.startswith("_orig_mod.") for k in ck["model_state_dict"]), n)
                steps = {float(v["step"]) for v in ck["optimizer_state_dict"]["state"].values()}
                self.assertEqual(len(steps), 1, n)
                self.assertGreaterEqual(steps.pop(), 2.0, n)
                self.assertIn("exp_avg_sq", next(iter(ck["optimizer_state_dict"]["state"].values())))
                sds[n] = ck["model_state_dict"]
        key = "_orig_mod.conv_gates.weight"
        self.assertFalse(torch.equal(sds["best_model.pth"][key], sds["checkpoint_ep119.pth"][key]))
        self.assertFalse(torch.equal(sds["checkpoint_ep99.pth"][key], sds["checkpoint_ep119.pth"][key]))
        self.assertTrue(torch.equal(sds["last_checkpoint.pth"][key], sds["checkpoint_ep119.pth"][key]))
        self.assertLess(sum(f.stat().st_size for f in self.out.rglob("*") if f.is_file()), 1_100_000)

    def test_the_picked_checkpoint_converts_and_runs_to_the_expected_state(self):
        ckpt = self.out / self.case["checkpoint"]
        expected = self.out / "expected" / self.name
        with tempfile.TemporaryDirectory() as tmp:
            r = run_cli(HERE / "export.py", "--arch", "unet_convlstm", "--checkpoint", ckpt, "--out", Path(tmp) / "pkg")
            self.assertEqual(r.returncode, 0, r.stderr)
            spec = json.loads((Path(tmp) / "pkg" / "model.json").read_text())
            self.assertEqual((spec["d_state"], spec["hidden_channels"]), (2, 2))
            out = Path(tmp) / "out.safetensors"
            r = run_cli(HERE / "reference_engine.py", "run", "--model", Path(tmp) / "pkg",
                        "--init", expected / "initial.safetensors", "--steps", self.case["steps"],
                        "--gamma", self.case["gamma"], "--threads", 1, "--save", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            got = read_state(out, spec["memory"])
            want = read_state(expected / "expected.safetensors", spec["memory"])
            self.assertEqual(got.step, self.case["steps"])
            np.testing.assert_allclose(got.psi, want.psi, atol=1e-5)
            for k in ("h_state", "c_state"):
                np.testing.assert_allclose(got.memory[k], want.memory[k], atol=1e-5, err_msg=k)
        for name, diff in self.case["max_abs_diff_if_wrong_checkpoint"].items():
            self.assertGreater(diff, 0.1, name)
        self.assertGreater(self.case["max_abs_diff_if_gamma_0.01"], 1e-3)


class StateFileTest(unittest.TestCase):
    def test_round_trip_with_metadata_and_occupied(self):
        psi = (np.random.default_rng(0).standard_normal((5, 7, 3)) * (1 + 1j)).astype(np.complex64)
        occ = (np.arange(35).reshape(5, 7) % 2).astype(np.uint8)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.safetensors"
            write_state(path, State(psi, step=42, origin_x=-3, origin_y=9, occupied=occ))
            with safe_open(str(path), framework="np") as f:
                self.assertEqual(f.metadata(), {"format": "atheria-state/1", "step": "42",
                                                "origin_x": "-3", "origin_y": "9"})
                self.assertEqual(f.get_tensor("psi_real").dtype, np.float32)
            s = read_state(path)
            np.testing.assert_array_equal(s.psi, psi)
            np.testing.assert_array_equal(s.occupied, occ)
            self.assertEqual((s.step, s.origin_x, s.origin_y), (42, -3, 9))
            bad = Path(tmp) / "bad.safetensors"
            from safetensors.numpy import save_file
            save_file({"psi_real": psi.real.copy()}, str(bad), metadata={"format": "atheria-state/1"})
            with self.assertRaisesRegex(StateFileError, "psi_imag"):
                read_state(bad)

    def test_memory_round_trip_and_checks(self):
        psi = np.ones((8, 12, 2), dtype=np.complex64)
        mem = {"h_state": np.arange(32 * 2 * 3, dtype=np.float32).reshape(32, 2, 3),
               "c_state": -np.ones((32, 2, 3), dtype=np.float32)}
        spec = memory_spec("unet_convlstm", 8)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.safetensors"
            write_state(path, State(psi, step=5, memory=mem))
            s = read_state(path, memory=spec)
            self.assertEqual(sorted(s.memory), ["c_state", "h_state"])
            for k in mem:
                np.testing.assert_array_equal(s.memory[k], mem[k])
            with self.assertRaisesRegex(StateFileError, "unexpected tensors \\['c_state', 'h_state'\\]"):
                read_state(path)
            with self.assertRaisesRegex(StateFileError, "memory `h_state` is float32 \\[32, 2, 3\\], the model "
                                                        "needs f32 \\[16, 2, 3\\]"):
                read_state(path, memory=memory_spec("unet_convlstm", 4))
            # Without memory tensors the memory starts from zeros.
            plain = Path(tmp) / "plain.safetensors"
            write_state(plain, State(psi))
            self.assertIsNone(read_state(plain, memory=spec).memory)


class EngineTest(unittest.TestCase):
    def test_every_cell_has_unit_norm(self):
        for arch in ARCHITECTURES:
            d, h = sizes(arch)
            model = init_weights(build_model(arch, d, h), arch, 3)
            for kind in ("complex_noise", "random"):
                psi0 = initial_state(kind, 8, 12, d, seed=1)
                e = ReferenceEngine(model, psi0, gamma=0.05, unitary=ARCHITECTURES[arch][0] == "unitary")
                psi = e.run(4)
                norms = psi.abs().pow(2).sum(-1).sqrt()
                self.assertLess((norms - 1).abs().max().item(), 1e-5, (arch, kind))
                self.assertGreater((psi - psi0 / psi0.abs().pow(2).sum(-1, keepdim=True).sqrt()).abs().max().item(),
                                   1e-2, f"{arch}: the model changed nothing")

    def test_identity_conv3x3_leaves_normalised_psi_unchanged(self):
        model = init_weights(build_model("conv3x3", 4), "conv3x3", 0, init="identity")
        psi0 = initial_state("random", 9, 13, 4, seed=2)
        psi = ReferenceEngine(model, psi0).run(5)
        self.assertLess((psi - psi0).abs().max().item(), 1e-6)

    def test_initial_states(self):
        psi = initial_state("complex_noise", 4, 6, 3, seed=0)
        self.assertEqual(tuple(psi.shape), (1, 4, 6, 3))
        self.assertTrue(torch.allclose(psi.abs(), torch.ones(1, 4, 6, 3)))
        self.assertLess(psi.angle().abs().max().item(), 1.0)
        self.assertTrue(torch.equal(psi, initial_state("complex_noise", 4, 6, 3, seed=0)))
        self.assertFalse(torch.equal(psi, initial_state("complex_noise", 4, 6, 3, seed=1)))
        r = initial_state("random", 4, 6, 3, seed=0)
        self.assertLess((r.abs().pow(2).sum(-1) - 1).abs().max().item(), 1e-5)
        self.assertEqual(initial_state("zeros", 2, 3, 2).abs().max().item(), 0.0)

    def test_unitary_rule_multiplies_by_psi(self):
        model = build_model("unet_unitary", 1, 4)
        psi = initial_state("zeros", 4, 4, 1)
        with torch.inference_mode():
            self.assertEqual(step(model, psi, 0.0, unitary=True).abs().max().item(), 0.0)

    def test_golden_fixtures_are_reproduced_by_the_cli(self):
        for case_dir in sorted((FIXTURES / "golden").iterdir()):
            with self.subTest(case=case_dir.name), tempfile.TemporaryDirectory() as tmp:
                case = json.loads((case_dir / "case.json").read_text())
                memory = json.loads((case_dir / "model.json").read_text()).get("memory")
                out = Path(tmp) / "out.safetensors"
                r = run_cli(HERE / "reference_engine.py", "run", "--model", case_dir,
                            "--init", case_dir / "initial.safetensors", "--steps", case["steps"],
                            "--gamma", case["gamma"], "--threads", 1, "--save", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                got, want = read_state(out, memory), read_state(case_dir / "expected.safetensors", memory)
                self.assertEqual(got.psi.shape, (case["height"], case["width"], want.psi.shape[2]))
                self.assertEqual(got.step, want.step)
                np.testing.assert_allclose(got.psi, want.psi, atol=1e-5)
                self.assertEqual(sorted(got.memory or {}), sorted(t["name"] for t in memory or []))
                for k in got.memory or {}:
                    np.testing.assert_allclose(got.memory[k], want.memory[k], atol=1e-5, err_msg=k)
                fwd = load_file(str(case_dir / "forward.safetensors"))
                self.assertEqual(fwd["x"].shape[0], 2)

    def test_recurrent_golden_resumes_from_its_mid_state_and_needs_its_memory(self):
        case_dir = FIXTURES / "golden" / "unet_convlstm_d2_h8"
        case = json.loads((case_dir / "case.json").read_text())
        memory = json.loads((case_dir / "model.json").read_text())["memory"]
        self.assertEqual((case["steps"], case["mid_step"]), (10, 5))
        self.assertIsNone(read_state(case_dir / "initial.safetensors", memory).memory)
        mid = read_state(case_dir / "mid.safetensors", memory)
        self.assertEqual(mid.step, 5)
        self.assertGreater(np.abs(mid.memory["c_state"]).max(), 0.1)
        want = read_state(case_dir / "expected.safetensors", memory)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.safetensors"
            r = run_cli(HERE / "reference_engine.py", "run", "--model", case_dir, "--init", case_dir / "mid.safetensors",
                        "--steps", case["steps"] - case["mid_step"], "--gamma", case["gamma"], "--threads", 1,
                        "--save", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            got = read_state(out, memory)
            self.assertEqual(got.step, 10)
            np.testing.assert_allclose(got.psi, want.psi, atol=1e-5)
            for k in ("h_state", "c_state"):
                np.testing.assert_allclose(got.memory[k], want.memory[k], atol=1e-5, err_msg=k)
            # Resuming without the memory (zeros) lands elsewhere: the memory matters.
            bare = Path(tmp) / "bare.safetensors"
            write_state(bare, State(mid.psi, step=mid.step))
            r = run_cli(HERE / "reference_engine.py", "run", "--model", case_dir, "--init", bare,
                        "--steps", 5, "--gamma", case["gamma"], "--threads", 1, "--save", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertGreater(np.abs(read_state(out, memory).psi - want.psi).max(), 1e-2)
            r = run_cli(HERE / "reference_engine.py", "run", "--engine", "sparse", "--model", case_dir,
                        "--init", case_dir / "mid.safetensors", "--steps", 1, "--save", out)
            self.assertEqual(r.returncode, 1)
            self.assertIn("recurrent", r.stderr)
            self.assertNotIn("Traceback", r.stderr)

    def test_engine_memory_starts_at_zero_and_follows_the_model(self):
        model = init_weights(build_model("unet_convlstm", 2, 4), "unet_convlstm", 5)
        psi0 = initial_state("random", 8, 12, 2, seed=3)
        e = ReferenceEngine(model, psi0, gamma=0.01)
        self.assertEqual([tuple(t.shape) for t in e.memory], [(1, 16, 2, 3)] * 2)
        self.assertEqual(max(t.abs().max().item() for t in e.memory), 0.0)
        e.run(2)
        # By hand: two steps, feeding each step the memory the model returned.
        psi, h, c = psi0, torch.zeros(1, 16, 2, 3), torch.zeros(1, 16, 2, 3)
        with torch.no_grad():
            for _ in range(2):
                x = torch.cat([psi.real, psi.imag], -1).permute(0, 3, 1, 2)
                delta, h, c = model(x, h, c)
                delta = delta.permute(0, 2, 3, 1)
                psi = psi + torch.complex(delta[..., :2], delta[..., 2:]) - 0.01 * psi
                psi = psi / (psi.abs().pow(2).sum(-1, keepdim=True).sqrt() + 1e-9)
        self.assertLess((e.psi - psi).abs().max().item(), 1e-6)
        self.assertLess((e.memory[0] - h).abs().max().item(), 1e-6)
        self.assertLess((e.memory[1] - c).abs().max().item(), 1e-6)
        with self.assertRaisesRegex(ValueError, "memory `h_state` has shape \\[16, 3, 3\\]"):
            ReferenceEngine(model, psi0, memory={"h_state": np.zeros((16, 3, 3), np.float32)})
        with self.assertRaisesRegex(ValueError, "law without memory"):
            ReferenceEngine(build_model("unet", 2, 4), psi0, memory={"h_state": np.zeros((16, 2, 3))})
        with self.assertRaisesRegex(ValueError, "multiple of 4"):
            SparseWindowEngine(model, psi0[0].numpy(), multiple=4, tile=2)
        # Over a window that moves, the memory keeps the reduced cells (4 x 4 lattice cells) both
        # windows cover and starts the others at zero.
        sparse = SparseWindowEngine(model, psi0[0].numpy(), multiple=4)
        c = model.memory_channels
        sparse.memory, sparse.memory_origin = [torch.full((1, c, 2, 2), 5.0), torch.full((1, c, 2, 2), 7.0)], (0, 0)
        h_new, c_new = sparse._memory_for(4, -4, 16, 12)  # reduced origin (1, -1), 4 x 3
        self.assertEqual(tuple(h_new.shape), (1, c, 3, 4))
        self.assertTrue(bool((h_new[..., 1:3, 0:1] == 5.0).all()) and bool((c_new[..., 1:3, 0:1] == 7.0).all()))
        self.assertEqual(float(h_new.abs().sum()), 5.0 * c * 2)
        sparse.run(2)
        self.assertEqual(sparse.memory_origin, sparse.windows[-1][:2])

    def test_bench_prints_one_json_line(self):
        pkg = FIXTURES / "golden" / "mlp_d2_h8"
        r = run_cli(HERE / "reference_engine.py", "bench", "--model", pkg, "--grid", 16, "--steps", 6,
                    "--warmup", 1, "--threads", 1, "--windows", 3)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stdout)
        res = json.loads(lines[0])
        self.assertEqual((res["engine"], res["threads"], res["grid"]), ("pytorch", 1, 16))
        self.assertEqual(len(res["steps_per_s_windows"]), 3)
        self.assertGreater(res["steps_per_s_median"], 0)
        self.assertIn("load_model", res["startup_s"])

    def test_run_rejects_a_grid_the_unet_cannot_pool(self):
        r = run_cli(HERE / "reference_engine.py", "run", "--model", FIXTURES / "golden" / "unet_d2_h8",
                    "--init", "zeros", "--grid", "10", "--steps", 1, "--save", "/tmp/never.safetensors")
        self.assertEqual(r.returncode, 1)
        self.assertIn("multiples of 4", r.stderr)
        self.assertNotIn("Traceback", r.stderr)


def random_psi(h, w, d, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn((h, w, d), generator=gen), torch.randn((h, w, d), generator=gen))


class SparseWindowTest(unittest.TestCase):
    """The sparse engine's step of a global model, on its window (SparseWindowEngine)."""

    @staticmethod
    def window_of(cells, tile=16, multiple=4):
        """next_window of matter at the absolute (x, y) `cells`."""
        xs, ys = [x for x, _ in cells], [y for _, y in cells]
        x0, y0 = min(xs), min(ys)
        occ = torch.zeros((max(ys) - y0 + 1, max(xs) - x0 + 1), dtype=torch.bool)
        for x, y in cells:
            occ[y - y0, x - x0] = True
        psi = torch.ones((*occ.shape, 1), dtype=torch.complex64)
        return SparseWindowEngine(torch.nn.Identity(), psi, occ, (x0, y0), tile=tile, multiple=multiple).next_window()

    def test_the_window_is_the_matter_tiles_grown_by_one_tile_and_rounded_up(self):
        # (x, y, width, height). Tiles are aligned in absolute coordinates, floor division below zero.
        self.assertEqual(self.window_of([(-1, -1)]), (-32, -32, 48, 48))
        self.assertEqual(self.window_of([(0, 0)]), (-16, -16, 48, 48))
        self.assertEqual(self.window_of([(0, 0), (127, 127)]), (-16, -16, 160, 160))
        self.assertEqual(self.window_of([(-17, 3), (40, 3)], multiple=1), (-48, -16, 112, 48))
        # Tiles of 2 and a multiple of 4: 3 tiles (6 cells) round up to 8, to the right and down.
        self.assertEqual(self.window_of([(5, -3)], tile=2), (2, -6, 8, 8))
        # Cells between the matter do not matter: only the bounding box of the tiles does.
        self.assertEqual(self.window_of([(0, 0), (100, 0)], tile=16, multiple=1),
                         self.window_of([(0, 0), (50, 0), (100, 0)], tile=16, multiple=1))
        empty = SparseWindowEngine(torch.nn.Identity(), torch.ones((2, 2, 1)), torch.zeros((2, 2)))
        self.assertIsNone(empty.next_window())
        empty.run(2)
        self.assertEqual(empty.step_count, 2)
        psi, occ, x, y = empty.matter_box()
        self.assertEqual((tuple(psi.shape), occ.sum().item(), x, y), ((1, 1, 1), 0, 0, 0))

    def test_a_window_step_of_a_local_law_equals_the_dense_step(self):
        # A local law without bias gives vacuum surrounded by vacuum a zero delta, so the window
        # changes nothing: 3 window steps equal 3 dense steps on a larger grid, cell for cell, with
        # matter exactly where the dense result is not zero (the light cone of the matter).
        model, d, _ = make_model("conv3x3", 2, None, seed=7, zero_bias=True)
        psi = random_psi(20, 24, d, seed=1)
        occ = torch.rand((20, 24), generator=torch.Generator().manual_seed(2)) < 0.8
        sparse = SparseWindowEngine(model, psi, occ, origin=(-7, 5), gamma=0.05, multiple=1)
        sparse.run(3)
        # The dense grid: the same cells with a margin of 10 (origin (-17, -5)), vacuum zero.
        grid = torch.zeros((1, 40, 44, d), dtype=torch.complex64)
        grid[0, 10:30, 10:34] = torch.where(occ[..., None], psi, 0)
        dense = ReferenceEngine(model, grid, gamma=0.05).run(3)[0]
        got, mask, x, y = sparse.matter_box()
        self.assertEqual(sparse.windows[0], (-32, -16, 80, 64))
        self.assertGreater(mask.sum().item(), occ.sum().item(), "the light cone adds matter")
        ox, oy = x + 17, y + 5
        self.assertTrue(ox >= 0 and oy >= 0 and ox + got.shape[1] <= 44 and oy + got.shape[0] <= 40)
        expected = torch.zeros_like(dense)
        expected[oy:oy + got.shape[0], ox:ox + got.shape[1]] = got
        torch.testing.assert_close(expected, dense, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(mask.numpy() != 0, dense[oy:oy + got.shape[0], ox:ox + got.shape[1]]
                                      .abs().sum(-1).numpy() > 0)

    def test_a_unet_window_grows_by_a_tile_ring_per_step_when_additive_and_stays_when_unitary(self):
        psi = initial_state("complex_noise", 32, 32, 2, seed=3)[0]
        for arch, windows in (("unet", [(-16, -16, 64, 64), (-32, -32, 96, 96), (-48, -48, 128, 128)]),
                              ("unet_unitary", [(-16, -16, 64, 64)] * 3)):
            with self.subTest(arch=arch):
                model, d, _ = make_model(arch, 2, 8, seed=5)
                unitary = arch == "unet_unitary"
                engine = SparseWindowEngine(model, psi, gamma=0.01, unitary=unitary, multiple=4)
                engine.run(1)
                # One step is the reference step on the window: the matter padded with vacuum.
                field = torch.zeros((1, 64, 64, 2), dtype=torch.complex64)
                field[0, 16:48, 16:48] = psi
                with torch.inference_mode():
                    want = step(model, field, 0.01, unitary)[0]
                    on_grid = step(model, psi[None], 0.01, unitary)[0]
                got, mask, x, y = engine.matter_box()
                at = (slice(y + 16, y + 16 + got.shape[0]), slice(x + 16, x + 16 + got.shape[1]))
                torch.testing.assert_close(got, torch.where(mask[..., None] != 0, want[at], 0), rtol=0, atol=0)
                # ... which is not the step on the 32 x 32 grid: a global law sees its window.
                self.assertGreater((want[16:48, 16:48] - on_grid).abs().max().item(), 1e-3)
                # A complex128 start with a float64 model runs in float64, on the same cells.
                exact = SparseWindowEngine(copy.deepcopy(model).double(), psi.to(torch.complex128), gamma=0.01,
                                           unitary=unitary, multiple=4)
                exact.run(1)
                psi64, mask64, x64, y64 = exact.matter_box()
                self.assertEqual((psi64.dtype, x64, y64), (torch.complex128, x, y))
                torch.testing.assert_close(mask64, mask, rtol=0, atol=0)
                self.assertLess((psi64 - got.to(torch.complex128)).abs().max().item(), 1e-4)
                engine.run(2)
                self.assertEqual(engine.windows, windows)
                if unitary:  # delta * psi is zero on vacuum: the matter stays where it was
                    self.assertEqual((x, y, tuple(mask.shape), mask.sum().item()), (0, 0, (32, 32), 32 * 32))

    def test_run_engine_sparse_saves_the_matter_box_like_the_cli(self):
        pkg = FIXTURES / "golden" / "unet_d2_h8"
        model, d, _ = make_model("unet", 2, 8, seed=15)  # the golden package's law
        psi = random_psi(12, 10, 2, seed=4).numpy()
        occ = np.ones((12, 10), dtype=np.uint8)
        occ[3:6, 2:8] = 0
        with tempfile.TemporaryDirectory() as tmp:
            start, out = Path(tmp) / "start.safetensors", Path(tmp) / "out.safetensors"
            write_state(start, State(psi, step=5, origin_x=-20, origin_y=7, occupied=occ))
            r = run_cli(HERE / "reference_engine.py", "run", "--engine", "sparse", "--model", pkg, "--init", start,
                        "--steps", 2, "--gamma", 0.05, "--threads", 1, "--save", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            got = read_state(out)
            engine = SparseWindowEngine(model, psi, occ, (-20, 7), gamma=0.05, multiple=4, step_count=5)
            engine.run(2)
            want, mask, x, y = engine.matter_box()
            self.assertEqual((got.step, got.origin_x, got.origin_y), (7, x, y))
            np.testing.assert_array_equal(got.occupied, mask.numpy())
            # 1e-4: the CLI's torch runs on 1 thread, this process on torch's default.
            np.testing.assert_allclose(got.psi, want.numpy(), rtol=0, atol=1e-4)
            self.assertEqual(engine.windows[0], (-48, -16, 64, 64))
            for args, message in ((["--vacuum", "harmonic:0.1"], "only the zero vacuum"),
                                  (["--tile", 12], "power of two"),
                                  (["--threshold", -1], "--threshold"),
                                  (["--init", "complex_noise", "--grid", 8], "--init STATE_FILE"),
                                  (["--model", FIXTURES / "golden" / "mlp_d2_h8"], "local model")):
                with self.subTest(args=args):
                    base = {"--model": pkg, "--init": start}
                    rest = list(args)
                    for flag in ("--model", "--init"):
                        if flag not in rest:
                            rest += [flag, base[flag]]
                    r = run_cli(HERE / "reference_engine.py", "run", "--engine", "sparse", "--steps", 1,
                                "--save", out, *rest)
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertIn(message, r.stderr)
                    self.assertNotIn("Traceback", r.stderr)
            r = run_cli(HERE / "reference_engine.py", "run", "--model", pkg, "--init", start, "--steps", 1,
                        "--threshold", 0.01, "--save", out)
            self.assertEqual(r.returncode, 1)
            self.assertIn("--engine sparse", r.stderr)


class ConvErrorTest(unittest.TestCase):
    """make_conv_error.py: its Winograd matrices are exact and its fixture is what it writes."""

    def test_toom_cook_matrices_compute_the_correlation(self):
        from fractions import Fraction

        from make_conv_error import winograd_matrices

        rng = np.random.default_rng(3)
        for m, points in [(2, [0, 1, -1]), (4, [0, 1, -1, Fraction(1, 2), Fraction(-1, 2)]), (4, [0, 1, -1, 2, -2])]:
            at, g, bt = winograd_matrices([Fraction(p) for p in points], m)
            d, w = rng.standard_normal(m + 2), rng.standard_normal(3)
            want = np.array([d[k : k + 3] @ w for k in range(m)])
            np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), want, rtol=0, atol=1e-12)

    def test_rerun_reproduces_the_committed_fixture(self):
        fixture = HERE.parent / "tests/fixtures/conv_error.json"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "conv_error.json"
            subprocess.run([sys.executable, str(HERE / "make_conv_error.py"), "--out", str(out)], check=True, capture_output=True)
            fresh, committed = json.loads(out.read_text()), json.loads(fixture.read_text())
        for a, b in zip(fresh["cases"], committed["cases"], strict=True):
            self.assertEqual(a.keys(), b.keys())
            for key in a:
                if key.startswith("torch_f32_"):
                    # PyTorch's float32 error depends on the kernels oneDNN picks for this CPU,
                    # not only on the values: the fixture's, from an Intel Xeon with AVX-512,
                    # are 3.9e-7 / 5.3e-8 (max / mean) on conv3x3_d64, and an AMD EPYC with
                    # AVX2 gives 2.0e-6 / 1.3e-7. The fixture keeps the stricter bound; a rerun
                    # must still measure a float32 rounding error of that size, not zero or
                    # a wrong reference's.
                    self.assertGreater(a[key], b[key] / 10, key)
                    self.assertLess(a[key], b[key] * 10, key)
                elif isinstance(a[key], float):
                    # Sums of the same values in float64: only threading may reorder them.
                    self.assertAlmostEqual(a[key], b[key], delta=1e-9 * max(1.0, abs(b[key])), msg=key)
                else:
                    self.assertEqual(a[key], b[key], key)


if __name__ == "__main__":
    unittest.main(verbosity=2)
