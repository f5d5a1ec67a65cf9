"""Every public function and method of the package's public modules has type hints (arguments and return)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import segmentation_models as sm

from conftest import ON_TF

pytestmark = pytest.mark.skipif(not ON_TF, reason="backend-free: checked on the TensorFlow pass")

KERAS_HOOKS = {"build", "call", "compute_output_shape", "get_config", "from_config"}  # typed by Keras' own API


def _public_modules() -> list:
    modules = [sm]
    for info in pkgutil.walk_packages(sm.__path__, "segmentation_models."):
        if any(part.startswith("_") for part in info.name.split(".")) or info.name.startswith(
            "segmentation_models.cli"
        ):
            continue
        modules.append(importlib.import_module(info.name))
    return [m for m in modules if hasattr(m, "__all__")]


def _public_callables(module) -> list[tuple[str, object]]:
    found = []
    for name in module.__all__:
        obj = getattr(module, name, None)
        if not getattr(obj, "__module__", "").startswith("segmentation_models"):
            continue
        if inspect.isfunction(obj):
            found.append((f"{obj.__module__}.{name}", obj))
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if inspect.isfunction(member) and (attr == "__init__" or not attr.startswith("_")):
                    if attr not in KERAS_HOOKS:
                        found.append((f"{obj.__module__}.{name}.{attr}", member))
    return found


def test_public_functions_have_type_hints():
    untyped = {}
    for module in _public_modules():
        for qualname, function in _public_callables(module):
            signature = inspect.signature(function)
            missing = [
                name
                for name, p in signature.parameters.items()
                if name not in ("self", "cls")
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                and p.annotation is inspect.Parameter.empty
            ]
            if signature.return_annotation is inspect.Signature.empty and not qualname.endswith("__init__"):
                missing.append("return")
            if missing:
                untyped[qualname] = missing
    assert not untyped, "public functions without type hints:\n" + "\n".join(f"{k}: {v}" for k, v in untyped.items())
