"""Agent limits under attack: peak memory per request and measurement-lock time with the default caps.

Usage: python benchmarks/agent_limits.py [--out agent_limits.json]
Starts `python -m hwnas.devices.agent serve` (default limits) on loopback, sends the audit's hostile
requests plus the largest request the default caps allow, and reads the agent's peak RSS (VmHWM) after
each; prints one JSON object per request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def _post(port: int, body: bytes, query: str) -> tuple[int, dict, float]:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        s.sendall((f"POST /measure?{query} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload), time.perf_counter() - start


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="agent_limits.json")
    args = p.parse_args(argv)
    import torch

    from hwnas.onnx_export import export_onnx_bytes

    conv = export_onnx_bytes(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU()),
                             (1, 3, 32, 32))
    big = (64, 3, 128, 128)  # 3.1 M input elements: under the default cap of 4 Mi
    conv_big = export_onnx_bytes(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU()), big)
    wide = export_onnx_bytes(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                                                 torch.nn.Conv2d(64, 64, 3, padding=1)), big)
    mid = export_onnx_bytes(torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                                                torch.nn.Conv2d(32, 32, 3, padding=1)), (32, 3, 128, 128))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HWNAS_AGENT_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen([sys.executable, "-m", "hwnas.devices.agent", "serve", "--port", "0", "--quiet"],
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = agent.stderr.readline()
        port = int(re.search(r":(\d+) ", line).group(1))
        base = _peak_mib(agent.pid)
        cases = [
            ("audit: batch 2048 x 3x224x224 (93-byte query)", conv, "batch_size=2048&input_shape=3,224,224"),
            ("audit: repeats=100000", conv, "repeats=100000&input_shape=3,32,32"),
            ("largest default input: 64x3x128x128 (3.1 M elements), conv 3->16",
             conv_big, "repeats=50&warmup=1"),
            ("largest default input, conv 3->64->64", wide, "repeats=50&warmup=1"),
            ("1000 repeats of conv 3->32->32 on 32x3x128x128 (lock capped at 60 s)", mid,
             "repeats=1000&warmup=0&measure_memory=0"),
        ]
        rows = []
        for name, model, query in cases:
            status, body, wall = _post(port, model, query)
            row = {"request": name, "status": status, "wall_s": round(wall, 2), "agent_peak_rss_mib": round(
                _peak_mib(agent.pid), 1), "agent_start_rss_mib": round(base, 1),
                "answer": body.get("error") or {k: body["measurement"][k] for k in ("median_ms", "n")}}
            rows.append(row)
            print(json.dumps(row), flush=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        agent.kill()
        agent.wait()
    return 0


if __name__ == "__main__":
    sys.exit(run())
