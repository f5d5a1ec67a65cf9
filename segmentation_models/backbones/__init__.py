"""Backbones (encoders): the registry and the families that fill it."""

from .registry import (
    BackboneSpec,
    available_backbones,
    get_backbone_spec,
    register_backbone,
    suggest_names,
)
from . import resnet, vgg  # noqa: F401  (registration side effects)

# --- segmentation_models 1.0.1 backbone set (branch bb101) ---
from . import densenet, efficientnet, inception, mobilenet, resnext, senet  # noqa: F401,E402
from . import mit  # noqa: F401,E402  (MiT / SegFormer encoders)
from . import convnext, keras_apps  # noqa: F401,E402  (modern families, registration side effects)

__all__ = ["BackboneSpec", "available_backbones", "get_backbone_spec", "register_backbone", "suggest_names"]
