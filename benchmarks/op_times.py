"""Where a step's time goes on torch: every aten operator of ours' or SMP's step timed, summed per operator.

A `TorchDispatchMode` times each operator call of a few steady-state steps (after warm-up steps, so the
allocator has settled and no page faults are counted; the fault count is printed). The total per step, the
operators by time and the heaviest (operator, first tensor shape) pairs are printed. Operator times are the
kernels' own (plus ~5 us of Python per call for the mode); the step time under the mode minus the operator
total is the framework's Python overhead, inflated by the mode. Unlike `torch.profiler`, nothing is allocated
while timing, so memory-bound operators are not charged page faults that the profiler's own allocations cause.

    python benchmarks/op_times.py ours PAN resnet34                   # training step, 256x256 batch 8
    python benchmarks/op_times.py smp PAN resnet34                    # SMP 0.6's PAN (see benchmarks/smp_env.py)
    python benchmarks/op_times.py ours PAN resnet34 --phase infer --batch 1
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import defaultdict

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_step(contender: str, arch: str, backbone: str, size: int, batch: int, phase: str):
    """A no-argument function running one training step (or one inference call) of the model."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = (rng.random((batch, size, size, 1)) > 0.5).astype("float32")
    if contender == "ours":  # built as the benchmark worker builds it (FPN-smp, Unet-smp: SMP's variants)
        import keras

        from benchmarks.worker import build_keras

        model = build_keras("ours", arch, backbone, size)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
        return (lambda: model.train_on_batch(x, y)) if phase == "train" else (lambda: model.predict_on_batch(x))
    from benchmarks.smp_env import import_smp
    from benchmarks.worker import SMP_ARCHITECTURES, SMP_ENCODERS

    smp = import_smp()
    model = getattr(smp, SMP_ARCHITECTURES[arch])(encoder_name=SMP_ENCODERS[backbone], encoder_weights=None, classes=1)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y.transpose(0, 3, 1, 2).copy())
    if phase == "infer":
        model.eval()

        def infer():
            with torch.inference_mode():
                return model(xt).float().numpy()

        return infer
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def train():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        loss.backward()
        optimizer.step()
        return loss.item()

    return train


def time_operators(step, steps: int) -> tuple[float, int, dict, dict]:
    """(wall seconds per step under the mode, page faults, {(op, shape): seconds}, {(op, shape): calls})."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    seconds, calls = defaultdict(float), defaultdict(int)

    class Timer(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            elapsed = time.perf_counter() - start
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            key = (func.__name__.split(".")[0], tuple(first.shape) if first is not None else ())
            seconds[key] += elapsed
            calls[key] += 1
            return out

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    with Timer():
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - start) / steps
    return wall, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, seconds, calls


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("contender", choices=("ours", "smp"))
    p.add_argument("arch")
    p.add_argument("backbone")
    p.add_argument("--phase", choices=("train", "infer"), default="train")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator and kernel caches)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=14, help="rows of each table")
    args = p.parse_args(argv)
    step = build_step(args.contender, args.arch, args.backbone, args.size, args.batch, args.phase)
    for _ in range(args.warmup):
        step()
    plain = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        plain.append(time.perf_counter() - start)
    wall, faults, seconds, calls = time_operators(step, args.steps)
    n = args.steps
    total = sum(seconds.values()) / n
    print(
        f"{args.contender} {args.arch}-{args.backbone} {args.phase} {args.size}x{args.size} batch {args.batch}: "
        f"{min(plain):.3f} s per step (best of {n}), {wall:.3f} s under the timing mode, operators "
        f"{total:.3f} s, page faults {faults}"
    )
    by_op, op_calls = defaultdict(float), defaultdict(int)
    for (name, _), value in seconds.items():
        by_op[name] += value
    for (name, _), count in calls.items():
        op_calls[name] += count
    print("ms per step  calls  operator")
    for name, value in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{1e3 * value / n:11.1f}  {op_calls[name] // n:5d}  {name}")
    print("ms per step  calls  operator, first tensor's shape")
    for key, value in sorted(seconds.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{1e3 * value / n:11.1f}  {calls[key] // n:5d}  {key[0]} {key[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
