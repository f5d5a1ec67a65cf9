"""Fault injection (issue #31): bad inputs and faults through the CLI and the API. Each case either leaves the
user's files byte-identical (hashes) or fails with a clear message before touching anything."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import segmentation_models as sm
from segmentation_models import runs
from segmentation_models.cli import main
from segmentation_models.data.shapes import write_shapes_dataset
from segmentation_models.prediction import output_stems

from conftest import BACKEND, ON_TF, ROOT

TINY = ["--backbone", "resnet18", "--encoder-weights", "none", "--model-arg", "decoder_filters=[8,8,8,8,8]"]
CLASSES = ["--classes", "background,disc,square"]
heavy = pytest.mark.skipif(not ON_TF, reason="CLI fault cases run on the TensorFlow pass; the logic is backend-free")


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        *CLASSES,
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--steps-per-epoch",
        "1",
        "--val-steps",
        "1",
        "--overlays",
        "0",
        "--workers",
        "1",
        "--output",
        str(out),
        "--quiet",
        *extra,
    ]


def _error(capsys) -> str:
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), 8, 64, seed=1)


@pytest.fixture(scope="module")
def run(shapes, tmp_path_factory):
    """A 2-epoch run of one step each (checkpoints of epochs 1 and 2 kept)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(_train(shapes, out)) == 0
    return out


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _tiny_model(classes: int = 3, channels: int = 3) -> keras.Model:
    return sm.Unet(
        "resnet18",
        input_shape=(None, None, channels),
        classes=classes,
        activation="softmax",
        encoder_weights=None,
        decoder_filters=(8, 8, 8, 8, 8),
    )


# ---- 1. export never replaces what it did not make ------------------------------------------
@heavy
def test_export_refuses_a_run_folder_a_user_folder_and_a_user_file(run, tmp_path, capsys):
    before = _hashes(run)
    assert main(["export", str(run), "--format", "savedmodel", "--output", str(run)]) == 1
    assert "not an export of segmentation_models" in _error(capsys)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert main(["export", str(run), "--format", "savedmodel", "--output", str(mine)]) == 1
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    assert main(["export", str(run), "--output", str(notes)]) == 1
    err = _error(capsys)
    assert "not replaced" in err and "--overwrite" in err
    assert notes.read_text() == "not a model" and (mine / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and _hashes(run) == before


# ---- 2. train --overwrite: checked first, only the package's own run folders ----------------
@heavy
def test_overwrite_with_a_typo_in_the_data_keeps_the_old_run(run, shapes, tmp_path, capsys):
    old = _copy_run(run, tmp_path)
    before = _hashes(old)
    assert main(_train(tmp_path / "no_such_data", old, "--overwrite")) == 1
    assert "does not exist" in _error(capsys)
    assert _hashes(old) == before


@heavy
def test_output_equal_to_or_holding_the_data_is_refused(shapes, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    (data / "my_notes.txt").write_text("mine")
    before = _hashes(tmp_path)
    for out in (data, tmp_path):
        assert main(_train(data, out, "--overwrite")) == 1
        assert "holds no input data" in _error(capsys)
    assert _hashes(tmp_path) == before


@heavy
def test_overwrite_never_removes_an_unmarked_folder_and_a_failed_start_does_not_block(shapes, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(_train(shapes, mine, "--overwrite")) == 1
    assert "not made by segmentation-models" in _error(capsys)
    assert _hashes(mine) == {"thesis.tex": hashlib.sha256(b"years of work").hexdigest()}
    # a run that failed before its first epoch (config.json only, marked) is started again by the same command
    failed = tmp_path / "failed"
    failed.mkdir()
    runs.write_marker(failed, runs.RUN_MARKER, "train")
    (failed / "config.json").write_text("{}")
    assert main(_train(shapes, failed, "--epochs", "1")) == 0
    assert "never completed an epoch" in capsys.readouterr().out
    assert (failed / "best.keras").is_file()


# ---- 3. predict: names that cannot collide, nothing of the user's replaced --------------------
def test_output_stems_are_distinct():
    files = [Path("a/x.png"), Path("a/x.jpg"), Path("b/x.png"), Path("a/y.png"), Path("a/x_png.tif")]
    stems = output_stems(files)
    assert len(set(stems)) == len(files)
    assert stems[3] == "y" and stems[1] == "x_jpg"


@heavy
def test_predict_writes_one_file_per_image_and_replaces_no_user_file(run, shapes, tmp_path, capsys):
    image = Image.open(shapes / "images" / "shape_0000.png")
    for rel in ("a/x.png", "a/x.jpg", "b/x.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        image.save(tmp_path / rel)
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out), "--quiet"]) == 0
    assert "wrote 3 mask(s)" in capsys.readouterr().out
    listed = json.loads((out / "predictions.json").read_text())
    assert len({e["mask"] for e in listed}) == 3 and all(Path(e["mask"]).is_file() for e in listed)
    assert len(list(out.glob("*_mask.png"))) == 3
    # its own folder: predicting again replaces its files without a flag
    assert main(["predict", str(run), str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out), "--quiet"]) == 0
    # a folder of the user's with a file of the same name: refused before anything is written, then --overwrite
    user = tmp_path / "user"
    user.mkdir()
    (user / "x_mask.png").write_bytes(b"my drawing")
    args = ["predict", str(run), str(tmp_path / "b" / "x.png"), "--output", str(user), "--quiet"]
    assert main(args) == 1
    assert "--overwrite" in _error(capsys)
    assert (
        sorted(p.name for p in user.iterdir()) == ["x_mask.png"] and (user / "x_mask.png").read_bytes() == b"my drawing"
    )
    assert main(args + ["--overwrite"]) == 0
    assert (user / "x_mask.png").read_bytes() != b"my drawing"


# ---- 4. model and run must agree ----------------------------------------------------------------
@heavy
def test_a_model_of_other_classes_or_channels_is_refused(run, tmp_path, capsys):
    folder = _copy_run(run, tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64)).save(images / "i.png")
    for name, model, message in (
        ("two.keras", _tiny_model(classes=2), "predicts 2 classes"),
        ("grey.keras", _tiny_model(channels=1), "1-channel"),
    ):
        model.save(folder / name)
        before = _hashes(folder)
        assert main(["predict", str(folder / name), str(images), "--quiet"]) == 1
        assert message in _error(capsys)
        assert main(["evaluate", str(folder / name), "--split", "val", "--quiet"]) == 1
        assert message in _error(capsys)
        assert _hashes(folder) == before


# ---- 5. honest resume; corrupt .keras files named as such -----------------------------------------
@heavy
@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(run, tmp_path, capsys, damage):
    folder = _copy_run(run, tmp_path)
    last = folder / "checkpoints" / "epoch_0002.keras"
    if damage == "delete":
        last.unlink()
    else:
        data = last.read_bytes()
        os.unlink(last)  # last.keras is a hard link to it: truncate the checkpoint alone
        last.write_bytes(data[: len(data) // 2])
    assert main(["train", "--output", str(folder), "--resume", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "checkpoint of epoch 2 is missing or corrupt" in printed and "epoch_0001.keras" in printed
    if damage == "truncate":
        assert "corrupt or truncated" in printed
    assert [r["epoch"] for r in json.loads((folder / "history.json").read_text())] == [1, 2]


@heavy
def test_resume_without_any_intact_checkpoint_is_an_error(run, tmp_path, capsys):
    folder = _copy_run(run, tmp_path)
    shutil.rmtree(folder / "checkpoints")
    before = _hashes(folder)
    assert main(["train", "--output", str(folder), "--resume", "--quiet"]) == 1
    assert "no intact checkpoint" in _error(capsys)
    assert _hashes(folder) == before


@pytest.mark.parametrize("damage", ["random", "truncated", "entry"])
def test_corrupt_keras_files_are_named_corrupt(run, tmp_path, damage):
    path = tmp_path / "model.keras"
    data = (run / "best.keras").read_bytes()
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    else:  # flip bytes inside the stored weights: the zip directory is intact, an entry's CRC is not
        with zipfile.ZipFile(run / "best.keras") as z:
            info = z.getinfo("model.weights.h5")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
        path.write_bytes(data[:start] + bytes(b ^ 0xFF for b in data[start : start + 64]) + data[start + 64 :])
    with pytest.raises(ValueError, match="corrupt"):
        runs.load_model(path)


# ---- 6. memory that cannot explode --------------------------------------------------------------
def test_tiles_cover_the_image_and_blend_to_the_per_pixel_answer():
    from segmentation_models.inference import predict_tiled, tile_starts

    for length, tile, overlap in ((100, 64, 16), (64, 64, 8), (40, 64, 8), (1000, 96, 32)):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile >= length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    # a per-pixel model: tiled and whole-image probabilities are the same, with either blending
    x = keras.Input((None, None, 3))
    model = keras.Model(x, keras.layers.Conv2D(4, 1, activation="softmax")(x))
    image = np.random.default_rng(0).uniform(0, 255, (130, 75, 3)).astype("float32")
    whole = keras.ops.convert_to_numpy(model(image[None] / 255.0))[0]
    for blend in ("uniform", "gaussian"):
        tiled = predict_tiled(model, image, tile=64, overlap=16, blend=blend, preprocessing=lambda t: t / 255.0)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


@heavy
def test_large_images_go_through_tiles_with_a_message(run, tmp_path, monkeypatch, capsys):
    from segmentation_models import inference

    monkeypatch.setattr(inference, "MEMORY_BUDGET", inference.BYTES_PER_PIXEL * 64 * 64)
    images = tmp_path / "big"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(images / "big.png")
    assert main(["predict", str(run), str(images), "--output", str(tmp_path / "pred"), "--quiet"]) == 0
    assert "overlapping 64x64 tiles" in capsys.readouterr().out
    with Image.open(tmp_path / "pred" / "big_mask.png") as mask:
        assert mask.size == (200, 150)


@heavy
def test_a_crop_larger_than_every_image_is_an_error(shapes, tmp_path, capsys):
    args = _train(shapes, tmp_path / "out")
    args[args.index("--crop") + 1] = "9600"
    assert main(args) == 1
    assert "larger than every training image" in _error(capsys)
    assert not (tmp_path / "out").exists()


# ---- 7. the smaller ones ------------------------------------------------------------------------
@heavy
def test_sigint_prints_one_line_naming_resume(shapes, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT))
    args = _train(shapes, out)
    args[args.index("--epochs") + 1] = "100"
    # SIGINT handled as at a terminal, even when the tests run as a background job (which ignores it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmentation_models", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (out / "checkpoints" / "epoch_0001.keras").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    assert "--resume" in lines[0] and str(out) in lines[0]


@heavy
def test_the_command_prints_no_tensorflow_start_up_logs():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(KERAS_BACKEND="tensorflow", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "segmentation_models", "info"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]


def test_16_bit_images_use_one_scale(tmp_path):
    from segmentation_models.data import read_image

    for name, top in (("dim.png", 1000), ("bright.png", 60000)):
        raw = np.full((8, 8), 1000, "uint16")
        raw[0, 0] = top
        Image.fromarray(raw).save(tmp_path / name)
    dim, bright = read_image(tmp_path / "dim.png"), read_image(tmp_path / "bright.png")
    assert dim[4, 4, 0] == bright[4, 4, 0] == round(1000 / 65535 * 255)


@heavy
def test_model_arguments_fail_clearly_and_early(shapes, tmp_path, capsys):
    base = _train(shapes, tmp_path / "out")
    for value, message in (
        ("no_such_arg=1", "Unexpected keyword argument 'no_such_arg'"),
        ("decoder_filters=[64,32", "not valid JSON"),
    ):
        args = list(base)
        args[args.index("decoder_filters=[8,8,8,8,8]")] = value
        assert main(args) == 1
        assert message in _error(capsys)
    assert not (tmp_path / "out").exists()


def test_albumentations_is_told_not_to_go_online(monkeypatch):
    from segmentation_models.data import train_augmentation

    monkeypatch.delenv("NO_ALBUMENTATIONS_UPDATE", raising=False)
    train_augmentation((32, 32))
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "0")  # the user's own value wins
    train_augmentation((32, 32))
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "0"


# ---- channel adaptation of pretrained-format files, one backbone per family -----------------------
def _pretrained_format_file(name: str, folder: Path) -> Path:
    """A random-valued file of ``name`` in the layout its published weights have."""
    from test_backbone_families import _published_file
    from test_keras_applications_backbones import KERAS_APPS

    from segmentation_models.backbones import get_backbone_spec

    from helpers import randomize_weights, write_keras_applications_h5, write_model_as_keras2_h5

    spec = get_backbone_spec(name)
    if name in KERAS_APPS:  # keras.applications files, matched by position
        app = KERAS_APPS[name]((96, 96, 3))
        randomize_weights(app, seed=1)
        return write_keras_applications_h5(app, folder / f"{name}.h5")
    if spec.family == "mit":  # safetensors from PyTorch, through the family's converter
        from safetensors.numpy import save_file
        from test_mit import GOLDEN, _checkpoint

        save_file(_checkpoint(np.load(GOLDEN), name), str(folder / f"{name}.safetensors"))
        return folder / f"{name}.safetensors"
    if spec.family in ("resnet", "vgg"):  # image-classifiers / keras-applications files keyed by our names
        backbone = spec.build(keras.Input((None, None, 3)))
        randomize_weights(backbone, seed=1)
        return write_model_as_keras2_h5(backbone, folder / f"{name}.h5")
    return _published_file(name, folder)[0]  # 1.0.1 families (Keras 2 auto-generated names: by position)


# Three first-conv layouts (plain, VGG's, MiT's patch embedding) check 1, 2, 4 and 5 channels; the other families
# the two rules (summed for 1 channel, cycled and scaled for more) with 1 and 5 only: the rules are one function,
# the families differ in where the first conv is. Every family passed 1, 2, 4 and 5 when this test was written.
EVERY_CHANNEL_COUNT = {"resnet18", "vgg16", "mit_b0"}
FAMILY_REPRESENTATIVES = [
    "resnet18",
    "vgg16",
    "seresnet18",
    "seresnet50",
    "resnext50",
    "densenet121",
    "inceptionv3",
    "inceptionresnetv2",
    "mobilenet",
    "mobilenetv2",
    "efficientnetb0",
    "mit_b0",
    "efficientnetv2b0",
    "convnext_tiny",
    "mobilenetv3small",
    "resnet50v2",
    "xception",
]


@pytest.mark.skipif(not ON_TF, reason="weights are read the same way on every backend; TensorFlow suffices")
@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_pretrained_format_files_adapt_to_1_2_4_5_channels(name, tmp_path):
    from segmentation_models.backbones import get_backbone_spec
    from segmentation_models.backbones.factory import build_encoder

    spec = get_backbone_spec(name)
    size = 96 if name in ("xception", "inceptionv3", "inceptionresnetv2") else 64
    path = str(_pretrained_format_file(name, tmp_path))
    rgb = build_encoder(name, input_shape=(size, size, 3), encoder_weights=path).model
    kernel = rgb.get_layer(spec.first_conv).get_weights()[0]
    for channels in (1, 2, 4, 5) if name in EVERY_CHANNEL_COUNT else (1, 5):
        model = build_encoder(name, input_shape=(size, size, channels), encoder_weights=path).model
        np.testing.assert_allclose(
            model.get_layer(spec.first_conv).get_weights()[0],
            sm.weights.adapt_first_conv_kernel(kernel, channels),
            rtol=1e-6,
            err_msg=str(channels),
        )
