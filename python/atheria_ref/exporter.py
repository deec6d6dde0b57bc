"""Writes a model package: model.json, model.safetensors, model.pt, model.onnx.

Every file is checked after it is written: the safetensors names against the
state_dict, and the TorchScript and ONNX files against the PyTorch module at
two different input sizes (so a shape frozen into a trace is caught here, not
in the Rust backends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models import ARCHITECTURES, build_model, init_weights, is_recurrent, memory_spec, spec_for

MODEL_FORMAT = "atheria-model/1"
ONNX_OPSET = 18
#: Largest difference allowed between PyTorch and an exported file.
VERIFY_TOL = 1e-4
#: Prefixes a training script may leave on state_dict keys (DataParallel, torch.compile).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class ExportError(Exception):
    """A user-facing export failure; the message is one line saying what to fix."""


def log(msg: str) -> None:
    """Progress to stderr (stdout stays free for machine-readable output)."""
    print(f"[export] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stage(name: str, quiet: bool = False):
    """Logs a stage with its duration."""
    start = time.perf_counter()
    yield
    if not quiet:
        log(f"{name}: {time.perf_counter() - start:.2f} s")


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(path) -> dict:
    """The state_dict in a torch.save file: a plain state_dict, or one under ``model_state_dict``
    (an Atheria training checkpoint) or ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"checkpoint {path}: cannot load with torch.load(weights_only=True): {first}")
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    elif isinstance(obj, dict) and "state_dict" in obj:
        # Atheria's model_loader.load_weights also accepts this key.
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ExportError(
            f"checkpoint {path}: expected a state_dict (name -> tensor) or a dict with one under "
            f"`model_state_dict`, found {type(obj).__name__}"
            + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else "")
        )
    state = {}
    for k, v in obj.items():
        for p in WRAPPER_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        state[k] = v
    return state


#: Per architecture: (key, dim of its shape that is 2*D or 16*D, divisor) for d_state,
#: and (key, dim) for hidden.
_INFER = {
    "conv3x3": ([("conv.weight", 1, 2)], None),
    "mlp": ([("net.0.weight", 1, 2), ("net.4.weight", 0, 2)], ("net.0.weight", 0)),
    "deep_qca": ([("conv_neighbors.weight", 0, 16), ("processing_net.0.weight", 1, 16)], ("processing_net.0.weight", 0)),
    "unet": ([("inc.conv_block.0.weight", 1, 2), ("outc.weight", 0, 2)], ("inc.conv_block.0.weight", 0)),
}
_INFER["unet_unitary"] = _INFER["unet"]
_INFER["unet_convlstm"] = _INFER["unet"]
_INFER["unet_unitary_rmsnorm"] = _INFER["unet"]


def infer_sizes(arch: str, state: dict) -> tuple[int | None, int | None]:
    """(d_state, hidden) read from a state_dict's shapes, None where they cannot be read."""
    d_keys, h_key = _INFER[arch]
    d_state = None
    for key, dim, div in d_keys:
        t = state.get(key)
        if t is not None and t.dim() > dim and t.shape[dim] % div == 0:
            d_state = t.shape[dim] // div
            break
    hidden = None
    if h_key is not None:
        t = state.get(h_key[0])
        if t is not None and t.dim() > h_key[1]:
            hidden = int(t.shape[h_key[1]])
    return d_state, hidden


def check_state_dict(model: nn.Module, state: dict, origin: str) -> None:
    """Raises one ExportError listing every missing key, unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {list(state[k].shape)} (model wants {list(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {'; '.join(mismatched)}")
        raise ExportError(
            f"{origin} does not fit the reference module: " + " | ".join(parts)
            + " (check --arch, --d-state and --hidden)"
        )


def model_from_checkpoint(arch: str, path, d_state: int | None = None, hidden: int | None = None):
    """The reference module with a checkpoint's weights; returns (model, d_state, hidden)."""
    state = load_checkpoint(path)
    inf_d, inf_h = infer_sizes(arch, state)
    if d_state is not None and inf_d is not None and d_state != inf_d:
        raise ExportError(f"checkpoint {path} has d_state {inf_d} but --d-state is {d_state}")
    if hidden is not None and inf_h is not None and hidden != inf_h:
        raise ExportError(f"checkpoint {path} has hidden {inf_h} but --hidden is {hidden}")
    d_state = d_state if d_state is not None else inf_d
    hidden = hidden if hidden is not None else inf_h
    if d_state is None:
        wanted = ", ".join(k for k, _, _ in _INFER[arch][0])
        found = ", ".join(list(state)[:4]) + (", ..." if len(state) > 4 else "")
        raise ExportError(f"checkpoint {path}: has none of the {arch} keys {wanted} (it holds {found}); "
                          f"check --arch, or pass --d-state to see every missing key")
    if spec_for(arch)["has_hidden"] and hidden is None:
        raise ExportError(f"checkpoint {path}: cannot read hidden from its shapes for {arch}; pass --hidden")
    model = build_model(arch, d_state, hidden)
    check_state_dict(model, state, f"checkpoint {path}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval(), d_state, hidden


# --------------------------------------------------------------------------- files


def model_json(arch: str, name: str, d_state: int, hidden: int | None) -> dict:
    """The model.json contents."""
    s = spec_for(arch)
    spec = {
        "format": MODEL_FORMAT,
        "name": name,
        "architecture": arch,
        "d_state": d_state,
    }
    if s["has_hidden"]:
        spec["hidden_channels"] = hidden
    spec.update(
        update=s["update"],
        receptive_radius=s["receptive_radius"],
        spatial_multiple=s["spatial_multiple"],
    )
    memory = memory_spec(arch, hidden)
    if memory:
        spec["memory"] = memory
    spec.update(
        files={"safetensors": "model.safetensors", "torchscript": "model.pt", "onnx": "model.onnx"},
    )
    return spec


def write_safetensors(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        names = set(f.keys())
    if names != set(tensors):
        raise ExportError(f"{path}: written names {sorted(names)} differ from the state_dict {sorted(tensors)}")


def sample_inputs(d_state: int, multiple: int) -> list[torch.Tensor]:
    """Two inputs of different batch, height and width (non-square, multiples of ``multiple``)."""
    gen = torch.Generator().manual_seed(1234)
    m = multiple
    return [
        torch.randn((1, 2 * d_state, 3 * m * 2, 2 * m * 2), generator=gen),
        torch.randn((2, 2 * d_state, 2 * m * 2, 5 * m), generator=gen),
    ]


def sample_memory(model: nn.Module, inputs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Nonzero memory for each sample input of a recurrent model (none otherwise), so a file
    that ignored its memory inputs would differ from PyTorch."""
    if not is_recurrent(model):
        return [[] for _ in inputs]
    gen = torch.Generator().manual_seed(4321)
    return [[torch.randn(s, generator=gen) * 0.5 for s in model.memory_shapes(x.shape[0], x.shape[2], x.shape[3])]
            for x in inputs]


def output_names(model: nn.Module) -> list[str]:
    """The outputs of the exported graph: delta, then ``<name>_next`` per memory tensor."""
    return ["delta"] + [f"{n}_next" for n in getattr(model, "MEMORY", ())] if is_recurrent(model) else ["delta"]


#: Largest difference measured by the last verification, per file kind and output
#: (what make_golden and the tests report).
LAST_VERIFY: dict[str, float] = {}


def _compare(what: str, got, want: torch.Tensor, shape, output: str = "delta") -> None:
    got = torch.as_tensor(np.asarray(got))
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"{what} gives {output} of shape {list(got.shape)} for input {list(shape)}, "
                          f"PyTorch {list(want.shape)}")
    err = (got - want).abs().max().item()
    key = f"{what.split()[0]} {output}"
    LAST_VERIFY[key] = max(LAST_VERIFY.get(key, 0.0), err)
    if not err <= VERIFY_TOL:
        raise ExportError(f"{what} differs from PyTorch in {output} by {err:.3g} (> {VERIFY_TOL}) "
                          f"at input {list(shape)}")


def _compare_all(what: str, got, want, shape, names: list[str]) -> None:
    """Compares every output (a tuple for a recurrent model) by name."""
    if len(names) == 1:
        if isinstance(got, (tuple, list)):
            raise ExportError(f"{what} returns {len(got)} outputs for input {list(shape)}, expected only delta")
        _compare(what, got, want, shape)
        return
    if not isinstance(got, (tuple, list)) or len(got) != len(names):
        n = len(got) if isinstance(got, (tuple, list)) else 1
        raise ExportError(f"{what} returns {n} outputs for input {list(shape)}, expected {', '.join(names)}")
    for g, w, n in zip(got, want, names):
        _compare(what, g, w, shape, n)


def write_torchscript(model: nn.Module, path: Path, d_state: int, multiple: int) -> None:
    """Traces the module (no data-dependent control flow in any architecture) and checks the file."""
    inputs = sample_inputs(d_state, multiple)
    memories = sample_memory(model, inputs)
    names = output_names(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (inputs[0], *memories[0]), check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        for x, mem in zip(inputs, memories):
            _compare_all(f"TorchScript {path.name}", loaded(x, *mem), model(x, *mem), x.shape, names)


def _strip_onnx_metadata(proto) -> None:
    # The dynamo exporter records a stack trace per node: a third of the file,
    # useless to a runtime.
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del proto.metadata_props[:]


def write_onnx(model: nn.Module, path: Path, d_state: int, multiple: int) -> None:
    """Exports with the dynamo exporter (the default in torch 2.13), dynamic batch/height/width."""
    import onnx
    import onnxruntime as ort
    from torch.export import Dim

    # torchvision is not a dependency; its "not installed, skipping nms" notes are noise.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    inputs = sample_inputs(d_state, multiple)
    memories = sample_memory(model, inputs)
    mem_names = list(getattr(model, "MEMORY", ())) if is_recurrent(model) else []
    in_names, out_names = ["x"] + mem_names, output_names(model)
    if mem_names:
        # The memory is the field pooled twice: its H and W are the field's / 4,
        # a relation torch.export must be told (derived dims).
        batch, hq, wq = Dim("batch"), Dim("hq"), Dim("wq")
        dynamic = {"x": {0: batch, 2: 4 * hq, 3: 4 * wq}}
        dynamic.update({n: {0: batch, 2: hq, 3: wq} for n in mem_names})
    else:
        dynamic = {"x": {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (inputs[0], *memories[0]),
            None,
            input_names=in_names,
            output_names=out_names,
            dynamic_shapes=dynamic,
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    _strip_onnx_metadata(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path))
    saved = onnx.load(str(path))
    ins = [i.name for i in saved.graph.input]
    outs = [o.name for o in saved.graph.output]
    if ins != in_names or outs != out_names:
        raise ExportError(f"{path}: inputs {ins} and outputs {outs}, expected {in_names} and {out_names}")
    for vi in (*saved.graph.input, *saved.graph.output):
        dims = vi.type.tensor_type.shape.dim
        fixed = [i for i in (0, 2, 3) if dims[i].HasField("dim_value")]
        if fixed:
            raise ExportError(f"{path}: `{vi.name}` has fixed dims {fixed}; the export lost its dynamic axes")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for x, mem in zip(inputs, memories):
            feed = {"x": x.numpy(), **{n: m.numpy() for n, m in zip(mem_names, mem)}}
            got = session.run(out_names, feed)
            want = model(x, *mem)
            _compare_all(f"ONNX {path.name} (onnxruntime)", got if mem_names else got[0], want, x.shape,
                         out_names)


def export_package(model: nn.Module, arch: str, d_state: int, hidden: int | None, out, name: str,
                   quiet: bool = False) -> Path:
    """Writes and verifies a full model package in ``out``; returns its directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    multiple = ARCHITECTURES[arch][2]
    with stage("model.json", quiet):
        spec = model_json(arch, name, d_state, hidden)
        (out / "model.json").write_text(json.dumps(spec, indent=2) + "\n")
    with stage("model.safetensors", quiet):
        write_safetensors(model, out / "model.safetensors")
    with stage("model.pt (TorchScript trace + load + compare at 2 sizes)", quiet):
        write_torchscript(model, out / "model.pt", d_state, multiple)
    with stage(f"model.onnx (opset {ONNX_OPSET}, dynamo exporter + onnxruntime compare at 2 sizes)", quiet):
        write_onnx(model, out / "model.onnx", d_state, multiple)
    return out


def make_model(arch: str, d_state: int | None, hidden: int | None, seed: int | None = None,
               checkpoint=None, init: str = "random", zero_bias: bool = False, last_std: float | None = None):
    """The module to export: from a checkpoint, or seeded weights. Returns (model, d_state, hidden).

    ``last_std``: std of the last layer's random weights (default: the
    architecture's, see ``models.default_last_std``).
    """
    if arch not in ARCHITECTURES:
        raise ExportError(f"unknown architecture `{arch}`: expected one of {', '.join(ARCHITECTURES)}")
    if checkpoint is not None and last_std is not None:
        raise ExportError("--last-std sets random weights: drop it with --checkpoint")
    if checkpoint is not None:
        model, d_state, hidden = model_from_checkpoint(arch, checkpoint, d_state, hidden)
        if zero_bias:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n.endswith("bias") and not isinstance(model.get_submodule(n.rsplit(".", 1)[0]), nn.GroupNorm):
                        p.zero_()
        return model, d_state, hidden
    if d_state is None:
        raise ExportError("--d-state is required without --checkpoint")
    if not spec_for(arch)["has_hidden"]:
        hidden = None
    try:
        model = build_model(arch, d_state, hidden)
        init_weights(model, arch, seed if seed is not None else 0, init=init, zero_bias=zero_bias,
                     last_std=last_std)
    except ValueError as e:
        raise ExportError(str(e))
    return model, d_state, hidden
