"""LiteRT export: the .tflite file computes what the model computes; float16 and int8 quantization; the CLI on a
run folder; clear errors before any conversion."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import export as sm_export
from segmentation_models.cli import main
from segmentation_models.export import ExportError, export_model
from segmentation_models.litert import LiteRTModel, read_metadata

from conftest import ON_TF, export_unet

needs_tf = pytest.mark.skipif(
    not ON_TF or importlib.util.find_spec("tensorflow") is None,
    reason="LiteRT conversion is TensorFlow's; the subprocess route from JAX/torch is the ONNX one's",
)
CLASSES = ["background", "disc", "square"]


def _tiny_unet(input_shape=(64, 64, 3)):
    return export_unet(input_shape)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder as `train` writes it (config.json, best.keras), without training: 8 shapes images."""
    from segmentation_models.data.shapes import write_shapes_dataset
    from segmentation_models.training import DataConfig, ModelConfig, TrainConfig, TrainingOptions

    root = tmp_path_factory.mktemp("litert")
    data = write_shapes_dataset(root / "shapes", 8, 64, seed=1)
    config = TrainConfig(
        data=DataConfig(data=str(data), classes=CLASSES, val_fraction=0.5),
        model=ModelConfig(arch="unet", backbone="resnet18", encoder_weights=None),
        train=TrainingOptions(epochs=1, batch_size=2),
    ).to_dict()
    config["classes"] = {"names": CLASSES, "colors": [[0, 0, 0], [255, 0, 0], [0, 255, 0]]}
    config["preprocessing"] = sm.preprocessing.get_preprocessing("resnet18").mode
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    _tiny_unet((None, None, 3)).save(run / "best.keras")
    return run


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One model exported as float32 and float16 LiteRT files (a conversion takes 5-15 s; int8, calibrated on a
    run's images, is the CLI test's)."""
    folder = tmp_path_factory.mktemp("exports")
    model = _tiny_unet()
    results = {}
    for quantize in (None, "float16"):
        path = folder / f"m-{quantize or 'float32'}.tflite"
        results[quantize] = export_model(model, path, "litert", metadata={"classes": CLASSES}, quantize=quantize)
    return model, results


@needs_tf
def test_float32_litert_export_equals_the_model_and_keeps_its_metadata(exports, tmp_path):
    model, results = exports
    result = results[None]
    path = Path(result.path)
    assert result.converter == "tensorflow (TFLiteConverter)" and result.input_shape == [1, 64, 64, 3]
    assert result.max_abs_diff < 1e-4 and result.label_agreement == 1.0 and result.checked_shape == [1, 64, 64, 3]
    assert result.size_bytes == path.stat().st_size

    lite = LiteRTModel(path)
    assert (lite.input_name, lite.output_name, lite.input_shape) == ("image", "probabilities", [1, 64, 64, 3])
    assert lite.metadata["classes"] == json.dumps(CLASSES) and lite.metadata["quantization"] == "none (float32)"
    x = np.random.default_rng(1).uniform(0, 1, (3, 64, 64, 3)).astype("float32")  # 3 images through batch 1
    np.testing.assert_allclose(lite(x), keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-4)

    # A user's file under the name is not replaced (an earlier export of this package is)
    mine = tmp_path / "mine.tflite"
    mine.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not an export of segmentation_models.*--overwrite"):
        export_model(model, mine, "litert", check=False)
    assert mine.read_bytes() == b"not a model" and sm_export._made_here(path) and not sm_export._made_here(mine)


@needs_tf
def test_a_float16_export_is_half_the_size_and_runs(exports):
    model, results = exports
    result = results["float16"]
    assert result.quantize == "float16" and result.max_abs_diff < 0.05 and result.label_agreement > 0.9
    assert result.size_bytes < 0.55 * results[None].size_bytes
    lite = LiteRTModel(result.path)
    x = np.random.default_rng(3).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    assert lite.metadata["quantization"] == "float16" and np.isfinite(lite(x)).all()


@needs_tf
def test_litert_cli_on_a_run_folder(tiny_run, capsys):
    assert main(["export", str(tiny_run), "--format", "litert"]) == 1  # a dynamic model, no crop in the run
    assert "needs a fixed input size" in capsys.readouterr().err and not list(tiny_run.glob("*.tflite"))

    args = ["export", str(tiny_run), "--format", "litert", "--input-size", "64", "64", "--with-preprocessing"]
    assert main([*args, "--quantize", "int8", "--representative-images", "3", "--check-miou", "2"]) == 0
    out = tiny_run / "model-int8.tflite"  # int8 calibrated on 3 of the run's training images
    printed = capsys.readouterr().out
    assert f"exported {out} (litert, int8," in printed and "checked on a random 1x64x64x3 batch" in printed
    assert "mean IoU on 2 val images at 64x64: export" in printed
    meta = read_metadata(out)
    assert json.loads(meta["classes"]) == CLASSES and meta["preprocessing"] == "identity"
    assert meta["input_values"].startswith("0..255") and meta["quantization"] == "int8"
    parameters = keras.saving.load_model(tiny_run / "best.keras").count_params()
    assert out.stat().st_size < 1.3 * parameters  # about a byte per weight (float32: 4)


def test_litert_errors_come_before_any_conversion(tmp_path, monkeypatch):
    dynamic = _tiny_unet((None, None, 3))
    with pytest.raises(ExportError, match="LiteRT export needs a fixed input size.*input_size"):
        export_model(dynamic, tmp_path / "m.tflite", "litert")
    with pytest.raises(ExportError, match="quantize applies to LiteRT"):
        export_model(dynamic, tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(ExportError, match="int8 quantization calibrates on representative inputs"):
        export_model(dynamic, tmp_path / "m.tflite", "litert", input_size=(64, 64), quantize="int8")
    with pytest.raises(ExportError, match=r"representative_data must be \(n, 64, 64, 3\)"):
        export_model(
            dynamic, tmp_path / "m.tflite", "litert", input_size=(64, 64), quantize="int8",
            representative_data=np.zeros((2, 32, 32, 3)),
        )  # fmt: skip
    (tmp_path / "folder.tflite").mkdir()
    with pytest.raises(ExportError, match="is a folder"):
        export_model(dynamic, tmp_path / "folder.tflite", "litert", input_size=(64, 64))
    # export_run's default size: the model's own, else the run's training crop, else an error naming the scale
    fixed = _tiny_unet((64, 96, 3))
    assert sm_export._litert_default_size(fixed, {}) == (64, 96)
    assert sm_export._litert_default_size(dynamic, {"train": {"crop": [32, 64]}}) == (32, 64)
    with pytest.raises(ExportError, match="--input-size HEIGHT WIDTH.*scaled by 0.5"):
        sm_export._litert_default_size(dynamic, {"train": {"crop": None, "scale": 0.5}})
    monkeypatch.setattr(sm_export, "_tensorflow_installed", lambda: False)
    with pytest.raises(ExportError, match="LiteRT export needs TensorFlow"):
        export_model(dynamic, tmp_path / "m.tflite", "litert", input_size=(64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.tflite"]
