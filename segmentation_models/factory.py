"""`create_model`: any architecture by name."""

from __future__ import annotations

import difflib

import keras

from .decoders import ARCHITECTURES

__all__ = ["create_model", "available_architectures"]


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace("+", "plus")


def available_architectures() -> list[str]:
    """The architecture names `create_model` accepts."""
    return list(ARCHITECTURES)


def create_model(arch: str, **kwargs) -> keras.Model:
    """Build architecture ``arch`` (e.g. 'unet', 'FPN', 'deeplabv3plus') with the builder's keyword arguments."""
    table = {_key(n): fn for n, fn in ARCHITECTURES.items()}
    fn = table.get(_key(str(arch)))
    if fn is None:
        close = difflib.get_close_matches(_key(str(arch)), list(table), n=3)
        raise ValueError(
            f"Unknown architecture {arch!r}"
            + (f"; did you mean {close}?" if close else "")
            + f" Available: {available_architectures()}"
        )
    return fn(**kwargs)
