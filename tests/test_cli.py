"""The `segmentation-models` command line end to end: train -> evaluate -> predict, resume after SIGKILL,
CamVid, and refusals that lose nothing."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from segmentation_models.cli import main
from segmentation_models.data.shapes import write_shapes_dataset

from conftest import BACKEND, ON_TF, ROOT, shared_path

TINY = ["--backbone", "resnet18", "--encoder-weights", "none", "--model-arg", "decoder_filters=[16,8,8,8,8]"]
heavy = pytest.mark.skipif(not ON_TF, reason="heavy CLI runs are checked on the TensorFlow pass only")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), 20, 64, seed=0)


def _train_args(data, out, *extra):
    return [
        "train",
        "--data",
        str(data),
        "--classes",
        "background,disc,square",
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--workers",
        "1",
        "--output",
        str(out),
        "--quiet",
        *extra,
    ]


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        return np.asarray(img)


@pytest.fixture(scope="module")
def trained_run(shapes, tmp_path_factory):
    """A 2-epoch run on the shapes with one corrupt image, skipped by --skip-bad."""
    import shutil

    root = tmp_path_factory.mktemp("run")
    data = root / "data"
    shutil.copytree(shapes, data)
    (data / "images" / "shape_0003.png").write_bytes(b"not an image at all")
    out = root / "run"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(_train_args(data, out, "--overlays", "2", "--skip-bad")) == 0
    assert "skipped: cannot read image" in printed.getvalue() and "shape_0003.png" in printed.getvalue()
    return out


def test_train_writes_a_complete_run_folder(trained_run):
    out = trained_run
    config = json.loads((out / "config.json").read_text())
    assert config["classes"]["names"] == ["background", "disc", "square"]
    assert config["model"]["backbone"] == "resnet18" and config["preprocessing"] == "identity"
    assert config["counts"] == {"train": 15, "val": 4, "steps_per_epoch": 3}  # 19 good pairs of 20
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        for key in ("mean_iou", "val_mean_iou", "accuracy", "val_accuracy"):
            assert 0.0 <= float(r[key]) <= 1.0, (key, r[key])
        assert np.isfinite(float(r["loss"])) and float(r["lr"]) > 0
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 2
    assert _png(out / "training_curves.png").ndim == 3
    grid = _png(out / "val_predictions.png")
    assert grid.shape[0] > 100 and len(list((out / "val_predictions").glob("*_overlay.png"))) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0 <= summary["best_val_mean_iou"] <= 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0001.keras", "epoch_0002.keras"]
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind
    model = keras.saving.load_model(out / "last.keras")
    assert model.output_shape[-1] == 3 and int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6


def test_evaluate_and_predict(trained_run, shapes, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--split", "val", "--output", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    for name in ("background", "disc", "square", "mean"):
        assert name in printed
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert res["images"] == 4 and res["class_names"] == ["background", "disc", "square"]
    assert 0 <= res["mean_iou"] <= 1 and 0 <= res["pixel_accuracy"] <= 1
    matrix = np.array(res["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == res["pixels"] == 4 * 64 * 64
    tp = np.diag(matrix)
    iou = tp / (matrix.sum(0) + matrix.sum(1) - tp)
    np.testing.assert_allclose([res["per_class"][n]["iou"] for n in res["class_names"]], iou, atol=1e-5)
    assert _png(tmp_path / "eval" / "confusion_matrix.png").ndim == 3
    if not ON_TF:
        return
    images = shapes / "images"
    assert (
        main(
            [
                "predict",
                str(trained_run / "best.keras"),
                str(images / "shape_0000.png"),
                str(images),
                "--output",
                str(tmp_path / "pred"),
                "--quiet",
            ]
        )
        == 0
    )
    masks = sorted((tmp_path / "pred").glob("*_mask.png"))
    assert len(masks) == 20
    mask = _png(masks[0])
    assert mask.shape == (64, 64) and mask.max() <= 2
    over = _png(tmp_path / "pred" / "shape_0000_overlay.png")
    assert over.shape == (64, 64, 3) and over.dtype == np.uint8


def _batch_statistics_miou(run: Path) -> float:
    """Validation mIoU of a run's best.keras with BatchNormalization on batch statistics (all val images in one
    batch): what the weights are worth, whatever the stored inference statistics."""
    from segmentation_models.data.sources import open_train_val
    from segmentation_models.evaluation import confusion_matrix, scores_from_confusion
    from segmentation_models.inference import predict_probabilities
    from segmentation_models.preprocessing import get_preprocessing
    from segmentation_models.runs import load_model

    config = json.loads((run / "config.json").read_text())
    model = load_model(run / "best.keras")
    _, val_set = open_train_val(config["data"], config["train"]["seed"], skip_bad=True)
    pairs = [val_set.load(i) for i in range(len(val_set))]
    in_training_mode = lambda x, training=False: model(x, training=True)  # noqa: E731
    probs = predict_probabilities(in_training_mode, [p[0] for p in pairs], get_preprocessing("resnet18"))
    matrix = sum(confusion_matrix(t, p.argmax(-1), val_set.num_classes) for (_, t), p in zip(pairs, probs))
    return scores_from_confusion(matrix, val_set.class_names)["mean_iou"]


@heavy
def test_evaluate_in_inference_mode_matches_batch_statistics(trained_run, tmp_path):
    """The run's BatchNorm statistics are re-estimated before validation and saving: inference mode is as good
    as the weights (Keras' moving averages alone lag far behind after a short run)."""
    assert json.loads((trained_run / "config.json").read_text())["train"]["bn_batches"] == 10
    assert main(["evaluate", str(trained_run), "--split", "val", "--output", str(tmp_path / "eval"), "--quiet"]) == 0
    inference = json.loads((tmp_path / "eval" / "results.json").read_text())["mean_iou"]
    assert abs(inference - _batch_statistics_miou(trained_run)) <= 0.02, inference


@heavy
def test_demo_trains_a_working_model(tmp_path, capsys):
    """`segmentation-models demo` at its default settings: inference-mode validation mean IoU >= 0.90."""
    assert main(["demo", "--output", str(tmp_path / "demo")]) == 0
    results = json.loads((tmp_path / "demo" / "run" / "eval-val" / "results.json").read_text())
    assert results["mean_iou"] >= 0.90, results["per_class"]
    assert f"(mean IoU {results['mean_iou']:.3f})" in capsys.readouterr().out
    assert len(list((tmp_path / "demo" / "predictions").glob("*_mask.png"))) == 4


@heavy
def test_export_a_run_folder_to_onnx_with_its_preprocessing(trained_run, shapes, tmp_path, capsys):
    """The exported graph takes 0..255 pixels and gives what `predict` computes; the run's classes travel with
    it; a bare .keras file needs --backbone for its preprocessing."""
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from segmentation_models.inference import predict_probabilities
    from segmentation_models.preprocessing import get_preprocessing
    from segmentation_models.runs import load_model

    out = tmp_path / "run.onnx"
    assert main(["export", str(trained_run), "--with-preprocessing", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"exported {out}" in printed and "checked on a random 2x80x112x3 batch" in printed
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == ["background", "disc", "square"] and meta["backbone"] == "resnet18"
    assert meta["architecture"] == "unet" and meta["source"] == "best.keras"

    image = _png(shapes / "images" / "shape_0001.png")
    model = load_model(trained_run / "best.keras")
    expected = predict_probabilities(model, [image], get_preprocessing("resnet18"))[0]
    session = onnxruntime.InferenceSession(str(out))
    got = session.run(None, {"image": image[None].astype("float32")})[0][0]
    np.testing.assert_allclose(got, expected, atol=1e-4)

    bare = tmp_path / "bare" / "model.keras"
    bare.parent.mkdir()
    bare.write_bytes((trained_run / "best.keras").read_bytes())
    assert main(["export", str(bare), "--with-preprocessing"]) == 1
    assert "give --backbone NAME" in capsys.readouterr().err


def test_existing_run_folder_is_never_overwritten(trained_run, shapes, capsys):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}
    assert main(_train_args(shapes, trained_run)) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()} == before


def test_bad_data_errors_name_the_file(shapes, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    (data / "images" / "shape_0003.png").write_bytes(b"not an image at all")
    assert main(_train_args(data, tmp_path / "run")) == 1
    assert "shape_0003.png" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nowhere"), *TINY, "--output", str(tmp_path / "r2")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing-run")]) == 1
    assert (data / "images" / "shape_0003.png").exists()


def _weights(path):
    model = keras.saving.load_model(path, compile=False)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@heavy
def test_resume_after_sigkill_matches_uninterrupted_run(shapes, tmp_path):
    common = [
        "--deterministic",
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--steps-per-epoch",
        "6",
        "--val-steps",
        "1",
        "--overlays",
        "0",
        "--schedule",
        "cosine",
    ]
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")

    def cmd(out, *extra):
        return [sys.executable, "-m", "segmentation_models", *_train_args(shapes, out), *common, *extra]

    full = subprocess.Popen(cmd(tmp_path / "full"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = tmp_path / "killed" / "checkpoints" / "epoch_0001.keras"
    deadline = time.time() + 900
    while not first.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert first.exists(), killed.stdout.read().decode()[-3000:]
    assert not (tmp_path / "killed" / "checkpoints" / "epoch_0003.keras").exists()
    resumed = subprocess.run(cmd(tmp_path / "killed", "--resume"), env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert not list((tmp_path / "killed").glob(".*tmp*"))  # a kill while writing leaves no stale files
    full_out = full.communicate(timeout=900)[0].decode()
    assert full.returncode == 0, full_out[-3000:]
    a, b = _weights(tmp_path / "full" / "last.keras"), _weights(tmp_path / "killed" / "last.keras")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    hist = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2, 3]


@heavy
def test_camvid_short_run(tmp_path, capsys):
    root = shared_path("camvid")
    out = tmp_path / "camvid"
    args = [
        "train",
        "--data",
        str(root),
        *TINY,
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--crop",
        "64",
        "--scale",
        "0.25",
        "--steps-per-epoch",
        "5",
        "--val-steps",
        "1",
        "--lr",
        "3e-3",
        "--schedule",
        "constant",
        "--overlays",
        "1",
        "--workers",
        "2",
        "--output",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"], [r["loss"] for r in history]
    config = json.loads((out / "config.json").read_text())
    assert config["classes"]["ignore_index"] == 11 and len(config["classes"]["names"]) == 11
    capsys.readouterr()
    assert main(["evaluate", str(out), "--limit", "4", "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(printed) if line.startswith("class"))
    rows = printed[header + 1 : header + 12]
    assert [r.split()[0] for r in rows] == [
        "sky",
        "building",
        "pole",
        "road",
        "pavement",
        "tree",
        "signsymbol",
        "fence",
        "car",
        "pedestrian",
        "bicyclist",
    ]
    res = json.loads((out / "eval-test" / "results.json").read_text())
    assert res["images"] == 4 and res["pixels"] < 4 * 360 * 480  # void pixels left out
    tiled_args = ["--tile", "64", "--overlap", "0.25", "--output", str(tmp_path / "tiled")]
    assert main(["evaluate", str(out), "--limit", "4", "--quiet", *tiled_args]) == 0
    tiled = json.loads((tmp_path / "tiled" / "results.json").read_text())
    # windows of the training crop's size on real frames score as the whole frames do (0.4 points apart here; a
    # trained model at full resolution: docs/inference.md); misplaced windows would cost far more
    assert abs(tiled["mean_iou"] - res["mean_iou"]) < 0.02, (res["mean_iou"], tiled["mean_iou"])
    assert 0 <= res["mean_iou"] <= 1


def test_training_metrics_leave_ignored_pixels_out():
    # The loader gives weight 0 to void and padding (all-zero one-hot rows): the compiled mean IoU and accuracy
    # must not count them (as class 0), so that validation agrees with `evaluate`.
    from segmentation_models.data import IGNORE, one_hot_targets
    from segmentation_models.evaluation import confusion_matrix, scores_from_confusion
    from segmentation_models.training import compile_for_training

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (2, 8, 8)).astype("uint8")
    pred = np.where(rng.random((2, 8, 8)) < 0.7, truth, rng.integers(0, 3, (2, 8, 8))).astype("uint8")
    truth[:, :3] = IGNORE  # void rows: predicted as class 2, which counts against class 0 if they are not ignored
    pred[:, :3] = 2
    y, w = one_hot_targets(truth, 3)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    config = {
        "lr": 1e-3,
        "schedule": "constant",
        "optimizer": "adam",
        "loss": "categorical_crossentropy",
        "metrics": ["mean_iou", "accuracy"],
        "epochs": 1,
    }
    compile_for_training(model, config, 1, 3)
    scores = model.evaluate(np.eye(3, dtype="float32")[pred], y, sample_weight=w, verbose=0, return_dict=True)
    expected = scores_from_confusion(confusion_matrix(truth, pred, 3), ["a", "b", "c"])
    assert scores["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-6)
    assert scores["accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-6)


def test_info_lists_architectures_backbones_and_weights(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "architectures: Unet" in out
    row = next(line for line in out.splitlines() if line.startswith("resnet18 "))
    assert row.split()[1:] == ["identity", "imagenet"]


def test_get_loss_leaves_ignored_pixels_out():
    """The loader's (one-hot with zero rows at void, pixel weights with 0 at void): the package's losses and
    Keras' per-pixel losses chosen by name both give the mean over the non-void pixels."""
    from segmentation_models import losses as sm_losses
    from segmentation_models.training import get_loss

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 8, 8))
    w = (rng.random((2, 8, 8)) > 0.3).astype("float32")
    y = np.eye(3, dtype="float32")[labels] * w[..., None]
    p = rng.dirichlet(np.ones(3), (2, 8, 8)).astype("float32")
    per_pixel_ce = -np.sum(y * np.log(p), axis=-1)
    kept_mean = per_pixel_ce[w > 0].mean()
    default = get_loss("categorical_crossentropy")
    assert isinstance(default, sm_losses.CategoricalCELoss)
    np.testing.assert_allclose(float(default(y, p, sample_weight=w)), kept_mean / 3, rtol=1e-5)  # 1.0.1: / C
    keras_ce = get_loss("CategoricalCrossentropy")
    assert keras_ce.reduction == "mean_with_sample_weight"
    np.testing.assert_allclose(float(keras_ce(y, p, sample_weight=w)), kept_mean, rtol=1e-5)
    mse = get_loss("mse")  # a Keras loss function by name becomes its Loss class
    assert isinstance(mse, keras.losses.MeanSquaredError) and mse.reduction == "mean_with_sample_weight"
    with pytest.raises(ValueError, match="Did you mean 'dice_loss'"):
        get_loss("dice_los")
