"""`segmentation-models predict`: masks (class-index PNG with a color palette) and color overlays for images.

For each input image NAME, writes <output>/NAME_mask.png (pixel value = class index) and NAME_overlay.png
(images whose names clash, e.g. x.png and x.jpg, get NAME_EXTENSION or the folders below the common one).
Files already in --output are replaced only in a folder that predict made, or with --overwrite.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from . import common


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict masks and color overlays for image files or folders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="run folder of `segmentation-models train` (uses best.keras) or a .keras file")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--output", help="folder for the masks and overlays (default <run>/predictions)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in a folder predict did not make")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    predict(
        args.model,
        args.inputs,
        output=args.output,
        alpha=args.alpha,
        skip_bad=args.skip_bad,
        verbose=not args.quiet,
        overwrite=args.overwrite,
    )
    return 0


def collect_inputs(inputs) -> list[Path]:
    """Image files of the inputs (files and folders), each file once."""
    from ..data import DataError, list_images

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(f"no images in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p} does not exist")
    unique = {f.resolve(): f for f in reversed(files)}  # the same file given twice is predicted once
    return [f for f in files if unique[f.resolve()] is f]


def output_stems(files: Sequence[Path]) -> list[str]:
    """A distinct output name per file: its stem; where stems clash, stem_extension (x_png, x_jpg); where those
    clash (a/x.png, b/x.png), the path below the files' common folder (a__x_png); then a number."""
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else Path()
    makers = [
        lambda f: f"{f.stem}_{f.suffix.lstrip('.')}",
        lambda f: "__".join(f.resolve().parent.relative_to(root).parts + (f"{f.stem}_{f.suffix.lstrip('.')}",)),
    ]
    names = [f.stem for f in files]
    for make in makers:
        counts = Counter(names)
        names = [make(f) if counts[n] > 1 else n for f, n in zip(files, names)]
    seen: Counter = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def predict(
    model_path,
    inputs,
    output=None,
    alpha: float = 0.5,
    skip_bad: bool = False,
    verbose: bool = True,
    overwrite: bool = False,
) -> list[dict]:
    """Predict each image; returns one dict per image with its mask and overlay paths. Existing files are
    replaced only in the package's own prediction folder or with ``overwrite``."""
    import keras

    from ..data import DataError, read_image
    from ..preprocessing import get_preprocessing

    config, model_file = common.load_run_config(model_path)
    files = collect_inputs(inputs)
    out = Path(output) if output else model_file.parent / "predictions"
    common.check_disjoint(out, [f.parent for f in files], "prediction folder")
    stems = output_stems(files)
    targets = [out / f"{s}{k}" for s in stems for k in ("_mask.png", "_overlay.png")] + [out / "predictions.json"]
    model = common.load_run_model(model_file, config)
    common.prepare_output_folder(out, common.PREDICTIONS_MARKER, targets, overwrite, "predict")
    preprocessing = get_preprocessing(config["model"]["backbone"])
    colors = config["classes"]["colors"]
    names = config["classes"]["names"]
    scale = config["train"].get("scale", 1.0)
    bar = keras.utils.Progbar(len(files), unit_name="image") if verbose else None
    written = []
    for k, (path, stem) in enumerate(zip(files, stems)):
        try:
            image = read_image(path)
        except DataError as err:
            if not skip_bad:
                raise
            print(f"warning: skipped: {err}")
            continue
        mask = common.predict_probabilities(model, [image], preprocessing, scale)[0].argmax(-1).astype("uint8")
        mask_path, overlay_path = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        common.save_mask_png(mask_path, mask, colors)
        common.save_rgb_png(overlay_path, common.overlay(image, mask, colors, alpha))
        present = {names[c]: round(float((mask == c).mean()), 4) for c in range(len(names)) if (mask == c).any()}
        written.append({"image": str(path), "mask": str(mask_path), "overlay": str(overlay_path), "classes": present})
        if bar:
            bar.update(k + 1)
    common.write_json(out / "predictions.json", written)
    print(f"wrote {len(written)} mask(s) and overlay(s) to {out}")
    return written
