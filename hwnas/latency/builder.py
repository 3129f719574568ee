"""Build a latency table: measure every unique block signature of a space, resumably; fit the calibration."""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import hwnas
from hwnas.devices.profilers import Profiler, get_profiler
from hwnas.devices.spec import DeviceSpec, load_device
from hwnas.devices.timing import Measurement
from hwnas.latency.contention import metered, record_contention
from hwnas.latency.model import FORMS, Calibration, coefficients, fit_columns
from hwnas.latency.table import LatencyTable, LatencyTableError, TableEntry
from hwnas.onnx_export import DEFAULT_OPSET
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
        protocol={"warmup": spec.warmup, "repeats": spec.repeats, "exporter": f"torch.onnx legacy, opset {DEFAULT_OPSET}",
                  "statistic": f"{spec.statistic} of timed runs"},
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


ANCHOR_ROUNDS = 8  # quick reference timings whose lowest sets a new table's reference speed
PAIR_AGREEMENT = 0.05  # the reference before and after a block agree this well: the speed held
PAIR_TRIES = 3


def at_speed(m: Measurement, factor: float) -> Measurement:
    """A measurement's latencies times `factor` (reference speed of the table / reference speed when timed)."""
    return replace(m, median_ms=m.median_ms * factor, p10_ms=m.p10_ms * factor, p90_ms=m.p90_ms * factor,
                   mean_ms=m.mean_ms * factor)


NOISY_SPREAD = 0.5  # (p90 - p10) / median within a round above this: the machine was busy
NOISY_DISAGREEMENT = 0.05  # the two best rounds' medians further apart than this: a busy moment
EXTRA_ROUNDS = 2  # re-measurements of noisy blocks before the table is written with a warning


def noisy_entries(table: LatencyTable, keys: list[str]) -> dict[str, TableEntry]:
    """Entries measured while the machine was loaded: high within-round spread or disagreeing rounds."""
    return {k: e for k in keys if (e := table.entries[k]).spread > NOISY_SPREAD
            or e.disagreement(table.statistic) > NOISY_DISAGREEMENT}


def _stderr(text: str) -> None:
    print(f"hwnas: warning: {text}", file=sys.stderr)


def build_table(spec: DeviceSpec, space: SearchSpace | str, out: str | os.PathLike[str],
                progress: bool = True, profiler: Profiler | None = None, rounds: int = 1,
                on_entry: Callable[[Block, TableEntry], None] | None = None,
                warn: Callable[[str], None] = _stderr, extra_rounds: int = EXTRA_ROUNDS) -> LatencyTable:
    """Measure each block of `space` missing from `out`, saving after every entry (resumable).

    A new table first times the drift reference model (lowest of `ANCHOR_ROUNDS`: the table's
    reference speed). Every block is then timed between two timings of the reference and stored at
    the reference speed (its times x table reference / mean of the two): on a shared machine whole
    seconds run ~25% slow, and a block timed between two equal reference timings saw the same speed
    (they must agree within `PAIR_AGREEMENT`, else the block is timed again, up to `PAIR_TRIES`).
    With `rounds` > 1 every block is measured again in later passes over all blocks (seconds apart),
    keeping the round with the lowest value. Blocks that still look noisy (see `noisy_entries`) are
    measured up to `extra_rounds` more times; those left noisy are reported through `warn` with numbers.
    """
    space = get_space(space) if isinstance(space, str) else space
    profiler = metered(profiler or get_profiler(spec))  # records how busy the machine was (contention.py)
    table = open_table(out, spec, space, spec.fingerprint())
    run = Profiling(spec, space, profiler, table, Path(out), progress, on_entry)
    run.start(rounds)
    blocks = space_blocks(space)
    measured: list[str] = []
    for r in range(1, int(rounds) + 1):
        todo = [b for b in blocks if b.key not in table.entries or table.entries[b.key].rounds < r]
        if todo:
            measured += [b.key for b in todo if b.key not in measured]
            run.measure(todo, r, f"profile {space.spec} on {spec.name}" + (f" (round {r}/{rounds})" if rounds > 1 else ""))
    by_key = {b.key: b for b in blocks}
    noisy = noisy_entries(table, measured)
    for extra in range(int(extra_rounds)):
        if not noisy:
            break
        run.measure([by_key[k] for k in noisy], max(table.entries[k].rounds for k in noisy) + 1,
                    f"re-measure {len(noisy)} noisy blocks ({extra + 1}/{extra_rounds})")
        noisy = noisy_entries(table, list(noisy))
    if measured:
        table.provenance["noise"] = noise_record(noisy, spec.statistic)
        record_contention(table, profiler)
        table.save(out)
    if noisy:
        warn(noise_warning(noisy, len(measured), extra_rounds, spec.statistic))
    return table


@dataclass
class Profiling:
    """One `build_table` call: the table being filled and how its blocks are timed (`measure`)."""

    spec: DeviceSpec
    space: SearchSpace
    profiler: Profiler
    table: LatencyTable
    out: Path
    progress: bool = True
    on_entry: Callable[[Block, TableEntry], None] | None = None
    anchor: float = 0.0  # the table's reference speed: its drift reference's latency

    def start(self, rounds: int) -> None:
        """Record the protocol, time the drift reference of a new table (its reference speed), save it."""
        from hwnas.latency.drift import REFERENCE_MODEL, reference_ms, reference_record

        table = self.table
        table.protocol["rounds"] = max(int(rounds), int(table.protocol.get("rounds", 1)))
        table.protocol["cpus"] = list(self.profiler.cpus)
        table.protocol["paired"] = "each block between two drift-reference timings, stored at the table reference's speed"
        if not table.entries or not table.reference or table.reference.get("model") != REFERENCE_MODEL:
            record = None  # the speed entries are stored at: the reference's lowest of a few quick rounds
            for _ in range(ANCHOR_ROUNDS):
                record = reference_record(reference_ms(self.profiler), record)
            table.reference = record
        self.anchor = float(table.reference["median_ms"])
        if not self.out.exists():
            table.save(self.out)

    def measure(self, todo: list[Block], r: int, desc: str) -> None:
        """The profile loop: time each block of `todo` as round `r`, each between two reference timings, and
        save the table after every entry."""
        from tqdm import tqdm

        from hwnas.latency.drift import reference_ms

        bar = tqdm(todo, desc=desc, unit="block", disable=not self.progress, file=sys.stderr)
        before = reference_ms(self.profiler)
        for block in bar:
            bar.set_postfix_str(block.key, refresh=False)
            module = self.space.build_block(block)
            for _ in range(PAIR_TRIES):  # until the reference reads the same before and after the block
                m = self.profiler.measure_module(module, block.input_shape, key=block.key)
                after = reference_ms(self.profiler)
                steady = abs(after / before - 1.0) <= PAIR_AGREEMENT
                m, before = at_speed(m, 2.0 * self.anchor / (before + after)), after
                if steady:
                    break
            self.record(block, module, m, r)

    def record(self, block: Block, module: Any, m: Measurement, r: int) -> None:
        """Store round `r`'s measurement `m` of `block` (merged with earlier rounds, with its layouts) and save."""
        table = self.table
        old = table.entries.get(block.key)
        entry = TableEntry.from_measurement(m, rounds=r) if old is None else old.merged(m, r, self.spec.statistic)
        if entry.layout is None and (layout := self.profiler.layout(module, block.input_shape, block.key)) is not None:
            entry = replace(entry, layout=layout.text(), boundary_elems=layout.boundary_elems)
        table.entries[block.key] = entry
        if m.memory_source:  # what the entries' memory figures are (hwnas.devices.memory)
            from hwnas.devices.memory import PROGRAM_SOURCES

            table.provenance["memory"] = {"source": m.memory_source, "includes": PROGRAM_SOURCES.get(m.memory_source, "")}
        table.provenance["updated_utc"] = _now()
        table.save(self.out)
        if self.on_entry is not None:
            self.on_entry(block, entry)


def noise_record(noisy: dict[str, TableEntry], statistic: str) -> dict[str, Any]:
    """The table's `provenance["noise"]`: the limits and the blocks still noisy after re-measurement."""
    return {
        "spread_limit": NOISY_SPREAD, "disagreement_limit": NOISY_DISAGREEMENT,
        "noisy_blocks": {k: {"median_ms": round(e.median_ms, 5), "spread": round(e.spread, 3),
                             "disagreement": round(e.disagreement(statistic), 3)}
                         for k, e in noisy.items()},
    }


def noise_warning(noisy: dict[str, TableEntry], measured: int, extra_rounds: int, statistic: str) -> str:
    """The warning about blocks left noisy, with the numbers of the worst five."""
    worst = sorted(noisy.items(), key=lambda kv: -max(kv[1].spread, kv[1].disagreement(statistic)))[:5]
    return (f"{len(noisy)} of {measured} blocks still look noisy after {extra_rounds} re-measurements "
            f"(the machine is loaded): " + "; ".join(
                f"{k}: median {e.median_ms:.4f} ms, (p90-p10)/median {e.spread:.2f}, best rounds "
                f"{e.disagreement(statistic):+.1%} apart" for k, e in worst)
            + f". Limits: spread {NOISY_SPREAD}, rounds {NOISY_DISAGREEMENT:.0%}; profile again on a quiet "
            "machine for a trustworthy table (re-run resumes; delete the file to start over)")


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
    """End-to-end latency (the spec's statistic) of an arch's whole network (same protocol as the blocks)."""
    space = get_space(arch.space)
    return profiler.measure_module(space.build(arch), space.input_shape, key=f"{arch.space}/{arch}").value(
        profiler.spec.statistic)


def measure_archs(profiler: Profiler, archs: list[Arch], rounds: int = 1, progress: bool = True,
                  desc: str = "end-to-end", each_round: Callable[[], None] | None = None) -> list[float]:
    """End-to-end medians of several archs, in interleaved rounds keeping each arch's lowest median;
    `each_round` runs before every round (e.g. a control measurement under the same conditions)."""
    from tqdm import tqdm

    best = [float("inf")] * len(archs)
    for r in range(int(rounds)):
        if each_round is not None:
            each_round()
        label = desc + (f" (round {r + 1}/{rounds})" if rounds > 1 else "")
        for i, arch in enumerate(tqdm(archs, desc=label, unit="arch", disable=not progress, file=sys.stderr)):
            best[i] = min(best[i], measure_arch(profiler, arch))
    return best


def measure_archs_paired(profiler: Profiler, archs: list[Arch], rounds: int = 1, progress: bool = True,
                         desc: str = "end-to-end") -> tuple[list[float], list[float], float]:
    """Like `measure_archs`, with the drift reference model timed right before every arch: per arch its
    lowest value and the median over rounds of its ratio to the reference timed next to it, and the
    lowest reference value.

    On a shared machine whole seconds run ~25% slow; an arch and the reference timed back to back
    mostly see the same moment, so `ratio x reference` is the arch's latency at the machine's quiet
    speed. The median, not the lowest ratio: a pair that straddles a change of speed gives a ratio
    ~25% off either way, and the lowest ratio would keep exactly those.
    """
    from tqdm import tqdm

    from hwnas.latency.drift import reference_ms

    values: list[list[float]] = [[] for _ in archs]
    ratios: list[list[float]] = [[] for _ in archs]
    low_ref = float("inf")
    for r in range(int(rounds)):
        label = desc + (f" (round {r + 1}/{rounds})" if rounds > 1 else "")
        for i, arch in enumerate(tqdm(archs, desc=label, unit="arch", disable=not progress, file=sys.stderr)):
            ref = reference_ms(profiler)
            values[i].append(measure_arch(profiler, arch))
            ratios[i].append(values[i][-1] / ref)
            low_ref = min(low_ref, ref)
    return [min(v) for v in values], [float(np.median(q)) for q in ratios], low_ref


def fit_calibration(sums_ms: list[float], n_blocks: list[int], measured_ms: list[float],
                    fitted_on: list[str] | None = None, overhead_ms: float | None = None,
                    layout_kelems: list[tuple[float, float]] | None = None) -> Calibration:
    """Map block sums to end-to-end latency; the form (hwnas.latency.model.FORMS) with the lowest
    leave-one-out MAPE wins.

    Candidates: scale; scale + offset; with a measured per-inference overhead o, `overhead`
    (y = a (sum - blocks o) + o), `overhead+offset` and, given each arch's `layout_kelems`
    (LatencyTable.layout_kelems), `layout` (overhead+offset plus one term per layout feature);
    `per_block` (y = a sum + b blocks + c).
    Least squares on relative errors (the quality measures are relative); the scale must be > 0.
    A form is only tried with at least two more archs than it has coefficients.
    """
    s, k, y = (np.asarray(v, dtype=float) for v in (sums_ms, n_blocks, measured_ms))
    n = len(y)
    if n == 0:
        return Calibration()
    w = 1.0 / np.maximum(y, 1e-12)
    lay = np.asarray(layout_kelems, dtype=float).reshape(n, 2) if layout_kelems is not None else None
    features = {"scale": s, "per_block_ms": k, "offset_ms": np.ones_like(s),
                "alone_ms_per_kelem": None if lay is None else lay[:, 0],
                "switch_ms_per_kelem": None if lay is None else lay[:, 1]}
    forms = {name: cols for name, form in FORMS.items() if (cols := fit_columns(form, features, overhead_ms))}

    def solve(cols: list[np.ndarray], fixed: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        X = np.stack([c[rows] for c in cols], axis=1) * w[rows, None]
        if np.linalg.matrix_rank(X) < X.shape[1]:
            return None
        coef = np.linalg.lstsq(X, (y[rows] - fixed[rows]) * w[rows], rcond=None)[0]
        return coef if coef[0] > 0 else None

    scores: dict[str, float] = {}
    for name, (_, cols, fixed) in forms.items():
        if n < len(cols) + 2:
            continue
        errs = []
        for i in range(n):
            coef = solve(cols, fixed, np.arange(n) != i)
            if coef is None:
                break
            pred = float(sum(c * col[i] for c, col in zip(coef, cols)) + fixed[i])
            errs.append(abs(pred - y[i]) / max(y[i], 1e-12))
        if len(errs) == n:
            scores[name] = 100.0 * float(np.mean(errs))
    best = min(scores, key=lambda f: (scores[f], len(forms[f][1]))) if scores else "scale"
    terms, cols, fixed = forms[best]
    coef = solve(cols, fixed, np.arange(n))
    if coef is None:  # degenerate input: plain ratio
        best, terms, coef = "scale", ["scale"], np.array([float(np.sum(s * y) / max(np.sum(s * s), 1e-12))])
    return Calibration(n=n, fitted_on=list(fitted_on or []), form=best, overhead_ms=overhead_ms,
                       cv_mape=scores.get(best), candidates={f: round(v, 3) for f, v in scores.items()},
                       **coefficients(FORMS[best], terms, coef, overhead_ms))


def measure_overhead(profiler: Profiler, input_shape: tuple[int, ...], rounds: int = 1) -> float:
    """Per-inference overhead of the runtime: an identity model's lowest median, same spec and affinity."""
    from torch import nn

    key = f"identity{tuple(input_shape)}"
    return min(profiler.measure_module(nn.Identity(), tuple(input_shape), key=key).value(profiler.spec.statistic)
               for _ in range(max(1, rounds)))


def _extreme_arch(space: SearchSpace, table: LatencyTable, start: Arch, sign: float) -> Arch:
    """Coordinate descent on the block sum from `start` (sign -1: smallest, +1: largest)."""
    genes = list(start.genes)
    best = sign * table.sum_ms(start)
    for _ in range(2):
        for i, valid in enumerate(space.choices):
            for gene in valid:
                trial = list(genes)
                trial[i] = gene
                try:
                    arch = space.make(trial)
                    value = sign * table.sum_ms(arch)
                except Exception:  # noqa: BLE001 - an invalid combination or an unmeasured block
                    continue
                if value > best:
                    genes, best = trial, value
    return space.make(genes)


def calibration_archs(table: LatencyTable, space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """`n` archs spread over the latency range: the smallest and largest block sums that coordinate
    descent finds, and quantiles of the block sum over a large seeded sample in between."""
    pool = sample_archs(space, max(25 * n, 200), seed, "calibration")
    pool.sort(key=table.sum_ms)
    chosen: dict[str, Arch] = {}
    if n >= 4:
        for arch in (_extreme_arch(space, table, pool[0], -1.0), _extreme_arch(space, table, pool[-1], 1.0)):
            chosen.setdefault(arch.id, arch)
    for i in np.linspace(0, len(pool) - 1, max(n, 1)).round().astype(int):
        if len(chosen) >= n:
            break
        chosen.setdefault(pool[int(i)].id, pool[int(i)])
    for arch in pool:  # duplicates among the quantiles: fill up
        if len(chosen) >= n:
            break
        chosen.setdefault(arch.id, arch)
    return sorted(chosen.values(), key=table.sum_ms)


def calibrate(table: LatencyTable, spec: DeviceSpec | str, n: int = 20, seed: int = 0,
              profiler: Profiler | None = None, progress: bool = True, rounds: int = 1) -> LatencyTable:
    """Measure the runtime overhead and `n` archs spread over the latency range end-to-end (each next to
    the drift reference, scaled to the table's reference: the speed its blocks were measured at); store
    the calibration form with the lowest cross-validated error in the table."""
    spec = load_device(spec)
    profiler = profiler or get_profiler(spec)
    space = get_space(table.space)
    archs = calibration_archs(table, space, n, seed)
    sums = [table.sum_ms(a) for a in archs]
    counts = [len(table.blocks(a)) for a in archs]
    overhead = measure_overhead(profiler, space.input_shape, rounds)
    if table.reference:  # each arch at the speed the blocks were measured at (the table's reference)
        _, ratios, _ = measure_archs_paired(profiler, archs, rounds, progress, "calibrate (end-to-end)")
        measured = [q * float(table.reference["median_ms"]) for q in ratios]
    else:
        measured = measure_archs(profiler, archs, rounds, progress, "calibrate (end-to-end)")
    overhead = min(overhead, measure_overhead(profiler, space.input_shape, rounds))  # a second moment, seconds later
    table.calibration = fit_calibration(sums, counts, measured, [str(a) for a in archs], overhead_ms=overhead,
                                        layout_kelems=[table.layout_kelems(a) for a in archs])
    if table.has_memory():  # the memory model, fitted on the same archs (hwnas.latency.memory)
        from hwnas.latency.memory import calibrate_memory

        calibrate_memory(table, profiler, archs, progress)
    table.provenance["calibrated_utc"] = _now()
    return table
