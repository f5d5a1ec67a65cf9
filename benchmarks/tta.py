"""What test-time augmentation is worth on a trained run: validation mean IoU and seconds per image.

    python benchmarks/tta.py --run runs/camvid-unet-resnet18 --output benchmarks/results/camvid-val-tta.json
    python benchmarks/tta.py --run RUN --settings none flips --limit 20 --output /tmp/tta.json

For each setting (a transform preset of `segmentation_models.inference.tta`, optionally ``+scales`` for scales
0.75, 1.0 and 1.25) the run's best.keras is wrapped by `tta_model` (or, with ``--before-padding``, each image
is transformed before padding by `predict_images_tta`) and evaluated as `segmentation-models evaluate`
does (`predict_probabilities` at the run's scale, `confusion_matrix`, `scores_from_confusion`) on the run's
validation split (never its test split). Images are read once before timing; the time per image is the wall time
of the predictions (after one warm-up batch), the first thing to grow with the number of copies.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed copy

SCALES = (0.75, 1.0, 1.25)
SETTINGS = ("none", "hflip", "flips", "d4")


def parse_setting(setting: str) -> tuple[str, tuple[float, ...]]:
    """``"d4+scales"`` -> (``"d4"``, `SCALES`); ``"flips"`` -> (``"flips"``, (1.0,))."""
    preset, _, extra = setting.partition("+")
    if extra not in ("", "scales"):
        raise ValueError(f"setting {setting!r}: a preset, optionally followed by +scales")
    return preset, SCALES if extra else (1.0,)


def measure(model, pairs, preprocessing, scale: float, batch_size: int, class_names, predict=None) -> dict:
    """Scores of ``model`` on the loaded (image, mask) ``pairs``, with the prediction time per image."""
    import numpy as np

    from segmentation_models.evaluation import confusion_matrix, scores_from_confusion
    from segmentation_models.inference import predict_probabilities

    if predict is not None:
        predict_probabilities = predict  # noqa: F811  (the transforms before padding)
    n_classes = len(class_names)
    matrix = np.zeros((n_classes, n_classes), "int64")
    predict_probabilities(model, [p[0] for p in pairs[:batch_size]], preprocessing, scale)  # warm-up, untimed
    seconds = 0.0
    for first in range(0, len(pairs), batch_size):
        batch = pairs[first : first + batch_size]
        started = time.perf_counter()
        probs = predict_probabilities(model, [p[0] for p in batch], preprocessing, scale)
        seconds += time.perf_counter() - started
        for (_, truth), prob in zip(batch, probs):
            matrix += confusion_matrix(truth, prob.argmax(-1), n_classes)
    scores = scores_from_confusion(matrix, class_names)
    return {
        "mean_iou": scores["mean_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "per_class_iou": {k: v["iou"] for k, v in scores["per_class"].items()},
        "seconds": round(seconds, 2),
        "seconds_per_image": round(seconds / len(pairs), 4),
    }


def _before_padding(model, images, preprocessing, scale, transforms, scales):
    """`predict_probabilities`' signature over `predict_images_tta`: the wrapper-free route."""
    from segmentation_models.inference import predict_images_tta

    return predict_images_tta(model, images, preprocessing, scale, transforms, scales)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run folder (best.keras and config.json)")
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="presets, optionally PRESET+scales")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation images")
    parser.add_argument("--batch-size", type=int, default=4, help="images per prediction call (as evaluate)")
    parser.add_argument(
        "--before-padding",
        action="store_true",
        help="transform each image before padding (predict_images_tta), not the padded batch (tta_model)",
    )
    parser.add_argument("--unbatched", action="store_true", help="also time each setting with one model call per copy")
    args = parser.parse_args(argv)
    for s in args.settings:
        parse_setting(s)  # bad settings fail before the model loads

    import keras

    from segmentation_models import runs
    from segmentation_models.evaluation import open_eval_set
    from segmentation_models.inference import tta_model
    from segmentation_models.preprocessing import get_preprocessing

    config, model_file = runs.load_run_config(args.run)
    model = runs.load_run_model(model_file, config)
    val_set = open_eval_set(config, None, None, None, "val", False)
    if args.limit:
        val_set = val_set.subset(range(min(args.limit, len(val_set))))
    pairs = [val_set.load(i) for i in range(len(val_set))]
    preprocessing = get_preprocessing(config["model"]["backbone"])
    scale = config["train"].get("scale", 1.0)
    results = {
        "run": str(Path(args.run).resolve()),
        "model": str(model_file),
        "data": val_set.name,
        "split": "val",
        "images": len(pairs),
        "limit": args.limit,
        "image_size": list(pairs[0][0].shape[:2]),
        "scale": scale,
        "batch_size": args.batch_size,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared, nice 15)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "settings": {},
    }
    for setting in args.settings:
        preset, scales = parse_setting(setting)
        for batched in (True, False) if args.unbatched and preset != "none" else (True,):
            plain = preset == "none" and scales == (1.0,)  # the model itself, as evaluate runs it
            key = setting if batched else f"{setting} (one call per copy)"
            if plain:
                wrapped, predict = model, None
            elif args.before_padding:  # the plain model, each image transformed before padding
                key, wrapped = f"{setting} (before padding)", model
                predict = functools.partial(_before_padding, transforms=preset, scales=scales)
            else:
                wrapped, predict = tta_model(model, preset, scales, batch_transforms=batched), None
            entry = measure(wrapped, pairs, preprocessing, scale, args.batch_size, val_set.class_names, predict)
            entry.update(transforms=preset, scales=list(scales), batch_transforms=batched)
            entry["before_padding"] = predict is not None
            results["settings"][key] = entry
            print(f"{key:32s} mIoU {entry['mean_iou']:.4f}  {entry['seconds_per_image']:.3f} s/image", flush=True)
            # written after each setting: a long run stopped early keeps what it measured
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
