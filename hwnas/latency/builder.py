"""Build a latency table: measure every unique block signature of a space, resumably; fit the calibration."""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
from collections.abc import Callable
from dataclasses import replace
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
                progress: bool = True, profiler: Profiler | None = None, rounds: int = 1,
                on_entry: Callable[[Block, TableEntry], None] | None = None) -> LatencyTable:
    """Measure each block of `space` missing from `out`, saving after every entry (resumable).

    With `rounds` > 1 every block is measured again in later passes over all blocks (seconds apart),
    keeping the round with the lowest median: on a shared machine a busy neighbour slows whole
    seconds by ~30%, and interleaved rounds let every block see a quiet moment.
    """
    spec = load_device(spec)
    space = get_space(space) if isinstance(space, str) else space
    profiler = profiler or get_profiler(spec)
    fingerprint = spec.fingerprint()
    table = open_table(out, spec, space, fingerprint)
    blocks = space_blocks(space)
    table.protocol["rounds"] = max(int(rounds), int(table.protocol.get("rounds", 1)))
    if not Path(out).exists():
        table.save(out)
    from tqdm import tqdm

    for r in range(1, int(rounds) + 1):
        todo = [b for b in blocks if b.key not in table.entries or table.entries[b.key].rounds < r]
        if not todo:
            continue
        desc = f"profile {space.spec} on {spec.name}" + (f" (round {r}/{rounds})" if rounds > 1 else "")
        bar = tqdm(todo, desc=desc, unit="block", disable=not progress, file=sys.stderr)
        for block in bar:
            bar.set_postfix_str(block.key, refresh=False)
            m = profiler.measure_module(space.build_block(block), block.input_shape)
            old = table.entries.get(block.key)
            if old is None or m.median_ms < old.median_ms:
                entry = TableEntry.from_measurement(m, rounds=r)
            else:
                entry = replace(old, rounds=r)
            table.entries[block.key] = entry
            table.provenance["updated_utc"] = _now()
            table.save(out)
            if on_entry is not None:
                on_entry(block, entry)
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


def measure_archs(profiler: Profiler, archs: list[Arch], rounds: int = 1, progress: bool = True,
                  desc: str = "end-to-end") -> list[float]:
    """End-to-end medians of several archs, in interleaved rounds keeping each arch's lowest median."""
    from tqdm import tqdm

    best = [float("inf")] * len(archs)
    for r in range(int(rounds)):
        label = desc + (f" (round {r + 1}/{rounds})" if rounds > 1 else "")
        for i, arch in enumerate(tqdm(archs, desc=label, unit="arch", disable=not progress, file=sys.stderr)):
            best[i] = min(best[i], measure_arch(profiler, arch))
    return best


def fit_calibration(sums_ms: list[float], n_blocks: list[int], measured_ms: list[float],
                    fitted_on: list[str] | None = None) -> Calibration:
    """Least-squares map from block sums to end-to-end latency, the form chosen by leave-one-out error.

    Candidates: scale only; scale + offset; scale + per-block + offset. Offsets may be negative (a
    standalone block carries per-run overhead that vanishes inside a whole network); scale must be > 0.
    """
    s, b, y = (np.asarray(v, dtype=float) for v in (sums_ms, n_blocks, measured_ms))
    n = len(y)
    if n == 0:
        return Calibration()
    ones = np.ones(n)
    forms = {"scale": [s], "scale+offset": [s, ones], "scale+per_block+offset": [s, b, ones]}

    def solve(cols: list[np.ndarray], rows: np.ndarray) -> np.ndarray | None:
        X = np.stack([c[rows] for c in cols], axis=1)
        if np.linalg.matrix_rank(X) < X.shape[1]:
            return None
        coef = np.linalg.lstsq(X, y[rows], rcond=None)[0]
        return coef if coef[0] > 0 else None

    best, best_err = "scale", float("inf")
    for name, cols in forms.items():
        if n < len(cols) + 2:
            continue
        errs = []
        for i in range(n):
            rows = np.arange(n) != i
            coef = solve(cols, rows)
            if coef is None:
                errs = []
                break
            pred = float(sum(c * col[i] for c, col in zip(coef, cols)))
            errs.append(abs(pred - y[i]) / max(y[i], 1e-12))
        if errs and np.mean(errs) < best_err - 1e-9:
            best, best_err = name, float(np.mean(errs))
    coef = solve(forms[best], np.arange(n))
    if coef is None:
        return Calibration(float(np.sum(s * y) / max(np.sum(s * s), 1e-12)), 0.0, 0.0, n, list(fitted_on or []))
    values = dict(zip({"scale": ["scale"], "scale+offset": ["scale", "offset_ms"],
                       "scale+per_block+offset": ["scale", "per_block_ms", "offset_ms"]}[best], coef))
    return Calibration(float(values["scale"]), float(values.get("per_block_ms", 0.0)),
                       float(values.get("offset_ms", 0.0)), n, list(fitted_on or []))


def calibrate(table: LatencyTable, spec: DeviceSpec | str, n: int = 10, seed: int = 0,
              profiler: Profiler | None = None, progress: bool = True, rounds: int = 1) -> LatencyTable:
    """Measure `n` sampled archs end-to-end and store the fitted calibration in the table."""
    spec = load_device(spec)
    profiler = profiler or get_profiler(spec)
    space = get_space(table.space)
    archs = sample_archs(space, n, seed, "calibration")
    sums = [table.sum_ms(a) for a in archs]
    counts = [len(table.blocks(a)) for a in archs]
    measured = measure_archs(profiler, archs, rounds, progress, "calibrate (end-to-end)")
    table.calibration = fit_calibration(sums, counts, measured, [str(a) for a in archs])
    table.provenance["calibrated_utc"] = _now()
    return table
