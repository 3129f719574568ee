"""Export manifest schema 1: what `hwnas export` writes validates, reads back and detects tampering."""

from __future__ import annotations

import json

import pytest

from hwnas.export import ManifestError, read_manifest, validate_manifest, verify_files
from hwnas.export.pipeline import run_export
from hwnas.export.source import source_from_arch

ARCH = "k3_e3-k5_e3_g2-skip-k3_e1_g2-k3_e6-k3_e1_g2-k5_e1_g2"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    run_export(source_from_arch("mobile", ARCH), out, measure=False)
    return out


def test_schema_1_written_and_read_back(exported):
    m = read_manifest(exported)
    assert m["schema"] == 1 and m["kind"] == "hwnas-export-manifest"
    assert m["arch"]["arch"] == ARCH and m["arch"]["space"] == "mobile:mnist"
    assert m["onnx"]["opset"] == 18 and m["onnx"]["exporter"] in ("dynamo", "legacy")
    assert m["parity"]["passed"] and m["parity"]["max_abs_diff"] <= 1e-5
    assert m["source"]["trained"] is False and m["tensorrt"] is None
    assert m["latency"]["measured_ms"] is None and m["latency"]["note"] == "--no-measure"
    assert {f["role"] for f in m["files"]} == {"onnx"}
    assert verify_files(exported) == []


def test_tampered_file_is_detected(exported, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(exported, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert verify_files(copy) == ["model.onnx"]


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(schema=2), "schema 2"),
    (lambda m: m.pop("schema"), "schema None"),
    (lambda m: m.update(kind="other"), "not an hwnas export manifest"),
    (lambda m: m.pop("parity"), "lacks keys"),
    (lambda m: m["latency"].pop("ratio"), "section 'latency'"),
    (lambda m: m.update(format="tflite"), "format 'tflite'"),
    (lambda m: m.update(files=[{"path": "x"}]), "files must be"),
])
def test_invalid_manifests_are_refused(exported, change, message):
    m = json.loads((exported / "manifest.json").read_text())
    validate_manifest(m)
    change(m)
    with pytest.raises(ManifestError, match=message):
        validate_manifest(m)


def test_missing_and_broken_manifest_files(tmp_path):
    with pytest.raises(ManifestError, match="export manifest .* does not exist"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
