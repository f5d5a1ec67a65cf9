"""Interleaved A/B micro-experiments on the overheads (ratios, robust to a busy machine).

Each experiment runs A and B in the same process and alternates them call by call, so that a change of
machine load hits both sides; it prints median(A)/median(B) time ratios (>1: B is faster).

    KERAS_BACKEND=tensorflow python benchmarks/ab.py tf-jit       # compile(jit_compile=False/'auto') vs True
    KERAS_BACKEND=jax        python benchmarks/ab.py bn-fold      # BatchNormalization folded into convs
    KERAS_BACKEND=torch      python benchmarks/ab.py torch-layout # time share of NHWC<->NCHW copies
    KERAS_BACKEND=torch      python benchmarks/ab.py torch-kernels # Keras' kernels vs the package's fast ones
    KERAS_BACKEND=torch      python benchmarks/ab.py torch-recompute # BN outputs kept vs recomputed in backward
    KERAS_BACKEND=tensorflow python benchmarks/ab.py tf-kernels   # Keras' BatchNormalization vs the fused one
    python benchmarks/ab.py upsampling                            # UpSampling2D nearest vs bilinear
    python benchmarks/ab.py onnx                                  # the model vs its ONNX export on onnxruntime

Options: --backbone resnet34 --size 128 --batch 4 --steps 6.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def alternate(fns: dict, steps: int, warmup: int = 1) -> dict:
    """Call each function warmup times, then `steps` rounds A, B, (C...), alternating; median seconds each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for i in range(steps):
        names = list(fns) if i % 2 == 0 else list(reversed(list(fns)))
        for name in names:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, medians: dict, baseline: str) -> dict:
    base = medians[baseline]
    out = {
        "experiment": title,
        "median_s": medians,
        "speedup_vs_" + baseline: {k: base / v for k, v in medians.items()},
    }
    print(json.dumps(out), flush=True)
    return out


def _model(args, **kw):
    import segmentation_models as sm

    return sm.Unet(
        args.backbone,
        input_shape=(args.size, args.size, 3),
        classes=1,
        activation="sigmoid",
        encoder_weights=None,
        **kw,
    )


def _data(args):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.size, args.size, 3), dtype=np.float32)
    y = (rng.random((args.batch, args.size, args.size, 1)) > 0.5).astype("float32")
    return x, y


def exp_tf_jit(args):
    """TensorFlow: compile(jit_compile='auto') (= False on a CPU-only machine) vs True (XLA)."""
    import keras

    x, y = _data(args)
    models = {}
    for mode in ("auto", True):
        keras.utils.set_random_seed(0)
        m = _model(args)
        m.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", jit_compile=mode)
        models[str(mode)] = m
    m_auto = models["auto"]
    m_auto.make_train_function()
    print(f"jit_compile='auto' resolves to {m_auto.jit_compile!r} here", flush=True)
    report(
        "tf predict batch",
        alternate({k: (lambda m=m: m.predict_on_batch(x)) for k, m in models.items()}, args.steps),
        "auto",
    )
    report(
        "tf predict b1",
        alternate({k: (lambda m=m: m.predict_on_batch(x[:1])) for k, m in models.items()}, args.steps),
        "auto",
    )
    report(
        "tf train step",
        alternate({k: (lambda m=m: m.train_on_batch(x, y)) for k, m in models.items()}, args.steps),
        "auto",
    )


def fold_batchnorm(model):
    """A copy of ``model`` for inference with every BatchNormalization that directly follows a Conv2D (and is
    that conv's only consumer) folded into the conv's kernel and bias."""
    import keras
    import numpy as np

    fold = {}  # conv name -> bn layer
    consumers: dict[str, int] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for t in node.input_tensors:
                consumers[t._keras_history[0].name] = consumers.get(t._keras_history[0].name, 0) + 1
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            src = layer.input._keras_history[0]
            if type(src) is keras.layers.Conv2D and consumers.get(src.name) == 1 and src.groups == 1:
                fold[src.name] = layer
    bn_names = {bn.name for bn in fold.values()}

    class Passthrough(keras.layers.Layer):  # stands in for a folded BN (accepts BN's call arguments)
        def call(self, inputs, training=None, mask=None):
            return inputs

    def clone(layer):
        if layer.name in bn_names:
            return Passthrough(name=layer.name)
        if layer.name in fold:
            cfg = layer.get_config()
            cfg["use_bias"] = True
            return keras.layers.Conv2D.from_config(cfg)
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name in bn_names:
            continue
        target = folded.get_layer(layer.name)
        if layer.name in fold:
            bn = fold[layer.name]
            gamma, beta, mean, var = (
                np.asarray(keras.ops.convert_to_numpy(w))
                for w in (
                    bn.gamma if bn.scale else keras.ops.ones(bn.moving_mean.shape),
                    bn.beta if bn.center else keras.ops.zeros(bn.moving_mean.shape),
                    bn.moving_mean,
                    bn.moving_variance,
                )
            )
            scale = gamma / np.sqrt(var + bn.epsilon)
            weights = layer.get_weights()
            bias = weights[1] if len(weights) > 1 else np.zeros_like(mean)
            target.set_weights([weights[0] * scale, (bias - mean) * scale + beta])
        elif layer.weights:
            target.set_weights(layer.get_weights())
    return folded, len(fold)


def exp_bn_fold(args):
    """Inference: the model as built vs the same model with BatchNormalization folded into the convolutions."""
    import keras
    import numpy as np

    x, _ = _data(args)
    keras.utils.set_random_seed(0)
    model = _model(args)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial statistics, so that the equality check means something
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape).astype("float32"))
    folded, n = fold_batchnorm(model)
    err = float(np.abs(model.predict_on_batch(x) - folded.predict_on_batch(x)).max())
    print(f"folded {n} BatchNormalization layers; max |difference| of predictions {err:.2e}", flush=True)
    report(
        f"{keras.backend.backend()} predict batch (bn-fold)",
        alternate(
            {"as_built": lambda: model.predict_on_batch(x), "folded": lambda: folded.predict_on_batch(x)}, args.steps
        ),
        "as_built",
    )
    report(
        f"{keras.backend.backend()} predict b1 (bn-fold)",
        alternate(
            {"as_built": lambda: model.predict_on_batch(x[:1]), "folded": lambda: folded.predict_on_batch(x[:1])},
            args.steps,
        ),
        "as_built",
    )


def exp_torch_layout(args):
    """torch backend: share of time spent in layout copies (NHWC<->NCHW permutes made contiguous)."""
    import keras
    import torch
    from torch.profiler import ProfilerActivity, profile

    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    x, y = _data(args)
    model = _model(args)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    for name, fn in (("predict", lambda: model.predict_on_batch(x)), ("train", lambda: model.train_on_batch(x, y))):
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        totals = {}
        for evt in prof.key_averages():
            totals[evt.key] = evt.self_cpu_time_total
        total = sum(totals.values())
        layout = sum(v for k, v in totals.items() if k in ("aten::copy_", "aten::clone", "aten::contiguous"))
        conv = sum(v for k, v in totals.items() if "convolution" in k or "conv2d" in k or k.startswith("aten::mkldnn"))
        top = sorted(totals.items(), key=lambda kv: -kv[1])[:8]
        print(
            json.dumps(
                {
                    "experiment": f"torch-layout {name}",
                    "copy_share": layout / total,
                    "conv_share": conv / total,
                    "top_ops_ms": {k: v / 1e3 for k, v in top},
                }
            ),
            flush=True,
        )
    # the same convolution three ways: Keras (NHWC in, permuted inside), torch NCHW, torch channels_last
    conv = keras.layers.Conv2D(64, 3, padding="same", use_bias=False)
    xs = torch.rand(args.batch, args.size // 2, args.size // 2, 64)
    conv.build(xs.shape)
    w = conv.kernel.value.detach().permute(3, 2, 0, 1).contiguous()
    xn = xs.permute(0, 3, 1, 2).contiguous()
    xcl = xn.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        report(
            "torch conv 64->64 3x3",
            alternate(
                {
                    "keras_nhwc": lambda: conv(xs),
                    "torch_nchw": lambda: torch.nn.functional.conv2d(xn, w, padding=1),
                    "torch_channels_last": lambda: torch.nn.functional.conv2d(xcl, w, padding=1),
                },
                args.steps * 3,
            ),
            "keras_nhwc",
        )


def exp_torch_kernels(args):
    """torch backend: Keras' own code vs this package's fast paths (segmentation_models/accel).

    The same model, alternating call by call between Keras' own (``accel.disabled()``) and the fast paths (the
    default for the package's models).
    """
    import contextlib

    import keras
    import numpy as np

    from segmentation_models import accel

    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    x, y = _data(args)
    model = _model(args)

    def with_kernels(fn, fast):
        def call():
            with contextlib.nullcontext() if fast else accel.disabled():
                return fn()

        return call

    for name, fn in (
        ("predict batch", lambda: model.predict_on_batch(x)),
        ("predict b1", lambda: model.predict_on_batch(x[:1])),
    ):
        if name == "predict batch":
            a, b = with_kernels(fn, False)(), with_kernels(fn, True)()
            print(f"max |difference| of predictions {float(np.abs(a - b).max()):.2e}", flush=True)
        report(
            f"torch {name} (kernels)",
            alternate({"keras": with_kernels(fn, False), "fast": with_kernels(fn, True)}, args.steps),
            "keras",
        )
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    train = lambda: model.train_on_batch(x, y)  # noqa: E731
    report(
        "torch train step (kernels)",
        alternate({"keras": with_kernels(train, False), "fast": with_kernels(train, True)}, args.steps),
        "keras",
    )


def exp_tf_kernels(args):
    """TensorFlow: Keras' own BatchNormalization vs the package's fused one (segmentation_models/accel/tf_ops.py).

    Two copies of the same model, each traced (predict, batch-1 predict, train step) under its setting, so the
    compiled functions keep it; then alternating call by call.
    """
    import contextlib

    import keras
    import numpy as np

    from segmentation_models import accel

    assert keras.backend.backend() == "tensorflow", "run with KERAS_BACKEND=tensorflow"
    x, y = _data(args)
    models = {}
    for name, fused in (("keras", False), ("fused", True)):
        keras.utils.set_random_seed(0)
        model = _model(args)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
        with contextlib.nullcontext() if fused else accel.disabled():
            model.predict_on_batch(x), model.predict_on_batch(x[:1]), model.train_on_batch(x, y)  # traced here
        models[name] = model
    models["fused"].set_weights(models["keras"].get_weights())
    a, b = (np.asarray(m.predict_on_batch(x)) for m in models.values())
    print(f"max |difference| of predictions {float(np.abs(a - b).max()):.2e}", flush=True)
    calls = (
        ("predict batch", lambda m: m.predict_on_batch(x)),
        ("predict b1", lambda m: m.predict_on_batch(x[:1])),
        ("train step", lambda m: m.train_on_batch(x, y)),
    )
    for name, call in calls:
        report(
            f"tf {name} (fused batch norm)",
            alternate({k: (lambda m=m: call(m)) for k, m in models.items()}, args.steps),  # noqa: B023  (called in this iteration)
            "keras",
        )


def exp_torch_recompute(args):
    """torch backend: training steps with BatchNormalization outputs (and their activations) kept for the backward
    pass (``SM_TORCH_RECOMPUTE=0``) vs saved as recipes and recomputed there (``=1``, the default), alternating step by
    step in one process; also the bytes autograd keeps at the end of each forward pass. (Peak RSS needs separate
    processes: ``SM_TORCH_RECOMPUTE=0 python benchmarks/run.py ...`` against the default.)"""
    import os

    import keras
    import torch

    from segmentation_models.accel import recompute

    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    x, y = _data(args)
    model = _model(args)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")

    def kept_mb(recomputed: bool) -> float:
        """MB that autograd keeps from one training forward pass, parameters excluded."""
        forward = lambda: model(torch.as_tensor(x), training=True)  # noqa: E731
        params = sum(v.value.numel() * v.value.element_size() for v in model.trainable_variables)
        return (recompute.bytes_kept_for_backward(forward, recomputed) - params) / 2**20

    def step(flag):
        def call():
            os.environ["SM_TORCH_RECOMPUTE"] = flag
            return model.train_on_batch(x, y)

        return call

    try:
        print(
            f"activations kept for the backward pass: {kept_mb(False):.0f} MB with BN outputs kept, "
            f"{kept_mb(True):.0f} MB with them recomputed (parameters excluded)",
            flush=True,
        )
        report(
            "torch train step (BN outputs)", alternate({"kept": step("0"), "recomputed": step("1")}, args.steps), "kept"
        )
    finally:
        os.environ.pop("SM_TORCH_RECOMPUTE", None)


def exp_upsampling(args):
    """UpSampling2D nearest vs bilinear at a decoder shape, next to the 3x3 conv that follows it."""
    import keras
    import numpy as np

    h = args.size // 4
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).random((args.batch, h, h, 128), dtype=np.float32))
    near = keras.layers.UpSampling2D(2, interpolation="nearest")
    bil = keras.layers.UpSampling2D(2, interpolation="bilinear")
    conv = keras.layers.Conv2D(64, 3, padding="same")
    conv.build((None, 2 * h, 2 * h, 128))
    block = keras.Sequential([keras.Input((h, h, 128)), near, conv])

    def run(layer):
        return lambda: keras.ops.convert_to_numpy(layer(x))

    report(
        f"{keras.backend.backend()} upsampling (eager)",
        alternate({"nearest": run(near), "bilinear": run(bil), "nearest+conv3x3": run(block)}, args.steps * 3),
        "nearest",
    )


def exp_onnx(args):
    """The model on this backend (predict_on_batch, traced) vs its ONNX export on onnxruntime (CPU provider),
    batch and batch-1 inference; the export has dynamic batch and size, as `segmentation-models export` writes."""
    import tempfile

    import keras
    import onnxruntime

    from segmentation_models import export_model

    x, _ = _data(args)
    model = _model(args)
    with tempfile.TemporaryDirectory() as tmp:
        result = export_model(model, Path(tmp) / "model.onnx")
        print(
            f"exported in {result.seconds:.1f} s with {result.converter}; max |difference| {result.max_abs_diff:.1e}",
            flush=True,
        )
        session = onnxruntime.InferenceSession(str(Path(tmp) / "model.onnx"), providers=["CPUExecutionProvider"])
    model.predict_on_batch(x), model.predict_on_batch(x[:1])  # traced here
    for name, batch in (("predict batch", x), ("predict b1", x[:1])):
        report(
            f"{keras.backend.backend()} {name} vs onnxruntime",
            alternate(
                {
                    "keras": lambda b=batch: model.predict_on_batch(b),
                    "onnxruntime": lambda b=batch: session.run(None, {"image": b}),
                },
                args.steps,
            ),
            "keras",
        )


EXPERIMENTS = {
    "tf-jit": exp_tf_jit,
    "bn-fold": exp_bn_fold,
    "torch-layout": exp_torch_layout,
    "torch-kernels": exp_torch_kernels,
    "tf-kernels": exp_tf_kernels,
    "torch-recompute": exp_torch_recompute,
    "upsampling": exp_upsampling,
    "onnx": exp_onnx,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=sorted(EXPERIMENTS))
    p.add_argument("--backbone", default="resnet34")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args(argv)
    EXPERIMENTS[args.experiment](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
