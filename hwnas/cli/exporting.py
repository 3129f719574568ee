"""The `export` command: pick a run's winner (or one arch) -> ONNX/TensorRT -> parity -> re-measure -> manifest."""

from __future__ import annotations

import argparse

from hwnas import api
from hwnas.cli.output import add_json_flag, emit
from hwnas.fileio import check_output_path


def cmd_export(args: argparse.Namespace) -> int:
    check_output_path(args.out, "--out", folder=True)
    run = api.open_run(args.run, args.storage) if args.run else None
    manifest = api.export(
        run, args.out, args.pick, args.format, args.recipe, device=args.device, measure=not args.no_measure,
        space=args.space, arch=args.arch, weights=args.weights, seed=args.seed, fp16=args.fp16, table=args.table,
        strict=args.strict, opset=args.opset, exporter=args.exporter,
        dynamic_batch=True if args.dynamic_batch else None, simplify=False if args.no_simplify else None,
    )
    lat, par, onx = manifest["latency"], manifest["parity"], manifest["onnx"]
    summary = {
        "arch": manifest["arch"]["arch"], "space": manifest["arch"]["space"],
        "source": manifest["source"]["run"] or "(single arch)", "pick": manifest["source"]["pick"],
        "trained": manifest["source"]["trained"],
        "onnx": f"{args.out}/model.onnx (opset {onx['opset']}, {onx['exporter']} exporter, {onx['num_nodes']} nodes)",
        "parity_max_abs_diff": f"{par['max_abs_diff']:.3g} (atol {par['atol']:g}, passed)",
        "device": lat["device"],
        "predicted_ms": lat["predicted_ms"], "measured_ms": lat["measured_ms"],
        **({"quiet_ms": lat["quiet_ms"]} if lat.get("quiet_ms") is not None else {}), "ratio": lat["ratio"],
        "manifest": f"{args.out}/manifest.json",
    }
    if lat.get("note"):
        summary["note"] = lat["note"]
    if lat.get("drift"):
        summary["drift"] = lat["drift"]["message"]
    if manifest["tensorrt"]:
        summary["tensorrt_ms"] = manifest["tensorrt"]["latency"]["median_ms"]
    if (mob := manifest.get(args.format)) and args.format in ("executorch", "litert"):
        summary[args.format] = f"{args.out}/{mob['path']} (parity {mob['parity']['max_abs_diff']:.3g}, atol {mob['parity']['atol']:g})"
    emit(manifest if args.json else summary, args.json)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a searched winner or one arch to ONNX/TensorRT with parity check and manifest",
        description="Build the chosen net in eval mode, export ONNX (checked, simplified), verify parity "
        "against PyTorch in ONNX Runtime, re-measure it on a device and write manifest.json.",
    )
    src = p.add_argument_group("what to export")
    src.add_argument("--run", help="search run id or name (or `latest`) in --storage")
    src.add_argument("--pick", help=f"with --run: {api.PICK_FORMS}")
    src.add_argument("--storage", default="sqlite:///runs/hwnas.db", help="run journal URL (default %(default)s)")
    src.add_argument("--space", help="space spec of a single arch, e.g. mobile or nb201:cifar10")
    src.add_argument("--arch", help="arch string (single arch, or a trial of --run)")
    src.add_argument("--weights", help="trained weights: hwnas .safetensors checkpoint or a .pt state dict")
    src.add_argument("--seed", type=int, default=0, help="init seed when exporting without weights")
    p.add_argument("--format", default="onnx", help="onnx, tensorrt, executorch or litert (default %(default)s)")
    p.add_argument("--fp16", action="store_true", help="TensorRT: FP16 engine")
    p.add_argument("--out", required=True, help="output folder (model.onnx, manifest.json, engines)")
    p.add_argument("--recipe", help="export recipe YAML or name in export/ (default: default)")
    p.add_argument("--opset", type=int, help="ONNX opset (recipe default 18)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "legacy"), help="ONNX exporter (default auto)")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (static by default)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    p.add_argument("--device", help="device spec to re-measure on (default: the run's table device or ort-cpu-1t)")
    p.add_argument("--table", help="latency table for the prediction (default: the run's, or the shipped one)")
    p.add_argument("--no-measure", action="store_true", help="skip re-measuring")
    p.add_argument("--strict", action="store_true",
                   help="refuse the re-measurement when the table's drift reference is >5%% off (default: rescale)")
    add_json_flag(p, "print the whole manifest as JSON")
    p.set_defaults(func=cmd_export)
