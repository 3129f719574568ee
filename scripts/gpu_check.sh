#!/usr/bin/env bash
# Verify every GPU path of hwnas in one go, on a machine with an NVIDIA GPU (expected output: docs/gpu.md).
#   bash scripts/gpu_check.sh            # ORT CUDA, torch CUDA, TensorRT FP32 + FP16
# Needs hwnas with onnxruntime-gpu instead of onnxruntime, and for TensorRT `pip install 'hwnas[tensorrt]'`.
# Each step prints PASS or FAIL (with its log); the exit status is the number of failed steps.
# ORT_DEVICE / TORCH_DEVICE / SPACE override what is profiled (e.g. a CPU dry run of the commands:
# ORT_DEVICE=ort-cpu-1t TORCH_DEVICE=torch-cpu bash scripts/gpu_check.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/hwnas-gpu-check.XXXXXX")}"
ORT_DEVICE="${ORT_DEVICE:-ort-cuda}"
TORCH_DEVICE="${TORCH_DEVICE:-torch-cuda}"
SPACE="${SPACE:-nb201:imagenet16}"
export HWNAS_MEASURE_LOCK="$OUT/measure.lock"
fails=0

step() {  # step NAME COMMAND...: run it, log to $OUT/NAME.log, print PASS/FAIL and the last lines on failure
  local name=$1     # (the whole log with SHOW=1)
  shift
  if "$@" >"$OUT/$name.log" 2>&1; then
    echo "PASS $name"
  else
    echo "FAIL $name (log: $OUT/$name.log)"
    fails=$((fails + 1))
    [ "${SHOW:-0}" = 1 ] || tail -n 3 "$OUT/$name.log" | sed 's/^/     /'
  fi
  [ "${SHOW:-0}" = 1 ] && sed 's/^/     /' "$OUT/$name.log"
  return 0
}

hwnas() { "$PY" -m hwnas "$@"; }

echo "hwnas GPU check; logs and outputs in $OUT"
SHOW=1 step environment "$PY" - <<'EOF'
import onnxruntime as ort, torch
from hwnas.export.tensorrt import probe_tensorrt
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("onnxruntime", ort.__version__, ort.get_available_providers())
print("tensorrt", probe_tensorrt().to_dict())
assert torch.cuda.is_available(), "torch sees no CUDA GPU"
assert "CUDAExecutionProvider" in ort.get_available_providers(), "install onnxruntime-gpu instead of onnxruntime"
EOF

# the gpu-marked tests: real ORT CUDA sessions (no CPU fallback, bound on the device), torch CUDA memory,
# TensorRT engines (FP32/FP16 build, parity, timing) and the CLI export
step gpu-tests "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_paths.py tests/test_devices.py \
  tests/test_tensorrt.py

step profile-"$ORT_DEVICE" hwnas profile --device "$ORT_DEVICE" --space "$SPACE" --out "$OUT/ort.json" \
  --calibrate 4 --rounds 1 --no-progress
step validate-"$ORT_DEVICE" hwnas validate --table "$OUT/ort.json" --device "$ORT_DEVICE" --samples 4 --rounds 1
step profile-"$TORCH_DEVICE" hwnas profile --device "$TORCH_DEVICE" --space "$SPACE" --out "$OUT/torch.json" \
  --calibrate 4 --rounds 1 --no-progress
step validate-"$TORCH_DEVICE" hwnas validate --table "$OUT/torch.json" --device "$TORCH_DEVICE" --samples 4 \
  --rounds 1

ARCH=$("$PY" -c "from hwnas.spaces import get_space; print(get_space('mobile').sample(0).text)")
step export-onnx-"$ORT_DEVICE" hwnas export --space mobile --arch "$ARCH" --out "$OUT/onnx" --device "$ORT_DEVICE"
step export-tensorrt-fp32 hwnas export --space mobile --arch "$ARCH" --format tensorrt --out "$OUT/trt32" \
  --device "$ORT_DEVICE"
step export-tensorrt-fp16 hwnas export --space mobile --arch "$ARCH" --format tensorrt --fp16 \
  --out "$OUT/trt16" --device "$ORT_DEVICE"

SHOW=1 step manifests "$PY" - "$OUT" "$ORT_DEVICE" <<'EOF'
import sys
from pathlib import Path
from hwnas.export import read_manifest

out, device = Path(sys.argv[1]), sys.argv[2]
onnx = read_manifest(out / "onnx")
print("onnx", onnx["latency"]["device"], "measured_ms", onnx["latency"]["measured_ms"])
assert onnx["latency"]["device"] == device
for name, precision in (("trt32", "fp32"), ("trt16", "fp16")):
    trt = read_manifest(out / name)["tensorrt"]
    print(name, trt["engine"]["precision"], trt["engine"]["precision_source"], "parity", trt["parity"]["max_abs_diff"],
          "<=", trt["parity"]["atol"], "median_ms", trt["latency"]["median_ms"], trt["latency"]["extra"])
    assert trt["engine"]["precision"] == precision and trt["parity"]["passed"]
    assert trt["latency"]["n"] >= 50 and trt["latency"]["extra"]["protocol"] == "ort-cuda"
EOF

echo "$fails step(s) failed"
exit "$fails"
