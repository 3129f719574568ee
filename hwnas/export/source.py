"""What to export: an arch (+ optional weights) or a trial picked from a search run's Pareto front."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.fileio import sha256_file
from hwnas.spaces import Arch, get_space, upgrade_state_dict


@dataclass
class ExportSource:
    """The network to export and where it came from (run/trial/pick, weights, predicted latency)."""

    arch: Arch
    model: nn.Module
    weights: Path | None = None
    weights_sha256: str | None = None
    run: str | None = None
    run_id: str | None = None
    trial: int | None = None
    pick: str | None = None
    predicted_ms: float | None = None
    table_path: str | None = None
    table_sha256: str | None = None
    table_device: dict[str, Any] | None = None
    values: dict[str, float] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.weights is not None

    def source_dict(self) -> dict[str, Any]:
        return {
            "run": self.run, "run_id": self.run_id, "trial": self.trial, "pick": self.pick,
            "weights": str(self.weights) if self.weights else None, "weights_sha256": self.weights_sha256,
            "trained": self.trained, "objective_values": self.values or None,
        }


def load_weights(path: str | Path, arch: Arch) -> nn.Module:
    """The network of `arch` with trained weights from an hwnas safetensors checkpoint, or a
    torch state dict (`.pt`/`.pth`, loaded with `weights_only=True`: never unpickles objects)."""
    path = Path(path)
    if not path.is_file():
        raise HwnasError(f"weights file {path} does not exist; pass the checkpoint the search or `hwnas train` saved")
    space = get_space(arch.space)
    if path.suffix == ".safetensors":
        from hwnas.train.checkpoint import load_checkpoint

        ck_arch, model, _meta = load_checkpoint(path)
        if ck_arch != arch:
            raise HwnasError(
                f"weights {path} hold arch {ck_arch} of {ck_arch.space}, not {arch} of {arch.space}; "
                "pass the matching --arch or drop --arch to use the checkpoint's"
            )
        return model
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError for bad or unsafe files
        raise HwnasError(
            f"{path} is not a loadable state dict ({type(exc).__name__}: {str(exc)[:200]}); "
            "save weights with hwnas.train.checkpoint.save_checkpoint or torch.save(model.state_dict())"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HwnasError(f"{path} does not hold a state dict of tensors; save model.state_dict()")
    model = space.build(arch)
    try:
        model.load_state_dict(upgrade_state_dict(model, state), strict=True)  # older key layouts too
    except RuntimeError as exc:
        raise HwnasError(
            f"weights {path} do not fit arch {arch} of {arch.space}: {str(exc).splitlines()[0]}; "
            "check --space/--arch"
        ) from exc
    return model.eval()


def weights_arch(path: str | Path) -> Arch | None:
    """The arch recorded in an hwnas safetensors checkpoint header (None for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return get_space(header["space"]).parse(header["arch"])
    except Exception:  # noqa: BLE001 - not an hwnas checkpoint: the caller needs --arch then
        return None


def source_from_arch(space: str | None, arch: str | None, weights: str | Path | None = None,
                     seed: int = 0) -> ExportSource:
    """A single arch; without weights the network is freshly initialised (seeded) and marked untrained."""
    if arch is None:
        ck = weights_arch(weights) if weights else None
        if ck is None:
            raise HwnasError("give --arch ARCH (with --space SPACE), or --weights CHECKPOINT.safetensors")
        parsed = ck
    else:
        if space is None:
            raise HwnasError("--arch needs --space SPACE (e.g. mobile, nb201:cifar10); see `hwnas spaces`")
        parsed = get_space(space).parse(arch)
    if weights:
        model = load_weights(weights, parsed)
        return ExportSource(parsed, model, Path(weights), sha256_file(weights))
    torch.manual_seed(seed)
    return ExportSource(parsed, get_space(parsed.space).build(parsed).eval())


def source_from_run(storage_url: str, run_name: str, pick: str | None = None, weights: str | Path | None = None,
                    arch: str | None = None) -> ExportSource:
    """The trial `pick` selects from the run's Pareto front (or the run's trial of `arch`), with its
    saved weights when it has them."""
    from hwnas.export.picks import parse_pick, select_trial
    from hwnas.storage import open_storage

    if (pick is None) == (arch is None):
        raise HwnasError("with --run give exactly one of --pick (e.g. knee) or --arch ARCH")
    parsed_pick = parse_pick(pick) if pick is not None else None  # bad picks fail before storage opens
    journal = _journal_path(storage_url)
    if journal is not None and not journal.is_file():
        raise HwnasError(
            f"no run journal at {journal}; pass --storage with the URL the search of run {run_name!r} used"
        )
    run = open_storage(storage_url).get_run(run_name)
    if parsed_pick is not None:
        trial = select_trial(run, parsed_pick)
    else:
        trial = _trial_of_arch(run, arch)  # type: ignore[arg-type]
    arch = trial.arch
    wpath = weights or trial.weights_path
    if wpath:
        model = load_weights(wpath, arch)
    else:
        model = get_space(arch.space).build(arch).eval()
    table = (run.info.get("latency_table") or {}) if isinstance(run.info, dict) else {}
    return ExportSource(
        arch=arch, model=model, weights=Path(wpath) if wpath else None,
        weights_sha256=sha256_file(wpath) if wpath else None, run=run.name, run_id=run.id,
        trial=trial.number, pick=str(parsed_pick) if parsed_pick else f"arch={trial.arch_str}", predicted_ms=trial.values.get("latency_ms"),
        table_path=table.get("path"), table_sha256=run.table_sha256, table_device=run.device,
        values=dict(trial.values),
    )


def _journal_path(url: str) -> Path | None:
    """The SQLite file of a storage URL (None for in-memory storage); opening a missing one would create it."""
    from hwnas.storage import sqlite_path

    return sqlite_path(url)


def _trial_of_arch(run, text: str):
    """The run's trial of an arch string (parsed in each trial's space), or a clear error."""
    trials = run.trials()
    spaces = sorted({t.space for t in trials})
    for spec in spaces:
        try:
            wanted = get_space(spec).parse(text)
        except HwnasError:
            continue
        for t in trials:
            if t.arch_id == wanted.id:
                if t.status != "COMPLETE":
                    raise HwnasError(f"arch {text} is trial {t.number} of run {run.name} but {t.status}, not COMPLETE")
                return t
    raise HwnasError(
        f"arch {text!r} is not in run {run.name} ({len(trials)} trials in {', '.join(spaces) or 'no space'}); "
        "use --pick, or export it alone with --space/--arch"
    )
