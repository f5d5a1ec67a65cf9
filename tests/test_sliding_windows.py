"""Sliding-window inference (`segmentation_models.inference.windows`), streaming large images from disk to a mask
file (`segmentation_models.inference.rasters`), and the --tile/--overlap/--blend flags of predict and evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile
from PIL import Image

import segmentation_models as sm
from segmentation_models.inference import predict_large_image, predict_sliding

from conftest import BACKEND, ON_TF, ROOT

sys.path.insert(0, str(ROOT))
from benchmarks.sliding_windows import MEASURED_CLI  # noqa: E402  (the command line, reporting its own peak RSS)

tf_only = pytest.mark.skipif(not ON_TF, reason="file and command-line checks run on the TensorFlow pass only")
CLASSES = ["background", "disc", "square"]


def _conv_model(classes: int = 3, activation: str = "softmax") -> keras.Model:
    """A tiny fully convolutional model with a pooling stage (a receptive field beyond one pixel)."""
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.MaxPooling2D()(y)
    y = keras.layers.Conv2D(classes, 3, padding="same", activation=activation)(y)
    return keras.Model(x, keras.layers.UpSampling2D()(y))


def _unet() -> keras.Model:
    return sm.Unet("resnet18", classes=3, encoder_weights=None, decoder_filters=(8, 8, 8, 8, 8))


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _whole(model, image: np.ndarray) -> np.ndarray:
    """The whole-image prediction: padded with 0 to a multiple of 32, as `predict_probabilities` does."""
    h, w = image.shape[:2]
    padded = np.zeros((-(-h // 32) * 32, -(-w // 32) * 32, 3), "float32")
    padded[:h, :w] = image
    return keras.ops.convert_to_numpy(model(padded[None] / 255.0, training=False))[0, :h, :w]


def _scaled(t):
    return t / 255.0


# ----------------------------------------------------------------------------------------- in memory
def test_a_tile_as_large_as_the_image_is_the_whole_image_prediction():
    model, image = _unet(), _image(90, 70)
    # called eagerly (a callable, not the model's compiled predict step): tracing a Unet costs more than the test
    got = predict_sliding(
        lambda b: model(b, training=False), image, tile=128, padding="constant", preprocessing=_scaled
    )
    assert got.shape == (90, 70, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, _whole(model, image), atol=1e-5)


def test_tiled_is_close_to_whole_image_with_either_blending():
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    model = keras.Model(x, keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(y))
    image = _image(200, 150)
    whole = _whole(model, image)
    for blend in ("gaussian", "uniform"):
        tiled = predict_sliding(model, image, tile=64, overlap=0.5, blend=blend, batch_size=3, preprocessing=_scaled)
        assert tiled.shape == whole.shape
        np.testing.assert_allclose(tiled.sum(-1), 1.0, atol=1e-5)
        # only window borders (zero padding of the convolutions) differ; interior windows outweigh them
        assert np.abs(tiled - whole).mean() < 0.01, blend
        assert np.abs(tiled[40:-40, 40:-40] - whole[40:-40, 40:-40]).max() < (0.02 if blend == "gaussian" else 0.2)


def test_a_per_pixel_model_gives_the_same_answer_tiled_with_every_padding_and_batch():
    x = keras.Input((None, None, 3))
    model = keras.Model(x, keras.layers.Conv2D(4, 1, activation="softmax")(x))
    image = _image(130, 75)
    whole = _whole(model, image)
    for padding in ("reflect", "constant", "edge"):
        for batch_size in (1, 5):
            got = predict_sliding(model, image, 64, 0.25, "gaussian", batch_size, padding, _scaled)
            np.testing.assert_allclose(got, whole, atol=1e-5)


@tf_only
def test_padding_modes_fill_images_smaller_than_a_window():
    model, image = _conv_model(), _image(40, 50)
    results = {
        p: predict_sliding(model, image, tile=128, padding=p, preprocessing=_scaled)
        for p in ("reflect", "constant", "edge")
    }
    for p, r in results.items():
        assert r.shape == (40, 50, 3) and np.isfinite(r).all(), p
    np.testing.assert_allclose(results["constant"], _whole(model, image), atol=1e-5)
    # the padding is seen near the bottom/right border only
    assert not np.allclose(results["reflect"][-2:], results["constant"][-2:])
    np.testing.assert_allclose(results["reflect"][:20, :20], results["constant"][:20, :20], atol=1e-5)


@tf_only
def test_mask_output_is_the_argmax_and_a_one_class_model_is_thresholded():
    model, image = _conv_model(), _image(100, 120)
    probs = predict_sliding(model, image, tile=64, preprocessing=_scaled)
    mask = predict_sliding(model, image, tile=64, preprocessing=_scaled, output="mask")
    assert mask.dtype == np.uint8 and (mask == probs.argmax(-1)).all()
    binary = _conv_model(1, "sigmoid")
    p1 = predict_sliding(binary, image, tile=64, preprocessing=_scaled)
    m1 = predict_sliding(binary, image, tile=(64, 96), preprocessing=_scaled, output="mask")
    assert p1.shape == (100, 120, 1) and set(np.unique(m1)) <= {0, 1}
    p1b = predict_sliding(binary, image, tile=(64, 96), preprocessing=_scaled)
    assert (m1 == (p1b[..., 0] > 0.5)).all()
    # any callable batch -> probabilities, e.g. a wrapper around a model
    calls = []
    got = predict_sliding(lambda b: calls.append(len(b)) or model.predict_on_batch(b / 255.0), image, tile=64)
    assert got.shape == probs.shape and max(calls) <= 4


@tf_only
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tile": 100}, "multiple of 32"),
        ({"tile": (64, 0)}, "multiple of 32"),
        ({"tile": "512"}, "multiple of 32"),
        ({"overlap": 64}, "fraction of the tile"),
        ({"overlap": -0.1}, r"\[0, 1\)"),
        ({"blend": "cosine"}, "gaussian, uniform"),
        ({"batch_size": 0}, "positive int"),
        ({"padding": "wrap"}, "reflect, constant, edge"),
        ({"output": "logits"}, "probabilities, mask"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict_sliding(_conv_model(), _image(64, 64), **kwargs)


@tf_only
def test_bad_models_and_images_say_what_is_wrong():
    with pytest.raises(TypeError, match="keras.Model or a callable"):
        predict_sliding("model.keras", _image(64, 64))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        predict_sliding(_conv_model(), np.zeros((2, 64, 64, 3)))
    with pytest.raises(ValueError, match="per-pixel probabilities"):
        predict_sliding(lambda b: np.zeros((len(b), 3)), _image(64, 64), tile=64)


# ----------------------------------------------------------------------------------------- streaming
def _tiled_tiff(path: Path, image: np.ndarray, tile: int = 256, **kwargs) -> None:
    h, w = image.shape[:2]

    def tiles():
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                t = np.zeros((tile, tile, 3), np.uint8)
                part = image[y : y + tile, x : x + tile]
                t[: part.shape[0], : part.shape[1]] = part
                yield t

    tifffile.imwrite(path, tiles(), shape=image.shape, dtype="uint8", tile=(tile, tile), photometric="rgb", **kwargs)


@tf_only
@pytest.mark.parametrize("source", ["tiled.tif", "striped.tif", "plain.tif", "image.npy", "image.png"])
def test_streaming_equals_sliding_windows_in_memory(tmp_path, source):
    model, image = _conv_model(), _image(700, 1000)
    path = tmp_path / source
    if source == "tiled.tif":
        _tiled_tiff(path, image, compression="zlib")
    elif source == "striped.tif":
        tifffile.imwrite(path, image, rowsperstrip=37, compression="zlib", photometric="rgb")
    elif source == "plain.tif":  # uncompressed and contiguous: memory-mapped
        tifffile.imwrite(path, image, photometric="rgb")
    elif source == "image.npy":
        np.save(path, image)
    else:
        Image.fromarray(image).save(path)
    expected = predict_sliding(model, image, tile=256, overlap=0.25, preprocessing=_scaled, output="mask")
    out = tmp_path / "mask.tif"
    info = predict_large_image(model, path, out, tile=256, overlap=0.25, preprocessing=_scaled, batch_size=3)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages.first.is_tiled
        got = tif.asarray()
    assert got.shape == (700, 1000) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    assert info["shape"] == (700, 1000) and info["class_pixels"] == np.bincount(expected.ravel()).tolist()
    if source == "tiled.tif":  # the PNG writer: the same mask
        predict_large_image(model, path, tmp_path / "mask.png", tile=256, preprocessing=_scaled, batch_size=3)
        with Image.open(tmp_path / "mask.png") as png:
            np.testing.assert_array_equal(np.asarray(png), expected)
        with pytest.raises(FileExistsError, match="overwrite=True"):  # a file the user has is kept
            predict_large_image(model, path, out, tile=256, preprocessing=_scaled)
        with pytest.raises(ValueError, match="is the source image"):
            predict_large_image(model, path, path, tile=256, overwrite=True)
        assert tifffile.imread(path).shape == (700, 1000, 3)


@tf_only
def test_streaming_copies_geotiff_tags_and_reads_16_bit_and_gray(tmp_path):
    geo = [
        (33550, "d", 3, (0.5, 0.5, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), True),
        (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), True),
        (34737, "s", 0, "WGS 84 / UTM zone 33N|", True),
    ]
    image16 = (_image(100, 130).astype("uint16") * 257)[..., 0]  # gray 16-bit
    tifffile.imwrite(tmp_path / "geo.tif", image16, extratags=geo, tile=(64, 64))
    model = _conv_model()
    predict_large_image(model, tmp_path / "geo.tif", tmp_path / "mask.tif", tile=64, colors=[(0, 0, 0)] * 3)
    with tifffile.TiffFile(tmp_path / "mask.tif") as tif:
        page = tif.pages.first
        for code, _, _, value, _ in geo:
            assert page.tags[code].value == value, code
        assert page.photometric == tifffile.PHOTOMETRIC.PALETTE
        got = page.asarray()
    rgb = np.repeat((image16 // 257).astype("uint8")[..., None], 3, -1)
    np.testing.assert_array_equal(got, predict_sliding(model, rgb, tile=64, output="mask"))
    with pytest.raises(ValueError, match=r"\.tif, \.tiff or \.png"):
        predict_large_image(model, tmp_path / "geo.tif", tmp_path / "mask.jpg", tile=64)
    np.save(tmp_path / "float.npy", np.zeros((40, 40, 3), "float64"))
    with pytest.raises(ValueError, match="8 or 16 bits"):
        predict_large_image(model, tmp_path / "float.npy", tmp_path / "m.tif", tile=64)


@tf_only
@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_streaming_at_a_run_scale_matches_the_in_memory_path(tmp_path, scale):
    """A run trained with --scale: bands are resized as they are read, the mask back by nearest neighbour; the
    in-memory path (the whole image resized, probabilities resized back bilinearly) agrees but at class edges."""
    from segmentation_models.inference import predict_probabilities

    model = _conv_model()
    yy, xx = np.mgrid[0:300, 0:410]
    image = np.stack([(xx * 0.6) % 256, (yy * 0.8) % 256, (xx + yy) % 256], -1).astype("uint8")  # smooth regions
    _tiled_tiff(tmp_path / "in.tif", image, tile=64)
    info = predict_large_image(
        model, tmp_path / "in.tif", tmp_path / "m.tif", tile=64, preprocessing=_scaled, scale=scale, batch_size=3
    )
    got = tifffile.imread(tmp_path / "m.tif")
    want = predict_probabilities(model, [image], _scaled, scale, tile=64)[0].argmax(-1)
    assert got.shape == (300, 410) and info["shape"] == (300, 410) and sum(info["class_pixels"]) == 300 * 410
    assert (got == want).mean() > 0.95, (got == want).mean()
    with pytest.raises(ValueError, match="positive number"):
        predict_large_image(model, tmp_path / "in.tif", tmp_path / "m.tif", tile=64, scale=0)


# ----------------------------------------------------------------------------------------- the commands
def _run_folder(root: Path, model: keras.Model) -> Path:
    """A run folder as `segmentation-models train` leaves it, as far as evaluate and predict read it."""
    run = root / "run"
    run.mkdir(parents=True)
    model.save(run / "best.keras")
    config = {
        "model": {"architecture": "Unet", "backbone": "resnet18"},
        "preprocessing": "identity",
        "classes": {"names": CLASSES, "colors": [[0, 0, 0], [255, 0, 0], [0, 0, 255]]},
        "data": {"classes": CLASSES, "mask_mode": "index"},
        "train": {"scale": 1.0, "seed": 0},
    }
    (run / "config.json").write_text(json.dumps(config))
    return run


@tf_only
def test_predict_and_evaluate_take_tile_overlap_and_blend(tmp_path, capsys):
    from segmentation_models.cli import main
    from segmentation_models.data.shapes import write_shapes_dataset

    run = _run_folder(tmp_path, _conv_model())
    data = write_shapes_dataset(tmp_path / "shapes", 3, 96, seed=0)
    _tiled_tiff(data.parent / "geo.tif", _image(150, 200), tile=64)
    images = [str(data / "images" / "shape_0000.png"), str(data.parent / "geo.tif")]
    assert main(["predict", str(run), *images, "--output", str(tmp_path / "pred"), "--tile", "64", "--quiet"]) == 0
    assert "sliding windows into geo_mask.tif, no overlay" in capsys.readouterr().out
    pred = tmp_path / "pred"
    assert sorted(p.name for p in pred.iterdir() if not p.name.startswith(".")) == [
        "geo_mask.tif",
        "predictions.json",
        "shape_0000_mask.png",
        "shape_0000_overlay.png",
    ]
    entries = json.loads((pred / "predictions.json").read_text())
    assert entries[1]["overlay"] is None and abs(sum(entries[1]["classes"].values()) - 1) < 1e-3
    assert tifffile.imread(pred / "geo_mask.tif").shape == (150, 200)
    with Image.open(pred / "shape_0000_mask.png") as m:
        assert m.size == (96, 96)
    # the same flags on evaluate; whole-image and tiled scores of the same model agree closely
    args = ["evaluate", str(run), "--data", str(data), "--quiet", "--overwrite"]
    assert main([*args, "--output", str(tmp_path / "e1")]) == 0
    assert (
        main([*args, "--output", str(tmp_path / "e2"), "--tile", "64", "--overlap", "0.5", "--blend", "uniform"]) == 0
    )
    whole, tiled = (json.loads((tmp_path / e / "results.json").read_text()) for e in ("e1", "e2"))
    assert abs(whole["pixel_accuracy"] - tiled["pixel_accuracy"]) < 0.05
    (data.parent / "broken.tif").write_bytes(b"II*\x00 not really a TIFF")
    broken = [str(data.parent / "broken.tif"), "--tile", "64", "--quiet"]
    assert main(["predict", str(run), *broken, "--output", str(tmp_path / "p3"), "--skip-bad"]) == 0
    assert "skipped: cannot read TIFF" in capsys.readouterr().out
    assert main(["predict", str(run), *broken, "--output", str(tmp_path / "p4")]) == 1
    assert "cannot read TIFF" in capsys.readouterr().err
    assert main(["predict", str(run), images[0], "--output", str(tmp_path / "p2"), "--tile", "100"]) == 1
    assert "multiple of 32" in capsys.readouterr().err


@tf_only
def test_predict_and_evaluate_take_tta(tmp_path, capsys):
    from segmentation_models.cli import main
    from segmentation_models.data.shapes import write_shapes_dataset
    from segmentation_models.inference import predict_images_tta

    model = _conv_model()
    run = _run_folder(tmp_path, model)
    data = write_shapes_dataset(tmp_path / "shapes", 3, 96, seed=0)
    image_path = data / "images" / "shape_0000.png"
    _tiled_tiff(data.parent / "big.tif", _image(150, 200), tile=64)
    inputs = [str(image_path), str(data.parent / "big.tif")]
    assert main(["predict", str(run), *inputs, "--output", str(tmp_path / "p"), "--tta", "hflip", "--tile", "64"]) == 0
    image = np.asarray(Image.open(image_path).convert("RGB"))
    preprocessing = sm.get_preprocessing("resnet18")
    windows = dict(tile=64, overlap=0.25, blend="gaussian")
    want = predict_images_tta(model, [image], preprocessing, 1.0, "hflip", **windows)[0].argmax(-1)
    with Image.open(tmp_path / "p" / "shape_0000_mask.png") as mask:
        np.testing.assert_array_equal(np.asarray(mask), want)
    assert tifffile.imread(tmp_path / "p" / "big_mask.tif").shape == (150, 200)  # streamed: each window augmented
    args = ["evaluate", str(run), "--data", str(data), "--quiet"]
    assert main([*args, "--output", str(tmp_path / "e1")]) == 0
    assert main([*args, "--output", str(tmp_path / "e2"), "--tta", "flips"]) == 0
    plain, augmented = (json.loads((tmp_path / e / "results.json").read_text()) for e in ("e1", "e2"))
    assert plain["inference"]["tta"] is None and augmented["inference"]["tta"] == "flips"
    assert plain["confusion_matrix"] != augmented["confusion_matrix"]  # an untrained 3x3 model is not flip-invariant
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse's usage error
        main(["evaluate", str(run), "--data", str(data), "--tta", "rot45"])
    assert "invalid choice: 'rot45'" in capsys.readouterr().err


def _rss_run(args: list[str], log: Path) -> tuple[int, float, float]:
    """Run the command line in a fresh process; (exit code, its peak RSS in GB, seconds)."""
    peak = log.with_suffix(".peak")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT), SM_PEAK_RSS_FILE=str(peak))
    started = time.time()
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, "-c", MEASURED_CLI, *args], env=env, stdout=out, stderr=out).returncode
    return code, int(peak.read_text()) / 2**20 if peak.exists() else float("nan"), time.time() - started


@tf_only
def test_an_8000_pixel_image_streams_through_the_command_line_in_bounded_memory(tmp_path):
    """Acceptance: an 8000x8000 RGB tiled TIFF and the same PNG (64 megapixels: 768 MB as float32 RGB, 192 MB per
    float32 class map) predicted end to end by `segmentation-models predict --tile 256` under 1.5 GB peak RSS."""
    side, tile = 8000, 256
    run = _run_folder(tmp_path, _conv_model(2 + 1))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (tile, tile, 3), dtype=np.uint8)

    def tiles():  # uint8 tiles only: the test never holds the image as floats
        for ty in range(-(-side // tile)):
            for tx in range(-(-side // tile)):
                yield base + np.uint8((ty * 7 + tx * 13) % 256)

    tifffile.imwrite(
        tmp_path / "big.tif", tiles(), shape=(side, side, 3), dtype="uint8", tile=(tile, tile), photometric="rgb"
    )
    Image.fromarray(np.tile(base, (side // tile + 1, side // tile + 1, 1))[:side, :side]).save(
        tmp_path / "big.png", compress_level=1
    )
    for name in ("big.tif", "big.png"):
        out = tmp_path / f"pred_{Path(name).suffix[1:]}"
        code, rss, seconds = _rss_run(
            ["predict", str(run), str(tmp_path / name), "--tile", "256", "--output", str(out), "--quiet"],
            tmp_path / f"{name}.log",
        )
        log = (tmp_path / f"{name}.log").read_text()
        assert code == 0, log[-3000:]
        print(f"{name}: peak RSS {rss:.2f} GB, {seconds:.1f} s")
        assert rss < 1.5, f"{name}: peak RSS {rss:.2f} GB"
        with tifffile.TiffFile(out / "big_mask.tif") as tif:
            page = tif.pages.first
            assert page.shape == (side, side) and page.dtype == np.uint8 and page.is_tiled
            corner = page.asarray()[:300, :300] if name == "big.tif" else None
        assert not (out / "big_overlay.png").exists() and "no overlay" in log
        if corner is not None:
            assert corner.max() <= 2
