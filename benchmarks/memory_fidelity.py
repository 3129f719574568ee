"""Benchmark: predicted vs end-to-end memory figures of the compiled runtimes (issue #18, item 3).

  nice python benchmarks/memory_fidelity.py --runtime executorch --samples 40 --out results.json
  nice python benchmarks/memory_fidelity.py --runtime executorch --samples 10 --compare results.json

Compiles `samples` validation archs of --space (the stream `hwnas validate` samples, seed 1) and every
block they use, reads each program's memory figure (hwnas.devices.memory.ProgramMemory: weights + plan +
workspace, no timing), predicts each arch from its blocks (sum of weights + largest block's activations,
unfitted; plus the leave-one-out errors of the fitted forms) and prints the share within ±10%. For a
look at what the figure leaves out, each arch is also loaded and run once and glibc's heap in use
(mallinfo2) measured before and after (`heap_growth_bytes`). `--compare` re-reads the archs of an
earlier run's JSON (another process) and reports whether the figures repeat.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.latency.builder import sample_archs
from hwnas.latency.memory import fit_memory, memory_features
from hwnas.spaces import get_space


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                              "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_in_use() -> int | None:
    """glibc's heap bytes in use (malloc'd chunks + mmapped chunks), or None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)
    except (OSError, AttributeError):
        return None


def figure(runtime: str, module: Any, shape: tuple[int, ...]) -> tuple[dict[str, int], Any]:
    """(memory figure by part, a loader of the compiled model) of `module` for a per-sample `shape`."""
    batch = (1, *shape)
    if runtime == "onnxruntime":
        from hwnas.devices.ort_runtime import ort_memory
        from hwnas.devices.ort_runtime import make_feed, ort_session
        from hwnas.onnx_export import export_onnx_bytes

        data = export_onnx_bytes(module, batch)
        feed = make_feed(ort_session(data, 1), shape, 1)

        def load() -> Any:
            session = ort_session(data, 1)
            return lambda _x: session.run(None, feed)

        return ort_memory(data, feed).to_dict(), load
    if runtime == "executorch":
        from hwnas.devices.executorch_runtime import PteRunner, lower_to_pte, pte_memory

        data = lower_to_pte(module, batch).data
        return pte_memory(data).to_dict(), lambda: PteRunner(data, 1)
    from hwnas.devices.litert_runtime import TfliteRunner, convert_to_tflite

    data = convert_to_tflite(module, batch)
    return TfliteRunner(data, 1).memory().to_dict(), lambda: TfliteRunner(data, 1)


def heap_growth(load: Any, shape: tuple[int, ...]) -> int | None:
    """Heap in use after loading and running once, minus before (a warm-up load first)."""
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    load()(x)
    before = heap_in_use()
    runner = load()
    runner(x)
    after = heap_in_use()
    del runner
    return None if before is None or after is None else after - before


def total(parts: dict[str, int]) -> int:
    return int(parts["weight_bytes"] + parts["plan_bytes"] + parts["workspace_bytes"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", choices=["executorch", "litert", "onnxruntime"], required=True)
    p.add_argument("--space", default="mobile:mnist")
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="write the JSON here too")
    p.add_argument("--compare", help="an earlier run's JSON: re-read its first --samples archs, compare")
    p.add_argument("--no-heap", action="store_true", help="skip the heap look")
    args = p.parse_args()
    space = get_space(args.space)
    archs = sample_archs(space, args.samples, args.seed, "validation")
    start = time.perf_counter()
    if args.compare:
        old = {r["arch"]: r["measured"] for r in json.loads(Path(args.compare).read_text())["rows"]}
        same = []
        for arch in archs:
            parts, _ = figure(args.runtime, space.build(arch), tuple(space.input_shape))
            same.append({"arch": str(arch), "now": parts, "before": old.get(str(arch)),
                         "identical": parts == old.get(str(arch))})
        print(json.dumps({"runtime": args.runtime, "n": len(same), "identical": sum(r["identical"] for r in same),
                          "rows": same}, indent=1))
        return
    blocks: dict[str, dict[str, int]] = {}
    rows = []
    for i, arch in enumerate(archs):
        for b in space.blocks(arch):
            if b.key not in blocks:
                blocks[b.key], _ = figure(args.runtime, space.build_block(b), tuple(b.input_shape))
        parts, load = figure(args.runtime, space.build(arch), tuple(space.input_shape))
        entries = [blocks[b.key] for b in space.blocks(arch)]
        f = memory_features([total(e) for e in entries], [e["weight_bytes"] for e in entries],
                            [e["graph_activation_bytes"] for e in entries])
        predicted = f["sum_weight_bytes"] + f["max_activation_bytes"]
        row = {"arch": str(arch), "measured": parts, "measured_bytes": total(parts), "predicted_bytes": predicted,
               "ratio": predicted / total(parts), "features": f}
        if not args.no_heap:
            row["heap_growth_bytes"] = heap_growth(load, tuple(space.input_shape))
        rows.append(row)
        print(f"[{i + 1}/{len(archs)} {time.perf_counter() - start:.0f}s] {arch}: measured {total(parts)} "
              f"predicted {predicted:.0f} ratio {row['ratio']:.3f} heap {row.get('heap_growth_bytes')}", flush=True)
    ratios = np.array([r["ratio"] for r in rows])
    fit = fit_memory([r["features"] for r in rows], [r["measured_bytes"] for r in rows])
    heap = [r["measured_bytes"] / r["heap_growth_bytes"] for r in rows if r.get("heap_growth_bytes")]
    result = {
        "runtime": args.runtime, "space": args.space, "samples": len(rows), "blocks": len(blocks),
        "within_10pct": float((np.abs(ratios - 1) <= 0.10).mean()), "mape": float(100 * np.abs(ratios - 1).mean()),
        "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max()),
        "fitted_loo_mape": fit.candidates,
        "within_10pct_without_graph_activations": float(np.mean([
            abs((r["features"]["sum_weight_bytes"] + max(total(blocks[b.key]) - blocks[b.key]["weight_bytes"]
                                                         for b in space.blocks(a))) / r["measured_bytes"] - 1) <= 0.10
            for a, r in zip(archs, rows)])), "fitted_form": fit.describe(),
        "figure_over_heap_growth": None if not heap else {"median": float(np.median(heap)), "min": float(min(heap)),
                                                          "max": float(max(heap))},
        "seconds": round(time.perf_counter() - start, 1), "rows": rows,
    }
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
