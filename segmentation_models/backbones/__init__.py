"""Backbones (encoders): the registry and the families that fill it."""
from .registry import (
    BackboneSpec,
    available_backbones,
    get_backbone_spec,
    register_backbone,
    suggest_names,
)
from . import resnet, vgg  # noqa: F401  (registration side effects)
from . import convnext, keras_apps  # noqa: F401,E402  (modern families, registration side effects)

__all__ = ["BackboneSpec", "available_backbones", "get_backbone_spec", "register_backbone", "suggest_names"]
