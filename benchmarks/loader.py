"""Data loader rate: does `model.fit` fed by the package's loader keep up with training on in-memory batches?

Issue 7: "the data loader with augmentation sustains >= 95% of the pure compute step rate". Both sides run
the same compiled model through `model.fit` on the current KERAS_BACKEND, so the only difference is the data
source:

- (a) **in memory**: a `keras.utils.PyDataset` that returns a few fixed batches (made once by the loader, so
  shapes and dtypes are identical) without any work;
- (b) **loader**: `segmentation_models.data.SegmentationLoader` built as `segmentation-models train` builds it
  (default joint augmentation, the backbone's preprocessing, random crops, the CLI's worker defaults), reading
  real PNG files: CamVid's train split from ``../shared/data/camvid`` when present, otherwise a generated
  folder of 480x360 images and masks in a temporary directory.

The model is compiled as the CLI compiles it (Adam with the cosine schedule, categorical cross-entropy,
mean IoU and accuracy). The two sides alternate for ``--rounds`` rounds (so that a change of machine load hits
both); each round is one `fit` call of ``--warmup`` untimed steps then ``--steps`` timed steps, and the best
round of each side is kept (each round's own ratio and their median are printed too). The model is traced
once and run ``--settle`` untimed steps before the rounds. With the loader's decoded-image cache
on (the CLI default), one untimed pass over the data set first stands for the first epoch, so the rounds
measure the steady state of epochs 2+; ``--cache-mb 0`` measures every image decoded from its file (what the
first epoch costs). The process CPU time per step of both sides is reported as well (a load-robust view: on
a machine whose cores the compute keeps busy, the wall ratio approaches the CPU ratio). The loader's own cost
is profiled stage by stage on the main thread (decode, rescale, augment, collate: pad/float/preprocessing/
one-hot), in process CPU milliseconds per batch.

    python benchmarks/loader.py                       # Unet-resnet34, 256x256, batch 8, 3 rounds
    python benchmarks/loader.py --quick               # 128x128, few steps: a smoke test (< 2 minutes quiet)
    python benchmarks/loader.py --cache-mb 0          # every image read from its file (the first epoch)
    python benchmarks/loader.py --profile-only        # only the loader's stage profile (no model)
    KERAS_BACKEND=jax python benchmarks/loader.py --workers 2 --multiprocessing --json loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
TARGET = 0.95


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="Unet")
    p.add_argument("--backbone", default="resnet34")
    p.add_argument("--size", type=int, default=None, help="training crop, a multiple of 32 (default 256; --quick 128)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 20; --quick 4)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps at the start of each round (default 3; --quick 2)"
    )
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds, best kept (default 3; --quick 2)")
    p.add_argument(
        "--settle",
        type=int,
        default=None,
        help="untimed steps on the in-memory batches before the first round: the process' own warm-up "
        "(kernel and allocator caches), which 3 warm-up steps do not cover (default 12; --quick 2)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resize images by this factor before cropping (default size/256: CamVid's 480x360 frames at "
        "full resolution for 256 crops, halved for 128)",
    )
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: the CLI's default)")
    p.add_argument("--multiprocessing", action="store_true", help="worker processes instead of threads")
    p.add_argument("--max-queue-size", type=int, default=None, help="prefetched batches (default: the loader's)")
    p.add_argument(
        "--cache-mb",
        type=float,
        default=None,
        help="decoded-image cache (default: the CLI's); 0 measures reading every image from its file",
    )
    p.add_argument("--data", default=None, help="CamVid folder (default ../shared/data/camvid when present)")
    p.add_argument("--generated", action="store_true", help="use generated PNG files even when CamVid is present")
    p.add_argument("--profile-batches", type=int, default=4, help="batches profiled stage by stage (0: none)")
    p.add_argument("--profile-only", action="store_true", help="only profile the loader's stages (no model)")
    p.add_argument("--quick", action="store_true", help="128x128, 4 timed steps, 2 rounds (a smoke test)")
    p.add_argument("--json", default=None, help="write the result record here")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (
        ("size", 256, 128),
        ("steps", 20, 4),
        ("warmup", 3, 2),
        ("rounds", 3, 2),
        ("settle", 12, 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.size % 32:
        p.error(f"--size must be a multiple of 32, got {args.size}")
    if args.scale is None:
        args.scale = args.size / 256
    if min(args.steps, args.rounds, args.batch) < 1 or args.warmup < 1 or args.settle < 0:
        p.error("--steps, --rounds, --batch and --warmup must be >= 1, --settle >= 0")
    return args


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


# ---------------------------------------------------------------------------------------------- data
def write_generated_dataset(folder: Path, n: int, seed: int = 0, classes: int = 11) -> Path:
    """``n`` 480x360 RGB PNG images and class-index masks: blocky class regions with smooth shading and
    noise, so that the files compress (and decode) roughly like photographs."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    palette = rng.integers(30, 226, (classes, 3))
    yy, xx = np.mgrid[:360, :480]
    for i in range(n):
        coarse = rng.integers(0, classes, (9, 12)).astype("uint8")
        mask = cv2.resize(coarse, (480, 360), interpolation=cv2.INTER_NEAREST)
        shade = 0.7 + 0.3 * np.sin(xx / rng.uniform(40, 120) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(40, 120))
        image = palette[mask] * shade[..., None] + rng.normal(0, 6, (360, 480, 3))
        Image.fromarray(np.clip(image, 0, 255).astype("uint8")).save(folder / "images" / f"frame_{i:04d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"frame_{i:04d}.png")
    return folder


def open_dataset(args, tmp: Path):
    from segmentation_models import data

    root = Path(args.data) if args.data else CAMVID
    if not args.generated and data.is_camvid(root):
        return data.from_camvid(root, "train"), f"CamVid train ({root})"
    if args.data and not args.generated:
        raise SystemExit(f"--data {root} is not a CamVid folder (train/ + trainannot/)")
    n = max(64, args.batch * (args.warmup + args.steps + 2))
    folder = write_generated_dataset(tmp / "generated", n)
    return data.from_folders(folder / "images", folder / "masks", classes=11), f"generated 480x360 PNGs ({n})"


def cli_defaults() -> dict:
    """The data-loading defaults of `segmentation-models train` (its argument parser)."""
    import argparse as _argparse

    from segmentation_models.cli import train as cli_train

    parser = _argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_train.add_parser(sub)
    ns = parser.parse_args(["train", "--data", "."])
    return {"workers": ns.workers, "multiprocessing": ns.multiprocessing, "cache_mb": ns.cache_mb}


def make_loader(dataset, args):
    """The training loader exactly as `segmentation_models.training.train` builds it."""
    from segmentation_models import data
    from segmentation_models.preprocessing import get_preprocessing

    kw = {}
    if args.max_queue_size is not None:
        kw["max_queue_size"] = args.max_queue_size
    return data.SegmentationLoader(
        dataset,
        args.batch,
        preprocessing=get_preprocessing(args.backbone),
        training=True,
        crop_size=(args.size, args.size),
        augment=True,
        scale=args.scale,
        workers=args.workers,
        use_multiprocessing=args.multiprocessing,
        cache_mb=args.cache_mb,
        seed=0,
        **kw,
    )


def profile_loader(loader, batches: int, cached: bool = False) -> dict:
    """Process CPU milliseconds per batch of each loader stage, run serially on this thread (nothing else runs
    in the process meanwhile, so this is the loader's CPU cost, little affected by other processes' load):
    reading the files (or, with ``cached``, the loader's cache), rescaling, augmentation, collation (pad,
    float, preprocessing, one-hot)."""
    from segmentation_models.data.augment import rescale

    stages = {"decode": 0.0, "rescale": 0.0, "augment": 0.0, "collate": 0.0}
    n = min(batches, len(loader))
    for b in range(n):
        samples = []
        for j in loader.batch_indices(b):
            t0 = time.process_time()
            if cached:
                image, mask = loader.decoded_sample(int(j))
                t1 = t2 = time.process_time()
            else:
                image, mask = loader.dataset.load(int(j))
                t1 = time.process_time()
                image, mask = rescale(image, mask, loader.scale)
                t2 = time.process_time()
            image, mask = loader._augment(image, mask, int(j))
            t3 = time.process_time()
            samples.append((image, mask))
            stages["decode"] += t1 - t0
            stages["rescale"] += t2 - t1
            stages["augment"] += t3 - t2
        t0 = time.process_time()
        loader.collate(samples)  # pad, float, backbone preprocessing, one-hot targets, weights
        stages["collate"] += time.process_time() - t0
    out = {k: 1e3 * v / n for k, v in stages.items()}
    out["total"] = sum(out.values())
    return out


# --------------------------------------------------------------------------------------------- timing
class StepTimer:
    """Wall and process CPU seconds between the end of step ``warmup - 1`` and the end of the last step of one
    `fit` call. The loss is pulled to the host at both ends, so asynchronous backends (JAX) are measured to
    completion. The process CPU time includes the loader's threads (not worker processes)."""

    def __init__(self, warmup: int, steps: int):
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch in (warmup - 1, warmup + steps - 1):
                    keras.ops.convert_to_numpy((logs or {}).get("loss", 0.0))
                    timer.marks.append((time.perf_counter(), time.process_time()))

        self.marks: list[tuple[float, float]] = []
        self.callback = _Callback()

    def seconds(self) -> tuple[float, float]:
        if len(self.marks) != 2:
            raise RuntimeError(f"expected 2 timing marks, got {len(self.marks)} (did fit stop early?)")
        return self.marks[1][0] - self.marks[0][0], self.marks[1][1] - self.marks[0][1]


def fit_rate(model, source, args) -> tuple[float, float]:
    """(images per second, process CPU seconds per step) of the timed steps of one `fit` call on ``source``."""
    timer = StepTimer(args.warmup, args.steps)
    model.fit(
        source, epochs=1, steps_per_epoch=args.warmup + args.steps, shuffle=False, verbose=0, callbacks=[timer.callback]
    )
    wall, cpu = timer.seconds()
    return args.batch * args.steps / wall, cpu / args.steps


def summarize_rounds(rates: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict:
    """The verdict of the rounds: best rate of each side and their ratio (PASS at >= TARGET), the least process CPU
    per step of each side and (a)/(b) of it, and each round's own (b)/(a) with their median: the two sides of a
    round run back to back, so that ratio is the least disturbed by a host whose speed drifts (rounds of one side
    differ by up to 50% on the shared 2-core hosts of docs/benchmarks.md)."""
    best_memory, best_loader = max(rates["memory"]), max(rates["loader"])
    ratio = best_loader / best_memory
    paired = [b / a for a, b in zip(rates["memory"], rates["loader"])]
    return dict(
        rates_in_memory=rates["memory"],
        rates_loader=rates["loader"],
        best_in_memory=best_memory,
        best_loader=best_loader,
        ratio=ratio,
        target=TARGET,
        passed=ratio >= TARGET,
        cpu_s_per_step_in_memory=cpu["memory"],
        cpu_s_per_step_loader=cpu["loader"],
        cpu_ratio=min(cpu["memory"]) / min(cpu["loader"]),
        paired_ratios=paired,
        median_paired_ratio=float(np.median(paired)),
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    import keras

    from segmentation_models import training

    defaults = cli_defaults()
    if args.workers is None:
        args.workers = defaults["workers"]
    args.multiprocessing = args.multiprocessing or defaults["multiprocessing"]
    if args.cache_mb is None:
        args.cache_mb = defaults["cache_mb"]
    keras.utils.set_random_seed(0)
    record = {
        "backend": keras.backend.backend(),
        "arch": args.arch,
        "backbone": args.backbone,
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "settle": args.settle,
        "scale": args.scale,
        "workers": args.workers,
        "multiprocessing": args.multiprocessing,
        "cpus": os.cpu_count(),
        "load_before": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="sm_loader_bench_") as tmp:
        dataset, source_name = open_dataset(args, Path(tmp))
        loader = make_loader(dataset, args)
        record.update(
            data=source_name,
            max_queue_size=loader.max_queue_size,
            cache_mb=loader.cache_mb,
            loader_batches_per_epoch=len(loader),
        )
        if len(loader) < args.warmup + args.steps:
            raise SystemExit(
                f"{source_name} gives {len(loader)} batches of {args.batch}, fewer than warmup + steps "
                f"({args.warmup + args.steps}): lower --steps or use --generated"
            )
        print(
            f"backend {record['backend']}, {args.arch}-{args.backbone} {args.size}x{args.size} batch {args.batch}; "
            f"data: {source_name}, scale {args.scale:g}; loader: {args.workers} "
            f"{'processes' if args.multiprocessing else 'threads'}, queue {loader.max_queue_size}, "
            f"cache {loader.cache_mb:g} MB; "
            f"load average {record['load_before']}",
            flush=True,
        )

        if args.profile_batches:
            record["loader_ms_per_batch"] = profile_loader(loader, args.profile_batches)
            print(
                "loader stages, CPU ms per batch, reading the files: "
                + ", ".join(f"{k} {v:.1f}" for k, v in record["loader_ms_per_batch"].items()),
                flush=True,
            )

        if loader.cache_mb:
            # what every epoch after the first sees: decoded images from the cache (steps after the first epoch)
            t0 = time.perf_counter()
            for i in range(len(dataset)):
                loader.decoded_sample(i)
            record["first_epoch_decode_s"] = round(time.perf_counter() - t0, 2)
            record["cached_samples"] = len(loader._cache)
            print(
                f"first epoch's decoding: {record['first_epoch_decode_s']} s; {len(loader._cache)} of "
                f"{len(dataset)} samples cached ({loader._cache_bytes / 2**20:.0f} MB)",
                flush=True,
            )
            if args.profile_batches:
                record["loader_ms_per_batch_cached"] = profile_loader(loader, args.profile_batches, cached=True)
                print(
                    "after the first epoch (cached): "
                    + ", ".join(f"{k} {v:.1f}" for k, v in record["loader_ms_per_batch_cached"].items()),
                    flush=True,
                )
        if args.profile_only:
            if args.json:
                Path(args.json).write_text(json.dumps(record, indent=1))
            return 0
        fixed = [loader[i] for i in range(2)]

        class InMemoryBatches(keras.utils.PyDataset):
            """The same few ready batches again and again, with no work (workers=1: no prefetch threads)."""

            def __init__(self):
                super().__init__(workers=1)

            def __len__(self):
                return max(args.warmup + args.steps, args.settle)

            def __getitem__(self, i):
                return fixed[i % len(fixed)]

        model = training.build_model(
            {"arch": args.arch, "backbone": args.backbone, "encoder_weights": None}, dataset.num_classes
        )
        tcfg = {"epochs": 1, "lr": 1e-3, "schedule": "cosine", "optimizer": "adam", "weight_decay": None}
        model.compile(
            training.make_optimizer(tcfg, 1000),
            loss=training.get_loss("categorical_crossentropy"),
            metrics=training.get_metrics(["mean_iou", "accuracy"], dataset.num_classes),
        )
        t0 = time.perf_counter()
        model.fit(InMemoryBatches(), epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)  # trace/compile
        record["compile_s"] = round(time.perf_counter() - t0, 1)
        print(f"traced/compiled in {record['compile_s']} s", flush=True)
        if args.settle:
            # the first tens of steps of a process run slower (measured on torch: 2.5 img/s in the first timed
            # round after 3 warm-up steps, 3.0-3.4 later): without this, round 1's in-memory side is never the best
            t0 = time.perf_counter()
            model.fit(InMemoryBatches(), epochs=1, steps_per_epoch=args.settle, shuffle=False, verbose=0)
            record["settle_s"] = round(time.perf_counter() - t0, 1)
            print(f"{args.settle} settling steps in {record['settle_s']} s", flush=True)

        rates = {"memory": [], "loader": []}
        cpu = {"memory": [], "loader": []}
        for r in range(args.rounds):
            order = ("memory", "loader") if r % 2 == 0 else ("loader", "memory")
            for side in order:
                source = InMemoryBatches() if side == "memory" else loader
                rate, cpu_per_step = fit_rate(model, source, args)
                rates[side].append(rate)
                cpu[side].append(cpu_per_step)
            print(
                f"round {r + 1}: in memory {rates['memory'][-1]:.2f} img/s ({cpu['memory'][-1]:.2f} CPU s/step), "
                f"loader {rates['loader'][-1]:.2f} img/s ({cpu['loader'][-1]:.2f} CPU s/step) "
                f"(load {load_average()})",
                flush=True,
            )

    record.update(summarize_rounds(rates, cpu), load_after=load_average())
    workers = f"{args.workers} {'processes' if args.multiprocessing else 'threads'}"
    print(f"(a) in-memory batches: {record['best_in_memory']:.2f} img/s (best of {args.rounds})")
    print(f"(b) loader ({workers}): {record['best_loader']:.2f} img/s")
    if not args.multiprocessing:
        print(
            f"process CPU per step, least of {args.rounds}: (a) {min(cpu['memory']):.2f} s, "
            f"(b) {min(cpu['loader']):.2f} s; (a)/(b) = {record['cpu_ratio']:.3f}"
            " (the ratio to expect where compute keeps every core busy)"
        )
    print(
        "ratio (b)/(a) of each round: "
        + ", ".join(f"{r:.3f}" for r in record["paired_ratios"])
        + f"; median {record['median_paired_ratio']:.3f}"
    )
    print(
        f"ratio (b)/(a) = {record['ratio']:.3f}  {'PASS' if record['passed'] else 'FAIL'} (target >= {TARGET}); "
        f"load average {record['load_after']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
