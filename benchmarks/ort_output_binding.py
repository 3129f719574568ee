"""ONNX Runtime CPU: outputs bound by device (ORT's arena, what hwnas times on CPU) vs allocated once
(what it does on GPUs); 7 interleaved rounds of 200 timed runs, median of the round medians [min, max] in ms.

    taskset -c 1 python benchmarks/ort_output_binding.py
"""

import statistics

import numpy as np
import onnxruntime as ort
import torch

from hwnas.devices import ort_runtime as R
from hwnas.devices.timing import time_runs
from hwnas.onnx_export import export_onnx_bytes


def by_device(session, feed):
    b = session.io_binding()
    for k, v in feed.items():
        b.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)))
    for o in session.get_outputs():
        b.bind_output(o.name)
    return lambda: session.run_with_iobinding(b)


def once(session, feed):
    b = session.io_binding()
    for k, v in feed.items():
        b.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)))
    kept = R.bind_outputs_once(session, b, session.run(None, feed), "cpu")
    return lambda: (session.run_with_iobinding(b), kept)

models = {"conv3x3 16ch 32x32": (torch.nn.Conv2d(16, 16, 3, padding=1), (1, 16, 32, 32)),
          "relu 64ch 56x56": (torch.nn.ReLU(), (1, 64, 56, 56))}
for name, (m, shape) in models.items():
    s = R.ort_session(export_onnx_bytes(m, shape), 1)
    feed = R.make_feed(s, None, 1)
    runs = {"by-device": by_device(s, feed), "once": once(s, feed)}
    meds = {"by-device": [], "once": []}
    for _ in range(7):
        for k, run in runs.items():
            meds[k].append(statistics.median(time_runs(run, 20, 200)))
    print(name, {k: f"{statistics.median(v):.4f} [{min(v):.4f}, {max(v):.4f}]" for k, v in meds.items()},
          "once/by-device", round(statistics.median(meds["once"]) / statistics.median(meds["by-device"]), 3))
