"""What the losses and metrics share: 1.0.1's ``KerasObject`` and ``Metric`` bases, the ``mode``/``from_logits``/
``ignore_index`` options, JSON-friendly config values and the lookup by name behind ``get``/``available``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

import keras
import numpy as np

from ..validation import check_score_options


class KerasObject:
    """Mixin giving 1.0.1's ``__name__`` (the object's name) to losses and metrics."""

    @property
    def __name__(self) -> str:  # noqa: D401 - mirrors a function's __name__
        return self.name

    @classmethod
    def set_submodules(
        cls, backend: object = None, layers: object = None, models: object = None, utils: object = None
    ) -> None:
        """Accepted for 1.0.1 compatibility and ignored: Keras 3 objects need no injected submodules."""


class Metric(KerasObject, keras.metrics.Metric):
    """Base metric: a stateful Keras metric with 1.0.1's ``__name__``."""


class SegmentationOptions:
    """The options every loss and metric takes: ``mode``, ``from_logits``, ``ignore_index`` (stored, in the config),
    and those of the region scores."""

    def _set_options(self, mode: str | None, from_logits: bool, ignore_index: float | None) -> None:
        check_score_options(type(self).__name__, mode=mode)
        self.mode = mode
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index

    def _options(self) -> dict:
        return {"mode": self.mode, "from_logits": self.from_logits, "ignore_index": self.ignore_index}

    def _set_region_options(
        self, class_weights: object, class_indexes: object, per_image: bool, smooth: float, threshold: object = None
    ) -> None:
        """Check and store the options of a region score (IoU, F-score, ...); class weights None mean 1."""
        check_score_options(
            type(self).__name__,
            class_indexes=class_indexes,
            class_weights=class_weights,
            smooth=smooth,
            per_image=per_image,
            threshold=threshold,
        )
        self.class_weights = class_weights if class_weights is not None else 1
        self.class_indexes = class_indexes
        self.per_image = per_image
        self.smooth = smooth


def config_value(value: object) -> object:
    """A JSON-friendly copy of a class-weights / class-indexes argument."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    arr = np.asarray(keras.ops.convert_to_numpy(value) if not isinstance(value, (list, tuple)) else value)
    return arr.tolist()


def _copy(obj: object) -> object:
    """A fresh, independent copy of a registered loss/metric (via its config)."""
    return keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))


class Catalog:
    """The names ``get`` accepts: instance names (a fresh copy each time), their objects' names, class names
    (the class, called with default arguments by Keras), then Keras' own (``fallback``)."""

    def __init__(self, kind: str, instances: Mapping[str, object], classes: Mapping[str, type], fallback: Callable):
        self.kind = kind
        self.instances = instances
        self.classes = classes
        self.fallback = fallback

    def table(self) -> dict[str, Callable[[], object]]:
        table = {name: (lambda obj=obj: _copy(obj)) for name, obj in self.instances.items()}
        for obj in self.instances.values():  # object names, e.g. "focal_loss", "f1-score"
            table.setdefault(obj.name, lambda obj=obj: _copy(obj))
        table.update(self.classes)
        return table

    def get(self, identifier: str | Callable) -> Callable:
        """A fresh object from a name, or ``identifier`` itself when it is an object: 1.0.1 instance names
        (``"bce_jaccard_loss"``, ``"f1_score"``), the objects' names (``"binary_crossentropy_plus_jaccard_loss"``,
        ``"f1-score"``), class names (``"DiceLoss"``, default arguments), then Keras' own (``"mse"``,
        ``"accuracy"``). Unknown names raise ValueError with close suggestions."""
        if not isinstance(identifier, str):
            if identifier is None or not callable(identifier):
                raise ValueError(f"{self.kind} must be a name or a callable; got {identifier!r}")
            return identifier
        table = self.table()
        if identifier in table:
            return table[identifier]()
        try:
            return self.fallback(identifier)
        except (ValueError, TypeError):
            pass
        close = difflib.get_close_matches(identifier, list(table), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown {self.kind} {identifier!r}.{hint} Known names: {', '.join(sorted(table))} and Keras' own "
            f"{self.kind} names."
        )

    def available(self) -> list[str]:
        """Names accepted by :meth:`get` (besides Keras' own)."""
        return sorted(self.table())
