"""Prediction for image files: class-index mask PNGs (with a color palette) and color overlays, what
`segmentation-models predict` writes.

For each input image NAME, `predict` writes <output>/NAME_mask.png (pixel value = class index) and
NAME_overlay.png (images whose names clash, e.g. x.png and x.jpg, get NAME_EXTENSION or the folders below the
common one), and predictions.json. Files already in the output folder are replaced only in a folder that predict
made, or with ``overwrite``.

Large images (above `LARGE_IMAGE_PIXELS`, or TIFFs when a ``tile`` is given) are streamed through sliding windows
(`segmentation_models.inference.predict_large_image`) into NAME_mask.tif, without an overlay.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from . import runs

__all__ = ["LARGE_IMAGE_PIXELS", "collect_inputs", "output_stems", "predict", "streams"]

LARGE_IMAGE_PIXELS = 2**25  # 33.5 megapixels: above, images are streamed to a mask TIFF and get no overlay


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files of the inputs (files and folders), each file once."""
    from .data import DataError, list_images

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


def streams(path: Path, tile: int | tuple[int, int] | None) -> bool:
    """Whether `predict` streams ``path`` to a mask TIFF: above `LARGE_IMAGE_PIXELS`, or a TIFF with a ``tile``.
    Unreadable files are not streamed (the ordinary reader reports them)."""
    from .inference.rasters import TIFF_EXTENSIONS, image_size

    if tile is not None and path.suffix.lower() in TIFF_EXTENSIONS:
        return True
    try:
        size = image_size(path)
    except Exception:  # noqa: BLE001
        return False
    return size is None or size[0] * size[1] > LARGE_IMAGE_PIXELS


def predict(
    model_path: str | Path,
    inputs: Sequence[str | Path],
    output: str | Path | None = None,
    alpha: float = 0.5,
    skip_bad: bool = False,
    verbose: bool = True,
    overwrite: bool = False,
    tile: int | tuple[int, int] | None = None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta: str | Sequence[str] | None = None,
) -> list[dict]:
    """Predict each image; returns one dict per image with its mask and overlay paths. Existing files are
    replaced only in the package's own prediction folder or with ``overwrite``.

    tile: None predicts each image whole (overlapping tiles only when it does not fit in memory); a size (a
        multiple of 32) predicts by sliding windows of that size that share ``overlap`` (a fraction of the tile)
        and are blended with ``blend`` weights (``gaussian`` or ``uniform``). Images above `LARGE_IMAGE_PIXELS`,
        and TIFFs when a tile is given, are streamed into NAME_mask.tif (tile 512 when none is given), no overlay.
    tta: test-time augmentation (``"hflip"``, ``"flips"``, ``"d4"`` or a list of transforms; None: none), each
        transform applied to the whole image (to each window, for streamed images).
    """
    import keras

    from .data import DataError, read_image
    from .inference import check_inference_options, predict_probabilities
    from .inference.tta import tta_model
    from .plots import overlay, save_mask_png, save_rgb_png
    from .preprocessing import get_preprocessing

    augmented = check_inference_options(tile, overlap, blend, tta)
    config, model_file = runs.load_run_config(model_path)
    files = collect_inputs(inputs)
    out = Path(output) if output else model_file.parent / "predictions"
    runs.check_disjoint(out, [f.parent for f in files], "prediction folder")
    stems = output_stems(files)
    streamed = [streams(f, tile) for f in files]
    targets = [
        out / f"{s}{k}"
        for s, big in zip(stems, streamed)
        for k in (("_mask.tif",) if big else ("_mask.png", "_overlay.png"))
    ] + [out / "predictions.json"]
    model = runs.load_run_model(model_file, config)
    runs.prepare_output_folder(out, runs.PREDICTIONS_MARKER, targets, overwrite, "predict")
    preprocessing = get_preprocessing(config["model"]["backbone"])
    colors = config["classes"]["colors"]
    names = config["classes"]["names"]
    scale = config["train"].get("scale", 1.0)
    # streamed images: each window is augmented (the wrapper); whole images: each image before padding
    window_model = tta_model(model, tta) if augmented and any(streamed) else model
    windows = dict(tile=tile, overlap=overlap, blend=blend)
    bar = keras.utils.Progbar(len(files), unit_name="image") if verbose else None
    written = []
    for k, (path, stem, big) in enumerate(zip(files, stems, streamed)):
        if big:
            entry = _predict_streamed(
                window_model,
                path,
                out / f"{stem}_mask.tif",
                tile,
                overlap,
                blend,
                preprocessing,
                scale,
                config,
                verbose,
                skip_bad,
            )
            written += [entry] if entry else []
            if bar:
                bar.update(k + 1)
            continue
        try:
            image = read_image(path)
        except DataError as err:
            if not skip_bad:
                raise
            print(f"warning: skipped: {err}")
            continue
        probs = predict_probabilities(model, [image], preprocessing, scale, tta=tta, **windows)
        mask = probs[0].argmax(-1).astype("uint8")
        mask_path, overlay_path = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        save_mask_png(mask_path, mask, colors)
        save_rgb_png(overlay_path, overlay(image, mask, colors, alpha))
        present = {names[c]: round(float((mask == c).mean()), 4) for c in range(len(names)) if (mask == c).any()}
        written.append({"image": str(path), "mask": str(mask_path), "overlay": str(overlay_path), "classes": present})
        if bar:
            bar.update(k + 1)
    runs.write_json(out / "predictions.json", written)
    overlays = sum(w["overlay"] is not None for w in written)
    print(f"wrote {len(written)} mask(s) and {overlays} overlay(s) to {out}")
    return written


def _predict_streamed(
    model, path: Path, mask_path: Path, tile, overlap, blend, preprocessing, scale, config, verbose, skip_bad
) -> dict | None:
    """One large image streamed by sliding windows into a mask TIFF; its predictions.json entry."""
    from .data import DataError
    from .inference import predict_large_image
    from .inference.rasters import image_size

    names = config["classes"]["names"]
    tile = 512 if tile is None else tile
    try:
        size = image_size(path)
    except Exception:  # noqa: BLE001  (unreadable: the reader below reports it)
        size = None
    shown = f"{size[1]}x{size[0]}" if size else "size unknown"
    print(f"note: {path} ({shown}) is predicted by {tile} pixel sliding windows into {mask_path.name}, no overlay")
    try:
        info = predict_large_image(
            model,
            path,
            mask_path,
            tile=tile,
            overlap=overlap,
            blend=blend,
            preprocessing=preprocessing,
            colors=config["classes"]["colors"],
            scale=scale,
            verbose=verbose,
            overwrite=True,  # predict's own folder, checked by runs.prepare_output_folder
        )
    except DataError as err:
        if not skip_bad:
            raise
        print(f"warning: skipped: {err}")
        return None
    total = max(1, sum(info["class_pixels"]))
    present = {names[c]: round(n / total, 4) for c, n in enumerate(info["class_pixels"]) if n and c < len(names)}
    return {"image": str(path), "mask": str(mask_path), "overlay": None, "classes": present}
