"""`hwnas export --space --arch --weights`: the exported file reproduces the trained network; re-measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.export import read_manifest, verify_files
from hwnas.export.parity import ort_session
from hwnas.spaces import get_space
from hwnas.train.checkpoint import load_checkpoint, save_checkpoint

SPACE = get_space("mobile")
ARCH = SPACE.parse("k3_e6_g2-k5_e3-skip-k3_e1_g2-k5_e6-k3_e3_g2-k5_e1")


def _trained_like(seed: int = 0):
    """A network whose weights and BN statistics differ from any fresh init (as after training)."""
    torch.manual_seed(seed)
    model = SPACE.build(ARCH)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # update BN running stats
            model(torch.randn(16, *SPACE.input_shape))
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_export_reproduces_trained_weights_and_remeasures(tmp_path, kind, capsys):
    model = _trained_like()
    if kind == "safetensors":
        weights = save_checkpoint(tmp_path / "w.safetensors", ARCH, model, {"epochs": 1})
        model = load_checkpoint(weights)[1]
    else:
        weights = tmp_path / "w.pt"
        torch.save(model.state_dict(), weights)
    out = tmp_path / "out"
    rc = main(["export", "--space", "mobile", "--arch", ARCH.text, "--weights", str(weights),
               "--out", str(out), "--device", "ort-cpu-1t", "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    m = read_manifest(out)
    assert printed == m and verify_files(out) == []
    assert m["source"]["trained"] and m["source"]["weights_sha256"]
    assert {f["role"] for f in m["files"]} == {"onnx", "weights"}
    # the exported file computes the trained network, not a fresh one
    x = np.random.default_rng(1).standard_normal((1, *SPACE.input_shape), dtype=np.float32)
    got = ort_session(out / "model.onnx").run(None, {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(got - ref)) <= 1e-5
    assert m["parity"]["passed"] and m["parity"]["max_abs_diff"] <= 1e-5
    lat = m["latency"]
    assert lat["device"] == "ort-cpu-1t" and lat["device_fingerprint"]["threads"] == 1
    assert lat["measured_ms"] > 0 and lat["n"] >= 50 and lat["same_device"]
    # without --table the prediction comes from the shipped table of the device and space
    from hwnas.fileio import data_dir
    from hwnas.latency import LatencyTable

    shipped = LatencyTable.load(data_dir("latency_tables") / "ort-cpu-1t" / "mobile-mnist.json")
    # rescaled by the table's drift reference when this machine runs it at another speed than the table's
    drift = lat["drift"]
    assert drift is not None and drift["rescaled"] == (drift["factor"] != 1.0)
    expected = shipped.predict_ms(ARCH) * drift["factor"]
    assert lat["predicted_ms"] == pytest.approx(expected) and lat["table_sha256"] == shipped.sha256
    # the ratio compares the latency at the machine's quiet speed (timed next to the drift reference)
    # (median ratio to the reference x lowest reference: the plain lowest measurement, give or take a busy moment)
    assert 0.7 < lat["quiet_ms"] / lat["measured_ms"] < 1.3
    assert lat["ratio"] == pytest.approx(lat["quiet_ms"] / lat["predicted_ms"])


def test_weights_alone_carry_the_arch(tmp_path, capsys):
    weights = save_checkpoint(tmp_path / "w.safetensors", ARCH, _trained_like(1))
    rc = main(["export", "--weights", str(weights), "--out", str(tmp_path / "o"), "--no-measure",
               "--recipe", "fast"])
    assert rc == 0
    m = read_manifest(tmp_path / "o")
    assert m["arch"]["id"] == ARCH.id and m["onnx"]["exporter"] == "legacy" and not m["onnx"]["simplified"]


def test_remeasure_on_a_remote_agent(tmp_path, monkeypatch, capsys):
    """Re-measure through the on-device agent (here on loopback) with a device spec YAML."""
    import threading

    from hwnas.devices.agent import make_server
    from hwnas.export.pipeline import default_table_path

    server = make_server("127.0.0.1", 0, "tok", quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HWNAS_EXPORT_TEST_TOKEN", "tok")
        spec = tmp_path / "loop.yaml"
        spec.write_text(
            "name: loop-agent\nruntime: remote\nhost: 127.0.0.1\n"
            f"port: {server.server_address[1]}\ntoken_env: HWNAS_EXPORT_TEST_TOKEN\n"
            "warmup: 2\nrepeats: 50\nmeasure_memory: false\n"
        )
        table = default_table_path("ort-cpu-1t", "mobile:mnist")
        rc = main(["export", "--space", "mobile", "--arch", ARCH.text, "--out", str(tmp_path / "o"),
                   "--device", str(spec), "--table", str(table)])
        assert rc == 0, capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
    lat = read_manifest(tmp_path / "o")["latency"]
    assert lat["device"] == "loop-agent" and lat["device_fingerprint"]["runtime"] == "remote"
    assert lat["measured_ms"] > 0 and lat["n"] == 50 and lat["predicted_ms"] > 0
    assert not lat["same_device"] and "compares different devices" in lat["note"]
