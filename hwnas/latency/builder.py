"""Build a latency table: measure every unique block signature of a space, resumably; fit the calibration."""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import hwnas
from hwnas.devices.profilers import Profiler, get_profiler
from hwnas.devices.spec import DeviceSpec, load_device
from hwnas.latency.table import Calibration, LatencyTable, LatencyTableError, TableEntry
from hwnas.spaces import Arch, Block, SearchSpace, get_space


def space_blocks(space: SearchSpace) -> list[Block]:
    """Unique block signatures over the whole space, in first-seen order.

    Uses `space.all_blocks()` when the space defines it; otherwise the union of the blocks of every
    one-position variation of a few base archs (exact for spaces whose blocks depend on one position,
    like `mobile`, and for `nb201`, whose bases keep every edge live).
    """
    if hasattr(space, "all_blocks"):
        return list(space.all_blocks())
    choices = space.choices
    width = max(len(c) for c in choices)
    bases = []
    for j in range(width):
        try:
            bases.append([c[j % len(c)] for c in choices])
        except Exception:  # noqa: BLE001
            continue
    seen: dict[str, Block] = {}
    for base in bases:
        for i, valid in enumerate(choices):
            for gene in valid:
                genes = list(base)
                genes[i] = gene
                try:
                    arch = space.make(genes)
                except Exception:  # noqa: BLE001 - invalid combination in spaces with constraints
                    continue
                for b in space.blocks(arch):
                    seen.setdefault(b.key, b)
    return list(seen.values())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_table(spec: DeviceSpec, space: SearchSpace, fingerprint: dict[str, Any] | None = None) -> LatencyTable:
    return LatencyTable(
        space.spec,
        fingerprint or spec.fingerprint(),
        protocol={"warmup": spec.warmup, "repeats": spec.repeats, "exporter": "torch.onnx legacy, opset 17",
                  "statistic": "median of timed runs"},
        provenance={"created_utc": _now(), "hwnas_version": hwnas.__version__,
                    "command": " ".join(sys.argv) if sys.argv else "", "device_spec": spec.to_dict()},
    )


def open_table(out: str | os.PathLike[str], spec: DeviceSpec, space: SearchSpace,
               fingerprint: dict[str, Any]) -> LatencyTable:
    """Load `out` to resume it (refusing another device/space/schema/CPU), or start a new table."""
    path = Path(out)
    if not path.exists():
        return new_table(spec, space, fingerprint)
    table = LatencyTable.load(path)
    table.check_compatible(spec.identity(), space.spec)
    old_cpu = table.device.get("host", {}).get("cpu_model")
    new_cpu = fingerprint.get("host", {}).get("cpu_model")
    if old_cpu and new_cpu and old_cpu != new_cpu:
        raise LatencyTableError(
            f"{path} was measured on CPU {old_cpu!r}, this host is {new_cpu!r}; write to a new --out file"
        )
    return table


def build_table(spec: DeviceSpec | str, space: SearchSpace | str, out: str | os.PathLike[str],
                progress: bool = True, profiler: Profiler | None = None,
                on_entry: Callable[[Block, TableEntry], None] | None = None) -> LatencyTable:
    """Measure each block of `space` missing from `out`, saving after every entry (resumable)."""
    spec = load_device(spec)
    space = get_space(space) if isinstance(space, str) else space
    profiler = profiler or get_profiler(spec)
    fingerprint = spec.fingerprint()
    table = open_table(out, spec, space, fingerprint)
    todo = table.missing(space_blocks(space))
    if todo:
        from tqdm import tqdm

        bar = tqdm(todo, desc=f"profile {space.spec} on {spec.name}", unit="block", disable=not progress,
                   file=sys.stderr)
        for block in bar:
            bar.set_postfix_str(block.key, refresh=False)
            m = profiler.measure_module(space.build_block(block), block.input_shape)
            entry = TableEntry.from_measurement(m)
            table.entries[block.key] = entry
            table.provenance["updated_utc"] = _now()
            table.save(out)
            if on_entry is not None:
                on_entry(block, entry)
    elif not Path(out).exists():
        table.save(out)
    return table


def sample_archs(space: SearchSpace, n: int, seed: int, stream: str) -> list[Arch]:
    """`n` distinct archs from a named, seeded stream (calibration and validation use different streams)."""
    rng = random.Random(f"{stream}-{seed}")
    out: dict[str, Arch] = {}
    tries = 0
    while len(out) < n and tries < 50 * n:
        arch = space.sample(rng)
        out.setdefault(arch.id, arch)
        tries += 1
    return list(out.values())


def measure_arch(profiler: Profiler, arch: Arch) -> float:
    """End-to-end median latency of an arch's whole network (same protocol as the blocks)."""
    space = get_space(arch.space)
    return profiler.measure_module(space.build(arch), space.input_shape).median_ms


def fit_calibration(sums_ms: list[float], n_blocks: list[int], measured_ms: list[float],
                    fitted_on: list[str] | None = None) -> Calibration:
    """Least squares measured ~ scale*sum + per_block*blocks + offset (non-negative terms, ridge-stabilised)."""
    s, b, y = (np.asarray(v, dtype=float) for v in (sums_ms, n_blocks, measured_ms))
    n = len(y)
    if n == 0:
        return Calibration()
    from scipy.optimize import nnls

    # Scale columns so the ridge penalty treats them alike, and shrink towards the identity map.
    cols = [s, b, np.ones(n)] if n >= 4 and np.ptp(b) > 0 else [s, np.ones(n)]
    X = np.stack(cols, axis=1)
    lam = 1e-3 * float(np.mean(y))
    prior = np.zeros(X.shape[1])
    prior[0] = 1.0
    X_aug = np.vstack([X, np.sqrt(lam) * np.eye(X.shape[1])])
    y_aug = np.concatenate([y, np.sqrt(lam) * prior])
    coef, _ = nnls(X_aug, y_aug)
    if len(cols) == 3:
        scale, per_block, offset = coef
    else:
        (scale, offset), per_block = coef, 0.0
    return Calibration(float(scale), float(per_block), float(offset), n, list(fitted_on or []))


def calibrate(table: LatencyTable, spec: DeviceSpec | str, n: int = 10, seed: int = 0,
              profiler: Profiler | None = None, progress: bool = True) -> LatencyTable:
    """Measure `n` sampled archs end-to-end and store the fitted calibration in the table."""
    spec = load_device(spec)
    profiler = profiler or get_profiler(spec)
    space = get_space(table.space)
    archs = sample_archs(space, n, seed, "calibration")
    from tqdm import tqdm

    sums, counts, measured = [], [], []
    for arch in tqdm(archs, desc="calibrate (end-to-end)", unit="arch", disable=not progress, file=sys.stderr):
        sums.append(table.sum_ms(arch))
        counts.append(len(table.blocks(arch)))
        measured.append(measure_arch(profiler, arch))
    table.calibration = fit_calibration(sums, counts, measured, [str(a) for a in archs])
    table.provenance["calibrated_utc"] = _now()
    return table
