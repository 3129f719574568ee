"""Validation: rank and error metrics of predicted vs measured latency, end-to-end checks, scatter plots."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.devices.profilers import Profiler, get_profiler
from hwnas.devices.spec import DeviceSpec, load_device
from hwnas.latency.builder import measure_archs, measure_archs_paired, sample_archs
from hwnas.latency.table import LatencyTable
from hwnas.spaces import get_space


def fidelity_metrics(predicted: Any, measured: Any) -> dict[str, float]:
    """kendall_tau, spearman, mape (%), within_10pct (share with |error| <= 10%), n."""
    from scipy.stats import kendalltau, spearmanr

    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rel = np.abs(p - m) / np.maximum(np.abs(m), 1e-12)
    tau = kendalltau(p, m).statistic if len(p) > 1 else float("nan")
    rho = spearmanr(p, m).statistic if len(p) > 1 else float("nan")
    return {
        "n": int(len(p)),
        "kendall_tau": float(tau),
        "spearman": float(rho),
        "mape": float(100.0 * rel.mean()) if len(p) else float("nan"),
        "within_10pct": float((rel <= 0.10).mean()) if len(p) else float("nan"),
    }


def scatter_plot(predicted: Any, measured: Any, path: str | Path, title: str) -> Path:
    """Predicted vs measured scatter with the y=x and ±10% lines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = float(min(p.min(), m.min())), float(max(p.max(), m.max()))
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.plot(xs, 1.1 * xs, "k--", lw=0.7, label="±10%")
    ax.plot(xs, 0.9 * xs, "k--", lw=0.7)
    ax.scatter(m, p, s=12, alpha=0.7)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def measuring_spec(table: LatencyTable | Any, spec: DeviceSpec | str) -> DeviceSpec:
    """`spec`, checked against the table's device settings, measuring under the table's statistic (the
    median for an old table that records none; the spec's own for a table fitted from a CSV)."""
    spec = load_device(spec)
    table.check_compatible({k: v for k, v in spec.identity().items() if k != "statistic"})
    if isinstance(table, LatencyTable):
        return replace(spec, statistic=table.statistic)
    identity = getattr(table, "device_identity", None)
    return replace(spec, statistic=str(identity.get("statistic", "median"))) if identity else spec


def check_covers(table: LatencyTable | Any, archs: list[Any]) -> None:
    """Refuse before any measurement a table that cannot predict the sampled archs: a space error when
    none of their blocks is in it (its entries are for another space), else the first missing block."""
    from hwnas.latency.table import LatencyTableError, MissingEntryError

    try:
        for arch in archs:
            table.predict_ms(arch)
    except MissingEntryError:
        keys = {b.key for a in archs for b in table.blocks(a)}
        if not keys & set(table.entries):
            raise LatencyTableError(
                f"latency table says space {table.space}, but none of its {len(table.entries)} entries is a "
                f"{table.space} block: it was profiled for another space; validate it with that space's "
                f"table, or build one with `hwnas profile --space {table.space}`") from None
        raise


def calibration_summary(table: LatencyTable | Any) -> dict[str, Any]:
    """A measured table's calibration (form, coefficients, cross-validated MAPE), or a fitted table's line."""
    if not hasattr(table, "sum_ms"):
        return {"form": "fitted", "text": table.describe()}
    cal = table.calibration
    return {"form": cal.form, "scale": cal.scale, "per_block_ms": cal.per_block_ms,
            "offset_ms": cal.offset_ms, "overhead_ms": cal.overhead_ms, "n": cal.n, "cv_mape": cal.cv_mape,
            "candidates": cal.candidates, "text": cal.describe()}


def _measure_end_to_end(table: Any, profiler: Profiler, archs: list, rounds: int, progress: bool, strict: bool,
                        drift: Any) -> tuple[list[float], list[float] | None, Any]:
    """End-to-end latency of `archs`: next to the drift reference when the table has one (at this machine's
    quiet speed; `raw` keeps the plain values), else plainly; with the drift the reference finally showed."""
    from hwnas.latency.drift import check_drift, has_reference

    if not has_reference(table):
        return measure_archs(profiler, archs, rounds, progress, "validate (end-to-end)"), None, drift
    reference_ms: list[float] = [drift.now_ms] if drift.now_ms is not None else []
    raw, ratios, low_ref = measure_archs_paired(profiler, archs, rounds, progress, "validate (end-to-end)")
    reference_ms.append(low_ref)
    # the final factor: the reference's lowest value over the quick check and every pair
    drift = check_drift(table, profiler, strict=strict, now_ms=min(reference_ms))
    return [q * min(reference_ms) for q in ratios], raw, drift


def validate_table(table: LatencyTable | Any, spec: DeviceSpec | str, samples: int, seed: int = 1,
                   profiler: Profiler | None = None, progress: bool = True,
                   plot: str | Path | None = None, rounds: int = 1, strict: bool = False) -> dict[str, Any]:
    """Measure `samples` archs end-to-end and compare with the predictions of a measured or fitted table.

    Archs are measured under the table's statistic (an old table without one: the median). A measured
    table's drift reference is re-measured first: beyond ±5% the predictions are rescaled (reported
    under `drift`), or with `strict` the validation is refused (LatencyDriftError). With a reference,
    every arch is timed right after it and reported at the machine's quiet speed (its ratio to the
    reference x the lowest reference value; `raw_measured_ms` keeps the plain lowest value). How busy the
    machine was: `contention` (`table_contention`: at profiling); `strict` refuses busy (MachineBusyError).
    """
    from hwnas.latency.contention import contention_of, metered, recorded_contention, refuse_if_busy
    from hwnas.latency.drift import check_drift

    spec = measuring_spec(table, spec)
    profiler = metered(profiler or get_profiler(spec))
    archs = sample_archs(get_space(table.space), samples, seed, "validation")
    check_covers(table, archs)
    drift = check_drift(table, profiler, strict=strict)  # quick (< 1 s): --strict refuses before the work
    refuse_if_busy(profiler, "the drift check", strict)
    measured, raw, drift = _measure_end_to_end(table, profiler, archs, rounds, progress, strict, drift)
    refuse_if_busy(profiler, "validation", strict)
    has_sum = hasattr(table, "sum_ms")
    rows = [{"arch": str(a), "predicted_ms": table.predict_ms(a), "measured_ms": m,
             **({"raw_measured_ms": raw[i]} if raw is not None else {}),
             **({"raw_sum_ms": table.sum_ms(a)} if has_sum else {})}
            for i, (a, m) in enumerate(zip(archs, measured))]
    pred = [r["predicted_ms"] for r in rows]
    meas = [r["measured_ms"] for r in rows]
    result: dict[str, Any] = {
        "space": table.space, "device": spec.name, "table_sha256": table.sha256, "seed": seed, "rounds": rounds,
        "cpus": list(profiler.cpus), "statistic": spec.statistic,
        **fidelity_metrics(pred, meas),
        "drift": drift.to_dict(),
        "contention": None if (now := contention_of(profiler)) is None else now.to_dict(),
        "table_contention": None if (old := recorded_contention(table)) is None else old.to_dict(),
        "rows": rows,
    }
    if has_sum:
        result["raw_sum"] = {k: v for k, v in fidelity_metrics([r["raw_sum_ms"] for r in rows], meas).items()
                             if k != "n"}
    result["calibration"] = calibration_summary(table)
    memory = memory_fidelity(table, profiler, archs, progress)
    if memory is not None:
        result["memory"] = memory
    if plot is not None:
        m = result
        title = (f"{table.space} on {spec.name}: tau={m['kendall_tau']:.3f} "
                 f"within10%={m['within_10pct']:.2f} MAPE={m['mape']:.1f}%")
        result["plot"] = str(scatter_plot(pred, meas, plot, title))
    return result


def memory_fidelity(table: LatencyTable | Any, profiler: Profiler, archs: list[Any],
                    progress: bool = True) -> dict[str, Any] | None:
    """Predicted vs end-to-end measured memory figures of `archs` (hwnas.latency.memory.measure_memory:
    the whole network measured as the table's blocks were, under the same `memory_source`), with the
    fidelity metrics; None when the table has no measured memory or the profiler measures none."""
    from tqdm import tqdm

    from hwnas.devices.memory import PROGRAM_SOURCES
    from hwnas.latency.memory import measure_memory

    if not getattr(table, "has_memory", lambda: False)():
        return None
    rows, sources = [], set()
    for arch in tqdm(archs, desc="validate (memory)", unit="arch", disable=not progress):
        measured, source = measure_memory(profiler, arch)
        if measured is None:
            return None
        sources.add(source)
        rows.append({"arch": str(arch), "predicted_bytes": table.predict_peak_bytes(arch), "measured_bytes": measured})
    metrics = fidelity_metrics([r["predicted_bytes"] for r in rows], [r["measured_bytes"] for r in rows])
    source = ",".join(sorted(s for s in sources if s))
    table_source = (getattr(table, "provenance", None) or {}).get("memory", {}).get("source")
    return {**metrics, "model": table.memory.describe(), "memory_source": source,
            "includes": PROGRAM_SOURCES.get(source, ""),
            **({"table_memory_source": table_source} if table_source and table_source != source else {}),
            "rows": rows}
