"""Training forward passes of the package's models on torch: tensors that autograd would keep are saved as
recipes and recomputed in the backward pass.

In a training forward pass (float32, autograd on, no saved-tensor hooks of the caller's), the tensors that
autograd would keep but that are a few elementwise passes away from what it keeps anyway are saved as recipes
and recomputed in the backward pass (see :class:`_Recipe`): BatchNormalization outputs, relu/swish/relu6/sigmoid
of them, UpSampling2D and Concatenate of those. Autograd then keeps 56-60% fewer activation bytes in a
Unet-resnet34/efficientnetb0 at 256x256, batch 8 (748 -> 298 MB, 1343 -> 585 MB), and the training peak drops to
SMP's level or below; the recomputation costs 4-7% of a step. On by default; ``SM_TORCH_RECOMPUTE=0`` (read
per call) keeps them. A recomputed tensor may differ in the last bit, so layers whose gradient compares saved
values (a max reduction) keep what they save (see ``tables.takes_recipes``).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref

import torch

from ._context import switched_on
from .tables import is_plain_relu as _is_plain_relu, upsampling_classes

# Training forward passes: BatchNormalization outputs (and activations of them) that autograd would keep are saved
# as recipes and recomputed in the backward pass (see _Recipe). {storage data_ptr: (weakref, version, recipe)}.
_RECOMPUTE = threading.local()


class _Recipe:
    """How to recompute, in the backward pass, a float32 tensor that autograd would keep from a training forward
    pass: ``function(*args)``, each argument a tensor or another recipe.

    Autograd keeps the input of each BatchNormalization (for its own gradient) and also the tensors after it:
    the ReLU's output (for the ReLU's gradient) and the same tensor again as the next convolution's input (for
    the kernel gradient), or for swish its input and output; in a Unet decoder, the convolution's input that
    upsamples and concatenates such tensors. Each is a few elementwise passes away from the BN inputs that are
    kept anyway (``addcmul`` with this step's batch statistics, an activation, a nearest upsampling, a
    concatenation). Saved as recipes, they take no memory between the forward and the backward pass, which
    lowers the peak of a training step. A recipe's tensor is computed once, when the first saved view of it is
    unpacked, and shared by the others until the last is released (a recipe inside another one is computed
    again rather than kept that long); float32 rounding may differ from the forward pass in the last bit (fused
    multiply-add), nothing else, so only layers whose gradient is continuous in what they save get recipes
    (``tables.takes_recipes``).
    """

    __slots__ = ("function", "args", "in_place", "shape", "stride", "dtype", "device", "value", "__weakref__")

    def __init__(self, function, args: tuple, like, in_place=None):
        self.function, self.args, self.in_place = function, args, in_place  # in_place: overwrites one fresh input
        self.shape, self.stride, self.dtype, self.device = like.shape, like.stride(), like.dtype, like.device
        self.value = None

    def compute(self, keep: bool = True):
        """The tensor, in the memory layout of the tensor it stands for; computed without autograd, kept while
        the recipe lives."""
        if self.value is not None:
            return self.value
        with torch.no_grad():
            args = self.args
            if self.in_place is not None and type(args[0]) is _Recipe and args[0].value is None:
                value = self.in_place(args[0].compute(keep=False))  # a fresh tensor, used by nothing else
            else:
                value = self.function(*(a.compute(keep=False) if type(a) is _Recipe else a for a in args))
            if not _same_layout(value, self.stride):
                value = torch.empty_strided(self.shape, self.stride, dtype=value.dtype, device=value.device).copy_(
                    value
                )
        if keep:
            self.value = value
        return value


def _dense_strides(shape, stride) -> bool:
    """Whether a tensor of this shape and stride covers its memory exactly once (any order of the axes)."""
    expected = 1
    for size, step in sorted(zip(shape, stride), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if step != expected:
            return False
        expected *= size
    return True


def _same_layout(tensor, stride) -> bool:
    """Whether ``tensor`` has ``stride`` on every axis longer than 1 (and starts its memory)."""
    return tensor.storage_offset() == 0 and all(
        size == 1 or a == b for size, a, b in zip(tensor.shape, tensor.stride(), stride)
    )


def _recompute_activations() -> dict:
    """{Keras activation function: (the torch function it runs, its in-place form)} that :class:`_Recipe` can
    recompute."""
    from keras import activations

    functional = torch.nn.functional
    return {
        activations.relu: (torch.relu, torch.relu_),
        activations.silu: (functional.silu, functools.partial(functional.silu, inplace=True)),
        activations.relu6: (functional.relu6, functools.partial(functional.relu6, inplace=True)),
        activations.sigmoid: (torch.sigmoid, torch.sigmoid_),
    }


def _keep_saved(tensor):
    """saved_tensors_hooks pack/unpack that keeps a tensor as it is (above the recompute scope's hooks)."""
    return tensor


def _keeping_saved(call):
    """``call`` with the tensors that autograd saves during it kept as they are (not as recipes)."""

    def keeping(*args, **kwargs):
        with torch.autograd.graph.saved_tensors_hooks(_keep_saved, _keep_saved):
            return call(*args, **kwargs)

    return keeping


def _register_recipe(tensor, recipe, version: int | None = None) -> None:
    """Save ``tensor`` as ``recipe`` wherever autograd keeps it during this forward pass, at its current version
    (or at ``version``: what an in-place step will make it; the step's own saved result is packed then)."""
    registry = getattr(_RECOMPUTE, "registry", None)
    if registry is None or recipe is None:
        return
    storage = tensor.untyped_storage()
    if (
        tensor.storage_offset() != 0
        or tensor.shape != recipe.shape
        or not _dense_strides(tensor.shape, tensor.stride())
        or storage.nbytes() != tensor.numel() * tensor.element_size()
    ):
        return  # only a tensor that is its whole storage, so that every view of the storage is one of it
    owner = tensor if tensor._base is None else tensor._base
    key = storage.data_ptr()
    entry = registry.get(key)
    if entry is None or entry[0]() is not owner:
        entry = registry[key] = (weakref.ref(owner), {})
    entry[1][tensor._version if version is None else version] = recipe


def _registered_recipe(tensor):
    """The recipe of ``tensor`` at its current version, else None."""
    registry = getattr(_RECOMPUTE, "registry", None)
    if not registry:
        return None
    entry = registry.get(tensor.untyped_storage().data_ptr())
    if entry is None or entry[0]() is None:
        return None
    recipe = entry[1].get(tensor._version)
    return recipe if recipe is not None and tensor.dtype == recipe.dtype and tensor.device == recipe.device else None


def _forget_recipe(tensor, version: int) -> None:
    """Drop what :func:`_register_recipe` recorded for ``tensor`` at ``version``."""
    entry = _RECOMPUTE.registry.get(tensor.untyped_storage().data_ptr())
    if entry is not None:
        entry[1].pop(version, None)


def _pack_saved(tensor):
    """saved_tensors_hooks pack: a registered tensor (or a view of one) as (recipe, its view), others as they are."""
    recipe = _registered_recipe(tensor)
    if recipe is None:
        return tensor
    return recipe, tuple(tensor.shape), tensor.stride(), tensor.storage_offset()


def _unpack_saved(packed):
    if not isinstance(packed, tuple):
        return packed
    recipe, shape, stride, offset = packed
    return recipe.compute().as_strided(shape, stride, offset)


def _step_recipe(op, args, outputs):
    """The recipe of a step's float32 output, when it is a recomputable function of recipes (see
    :class:`_Recipe`): an activation (:func:`_recompute_activations`) or a Concatenate of registered tensors,
    an upsampling (UpSampling2D, ResizeByFactor) of a registered tensor or of any other (then kept: a quarter
    of the output at factor 2)."""
    from keras import layers

    if (
        not args
        or type(outputs) is not torch.Tensor
        or outputs.dtype != torch.float32
        or not all(type(a) is torch.Tensor for a in (args[0] if type(op) is layers.Concatenate else args))
    ):
        return None
    kind = type(op)
    if kind is layers.Concatenate and len(args) == 1:
        sources = [_registered_recipe(a) for a in args[0]]
        if all(sources):
            return _Recipe(lambda *parts: op.call(list(parts)), tuple(sources), outputs)
        return None
    if len(args) != 1:
        return None
    if kind in upsampling_classes():
        return _Recipe(op.call, (_registered_recipe(args[0]) or args[0],), outputs)
    functions = (
        _RECOMPUTE.activations.get(op.activation)
        if kind is layers.Activation
        else _RECOMPUTE.activations[_RECOMPUTE.relu]
        if _is_plain_relu(op)
        else None
    )
    source = None if functions is None else _registered_recipe(args[0])
    return None if source is None else _Recipe(functions[0], (source,), outputs, in_place=functions[1])


def _recompute_scope(training):
    """A saved_tensors_hooks context that saves registered tensors as recipes (see :class:`_Recipe`), for the
    outermost training forward pass with autograd on, outside any mixed-precision autocast and any saved-tensor
    hooks of the caller's, unless ``SM_TORCH_RECOMPUTE=0`` (read per call); None otherwise."""
    if (
        training is False
        or not training[0]
        or training[1] is not None
        or not torch.is_grad_enabled()
        or getattr(_RECOMPUTE, "registry", None) is not None
        or not switched_on("SM_TORCH_RECOMPUTE", default="1")
    ):
        return None
    autograd = torch._C._autograd
    try:  # hooks of the caller's (torch.autograd.graph.save_on_cpu, checkpointing) are left to work alone
        if (
            autograd._top_saved_tensors_default_hooks(False) is not None
            or not autograd._saved_tensors_hooks_is_enabled()
        ):
            return None
    except (AttributeError, TypeError):  # pragma: no cover - another torch version: keep everything
        return None
    if not hasattr(_RECOMPUTE, "activations"):
        from keras import activations

        _RECOMPUTE.activations = _recompute_activations()
        _RECOMPUTE.relu = activations.relu
    return torch.autograd.graph.saved_tensors_hooks(_pack_saved, _unpack_saved)


def bytes_kept_for_backward(call, recompute: bool = True) -> int:
    """Bytes of the distinct storages that autograd keeps for the backward pass of ``call()`` (a training forward
    pass through the package's graph executor, ``accel.graph``; parameters included), with BatchNormalization
    outputs saved as recipes (``recompute``, the default) or kept. A diagnostic (benchmarks/ab.py, the tests); the
    output is discarded."""
    kept, pack = {}, _pack_saved
    flag = os.environ.get("SM_TORCH_RECOMPUTE")

    def counting_pack(tensor):
        packed = pack(tensor) if recompute else tensor
        if type(packed) is not tuple:
            storage = tensor.untyped_storage()
            kept[storage.data_ptr()] = storage.nbytes()
        return packed

    globals()["_pack_saved"] = counting_pack  # what the recompute scope opens with, looked up per call
    os.environ["SM_TORCH_RECOMPUTE"] = "1"
    try:
        call()
    finally:
        globals()["_pack_saved"] = pack
        if flag is None:
            os.environ.pop("SM_TORCH_RECOMPUTE")
        else:
            os.environ["SM_TORCH_RECOMPUTE"] = flag
    return sum(kept.values())


def recording() -> bool:
    """Whether a training forward pass is saving recipes on this thread now."""
    return getattr(_RECOMPUTE, "registry", None) is not None
