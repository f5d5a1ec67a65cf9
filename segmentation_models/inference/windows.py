"""Sliding-window inference: overlapping windows of an image, predicted a batch at a time and blended.

Windows are ``tile`` pixels (a multiple of 32) that overlap by at least ``overlap`` (a fraction of the tile, as
MONAI's ``sliding_window_inference``); the last window of a row or column ends at the image border. Each window's
probabilities are weighted (`blend_weights`: Gaussian or uniform) and the weighted sums divided by the summed
weights. An axis shorter than the tile gets one window of that axis rounded up to a multiple of 32, filled by
``padding``. Windows are predicted band by band (one row of windows at a time): only the float sums of the rows
that later windows still touch are kept, so `iter_rows` works in memory bounded by the tile, the batch and the
image width, whatever the image height.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

__all__ = [
    "STRIDE",
    "BLENDS",
    "PADDINGS",
    "OUTPUTS",
    "tile_starts",
    "blend_weights",
    "predict_sliding",
    "predict_tiled",
    "iter_rows",
    "probabilities_to_mask",
]

STRIDE = 32
BLENDS = ("gaussian", "uniform")
PADDINGS = ("reflect", "constant", "edge")
OUTPUTS = ("probabilities", "mask")
ROWS_PER_YIELD = 64  # finished rows are divided and handed on in chunks of this many


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``0..length`` with at least ``overlap`` in common;
    the last tile ends at ``length`` (``length <= tile``: one tile at 0)."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def blend_weights(height: int, width: int, mode: str = "gaussian") -> np.ndarray:
    """(height, width) weights of one tile: ones (``uniform``), or a Gaussian of sigma 1/8 of the tile size
    centred on it (``gaussian``: tile borders, where context is missing, count less), never below 1e-3."""
    if mode == "uniform":
        return np.ones((height, width), "float32")
    if mode != "gaussian":
        raise ValueError(f"blend must be 'uniform' or 'gaussian', got {mode!r}")
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / (n / 8)) ** 2) for n in (height, width)]
    return np.maximum(np.outer(*axes), 1e-3).astype("float32")


# ----------------------------------------------------------------------------------------- arguments
def check_tile(tile) -> tuple[int, int]:
    """``tile`` (an int or (height, width)) as (height, width), each a positive multiple of 32."""
    sizes = (tile, tile) if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool) else tile
    ok = isinstance(sizes, Sequence) and len(sizes) == 2
    ok = ok and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes)
    if not ok or any(s < STRIDE or s % STRIDE for s in sizes):
        raise ValueError(
            f"tile must be a positive multiple of {STRIDE} (an int or (height, width)), got {tile!r}: "
            f"e.g. tile=512 or tile=(256, 384)"
        )
    return int(sizes[0]), int(sizes[1])


def check_window_options(overlap, blend: str, batch_size, padding: str) -> None:
    """ValueError saying which of the shared sliding-window options is wrong and what it takes."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.floating, np.integer)):
        raise ValueError(f"overlap must be a number in [0, 1), a fraction of the tile, got {overlap!r}")
    if not 0 <= overlap < 1:
        hint = " (overlap is a fraction of the tile: 64 pixels of a 512 tile is 0.125)" if overlap >= 1 else ""
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}{hint}")
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (windows per forward pass), got {batch_size!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")


def forward_function(model) -> Callable[[np.ndarray], np.ndarray]:
    """A function batch -> float32 probabilities for a Keras model (its compiled predict step, no gradients on
    any backend) or any callable that maps a batch (N, H, W, C) to probabilities (N, H, W, classes)."""
    import keras

    if isinstance(model, keras.Model):
        call = model.predict_on_batch
    elif callable(model):
        call = model
    else:
        raise TypeError(f"model must be a keras.Model or a callable batch -> probabilities, got {type(model)}")
    return lambda x: np.asarray(keras.ops.convert_to_numpy(call(x)), dtype="float32")


def probabilities_to_mask(probs: np.ndarray) -> np.ndarray:
    """Class indices (uint8) of probabilities (..., classes): the argmax, or probability > 0.5 for one class."""
    if probs.shape[-1] == 1:
        return (probs[..., 0] > 0.5).astype("uint8")
    return probs.argmax(-1).astype("uint8")


# ----------------------------------------------------------------------------------------- the windows
class WindowGrid:
    """Where the windows of an image of (height, width) go: window size (th, tw), row starts ``ys``, column
    starts ``xs``; the padded size (an axis shorter than the tile is padded up to the window)."""

    def __init__(self, height: int, width: int, tile: tuple[int, int], overlap_pixels: tuple[int, int]):
        self.height, self.width = height, width
        self.th = min(tile[0], -(-height // STRIDE) * STRIDE)
        self.tw = min(tile[1], -(-width // STRIDE) * STRIDE)
        self.padded = (max(height, self.th), max(width, self.tw))
        self.ys = tile_starts(self.padded[0], self.th, min(overlap_pixels[0], self.th - 1))
        self.xs = tile_starts(self.padded[1], self.tw, min(overlap_pixels[1], self.tw - 1))

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def pad_band(band: np.ndarray, height: int, width: int, padding: str) -> np.ndarray:
    """``band`` padded at the bottom and right to (height, width) with ``padding`` (constant: 0)."""
    dh, dw = height - band.shape[0], width - band.shape[1]
    if dh <= 0 and dw <= 0:
        return band
    pads = [(0, max(dh, 0)), (0, max(dw, 0))] + [(0, 0)] * (band.ndim - 2)
    return np.pad(band, pads, mode=padding)


def iter_rows(
    forward: Callable[[np.ndarray], np.ndarray],
    read_rows: Callable[[int, int], np.ndarray],
    grid: WindowGrid,
    blend: str = "gaussian",
    batch_size: int = 4,
    padding: str = "reflect",
    preprocessing: Callable | None = None,
    progress: keras.utils.Progbar | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Blended probabilities of an image, in order, as (y0, y1, rows (y1 - y0, width, classes) float32).

    ``read_rows(y0, y1)`` gives the image rows y0..y1 (full width, 0..255 values). Rows are yielded as soon as
    no later window touches them; in between only those rows' float sums are kept."""
    h, w = grid.height, grid.width
    th, tw = grid.th, grid.tw
    weights = blend_weights(th, tw, blend)[..., None]

    def windows():
        for y in grid.ys:
            band = pad_band(read_rows(y, min(y + th, h)), th, grid.padded[1], padding)
            for x in grid.xs:
                yield y, x, band[:, x : x + tw]

    acc = norm = None
    top = 0  # image row of acc[0]: rows above are yielded already
    done = 0
    it = windows()
    while batch := list(itertools.islice(it, batch_size)):
        x = np.stack([b[2] for b in batch]).astype("float32")
        if len(batch) < batch_size <= len(grid):
            # the last batch filled up to the batch size: one input shape per image, no retracing or XLA recompile
            x = np.concatenate([x, np.repeat(x[-1:], batch_size - len(batch), axis=0)])
        if preprocessing is not None:
            x = np.asarray(preprocessing(x), dtype="float32")
        probs = forward(x)[: len(batch)]
        if probs.ndim != 4 or probs.shape[:3] != (len(batch), th, tw):
            raise ValueError(
                f"the model returned shape {tuple(probs.shape)} for a batch of windows {tuple(x.shape)}: it must "
                "return per-pixel probabilities (N, H, W, classes) at its input size"
            )
        need = batch[-1][0] + th - top
        if acc is None or need > acc.shape[0]:
            grown = np.zeros((need, grid.padded[1], probs.shape[-1]), "float32")
            grown_norm = np.zeros((need, grid.padded[1], 1), "float32")
            if acc is not None:
                grown[: acc.shape[0]], grown_norm[: acc.shape[0]] = acc, norm
            acc, norm = grown, grown_norm
        for (y, x0, _), p in zip(batch, probs):
            acc[y - top : y - top + th, x0 : x0 + tw] += p * weights
            norm[y - top : y - top + th, x0 : x0 + tw] += weights
        done += len(batch)
        if progress is not None:
            progress.update(done)
        # rows above the next window's band are final
        following = grid.ys[done // len(grid.xs)] if done < len(grid) else grid.padded[0]
        if following > top:
            n = following - top
            for a in range(top, min(following, h), ROWS_PER_YIELD):  # a few rows at a time: small float copies
                b = min(a + ROWS_PER_YIELD, following, h)
                yield a, b, acc[a - top : b - top, :w] / norm[a - top : b - top, :w]
            rest = acc.shape[0] - n
            acc[:rest] = acc[n:]  # no temporary copy unless windows overlap by more than half
            norm[:rest] = norm[n:]
            acc[rest:] = 0
            norm[rest:] = 0
            top = following


def _sliding(
    model,
    image: np.ndarray,
    tile: tuple[int, int],
    overlap_pixels: tuple[int, int],
    blend: str,
    batch_size: int,
    padding: str,
    preprocessing: Callable | None,
    output: str,
    verbose: bool,
) -> np.ndarray:
    import keras

    grid = WindowGrid(image.shape[0], image.shape[1], tile, overlap_pixels)
    bar = keras.utils.Progbar(len(grid), unit_name="window") if verbose else None
    out = None
    for y0, y1, rows in iter_rows(
        forward_function(model),
        lambda a, b: image[a:b],
        grid,
        blend,
        batch_size,
        padding,
        preprocessing,
        bar,
    ):
        part = rows if output == "probabilities" else probabilities_to_mask(rows)
        if out is None:
            out = np.empty(image.shape[:2] + part.shape[2:], part.dtype)
        out[y0:y1] = part
    return out


def predict_sliding(
    model: keras.Model | Callable,
    image: np.ndarray,
    tile: int | tuple[int, int] = 512,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    padding: str = "reflect",
    preprocessing: Callable | None = None,
    output: str = "probabilities",
    verbose: bool = False,
) -> np.ndarray:
    """Predict one image (H, W, C; 0..255 values, as the whole-image path takes them) by overlapping windows.

    tile: window size, an int or (height, width), each a multiple of 32; an image side shorter than the tile gets
        one window of that side rounded up to a multiple of 32.
    overlap: fraction of the tile in [0, 1) that neighbouring windows share at least (0.25 of 512: 128 pixels).
    blend: ``gaussian`` (window borders count less) or ``uniform`` weights of each window's probabilities.
    batch_size: windows per forward pass.
    padding: how an image smaller than a window is filled at its bottom and right: ``reflect``, ``constant``
        (0, as whole-image prediction pads) or ``edge``.
    preprocessing: applied to each batch of windows (float32), e.g. ``sm.get_preprocessing("resnet34")``.
    output: ``probabilities`` (H, W, classes) float32, or ``mask`` (H, W) uint8 class indices (argmax; a one-class
        sigmoid model: probability > 0.5), which needs no (H, W, classes) float array.
    model: a keras.Model (also a wrapper model, e.g. test-time augmentation) or a callable batch -> probabilities.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"image must be an array (H, W, C) or (H, W), got shape {image.shape}")
    size = check_tile(tile)
    check_window_options(overlap, blend, batch_size, padding)
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    forward_function(model)  # the type check, before any work
    overlap_pixels = (int(round(overlap * size[0])), int(round(overlap * size[1])))
    return _sliding(model, image, size, overlap_pixels, blend, batch_size, padding, preprocessing, output, verbose)


def predict_tiled(
    model: keras.Model,
    image: np.ndarray,
    tile: int = 512,
    overlap: int = 64,
    blend: str = "gaussian",
    preprocessing: Callable | None = None,
    batch_size: int = 1,
) -> np.ndarray:
    """Class probabilities (H, W, classes) by overlapping ``tile`` x ``tile`` windows sharing at least ``overlap``
    *pixels*; images smaller than a tile are padded with 0. The earlier interface of `predict_sliding`."""
    size = check_tile(tile)
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in 0..{tile - 1} pixels, got {overlap}")
    check_window_options(0.0, blend, batch_size, "constant")
    image = np.asarray(image)
    return _sliding(
        model, image, size, (overlap, overlap), blend, batch_size, "constant", preprocessing, "probabilities", False
    )
