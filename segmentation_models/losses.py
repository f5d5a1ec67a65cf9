"""Segmentation losses: the 1.0.1 set (same signatures, names and aliases) plus SMP's.

Every loss is a registered, serialisable ``keras.losses.Loss`` written with ``keras.ops`` (TensorFlow, JAX,
PyTorch). Losses combine like in 1.0.1: ``bce_jaccard_loss = binary_crossentropy + jaccard_loss`` is named
``binary_crossentropy_plus_jaccard_loss``; ``0.5 * dice_loss`` is ``0.5dice_loss``. A model compiled with any
of them (combined or scaled too) reloads compiled from ``.keras`` after ``import segmentation_models``.

Options beyond 1.0.1 (keyword-only): ``mode``, ``from_logits``, ``ignore_index`` (see
:mod:`segmentation_models.base.functional`). ``y_true`` may be one-hot/multilabel/soft or an integer mask of
shape (B, H, W) or (B, H, W, 1).

Every loss returns one scalar per batch (1.0.1). Keras' ``sample_weight`` (``loss(y, p, sample_weight=w)``,
``model.fit(x, y, sample_weight=w)`` or a dataset of ``(x, y, w)``) acts inside the loss instead of scaling
that scalar: per-pixel weights (B, H, W) or (B, H, W, 1) with 0 at ignored pixels (void, padding) leave those
pixels out of every sum and mean, exactly like ``ignore_index``; other values weigh the pixels (weighted means
``sum(w * loss) / sum(w)``, weighted soft tp/fp/fn); per-image weights (B,) weigh every pixel of an image. The
same holds for sums and multiples of losses. Without ``sample_weight`` the values are 1.0.1's.
"""

from __future__ import annotations

import keras

from ._objects_util import check_common, config_value, copy_object, lookup
from .base import Loss, MultipliedLoss, SumOfLosses, functional as F
from .base.functional import SMOOTH

_PACKAGE = "segmentation_models"
register = keras.saving.register_keras_serializable(package=_PACKAGE)


class _SegmentationLoss(Loss):
    """Stores the options every loss shares and puts them in its config."""

    _config_keys: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        mode=None,
        from_logits: bool = False,
        ignore_index=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        check_common(type(self).__name__, mode=mode)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mode = mode
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index

    def _options(self) -> dict:
        return {"mode": self.mode, "from_logits": self.from_logits, "ignore_index": self.ignore_index}

    def _kwargs(self, sample_weight) -> dict:
        """The options plus Keras' ``sample_weight`` (see :class:`segmentation_models.base.Loss`)."""
        return {**self._options(), "sample_weight": sample_weight}

    def get_config(self) -> dict:
        config = {**super().get_config(), **self._options()}
        for key in self._config_keys:
            config[key] = config_value(getattr(self, key))
        return config


def _weights_arg(class_weights):
    return class_weights if class_weights is not None else 1


@register
class JaccardLoss(_SegmentationLoss):
    r"""Jaccard loss :math:`1 - IoU` (1.0.1), soft IoU over the batch (or per image and averaged).

    Args:
        class_weights: one weight per (selected) class, or a number; the loss is ``1 - mean(iou * w)``.
        class_indexes: int or list of ints, the classes to use (None: all).
        per_image: IoU per image, then the mean over images; else over the whole batch.
        smooth: value added to numerator and denominator.
        mode, from_logits, ignore_index: see the module doc.
    """

    _config_keys = ("class_weights", "class_indexes", "per_image", "smooth")

    def __init__(
        self,
        class_weights=None,
        class_indexes=None,
        per_image=False,
        smooth=SMOOTH,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="jaccard_loss",
        **kwargs,
    ):
        check_common(
            type(self).__name__,
            class_indexes=class_indexes,
            class_weights=class_weights,
            smooth=smooth,
            per_image=per_image,
        )
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.class_weights = _weights_arg(class_weights)
        self.class_indexes = class_indexes
        self.per_image = per_image
        self.smooth = smooth

    def call(self, y_true, y_pred, sample_weight=None):
        return 1.0 - F.iou_score(
            y_true,
            y_pred,
            class_weights=self.class_weights,
            class_indexes=self.class_indexes,
            smooth=self.smooth,
            per_image=self.per_image,
            threshold=None,
            **self._kwargs(sample_weight),
        )


@register
class DiceLoss(_SegmentationLoss):
    r"""Dice loss :math:`1 - F_\beta` (1.0.1); ``beta`` weighs recall over precision. Options as JaccardLoss."""

    _config_keys = ("beta", "class_weights", "class_indexes", "per_image", "smooth")

    def __init__(
        self,
        beta=1,
        class_weights=None,
        class_indexes=None,
        per_image=False,
        smooth=SMOOTH,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="dice_loss",
        **kwargs,
    ):
        check_common(
            type(self).__name__,
            class_indexes=class_indexes,
            class_weights=class_weights,
            smooth=smooth,
            per_image=per_image,
        )
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.beta = beta
        self.class_weights = _weights_arg(class_weights)
        self.class_indexes = class_indexes
        self.per_image = per_image
        self.smooth = smooth

    def call(self, y_true, y_pred, sample_weight=None):
        return 1.0 - F.f_score(
            y_true,
            y_pred,
            beta=self.beta,
            class_weights=self.class_weights,
            class_indexes=self.class_indexes,
            smooth=self.smooth,
            per_image=self.per_image,
            threshold=None,
            **self._kwargs(sample_weight),
        )


@register
class TverskyLoss(_SegmentationLoss):
    r"""Tversky loss :math:`(1 - T)^\gamma`, :math:`T = (tp + s) / (tp + \alpha fp + \beta fn + s)` (SMP).

    ``alpha`` penalises false positives, ``beta`` false negatives; alpha = beta = 0.5, gamma = 1 is Dice loss;
    gamma > 1 is the focal Tversky loss. Other options as JaccardLoss.
    """

    _config_keys = ("alpha", "beta", "gamma", "class_weights", "class_indexes", "per_image", "smooth")

    def __init__(
        self,
        alpha=0.5,
        beta=0.5,
        gamma=1.0,
        class_weights=None,
        class_indexes=None,
        per_image=False,
        smooth=SMOOTH,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="tversky_loss",
        **kwargs,
    ):
        check_common(
            type(self).__name__,
            class_indexes=class_indexes,
            class_weights=class_weights,
            smooth=smooth,
            per_image=per_image,
        )
        if min(alpha, beta) < 0 or gamma <= 0:
            raise ValueError(f"TverskyLoss: alpha, beta must be >= 0 and gamma > 0; got {alpha}, {beta}, {gamma}")
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.class_weights = _weights_arg(class_weights)
        self.class_indexes = class_indexes
        self.per_image = per_image
        self.smooth = smooth

    def call(self, y_true, y_pred, sample_weight=None):
        score = F.tversky_score(
            y_true,
            y_pred,
            alpha=self.alpha,
            beta=self.beta,
            class_weights=self.class_weights,
            class_indexes=self.class_indexes,
            smooth=self.smooth,
            per_image=self.per_image,
            **self._kwargs(sample_weight),
        )
        # soft counts can make the score exceed 1 by a rounding error: keep the base non-negative
        return keras.ops.power(keras.ops.maximum(1.0 - score, 0.0), self.gamma)


@register
class BinaryCELoss(_SegmentationLoss):
    """Binary cross-entropy, mean over all elements (1.0.1); ``class_weights`` weight channels (multilabel)."""

    _config_keys = ("class_weights",)

    def __init__(
        self,
        *,
        class_weights=None,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="binary_crossentropy",
        **kwargs,
    ):
        check_common(type(self).__name__, class_weights=class_weights)
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.class_weights = class_weights

    def call(self, y_true, y_pred, sample_weight=None):
        return F.binary_crossentropy(y_true, y_pred, class_weights=self.class_weights, **self._kwargs(sample_weight))


@register
class CategoricalCELoss(_SegmentationLoss):
    """1.0.1's categorical cross-entropy: ``-mean(gt * log(pr) * class_weights)`` over all elements.

    Soft labels are accepted as they are; for SMP-style label smoothing use :class:`SoftCELoss`.
    """

    _config_keys = ("class_weights", "class_indexes")

    def __init__(
        self,
        class_weights=None,
        class_indexes=None,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="categorical_crossentropy",
        **kwargs,
    ):
        check_common(type(self).__name__, class_indexes=class_indexes, class_weights=class_weights)
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.class_weights = _weights_arg(class_weights)
        self.class_indexes = class_indexes

    def call(self, y_true, y_pred, sample_weight=None):
        return F.categorical_crossentropy(
            y_true,
            y_pred,
            class_weights=self.class_weights,
            class_indexes=self.class_indexes,
            **self._kwargs(sample_weight),
        )


@register
class CategoricalFocalLoss(_SegmentationLoss):
    r"""Categorical focal loss :math:`-gt\,\alpha(1-pr)^\gamma\log(pr)` (1.0.1; its name is ``focal_loss``)."""

    _config_keys = ("alpha", "gamma", "class_indexes", "class_weights")

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        class_indexes=None,
        *,
        class_weights=None,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="focal_loss",
        **kwargs,
    ):
        check_common(type(self).__name__, class_indexes=class_indexes, class_weights=class_weights)
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.alpha, self.gamma = alpha, gamma
        self.class_indexes = class_indexes
        self.class_weights = class_weights

    def call(self, y_true, y_pred, sample_weight=None):
        return F.categorical_focal_loss(
            y_true,
            y_pred,
            gamma=self.gamma,
            alpha=self.alpha,
            class_indexes=self.class_indexes,
            class_weights=self.class_weights,
            **self._kwargs(sample_weight),
        )


@register
class BinaryFocalLoss(_SegmentationLoss):
    r"""Binary focal loss (1.0.1): :math:`-gt\,\alpha(1-pr)^\gamma\log pr - (1-gt)(1-\alpha)pr^\gamma\log(1-pr)`."""

    _config_keys = ("alpha", "gamma")

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="binary_focal_loss",
        **kwargs,
    ):
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.alpha, self.gamma = alpha, gamma

    def call(self, y_true, y_pred, sample_weight=None):
        return F.binary_focal_loss(y_true, y_pred, gamma=self.gamma, alpha=self.alpha, **self._kwargs(sample_weight))


@register
class LovaszLoss(_SegmentationLoss):
    """Lovasz loss (SMP): hinge for 'binary'/'multilabel', Lovasz-softmax (present classes) for 'multiclass'.

    ``mode=None`` picks binary for one channel and multiclass otherwise. Unlike SMP, ``from_logits`` defaults
    to False (Keras models usually end in an activation); probabilities are converted as needed.
    """

    _config_keys = ("per_image", "class_indexes")

    def __init__(
        self,
        mode=None,
        per_image=False,
        ignore_index=None,
        from_logits=False,
        class_indexes=None,
        *,
        name="lovasz_loss",
        **kwargs,
    ):
        check_common(type(self).__name__, class_indexes=class_indexes, per_image=per_image)
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.per_image = per_image
        self.class_indexes = class_indexes

    def call(self, y_true, y_pred, sample_weight=None):
        mode = F.resolve_mode(
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

    _config_keys = ("smooth_factor", "pos_weight")

    def __init__(
        self,
        smooth_factor=0.0,
        pos_weight=None,
        *,
        mode=None,
        from_logits=False,
        ignore_index=None,
        name="soft_bce_loss",
        **kwargs,
    ):
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"SoftBCELoss: smooth_factor must be in [0, 1); got {smooth_factor}")
        check_common(type(self).__name__, class_weights=pos_weight)
        super().__init__(name, mode, from_logits, ignore_index, **kwargs)
        self.smooth_factor = smooth_factor
        self.pos_weight = pos_weight

    def call(self, y_true, y_pred, sample_weight=None):
        return F.soft_binary_crossentropy(
            y_true, y_pred, smooth_factor=self.smooth_factor, pos_weight=self.pos_weight, **self._kwargs(sample_weight)
        )


@register
class SoftCELoss(_SegmentationLoss):
    """Label-smoothed cross-entropy (SMP's SoftCrossEntropyLoss): per-pixel CE with targets
    ``(1 - f) * y + f / C``, mean over kept pixels; accepts integer masks, one-hot or soft labels."""

    _config_keys = ("smooth_factor", "class_weights")

    def __init__(
        self,
        smooth_factor=0.0,
        class_weights=None,
        *,
        from_logits=False,
        ignore_index=None,
        name="soft_ce_loss",
        **kwargs,
    ):
        kwargs.pop("mode", None)
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"SoftCELoss: smooth_factor must be in [0, 1); got {smooth_factor}")
        check_common(type(self).__name__, class_weights=class_weights)
        super().__init__(name, "multiclass", from_logits, ignore_index, **kwargs)
        self.smooth_factor = smooth_factor
        self.class_weights = class_weights

    def call(self, y_true, y_pred, sample_weight=None):
        return F.soft_categorical_crossentropy(
            y_true,
            y_pred,
            smooth_factor=self.smooth_factor,
            class_weights=self.class_weights,
            **self._kwargs(sample_weight),
        )


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


def _table() -> dict:
    table = {name: (lambda obj=obj: copy_object(obj)) for name, obj in INSTANCES.items()}
    for obj in INSTANCES.values():  # 1.0.1 object names, e.g. "focal_loss", "binary_crossentropy_plus_jaccard_loss"
        table.setdefault(obj.name, lambda obj=obj: copy_object(obj))
    table.update({name: cls for name, cls in CLASSES.items()})
    return table


def get(identifier):
    """A loss from a name or object: 1.0.1 instance names (``"bce_jaccard_loss"``), object names
    (``"binary_crossentropy_plus_jaccard_loss"``), class names (``"DiceLoss"``, default arguments), then Keras'
    own losses (``"mse"``). Unknown names raise ValueError with close suggestions."""
    return lookup("loss", identifier, _table(), keras.losses.get)


def available() -> list[str]:
    """Names accepted by :func:`get` (besides Keras' own)."""
    return sorted(_table())


__all__ = ["Loss", "SumOfLosses", "MultipliedLoss", "get", "available", *CLASSES, *INSTANCES]
