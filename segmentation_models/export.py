"""Export a model for serving: ONNX (onnxruntime, TensorRT, OpenVINO, ...), a TensorFlow SavedModel, or a LiteRT
(TensorFlow Lite) file for phones and edge devices, optionally quantized (float16, int8).

The conversion always runs on the TensorFlow backend when TensorFlow is installed: in this process on that
backend, otherwise in a subprocess on the same ``.keras`` file (the weights are the same on every backend).
TensorFlow's converter (tf2onnx) keeps the batch, height and width dynamic; Keras' torch and JAX ONNX
exporters need fixed sizes or fail on some layers, so they are only the fallback without TensorFlow.

LiteRT needs fixed sizes (batch 1 by default) and TensorFlow's converter: there is no fallback without TensorFlow.

Every export is checked before it is reported: the exported file is run (onnxruntime, TensorFlow for a SavedModel,
the LiteRT interpreter) on a random batch and compared with the Keras model.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EXPORT_FORMATS", "QUANTIZATIONS", "ExportError", "ExportResult", "export_model", "export_run"]

EXPORT_FORMATS = ("onnx", "savedmodel", "litert")
QUANTIZATIONS = ("float16", "int8")  # LiteRT post-training quantization
INPUT_NAME = "image"
# The size a dynamic-size export is checked at: not a multiple of 32, so the model's padding and cropping run.
CHECK_SIZE = (80, 112)
CHECK_BATCH = 2
TOLERANCE = (1e-4, 1e-3)  # atol, rtol (times the largest output magnitude)


class ExportError(ValueError):
    """The model could not be exported, or the exported file does not compute what the model computes."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    path: str
    format: str
    input_name: str
    input_shape: list  # (batch, height, width, channels); None where dynamic
    output_name: str
    converter: str
    seconds: float
    max_abs_diff: float | None = None
    checked_shape: list | None = None
    metadata: dict = field(default_factory=dict)
    quantize: str | None = None
    size_bytes: int | None = None
    # share of the checked pixels whose most probable class is the model's (quantized exports differ slightly)
    label_agreement: float | None = None
    val_miou: dict | None = None  # export_run(check_miou=N): see segmentation_models.litert.evaluate_litert

    def to_dict(self) -> dict:
        return asdict(self)


def export_model(
    model: Any,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    input_size: Sequence[int] | None = None,
    batch_size: int | None = None,
    preprocessing: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    opset: int | None = None,
    quantize: str | None = None,
    representative_data: np.ndarray | None = None,
    check: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``model`` (a ``keras.Model`` or a ``.keras`` file) to ``path`` in ``format`` (``onnx``,
    ``savedmodel`` or ``litert``) and check that the exported file computes what the model computes.

    Args:
        input_size: ``(height, width)`` to fix; default: the model's own (dynamic where the model's is None; a
            LiteRT export needs fixed sizes).
        batch_size: a fixed batch size; default dynamic (LiteRT: 1).
        preprocessing: a preprocessing mode (``get_preprocessing(backbone).mode``) to put inside the exported
            graph, so that it takes images with values 0..255; default: the model's own input.
        metadata: string-keyed values stored with the export (ONNX metadata_props; a JSON file in a SavedModel;
            JSON in a .tflite file's model metadata, see ``segmentation_models.litert.read_metadata``).
        opset: ONNX opset; default the converter's.
        quantize: LiteRT post-training quantization: ``float16`` (weights) or ``int8`` (weights and activations,
            calibrated on ``representative_data``; input and output stay float32).
        representative_data: for ``int8``: (n, height, width, channels) float32 inputs of the export (what it
            takes: 0..255 pixels with ``preprocessing``, else preprocessed images) at its size.
        check: run the exported file on a random batch and compare with the model (raises ExportError; a
            quantized LiteRT export is only checked to run and give finite values: it differs by design).
        overwrite: replace an existing file at ``path`` that is not an export of this package. An earlier export
            of this package is replaced without it; a folder that is not one is never replaced.
    """
    import keras

    from .preprocessing import PREPROCESSING_MODES

    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {EXPORT_FORMATS}")
    if preprocessing is not None and preprocessing not in PREPROCESSING_MODES:
        raise ExportError(f"unknown preprocessing mode {preprocessing!r}; choose one of {PREPROCESSING_MODES}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ExportError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if opset is not None and (format != "onnx" or not isinstance(opset, int) or opset < 13):
        raise ExportError(f"opset applies to ONNX exports and must be an integer >= 13, got {opset!r}")
    if quantize is not None and (format != "litert" or quantize not in QUANTIZATIONS):
        raise ExportError(f"quantize applies to LiteRT exports and is one of {QUANTIZATIONS}, got {quantize!r}")
    if quantize == "int8" and representative_data is None:
        raise ExportError(
            "int8 quantization calibrates on representative inputs: give representative_data (export_run and "
            "the CLI take them from the run folder's training images)"
        )
    if format == "litert" and not _tensorflow_installed():
        raise ExportError("a LiteRT export needs TensorFlow (its converter): pip install tensorflow")
    model_file = None
    if not isinstance(model, keras.Model):
        model_file = Path(model)
        if not model_file.is_file():
            raise ExportError(f"{model_file} does not exist (give a keras.Model or a .keras file)")
        from .runs import load_model

        model = load_model(model_file)
    shape = _signature_shape(model, input_size, batch_size)
    if format == "litert":
        shape = _litert_shape(shape)
        if representative_data is not None:
            representative_data = _representative(representative_data, shape)
    out = Path(path)
    if out.exists() and format in ("onnx", "litert") and out.is_dir():
        example = "model.onnx" if format == "onnx" else "model.tflite"
        raise ExportError(f"{out} is a folder; give a file name for the {format} model (e.g. {out / example})")
    if format == "savedmodel" and out.is_file():
        raise ExportError(
            f"{out} is a file; a SavedModel is a folder: give a folder name (e.g. {out.parent / 'saved_model'})"
        )
    if out.exists() and not (overwrite and out.is_file()) and not _made_here(out):
        raise ExportError(
            f"{out} exists and is not an export of segmentation_models: it is not replaced; choose "
            "another output" + (" (or --overwrite / overwrite=True to replace this file)" if out.is_file() else "")
        )
    out.parent.mkdir(parents=True, exist_ok=True)

    float32 = _float32(_mask_output_only(model))  # mixed-precision models are exported, and checked, in float32
    export = float32 if preprocessing is None else _with_preprocessing(float32, preprocessing)
    if export is not model:
        model_file = None  # the file on disk is not what is exported
    # Written beside the destination and moved there once finished and checked: an existing export is never
    # replaced by a half-written or failing one; a failing one is kept as <name>.rejected for inspection.
    work = out.with_name(f".{out.name}.tmp{os.getpid()}")
    _remove(work)
    try:
        start = time.perf_counter()
        output_name = _output_name(float32)
        litert = {"output_name": output_name, "quantize": quantize, "representative": representative_data}
        converter = _convert(export, model_file, work, format, shape, opset, litert)
        seconds = time.perf_counter() - start
        meta = _metadata(model, shape, output_name, preprocessing, metadata)
        if format == "litert":
            from .litert import write_metadata

            meta["quantization"] = quantize or "none (float32)"
            write_metadata(work, meta)
        elif format == "onnx":
            _finish_onnx(work, output_name, meta)
        else:
            (work / "segmentation_models.json").write_text(json.dumps(meta, indent=2) + "\n")
            from .runs import EXPORT_MARKER

            (work / EXPORT_MARKER).write_text("made by segmentation_models export; a new export may replace it\n")
        result = ExportResult(
            str(out), format, INPUT_NAME, list(shape), output_name, converter, round(seconds, 2), metadata=meta
        )
        result.quantize = quantize
        result.size_bytes = _size_bytes(work)
        if check:
            try:
                checked = _check(float32, work, format, shape, preprocessing, exact=quantize is None)
                result.max_abs_diff, result.checked_shape, result.label_agreement = checked
            except ExportError as err:
                rejected = out.with_name(out.name + ".rejected")
                if rejected.exists() and not _made_here(rejected):
                    rejected = out.with_name(f"{out.name}.rejected{os.getpid()}")
                _move_in(work, rejected)
                raise ExportError(f"{err} (the export is kept as {rejected}; {out} is unchanged)") from None
        _move_in(work, out)
    finally:
        _remove(work)
    return result


def export_run(
    model_path: str | Path,
    format: str = "onnx",
    output: str | Path | None = None,
    input_size: Sequence[int] | None = None,
    batch_size: int | None = None,
    with_preprocessing: bool = False,
    backbone: str | None = None,
    opset: int | None = None,
    quantize: str | None = None,
    representative_images: int = 32,
    check_miou: int | None = None,
    check: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export a run folder's best model (or a .keras file) as :func:`export_model` does, with the run's classes,
    colors, architecture and backbone in the export's metadata; ``with_preprocessing`` puts the backbone's
    preprocessing inside (``backbone`` names it for a bare .keras file). Default ``output``: beside the model,
    ``model.onnx``, ``saved_model``, ``model.tflite`` (``model-float16.tflite``, ``model-int8.tflite``).

    LiteRT: ``input_size`` defaults to the model's fixed size, else the run's training crop; ``quantize="int8"``
    calibrates on ``representative_images`` training images of the run; ``check_miou=N`` scores the export and
    the Keras model on N validation images of the run (``ExportResult.val_miou``)."""
    from . import runs
    from .backbones import get_backbone_spec

    config, model_file = _run_config_and_model(model_path)
    loaded = runs.load_run_model(model_file, config) if config else None  # must fit the run whose classes go in
    if format != "litert" and (quantize is not None or check_miou is not None):
        raise ValueError("--quantize and --check-miou apply to LiteRT exports (--format litert)")
    if (quantize == "int8" or check_miou is not None) and not config:
        raise ValueError(
            f"{model_file} has no run folder config.json: int8 quantization and --check-miou read the run's images"
        )
    if check_miou is not None and (not isinstance(check_miou, int) or check_miou < 1):
        raise ValueError(f"check_miou must be a positive number of images, got {check_miou!r}")
    backbone = backbone or config.get("model", {}).get("backbone")
    mode = get_backbone_spec(backbone).preprocessing if backbone else None
    if with_preprocessing and mode is None:
        raise ValueError(
            f"--with-preprocessing: {model_file} has no run folder config.json to name its backbone; "
            "give --backbone NAME"
        )
    metadata = {"source": model_file.name}
    if backbone:
        metadata.update(backbone=backbone, backbone_preprocessing=mode)
    if config.get("model", {}).get("arch"):
        metadata["architecture"] = config["model"]["arch"]
    if config.get("classes"):
        metadata.update(classes=config["classes"].get("names"), class_colors=config["classes"].get("colors"))
    if output is None:
        names = {"onnx": "model.onnx", "savedmodel": "saved_model"}
        output = model_file.parent / names.get(format, f"model-{quantize}.tflite" if quantize else "model.tflite")
    representative = None
    if format == "litert":
        if input_size is None:
            input_size = _litert_default_size(loaded or _load(model_file), config)
        if quantize == "int8":
            from .litert import representative_inputs
            from .preprocessing import get_preprocessing

            inside = with_preprocessing  # the export takes 0..255 pixels: calibrate on pixels
            preprocess = None if inside else get_preprocessing(config["model"]["backbone"])
            representative = representative_inputs(config, representative_images, input_size, preprocess)
    result = export_model(
        model_file,
        output,
        format,
        input_size=input_size,
        batch_size=batch_size,
        preprocessing=mode if with_preprocessing else None,
        metadata=metadata,
        opset=opset,
        quantize=quantize,
        representative_data=representative,
        check=check,
        overwrite=overwrite,
    )
    if check_miou:
        from .litert import evaluate_litert

        result.val_miou = evaluate_litert(result.path, model_file, split="val", limit=check_miou)
    return result


def _load(model_file: Path):
    from .runs import load_model

    return load_model(model_file)


def _litert_default_size(model, config: Mapping) -> tuple[int, int] | None:
    """A LiteRT export's (height, width) when none is given: the model's fixed size, else the run's training crop;
    else a clear error (LiteRT needs fixed sizes)."""
    height, width = model.input_shape[1:3]
    if height is not None and width is not None:
        return (height, width)  # the model's own
    crop = config.get("train", {}).get("crop") if config else None
    if crop:
        return (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))
    scale = config.get("train", {}).get("scale", 1.0) if config else 1.0
    hint = f" (this run trained on images scaled by {scale}: their size at that scale)" if scale != 1.0 else ""
    raise ExportError(
        "a LiteRT export needs a fixed input size and this model takes any size: give --input-size HEIGHT WIDTH "
        f"(input_size=(height, width)), e.g. the size of the images it will see{hint}"
    )


def _run_config_and_model(path: str | Path) -> tuple[dict, Path]:
    """A run folder's (config, model file); a bare .keras file gives an empty config."""
    from . import runs

    path = Path(path)
    if path.is_file() and not (path.parent / runs.CONFIG_FILE).is_file():
        return {}, path
    return runs.load_run_config(path)


def _size_bytes(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _made_here(path: Path) -> bool:
    """True for an export of this package: a SavedModel folder with its marker (or, from before markers, with
    segmentation_models.json beside saved_model.pb), or an ONNX or LiteRT file whose producer is this package."""
    from .litert import is_litert_file, read_metadata
    from .runs import EXPORT_MARKER

    if path.is_dir():
        return (path / EXPORT_MARKER).is_file() or (
            (path / "segmentation_models.json").is_file() and (path / "saved_model.pb").is_file()
        )
    if is_litert_file(path):
        return str((read_metadata(path) or {}).get("producer", "")).startswith("segmentation_models")
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX (or onnx missing): not ours
        return False
    return any(p.key == "producer" and p.value.startswith("segmentation_models") for p in proto.metadata_props)


def _move_in(work: Path, out: Path) -> None:
    """Put the finished ``work`` at ``out``: one rename for a file; for a folder the old one is moved aside
    first and removed once the new one is in place."""
    if not out.is_dir():
        os.replace(work, out)
        return
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    _remove(old)
    out.rename(old)
    work.rename(out)
    _remove(old)


# ----------------------------------------------------------------------------------------- the model to export
def _signature_shape(model, input_size, batch_size) -> tuple:
    """(batch, height, width, channels) of the export's input; None where dynamic."""
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise ExportError(f"expected a model with one (batch, height, width, channels) input, got {model.input_shape}")
    _, height, width, channels = model.input_shape
    if input_size is not None:
        if len(input_size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in input_size):
            raise ExportError(f"input_size must be (height, width) with positive integers, got {input_size!r}")
        for name, fixed, asked in (("height", height, input_size[0]), ("width", width, input_size[1])):
            if fixed is not None and fixed != asked:
                raise ExportError(
                    f"the model was built for {height}x{width} inputs and cannot be exported at "
                    f"{input_size[0]}x{input_size[1]} ({name} {fixed} != {asked}); build it with "
                    f"input_shape=(None, None, {channels}) and load the weights to export other sizes"
                )
        height, width = int(input_size[0]), int(input_size[1])
    return (batch_size, height, width, channels)


def _litert_shape(shape: tuple) -> tuple:
    """LiteRT runs fixed shapes: batch 1 unless given; a dynamic height or width is an error."""
    if shape[1] is None or shape[2] is None:
        raise ExportError(
            "a LiteRT export needs a fixed input size and this model takes any size: give input_size=(height, "
            "width) (--input-size HEIGHT WIDTH)"
        )
    return (shape[0] or 1, *shape[1:])


def _representative(data, shape: tuple) -> np.ndarray:
    data = np.asarray(data, "float32")
    if data.ndim != 4 or list(data.shape[1:]) != list(shape[1:]) or len(data) == 0:
        raise ExportError(
            f"representative_data must be (n, {shape[1]}, {shape[2]}, {shape[3]}) inputs at the export's size, "
            f"got {data.shape}"
        )
    return data


def _mask_output_only(model):
    """``model``, or for a model with an auxiliary classification head (SMP's ``aux_params``) the same model
    with its mask output only: the auxiliary labels serve training."""
    import keras

    if len(model.outputs) == 1:
        return model
    if len(model.outputs[0].shape) != 4:
        raise ExportError(
            f"expected the first output to be the (batch, height, width, classes) mask, got "
            f"outputs of shapes {[tuple(o.shape) for o in model.outputs]}"
        )
    return keras.Model(model.inputs, model.outputs[0], name=model.name)


def _float32(model):
    """``model`` itself when it computes in float32; else the same model and weights rebuilt in float32
    (mixed-precision training): exporters and runtimes expect float32 graphs."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in _all_layers(model)):
        return model

    def to_float32(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return "float32"
            return {k: to_float32(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [to_float32(v) for v in obj]
        return obj

    config = to_float32(keras.saving.serialize_keras_object(model))
    rebuilt = keras.saving.deserialize_keras_object(config)
    rebuilt.set_weights([np.asarray(keras.ops.convert_to_numpy(w), "float32") for w in model.weights])
    return rebuilt


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _with_preprocessing(model, mode: str):
    import keras

    from .preprocessing import ImagePreprocessing

    image = keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
    return keras.Model(
        image, model(ImagePreprocessing(mode, name="preprocessing")(image)), name=f"{model.name}_with_preprocessing"
    )


def _output_name(model) -> str:
    """``probabilities`` when the model ends in softmax/sigmoid, else ``logits``."""
    for layer in reversed(model.layers):
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return "probabilities" if getattr(activation, "__name__", "") in ("softmax", "sigmoid") else "logits"
    return "logits"


def _metadata(model, shape, output_name, preprocessing, extra) -> dict:
    from ._version import __version__

    meta = {
        "producer": f"segmentation_models {__version__}",
        "model": model.name,
        "input": f"{INPUT_NAME}: float32 (batch, height, width, {shape[3]}), channels last",
        "input_values": (
            "0..255 pixels (preprocessing inside)"
            if preprocessing is not None
            else "the model's own input (apply its backbone's preprocessing first)"
        ),
        "output": f"{output_name}: float32 (batch, height, width, classes), channels last",
    }
    if preprocessing is not None:
        meta["preprocessing"] = preprocessing
    for key, value in (extra or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return meta


# ----------------------------------------------------------------------------------------- conversion
def _convert(
    model, model_file: Path | None, out: Path, format: str, shape: tuple, opset: int | None, litert: dict
) -> str:
    """Write the export; returns the converter used. ``litert``: output_name, quantize, representative."""
    import keras

    backend = keras.backend.backend()
    has_tensorflow = _tensorflow_installed()
    if format in ("savedmodel", "litert") and not has_tensorflow:
        shown = {"savedmodel": "SavedModel", "litert": "LiteRT"}[format]
        raise ExportError(f"a {shown} export needs TensorFlow: pip install tensorflow")
    tool = {"onnx": " (tf2onnx)", "savedmodel": "", "litert": " (TFLiteConverter)"}[format]
    if backend == "tensorflow":
        _keras_export(model, out, format, shape, opset, litert)
        return f"tensorflow{tool}"
    if has_tensorflow:
        with tempfile.TemporaryDirectory(prefix="sm-export-") as tmp:
            if model_file is None:
                model_file = Path(tmp) / "model.keras"
                model.save(model_file)
            _export_in_tensorflow(model_file, out, format, shape, opset, litert, Path(tmp))
        return f"tensorflow subprocess{tool}, from {backend}"
    if None in shape[1:3] and backend == "torch":
        raise ExportError(
            "without TensorFlow, ONNX export runs on Keras' torch exporter, which needs a fixed height and width: "
            "give input_size=(height, width) (--input-size H W), or pip install tensorflow tf2onnx to keep them "
            "dynamic"
        )
    try:
        _keras_export(model, out, format, shape, opset)
    except ImportError as err:
        raise ExportError(
            f"ONNX export on the {backend} backend needs a package that is missing ({err}); "
            f"pip install tensorflow tf2onnx (the converter this package uses)"
        ) from err
    return f"keras ({backend})"


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _keras_export(model, out: Path, format: str, shape: tuple, opset: int | None, litert: dict | None = None) -> None:
    import keras

    if format == "litert":
        _litert_export(model, out, shape, **litert)
        return
    signature = [keras.InputSpec(shape=shape, dtype="float32", name=INPUT_NAME)]
    with warnings.catch_warnings():
        # Keras' tf2onnx patch probes np.object (a FutureWarning on NumPy 2); tf2onnx logs every unused node.
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        if format == "onnx":
            model.export(str(out), format="onnx", input_signature=signature, opset_version=opset, verbose=False)
        else:
            model.export(str(out), format="tf_saved_model", input_signature=signature, verbose=False)


def _litert_export(
    model, out: Path, shape: tuple, output_name: str, quantize: str | None, representative: np.ndarray | None
) -> None:
    """TensorFlow's TFLiteConverter on a SavedModel of ``model`` (the route Keras' own LiteRT export takes, which
    freezes every variable), with the output named and builtin operators only."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="sm-litert-") as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda image: {output_name: model(image, training=False)},
            input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        # builtins only (no Select TF ops): the file runs on every LiteRT runtime without the Flex delegate
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            # float32 input and output stay (the same interface as the float exports); int8 inside
            converter.representative_dataset = lambda: ([x[None]] for x in representative)
        out.write_bytes(converter.convert())


def _export_in_tensorflow(
    model_file: Path, out: Path, format: str, shape: tuple, opset: int | None, litert: dict, tmp: Path
) -> None:
    spec = {"model": str(model_file), "out": str(out), "format": format, "shape": list(shape), "opset": opset}
    if format == "litert":
        spec["litert"] = {**litert, "representative": None}
        if litert.get("representative") is not None:
            spec["litert"]["representative"] = str(tmp / "representative.npy")
            np.save(spec["litert"]["representative"], litert["representative"])
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "segmentation_models.export", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ExportError(f"the TensorFlow conversion of {model_file} failed:\n{tail}")


def _main(spec: dict) -> None:
    """Entry point of the TensorFlow subprocess."""
    from .runs import load_model

    litert = spec.get("litert")
    if litert and litert["representative"]:
        litert["representative"] = np.load(litert["representative"])
    _keras_export(
        load_model(Path(spec["model"])), Path(spec["out"]), spec["format"], tuple(spec["shape"]), spec["opset"], litert
    )


def _finish_onnx(out: Path, output_name: str, meta: Mapping[str, str]) -> None:
    """Name the graph's input and output, name its dynamic dimensions, store the metadata."""
    import onnx

    proto = onnx.load(str(out))
    graph = proto.graph
    _rename(graph, graph.input[0].name, INPUT_NAME)
    _rename(graph, graph.output[0].name, output_name)
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in graph.input[0].type.tensor_type.shape.dim]
    for value in (graph.input[0], graph.output[0]):
        for dim, name, size in zip(value.type.tensor_type.shape.dim, ("batch", "height", "width"), fixed):
            if size is not None:  # the output's batch, height and width are the input's
                dim.dim_value = size
            elif not dim.HasField("dim_value"):
                dim.dim_param = name
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.save(proto, str(out))


def _rename(graph, old: str, new: str) -> None:
    if old == new:
        return
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


# ----------------------------------------------------------------------------------------- check
def _check(
    model, out: Path, format: str, shape: tuple, preprocessing: str | None, exact: bool = True
) -> tuple[float, list, float]:
    """Run the export and the model on one random batch; returns (max |difference|, shape checked, share of pixels
    with the same most probable class). ``exact=False`` (a quantized export): only finite values are required."""
    import keras

    from .preprocessing import preprocess_input

    batch = shape[0] or CHECK_BATCH
    height, width = shape[1] or CHECK_SIZE[0], shape[2] or CHECK_SIZE[1]
    pixels = np.random.default_rng(0).uniform(0, 255, (batch, height, width, shape[3])).astype("float32")
    model_input = preprocess_input(pixels, preprocessing) if preprocessing else pixels / 255.0
    exported_input = pixels if preprocessing else model_input
    expected = np.asarray(keras.ops.convert_to_numpy(model(model_input.astype("float32"), training=False)), "float32")
    got = _run_export(out, format, exported_input.astype("float32"))
    if got.shape != expected.shape:
        raise ExportError(f"the export gives outputs of shape {got.shape}, the model {expected.shape}")
    diff = float(np.max(np.abs(got - expected)))
    atol, rtol = TOLERANCE
    limit = atol + rtol * float(np.max(np.abs(expected))) if exact else np.inf
    if not np.isfinite(diff) or diff > limit:
        raise ExportError(
            f"the export does not compute what the model computes: max |difference| {diff:.3g} > "
            f"{limit:.3g} on a random {list(pixels.shape)} batch"
        )
    agreement = float(np.mean(got.argmax(-1) == expected.argmax(-1))) if got.shape[-1] > 1 else None
    return diff, list(pixels.shape), None if agreement is None else round(agreement, 6)


def _run_export(out: Path, format: str, x: np.ndarray) -> np.ndarray:
    if format == "onnx":
        try:
            import onnxruntime
        except ImportError as err:
            raise ExportError(
                "checking an ONNX export needs onnxruntime: pip install onnxruntime (or skip the check)"
            ) from err
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {INPUT_NAME: x})[0], "float32")
    if format == "litert":
        from .litert import LiteRTModel

        return LiteRTModel(out)(x)
    import tensorflow as tf

    served = tf.saved_model.load(str(out)).signatures["serving_default"]
    return np.asarray(next(iter(served(**{INPUT_NAME: tf.constant(x)}).values())), "float32")


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
