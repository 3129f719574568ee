"""Epoch checkpoints of a supernet search: tensors in safetensors, everything else as JSON in its header.

Nothing is pickled: optimizer states are split into tensors (`<prefix>.<param>.<key>`) and a JSON
remainder (param groups, scalar entries); RNG states are uint8 tensors. One file, written atomically,
so a kill -9 leaves either the previous epoch's checkpoint or the new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import HwnasError
from hwnas.spaces import upgrade_state_dict


def _split_optimizer(prefix: str, state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "scalars": {}}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                rest["scalars"][f"{pid}.{key}"] = value
    return tensors, rest


def _join_optimizer(prefix: str, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            pid, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for name, value in rest["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_state(path: Path, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
               generators: dict[str, torch.Generator], meta: dict[str, Any]) -> Path:
    """Write model, optimizers, RNG states and `meta` (JSON-able) to one safetensors file."""
    from safetensors.torch import save

    from hwnas.train.checkpoint import write_bytes_atomic

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_rest = {}
    for name, opt in optimizers.items():
        t, rest = _split_optimizer(f"opt.{name}", opt.state_dict())
        tensors.update(t)
        opt_rest[name] = rest
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    header = {"meta": json.dumps(meta), "optimizers": json.dumps(opt_rest)}
    return write_bytes_atomic(path, save(tensors, metadata=header))


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON `meta` of a checkpoint file, without loading tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})["meta"])
    except Exception as exc:  # a truncated or foreign file
        raise HwnasError(f"{path} is not a supernet checkpoint ({exc}); delete it to start that search again") from None


def load_state(path: Path, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
               generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Restore what `save_state` wrote (in place); returns `meta`."""
    from safetensors.torch import load

    data = path.read_bytes()
    meta = read_meta(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        opt_rest = json.loads(fh.metadata()["optimizers"])
    tensors = load(data)
    weights = upgrade_state_dict(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.load_state_dict(weights, strict=True)
    for name, opt in optimizers.items():
        opt.load_state_dict(_join_optimizer(f"opt.{name}", tensors, opt_rest[name]))
    for name, gen in generators.items():
        gen.set_state(tensors[f"rng.{name}"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta
