"""Backbones (encoders): the registry and the families that fill it."""

from .registry import (
    BackboneSpec,
    available_backbones,
    get_backbone_spec,
    register_backbone,
    register_family,
    suggest_names,
)

# Each family module registers its backbones and their pretrained files; the import order is the order of
# available_backbones() and docs/backbones.md.
from . import resnet, vgg  # noqa: F401
from . import densenet, efficientnet, inception, mobilenet, resnext, senet  # noqa: F401
from . import mit  # noqa: F401
from . import convnext, keras_apps  # noqa: F401

# keras-hub backbones ("hub:<preset>"): registers the HubFeatures layer; keras-hub itself is imported only on use
from . import hub  # noqa: F401

__all__ = [
    "BackboneSpec",
    "available_backbones",
    "get_backbone_spec",
    "register_backbone",
    "register_family",
    "suggest_names",
]
