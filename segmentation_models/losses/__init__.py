"""Segmentation losses: the 1.0.1 set (same signatures, names and aliases) plus SMP's.

Every loss is a registered, serialisable ``keras.losses.Loss`` written with ``keras.ops`` (TensorFlow, JAX,
PyTorch). Losses combine like in 1.0.1: ``bce_jaccard_loss = binary_crossentropy + jaccard_loss`` is named
``binary_crossentropy_plus_jaccard_loss``; ``0.5 * dice_loss`` is ``0.5dice_loss``. A model compiled with any
of them (combined or scaled too) reloads compiled from ``.keras`` after ``import segmentation_models``.

Options beyond 1.0.1 (keyword-only): ``mode``, ``from_logits``, ``ignore_index`` (see
:mod:`segmentation_models.metrics.functional`). ``y_true`` may be one-hot/multilabel/soft or an integer mask of
shape (B, H, W) or (B, H, W, 1).

Every loss returns one scalar per batch (1.0.1). Keras' ``sample_weight`` (``loss(y, p, sample_weight=w)``,
``model.fit(x, y, sample_weight=w)`` or a dataset of ``(x, y, w)``) acts inside the loss instead of scaling
that scalar: per-pixel weights (B, H, W) or (B, H, W, 1) with 0 at ignored pixels (void, padding) leave those
pixels out of every sum and mean, exactly like ``ignore_index``; other values weigh the pixels (weighted means
``sum(w * loss) / sum(w)``, weighted soft tp/fp/fn); per-image weights (B,) weigh every pixel of an image. The
same holds for sums and multiples of losses. Without ``sample_weight`` the values are 1.0.1's.
"""

from __future__ import annotations

from typing import Any

import keras

from ..metrics.base import Catalog, SegmentationOptions, config_value
from ..metrics.functional import SMOOTH, Tensor, region_score, resolve_mode
from ..validation import check_score_options
from . import functional as F
from .base import Loss, MultipliedLoss, SumOfLosses

register = keras.saving.register_keras_serializable(package="segmentation_models")


class _SegmentationLoss(SegmentationOptions, Loss):
    """Stores the options every loss shares and puts them and ``_config_keys`` in its config."""

    default_name: str
    _config_keys: tuple[str, ...] = ()

    def __init__(
        self,
        mode: str | None = None,
        from_logits: bool = False,
        ignore_index: float | None = None,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: str | None = None,
    ) -> None:
        self._set_options(mode, from_logits, ignore_index)
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)

    def _kwargs(self, sample_weight: Tensor | None) -> dict:
        """The options plus Keras' ``sample_weight`` (see :class:`segmentation_models.losses.Loss`)."""
        return {**self._options(), "sample_weight": sample_weight}

    def get_config(self) -> dict:
        config = {**super().get_config(), **self._options()}
        for key in self._config_keys:
            config[key] = config_value(getattr(self, key))
        return config


class _RegionLoss(_SegmentationLoss):
    """A loss of the region score ``metric`` (1.0.1's JaccardLoss arguments).

    Args:
        class_weights: one weight per (selected) class, or a number; the loss is ``1 - mean(score * w)``.
        class_indexes: int or list of ints, the classes to use (None: all).
        per_image: the score per image, then the mean over images; else over the whole batch.
        smooth: value added to numerator and denominator.
        mode, from_logits, ignore_index, name: see the module doc.
    """

    metric: str
    _config_keys = ("class_weights", "class_indexes", "per_image", "smooth")

    def __init__(
        self,
        class_weights: object = None,
        class_indexes: object = None,
        per_image: bool = False,
        smooth: float = SMOOTH,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._set_region_options(class_weights, class_indexes, per_image, smooth)

    def _score_params(self) -> dict:
        return {}

    def _loss(self, score: Tensor) -> Tensor:
        return 1.0 - score

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        score = region_score(self.metric, **self._score_params())
        args = (self.class_weights, self.class_indexes, self.smooth, self.per_image)
        return self._loss(score(y_true, y_pred, *args, **self._kwargs(sample_weight)))


@register
class JaccardLoss(_RegionLoss):
    r"""Jaccard loss :math:`1 - IoU` (1.0.1), soft IoU over the batch (or per image and averaged).

    Args: class_weights, class_indexes, per_image, smooth (1.0.1); mode, from_logits, ignore_index (see the
    module doc).
    """

    default_name = "jaccard_loss"
    metric = "iou"


@register
class DiceLoss(_RegionLoss):
    r"""Dice loss :math:`1 - F_\beta` (1.0.1); ``beta`` weighs recall over precision. Options as JaccardLoss."""

    default_name = "dice_loss"
    metric = "fscore"
    _config_keys = ("beta", *_RegionLoss._config_keys)

    def __init__(self, beta: float = 1, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta

    def _score_params(self) -> dict:
        return {"beta": self.beta}


@register
class TverskyLoss(_RegionLoss):
    r"""Tversky loss :math:`(1 - T)^\gamma`, :math:`T = (tp + s) / (tp + \alpha fp + \beta fn + s)` (SMP).

    ``alpha`` penalises false positives, ``beta`` false negatives; alpha = beta = 0.5, gamma = 1 is Dice loss;
    gamma > 1 is the focal Tversky loss. Other options as JaccardLoss.
    """

    default_name = "tversky_loss"
    metric = "tversky"
    _config_keys = ("alpha", "beta", "gamma", *_RegionLoss._config_keys)

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0, *args: Any, **kwargs: Any) -> None:
        if min(alpha, beta) < 0 or gamma <= 0:
            raise ValueError(f"TverskyLoss: alpha, beta must be >= 0 and gamma > 0; got {alpha}, {beta}, {gamma}")
        super().__init__(*args, **kwargs)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def _score_params(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta}

    def _loss(self, score: Tensor) -> Tensor:
        # soft counts can make the score exceed 1 by a rounding error: keep the base non-negative
        return keras.ops.power(keras.ops.maximum(1.0 - score, 0.0), self.gamma)


@register
class BinaryCELoss(_SegmentationLoss):
    """Binary cross-entropy, mean over all elements (1.0.1); ``class_weights`` weight channels (multilabel)."""

    default_name = "binary_crossentropy"
    _config_keys = ("class_weights",)

    def __init__(self, *, class_weights: object = None, **options: Any) -> None:
        check_score_options(type(self).__name__, class_weights=class_weights)
        super().__init__(**options)
        self.class_weights = class_weights

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        return F.binary_crossentropy(y_true, y_pred, class_weights=self.class_weights, **self._kwargs(sample_weight))


@register
class CategoricalCELoss(_SegmentationLoss):
    """1.0.1's categorical cross-entropy: ``-mean(gt * log(pr) * class_weights)`` over all elements.

    Soft labels are accepted as they are; for SMP-style label smoothing use :class:`SoftCELoss`.
    """

    default_name = "categorical_crossentropy"
    _config_keys = ("class_weights", "class_indexes")

    def __init__(self, class_weights: object = None, class_indexes: object = None, **options: Any) -> None:
        check_score_options(type(self).__name__, class_indexes=class_indexes, class_weights=class_weights)
        super().__init__(**options)
        self.class_weights = class_weights if class_weights is not None else 1
        self.class_indexes = class_indexes

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        kwargs = self._kwargs(sample_weight)
        return F.categorical_crossentropy(y_true, y_pred, self.class_weights, self.class_indexes, **kwargs)


@register
class CategoricalFocalLoss(_SegmentationLoss):
    r"""Categorical focal loss :math:`-gt\,\alpha(1-pr)^\gamma\log(pr)` (1.0.1; its name is ``focal_loss``)."""

    default_name = "focal_loss"
    _config_keys = ("alpha", "gamma", "class_indexes", "class_weights")

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        class_indexes: object = None,
        *,
        class_weights: object = None,
        **options: Any,
    ) -> None:
        check_score_options(type(self).__name__, class_indexes=class_indexes, class_weights=class_weights)
        super().__init__(**options)
        self.alpha, self.gamma = alpha, gamma
        self.class_indexes = class_indexes
        self.class_weights = class_weights

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        args = (self.gamma, self.alpha, self.class_indexes)
        kwargs = {"class_weights": self.class_weights, **self._kwargs(sample_weight)}
        return F.categorical_focal_loss(y_true, y_pred, *args, **kwargs)


@register
class BinaryFocalLoss(_SegmentationLoss):
    r"""Binary focal loss (1.0.1): :math:`-gt\,\alpha(1-pr)^\gamma\log pr - (1-gt)(1-\alpha)pr^\gamma\log(1-pr)`."""

    default_name = "binary_focal_loss"
    _config_keys = ("alpha", "gamma")

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, **options: Any) -> None:
        super().__init__(**options)
        self.alpha, self.gamma = alpha, gamma

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        return F.binary_focal_loss(y_true, y_pred, gamma=self.gamma, alpha=self.alpha, **self._kwargs(sample_weight))


@register
class LovaszLoss(_SegmentationLoss):
    """Lovasz loss (SMP): hinge for 'binary'/'multilabel', Lovasz-softmax (present classes) for 'multiclass'.

    ``mode=None`` picks binary for one channel and multiclass otherwise. Unlike SMP, ``from_logits`` defaults
    to False (Keras models usually end in an activation); probabilities are converted as needed.
    """

    default_name = "lovasz_loss"
    _config_keys = ("per_image", "class_indexes")

    def __init__(
        self,
        mode: str | None = None,
        per_image: bool = False,
        ignore_index: float | None = None,
        from_logits: bool = False,
        class_indexes: object = None,
        **options: Any,
    ) -> None:
        check_score_options(type(self).__name__, class_indexes=class_indexes, per_image=per_image)
        super().__init__(mode, from_logits, ignore_index, **options)
        self.per_image = per_image
        self.class_indexes = class_indexes

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        mode = resolve_mode(
            self.mode, y_pred.shape[-1] if keras.config.image_data_format() == "channels_last" else y_pred.shape[1]
        )
        if mode == "multiclass":
            return F.lovasz_softmax(
                y_true,
                y_pred,
                per_image=self.per_image,
                class_indexes=self.class_indexes,
                **self._kwargs(sample_weight),
            )
        if self.class_indexes is not None:
            raise ValueError("LovaszLoss: class_indexes applies to mode='multiclass' only")
        return F.lovasz_hinge(y_true, y_pred, per_image=self.per_image, **self._kwargs(sample_weight))


@register
class SoftBCELoss(_SegmentationLoss):
    """SMP's SoftBCEWithLogitsLoss: BCE with smoothed targets ``(1 - y) * f + y * (1 - f)``.

    ``pos_weight`` (number or one per channel) weights the positive term; with ``ignore_index`` the mean runs
    over the kept elements only.
    """

    default_name = "soft_bce_loss"
    _config_keys = ("smooth_factor", "pos_weight")

    def __init__(self, smooth_factor: float = 0.0, pos_weight: object = None, **options: Any) -> None:
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"SoftBCELoss: smooth_factor must be in [0, 1); got {smooth_factor}")
        check_score_options(type(self).__name__, class_weights=pos_weight)
        super().__init__(**options)
        self.smooth_factor = smooth_factor
        self.pos_weight = pos_weight

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        return F.soft_binary_crossentropy(
            y_true, y_pred, smooth_factor=self.smooth_factor, pos_weight=self.pos_weight, **self._kwargs(sample_weight)
        )


@register
class SoftCELoss(_SegmentationLoss):
    """Label-smoothed cross-entropy (SMP's SoftCrossEntropyLoss): per-pixel CE with targets
    ``(1 - f) * y + f / C``, mean over kept pixels; accepts integer masks, one-hot or soft labels."""

    default_name = "soft_ce_loss"
    _config_keys = ("smooth_factor", "class_weights")

    def __init__(self, smooth_factor: float = 0.0, class_weights: object = None, **options: Any) -> None:
        options.pop("mode", None)
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"SoftCELoss: smooth_factor must be in [0, 1); got {smooth_factor}")
        check_score_options(type(self).__name__, class_weights=class_weights)
        super().__init__(mode="multiclass", **options)
        self.smooth_factor = smooth_factor
        self.class_weights = class_weights

    def call(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        kwargs = self._kwargs(sample_weight)
        return F.soft_categorical_crossentropy(y_true, y_pred, self.smooth_factor, self.class_weights, **kwargs)


# 1.0.1 aliases
jaccard_loss = JaccardLoss()
dice_loss = DiceLoss()

binary_focal_loss = BinaryFocalLoss()
categorical_focal_loss = CategoricalFocalLoss()

binary_crossentropy = BinaryCELoss()
categorical_crossentropy = CategoricalCELoss()

# 1.0.1 loss combinations
bce_dice_loss = binary_crossentropy + dice_loss
bce_jaccard_loss = binary_crossentropy + jaccard_loss

cce_dice_loss = categorical_crossentropy + dice_loss
cce_jaccard_loss = categorical_crossentropy + jaccard_loss

binary_focal_dice_loss = binary_focal_loss + dice_loss
binary_focal_jaccard_loss = binary_focal_loss + jaccard_loss

categorical_focal_dice_loss = categorical_focal_loss + dice_loss
categorical_focal_jaccard_loss = categorical_focal_loss + jaccard_loss

# new defaults
tversky_loss = TverskyLoss()
lovasz_loss = LovaszLoss()

INSTANCES = {
    "jaccard_loss": jaccard_loss,
    "dice_loss": dice_loss,
    "binary_focal_loss": binary_focal_loss,
    "categorical_focal_loss": categorical_focal_loss,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "bce_dice_loss": bce_dice_loss,
    "bce_jaccard_loss": bce_jaccard_loss,
    "cce_dice_loss": cce_dice_loss,
    "cce_jaccard_loss": cce_jaccard_loss,
    "binary_focal_dice_loss": binary_focal_dice_loss,
    "binary_focal_jaccard_loss": binary_focal_jaccard_loss,
    "categorical_focal_dice_loss": categorical_focal_dice_loss,
    "categorical_focal_jaccard_loss": categorical_focal_jaccard_loss,
    "tversky_loss": tversky_loss,
    "lovasz_loss": lovasz_loss,
}
CLASSES = {
    cls.__name__: cls
    for cls in (
        JaccardLoss,
        DiceLoss,
        TverskyLoss,
        BinaryCELoss,
        CategoricalCELoss,
        CategoricalFocalLoss,
        BinaryFocalLoss,
        LovaszLoss,
        SoftBCELoss,
        SoftCELoss,
    )
}


_CATALOG = Catalog("loss", INSTANCES, CLASSES, keras.losses.get)
get = _CATALOG.get  # e.g. get("bce_jaccard_loss"), get("binary_crossentropy_plus_jaccard_loss"), get("DiceLoss")
available = _CATALOG.available

__all__ = ["Loss", "SumOfLosses", "MultipliedLoss", "get", "available", *CLASSES, *INSTANCES]
