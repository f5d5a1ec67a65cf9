"""`segmentation-models export`: a trained model as ONNX, a TensorFlow SavedModel or a LiteRT (.tflite) file,
checked before it is reported.

The export is run on a random batch (onnxruntime, TensorFlow for a SavedModel, the LiteRT interpreter) and compared
with the Keras model; the command fails if they differ. Batch, height and width stay dynamic unless fixed with
--batch-size and --input-size (LiteRT: fixed, batch 1 and the model's size or the run's training crop by default).
With --with-preprocessing the exported graph takes images with values 0..255 (the backbone's preprocessing
inside). A run folder's classes, backbone and preprocessing are stored with the export (ONNX metadata_props;
segmentation_models.json in a SavedModel folder; the .tflite file's metadata).

LiteRT: --quantize float16 halves the file; --quantize int8 quarters it, calibrated on --representative-images
training images of the run; --check-miou N scores the export and the Keras model on N validation images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_model_argument, command_parser, keywords_for


def add_parser(sub) -> None:
    from ..export import EXPORT_FORMATS, QUANTIZATIONS

    p = command_parser(
        sub, "export", "export a trained model to ONNX, a TensorFlow SavedModel or LiteRT (checked)", __doc__
    )
    add_model_argument(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="default onnx")
    p.add_argument(
        "--output",
        help="file (ONNX, LiteRT) or folder (SavedModel); default beside the model: <run>/model.onnx, "
        "<run>/saved_model, <run>/model.tflite (model-float16.tflite, model-int8.tflite)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="fix the input height and width (default: the model's, dynamic where it is; LiteRT: the model's "
        "fixed size or the run's training crop)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="fix the batch size (default dynamic; LiteRT 1)")
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
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default=None,
        help="LiteRT post-training quantization: float16 weights, or int8 weights and activations (float32 "
        "input and output)",
    )
    p.add_argument(
        "--representative-images",
        type=int,
        default=32,
        metavar="N",
        help="int8: calibrate on N of the run's training images (default 32)",
    )
    p.add_argument(
        "--check-miou",
        type=int,
        default=None,
        metavar="N",
        help="LiteRT: mean IoU of the export and of the Keras model on N of the run's validation images",
    )
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
    kind = result.format + (f", {result.quantize}" if result.quantize else "")
    print(
        f"exported {result.path} ({kind}, {_size_mb(Path(result.path)):.1f} MB) in {result.seconds:.1f} s "
        f"with {result.converter}"
    )
    print(f"  input  {result.input_name}: float32 {shape} ({result.metadata['input_values']})")
    print(f"  output {result.output_name}: float32 {shape[: shape.rfind('x')]}xclasses")
    if result.max_abs_diff is not None:
        checked = "x".join(map(str, result.checked_shape))
        agreement = "" if result.label_agreement is None else f", same class at {result.label_agreement:.2%} of pixels"
        print(f"  checked on a random {checked} batch: max |export - model| = {result.max_abs_diff:.2g}{agreement}")
    if result.val_miou:
        m = result.val_miou
        f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731  (no class in truth or prediction: no score)
        print(
            f"  mean IoU on {m['images']} {m['split']} images at {'x'.join(map(str, m['input_size']))}: "
            f"export {f(m['litert']['mean_iou'])}, Keras model {f(m['keras']['mean_iou'])} "
            f"(same class at {m['label_agreement']:.2%} of pixels)"
        )
    return 0


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6
