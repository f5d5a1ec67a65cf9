"""The package's models on the torch backend: Keras' graph execution, dropping tensors early.

Keras runs a functional model by keeping every intermediate tensor in
a dictionary until the call returns, so an eager (torch) forward pass holds all activations at once, also
in inference. :func:`_run_through_graph` runs the same nodes in the same order and drops each tensor after
its last consumer: inference then holds only the live activations, and training only what autograd saves.
It also fuses a symmetric ``ZeroPadding2D`` into the convolution or max pooling that is its only consumer
(1.0.1's ResNets pad before every 3x3 convolution): the kernel pads internally, so the padded copy is
neither made nor kept for the backward pass (see :func:`_fusable_padding` for the exact conditions). And it
calls built-in layers and this package's stateless ones (float32, or mixed precision in a model of the same
policy) through ``layer.call`` directly when ``Layer.__call__`` would change nothing (see :func:`_direct_call`):
~0.1 ms of Python per layer, a quarter of a batch-1 forward pass; each node's arguments are gathered by a
precomputed filler instead of Keras' tree mapping (see :func:`_argument_filler`). A ReLU whose
input is a fresh tensor with no other use (after BatchNormalization, a convolution, Add or Concatenate)
overwrites it, as ``ReLU(inplace=True)`` does in SMP (see :func:`_fresh_output`). In float32 inference (autograd
off, not training), a Conv2D/DepthwiseConv2D without activation whose only consumer is a BatchNormalization runs
as one convolution with the BN folded into its kernel and bias, cached per variable version (see
:func:`_conv_bn_pairs`): one pass over the activation less, the same result to float32 rounding.

Only the package's models (and the blocks under ``accel.scope()``) run here: :func:`run_through_graph` hands every
other model to Keras' own ``Function._run_through_graph``, untouched.
"""

from __future__ import annotations

import weakref

import torch
from keras import tree

from . import _context, _patches, recompute, torch_ops
from ._patches import original
from .tables import direct_classes, is_plain_relu as _is_plain_relu, takes_recipes as _takes_recipes
from .torch_ops import _FUSED, _bn_scale_shift, _cached_on_versions, _take_fused_padding

_SCHEDULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _schedule(function) -> list | None:
    """The nodes a call executes, in Keras' order, each as ``(node, tensor ids to drop after it, fusion)`` (cached).

    ``fusion`` is None for a plain step, ``"skip"`` for a ZeroPadding2D whose only consumer pads itself,
    ``(padding, pad_node)`` for that consumer (see :func:`_fusable_padding`), ``"relu_"`` for a ReLU
    that may overwrite its input (see :func:`_fresh_output`), and ``"folded"`` for a BatchNormalization that
    inference folds into the convolution before it (see :func:`_conv_bn_pairs`). None when the graph is not the
    plain kind this handles (then Keras' own execution runs).
    """
    try:
        return _SCHEDULES[function]
    except KeyError:
        pass
    except TypeError:  # pragma: no cover - not weak-referenceable
        return None
    try:
        available = {id(x) for x in function.inputs}
        steps, last_use, consumers = [], {}, {}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for node in function._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in available for x in node.input_tensors):
                    continue  # not computable from the inputs: Keras skips it too
                for x in node.input_tensors:
                    last_use[id(x)] = len(steps)
                    consumers.setdefault(id(x), []).append(len(steps))
                available.update(id(x) for x in node.outputs)
                steps.append([node, [], None])
        keep = {id(x) for x in function.outputs}
        for tensor_id, step in last_use.items():
            if tensor_id not in keep:
                steps[step][1].append(tensor_id)
        inputs = {id(x) for x in function.inputs}
        for step in steps:
            node = step[0]
            if len(node.outputs) != 1 or id(node.outputs[0]) in keep:
                continue
            users = consumers.get(id(node.outputs[0]), [])
            if len(users) == 1:
                padding = _fusable_padding(node, steps[users[0]][0])
                if padding is not None:
                    step[2] = "skip"
                    steps[users[0]][2] = (padding, node)
        for step in steps:
            node = step[0]
            if step[2] is None and _is_plain_relu(node.operation) and len(node.input_tensors) == 1:
                source = node.input_tensors[0]
                if (
                    id(source) not in keep
                    and id(source) not in inputs
                    and len(consumers.get(id(source), [])) == 1
                    and _fresh_output(source)
                ):
                    step[2] = "relu_"
        _FOLDS[function] = _conv_bn_pairs(steps, keep, consumers)
        schedule = [(node, tuple(drop), fusion, _direct_candidate(node)) for node, drop, fusion in steps]
        _FILLERS[function] = [_argument_filler(node.arguments) for node, _, _ in steps]
        _kernels_in_torch_order(steps)
    except AttributeError:  # pragma: no cover - another Keras graph structure
        schedule = None
    _SCHEDULES[function] = schedule
    return schedule


_FOLDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> {id(conv node): BN node}
_FILLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> [argument filler per step]


def _argument_filler(arguments):
    """A function ``tensor_dict -> (args, kwargs)`` doing what ``arguments.fill_in`` does, for a node whose
    positional arguments are tensors, lists/tuples of tensors or constants and whose keyword arguments hold no
    tensors; ``arguments.fill_in`` itself otherwise.

    Keras records ``mask=None``/``training=None`` among a layer's keyword arguments, which sends ``fill_in`` down
    its general path (two ``tree.map_structure`` passes): ~25 us per node, ~2 ms of a batch-1 PAN-resnet34
    forward on 2 CPU cores.
    """
    from keras import KerasTensor

    if getattr(arguments, "_single_positional_tensor", None) is not None:
        return arguments.fill_in  # Keras' own fast path
    args, kwargs = getattr(arguments, "args", None), getattr(arguments, "kwargs", None)
    if type(args) is not tuple or type(kwargs) is not dict:  # pragma: no cover - another Keras' structure
        return arguments.fill_in
    if any(isinstance(value, (KerasTensor, list, tuple, dict)) for value in kwargs.values()):
        return arguments.fill_in
    plan = []
    for arg in args:
        if isinstance(arg, KerasTensor):
            plan.append((0, id(arg)))
        elif type(arg) in (list, tuple) and all(isinstance(x, KerasTensor) for x in arg):
            plan.append((1, type(arg), tuple(id(x) for x in arg)))
        elif isinstance(arg, (list, tuple, dict, set)):
            return arguments.fill_in
        else:
            plan.append((2, arg))
    plan = tuple(plan)

    def fill(tensor_dict):
        get = tensor_dict.get
        filled = tuple(
            get(item[1]) if item[0] == 0 else item[1](get(i) for i in item[2]) if item[0] == 1 else item[1]
            for item in plan
        )
        return filled, dict(kwargs)

    return fill


_FOLD_CACHE: dict = {}  # id(conv layer) -> (weak refs, versions, (folded kernel, shift))


def _conv_bn_pairs(steps, keep, consumers) -> dict:
    """Conv2D/DepthwiseConv2D (channels-last, no activation) whose only consumer is a BatchNormalization over
    the last axis: in inference the executor runs them as one convolution with the BN folded into its kernel
    and bias (:func:`_fold_conv_bn`) and marks the BN step ``"folded"``. ``{id(conv node): BN node}``."""
    from keras import layers

    producer = {id(step[0].outputs[0]): step for step in steps if len(step[0].outputs) == 1}
    pairs = {}
    for step in steps:
        bn = step[0]
        layer = bn.operation
        if (
            type(layer) is not layers.BatchNormalization
            or step[2] is not None
            or len(bn.input_tensors) != 1
            or layer.axis not in (-1, 3)
            or getattr(layer, "renorm", False)
            or not _direct_candidate(bn)
        ):
            continue
        source = bn.input_tensors[0]
        conv_step = producer.get(id(source))
        if conv_step is None or id(source) in keep or len(consumers.get(id(source), [])) != 1:
            continue
        conv = conv_step[0].operation
        if (
            type(conv) in (layers.Conv2D, layers.DepthwiseConv2D)
            and conv.data_format == "channels_last"
            and len(source.shape) == 4
            and getattr(conv.activation, "__name__", None) == "linear"
            and _direct_candidate(conv_step[0])
            and (conv_step[2] is None or isinstance(conv_step[2], tuple))
        ):
            pairs[id(conv_step[0])] = bn
            step[2] = "folded"
    return pairs


def _folded_factors(conv, bn):
    """(kernel, bias) of ``conv`` followed by ``bn`` in inference, cached per version of their variables:
    kernel * scale and (bias - mean) * scale + beta with scale = gamma / sqrt(moving variance + epsilon); the
    kernel in torch's layout (its HWIO view), so the convolution uses it without a copy."""
    variables = [
        conv.kernel,
        conv.bias if conv.use_bias else None,
        bn.gamma if bn.scale else None,
        bn.beta if bn.center else None,
        bn.moving_mean,
        bn.moving_variance,
    ]
    tensors = [None if v is None else v.value for v in variables]
    if not all(t is None or isinstance(t, torch.nn.Parameter) for t in tensors):
        return None

    def fold():
        kernel, bias, gamma, beta, mean, variance = tensors
        with torch.no_grad():
            scale, shift = _bn_scale_shift(mean, variance, gamma, beta, bn.epsilon)
            if bias is not None:
                shift = shift + bias * scale
            if type(conv).__name__ == "DepthwiseConv2D":  # (H, W, C, M): output channel c * M + m
                h, w, c, m = kernel.shape
                folded = (kernel * scale.reshape(c, m)).reshape(h, w, 1, c * m)
            else:  # (H, W, I, O)
                folded = kernel * scale
            folded = folded.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last).permute(2, 3, 1, 0)
        return folded, shift

    return _cached_on_versions(_FOLD_CACHE, id(conv), tensors, fold)


def _fold_conv_bn(conv, bn, args, fusion):
    """The output of ``bn(conv(x))`` in inference as one convolution (see :func:`_conv_bn_pairs`); None when this
    call must run the two layers (mixed precision, LoRA, quantization, anything :func:`_direct_call_allowed`
    refuses)."""
    convolve = torch_ops.convolve
    if (
        len(args) != 1
        or getattr(conv, "lora_enabled", False)
        or conv.compute_dtype != "float32"
        or bn.compute_dtype != "float32"
        or not _direct_call_allowed(conv, args)
        or not bn.built
    ):
        return None
    factors = _folded_factors(conv, bn)
    if factors is None:
        return None
    if isinstance(fusion, tuple):
        _FUSED.padding = fusion[0]
    try:
        return convolve(
            args[0], factors[0], conv.strides, conv.padding, conv.data_format, conv.dilation_rate, bias=factors[1]
        )
    finally:
        _FUSED.padding = None


def _kernels_in_torch_order(steps) -> None:
    """Conv2D kernels stored in torch's order before the first call (:func:`_store_in_torch_order`): under mixed
    precision the convolution only sees a cast copy of the parameter, which then needs no re-layout per call."""
    from keras import layers

    if "conv" not in _patches.ORIGINAL:
        return
    for node, *_ in steps:
        if type(node.operation) is layers.Conv2D and node.operation.built:
            kernel = getattr(node.operation.kernel, "_value", None)  # `.value` is a cast copy under autocast
            if isinstance(kernel, torch.nn.Parameter):
                torch_ops._store_in_torch_order(kernel)


def _fusable_padding(pad_node, consumer) -> tuple[int, int] | None:
    """(rows, columns) when ``consumer`` can apply ``pad_node``'s zero padding inside its own kernel, else None.

    1.0.1's ResNets (and DenseNets) put an explicit ``ZeroPadding2D`` before every 3x3 convolution and before
    the stem's max pooling. On torch each is a full copy of the activation that the next layer also keeps for
    its backward pass; torch's convolution and pooling kernels pad internally at no cost. Fused: a symmetric
    channels-last ``ZeroPadding2D`` whose one consumer is a 'valid' ``Conv2D``/``DepthwiseConv2D`` (exact
    classes, which run one convolution), or a 'valid' ``MaxPooling2D`` whose input is a ReLU output (>= 0, so
    torch's -inf padding gives the same maximum) with padding at most half the pool size.
    """
    from keras import layers

    pad = pad_node.operation
    op = consumer.operation
    if type(pad) is not layers.ZeroPadding2D or pad.data_format != "channels_last":
        return None
    (top, bottom), (left, right) = pad.padding
    if top != bottom or left != right or len(consumer.input_tensors) != 1 or consumer.arguments.kwargs:
        return None
    if getattr(op, "data_format", None) != "channels_last" or getattr(op, "padding", None) != "valid":
        return None
    if type(op) in (layers.Conv2D, layers.DepthwiseConv2D) and "conv" in _patches.ORIGINAL:
        return top, left
    within_pool = type(op) is layers.MaxPooling2D and top <= op.pool_size[0] // 2 and left <= op.pool_size[1] // 2
    source = pad_node.input_tensors[0]._keras_history.operation
    if within_pool and "max_pool" in _patches.ORIGINAL and _is_plain_relu(source):
        return top, left
    return None


def _fresh_output(tensor) -> bool:
    """Whether ``tensor`` comes from a layer whose output is a new tensor that its backward pass does not use.

    Then a ReLU that is its only consumer may overwrite it (``torch.relu_``, as SMP's and timm's
    ``ReLU(inplace=True)``): one activation-sized allocation fewer per ReLU, and fewer holes between the
    activations that autograd keeps, which the allocator otherwise holds on to. BatchNormalization's
    (fused training kernel: ``torch.native_batch_norm`` keeps its input, not its output; inference: one
    ``addcmul``), Add's, Concatenate's and a Conv2D's/DepthwiseConv2D's without activation (convolution
    keeps its input and kernel) qualify. How a view is overwritten is decided per call (_relu_in_place).
    """
    from keras import activations, layers

    op = tensor._keras_history.operation
    if type(op) is layers.BatchNormalization:
        return "bn_call" in _patches.ORIGINAL and "batch_normalization" in _patches.ORIGINAL
    if type(op) in (layers.Add, layers.Concatenate):
        return True
    return type(op) in (layers.Conv2D, layers.DepthwiseConv2D) and op.activation is activations.linear


def _direct_candidate(node) -> bool:
    """Whether ``node`` is a stateless layer (``tables.direct_classes``) that may skip ``Layer.__call__`` (see
    _direct_call)."""
    kwargs = node.arguments.kwargs  # Keras records mask=None (and training=None) for layers that take them
    return type(node.operation) in direct_classes() and all(
        key in ("mask", "training") and value is None for key, value in kwargs.items()
    )


def _direct_calls_context():
    """``(training, autocast dtype)`` from the active Keras call context and autocast scope (mixed precision:
    the model's), or False when calls must go through Keras: under a distribution, or outside a call context
    (then Keras' ``__call__`` would resolve things this does not).
    """
    from keras.src.backend.common import global_state
    from keras.src.backend.common.variables import get_autocast_scope

    context = global_state.get_global_attribute("current_call_ctx")
    if context is None:
        return False
    from keras.src.distribution import distribution_lib

    if distribution_lib.distribution() is not None:
        return False
    scope = get_autocast_scope()
    return context.get_value("training"), None if scope is None else scope.dtype


def _direct_call_allowed(layer, args, autocast_dtype=None) -> bool:
    """The per-call conditions: no quantization/remat/activity loss; the autocast scope that ``Layer.__call__``
    would run ``call`` under is the active one (float32 layers, or a mixed-precision layer inside a model of
    the same policy); plain inputs already in the layer's input dtype (else Keras casts them)."""
    if (
        getattr(layer, "quantization_mode", None) is not None
        or layer._remat_mode
        or layer.activity_regularizer is not None
        or not layer.built
    ):
        return False
    compute = layer.compute_dtype
    if autocast_dtype is None:
        if compute != layer.variable_dtype:
            return False
    elif not (layer.autocast and compute == autocast_dtype):
        return False
    want = getattr(torch, layer.input_dtype, None)
    tensors = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    return all(type(x) is torch.Tensor and x.dtype is want and getattr(x, "_keras_mask", None) is None for x in tensors)


def _direct_call(layer, training):
    """``layer.call`` with the training flag Keras would resolve, without ``Layer.__call__``'s bookkeeping.

    For the built-in layers of :func:`_direct_candidate` called eagerly on tensors of their input dtype
    without masks, under the autocast scope they would get anyway (see :func:`_direct_call_allowed`),
    ``Layer.__call__`` (input conversion, input spec, build, call context, masks, autocast, distribution,
    activity regularizer) changes nothing but costs ~0.1 ms per layer: ~20 ms of a 65 ms batch-1 forward
    of a Unet-resnet34 at 256x256 on 2 cores.
    """
    if training is not None and layer._call_has_training_arg:
        return lambda *args, **kwargs: layer.call(*args, **{**kwargs, "training": training})
    return layer.call


def _relu_in_place(args, layer, direct, training):
    """The output of a ReLU step marked ``"relu_"`` by :func:`_schedule`, its input overwritten; None when this
    call must run the layer instead.

    The fast kernels return channels-last views (``base.permute(0, 2, 3, 1)``). Under autograd an in-place
    op on a view makes the backward pass copy the whole base gradient twice, so the ReLU overwrites the base
    and a new view of it is returned.
    """
    if not direct or training is False or not _direct_call_allowed(layer, args, training[1]):
        return None
    x = args[0]
    base = x._base
    if base is None or not (x.requires_grad and torch.is_grad_enabled()):
        return torch.relu_(x)
    if base.ndim == 4 and x.storage_offset() == base.storage_offset():
        view = base.permute(0, 2, 3, 1)
        if x.shape == view.shape and x.stride() == view.stride():
            return torch.relu_(base).permute(0, 2, 3, 1)
    return None


def _run_through_graph(function, original, inputs, operation_fn):
    """Keras' ``Function._run_through_graph`` (no ``call_fn``), dropping each tensor after its last use."""
    schedule = _schedule(function)
    if schedule is None:
        recording = recompute.recording()  # Keras' executor: its layers go unchecked
        run = recompute._keeping_saved(original) if recording else original
        return run(function, inputs, operation_fn=operation_fn)
    tensor_dict = {id(x): y for x, y in zip(function.inputs, tree.flatten(inputs))}
    lookup = getattr(function, "_get_operation_for_node", None)

    def operation(node):
        return operation_fn(lookup(node) if lookup is not None else node.operation)

    training = _direct_calls_context()
    fillers = _FILLERS[function]  # made with the schedule
    folds = _FOLDS.get(function)
    if folds and not (
        training is not False and not training[0] and training[1] is None and not torch.is_grad_enabled()
    ):
        folds = None  # BN folding: inference on float32 only
    folded = set()
    scope = recompute._recompute_scope(training)
    if scope is not None:  # the outermost training forward pass: BN outputs saved as recipes
        recompute._RECOMPUTE.registry = {}
        scope.__enter__()
    recording = recompute.recording()
    try:
        for (node, drop, fusion, direct), fill in zip(schedule, fillers):
            args, kwargs = fill(tensor_dict)
            pending = None
            if recording and fusion == "relu_" and type(args[0]) is torch.Tensor:
                # relu_ saves its result at the input's next version: what it will be is registered first
                pending = args[0]._version + 1
                recipe = recompute._step_recipe(node.operation, args, args[0])
                recompute._register_recipe(args[0], recipe, version=pending)
            if fusion == "skip":  # the consumer pads inside its kernel: pass the unpadded tensor on
                outputs = args[0]
            elif (
                fusion == "relu_"
                and (overwritten := _relu_in_place(args, node.operation, direct, training)) is not None
            ):
                outputs = overwritten  # the input's only use (see _fresh_output)
            elif fusion == "folded" and id(node.input_tensors[0]) in folded:
                outputs = args[0]  # already normalized by the folded convolution
            elif (
                folds
                and id(node) in folds
                and (result := _fold_conv_bn(node.operation, folds[id(node)].operation, args, fusion)) is not None
            ):
                outputs = result
                folded.add(id(node.outputs[0]))
            else:
                if direct and training is not False and _direct_call_allowed(node.operation, args, training[1]):
                    call = _direct_call(node.operation, training[0])
                else:
                    call = operation(node)
                if recording and not _takes_recipes(node.operation):
                    call = recompute._keeping_saved(call)
                if not isinstance(fusion, tuple):
                    outputs = call(*args, **kwargs)
                else:
                    _FUSED.padding = fusion[0]
                    try:
                        outputs = call(*args, **kwargs)
                    finally:
                        missed = _take_fused_padding() is not None
                    if missed:  # pragma: no cover - the layer did not reach a fused kernel: pad for real and rerun
                        outputs = operation(node)(operation(fusion[1])(args[0]), **kwargs)
            if pending is not None and args[0]._version != pending:
                recompute._forget_recipe(args[0], pending)  # not overwritten after all (the ReLU ran as a layer)
                pending = None
            if recording and pending is None:
                recompute._register_recipe(outputs, recompute._step_recipe(node.operation, args, outputs))
            del args, kwargs
            for x, y in zip(node.outputs, tree.flatten(outputs)):
                tensor_dict[id(x)] = y
            del outputs
            for tensor_id in drop:
                tensor_dict.pop(tensor_id, None)
    finally:
        if scope is not None:
            scope.__exit__(None, None, None)
            recompute._RECOMPUTE.registry = None
    missing = [i for i, x in enumerate(function.outputs) if id(x) not in tensor_dict]
    if missing:  # let Keras raise its own error message
        return original(function, inputs, operation_fn=operation_fn)
    return tree.pack_sequence_as(function._outputs_struct, [tensor_dict[id(x)] for x in function.outputs])


def run_through_graph(self, inputs, operation_fn=lambda op: op, call_fn=None):
    """Keras' ``Function._run_through_graph``, for the package's models through :func:`_run_through_graph` with the
    fast kernels on; for any other model (and symbolic passes: graph checks, output specs) Keras' own."""
    keras_run = original("run_through_graph")
    if call_fn is not None or not _context.wants(self) or _COMPILING():
        return keras_run(self, inputs, operation_fn=operation_fn, call_fn=call_fn)
    _context.COUNTERS["graph"] += 1
    return _context.run_in_mode(True, _run_through_graph, self, keras_run, inputs, operation_fn)


_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
TARGET_PATHS = {"run_through_graph": ("keras.src.ops.function", "Function", "_run_through_graph")}
ENTRIES = {"run_through_graph": run_through_graph}
