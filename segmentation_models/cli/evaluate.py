"""`segmentation-models evaluate`: per-class IoU/F1 over a whole data set, mean IoU, confusion matrix.

Writes <output>/results.json (scores, confusion matrix), per_class.csv and confusion_matrix.png.
Ignored pixels (void, e.g. CamVid's class 11) are left out of every count.
"""

from __future__ import annotations

import argparse

from .arguments import add_model_argument, add_window_arguments, command_parser, keywords_for


def add_parser(sub) -> None:
    p = command_parser(sub, "evaluate", "per-class IoU/F1, mean IoU and a confusion matrix of a trained model", __doc__)
    add_model_argument(p)
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
    add_window_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate

    evaluate(args.model, **keywords_for(evaluate, args, verbose=not args.quiet))
    return 0
