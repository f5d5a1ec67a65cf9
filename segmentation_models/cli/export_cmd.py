"""`segmentation-models export`: a trained model as ONNX or a TensorFlow SavedModel, checked before it is reported.

The export is run on a random batch (onnxruntime, or TensorFlow for a SavedModel) and compared with the Keras
model; the command fails if they differ. Batch, height and width stay dynamic unless fixed with --batch-size and
--input-size. With --with-preprocessing the exported graph takes images with values 0..255 (the backbone's
preprocessing inside). A run folder's classes, backbone and preprocessing are stored with the export (ONNX
metadata_props; segmentation_models.json in a SavedModel folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_model_argument, command_parser, keywords_for


def add_parser(sub) -> None:
    from ..export import EXPORT_FORMATS

    p = command_parser(sub, "export", "export a trained model to ONNX or a TensorFlow SavedModel (checked)", __doc__)
    add_model_argument(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="default onnx")
    p.add_argument(
        "--output",
        help="file (ONNX) or folder (SavedModel); default beside the model: <run>/model.onnx or <run>/saved_model",
    )
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="fix the input height and width (default: the model's, dynamic where it is)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="fix the batch size (default dynamic)")
    p.add_argument(
        "--with-preprocessing",
        action="store_true",
        help="put the backbone's preprocessing inside the export: it takes 0..255 pixels",
    )
    p.add_argument(
        "--backbone",
        help="the backbone whose preprocessing to use, for a .keras file without a run folder's config.json",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default the converter's)")
    p.add_argument("--no-check", action="store_true", help="do not run the export against the model")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing file at --output (an earlier export is replaced without it; a folder "
        "that is not an export never is)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_run

    result = export_run(args.model, **keywords_for(export_run, args, check=not args.no_check))
    shape = "x".join("?" if v is None else str(v) for v in result.input_shape)
    print(
        f"exported {result.path} ({result.format}, {_size_mb(Path(result.path)):.1f} MB) in {result.seconds:.1f} s "
        f"with {result.converter}"
    )
    print(f"  input  {result.input_name}: float32 {shape} ({result.metadata['input_values']})")
    print(f"  output {result.output_name}: float32 {shape[: shape.rfind('x')]}xclasses")
    if result.max_abs_diff is not None:
        checked = "x".join(map(str, result.checked_shape))
        print(f"  checked on a random {checked} batch: max |export - model| = {result.max_abs_diff:.2g}")
    return 0


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6
