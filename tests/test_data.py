"""segmentation_models.data: data sets, mask formats, joint augmentation, the loader, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segmentation_models import data
from segmentation_models.data.shapes import write_shapes_dataset
from segmentation_models.preprocessing import get_preprocessing

from conftest import shared_path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), 10, 64, seed=0)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, "uint8")).save(path)
    return path


def test_folder_dataset_loader_batches(shapes):
    ds = data.from_folders(shapes / "images", shapes / "masks", classes=["bg", "disc", "square"])
    assert len(ds) == 10 and ds.num_classes == 3 and len(ds.colors) == 3
    image, mask = ds.load(0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}

    loader = data.SegmentationLoader(ds, batch_size=4, preprocessing="vgg16", training=False, workers=1)
    assert len(loader) == 3  # 4 + 4 + 2
    x, y, w = loader[0]
    assert x.shape == (4, 64, 64, 3) and y.shape == (4, 64, 64, 3) and w.shape == (4, 64, 64)
    raw = np.stack([ds.load(i)[0] for i in range(4)]).astype("float32")
    np.testing.assert_allclose(x, get_preprocessing("vgg16")(raw), atol=1e-4)  # backbone preprocessing applied
    np.testing.assert_array_equal(y.argmax(-1), np.stack([ds.load(i)[1] for i in range(4)]))
    assert np.all(y.sum(-1) == 1) and np.all(w == 1)


def test_loader_order_is_a_function_of_seed_and_epoch(shapes):
    ds = data.from_folders(shapes / "images", shapes / "masks", classes=3)
    make = lambda **kw: data.SegmentationLoader(ds, 2, training=True, crop_size=32, seed=7, workers=2, **kw)  # noqa
    a, b = make(), make(epoch=1)
    assert len(a) == 5
    x0, y0, _ = a[3]
    np.testing.assert_array_equal(x0, a[3][0])  # same batch again: same pixels (seeded augmentation)
    np.testing.assert_array_equal(x0, make()[3][0])
    assert x0.shape == (2, 32, 32, 3)
    assert not np.array_equal(a.order(), b.order())
    a.on_epoch_end()
    np.testing.assert_array_equal(a[3][0], b[3][0])  # epoch counter advanced by Keras' on_epoch_end


def test_augmentation_keeps_image_and_mask_aligned():
    # A gray image whose brightness encodes the class in 8x8 blocks: after flips, affine warps, color jitter
    # and random crops, every kept pixel must still show its class.
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 2, (12, 16))
    mask = np.kron(blocks, np.ones((8, 8), "int64")).astype("uint8")
    image = np.repeat((mask * 255)[..., None], 3, axis=-1).astype("uint8")
    pipeline = data.train_augmentation((64, 64))
    changed = 0
    for seed in range(20):
        pipeline.set_random_seed(seed)
        out = pipeline(image=image, mask=mask)
        img, m = out["image"], out["mask"]
        assert img.shape == (64, 64, 3) and m.shape == (64, 64)
        kept = m != data.IGNORE
        agree = ((img[..., 0] > 100) == (m == 1))[kept].mean()
        assert agree > 0.97, (seed, agree)
        assert set(np.unique(m)) <= {0, 1, data.IGNORE}  # nearest interpolation: no invented classes
        changed += not np.array_equal(m, mask[:64, :64])
    assert changed >= 15


def test_mask_formats(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 48, 3))
    # binary masks saved as JPEG (compression noise): thresholded
    binary = np.zeros((32, 48), "uint8")
    binary[8:24, 10:30] = 255
    _save(tmp_path / "bin" / "images" / "a.png", image)
    (tmp_path / "bin" / "masks").mkdir()
    Image.fromarray(binary).save(tmp_path / "bin" / "masks" / "a.jpg", quality=70)
    ds = data.from_folders(tmp_path / "bin" / "images", tmp_path / "bin" / "masks", mask_mode="binary")
    assert ds.class_names == ["background", "foreground"]
    m = ds.load(0)[1]
    assert (m == (binary > 127)).mean() > 0.99 and set(np.unique(m)) == {0, 1}

    # color palette masks with a class->color map and an ignored color
    colors = {"road": [128, 64, 128], "car": [64, 0, 128]}
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps({"classes": colors, "ignore": [[0, 0, 0]]}))
    rgb = np.zeros((32, 48, 3), "uint8")
    rgb[:16] = colors["road"]
    rgb[16:, :24] = colors["car"]
    _save(tmp_path / "pal" / "images" / "a.png", image)
    _save(tmp_path / "pal" / "masks" / "a.png", rgb)
    ds = data.from_folders(tmp_path / "pal" / "images", tmp_path / "pal" / "masks", palette=palette)
    m = ds.load(0)[1]
    assert ds.class_names == ["road", "car"]
    assert (m[:16] == 0).all() and (m[16:, :24] == 1).all() and (m[16:, 24:] == data.IGNORE).all()

    # a CSV of pairs, ignore index honoured
    _save(tmp_path / "csv" / "m.png", np.array([[0, 1], [2, 9]]).repeat(16, 0).repeat(16, 1))
    _save(tmp_path / "csv" / "i.png", rng.integers(0, 255, (32, 32, 3)))
    (tmp_path / "csv" / "pairs.csv").write_text("image,mask\ni.png,m.png\n")
    ds = data.from_pairs(tmp_path / "csv" / "pairs.csv", classes=3, ignore_index=9)
    m = ds.load(0)[1]
    assert m[0, 0] == 0 and m[0, 20] == 1 and m[20, 0] == 2 and m[20, 20] == data.IGNORE


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img, msk = tmp_path / "images", tmp_path / "masks"
    for name in ("a", "b", "c"):
        _save(img / f"{name}.png", rng.integers(0, 255, (32, 32, 3)))
        _save(msk / f"{name}.png", rng.integers(0, 3, (32, 32)))
    (img / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")  # corrupt
    _save(msk / "c.png", rng.integers(0, 3, (32, 40)))  # size mismatch
    ds = data.from_folders(img, msk, classes=3)
    with pytest.raises(data.DataError, match=r"cannot read image .*b\.png"):
        ds.check(verbose=False)
    with pytest.raises(data.DataError, match=r"c\.png is 32x32 but its mask .*c\.png is 40x32"):
        ds.load(2)
    kept = ds.check(skip_bad=True, verbose=False)
    assert [p[0].name for p in kept.pairs] == ["a.png"]
    assert "skipped" in capsys.readouterr().out
    assert (img / "b.png").exists()  # nothing deleted

    with pytest.raises(data.DataError, match=r"values \[7\] outside the classes 0\.\.2"):
        _save(msk / "a.png", np.full((32, 32), 7))
        ds.load(0)
    with pytest.raises(data.DataError, match=r"values \[255\].*--mask-mode binary"):
        _save(msk / "a.png", np.full((32, 32), 255))
        ds.load(0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no images in .*empty"):
        data.from_folders(tmp_path / "empty", msk, classes=3)
    (msk / "a.png").unlink()
    with pytest.raises(data.DataError, match=r"have no mask .*a\.png"):
        data.from_folders(img, msk, classes=3)
    palette = tmp_path / "p.json"
    palette.write_text(json.dumps({"classes": {"x": [255, 0, 0]}}))
    _save(tmp_path / "pal" / "a.png", np.full((32, 32, 3), (0, 255, 0)))
    pal = data.from_folders(img, tmp_path / "pal", palette=palette, skip_bad=True)
    with pytest.raises(data.DataError, match=r"colors \[\(0, 255, 0\)\] that are in no class"):
        pal.load(0)
    with pytest.raises(ValueError, match="batch size"):
        data.SegmentationLoader(pal, batch_size=4, training=True)


def test_camvid_layout():
    root = shared_path("camvid")
    train, test = data.from_camvid(root, "train"), data.from_camvid(root, "test")
    assert (len(train), len(test)) == (367, 233)
    assert train.class_names == list(data.CAMVID_CLASSES) and train.num_classes == 11
    assert train.mask_format.ignore_index == 11
    image, mask = train.load(0)
    assert image.shape == (360, 480, 3) and mask.shape == (360, 480)
    assert mask.max() == data.IGNORE or mask.max() <= 10
    assert (mask == data.IGNORE).mean() < 0.2 and (mask < 11).mean() > 0.8


def test_decoded_image_cache_changes_no_batch(shapes):
    ds = data.from_folders(shapes / "images", shapes / "masks", classes=3)
    make = lambda **kw: data.SegmentationLoader(ds, 2, training=True, crop_size=32, seed=3, scale=0.5, **kw)  # noqa
    cached, uncached = make(), make(cache_mb=0)
    assert cached.cache_mb == 1024 and uncached.cache_mb == 0
    for _ in range(2):  # the first pass fills the cache, the second reads from it
        for i in range(len(cached)):
            for a, b in zip(cached[i], uncached[i]):
                np.testing.assert_array_equal(a, b)
    assert len(cached._cache) == 10 and not uncached._cache
    image, mask = cached.decoded_sample(0)
    assert image.shape == (32, 32, 3) and not image.flags.writeable and not mask.flags.writeable  # rescaled, frozen
    small = make(cache_mb=3 * (32 * 32 * 4) / 2**20)  # room for three samples
    for i in range(len(small)):
        small[i]
    assert len(small._cache) == 3 and small._cache_bytes == 3 * 32 * 32 * 4
    import pickle

    clone = pickle.loads(pickle.dumps(cached))  # what a worker process would get: no cache
    assert not clone._cache and clone._cache_bytes == 0
    np.testing.assert_array_equal(clone[1][0], cached[1][0])
    assert make(use_multiprocessing=True).cache_mb == 0  # processes are restarted every epoch: no cache
    with pytest.raises(ValueError, match="cache_mb"):
        make(cache_mb=-1)
