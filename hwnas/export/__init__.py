"""Export: ONNX (checked, simplified, parity-verified), TensorRT engines, picks from a run, the manifest.

    from hwnas.export import export_onnx, check_parity
    exp = export_onnx(model, (1, 28, 28), "model.onnx")      # -> OnnxExport (opset 18, dynamo)
    check_parity(model, exp.path, exp.input_shape)            # ParityError above atol 1e-5
"""

from hwnas.export.config import ExportConfig, load_export_config
from hwnas.export.errors import ExportError, ManifestError, ParityError, PickError
from hwnas.export.manifest import (
    MANIFEST_SCHEMA,
    read_manifest,
    validate_manifest,
    verify_files,
    write_manifest,
)
from hwnas.export.parity import DEFAULT_ATOL, ParityResult, check_parity
from hwnas.export.picks import PICK_FORMS, Pick, parse_pick, select_trial
from hwnas.export.pipeline import EXPORTERS, ExportContext, run_export
from hwnas.export.source import ExportSource, load_weights, source_from_arch, source_from_run
from hwnas.export.tensorrt import TrtProbe, probe_tensorrt, require_tensorrt
from hwnas.fileio import sha256_file
from hwnas.onnx_export import DEFAULT_OPSET, OnnxExport, export_onnx, prepare_for_export

__all__ = [
    "DEFAULT_ATOL", "DEFAULT_OPSET", "EXPORTERS", "MANIFEST_SCHEMA", "PICK_FORMS", "ExportConfig",
    "ExportContext", "ExportError", "ExportSource", "ManifestError", "OnnxExport", "ParityError",
    "ParityResult", "Pick", "PickError", "TrtProbe", "check_parity", "export_onnx", "load_export_config",
    "load_weights", "parse_pick", "prepare_for_export", "probe_tensorrt", "read_manifest",
    "require_tensorrt", "run_export", "select_trial", "sha256_file", "source_from_arch",
    "source_from_run", "validate_manifest", "verify_files", "write_manifest",
]
