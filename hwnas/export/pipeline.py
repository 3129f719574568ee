"""The export pipeline: source -> ONNX (checked, simplified) -> parity -> format exporter -> re-measure -> manifest."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.export.config import ExportConfig
from hwnas.export.manifest import MANIFEST_KIND, MANIFEST_NAME, MANIFEST_SCHEMA, write_manifest
from hwnas.export.parity import ParityResult, check_parity
from hwnas.export.source import ExportSource
from hwnas.fileio import data_dir, sha256_file
from hwnas.onnx_export import OnnxExport, export_onnx, prepare_for_export
from hwnas.registry import Registry
from hwnas.spaces import get_space

REPO_TABLES = data_dir("latency_tables")


@dataclass
class ExportContext:
    """What a format exporter gets: the checked ONNX file, the out folder, config and source."""

    source: ExportSource
    onnx: OnnxExport
    out_dir: Path
    config: ExportConfig
    fp16: bool = False
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, role) to hash into the manifest


@dataclass(frozen=True)
class FormatExporter:
    """One output format: `preflight(fp16)` fails fast (before the ONNX export) on a missing backend
    or bad option; `run(ctx)` writes its files after the checked ONNX exists, returning its manifest section."""

    run: Callable[[ExportContext], dict[str, Any] | None]
    preflight: Callable[[bool], None] = lambda fp16: None


EXPORTERS: Registry[FormatExporter] = Registry("export format")


def _onnx_preflight(fp16: bool) -> None:
    if fp16:
        raise HwnasError("--fp16 applies to --format tensorrt only; ONNX exports stay FP32")


def _tensorrt_preflight(fp16: bool) -> None:
    from hwnas.export.tensorrt import require_tensorrt

    require_tensorrt()


def _tensorrt_format(ctx: ExportContext) -> dict[str, Any] | None:
    from hwnas.export.parity import random_inputs
    from hwnas.export.tensorrt import TrtRunner, build_engine, compare_with_ort, require_tensorrt

    probe = require_tensorrt()
    trt_cfg = ctx.config.tensorrt
    fp16 = ctx.fp16 or trt_cfg.fp16
    engine = build_engine(ctx.onnx.path, ctx.out_dir / ("model.fp16.engine" if fp16 else "model.engine"),
                          fp16=fp16, workspace_mib=trt_cfg.workspace_mib, probe=probe)
    ctx.files.append((engine.path, "tensorrt-engine"))
    if engine.onnx_used != ctx.onnx.path:
        ctx.files.append((engine.onnx_used, "onnx-fp16"))
    parity = compare_with_ort(engine.path, ctx.onnx.path, ctx.onnx.input_shape,
                              atol=trt_cfg.atol_fp16 if fp16 else trt_cfg.atol_fp32,
                              n_inputs=ctx.config.parity.n_inputs, seed=ctx.config.parity.seed, probe=probe)
    x = random_inputs(ctx.onnx.input_shape, 1, ctx.config.parity.seed)[0]
    timing = TrtRunner(engine.path, probe).time(x)
    return {"probe": probe.to_dict(), "engine": engine.to_dict(), "parity": parity, "latency": timing.to_dict()}


EXPORTERS.add("onnx", FormatExporter(run=lambda ctx: None, preflight=_onnx_preflight))
EXPORTERS.add("tensorrt", FormatExporter(run=_tensorrt_format, preflight=_tensorrt_preflight))


def default_table_path(device_name: str, space: str) -> Path:
    """Where the shipped table of a device and space lives: latency_tables/<device>/<space-preset>.json."""
    return REPO_TABLES / device_name / (get_space(space).spec.replace(":", "-") + ".json")


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import hwnas

    out = {"hwnas": hwnas.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    try:
        import onnxscript

        out["onnxscript"] = onnxscript.__version__
    except Exception:  # noqa: BLE001 - optional for the legacy exporter
        pass
    try:
        import onnxsim

        out["onnxsim"] = onnxsim.__version__
    except Exception:  # noqa: BLE001
        pass
    return out


MEASURE_ROUNDS = 3  # the profiling protocol: the lowest median of interleaved rounds


def _latency_section(source: ExportSource, onnx: OnnxExport, device: str | None,
                     table: str | None, strict: bool = False) -> dict[str, Any]:
    """Re-measure the exported file on a device spec (same protocol, options and affinity as the table)
    and compare with the table's prediction, rescaled when the table's drift reference says so. With a
    reference, `quiet_ms` (the median over rounds of the model's ratio to the reference timed just
    before it, x the lowest reference) is what the ratio compares: the latency at the machine's quiet speed."""
    from hwnas.devices import get_profiler, load_device
    from hwnas.latency import load_predictor
    from hwnas.latency.drift import check_drift, has_reference
    from hwnas.latency.drift import reference_ms as measure_reference_ms

    device_name = device or (source.table_device or {}).get("name") or "ort-cpu-1t"
    spec = load_device(device_name)
    predicted, table_sha, table_device, note = source.predicted_ms, source.table_sha256, source.table_device, None
    table_file = Path(table) if table else None
    if table_file is None and predicted is None:
        candidate = Path(source.table_path) if source.table_path else default_table_path(spec.name, source.arch.space)
        table_file = candidate if candidate.is_file() else None
    lut = None
    if table_file is not None:
        lut = load_predictor(table_file)
        lut.check_compatible(space=source.arch.space)
        predicted, table_sha, table_device = lut.predict_ms(source.arch), lut.sha256, lut.device
    elif source.table_path and Path(source.table_path).is_file():
        lut = load_predictor(source.table_path)  # for its drift reference
        if table_sha is not None and lut.sha256 == table_sha:  # the run's own table: its raw prediction,
            predicted = lut.predict_ms(source.arch)  # since the run's value may carry the search's rescale
    if predicted is None:
        note = f"no latency table for {spec.name} and {source.arch.space}: pass --table to get a prediction"
    same = table_device is not None and all(
        table_device.get(k) == v for k, v in spec.identity().items()
    )
    if predicted is not None and not same:
        note = (f"the prediction is for device {(table_device or {}).get('name')!r}, the measurement for "
                f"{spec.name!r}: the ratio compares different devices")
    profiler = get_profiler(spec)
    check_reference = same and lut is not None and predicted is not None and has_reference(lut)
    reference_ms: list[float] = []
    if check_reference:  # quick (< 1 s): --strict refuses before the work
        reference_ms.append(check_drift(lut, profiler, strict=strict).now_ms)
    rounds, ratios = [], []
    for _ in range(MEASURE_ROUNDS):  # the reference timed right before the model, in every round
        ref = measure_reference_ms(profiler) if check_reference else None
        rounds.append(profiler.measure_onnx(onnx.path, tuple(onnx.input_shape[1:])))
        if ref is not None:
            reference_ms.append(ref)
            ratios.append(rounds[-1].value(spec.statistic) / ref)
    m = min(rounds, key=lambda x: x.value(spec.statistic))
    drift, quiet = None, None
    if check_reference:
        check = check_drift(lut, profiler, strict=strict, now_ms=min(reference_ms))
        predicted = predicted * check.factor
        drift = check.to_dict()
        quiet = float(statistics.median(ratios)) * min(reference_ms)  # at the machine's quiet speed, as validate
    return {
        "device": spec.name, "device_fingerprint": profiler.fingerprint(), "table_path": str(table_file) if table_file else source.table_path,
        "table_sha256": table_sha, "table_device": table_device, "same_device": same,
        "predicted_ms": predicted, "measured_ms": m.value(spec.statistic), "statistic": spec.statistic,
        "median_ms": m.median_ms, "p10_ms": m.p10_ms, "p90_ms": m.p90_ms,
        "cv": m.cv, "n": m.n,
        "quiet_ms": quiet,
        "ratio": ((quiet or m.value(spec.statistic)) / predicted) if predicted else None, "note": note,
        "drift": drift, "cpus": list(profiler.cpus), "rounds": MEASURE_ROUNDS,
    }


def _empty_latency(reason: str) -> dict[str, Any]:
    keys = ("device", "device_fingerprint", "table_sha256", "table_device", "predicted_ms", "measured_ms", "ratio")
    return {**dict.fromkeys(keys), "note": reason}


def run_export(
    source: ExportSource,
    out_dir: str | Path,
    fmt: str = "onnx",
    config: ExportConfig | None = None,
    *,
    fp16: bool = False,
    device: str | None = None,
    table: str | None = None,
    measure: bool = True,
    strict: bool = False,
) -> dict[str, Any]:
    """Export `source` into `out_dir` (model.onnx, engines, manifest.json); returns the manifest dict.

    Parity failure is an error (ParityError); nothing is written to the manifest then. `strict` refuses
    a re-measurement when the table's drift reference has moved by more than 5% (LatencyDriftError).
    """
    config = config or ExportConfig()
    exporter = EXPORTERS.get(fmt)  # unknown formats and missing backends fail before any work
    exporter.preflight(fp16)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(source.arch.space)
    batch = 1
    if measure:
        from hwnas.devices import load_device

        batch = load_device(device or (source.table_device or {}).get("name") or "ort-cpu-1t").batch_size
    net = prepare_for_export(source.model)
    start = time.perf_counter()
    onnx = export_onnx(net, (batch, *space.input_shape), out / "model.onnx", opset=config.opset,
                       dynamic_batch=config.dynamic_batch, exporter=config.exporter,  # type: ignore[arg-type]
                       simplify=config.simplify, prepare=False)
    export_s = time.perf_counter() - start
    p = config.parity
    parity: ParityResult = check_parity(
        net, onnx.path, onnx.input_shape, atol=p.atol, n_inputs=p.n_inputs, seed=p.seed,
        batch_sizes=(1, 3) if config.dynamic_batch else (), graph_optimization=p.graph_optimization,
    )
    ctx = ExportContext(source, onnx, out, config, fp16=fp16, files=[(onnx.path, "onnx")])
    fmt_section = exporter.run(ctx)
    latency = _latency_section(source, onnx, device, table, strict) if measure else _empty_latency("--no-measure")
    files = [
        {"path": str(path.relative_to(out)) if path.is_relative_to(out) else str(path), "role": role,
         "sha256": sha256_file(path), "bytes": path.stat().st_size}
        for path, role in ctx.files
    ]
    if source.weights is not None:
        files.append({"path": str(source.weights.resolve()), "role": "weights", "sha256": source.weights_sha256,
                      "bytes": source.weights.stat().st_size})
    onnx_section = onnx.to_dict()
    onnx_section["path"] = "model.onnx"
    onnx_section["export_s"] = round(export_s, 3)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "kind": MANIFEST_KIND,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(),
        "arch": {"space": source.arch.space, "arch": str(source.arch), "id": source.arch.id,
                 "input_shape": list(space.input_shape), "num_classes": space.num_classes},
        "source": source.source_dict(),
        "format": fmt,
        "config": config.to_dict(),
        "onnx": onnx_section,
        "parity": parity.to_dict(),
        "files": files,
        "latency": latency,
        "tensorrt": fmt_section if fmt == "tensorrt" else None,
    }
    write_manifest(out / MANIFEST_NAME, manifest)
    return manifest
