"""TorchScript files of Atheria's laws turned into model packages (compat mode).

Atheria's server hands `atheria_core` a TorchScript file traced from one of
its models. `package_for(path)` recognises the architecture from the file's
parameter names and shapes (and, for the two U-Nets, which share their
parameters, from the traced module's class name), writes a model package
(model.json + model.safetensors + the TorchScript file itself) into a cache
directory, atomically, and returns it with the backend that should run it:
candle for a recognised architecture, tch (architecture `custom`, from the
TorchScript file) for anything else.

It needs torch (to read the TorchScript file); the caller of `atheria_core`
has it, since it traced the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

#: Prefixes that wrappers (DataParallel, torch.compile) put before the names.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

#: The U-Net's ConvBlocks, by their path in the module.
_UNET_BLOCKS = ("inc", "down1.1", "down2.1", "bot", "conv_up1", "conv_up2")


class ConversionError(Exception):
    """A TorchScript file that cannot become a model package; one-line message."""


def cache_dir() -> Path:
    """Where converted packages are kept: $ATHERIA_COMPAT_CACHE, else
    $XDG_CACHE_HOME/atheria_native/compat, else ~/.cache/atheria_native/compat."""
    env = os.environ.get("ATHERIA_COMPAT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atheria_native" / "compat"


def _unet_keys() -> set[str]:
    keys = set()
    for b in _UNET_BLOCKS:
        keys |= {f"{b}.conv_block.0.weight", f"{b}.conv_block.3.weight"}
        keys |= {f"{b}.conv_block.{i}.{p}" for i in (1, 4) for p in ("weight", "bias")}
    keys |= {f"{m}.{p}" for m in ("up1", "up2", "outc") for p in ("weight", "bias")}
    return keys


#: Per architecture: the exact parameter names of its state_dict.
_KEYS = {
    "conv3x3": {"conv.weight", "conv.bias"},
    "mlp": {f"net.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")},
    "deep_qca": {"conv_neighbors.weight"} | {f"processing_net.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")},
    "unet": _unet_keys(),
}


def recognise(state: dict, class_name: str) -> tuple[str, int, int | None]:
    """(architecture, d_state, hidden) of a state_dict {name: numpy array};
    raises ConversionError naming what did not fit."""
    names = set(state)
    for arch, keys in _KEYS.items():
        if names != keys:
            continue
        s = {k: v.shape for k, v in state.items()}
        if arch == "conv3x3":
            c = s["conv.weight"][0]
            ok = s["conv.weight"] == (c, c, 3, 3) and c % 2 == 0
            d, h = c // 2, None
        elif arch == "mlp":
            h, c = s["net.0.weight"][:2]
            ok = s["net.4.weight"][:2] == (c, h) and c % 2 == 0
            d = c // 2
        elif arch == "deep_qca":
            c16, h = s["conv_neighbors.weight"][0], s["processing_net.0.weight"][0]
            ok = c16 % 16 == 0 and s["processing_net.4.weight"][0] == c16 // 8
            d = c16 // 16
        else:
            h, c = s["inc.conv_block.0.weight"][:2]
            ok = s["outc.weight"][:2] == (c, h) and c % 2 == 0
            d = c // 2
            if "unitary" in class_name.lower():
                arch = "unet_unitary"
        if not ok:
            raise ConversionError(f"the parameters have {arch}'s names but inconsistent shapes ({s})")
        return arch, int(d), None if h is None else int(h)
    raise ConversionError(
        f"the parameters ({', '.join(sorted(names)[:6])}{', ...' if len(names) > 6 else ''}) "
        "match none of conv3x3, mlp, deep_qca, unet, unet_unitary"
    )


def _model_json(arch: str, d: int, h: int | None, name: str) -> dict:
    radius = {"conv3x3": 1, "mlp": 0, "deep_qca": 1}.get(arch)
    spec = {"format": "atheria-model/1", "name": name, "architecture": arch, "d_state": d}
    if h is not None:
        spec["hidden_channels"] = h
    spec.update(
        update="unitary" if arch == "unet_unitary" else "additive",
        receptive_radius=radius,
        spatial_multiple=4 if arch.startswith("unet") else 1,
        files={"safetensors": "model.safetensors", "torchscript": "model.pt"},
    )
    return spec


def write_safetensors(tensors: dict, path: Path) -> None:
    """Writes {name: float32 numpy array} as a safetensors file (the format
    is small enough to write here, so the caller need not have safetensors)."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keeps the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def _read(path: str):
    """(state_dict as numpy arrays, class name, d_state guess) of a TorchScript file."""
    try:
        import torch
    except ImportError:
        raise ConversionError("reading a TorchScript file needs torch (pip install torch)") from None
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # torch raises RuntimeError, ValueError, ... for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"torch.jit.load cannot read {path}: {first}") from None
    state = {}
    for k, v in module.state_dict().items():
        for p in _WRAPPER_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        state[k] = v.detach().to(torch.float32).cpu().numpy()
    return state, getattr(module, "original_name", "")


def package_for(path: str, available: list[str]) -> tuple[Path, str, int]:
    """(package directory, backend, d_state) for the TorchScript file `path`,
    converted once and cached by the file's SHA-256."""
    p = Path(path)
    if not p.is_file():
        raise ConversionError(f"{path}: no such file")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:32]
    state, class_name = _read(str(p))
    try:
        arch, d, h = recognise(state, class_name)
        backend = "candle" if "candle" in available else None
        if backend is None and "tch" in available:
            backend = "tch"
    except ConversionError as why:
        if "tch" not in available:
            raise ConversionError(
                f"{why}; such a model runs only on the tch backend, which this build lacks "
                "(reinstall with: pip install ./crates/atheria-py --config-settings=build-args=\"--features tch\")"
            ) from None
        arch, h, backend = "custom", None, "tch"
        d = _custom_d_state(state)
    if backend is None:
        raise ConversionError(f"no backend can run {arch}: this build has {available}")
    root = cache_dir()
    target = root / f"{digest}-{arch}"
    if not (target / "model.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            spec = _model_json(arch, d, h, p.stem)
            if arch == "custom":
                spec.pop("hidden_channels", None)
                spec["files"] = {"torchscript": "model.pt"}
            else:
                write_safetensors(state, tmp / "model.safetensors")
            shutil.copyfile(p, tmp / "model.pt")
            (tmp / "model.json").write_text(json.dumps(spec, indent=2))
            try:
                # Atomic: a reader sees the whole package or none; a
                # concurrent converter that won the race leaves its copy.
                os.rename(tmp, target)
            except OSError:
                if not (target / "model.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target, backend, d


def _custom_d_state(state: dict) -> int:
    """d_state of an unknown law: half the input channels of its first
    convolution (the law's input is cat(Re, Im))."""
    for v in state.values():
        if v.ndim == 4 and v.shape[1] % 2 == 0:
            return int(v.shape[1] // 2)
    raise ConversionError("cannot read d_state from the parameters of an unknown architecture")
