"""LiteRT exports of a run folder, float32 / float16 / int8, against its Keras model: size, latency, accuracy.

    python benchmarks/litert.py /work/race-runs/e20-dice-ours/ours --input-size 192 256 --limit 101 \\
        --output benchmarks/results/2026-12-07-camvid-litert.json

Each variant is written by the product's own path (`export_run(..., format="litert", quantize=...)`: checked on a
random batch, int8 calibrated on ``--representative-images`` of the run's training images), then

- latency: milliseconds per image, the median over ``--rounds`` rounds of ``--repeats`` runs of one validation
  image (batch 1), after ``--warmup`` runs; the contenders take turns in each round (the machine's other load
  drifts): the LiteRT interpreter with ``--threads`` threads, and the Keras model (``predict_on_batch``, the
  backend's own threads) on the same input;
- accuracy: mean IoU on the first ``--limit`` images of the run's validation split
  (`segmentation_models.litert.evaluate_litert`: the export and the Keras model see the same input, each image at
  the run's scale, zero-padded to the export's size as `evaluate` pads; probabilities cropped and resized back to
  the mask).

Writes the raw results as JSON (``--output``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="run folder of `segmentation-models train`")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="default: export_run's")
    p.add_argument("--variants", nargs="+", default=["float32", "float16", "int8"])
    p.add_argument("--representative-images", type=int, default=32)
    p.add_argument("--limit", type=int, default=20, help="validation images scored (default 20; 0: all)")
    p.add_argument("--threads", type=int, default=2, help="LiteRT interpreter threads (default 2)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5, help="latency rounds, contenders interleaved (default 5)")
    p.add_argument("--repeats", type=int, default=10, help="runs per contender and round (default 10)")
    p.add_argument("--work", help="folder for the .tflite files (default: a temporary folder)")
    p.add_argument("--output", help="JSON file of the raw results")
    args = p.parse_args(argv)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from segmentation_models import runs
    from segmentation_models.evaluation import open_eval_set
    from segmentation_models.export import export_run
    from segmentation_models.litert import LiteRTModel, evaluate_litert, fit_image
    from segmentation_models.preprocessing import get_preprocessing

    config, model_file = runs.load_run_config(args.run)
    model = runs.load_run_model(model_file, config)
    tmp = tempfile.TemporaryDirectory(prefix="sm-litert-bench-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "run": str(args.run),
        "model": str(model_file),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        },
        "versions": _versions(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("run", "output", "work")},
        "variants": {},
    }

    exports = {}
    for variant in args.variants:
        print(f"== {variant}: exporting", flush=True)
        start = time.perf_counter()
        exports[variant] = export_run(
            args.run,
            "litert",
            output=work / f"model-{variant}.tflite",
            input_size=args.input_size,
            quantize=None if variant == "float32" else variant,
            representative_images=args.representative_images,
            overwrite=True,
        )
        exports[variant].seconds = round(time.perf_counter() - start, 1)  # with loading and calibration images

    # Latency in interleaved rounds: the machine's other load drifts, and every contender sees the same drift.
    lites = {name: LiteRTModel(r.path, num_threads=args.threads) for name, r in exports.items()}
    size = next(iter(lites.values())).input_shape[1:3]
    val = open_eval_set(config, None, None, None, "val", False)
    preprocessing = get_preprocessing(config["model"]["backbone"])
    pixels = fit_image(val.load(0)[0], config["train"].get("scale", 1.0), size)[0]
    x = np.asarray(preprocessing(pixels[None]), "float32")
    contenders = {"keras": model.predict_on_batch, **lites}
    times: dict = {name: [] for name in contenders}
    for fn in contenders.values():
        for _ in range(args.warmup):
            fn(x)
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    ms = {name: round(float(np.median(t)) * 1000, 2) for name, t in times.items()}
    print(f"== ms per image (median of {args.rounds} x {args.repeats}): {ms}", flush=True)

    for name, result in exports.items():
        print(f"== {name}: scoring {args.limit} val images", flush=True)
        scores = evaluate_litert(result.path, args.run, "val", args.limit, args.threads)
        if "keras" not in results:
            results["keras"] = {
                "parameters": int(model.count_params()),
                "keras_file_bytes_with_optimizer_state": model_file.stat().st_size,
                "ms_per_image": ms["keras"],
                "val_miou": scores["keras"]["mean_iou"],
                "val_pixel_accuracy": scores["keras"]["pixel_accuracy"],
                "backend": keras.backend.backend(),
            }
            results["input_size"] = list(size)
            results["val_images"] = scores["images"]
        results["variants"][name] = {
            "file_bytes": result.size_bytes,
            "export_seconds": result.seconds,
            "check_max_abs_diff": result.max_abs_diff,
            "check_label_agreement": result.label_agreement,
            "ms_per_image": ms[name],
            "threads": args.threads,
            "val_miou": scores["litert"]["mean_iou"],
            "val_pixel_accuracy": scores["litert"]["pixel_accuracy"],
            "val_label_agreement_with_keras": scores["label_agreement"],
        }
        print(f"   {json.dumps(results['variants'][name])}", flush=True)
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(_table(results))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {args.output}")
    tmp.cleanup()
    return 0


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("segmentation-models-keras", "keras", "tensorflow", "ai-edge-litert", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _table(results: dict) -> str:
    k = results["keras"]
    size = "x".join(map(str, results["input_size"]))
    lines = [
        f"| model ({size}, batch 1) | file MB | ms / image | val mIoU ({results['val_images']} images) |",
        "|---|---:|---:|---:|",
        f"| Keras ({k['backend']}) | {k['keras_file_bytes_with_optimizer_state'] / 1e6:.1f} (best.keras) | "
        f"{k['ms_per_image']:.1f} | {k['val_miou']:.4f} |",
    ]
    for name, v in results["variants"].items():
        lines.append(
            f"| LiteRT {name} ({v['threads']} threads) | {v['file_bytes'] / 1e6:.1f} | {v['ms_per_image']:.1f} | "
            f"{v['val_miou']:.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
