#!/usr/bin/env bash
# The end-to-end demo on this CPU: profile -> validate -> search -> export -> report.
# Everything it writes goes under $OUT (default out/demo); running it again resumes the profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
OUT="${OUT:-out/demo}"
DB="sqlite:///$OUT/runs.db"
mkdir -p "$OUT"

echo "== 1/5 profile every mobile:mnist block on ONNX Runtime CPU (1 thread, pinned to the last core) into a latency table"
# 5 interleaved rounds (default 3): on a 2-core AMD EPYC VM, 3 rounds gave Kendall 0.87-0.96 over 4 fresh
# tables, 5 rounds 0.93-0.95 over 2 (README, "Profiling and latency tables"); ORT blocks take ~25 us
hwnas profile --device ort-cpu-1t --space mobile:mnist --out "$OUT/mobile-mnist.json" --calibrate 20 --rounds 5

echo "== 2/5 validate the table's predictions against end-to-end measurement of 20 sampled archs"
hwnas validate --table "$OUT/mobile-mnist.json" --device ort-cpu-1t --samples 20 --rounds 5 --plot "$OUT/validate.png"

echo "== 3/5 search accuracy (MNIST-5k) vs table latency"
hwnas search search/demo.yaml --table "$OUT/mobile-mnist.json" --storage "$DB" --plot "$OUT/pareto.png"

echo "== 4/5 export the knee of the front to ONNX, check parity, re-measure on this CPU"
hwnas export --run latest --storage "$DB" --pick knee --out "$OUT/knee" --table "$OUT/mobile-mnist.json"

echo "== 5/5 run report"
hwnas report latest --storage "$DB" --out "$OUT/report.md"
echo "done: see $OUT (table, validate.png, pareto.png, knee/model.onnx, knee/manifest.json, report.md)"
