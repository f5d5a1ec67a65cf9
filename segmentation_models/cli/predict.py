"""`segmentation-models predict`: masks (class-index PNG with a color palette) and color overlays for images.

For each input image NAME, writes <output>/NAME_mask.png (pixel value = class index) and NAME_overlay.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import common


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict masks and color overlays for image files or folders",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder of `segmentation-models train` (uses best.keras) or a .keras file")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--output", help="folder for the masks and overlays (default <run>/predictions)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    predict(args.model, args.inputs, output=args.output, alpha=args.alpha, skip_bad=args.skip_bad,
            verbose=not args.quiet)
    return 0


def collect_inputs(inputs) -> list[Path]:
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
    return files


def predict(model_path, inputs, output=None, alpha: float = 0.5, skip_bad: bool = False, verbose: bool = True) -> list[dict]:
    """Predict each image; returns one dict per image with its mask and overlay paths."""
    import keras

    from ..data import DataError, read_image
    from ..preprocessing import get_preprocessing

    config, model_file = common.load_run_config(model_path)
    files = collect_inputs(inputs)
    out = Path(output) if output else model_file.parent / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    model = common.load_model(model_file)
    preprocessing = get_preprocessing(config["model"]["backbone"])
    colors = config["classes"]["colors"]
    names = config["classes"]["names"]
    scale = config["train"].get("scale", 1.0)
    bar = keras.utils.Progbar(len(files), unit_name="image") if verbose else None
    written = []
    for k, path in enumerate(files):
        try:
            image = read_image(path)
        except DataError as err:
            if not skip_bad:
                raise
            print(f"warning: skipped: {err}")
            continue
        mask = common.predict_probabilities(model, [image], preprocessing, scale)[0].argmax(-1).astype("uint8")
        mask_path, overlay_path = out / f"{path.stem}_mask.png", out / f"{path.stem}_overlay.png"
        common.save_mask_png(mask_path, mask, colors)
        common.save_rgb_png(overlay_path, common.overlay(image, mask, colors, alpha))
        present = {names[c]: round(float((mask == c).mean()), 4) for c in range(len(names)) if (mask == c).any()}
        written.append({"image": str(path), "mask": str(mask_path), "overlay": str(overlay_path), "classes": present})
        if bar:
            bar.update(k + 1)
    common.write_json(out / "predictions.json", written)
    print(f"wrote {len(written)} mask(s) and overlay(s) to {out}")
    return written
