"""The export pipeline: source -> ONNX (checked, simplified) -> parity -> format exporter (TensorRT, ExecuTorch, LiteRT) -> re-measure -> manifest."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

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
    net: nn.Module | None = None  # the eval-mode network the ONNX file was exported from


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


def _mobile_exporter(name: str) -> FormatExporter:
    """ExecuTorch or LiteRT: the runtime's file from the network, parity in that runtime (see export/mobile.py)."""
    from hwnas.export.mobile import MOBILE_FORMATS, export_mobile

    fmt = MOBILE_FORMATS[name]

    def preflight(fp16: bool) -> None:
        if fp16:
            raise HwnasError(f"--fp16 applies to --format tensorrt only; {name} exports are FP32")
        fmt.require()

    def run(ctx: ExportContext) -> dict[str, Any]:
        assert ctx.net is not None  # run_export always sets it
        path, section = export_mobile(fmt, ctx.net, tuple(ctx.onnx.input_shape), ctx.out_dir,
                                      n_inputs=ctx.config.parity.n_inputs, seed=ctx.config.parity.seed)
        ctx.files.append((path, name))
        return section

    return FormatExporter(run=run, preflight=preflight)


EXPORTERS.add("onnx", FormatExporter(run=lambda ctx: None, preflight=_onnx_preflight))
EXPORTERS.add("tensorrt", FormatExporter(run=_tensorrt_format, preflight=_tensorrt_preflight))
EXPORTERS.add("executorch", _mobile_exporter("executorch"))
EXPORTERS.add("litert", _mobile_exporter("litert"))


def default_device(fmt: str, source: ExportSource) -> str:
    """The device spec an export is re-measured on: the run's table device, or the format's own runtime."""
    from hwnas.export.mobile import MOBILE_FORMATS

    table = source.table_device or {}
    mobile = MOBILE_FORMATS.get(fmt)
    if mobile is None or table.get("runtime") == fmt:
        return table.get("name") or "ort-cpu-1t"
    return mobile.device


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


@dataclass
class _Prediction:
    """The table's prediction for the exported arch and where it came from."""

    predicted: float | None
    table_sha: str | None
    table_device: dict[str, Any] | None
    table_file: Path | None
    lut: Any = None
    note: str | None = None


def _prediction(source: ExportSource, spec: Any, table: str | None) -> _Prediction:
    """The prediction of `--table`, the run's value, or the shipped table of the device and space."""
    from hwnas.latency import load_predictor

    out = _Prediction(source.predicted_ms, source.table_sha256, source.table_device, Path(table) if table else None)
    if out.table_file is None and out.predicted is None:
        candidate = Path(source.table_path) if source.table_path else default_table_path(spec.name, source.arch.space)
        out.table_file = candidate if candidate.is_file() else None
    if out.table_file is not None:
        out.lut = load_predictor(out.table_file)
        out.lut.check_compatible(space=source.arch.space)
        out.predicted, out.table_sha, out.table_device = out.lut.predict_ms(source.arch), out.lut.sha256, out.lut.device
    elif source.table_path and Path(source.table_path).is_file():
        out.lut = load_predictor(source.table_path)  # for its drift reference
        if out.table_sha is not None and out.lut.sha256 == out.table_sha:  # the run's own table: its raw
            out.predicted = out.lut.predict_ms(source.arch)  # prediction (the run's may carry the search's rescale)
    if out.predicted is None:
        out.note = f"no latency table for {spec.name} and {source.arch.space}: pass --table to get a prediction"
    return out


def _timer(profiler: Any, ctx: ExportContext) -> Callable[[], Any]:
    """What the device times: the format's own file in its runtime, the network lowered to the spec's
    runtime, or the ONNX file."""
    from hwnas.devices.profilers import CompiledProfiler

    shape = tuple(ctx.onnx.input_shape[1:])
    if isinstance(profiler, CompiledProfiler):
        own = next((path for path, role in ctx.files if role == profiler.runtime), None)
        if own is not None:
            return lambda: profiler.measure_file(own, shape)
        return lambda: profiler.measure_module(ctx.net, shape, key="hwnas-export")
    return lambda: profiler.measure_onnx(ctx.onnx.path, shape)


def _latency_section(ctx: ExportContext, device: str, table: str | None, strict: bool = False) -> dict[str, Any]:
    """Re-measure the exported file on a device spec (same protocol, options and affinity as the table)
    and compare with the table's prediction, rescaled when the table's drift reference says so. With a
    reference, `quiet_ms` (the median over rounds of the model's ratio to the reference timed just
    before it, x the lowest reference) is what the ratio compares: the latency at the machine's quiet speed."""
    from hwnas.devices import get_profiler, load_device
    from hwnas.latency.drift import check_drift, has_reference
    from hwnas.latency.drift import reference_ms as measure_reference_ms

    spec = load_device(device)
    pred = _prediction(ctx.source, spec, table)
    same = pred.table_device is not None and all(pred.table_device.get(k) == v for k, v in spec.identity().items())
    if pred.predicted is not None and not same:
        pred.note = (f"the prediction is for device {(pred.table_device or {}).get('name')!r}, the measurement "
                     f"for {spec.name!r}: the ratio compares different devices")
    profiler = get_profiler(spec)
    measure = _timer(profiler, ctx)
    check_reference = same and pred.lut is not None and pred.predicted is not None and has_reference(pred.lut)
    reference_ms: list[float] = []
    if check_reference:  # quick (< 1 s): --strict refuses before the work
        reference_ms.append(check_drift(pred.lut, profiler, strict=strict).now_ms)
    rounds, ratios = [], []
    for _ in range(MEASURE_ROUNDS):  # the reference timed right before the model, in every round
        ref = measure_reference_ms(profiler) if check_reference else None
        rounds.append(measure())
        if ref is not None:
            reference_ms.append(ref)
            ratios.append(rounds[-1].value(spec.statistic) / ref)
    m = min(rounds, key=lambda x: x.value(spec.statistic))
    predicted, drift, quiet = pred.predicted, None, None
    if check_reference:
        check = check_drift(pred.lut, profiler, strict=strict, now_ms=min(reference_ms))
        predicted, drift = predicted * check.factor, check.to_dict()
        quiet = float(statistics.median(ratios)) * min(reference_ms)  # at the machine's quiet speed, as validate
    return {
        "device": spec.name, "device_fingerprint": profiler.fingerprint(),
        "table_path": str(pred.table_file) if pred.table_file else ctx.source.table_path,
        "table_sha256": pred.table_sha, "table_device": pred.table_device, "same_device": same,
        "predicted_ms": predicted, "measured_ms": m.value(spec.statistic), "statistic": spec.statistic,
        "median_ms": m.median_ms, "p10_ms": m.p10_ms, "p90_ms": m.p90_ms, "cv": m.cv, "n": m.n,
        "quiet_ms": quiet, "ratio": ((quiet or m.value(spec.statistic)) / predicted) if predicted else None,
        "note": pred.note, "drift": drift, "cpus": list(profiler.cpus), "rounds": MEASURE_ROUNDS,
        "measured_peak_bytes": min((r.measured_peak_bytes for r in rounds if r.measured_peak_bytes is not None),
                                   default=None),
        "memory_source": m.memory_source,
    }


def _empty_latency(reason: str) -> dict[str, Any]:
    keys = ("device", "device_fingerprint", "table_sha256", "table_device", "predicted_ms", "measured_ms", "ratio")
    return {**dict.fromkeys(keys), "note": reason}


def _file_rows(ctx: ExportContext) -> list[dict[str, Any]]:
    out = ctx.out_dir
    files = [
        {"path": str(path.relative_to(out)) if path.is_relative_to(out) else str(path), "role": role,
         "sha256": sha256_file(path), "bytes": path.stat().st_size}
        for path, role in ctx.files
    ]
    source = ctx.source
    if source.weights is not None:
        files.append({"path": str(source.weights.resolve()), "role": "weights", "sha256": source.weights_sha256,
                      "bytes": source.weights.stat().st_size})
    return files


def _manifest(ctx: ExportContext, fmt: str, parity: ParityResult, export_s: float,
              fmt_section: dict[str, Any] | None, latency: dict[str, Any]) -> dict[str, Any]:
    """The manifest (schema 1); a mobile format's section sits under its own name (`executorch`, `litert`)."""
    source, space = ctx.source, get_space(ctx.source.arch.space)
    onnx_section = {**ctx.onnx.to_dict(), "path": "model.onnx", "export_s": round(export_s, 3)}
    versions = _versions()
    if fmt_section and "version" in fmt_section:
        versions[fmt] = fmt_section["version"]
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "kind": MANIFEST_KIND,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions,
        "arch": {"space": source.arch.space, "arch": str(source.arch), "id": source.arch.id,
                 "input_shape": list(space.input_shape), "num_classes": space.num_classes},
        "source": source.source_dict(),
        "format": fmt,
        "config": ctx.config.to_dict(),
        "onnx": onnx_section,
        "parity": parity.to_dict(),
        "files": _file_rows(ctx),
        "latency": latency,
        "tensorrt": fmt_section if fmt == "tensorrt" else None,
    }
    if fmt not in ("onnx", "tensorrt"):
        manifest[fmt] = fmt_section
    return manifest


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
    """Export `source` into `out_dir` (model.onnx, engines or mobile files, manifest.json); returns the manifest.

    Parity failure is an error (ParityError); nothing is written to the manifest then. `strict` refuses
    a re-measurement when the table's drift reference has moved by more than 5% (LatencyDriftError).
    The device defaults to the run's table device (the format's runtime for executorch and litert).
    """
    config = config or ExportConfig()
    exporter = EXPORTERS.get(fmt)  # unknown formats and missing backends fail before any work
    exporter.preflight(fp16)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or default_device(fmt, source)
    if measure:
        from hwnas.devices import load_device

        batch = load_device(device).batch_size
    else:
        batch = 1
    net = prepare_for_export(source.model)
    start = time.perf_counter()
    onnx = export_onnx(net, (batch, *get_space(source.arch.space).input_shape), out / "model.onnx",
                       opset=config.opset, dynamic_batch=config.dynamic_batch, exporter=config.exporter,  # type: ignore[arg-type]
                       simplify=config.simplify, prepare=False)
    export_s = time.perf_counter() - start
    p = config.parity
    parity: ParityResult = check_parity(
        net, onnx.path, onnx.input_shape, atol=p.atol, n_inputs=p.n_inputs, seed=p.seed,
        batch_sizes=(1, 3) if config.dynamic_batch else (), graph_optimization=p.graph_optimization,
    )
    ctx = ExportContext(source, onnx, out, config, fp16=fp16, files=[(onnx.path, "onnx")], net=net)
    fmt_section = exporter.run(ctx)
    latency = _latency_section(ctx, device, table, strict) if measure else _empty_latency("--no-measure")
    manifest = _manifest(ctx, fmt, parity, export_s, fmt_section, latency)
    write_manifest(out / MANIFEST_NAME, manifest)
    return manifest
