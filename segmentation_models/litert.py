"""LiteRT (TensorFlow Lite) files written by ``export --format litert``: running them, the metadata this package
stores inside them, representative images for int8 quantization, and the mIoU of an export on a run's data.

The interpreter is ``ai_edge_litert``'s (``pip install ai-edge-litert``); without that package TensorFlow's
``tf.lite.Interpreter`` (deprecated in its favour) runs the file.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["QUANTIZATIONS", "LiteRTModel", "evaluate_litert", "read_metadata", "representative_inputs"]

QUANTIZATIONS = ("float16", "int8")
METADATA_NAME = "segmentation_models"  # the model-level metadata entry holding this package's JSON


def _schema():
    """The TFLite flatbuffer schema and its helpers: ai_edge_litert's, else TensorFlow's copy."""
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils
    return schema, flatbuffer_utils


def is_litert_file(path: str | os.PathLike) -> bool:
    """True for a file with the TFLite flatbuffer identifier."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def read_metadata(path: str | os.PathLike) -> dict | None:
    """The metadata this package stored in a ``.tflite`` file (the dict of the export's metadata), or None for a
    LiteRT file without it (or not a LiteRT file)."""
    if not is_litert_file(path):
        return None
    schema, _ = _schema()
    raw = Path(path).read_bytes()
    try:
        model = schema.Model.GetRootAs(raw, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME.encode():
                return json.loads(bytes(model.Buffers(entry.Buffer()).DataAsNumpy()).decode())
    except Exception:  # a damaged file: not ours
        return None
    return None


def write_metadata(path: Path, meta: Mapping[str, Any]) -> None:
    """Store ``meta`` as JSON in the model-level metadata of the ``.tflite`` file at ``path`` (replacing an
    earlier entry of this package); runtimes ignore metadata they do not know."""
    schema, flatbuffer_utils = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(dict(meta)).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in model.metadata or [] if _text(m.name) != METADATA_NAME] + [entry]
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LiteRTModel:
    """A ``.tflite`` export as a function of a float32 (batch, height, width, channels) array: batches of any
    size go through in chunks of the file's fixed batch size. ``metadata`` holds what the export recorded."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.path = Path(path)
        self.interpreter = load_interpreter(self.path, num_threads)
        signatures = self.interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self._runner = self.interpreter.get_signature_runner(key)
        self.input_name = signatures[key]["inputs"][0]
        self.output_name = signatures[key]["outputs"][0]
        self.input_shape = [int(v) for v in self.interpreter.get_input_details()[0]["shape"]]
        self.metadata = read_metadata(self.path) or {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, "float32")
        if list(x.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"{self.path} takes (batch, height, width, channels) {self.input_shape}, got {x.shape}")
        step = self.input_shape[0]
        outs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            if len(chunk) < step:  # the last, short chunk: padded to the fixed batch, the padding dropped
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), "float32")])
            out = self._runner(**{self.input_name: chunk})[self.output_name]
            outs.append(np.asarray(out, "float32")[: len(x) - start])
        return np.concatenate(outs)


def load_interpreter(path: str | os.PathLike, num_threads: int | None = None) -> Any:
    """A LiteRT interpreter on ``path``, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns on every construction that ai_edge_litert replaces it (the docstring says so)
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


# ----------------------------------------------------------------------------------------- a run's images
def fit_image(image: np.ndarray, scale: float, size: Sequence[int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` at the run's ``scale`` (as training and evaluation see it) brought to the export's fixed ``size``
    (height, width): padded with zeros at the bottom and right where it fits (as `evaluate` and the training
    loader pad to a multiple of 32), else resized. Returns (float32 pixels 0..255, (height, width) of the image
    inside: crop the prediction to it)."""
    import cv2

    from .data import rescale

    image = rescale(image, None, scale)[0]
    height, width = int(size[0]), int(size[1])
    if image.shape[0] > height or image.shape[1] > width:
        shrink = height * width < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if image.ndim == 2:
            image = image[..., None]
    valid = (image.shape[0], image.shape[1])
    out = np.zeros((height, width, image.shape[2] if image.ndim == 3 else 1), "float32")
    out[: valid[0], : valid[1]] = image.reshape(valid[0], valid[1], -1)
    return out, valid


def representative_inputs(
    config: Mapping, count: int, size: Sequence[int], preprocessing: Callable | None, split: str = "train"
) -> np.ndarray:
    """``count`` images of a run's ``split`` (evenly spaced over it), at the run's scale and the export's ``size``,
    through ``preprocessing`` (None: the export takes 0..255 pixels): int8 calibration data, (count, h, w, c)."""
    from .evaluation import open_eval_set

    if not isinstance(count, int) or count < 1:
        raise ValueError(f"representative_images must be a positive integer, got {count!r}")
    ds = open_eval_set(config, None, None, None, split, False)
    indices = sorted({int(round(i)) for i in np.linspace(0, len(ds) - 1, min(count, len(ds)))})
    scale = config["train"].get("scale", 1.0)
    images = np.stack([fit_image(ds.load(i)[0], scale, size)[0] for i in indices])
    return np.asarray(preprocessing(images), "float32") if preprocessing is not None else images


def evaluate_litert(
    litert_path: str | os.PathLike,
    model_path: str | os.PathLike,
    split: str = "val",
    limit: int | None = None,
    num_threads: int | None = None,
    keras_model: bool = True,
) -> dict:
    """Mean IoU of a ``.tflite`` export (and of the run's Keras model, ``keras_model``) on ``limit`` images of the
    run's ``split`` (see `segmentation_models.evaluation.open_eval_set`). Both see the same input: each image at
    the run's scale brought to the export's fixed size (`fit_image`: zero-padded where it fits, as `evaluate`
    pads, else resized); their probabilities are cropped and resized back to the mask's size.
    Returns ``{"images", "input_size", "litert": {...}, "keras": {...}, "label_agreement"}`` with mean IoU, pixel
    accuracy and seconds per image (this machine, ``num_threads`` for the interpreter)."""
    import cv2
    import keras

    from . import runs
    from .evaluation import confusion_matrix, open_eval_set, scores_from_confusion
    from .preprocessing import get_preprocessing

    config, model_file = runs.load_run_config(model_path)
    lite = LiteRTModel(litert_path, num_threads)
    size = lite.input_shape[1:3]
    inside = "preprocessing" in lite.metadata  # the export takes 0..255 pixels
    preprocessing = get_preprocessing(config["model"]["backbone"])
    ds = open_eval_set(config, None, None, None, split, False)
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    model = runs.load_run_model(model_file, config) if keras_model else None
    scale = config["train"].get("scale", 1.0)
    n = ds.num_classes
    matrices = {"litert": np.zeros((n, n), "int64"), "keras": np.zeros((n, n), "int64")}
    seconds = {"litert": 0.0, "keras": 0.0}
    agree = total = 0
    for i in range(len(ds)):
        image, truth = ds.load(i)
        pixels, (height, width) = fit_image(image, scale, size)
        pixels = pixels[None]
        model_input = np.asarray(preprocessing(pixels), "float32")
        labels = {}
        for name in ("litert", "keras") if model is not None else ("litert",):
            start = time.perf_counter()
            if name == "litert":
                prob = lite(pixels if inside else model_input)[0]
            else:
                out = model(model_input, training=False)
                out = out[0] if isinstance(out, (list, tuple)) else out  # an auxiliary head's model: the mask
                prob = np.asarray(keras.ops.convert_to_numpy(out)[0], "float32")
            seconds[name] += time.perf_counter() - start
            prob = prob[:height, :width]
            if prob.shape[:2] != truth.shape[:2]:
                prob = cv2.resize(prob, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_LINEAR)
                prob = prob[..., None] if prob.ndim == 2 else prob
            labels[name] = prob.argmax(-1)  # as `evaluate` scores
            matrices[name] += confusion_matrix(truth, labels[name], n)
        if model is not None:
            agree += int((labels["litert"] == labels["keras"]).sum())
            total += labels["litert"].size
    result: dict = {"split": split, "images": len(ds), "input_size": list(size), "data": ds.name}
    for name in matrices if model is not None else ("litert",):
        scores = scores_from_confusion(matrices[name], ds.class_names)
        result[name] = {
            "mean_iou": scores["mean_iou"],
            "pixel_accuracy": scores["pixel_accuracy"],
            "seconds_per_image": round(seconds[name] / max(1, len(ds)), 4),
        }
    if model is not None:
        result["label_agreement"] = round(agree / max(1, total), 6)
    return result
