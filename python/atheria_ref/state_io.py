"""The ``atheria-state/1`` state file.

A safetensors file with ``psi_real`` and ``psi_imag`` (f32 [H, W, D]), an
optional ``occupied`` (u8 [H, W]), and string metadata ``format``, ``step``,
``origin_x``, ``origin_y`` (decimal integers as strings).

A recurrent law's memory is stored beside psi as one f32 tensor per memory
tensor of its model.json, under the same name (``h_state``, ``c_state``),
shape [channels, H / stride, W / stride] (batch 1 dropped). A file without
them starts the memory from zeros, as Atheria does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import json
import struct

from safetensors import safe_open

STATE_FORMAT = "atheria-state/1"


class StateFileError(ValueError):
    """A state file is malformed; the message names the file and the problem."""


@dataclass
class State:
    """A lattice state as numpy arrays (psi is complex64 [H, W, D])."""

    psi: np.ndarray
    step: int = 0
    origin_x: int = 0
    origin_y: int = 0
    occupied: np.ndarray | None = None
    #: A recurrent law's memory: name -> f32 [channels, H / stride, W / stride];
    #: None (or a name left out) means zeros.
    memory: dict | None = None


def write_state(path, state: State) -> None:
    """Writes ``state`` to ``path``."""
    psi = np.asarray(state.psi)
    if psi.ndim != 3:
        raise ValueError(f"psi must be [H, W, D], got shape {psi.shape}")
    tensors = {
        "psi_real": np.ascontiguousarray(psi.real, dtype=np.float32),
        "psi_imag": np.ascontiguousarray(psi.imag, dtype=np.float32),
    }
    if state.occupied is not None:
        occ = np.ascontiguousarray(state.occupied, dtype=np.uint8)
        if occ.shape != psi.shape[:2]:
            raise ValueError(f"occupied must be [H, W] = {psi.shape[:2]}, got {occ.shape}")
        tensors["occupied"] = occ
    for name, t in (state.memory or {}).items():
        if name in ("psi_real", "psi_imag", "occupied"):
            raise ValueError(f"memory tensor name `{name}` is one of the state file's own tensors")
        a = np.ascontiguousarray(np.asarray(t), dtype=np.float32)
        if a.ndim != 3:
            raise ValueError(f"memory `{name}` must be [channels, H', W'], got shape {a.shape}")
        tensors[name] = a
    metadata = {
        "format": STATE_FORMAT,
        "step": str(int(state.step)),
        "origin_x": str(int(state.origin_x)),
        "origin_y": str(int(state.origin_y)),
    }
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}


def serialize(tensors: dict, metadata: dict) -> bytes:
    """safetensors bytes with a fixed key order.

    The safetensors library writes metadata from a hash map, so the same
    state would give different bytes on every run; committed fixtures should
    not change when they are regenerated.
    """
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_state(path, memory=None) -> State:
    """Reads and checks a state file; raises StateFileError with one clear line.

    ``memory``: the model.json ``memory`` list of the law the state is for
    (dicts with ``name``, ``channels``, ``stride``). Tensors of those names
    are read into ``State.memory`` after their shapes are checked; any other
    tensor besides psi and occupied is an error. A listed tensor the file
    lacks is left out of ``State.memory`` (it starts from zeros).
    """
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            tensors = {k: f.get_tensor(k) for k in keys}
    except FileNotFoundError:
        raise StateFileError(f"state file {path}: no such file")
    except Exception as e:  # safetensors raises its own types for bad headers
        raise StateFileError(f"state file {path}: not a readable safetensors file ({e})")
    fmt = meta.get("format")
    if fmt != STATE_FORMAT:
        raise StateFileError(f"state file {path}: metadata format is {fmt!r}, expected {STATE_FORMAT!r}")
    for k in ("psi_real", "psi_imag"):
        if k not in tensors:
            raise StateFileError(f"state file {path}: missing tensor `{k}`")
    re, im = tensors["psi_real"], tensors["psi_imag"]
    if re.dtype != np.float32 or im.dtype != np.float32:
        raise StateFileError(f"state file {path}: psi_real/psi_imag must be f32")
    if re.ndim != 3 or re.shape != im.shape:
        raise StateFileError(
            f"state file {path}: psi_real {re.shape} and psi_imag {im.shape} must both be [H, W, D]"
        )
    occ = tensors.get("occupied")
    if occ is not None and (occ.dtype != np.uint8 or occ.shape != re.shape[:2]):
        raise StateFileError(f"state file {path}: occupied must be u8 [H, W] = {re.shape[:2]}")
    h, w = re.shape[:2]
    mem = {}
    for t in memory or []:
        name, channels, stride = t["name"], int(t["channels"]), int(t["stride"])
        if name not in tensors:
            continue
        a = tensors[name]
        want = (channels, h // stride, w // stride)
        if a.dtype != np.float32 or a.shape != want:
            raise StateFileError(f"state file {path}: memory `{name}` is {a.dtype} {list(a.shape)}, "
                                 f"the model needs f32 {list(want)} for a {h} x {w} grid")
        mem[name] = a
    extra = keys - {"psi_real", "psi_imag", "occupied"} - set(mem)
    if extra:
        hint = "" if memory else " (memory tensors are read only for a law that lists them in model.json)"
        raise StateFileError(f"state file {path}: unexpected tensors {sorted(extra)}{hint}")

    def meta_int(name: str) -> int:
        try:
            return int(meta.get(name, "0"))
        except ValueError:
            raise StateFileError(f"state file {path}: metadata {name}={meta[name]!r} is not an integer")

    psi = (re + 1j * im).astype(np.complex64)
    return State(psi, meta_int("step"), meta_int("origin_x"), meta_int("origin_y"), occ, mem or None)
