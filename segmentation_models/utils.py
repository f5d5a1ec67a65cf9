"""Model utilities of the 1.0.1 API, working on Keras 3."""
from __future__ import annotations

import keras

from .backbones.factory import freeze_encoder

__all__ = ["set_trainable", "set_regularization", "freeze_model"]


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
    if not recompile:
        return
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError("set_trainable(recompile=True) needs a compiled model; compile it first or pass recompile=False")
    # Keras keeps the original compile arguments (loss objects, metric objects, ...) in _compile_config.
    stored = getattr(model, "_compile_config", None)
    compile_args = dict(getattr(stored, "config", {}) or {})
    compile_args.pop("optimizer", None)
    optimizer = model.optimizer.__class__.from_config(model.optimizer.get_config())
    model.compile(optimizer=optimizer, **compile_args)


def set_regularization(model: keras.Model, kernel_regularizer=None, bias_regularizer=None,
                       activity_regularizer=None, beta_regularizer=None, gamma_regularizer=None) -> keras.Model:
    """Set regularizers on every layer that has the attribute; returns a rebuilt model (1.0.1 API)."""
    for layer in model.layers:
        for attr, value in (("kernel_regularizer", kernel_regularizer), ("bias_regularizer", bias_regularizer),
                            ("activity_regularizer", activity_regularizer), ("beta_regularizer", beta_regularizer),
                            ("gamma_regularizer", gamma_regularizer)):
            if value is not None and hasattr(layer, attr):
                setattr(layer, attr, keras.regularizers.get(value))
    rebuilt = keras.Model.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    return rebuilt
