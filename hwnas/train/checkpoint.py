"""Save a trained network with its arch (safetensors + JSON header) and load it back safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.errors import HwnasError
from hwnas.spaces import Arch, get_space

CHECKPOINT_SCHEMA = 1


def save_checkpoint(path: str | Path, arch: Arch, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write the model's state dict as safetensors; arch, space and `meta` go into its metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "schema": str(CHECKPOINT_SCHEMA),
        "space": arch.space,
        "arch": str(arch),
        "arch_id": arch.id,
        "meta": json.dumps(meta or {}, default=str),
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=header)
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
    return path


def load_checkpoint(path: str | Path) -> tuple[Arch, nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its weights (no pickle involved)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise HwnasError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise HwnasError(f"{path} is not a valid safetensors checkpoint: {exc}") from exc
    if header.get("schema") != str(CHECKPOINT_SCHEMA) or "arch" not in header:
        raise HwnasError(
            f"{path} is not an hwnas checkpoint of schema {CHECKPOINT_SCHEMA} (header: {sorted(header)})"
        )
    space = get_space(header["space"])
    arch = space.parse(header["arch"])
    model = space.build(arch)
    model.load_state_dict(state, strict=True)
    model.eval()
    return arch, model, json.loads(header.get("meta", "{}"))
