"""The segmentation_models 1.0.1 module API: framework selection and the `Backbones` object."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("segmentation_models")

_FRAMEWORK_ALIASES = {"keras": "keras", "tf.keras": "tf.keras", "tensorflow.keras": "tf.keras", "tf_keras": "tf.keras"}
_framework = "tf.keras"


def set_framework(name: str) -> None:
    """Accept 1.0.1's ``set_framework('keras' | 'tf.keras')``; both mean Keras 3 here.

    The Keras 3 backend (TensorFlow, JAX, PyTorch) is chosen with the ``KERAS_BACKEND``
    environment variable before Keras is imported, not by this function.
    """
    global _framework
    key = str(name).strip().lower()
    if key not in _FRAMEWORK_ALIASES:
        raise ValueError(
            f"Not correct framework name {name!r}: use 'keras' or 'tf.keras' (both mean Keras 3; "
            "choose TensorFlow/JAX/PyTorch with the KERAS_BACKEND environment variable)."
        )
    _framework = _FRAMEWORK_ALIASES[key]
    import keras

    logger.info(
        "segmentation_models: framework %r -> Keras %s, backend %s", name, keras.__version__, keras.backend.backend()
    )


def framework() -> str:
    """The framework name last set ('tf.keras' by default, or from ``SM_FRAMEWORK``)."""
    return _framework


def _init_from_env() -> None:
    value = os.environ.get("SM_FRAMEWORK")
    if value:
        set_framework(value)


class _BackbonesFactory:
    """1.0.1's ``Backbones`` object, answered from the registry."""

    @staticmethod
    def models_names() -> list[str]:
        from .backbones import available_backbones

        return available_backbones()

    @property
    def models(self) -> dict:
        from .backbones import available_backbones, get_backbone_spec

        return {n: get_backbone_spec(n) for n in available_backbones()}

    @staticmethod
    def get_backbone(name: str, input_shape=(None, None, 3), weights="imagenet", include_top: bool = False, **kwargs):
        if include_top:
            raise ValueError("include_top=True is not supported: backbones are built without their classifier")
        from .backbones.factory import build_encoder

        return build_encoder(name, input_shape=input_shape, encoder_weights=weights, **kwargs).model

    @staticmethod
    def get_feature_layers(name: str, n: int = 5):
        from .backbones import get_backbone_spec

        return tuple(get_backbone_spec(name).default_skips)[:n]

    @staticmethod
    def get_preprocessing(name: str):
        from .preprocessing import get_preprocessing

        return get_preprocessing(name)


Backbones = _BackbonesFactory()

# Attributes 1.0.1 users reach for that do not exist here, and what to use instead.
MOVED = {
    "backend": "keras.backend / keras.ops (e.g. keras.ops.sum, keras.backend.epsilon())",
    "keras": "import keras",
    "layers": "keras.layers",
    "models": "keras.models",
    "_KERAS_BACKEND": "keras.backend",
    "_KERAS_LAYERS": "keras.layers",
    "_KERAS_MODELS": "keras.models",
    "_KERAS_UTILS": "keras.utils",
    "inject_global_submodules": "nothing: Keras 3 needs no injected submodules",
    "filter_keras_submodules": "nothing: Keras 3 needs no injected submodules",
}
