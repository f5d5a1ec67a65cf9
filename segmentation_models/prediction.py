"""Prediction for image files: class-index mask PNGs (with a color palette) and color overlays, what
`segmentation-models predict` writes.

For each input image NAME, `predict` writes <output>/NAME_mask.png (pixel value = class index) and
NAME_overlay.png (images whose names clash, e.g. x.png and x.jpg, get NAME_EXTENSION or the folders below the
common one), and predictions.json. Files already in the output folder are replaced only in a folder that predict
made, or with ``overwrite``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from . import runs

__all__ = ["collect_inputs", "output_stems", "predict"]


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


def predict(
    model_path: str | Path,
    inputs: Sequence[str | Path],
    output: str | Path | None = None,
    alpha: float = 0.5,
    skip_bad: bool = False,
    verbose: bool = True,
    overwrite: bool = False,
) -> list[dict]:
    """Predict each image; returns one dict per image with its mask and overlay paths. Existing files are
    replaced only in the package's own prediction folder or with ``overwrite``."""
    import keras

    from .data import DataError, read_image
    from .inference import predict_probabilities
    from .plots import overlay, save_mask_png, save_rgb_png
    from .preprocessing import get_preprocessing

    config, model_file = runs.load_run_config(model_path)
    files = collect_inputs(inputs)
    out = Path(output) if output else model_file.parent / "predictions"
    runs.check_disjoint(out, [f.parent for f in files], "prediction folder")
    stems = output_stems(files)
    targets = [out / f"{s}{k}" for s in stems for k in ("_mask.png", "_overlay.png")] + [out / "predictions.json"]
    model = runs.load_run_model(model_file, config)
    runs.prepare_output_folder(out, runs.PREDICTIONS_MARKER, targets, overwrite, "predict")
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
        mask = predict_probabilities(model, [image], preprocessing, scale)[0].argmax(-1).astype("uint8")
        mask_path, overlay_path = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
        save_mask_png(mask_path, mask, colors)
        save_rgb_png(overlay_path, overlay(image, mask, colors, alpha))
        present = {names[c]: round(float((mask == c).mean()), 4) for c in range(len(names)) if (mask == c).any()}
        written.append({"image": str(path), "mask": str(mask_path), "overlay": str(overlay_path), "classes": present})
        if bar:
            bar.update(k + 1)
    runs.write_json(out / "predictions.json", written)
    print(f"wrote {len(written)} mask(s) and overlay(s) to {out}")
    return written
