"""Import segmentation-models-pytorch (SMP) without torchvision (not installable here).

SMP 0.6 and timm 1.0 import a few names from torchvision at module import time (ResNet/VGG/DenseNet/
MobileNetV2 base classes for SMP's torchvision-based encoders, FrozenBatchNorm2d, transforms). None of them
is used by the encoders the benchmark builds ('tu-resnet34' is timm's ResNet, 'efficientnet-b0' is SMP's own
port), so this module installs placeholder modules whose classes raise if they are ever instantiated.
SMP itself lives in ``.bench/smp``, installed there by ``make bench-env``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMP_DIR = ROOT / ".bench" / "smp"

_INTERPOLATION_MODES = ("NEAREST", "NEAREST_EXACT", "BILINEAR", "BICUBIC", "BOX", "HAMMING", "LANCZOS")


class _StubModule(types.ModuleType):
    """A torchvision (sub)module whose every attribute is a placeholder class."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr == "InterpolationMode":  # timm builds lookup tables from its members at import time
            import enum

            value = enum.Enum("InterpolationMode", {m: m.lower() for m in _INTERPOLATION_MODES})
        else:
            value = _placeholder(f"{self.__name__}.{attr}")
        setattr(self, attr, value)
        return value


def _placeholder(qualname: str):
    import torch

    def __init__(self, *args, **kwargs):
        raise ImportError(f"{qualname} needs torchvision, which the benchmark stubs out (see benchmarks/smp_env.py)")

    return type(qualname.rsplit(".", 1)[-1], (torch.nn.Module,), {"__init__": __init__})


class _StubFinder:
    """Meta-path finder that answers every ``torchvision`` / ``torchvision.*`` import with a `_StubModule`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision" and not fullname.startswith("torchvision."):
            return None
        import importlib.machinery

        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        mod = _StubModule(spec.name)
        mod.__version__ = "0.0.0+stub"
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


def install_torchvision_stub() -> bool:
    """Answer ``import torchvision...`` with placeholders when torchvision is missing; True if installed."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        return False
    sys.meta_path.append(_StubFinder())
    return True


def import_smp():
    """Return the ``segmentation_models_pytorch`` module from .bench/smp (raises ImportError if absent)."""
    if not (SMP_DIR / "segmentation_models_pytorch").exists():
        raise ImportError(f"SMP is not installed in {SMP_DIR}: run `make bench-env`")
    if str(SMP_DIR) not in sys.path:
        sys.path.insert(0, str(SMP_DIR))
    install_torchvision_stub()
    import segmentation_models_pytorch as smp

    return smp
