"""segmentation_models for Keras 3: segmentation models on pretrained backbones.

The successor of segmentation_models 1.0.1, with its API, on Keras 3 with the TensorFlow, JAX or
PyTorch backend::

    import segmentation_models as sm
    model = sm.Unet("resnet34", input_shape=(256, 256, 3), classes=2, activation="softmax")
"""

from __future__ import annotations

import logging as _logging

from ._cli_env import quiet_tensorflow as _quiet_tensorflow

_quiet_tensorflow()  # only in the `segmentation-models` command's own process; before keras imports TensorFlow

from ._version import __version__
from . import compat as _compat
from .compat import Backbones, framework, set_framework
from . import backbones, weights
from .backbones import available_backbones as _available_backbones
from .decoders import (
    DPT,
    FPN,
    PAN,
    DeepLabV3,
    DeepLabV3Plus,
    Linknet,
    MAnet,
    PSPNet,
    SegFormer,
    Unet,
    UnetPlusPlus,
    UPerNet,
)
from .factory import available_architectures, create_model
from .preprocessing import get_preprocessing
from . import inference, utils

_logging.getLogger("segmentation_models").addHandler(_logging.NullHandler())

# Losses and metrics are registered Keras objects: imported here so that a saved model that uses them
# reloads after a plain `import segmentation_models`.
try:
    from . import base, losses, metrics  # noqa: F401
except ImportError as _err:  # pragma: no cover - during development only
    if "segmentation_models" not in str(_err):
        raise


def get_available_backbone_names() -> list[str]:
    """Names accepted as ``backbone_name`` (1.0.1 API)."""
    return _available_backbones()


_compat._init_from_env()

# The fast paths install themselves when the package builds its first model and act inside its models only;
# importing changes nothing in Keras or the process (see segmentation_models/accel).
from . import accel  # noqa: E402

_LAZY_SUBMODULES = ("data", "cli", "export", "training", "evaluation", "runs", "plots")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name == "export_model":  # imported on first use: `python -m segmentation_models.export` runs it fresh
        from .export import export_model

        return export_model
    if name == "train":  # sm.train(config, run_folder): segmentation_models.training.train
        from .training import train

        return train
    if name in _compat.MOVED:
        raise AttributeError(
            f"segmentation_models has no attribute {name!r} (1.0.1 exposed the Keras submodules; Keras 3 does "
            f"not need them). Use {_compat.MOVED[name]} instead."
        )
    raise AttributeError(f"module 'segmentation_models' has no attribute {name!r}")


__all__ = [
    "Unet",
    "SegFormer",
    "create_model",
    "available_architectures",
    "FPN",
    "Linknet",
    "PSPNet",
    "set_framework",
    "framework",
    "get_preprocessing",
    "get_available_backbone_names",
    "Backbones",
    "losses",
    "metrics",
    "utils",
    "inference",
    "backbones",
    "weights",
    "accel",
    "__version__",
]
__all__ += ["UnetPlusPlus", "MAnet", "PAN", "DeepLabV3", "DeepLabV3Plus", "UPerNet", "DPT"]
