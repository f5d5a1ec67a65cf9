"""Export to ONNX and SavedModel: the exported file computes what the model computes, at other sizes too."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import export as sm_export
from segmentation_models.export import ExportError, export_model

from conftest import BACKEND, ON_TF, export_unet

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx (the dev extra installs it)")
onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export checks need onnxruntime")
needs_tf2onnx = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None,
    reason="the ONNX route of this package runs on TensorFlow with tf2onnx",
)


def _onnx_run(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


@needs_tf2onnx
@pytest.mark.skipif(BACKEND == "jax", reason="the subprocess route is the same from JAX as from torch")
def test_onnx_export_keeps_batch_and_size_dynamic_and_matches_the_model(tmp_path, monkeypatch):
    """The TensorFlow route on every backend (a subprocess off TensorFlow): names, dynamic dims, metadata, and
    the same outputs at a size and batch other than the one checked at export."""
    model = export_unet()
    result = export_model(model, tmp_path / "unet.onnx", metadata={"classes": ["a", "b", "c"]})
    assert result.converter.startswith("tensorflow")
    assert ("subprocess" in result.converter) == (not ON_TF)
    assert result.input_shape == [None, None, None, 3] and result.output_name == "probabilities"
    assert result.checked_shape == [2, 80, 112, 3] and result.max_abs_diff < 1e-4

    proto = onnx.load(str(tmp_path / "unet.onnx"))
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == [
        "probabilities"
    ]
    assert dims(proto.graph.input[0]) == ["batch", "height", "width", 3]
    assert dims(proto.graph.output[0])[:3] == ["batch", "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model"] == model.name and meta["classes"] == '["a", "b", "c"]' and "producer" in meta

    x = np.random.default_rng(1).uniform(0, 1, (3, 70, 45, 3)).astype("float32")  # odd size: pad + crop inside
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(_onnx_run(tmp_path / "unet.onnx", x), expected, atol=1e-4)

    # An export that fails its check replaces nothing: it is kept beside as .rejected, the good file stays.
    import shutil

    good = (tmp_path / "unet.onnx").read_bytes()
    monkeypatch.setattr(sm_export, "_convert", lambda *a: shutil.copyfile(tmp_path / "unet.onnx", a[2]) and "copy")
    monkeypatch.setattr(sm_export, "_run_export", lambda path, fmt, x: np.zeros((*x.shape[:3], 3), "float32"))
    with pytest.raises(ExportError, match="does not compute what the model computes.*kept as .*unet.onnx.rejected"):
        export_model(model, tmp_path / "unet.onnx")
    assert (tmp_path / "unet.onnx").read_bytes() == good and (tmp_path / "unet.onnx.rejected").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.onnx", "unet.onnx.rejected"]


@needs_tf2onnx
@pytest.mark.skipif(not ON_TF, reason="the same conversion as the test above; one backend suffices")
def test_onnx_export_with_preprocessing_takes_pixels_and_fixes_sizes(tmp_path):
    model = export_unet(classes=1, activation="sigmoid")
    result = export_model(model, tmp_path / "m.onnx", input_size=(64, 96), batch_size=1, preprocessing="caffe")
    assert result.input_shape == [1, 64, 96, 3] and result.checked_shape == [1, 64, 96, 3]
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(sm.preprocessing.preprocess_input(pixels, "caffe"), training=False))
    # caffe inputs reach +-150: logits of a random network are large, sigmoid steep (export_model's own tolerance)
    np.testing.assert_allclose(_onnx_run(tmp_path / "m.onnx", pixels), expected, atol=1e-3)
    inputs = onnxruntime.InferenceSession(str(tmp_path / "m.onnx")).get_inputs()
    assert inputs[0].shape == [1, 64, 96, 3]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["preprocessing"] == "caffe" and meta["input_values"].startswith("0..255")


@needs_tf2onnx
@pytest.mark.skipif(not ON_TF, reason="mixed precision policies differ per backend; the rebuild is backend-free")
def test_a_mixed_precision_model_is_exported_in_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = export_unet()
    finally:
        keras.config.set_dtype_policy("float32")
    float32 = sm_export._float32(model)
    assert {layer.dtype_policy.name for layer in sm_export._all_layers(float32)} == {"float32"}
    for a, b in zip(model.weights, float32.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    result = export_model(model, tmp_path / "m.onnx", input_size=(64, 64))
    assert result.max_abs_diff < 1e-4  # against the float32 model, which the export is
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@needs_tf2onnx
@pytest.mark.skipif(not ON_TF, reason="the conversion is TensorFlow's on every backend")
def test_savedmodel_export_serves_the_mask_of_a_model_with_an_auxiliary_head(tmp_path):
    import json

    model = sm.DeepLabV3Plus(
        "resnet18",
        input_shape=(None, None, 3),
        classes=2,
        encoder_weights=None,
        activation="softmax",
        decoder_channels=16,
        aux_params={"classes": 4},
    )
    assert len(model.outputs) == 2
    result = export_model(model, tmp_path / "saved", "savedmodel", metadata={"backbone": "resnet18"})
    assert result.format == "savedmodel" and result.max_abs_diff < 1e-4 and result.checked_shape == [2, 80, 112, 3]
    meta = json.loads((tmp_path / "saved" / "segmentation_models.json").read_text())
    assert meta["backbone"] == "resnet18" and meta["output"].startswith("probabilities")


@pytest.mark.skipif(BACKEND != "torch", reason="the fallback without TensorFlow is Keras' torch exporter")
def test_without_tensorflow_torch_exports_fixed_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(sm_export, "_tensorflow_installed", lambda: False)
    model = export_unet()
    with pytest.raises(ExportError, match="needs a fixed height and width.*--input-size"):
        export_model(model, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="SavedModel export needs TensorFlow"):
        export_model(model, tmp_path / "saved", "savedmodel")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    result = export_model(model, tmp_path / "m.onnx", input_size=(64, 64), batch_size=2)
    assert result.converter == "keras (torch)" and result.max_abs_diff < 1e-4
    assert onnxruntime.InferenceSession(str(tmp_path / "m.onnx")).get_inputs()[0].name == "image"


def test_bad_arguments_fail_before_any_conversion(tmp_path):
    fixed = export_unet(input_shape=(64, 64, 3))
    with pytest.raises(ExportError, match="built for 64x64 inputs.*input_shape=\\(None, None, 3\\)"):
        export_model(fixed, tmp_path / "m.onnx", input_size=(128, 128))
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(fixed, tmp_path / "m.tflite", "tflite")
    with pytest.raises(ExportError, match="unknown preprocessing mode"):
        export_model(fixed, tmp_path / "m.onnx", preprocessing="imagenet")
    with pytest.raises(ExportError, match="opset"):
        export_model(fixed, tmp_path / "m.onnx", opset=7)
    with pytest.raises(ExportError, match="batch_size"):
        export_model(fixed, tmp_path / "m.onnx", batch_size=0)
    with pytest.raises(ExportError, match="does not exist"):
        export_model(tmp_path / "missing.keras", tmp_path / "m.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ExportError, match="is a folder"):
        export_model(fixed, tmp_path / "folder.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_image_preprocessing_layer_equals_preprocess_input():
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for mode in sm.preprocessing.PREPROCESSING_MODES:
        layer = sm.preprocessing.ImagePreprocessing(mode)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer(pixels)),
            sm.preprocessing.preprocess_input(pixels, mode),
            rtol=1e-6,
            atol=1e-5,
        )
        assert sm.preprocessing.ImagePreprocessing.from_config(layer.get_config()).mode == mode
