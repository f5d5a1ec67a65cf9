"""`segmentation-models evaluate`: per-class IoU/F1 over a whole data set, mean IoU, confusion matrix.

Writes <output>/results.json (scores, confusion matrix), per_class.csv and confusion_matrix.png.
Ignored pixels (void, e.g. CamVid's class 11) are left out of every count.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import common
from .data_args import open_source, open_train_val

OUTPUTS = ("results.json", "per_class.csv", "confusion_matrix.png")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="per-class IoU/F1, mean IoU and a confusion matrix of a trained model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="run folder of `segmentation-models train` (uses best.keras) or a .keras file")
    p.add_argument("--data", help="data to evaluate on (default: the run's data: CamVid test/, else its val split)")
    p.add_argument("--images", help="folder of images (with --masks)")
    p.add_argument("--masks", help="folder of masks")
    p.add_argument("--split", default=None, help="CamVid split (train, val, test; default test) or 'val' of a run")
    p.add_argument("--output", help="folder for the results (default <run>/eval-<split>)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--workers", type=int, default=2, help="image reading threads")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or inconsistent pairs with a warning")
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing results in a folder evaluate did not make"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    evaluate(
        args.model,
        data=args.data,
        images=args.images,
        masks=args.masks,
        split=args.split,
        output=args.output,
        batch_size=args.batch_size,
        limit=args.limit,
        workers=args.workers,
        skip_bad=args.skip_bad,
        verbose=not args.quiet,
        overwrite=args.overwrite,
    )
    return 0


def open_eval_set(
    config: dict, data: str | None, images: str | None, masks: str | None, split: str | None, skip_bad: bool
):
    from .. import data as sm_data

    dcfg = dict(config["data"])
    names = config["classes"]["names"]
    if dcfg.get("classes") is None and dcfg.get("mask_mode") != "binary":
        dcfg["classes"] = names
    if data or (images and masks):
        ds = open_source(data, dcfg, split or "test", skip_bad, images, masks)
    elif dcfg.get("data") and sm_data.is_camvid(dcfg["data"]) and (split or "test") != "val":
        ds = sm_data.from_camvid(dcfg["data"], split or "test", skip_bad=skip_bad)
    else:
        if split not in (None, "val", "train"):
            raise ValueError(f"--split {split!r}: this run's data has only its train and val split; give --data")
        train_set, val_set = open_train_val(dcfg, config["train"]["seed"], skip_bad)
        ds = train_set if split == "train" else val_set
    if ds.class_names != names:
        raise sm_data.DataError(f"the data's classes {ds.class_names} differ from the model's {names}")
    return ds


def evaluate(
    model_path: str | Path,
    data: str | None = None,
    images: str | None = None,
    masks: str | None = None,
    split: str | None = None,
    output: str | Path | None = None,
    batch_size: int = 4,
    limit: int | None = None,
    workers: int = 2,
    skip_bad: bool = False,
    verbose: bool = True,
    overwrite: bool = False,
) -> dict:
    """Evaluate a run (or .keras file with config.json beside it); returns the results dict."""
    import keras

    from ..preprocessing import get_preprocessing

    config, model_file = common.load_run_config(model_path)
    ds = open_eval_set(config, data, images, masks, split, skip_bad)
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    name = split or ("test" if "camvid" in ds.name and ds.name.endswith("test") else ds.name)
    out = Path(output) if output else model_file.parent / f"eval-{name}"
    model = common.load_run_model(model_file, config)
    common.prepare_output_folder(out, common.EVALUATION_MARKER, [out / n for n in OUTPUTS], overwrite, "evaluate")
    preprocessing = get_preprocessing(config["model"]["backbone"])
    scale = config["train"].get("scale", 1.0)
    n_classes = ds.num_classes
    matrix = np.zeros((n_classes, n_classes), "int64")
    batches = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
    if verbose:
        print(f"evaluating {model_file} on {len(ds)} images of {ds.name!r}")
    bar = keras.utils.Progbar(len(ds), unit_name="image") if verbose else None
    started = time.time()
    bad: list[str] = []

    def load(i):
        try:
            return ds.load(i)
        except Exception as err:
            if not skip_bad:
                raise
            bad.append(str(err))
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.map(load, b) for b in batches[:2]]
        done = 0
        for k in range(len(batches)):
            pairs = [p for p in futures[k] if p is not None]
            if k + 2 < len(batches):
                futures.append(pool.map(load, batches[k + 2]))
            if pairs:
                probs = common.predict_probabilities(model, [p[0] for p in pairs], preprocessing, scale)
                for (_image, truth), prob in zip(pairs, probs):
                    matrix += common.confusion_matrix(truth, prob.argmax(-1), n_classes)
            done += len(batches[k])
            if bar:
                bar.update(done)
    for message in bad:
        print(f"warning: skipped: {message}")
    scores = common.scores_from_confusion(matrix, ds.class_names)
    results = {
        "model": str(model_file),
        "data": ds.name,
        "images": len(ds) - len(bad),
        "skipped": bad,
        "ignore_index": ds.mask_format.ignore_index,
        "seconds": round(time.time() - started, 1),
        **scores,
        "class_names": ds.class_names,
        "confusion_matrix": matrix.tolist(),
    }
    common.write_json(out / "results.json", results)
    common.write_csv(out / "per_class.csv", [{"class": k, **v} for k, v in scores["per_class"].items()])
    common.plot_confusion(matrix, ds.class_names, out / "confusion_matrix.png")
    print(common.format_table(scores))
    print(f"results: {out / 'results.json'}\nconfusion matrix: {out / 'confusion_matrix.png'}")
    return results
