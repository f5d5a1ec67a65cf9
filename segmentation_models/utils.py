"""Model utilities of the 1.0.1 API, working on Keras 3."""

from __future__ import annotations

import keras

from .backbones.factory import freeze_encoder
from .batchnorm import BatchNormRecalibration, recalibrate_batchnorm

__all__ = [
    "set_trainable",
    "set_regularization",
    "freeze_model",
    "set_random_seed",
    "recalibrate_batchnorm",
    "BatchNormRecalibration",
]


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow on the JAX and torch backends.

    Keras' function also seeds TensorFlow whenever it is installed, which imports it (~0.5 GB resident and
    seconds of start-up for a torch or JAX run that never uses it). This seeds the same generators otherwise:
    Python's, NumPy's, torch's on torch, and Keras' global seed and seed generator; TensorFlow too when it is
    the backend or already imported.
    """
    import random
    import sys

    import numpy as np

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if keras.backend.backend() == "tensorflow" or sys.modules.get("tensorflow") is not None:
        keras.utils.set_random_seed(seed)
        return
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # pragma: no cover - another Keras layout
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def freeze_model(model: keras.Model, **kwargs) -> None:
    """Freeze every layer except BatchNormalization (1.0.1 semantics)."""
    freeze_encoder(model)


def set_trainable(model: keras.Model, recompile: bool = True, **kwargs) -> None:
    """Make every layer trainable (e.g. after training with ``encoder_freeze=True``) and recompile.

    The model is recompiled with the same loss, metrics and optimizer settings (a fresh optimizer of
    the same class and configuration, since the set of trained variables changed).
    """
    for layer in model.layers:
        layer.trainable = True
        if hasattr(layer, "set_frozen"):  # a keras-hub backbone inside one layer (backbones/hub.py)
            layer.set_frozen(False)
    if not recompile:
        return
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError(
            "set_trainable(recompile=True) needs a compiled model; compile it first or pass recompile=False"
        )
    # Keras keeps the original compile arguments (loss objects, metric objects, ...) in _compile_config.
    stored = getattr(model, "_compile_config", None)
    compile_args = dict(getattr(stored, "config", {}) or {})
    compile_args.pop("optimizer", None)
    optimizer = model.optimizer.__class__.from_config(model.optimizer.get_config())
    model.compile(optimizer=optimizer, **compile_args)


def set_regularization(
    model: keras.Model,
    kernel_regularizer: keras.regularizers.Regularizer | None = None,
    bias_regularizer: keras.regularizers.Regularizer | None = None,
    activity_regularizer: keras.regularizers.Regularizer | None = None,
    beta_regularizer: keras.regularizers.Regularizer | None = None,
    gamma_regularizer: keras.regularizers.Regularizer | None = None,
) -> keras.Model:
    """Set regularizers on every layer that has the attribute; returns a rebuilt model (1.0.1 API)."""
    for layer in model.layers:
        for attr, value in (
            ("kernel_regularizer", kernel_regularizer),
            ("bias_regularizer", bias_regularizer),
            ("activity_regularizer", activity_regularizer),
            ("beta_regularizer", beta_regularizer),
            ("gamma_regularizer", gamma_regularizer),
        ):
            if value is not None and hasattr(layer, attr):
                setattr(layer, attr, keras.regularizers.get(value))
    rebuilt = keras.Model.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def verify_keras_archive(path) -> None:
    """Raise ``ValueError`` naming ``path`` unless it is a complete ``.keras`` archive (zip entries intact).

    Keras reports a truncated or foreign file as "File not found" and a damaged entry as a BadZipFile
    traceback; this says what is wrong before Keras reads it."""
    import zipfile
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()  # reads every entry and checks its CRC
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise ValueError(
            f"{path} is corrupt or truncated: not a complete .keras archive ({err}); use an intact "
            "copy (a run folder keeps best.keras, last.keras and the last checkpoints)"
        ) from None
    if damaged is not None:
        raise ValueError(f"{path} is corrupt: its entry {damaged!r} fails its checksum; use an intact copy")
    if "config.json" not in names:
        raise ValueError(f"{path} is a zip file but not a Keras model archive (no config.json inside)")
