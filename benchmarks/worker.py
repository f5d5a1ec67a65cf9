"""One measurement, in its own process: build one contender's model, time inference and training.

Run by `benchmarks/run.py` (one subprocess per contender and configuration, so that imports, threads and
peak memory never mix). Prints one line ``BENCH_RESULT {json}``. Contenders:

- ``ours``: this package on the Keras backend given by KERAS_BACKEND.
- ``sm101``: segmentation_models 1.0.1 on tf.keras (run with PYTHONPATH=.oracle/sm101, SM_FRAMEWORK=tf.keras).
- ``smp``: segmentation-models-pytorch from .bench/smp on torch (NCHW).
- ``matmul``: the matmul peak of this machine (numpy and torch float32; torch in the mixed-precision dtype and
  on the GPU with ``--device gpu``), the roofline for the FLOP fractions.

``--device gpu`` runs every contender on the GPU (an error, not a silent CPU run, when the framework sees none) and
records the framework's peak device memory; ``--mixed-precision bf16|fp16`` runs ours and 1.0.1 under Keras'
``mixed_bfloat16``/``mixed_float16`` policy and SMP under ``torch.autocast`` (with a ``GradScaler`` for fp16).

``--gated`` (``run.py --interleave``): the worker waits for a ``GO`` line on stdin before its build and before each
warm-up and timed call, announcing each wait with a ``BENCH_GATE`` line, so that the driver can run several
contenders' processes call by call in turns, one computing at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
GATE_PREFIX = "BENCH_GATE "
GATED = {"on": False}


def gate(label: str) -> None:
    """With ``--gated``: announce the next call and wait for the driver's turn (a line on stdin); else nothing."""
    if not GATED["on"]:
        return
    print(GATE_PREFIX + label, flush=True)
    if not sys.stdin.readline():  # the driver is gone
        sys.exit(3)


# 1.0.1 has no DeepLabV3+; SMP's encoder names for our backbones. SMP's own 'resnet34' encoder subclasses
# torchvision's ResNet (not installable here), so timm's identical ResNet-34 ('tu-resnet34') is used.
SM101_ARCHITECTURES = ("Unet", "FPN", "Linknet", "PSPNet")
SMP_ARCHITECTURES = {
    "Unet": "Unet",
    "Unet-smp": "Unet",
    "FPN": "FPN",
    "FPN-smp": "FPN",
    "DeepLabV3Plus": "DeepLabV3Plus",
    "Linknet": "Linknet",
    "PSPNet": "PSPNet",
    "UnetPlusPlus": "UnetPlusPlus",
    "MAnet": "MAnet",
    "PAN": "PAN",
    "DeepLabV3": "DeepLabV3",
    "UPerNet": "UPerNet",
    "SegFormer": "Segformer",
}
# Benchmark names for our architectures built with other arguments: "FPN-smp" is our FPN with SMP's pyramid
# (merged at stride 4, sum, dropout 0.2: the same model as SMP's FPN, 13.7 GFLOP per 256x256 image on resnet34);
# "Unet-smp" our Unet on SMP's encoder taps (the same model as SMP's Unet where 1.0.1 taps elsewhere: EfficientNet).
OUR_VARIANTS = {
    "FPN-smp": ("FPN", {"pyramid_style": "smp", "pyramid_aggregation": "sum", "pyramid_dropout": 0.2}),
    "Unet-smp": ("Unet", {"feature_layout": "smp"}),
}
SMP_ENCODERS = {
    "resnet18": "tu-resnet18",
    "resnet34": "tu-resnet34",
    "resnet50": "tu-resnet50",
    "efficientnetb0": "efficientnet-b0",
    "efficientnetb1": "efficientnet-b1",
}


class Skip(Exception):
    """This contender cannot run this configuration (the reason is reported, not an error)."""


def peak_rss_mb() -> float:
    """Max resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, warmup: int, steps: int, label: str = "call") -> dict:
    """Call ``fn`` (which must block until its result is ready) warmup+steps times; per-call seconds, and the
    page faults and system CPU seconds per timed call (the kernel's share: memory handed out again each step).
    Each call waits for its turn first (:func:`gate`) when the worker is gated."""
    first = []
    for i in range(warmup):
        gate(f"{label} warmup {i}")
        t0 = time.perf_counter()
        fn()
        first.append(time.perf_counter() - t0)
    times, starts = [], []
    faults = system = 0.0
    for i in range(steps):
        gate(f"{label} {i}")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        starts.append(time.time())  # wall clock: comparable across the processes of an interleaved round
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults += after.ru_minflt - usage.ru_minflt
        system += after.ru_stime - usage.ru_stime
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "times_s": times,
        "starts_unix_s": starts,
        "warmup_s": first,
        "steps": steps,
        "page_faults_per_call": faults / steps,
        "system_s_per_call": system / steps,
    }


def retain_freed_memory() -> bool:
    """segmentation_models.accel.allocator.retain_freed_memory() in a process that must not import the package (SMP's):
    the module is loaded from its file (it needs only the standard library)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sm_allocator", ROOT / "segmentation_models" / "accel" / "allocator.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.retain_freed_memory(True)


# --------------------------------------------------------------------------------------------- Keras
def build_keras(contender: str, arch: str, backbone: str, size: int):
    if contender == "ours":
        import segmentation_models as sm
        from segmentation_models.decoders import ARCHITECTURES

        arch, options = OUR_VARIANTS.get(arch, (arch, {}))
        if arch not in ARCHITECTURES:
            raise Skip(f"{arch} is not in this package yet (ARCHITECTURES has {sorted(ARCHITECTURES)})")
        if backbone not in sm.get_available_backbone_names():
            raise Skip(f"backbone {backbone} is not in this package yet")
        builder = functools.partial(ARCHITECTURES[arch], **options)
    else:
        import segmentation_models as sm

        if sm.__version__ != "1.0.1":  # without .oracle/sm101 on PYTHONPATH the import finds this package
            raise Skip("segmentation_models 1.0.1 is not installed in .oracle/sm101: run `make bench-env`")
        if arch not in SM101_ARCHITECTURES:
            raise Skip(f"segmentation_models 1.0.1 has no {arch}" + (" pyramid" if arch in OUR_VARIANTS else ""))
        builder = getattr(sm, arch)
    try:
        return builder(backbone, input_shape=(size, size, 3), classes=1, activation="sigmoid", encoder_weights=None)
    except ValueError as err:  # e.g. DeepLabV3+ needs a dilated encoder, which not every family offers yet
        if "cannot be dilated" in str(err):
            raise Skip(str(err).split(". ")[0]) from None
        raise


KERAS_POLICIES = {"off": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def keras_device(want: str) -> str:
    """The device Keras computes on ("cpu" or "gpu"); raises when a GPU is wanted and the backend has none."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        found = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    elif backend == "jax":
        import jax

        found = "gpu" if jax.devices()[0].platform == "gpu" else "cpu"
    else:
        from keras.src.backend.torch.core import get_device

        found = "gpu" if str(get_device()).startswith("cuda") else "cpu"
    if want == "gpu" and found != "gpu":
        raise RuntimeError(f"--device gpu: Keras' {backend} backend sees no GPU")
    return found


def framework_memory_keras(device: str = "cpu") -> dict:
    """Allocator statistics the backend reports on this device, where it has any."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            info = tf.config.experimental.get_memory_info("GPU:0" if device == "gpu" else "CPU:0")
            return {"peak_mb": info["peak"] / 2**20}
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            if stats and "peak_bytes_in_use" in stats:
                return {"peak_mb": stats["peak_bytes_in_use"] / 2**20}
        if backend == "torch" and device == "gpu":
            import torch

            return {"peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    except Exception as err:  # noqa: BLE001 - not available on CPU for some backends
        return {"unavailable": f"{type(err).__name__}: {err}"[:200]}
    return {"unavailable": f"{backend} reports no allocator statistics on {device.upper()}"}


OTHER_FRAMEWORKS = {
    "tensorflow": ("jax", "jaxlib", "torch"),
    "jax": ("tensorflow", "torch"),
    "torch": ("tensorflow", "jax", "jaxlib"),
}
# The `[data]` extra (albumentations' OpenCV, matplotlib): Keras imports both when installed (its
# keras.visualization module), ~45 MB of resident memory; `pip install segmentation-models-keras[torch]` lacks them.
DATA_EXTRA = ("cv2", "matplotlib")


def hide_other_frameworks(backend: str) -> list[str]:
    """Measure ours as `pip install segmentation-models-keras[<backend>]` installs it: the other backends'
    frameworks and the `[data]` extra absent. With JAX installed, Keras imports it on every backend (its Orbax
    checkpoint callback): ~300 MB of resident memory on torch that a torch-only user, and SMP, never carry."""
    names = [n for n in OTHER_FRAMEWORKS.get(backend, ()) + DATA_EXTRA if n not in sys.modules]
    for name in names:
        sys.modules[name] = None  # `import name` raises ModuleNotFoundError; importlib.util.find_spec gives None
    return names


def run_keras(args) -> dict:
    hidden = [] if args.with_other_frameworks else hide_other_frameworks(os.environ.get("KERAS_BACKEND", "tensorflow"))
    import keras
    import numpy as np

    from benchmarks.flops import keras_model_flops

    if args.contender == "ours":  # the package's seeding: no TensorFlow import on JAX/torch (~0.5 GB resident)
        from segmentation_models.utils import set_random_seed

        set_random_seed(0)
    else:  # 1.0.1 runs on TensorFlow only
        keras.utils.set_random_seed(0)
    device = keras_device(args.device)
    if KERAS_POLICIES[args.mixed_precision]:
        keras.mixed_precision.set_global_policy(KERAS_POLICIES[args.mixed_precision])
    t0 = time.perf_counter()
    model = build_keras(args.contender, args.arch, args.backbone, args.size)
    result = {
        "build_s": time.perf_counter() - t0,
        "flops_per_image": keras_model_flops(model),
        "params": int(model.count_params()),
        "backend": keras.backend.backend(),
        "rss_after_build_mb": peak_rss_mb(),
        "hidden_frameworks": hidden,
        "device": device,
        "mixed_precision": args.mixed_precision,
    }
    if args.contender == "ours" and args.retain_freed_memory:  # as the command line runs: glibc keeps freed memory
        from segmentation_models import accel

        accel.enable(allocator=True)
    if keras.backend.backend() == "torch" and args.contender == "ours":
        from segmentation_models import accel

        status = accel.status()
        result["torch_fast_kernels"] = bool(status["installed"])
        result["retains_freed_memory"] = status["allocator"]
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.size, args.size, 3), dtype=np.float32)
    y = (rng.random((args.batch, args.size, args.size, 1)) > 0.5).astype("float32")
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", jit_compile=jit)
    result["jit_compile"] = args.jit_compile
    if "infer" in args.phases:
        x1 = x[:1]
        result["infer_b1"] = timed(lambda: model.predict_on_batch(x1), args.warmup, args.infer_steps, "infer_b1")
        result["infer_batch"] = timed(lambda: model.predict_on_batch(x), args.warmup, args.infer_steps, "infer_batch")
        result["peak_rss_infer_mb"] = peak_rss_mb()
    if "train" in args.phases:
        result["train"] = timed(lambda: model.train_on_batch(x, y), args.warmup, args.steps, "train")
        result["peak_rss_train_mb"] = peak_rss_mb()
    result["framework_memory"] = framework_memory_keras(device)
    result["tensorflow_imported"] = sys.modules.get("tensorflow") is not None  # its ~0.5 GB are in the RSS
    result["jax_imported"] = sys.modules.get("jax") is not None
    return result


# ----------------------------------------------------------------------------------------------- SMP
def run_smp(args) -> dict:
    import numpy as np
    import torch

    from benchmarks.flops import torch_model_flops
    from benchmarks.smp_env import import_smp

    if args.arch not in SMP_ARCHITECTURES:
        raise Skip(f"SMP has no {args.arch}")
    if args.backbone not in SMP_ENCODERS:
        raise Skip(f"no SMP encoder mapped for {args.backbone} (benchmarks/worker.py SMP_ENCODERS)")
    try:
        smp = import_smp()
    except ImportError as err:
        raise Skip(str(err)) from None
    if args.device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("--device gpu: torch sees no GPU")
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    mixed = TORCH_DTYPES.get(args.mixed_precision)

    def autocast():
        return torch.autocast(device.type, dtype=getattr(torch, mixed)) if mixed else contextlib.nullcontext()

    retained = args.retain_freed_memory and retain_freed_memory()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = getattr(smp, SMP_ARCHITECTURES[args.arch])(
        encoder_name=SMP_ENCODERS[args.backbone], encoder_weights=None, classes=1
    )
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((args.batch, 3, args.size, args.size), dtype=np.float32))
    x = x.to(device).contiguous(memory_format=memory_format)
    y = torch.from_numpy((rng.random((args.batch, 1, args.size, args.size)) > 0.5).astype("float32")).to(device)
    result = {
        "build_s": time.perf_counter() - t0,
        "encoder": SMP_ENCODERS[args.backbone],
        "flops_per_image": torch_model_flops(model, x[:1]),
        "params": int(sum(p.numel() for p in model.parameters())),
        "backend": "torch",
        "torch_threads": torch.get_num_threads(),
        "channels_last": bool(args.channels_last),
        "rss_after_build_mb": peak_rss_mb(),
        "device": args.device,
        "mixed_precision": args.mixed_precision,
        "retains_freed_memory": bool(retained),
    }
    if "infer" in args.phases:
        model.eval()
        x1 = x[:1].contiguous(memory_format=memory_format)

        def infer(batch):
            with torch.inference_mode(), autocast():
                return model(batch).float().cpu().numpy()

        result["infer_b1"] = timed(lambda: infer(x1), args.warmup, args.infer_steps, "infer_b1")
        result["infer_batch"] = timed(lambda: infer(x), args.warmup, args.infer_steps, "infer_batch")
        result["peak_rss_infer_mb"] = peak_rss_mb()
    if "train" in args.phases:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        scaler = torch.amp.GradScaler(device.type, enabled=args.mixed_precision == "fp16")

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return loss.item()

        result["train"] = timed(train_step, args.warmup, args.steps, "train")
        result["peak_rss_train_mb"] = peak_rss_mb()
    if device.type == "cuda":
        result["framework_memory"] = {"peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    else:
        result["framework_memory"] = {"unavailable": "torch reports no allocator statistics on CPU"}
    return result


# -------------------------------------------------------------------------------------------- matmul
def run_matmul(args) -> dict:
    """Best float32 GFLOP/s of square matmuls (numpy/BLAS and torch), best of several repeats."""
    import numpy as np

    n, repeats = args.matmul_n, args.matmul_repeats
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    out = {"n": n}

    def best_gflops(fn):
        fn()
        best = min(timed(fn, 0, repeats)["min_s"], 1e9)
        return 2 * n**3 / best / 1e9

    out["numpy_gflops"] = best_gflops(lambda: a @ b)
    if not getattr(args, "matmul_torch", True):
        out["peak_gflops"] = out["numpy_gflops"]
        return out
    try:
        import torch
    except ImportError:
        out["peak_gflops"] = out["numpy_gflops"]
        return out
    gpu = getattr(args, "device", "cpu") == "gpu"
    if gpu and not torch.cuda.is_available():
        raise RuntimeError("--device gpu: torch sees no GPU")
    device = "cuda" if gpu else "cpu"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
    out["torch_gflops"] = best_gflops(lambda: (torch.mm(ta, tb), sync()))
    mixed = TORCH_DTYPES.get(getattr(args, "mixed_precision", "off"))
    if mixed:  # the roofline of a mixed-precision run: matmuls in the half dtype
        ha, hb = ta.to(getattr(torch, mixed)), tb.to(getattr(torch, mixed))
        out[f"torch_{mixed}_gflops"] = best_gflops(lambda: (torch.mm(ha, hb), sync()))
        out["peak_gflops"] = out[f"torch_{mixed}_gflops"]
    else:
        out["peak_gflops"] = max(out["numpy_gflops"], out["torch_gflops"]) if not gpu else out["torch_gflops"]
    out["device"] = device
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contender", choices=("ours", "sm101", "smp", "matmul"), required=True)
    p.add_argument("--arch", default="Unet")
    p.add_argument("--backbone", default="resnet34")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--infer-steps", type=int, default=5, help="timed inference calls (batch 1 and batched)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (tracing/compilation)")
    p.add_argument("--phases", default="infer,train")
    p.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="Keras compile(jit_compile=...) for ours/sm101",
    )
    p.add_argument("--channels-last", action="store_true", help="SMP: channels_last memory format")
    p.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="SMP: glibc keeps freed memory, as segmentation_models sets it on the torch backend",
    )
    p.add_argument(
        "--with-other-frameworks",
        action="store_true",
        help="ours/sm101: let Keras import the other backends' frameworks and OpenCV/matplotlib when installed",
    )
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--mixed-precision", choices=("off", "bf16", "fp16"), default="off")
    p.add_argument(
        "--gated",
        action="store_true",
        help="wait for a GO line on stdin before the build and each call (run.py --interleave)",
    )
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--matmul-repeats", type=int, default=5)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    GATED["on"] = args.gated and args.contender != "matmul"
    gate("build")  # before the frameworks' imports: they take seconds of CPU too
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # for `benchmarks.*`; 1.0.1 comes first on PYTHONPATH when it is measured
    record = {
        "contender": args.contender,
        "arch": args.arch,
        "backbone": args.backbone,
        "size": args.size,
        "batch": args.batch,
        "keras_backend": os.environ.get("KERAS_BACKEND"),
    }
    try:
        if args.contender == "matmul":
            record.update(run_matmul(args))
        elif args.contender == "smp":
            record.update(run_smp(args))
        else:
            record.update(run_keras(args))
        record["status"] = "ok"
    except Skip as reason:
        record.update(status="skipped", reason=str(reason))
    record["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_PREFIX + json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
