"""Arguments shared by several commands: a sub-command's parser, the model to use, and the options that describe a
data set (the data section of a run config, `DataConfig`)."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path


def command_parser(sub, name: str, summary: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of sub-command ``name``: ``summary`` in the command list, the module's ``doc`` in its --help."""
    return sub.add_parser(name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def keywords_for(target: Callable, args: argparse.Namespace, **values) -> dict:
    """The keyword arguments of ``target`` (a library function or a dataclass) taken from parsed ``args`` by
    name, with ``values`` for those the command spells differently (e.g. ``verbose=not args.quiet``)."""
    parameters = inspect.signature(target).parameters
    unknown = sorted(set(values) - set(parameters))
    if unknown:
        raise TypeError(f"{target.__name__} takes no {', '.join(unknown)}")
    return {name: getattr(args, name) for name in parameters if hasattr(args, name)} | values


def add_model_argument(p: argparse.ArgumentParser) -> None:
    """The positional MODEL: a run folder or a .keras file."""
    p.add_argument("model", help="run folder of `segmentation-models train` (uses best.keras) or a .keras file")


def add_window_arguments(p: argparse.ArgumentParser, streaming: bool = False) -> None:
    """--tile, --overlap, --blend: sliding-window prediction (`segmentation_models.inference.predict_sliding`);
    --tta: test-time augmentation (`segmentation_models.inference.predict_images_tta`)."""
    g = p.add_argument_group("sliding windows")
    more = (
        "; TIFFs and images above 33.5 megapixels are streamed into NAME_mask.tif (tile 512 when not given)"
        if streaming
        else ""
    )
    g.add_argument(
        "--tile",
        type=int,
        default=None,
        help=f"predict by overlapping windows of this many pixels (a multiple of 32; default: whole images){more}",
    )
    g.add_argument(
        "--overlap", type=float, default=0.25, help="fraction of a window its neighbours share (0..1, default 0.25)"
    )
    g.add_argument(
        "--blend",
        choices=("gaussian", "uniform"),
        default="gaussian",
        help="weights of each window's probabilities: gaussian (borders count less, default) or uniform",
    )
    p.add_argument(
        "--tta",
        choices=("none", "hflip", "flips", "d4"),
        default=None,
        help="test-time augmentation: average the predictions of flipped/rotated copies (hflip: 2 copies, flips: "
        "4, d4: 8; default none). Vertical flips and rotations suit images without an up, e.g. aerial tiles",
    )


def add_data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        required=False,
        help="CamVid-layout folder (train/ trainannot/ val/ ...), a folder with images/ and masks/, "
        "or a CSV of 'image,mask' lines",
    )
    g.add_argument("--images", help="folder of images (with --masks; instead of --data)")
    g.add_argument("--masks", help="folder of masks paired with --images by file name")
    g.add_argument("--val-data", help="validation data (same forms as --data); default: CamVid's val/, else a split")
    g.add_argument("--val-fraction", type=float, default=0.2, help="validation share when splitting (default 0.2)")
    g.add_argument("--classes", help="number of classes or comma-separated names (CamVid and palettes: automatic)")
    g.add_argument(
        "--mask-mode",
        choices=("index", "palette", "binary"),
        default="index",
        help="masks hold class indices (default), palette colors (--palette), or binary 0/255 values",
    )
    g.add_argument("--palette", help='JSON class->color map for color masks: {"classes": {"road": [128,64,128]}}')
    g.add_argument("--ignore-index", type=int, help="class index ignored in losses and metrics (CamVid: 11, automatic)")
    g.add_argument("--mask-suffix", default="", help="mask name = image stem + this (e.g. _mask)")
    g.add_argument("--skip-bad", action="store_true", help="skip unreadable or inconsistent pairs with a warning")


def data_config(args: argparse.Namespace) -> dict:
    """The data section of a run config, from parsed arguments."""
    if not args.data and not (args.images and args.masks):
        raise ValueError("give the data: --data FOLDER_OR_CSV, or --images FOLDER --masks FOLDER")
    classes = args.classes
    if classes:
        classes = int(classes) if classes.isdigit() else [c.strip() for c in classes.split(",") if c.strip()]
    return {
        "data": str(Path(args.data).resolve()) if args.data else None,
        "images": str(Path(args.images).resolve()) if args.images else None,
        "masks": str(Path(args.masks).resolve()) if args.masks else None,
        "val_data": str(Path(args.val_data).resolve()) if args.val_data else None,
        "val_fraction": args.val_fraction,
        "classes": classes,
        "mask_mode": args.mask_mode,
        "palette": str(Path(args.palette).resolve()) if args.palette else None,
        "ignore_index": args.ignore_index,
        "mask_suffix": args.mask_suffix,
    }
