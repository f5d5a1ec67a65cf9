"""Input preprocessing of each backbone, numerically equal to segmentation_models 1.0.1's.

Modes (the keras-applications names):
- ``identity``: nothing (ResNet/ResNeXt of image-classifiers normalise inside, in ``bn_data``);
- ``caffe``: RGB -> BGR, then subtract the ImageNet mean pixel (VGG);
- ``tf``: scale to [-1, 1] (MobileNet, Inception, Xception);
- ``torch``: scale to [0, 1], then ImageNet mean/std per channel (DenseNet, SE-Nets, EfficientNet).

Unlike 1.0.1, the input array is never modified in place. Inputs with other than 3 channels
(grayscale, multispectral) get the per-channel statistics cycled over their channels.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["PREPROCESSING_MODES", "preprocess_input", "get_preprocessing", "ImagePreprocessing"]

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING_MODES = ("identity", "caffe", "tf", "torch")


def _cycled(values, channels: int) -> np.ndarray:
    return np.array([values[i % len(values)] for i in range(channels)], dtype="float32")


def preprocess_input(x: ArrayLike, mode: str = "identity") -> ArrayLike:
    """Apply a 1.0.1 preprocessing ``mode`` to images ``x`` (..., H, W, C) with values in 0..255."""
    if mode not in PREPROCESSING_MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}")
    if mode == "identity":
        return x
    on_numpy = isinstance(x, np.ndarray) or np.isscalar(x)  # else backend tensors: compute with keras.ops
    if on_numpy:
        x = np.asarray(x)
        x = x.astype("float32") if not np.issubdtype(x.dtype, np.floating) else x.copy()
    else:
        x = keras.ops.cast(x, "float32")
    channels = x.shape[-1]
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _cycled(IMAGENET_MEAN_RGB, channels)) / _cycled(IMAGENET_STD_RGB, channels)
    # caffe: BGR order, ImageNet means subtracted
    if channels == 3:
        x = x[..., ::-1] if on_numpy else keras.ops.flip(x, axis=-1)
    return x - _cycled(CAFFE_MEAN_BGR, channels)


def get_preprocessing(name: str) -> Callable:
    """The preprocessing function of backbone ``name`` (1.0.1 API): ``f(images) -> images``."""
    from .backbones import get_backbone_spec

    spec = get_backbone_spec(name)
    mode = spec.preprocessing
    if mode == "hub":  # a keras-hub preset's image converter that is none of the modes: its scale and offset
        return _affine_preprocessing(name, spec.hub.scale, spec.hub.offset)

    def preprocessing(x, **kwargs):
        return preprocess_input(x, mode=mode)

    preprocessing.__name__ = f"preprocess_{name}"
    preprocessing.__doc__ = f"{name} preprocessing ({mode!r} mode); images in 0..255, channels last."
    preprocessing.mode = mode  # type: ignore[attr-defined]
    return preprocessing


def _affine_preprocessing(name, scale, offset) -> Callable:
    def preprocessing(x, **kwargs):
        on_numpy = isinstance(x, np.ndarray) or np.isscalar(x)
        x = np.asarray(x, dtype="float32") if on_numpy else keras.ops.cast(x, "float32")
        channels = x.shape[-1]
        return x * _cycled(scale, channels) + _cycled(offset, channels)

    preprocessing.__name__ = "preprocess_keras_hub"
    preprocessing.__doc__ = f"{name}: its image converter's x * {scale} + {offset}; images in 0..255, channels last."
    preprocessing.mode = "hub"  # type: ignore[attr-defined]
    return preprocessing


@keras.saving.register_keras_serializable(package="segmentation_models")
class ImagePreprocessing(keras.layers.Layer):
    """A backbone's preprocessing as a layer: images with values 0..255 in, the backbone's input out.

    Puts the preprocessing inside a model (``export_model(..., preprocessing=mode)`` uses it), so that a
    serving runtime feeds raw pixels. Same arithmetic as :func:`preprocess_input`.
    """

    def __init__(self, mode: str = "identity", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; choose one of {PREPROCESSING_MODES}")
        self.mode = mode

    def call(self, x: ArrayLike) -> ArrayLike:
        return preprocess_input(x, self.mode)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}
