"""Test-time augmentation: exact inverses, D4 equivariance, scales, arguments, and the wrapper model's
save/reload (fresh process) and export."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models.inference import predict_images_tta, predict_probabilities, predict_tta, tta_model
from segmentation_models.inference.tta import PRESETS, TRANSFORMS, dihedral

from conftest import BACKEND, ON_TF
from helpers import forward, randomize_batchnorm

ATOL = 1e-5  # the same predictions summed in another order (batched copies, transformed inputs)


def _tiny_unet(input_shape=(None, None, 3)) -> keras.Model:
    model = sm.Unet(
        "resnet18",
        encoder_weights=None,
        input_shape=input_shape,
        classes=3,
        activation="softmax",
        decoder_filters=(16, 8, 8, 8, 8),
    )
    randomize_batchnorm(model)  # inference-mode BN away from identity: predictions depend on position
    return model


def _images(n=2, h=64, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w, 3)).astype("float32")


NUMPY_TRANSFORMS = {
    "identity": lambda x: x,
    "hflip": lambda x: x[:, :, ::-1],
    "vflip": lambda x: x[:, ::-1],
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: np.transpose(x, (0, 2, 1, 3)),
    "transverse": lambda x: np.rot90(np.transpose(x, (0, 2, 1, 3)), 2, axes=(1, 2)),
}


def test_each_transform_is_numpys_and_its_inverse_undoes_it():
    x = _images(2, 5, 7)
    assert set(NUMPY_TRANSFORMS) == set(TRANSFORMS) and set(PRESETS["d4"]) == set(TRANSFORMS)
    for name, reference in NUMPY_TRANSFORMS.items():
        y = keras.ops.convert_to_numpy(dihedral(x, name))
        np.testing.assert_array_equal(y, reference(x), err_msg=name)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(dihedral(y, name, inverse=True)), x, err_msg=name)
        layer = sm.inference.DihedralTransform(name)
        undo = sm.inference.DihedralTransform(name, inverse=True)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(undo(layer(x))), x, err_msg=name)
    # a batched layer: copies stacked along the batch axis, undone copy by copy
    layer, undo = (sm.inference.DihedralTransform(PRESETS["flips"], inverse=v) for v in (False, True))
    stacked = keras.ops.convert_to_numpy(layer(x))
    assert stacked.shape == (8, 5, 7, 3)
    np.testing.assert_array_equal(stacked[2:4], x[:, :, ::-1])  # identity, hflip, vflip, rot180
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(undo(stacked)), np.concatenate([x] * 4))


def test_identity_alone_is_the_plain_prediction():
    model = _tiny_unet()
    x = _images()
    plain = forward(model, x)
    np.testing.assert_array_equal(predict_tta(model, x, "identity"), plain)
    # image by image: torch's convolutions round differently for another batch size
    np.testing.assert_allclose(predict_tta(model, x, "none", batch_size=1), plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(forward(tta_model(model, "none"), x), plain, rtol=0, atol=1e-6)


# flips is a subset of d4: on JAX, where each new graph is an XLA compilation, d4 alone
@pytest.mark.parametrize("preset", ["flips", "d4"] if BACKEND != "jax" else ["d4"])
def test_transformed_inputs_give_transformed_outputs(preset):
    """The presets are groups: the merged prediction of a transformed image is the transformed prediction."""
    model = _tiny_unet()
    x = _images(1, 32, 64)  # multiples of 32: no padding inside the model, which would break the symmetry
    wrapper = tta_model(model, preset)
    base = forward(wrapper, x)
    plain = forward(model, x)
    assert np.abs(forward(model, x[:, :, ::-1])[:, :, ::-1] - plain).max() > 1e-3  # the model alone is not
    for name in PRESETS[preset]:
        got = forward(wrapper, np.ascontiguousarray(NUMPY_TRANSFORMS[name](x)))
        np.testing.assert_allclose(got, NUMPY_TRANSFORMS[name](base), rtol=0, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(predict_tta(model, x, preset), base, rtol=0, atol=ATOL)


@pytest.mark.skipif(BACKEND == "jax", reason="scales: checked on TensorFlow and torch (on JAX ~20 s of compiling)")
def test_wrapper_equals_predict_tta_with_scales_at_odd_sizes():
    """Both groups of transforms (keeping and swapping height and width) at three scales, batched or not."""
    model = _tiny_unet()
    x = _images(2, 70, 45)
    transforms, scales = ["identity", "rot90", "vflip"], (0.75, 1.0, 1.25)
    expected = predict_tta(model, x, transforms, scales, batch_size=1)
    assert expected.shape == (2, 70, 45, 3) and np.isfinite(expected).all()
    np.testing.assert_allclose(expected.sum(-1), 1.0, atol=1e-5)  # a mean of probabilities
    # JAX compiles the whole wrapper per variant (~15 s): the batched one there, both elsewhere
    for batch_transforms in (True, False):
        got = forward(tta_model(model, transforms, scales, batch_transforms=batch_transforms), x)
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL, err_msg=f"batch_transforms={batch_transforms}")


def test_merges():
    model = _tiny_unet()
    x = _images(1)
    copies = np.stack([forward(model, x), forward(model, x[:, :, ::-1])[:, :, ::-1]])
    wanted = {"mean": copies.mean(0), "max": copies.max(0), "gmean": np.exp(np.log(np.maximum(copies, 1e-7)).mean(0))}
    for merge, want in wanted.items():
        np.testing.assert_allclose(predict_tta(model, x, "hflip", merge=merge), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(forward(tta_model(model, "hflip", merge=merge), x), want, rtol=1e-5, atol=1e-6)


def test_images_of_any_size_are_transformed_before_padding():
    """`predict_images_tta`: each image flipped before `predict_probabilities` pads the batch, flipped back after."""
    model = _tiny_unet()
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (h, w, 3)).astype("uint8") for h, w in ((40, 50), (33, 64))]
    plain = predict_probabilities(model, images, None)
    flipped = predict_probabilities(model, [im[:, ::-1] for im in images], None)
    for merge in ("mean", "max"):
        got = predict_images_tta(model, images, None, transforms="hflip", merge=merge)
        for p, f, g in zip(plain, flipped, got):
            want = (p + f[:, ::-1]) / 2 if merge == "mean" else np.maximum(p, f[:, ::-1])
            np.testing.assert_allclose(g, want, rtol=0, atol=1e-6)
    identity = predict_images_tta(model, images, None, 1.0, "identity")
    for p, g in zip(plain, identity):
        np.testing.assert_array_equal(g, p)
    scaled = predict_images_tta(model, images, None, 0.5, ["identity", "rot90"], (0.75, 1.0), "gmean")
    assert [g.shape for g in scaled] == [(40, 50, 3), (33, 64, 3)]


def test_bad_arguments_fail_early_with_clear_messages():
    model = _tiny_unet()
    x = _images(1)
    with pytest.raises(ValueError, match="unknown transforms 'rot45'"):
        tta_model(model, "rot45")
    with pytest.raises(ValueError, match="unknown transforms.*'flip'"):
        predict_tta(model, x, ["identity", "flip"])
    with pytest.raises(ValueError, match="transforms repeat"):
        tta_model(model, ["hflip", "hflip"])
    for scales in ((0.0,), (-1.0,), (float("nan"),), ("1",), ()):
        with pytest.raises(ValueError, match="scales"):
            predict_tta(model, x, "hflip", scales)
    with pytest.raises(ValueError, match="merge must be one of"):
        tta_model(model, merge="median")
    with pytest.raises(ValueError, match="batch_size"):
        predict_tta(model, x, batch_size=0)
    with pytest.raises(ValueError, match=r"images must be a \(batch, height, width, channels\)"):
        predict_tta(model, x[0])

    fixed = _tiny_unet((64, 96, 3))
    for transforms in ("d4", "rot90", ["identity", "transpose"]):
        with pytest.raises(ValueError, match=r"exchange height and width.*fixed 64x96 input"):
            tta_model(fixed, transforms)
        with pytest.raises(ValueError, match=r"exchange height and width.*fixed 64x96 input"):
            predict_tta(fixed, _images(1, 64, 96), transforms)
    with pytest.raises(ValueError, match=r"scales .* resize the input.*fixed 64x96"):
        tta_model(fixed, "flips", (0.5, 1.0))
    assert forward(tta_model(fixed, "flips"), _images(1, 64, 96)).shape == (1, 64, 96, 3)
    square = _tiny_unet((64, 64, 3))  # a fixed square input takes every transform
    assert forward(tta_model(square, "d4"), _images(1)).shape == (1, 64, 64, 3)


def test_wrapper_saves_and_reloads_without_custom_objects(tmp_path, reload_checker):
    """Exact in this process, and in a fresh one that imports only keras and segmentation_models (conftest)."""
    model = tta_model(_tiny_unet(), "d4", (0.75, 1.0), "gmean")
    x = _images(2, 64, 96)
    expected = forward(model, x)
    path = tmp_path / "tta.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(forward(reloaded, x), expected, rtol=0, atol=1e-6)
    assert reloaded.get_layer("tta_merge").get_config()["merge"] == "gmean"
    # one inner model, called on every copy (shared weights)
    assert sum(isinstance(layer, keras.Model) for layer in reloaded.layers) == 1
    reload_checker.add(path, x, expected, "tta-d4-scales-gmean")


@pytest.mark.skipif(not ON_TF, reason="the export route converts on TensorFlow; the other backends hand it a file")
@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="ONNX export needs tf2onnx")
def test_wrapper_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from segmentation_models.export import export_model

    x = keras.Input((None, None, 3))  # a small conv model: the conversion of a Unet costs ~40 s more
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="softmax")(y)
    model = tta_model(keras.Model(x, keras.layers.UpSampling2D()(y)), "d4")
    result = export_model(model, tmp_path / "tta.onnx")  # checks the file against the model at another size
    assert result.input_shape == [None, None, None, 3] and result.max_abs_diff < 1e-4
