"""How much BatchNormalization statistics matter, and how many batches re-estimating them needs.

    python benchmarks/bn_statistics.py --demo --output runs/bn-statistics          # the demo's data, trained here
    python benchmarks/bn_statistics.py --run runs/camvid-unet-resnet18 --batches 5 10 20 40

For a run folder (``--run``; with ``--demo`` the demo's generated data is trained first, with Keras' moving
averages only, ``--bn-batches 0``, once per ``--momentum``), the validation mean IoU of its best.keras:

- as saved (Keras' moving averages, BatchNormalization momentum as built);
- with batch statistics (training mode, the validation set in batches of the run's batch size): what the
  weights are worth;
- after `recalibrate_batchnorm` from N batches of training images without augmentation
  (``SegmentationLoader.inference_batches``, as `segmentation-models train` does), for each N of ``--batches``,
  with the seconds it took; and from N training batches as `fit` sees them (crop and augmentation).

Momentum changes only the moving averages (training normalises with batch statistics), so with re-estimated
statistics the weights and the scores are the same for any momentum; ``--momentum 0.99 0.9`` shows what it does
to models used without re-estimation. Writes ``<output>/bn_statistics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed copy


def val_miou(model, val_set, config: dict, training: bool = False) -> float:
    """Validation mean IoU with `predict_probabilities` (as `evaluate`), in batches of the run's batch size;
    ``training=True`` normalises with each batch's statistics."""
    import numpy as np

    from segmentation_models import evaluation, inference
    from segmentation_models.preprocessing import get_preprocessing

    preprocessing = get_preprocessing(config["model"]["backbone"])
    call = (lambda x, training=False: model(x, training=True)) if training else model  # noqa: E731
    batch = config["train"]["batch_size"]
    matrix = np.zeros((val_set.num_classes,) * 2, "int64")
    for first in range(0, len(val_set), batch):
        pairs = [val_set.load(i) for i in range(first, min(first + batch, len(val_set)))]
        probs = inference.predict_probabilities(call, [p[0] for p in pairs], preprocessing, config["train"]["scale"])
        for (_, truth), prob in zip(pairs, probs):
            matrix += evaluation.confusion_matrix(truth, prob.argmax(-1), val_set.num_classes)
    return evaluation.scores_from_confusion(matrix, val_set.class_names)["mean_iou"]


def measure_run(run: Path, batches: list[int]) -> dict:
    import keras

    from segmentation_models import data, runs
    from segmentation_models.batchnorm import recalibrate_batchnorm
    from segmentation_models.data.sources import open_train_val
    from segmentation_models.preprocessing import get_preprocessing

    config = json.loads((run / "config.json").read_text())
    tcfg = config["train"]
    train_set, val_set = open_train_val(config["data"], tcfg["seed"], skip_bad=True)
    loader = data.SegmentationLoader(
        train_set,
        tcfg["batch_size"],
        preprocessing=get_preprocessing(config["model"]["backbone"]),
        scale=tcfg["scale"],
        seed=tcfg["seed"],
        workers=1,
    )
    model = runs.load_model(run / "best.keras")
    saved = [keras.ops.convert_to_numpy(w) for w in model.weights]
    momenta = sorted({layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)})
    result = {
        "run": str(run),
        "momentum": momenta,
        "as_saved": val_miou(model, val_set, config),
        "batch_statistics": val_miou(model, val_set, config, training=True),
    }
    augmented = data.SegmentationLoader(
        train_set,
        tcfg["batch_size"],
        preprocessing=loader.preprocessing,
        training=True,
        crop_size=tcfg["crop"],
        augment=tcfg["augment"],
        scale=tcfg["scale"],
        seed=tcfg["seed"],
        workers=1,
    )
    for source in ("plain", "augmented"):
        key = "recalibrated" if source == "plain" else "recalibrated_augmented"
        result[key] = []
        for n in batches:
            model.set_weights(saved)
            started = time.perf_counter()
            used = recalibrate_batchnorm(model, loader.inference_batches(n) if source == "plain" else augmented, n)
            seconds = time.perf_counter() - started
            result[key].append(
                {
                    "batches": used,
                    "images": min(used * tcfg["batch_size"], len(train_set)),
                    "seconds": round(seconds, 2),
                    "val_mean_iou": val_miou(model, val_set, config),
                }
            )
            print(
                f"  {source} {n:3d} batches: val mIoU {result[key][-1]['val_mean_iou']:.4f} ({seconds:.1f} s)",
                flush=True,
            )
    return result


def train_demo(output: Path, momentum: float, epochs: int) -> Path:
    """The demo's data and training configuration, Keras' moving averages only, BatchNormalization ``momentum``."""
    import keras

    from segmentation_models.data.shapes import write_shapes_dataset
    from segmentation_models.demo import demo_config
    from segmentation_models.training import loop as training_loop, train

    data_dir = write_shapes_dataset(output / "data", 192, 64, seed=0)
    config = demo_config(data_dir, "resnet18", epochs).to_dict()
    config["train"]["bn_batches"] = 0
    config["train"]["overlays"] = 0
    build = training_loop.build_model  # what train() builds the model with

    def build_with_momentum(model_cfg, num_classes):
        model = build(model_cfg, num_classes)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = momentum
        return model

    training_loop.build_model = build_with_momentum
    try:
        run = output / f"demo-momentum-{momentum:g}"
        train(config, run, overwrite=True, verbose=0)
    finally:
        training_loop.build_model = build
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder of `segmentation-models train`")
    source.add_argument("--demo", action="store_true", help="train on the demo's generated data first")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 5, 10, 20, 40])
    p.add_argument("--momentum", type=float, nargs="+", default=[0.99, 0.9], help="--demo: momenta trained")
    p.add_argument("--epochs", type=int, default=6, help="--demo: epochs (the demo's default)")
    p.add_argument("--output", type=Path, default=Path("runs/bn-statistics"))
    args = p.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    runs = [train_demo(args.output, m, args.epochs) for m in args.momentum] if args.demo else [args.run]
    results = []
    for run in runs:
        print(f"{run}:", flush=True)
        results.append(measure_run(run, args.batches))
        r = results[-1]
        print(
            f"  as saved {r['as_saved']:.4f}, batch statistics {r['batch_statistics']:.4f} (momentum {r['momentum']})",
            flush=True,
        )
    (args.output / "bn_statistics.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.output / 'bn_statistics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
