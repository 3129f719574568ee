"""Save a trained network with its arch (safetensors + JSON header) and load it back safely.

Checkpoints travel as bytes (a worker returns them with its result, the driver writes them under the
run's folder; a child's parent weights go to the worker the same way), so no worker needs the driver's
disk. Nothing is ever unpickled: safetensors holds tensors and a JSON header only.

Schema 2 stores today's key layout (`hwnas.spaces.state_keys`); schema 1 files (MBConv parts by
position) still load: their keys go through `upgrade_state_dict`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.errors import HwnasError
from hwnas.spaces import Arch, get_space, upgrade_state_dict

CHECKPOINT_SCHEMA = 2  # the key layout v2 of `hwnas.spaces.state_keys`; schema 1 held layout v1
SUPPORTED_SCHEMAS = ("1", "2")


def checkpoint_bytes(arch: Arch, model: nn.Module, meta: dict[str, Any] | None = None) -> bytes:
    """The model's state dict as safetensors bytes; arch, space and `meta` go into its metadata."""
    from safetensors.torch import save

    header = {
        "schema": str(CHECKPOINT_SCHEMA),
        "space": arch.space,
        "arch": str(arch),
        "arch_id": arch.id,
        "meta": json.dumps(meta or {}, default=str),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(state, metadata=header)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file and rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def save_checkpoint(path: str | Path, arch: Arch, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write the model's checkpoint to `path` atomically."""
    return write_bytes_atomic(path, checkpoint_bytes(arch, model, meta))


def _header(data: bytes, what: str) -> dict[str, str]:
    if len(data) < 8:
        raise HwnasError(f"{what} is not a safetensors checkpoint (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise HwnasError(f"{what} is not a valid safetensors checkpoint (header longer than the file)")
    try:
        return json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise HwnasError(f"{what} is not a valid safetensors checkpoint: {exc}") from None


def _read(data: bytes, what: str) -> tuple[str, Arch, dict[str, Any], dict[str, Any]]:
    """(schema, arch, state dict as stored, meta)."""
    from safetensors.torch import load

    header = _header(data, what)
    if header.get("schema") not in SUPPORTED_SCHEMAS or "arch" not in header:
        raise HwnasError(
            f"{what} is not an hwnas checkpoint of schema {' or '.join(SUPPORTED_SCHEMAS)} (header: {sorted(header)})"
        )
    try:
        state = load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise HwnasError(f"{what} is not a valid safetensors checkpoint: {exc}") from exc
    arch = get_space(header["space"]).parse(header["arch"])
    try:
        meta = json.loads(header.get("meta", "{}"))
    except json.JSONDecodeError as exc:
        raise HwnasError(f"{what} has a header `meta` that is not JSON ({exc}); re-save the checkpoint") from None
    return header["schema"], arch, state, meta


def read_checkpoint_bytes(data: bytes, what: str = "checkpoint") -> tuple[Arch, dict[str, Any], dict[str, Any]]:
    """(arch, state dict in today's key layout, meta) of checkpoint bytes."""
    schema, arch, state, meta = _read(data, what)
    if schema != str(CHECKPOINT_SCHEMA):
        state = upgrade_state_dict(get_space(arch.space).build(arch), state)
    return arch, state, meta


def load_checkpoint_bytes(data: bytes, what: str = "checkpoint") -> tuple[Arch, nn.Module, dict[str, Any]]:
    """Rebuild the network of checkpoint bytes and load its weights (eval mode); older schemas are upgraded."""
    schema, arch, state, meta = _read(data, what)
    model = get_space(arch.space).build(arch)
    if schema != str(CHECKPOINT_SCHEMA):
        state = upgrade_state_dict(model, state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        example = (f"{shapes[0]} is {list(state[shapes[0]].shape)}, the network needs "
                   f"{list(expected[shapes[0]].shape)}" if shapes else (missing or unexpected)[0])
        raise HwnasError(
            f"{what} does not match the network of {arch}: {len(missing)} tensors missing, {len(unexpected)} "
            f"unexpected, {len(shapes)} of another shape (e.g. {example}); it holds another arch's weights")
    model.load_state_dict(state, strict=True)
    model.eval()
    return arch, model, meta


def load_checkpoint(path: str | Path) -> tuple[Arch, nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint file and load its weights (no pickle involved)."""
    path = Path(path)
    if not path.is_file():
        raise HwnasError(f"checkpoint {path} does not exist")
    return load_checkpoint_bytes(path.read_bytes(), str(path))
