"""Images larger than memory: read window by window from disk, predict by sliding windows, write the class-index
mask band by band (`predict_large_image`).

Readers (`open_raster`): TIFF and BigTIFF through tifffile (tiled or striped, any compression tifffile decodes:
only the tiles or strips a band of windows needs are read; uncompressed contiguous data is memory-mapped), ``.npy``
memory-mapped, and every other format (PNG, JPEG, ...) decoded whole as uint8 RGB: H x W x 3 bytes (by
`segmentation_models.data.read_image`, or OpenCV above 33.5 megapixels: one copy, no Pillow size limit).
Writers: a tiled TIFF of uint8 class indices (written tile row by tile row, with the class colors as its palette
and the GeoTIFF tags of a GeoTIFF input), or a PNG (the uint8 mask, H x W bytes, is kept in memory until the end).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.io import DataError
from .windows import (
    WindowGrid,
    check_tile,
    check_window_options,
    forward_function,
    iter_rows,
    probabilities_to_mask,
)

if TYPE_CHECKING:
    import keras

__all__ = [
    "GEOTIFF_TAGS",
    "TIFF_EXTENSIONS",
    "Raster",
    "open_raster",
    "image_size",
    "write_mask_tiff",
    "predict_large_image",
]

TIFF_EXTENSIONS = (".tif", ".tiff")
# ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams,
# GDAL_METADATA: the georeferencing a mask of the same pixel grid shares with its image
GEOTIFF_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112)
MASK_TILE = 256  # tile size of the mask TIFFs written
PILLOW_PIXELS = 2**25  # PNG, JPEG, ... up to this size are read by read_image (Pillow), larger ones by OpenCV


def _to_rgb(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 RGB (h, w, 3) of a region: 16-bit values scaled by the 16-bit range (as `read_image`), one channel
    repeated, channels after the third (alpha, infrared) left out."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype == np.uint16:
        arr = ((arr.astype("uint32") * 255 + 32767) // 65535).astype("uint8")
    elif arr.dtype != np.uint8:
        raise DataError(f"{what} holds {arr.dtype} values: convert it to 8 or 16 bits per channel (uint8, uint16)")
    if arr.shape[-1] < 3:
        arr = np.repeat(arr[..., :1], 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


class Raster:
    """An image on disk read by row bands: ``shape`` (height, width), ``read_rows(y0, y1)`` -> uint8 RGB rows,
    ``geotags`` (tifffile ``extratags`` of a GeoTIFF input, else empty). A context manager."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int],
        read: Callable[[int, int], np.ndarray],
        close: Callable[[], None] | None = None,
    ) -> None:
        self.path, self.shape, self._read, self._close = path, shape, read, close
        self.geotags: list[tuple] = []

    def read_rows(self, y0: int, y1: int) -> np.ndarray:
        return _to_rgb(self._read(y0, y1), f"image {self.path}")

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_raster(path: str | Path) -> Raster:
    """A `Raster` of a TIFF (tiles or strips read as needed), a ``.npy`` array (memory-mapped) or another image
    format (decoded whole: H x W x 3 bytes)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in TIFF_EXTENSIONS:
        return _open_tiff(path)
    if suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise DataError(f"cannot read {path}: {err}") from None
        if arr.ndim not in (2, 3):
            raise DataError(f"{path} holds an array of shape {arr.shape}: give an image (H, W) or (H, W, C)")
        return Raster(path, arr.shape[:2], lambda a, b: np.asarray(arr[a:b]))
    arr = _decode_whole(path)
    return Raster(path, arr.shape[:2], lambda a, b: arr[a:b])


def _decode_whole(path: Path) -> np.ndarray:
    """uint8 RGB of a PNG, JPEG, ... file: `segmentation_models.data.read_image` (what whole-image prediction
    reads) up to `PILLOW_PIXELS`, OpenCV above."""
    from ..data import read_image

    try:
        size = image_size(path)
    except Exception:  # noqa: BLE001  (unreadable: OpenCV's answer below says so)
        size = None
    if size is not None and size[0] * size[1] <= PILLOW_PIXELS:
        return read_image(path)
    # OpenCV decodes into one array (Pillow's RGB conversion holds up to three copies), and Pillow refuses images
    # above 179 megapixels unless its process-wide limit is changed, which a library must not do
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "reading PNG/JPEG images this large needs OpenCV: pip install opencv-python-headless (or give a TIFF)"
        ) from None
    arr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None:
        raise DataError(f"cannot read image {path}: corrupt, not an image, or above OpenCV's 2**30 pixels")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB, dst=arr)  # in place: no second H x W x 3 copy


def _open_tiff(path: Path) -> Raster:
    import tifffile

    unreadable = (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError)
    try:
        tif = tifffile.TiffFile(path)
    except unreadable as err:
        raise DataError(f"cannot read TIFF {path}: {err} (corrupt or not a TIFF)") from None
    try:
        raster = _tiff_raster(tif, path)
        raster.geotags = [
            (code, tag.dtype, tag.count, tag.value, True)
            for code in GEOTIFF_TAGS
            if (tag := tif.pages.first.tags.get(code)) is not None
        ]
    except unreadable as err:
        tif.close()
        if isinstance(err, DataError):
            raise
        raise DataError(f"cannot read TIFF {path}: {err or type(err).__name__} (corrupt or not a TIFF)") from None
    except BaseException:
        tif.close()
        raise
    return raster


def _tiff_raster(tif, path: Path) -> Raster:
    import tifffile

    page = tif.pages.first
    h, w = int(page.imagelength), int(page.imagewidth)
    if page.imagedepth > 1:
        raise DataError(f"{path} is a volume (depth {page.imagedepth}): give a 2-D image")
    colormap = None
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        cmap = np.asarray(page.colormap)
        colormap = (cmap.T >> 8 if cmap.max() > 255 else cmap.T).astype("uint8")  # (entries, 3)

    def colored(arr: np.ndarray) -> np.ndarray:
        return colormap[arr[..., 0] if arr.ndim == 3 else arr] if colormap is not None else arr

    if page.is_memmappable:  # uncompressed, contiguous: the OS pages in what a band reads
        data = tifffile.memmap(path, page=0, mode="r").reshape(h, w, -1)
        return Raster(path, (h, w), lambda a, b: colored(np.asarray(data[a:b])), tif.close)
    if page.is_tiled:
        seg_h, seg_w = int(page.tilelength), int(page.tilewidth)
    else:
        seg_h, seg_w = int(page.rowsperstrip) or h, w
    seg_h = min(seg_h, h) if not page.is_tiled else seg_h
    ny, nx = -(-h // seg_h), -(-w // seg_w)
    planes = int(page.samplesperpixel) if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE else 1
    samples = int(page.samplesperpixel)
    offsets, counts = page.dataoffsets, page.databytecounts
    cache: OrderedDict = OrderedDict()  # decoded segments of the last two segment rows: bands overlap
    cache_size = 2 * nx * planes + 2
    fh = tif.filehandle

    def segment(index: int) -> np.ndarray:
        if index in cache:
            cache.move_to_end(index)
            return cache[index]
        if not counts[index]:  # a sparse file's missing tile: zeros
            seg = np.zeros((seg_h, seg_w, samples // planes), page.dtype)
        else:
            fh.seek(offsets[index])
            try:
                seg = page.decode(fh.read(counts[index]), index, jpegtables=page.jpegtables)[0]
            except (ValueError, ImportError, RuntimeError) as err:
                raise DataError(
                    f"cannot decode {path} ({page.compression.name} compression): {err}; tifffile decodes most "
                    "compressions with the imagecodecs package (pip install imagecodecs)"
                ) from None
            seg = seg.reshape(seg.shape[-3:])
        cache[index] = seg
        if len(cache) > cache_size:
            cache.popitem(last=False)
        return seg

    def read(y0: int, y1: int) -> np.ndarray:
        out = np.empty((y1 - y0, w, samples), page.dtype)
        for ty in range(y0 // seg_h, -(-y1 // seg_h)):
            for tx in range(nx):
                for plane in range(planes):
                    seg = segment(plane * ny * nx + ty * nx + tx)
                    top, left = ty * seg_h, tx * seg_w
                    a, b = max(y0, top), min(y1, top + seg.shape[0], h)
                    right = min(w, left + seg.shape[1])
                    part = seg[a - top : b - top, : right - left]
                    if planes > 1:
                        out[a - y0 : b - y0, left:right, plane] = part[..., 0]
                    else:
                        out[a - y0 : b - y0, left:right] = part
        return colored(out)

    return Raster(path, (h, w), read, tif.close)


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of an image file, read from its header; None when Pillow refuses to open it as a
    decompression bomb (above 179 megapixels, i.e. very large). Unreadable files raise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_EXTENSIONS:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return int(page.imagelength), int(page.imagewidth)
    if suffix == ".npy":
        shape = np.load(path, mmap_mode="r").shape
        return (int(shape[0]), int(shape[1])) if len(shape) >= 2 else (0, 0)
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":  # without Pillow's size warning
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Image.DecompressionBombError:
        return None


# ----------------------------------------------------------------------------------------- scale
def _scaled_reader(read: Callable[[int, int], np.ndarray], shape: tuple[int, int], scaled: tuple[int, int]):
    """``read_rows`` of the image resized to ``scaled`` (as `segmentation_models.data.rescale`: area interpolation
    when shrinking, bilinear when enlarging), from the source rows each band covers plus a margin."""
    import cv2

    (h, w), (sh, sw) = shape, scaled
    fy = h / sh
    shrink = sh * sw < h * w

    def read_rows(a: int, b: int) -> np.ndarray:
        y0, y1 = max(0, int(np.floor(a * fy)) - 2), min(h, int(np.ceil(b * fy)) + 2)
        block = read(y0, y1)
        rows = max(1, int(round((y1 - y0) / fy)))
        out = cv2.resize(block, (sw, rows), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        start = min(max(0, int(round(a - y0 / fy))), rows - (b - a)) if rows >= b - a else 0
        out = out[start : start + (b - a)]
        if len(out) < b - a:  # rounding at the bottom border: repeat the last row
            out = np.concatenate([out, np.repeat(out[-1:], b - a - len(out), axis=0)])
        return out

    return read_rows


def _nearest_rows(bands, scaled: tuple[int, int], shape: tuple[int, int]):
    """Mask row bands of the ``scaled`` image resized to ``shape`` by nearest neighbour, in order."""
    (sh, sw), (h, w) = scaled, shape
    rows = np.minimum(((np.arange(h) + 0.5) * sh / h).astype("int64"), sh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sw / w).astype("int64"), sw - 1)
    y = 0
    for a, b, mask in bands:
        n = int(np.searchsorted(rows, b, side="left"))  # output rows whose source row is above b
        if n > y:
            yield y, n, mask[rows[y:n] - a][:, cols]
            y = n


# ----------------------------------------------------------------------------------------- writers
def _tiles_of_rows(rows: Iterator[np.ndarray], width: int, tile: int) -> Iterator[np.ndarray]:
    """(tile, tile) uint8 tiles in TIFF order (rows of tiles, left to right) from mask row bands of any height;
    tiles past the image are zero-filled."""
    padded_w = -(-width // tile) * tile
    buf = np.zeros((tile, padded_w), "uint8")
    filled = 0
    for band in rows:
        pos = 0
        while pos < len(band):
            n = min(tile - filled, len(band) - pos)
            buf[filled : filled + n, :width] = band[pos : pos + n]
            filled, pos = filled + n, pos + n
            if filled == tile:
                for x in range(0, padded_w, tile):
                    yield buf[:, x : x + tile].copy()
                buf[:] = 0
                filled = 0
    if filled:
        for x in range(0, padded_w, tile):
            yield buf[:, x : x + tile].copy()


def write_mask_tiff(
    path: str | Path,
    rows: Iterator[np.ndarray],
    shape: tuple[int, int],
    colors: Sequence[Sequence[int]] | None = None,
    extratags: Sequence[tuple] = (),
    tile: int = MASK_TILE,
) -> None:
    """Write a class-index mask given as uint8 row bands (top to bottom, any height) to a tiled, zlib-compressed
    TIFF (BigTIFF above 2 GB), with ``colors`` as its palette; written tile row by tile row."""
    import tifffile

    h, w = shape
    kwargs: dict = {"photometric": "minisblack"}
    if colors is not None:
        cmap = np.zeros((3, 256), "uint16")
        cmap[:, : len(colors)] = np.asarray(colors, "uint16").T * 257
        kwargs = {"photometric": "palette", "colormap": cmap}
    with tifffile.TiffWriter(path, bigtiff=h * w > 2**31) as out:
        out.write(
            _tiles_of_rows(rows, w, tile),
            shape=(h, w),
            dtype="uint8",
            tile=(tile, tile),
            compression="zlib",
            extratags=list(extratags),
            **kwargs,
        )


def predict_large_image(
    model: keras.Model | Callable,
    source: str | Path,
    destination: str | Path,
    tile: int | tuple[int, int] = 512,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    padding: str = "reflect",
    preprocessing: Callable | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    scale: float = 1.0,
    verbose: bool = False,
    overwrite: bool = False,
) -> dict:
    """Predict an image file by sliding windows into a class-index mask file, never holding the image's
    probabilities: a band of windows at a time, only the float sums of rows later windows still touch are kept
    (about tile x width x (classes + 1) x 4 bytes), finished rows are written at once.

    source: a TIFF/BigTIFF (only the tiles or strips a band needs are read), a ``.npy`` array (memory-mapped) or
        another image format (PNG, JPEG, ...: decoded whole, H x W x 3 bytes).
    destination: ``.tif``/``.tiff`` (tiled uint8, palette ``colors``, written band by band; a GeoTIFF input's
        georeferencing tags are copied) or ``.png`` (the H x W uint8 mask is collected in memory, then written).
    tile, overlap, blend, batch_size, padding, preprocessing, model: as `predict_sliding` (0..255 values in).
    scale: predict the image resized by this factor (a run's training scale), band by band (area interpolation
        when shrinking); the mask is resized back to the image's size by nearest neighbour.

    overwrite: replace an existing ``destination`` (never the source image itself).

    Returns {"shape": (height, width), "class_pixels": pixels of each class index, "path": destination}.
    """
    import keras

    destination = Path(destination)
    size = check_tile(tile)
    check_window_options(overlap, blend, batch_size, padding)
    forward = forward_function(model)
    suffix = destination.suffix.lower()
    if suffix not in TIFF_EXTENSIONS + (".png",):
        raise ValueError(f"destination must be a .tif, .tiff or .png file, got {destination.name!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 64:
        raise ValueError(f"scale must be a positive number (a resize factor, 1 = as is), got {scale!r}")
    if destination.exists():
        if destination.resolve() == Path(source).resolve():
            raise ValueError(f"destination {destination} is the source image: give another file name for the mask")
        if not overwrite:
            raise FileExistsError(f"{destination} exists: give another file name, or overwrite=True to replace it")
    counts = np.zeros(256, "int64")
    with open_raster(source) as raster:
        h, w = raster.shape
        sh, sw = (h, w) if scale == 1 else (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
        read = raster.read_rows if scale == 1 else _scaled_reader(raster.read_rows, (h, w), (sh, sw))
        grid = WindowGrid(sh, sw, size, (int(round(overlap * size[0])), int(round(overlap * size[1]))))
        bar = keras.utils.Progbar(len(grid), unit_name="window") if verbose else None
        bands = iter_rows(forward, read, grid, blend, batch_size, padding, preprocessing, bar)
        bands = ((y0, y1, probabilities_to_mask(probs)) for y0, y1, probs in bands)
        if scale != 1:
            bands = _nearest_rows(bands, (sh, sw), (h, w))

        def masks() -> Iterator[np.ndarray]:
            for _y0, _y1, mask in bands:
                counts[:] += np.bincount(mask.ravel(), minlength=256)
                yield mask

        tmp = destination.with_name(f".{destination.stem}.tmp{os.getpid()}{destination.suffix}")
        try:
            if suffix == ".png":
                from ..data import default_colors
                from ..plots import save_mask_png

                full = np.empty((h, w), "uint8")
                y = 0
                for band in masks():
                    full[y : y + len(band)] = band
                    y += len(band)
                save_mask_png(tmp, full, colors if colors is not None else default_colors(int(full.max()) + 1))
            else:
                write_mask_tiff(tmp, masks(), (h, w), colors, raster.geotags)
            os.replace(tmp, destination)  # a crash never leaves a half-written mask under the final name
        finally:
            tmp.unlink(missing_ok=True)
    used = int(np.flatnonzero(counts).max()) + 1 if counts.any() else 0
    return {"shape": (h, w), "class_pixels": counts[:used].tolist(), "path": str(destination)}
