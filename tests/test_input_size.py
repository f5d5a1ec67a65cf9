"""Any input size: inputs that are not multiples of what the decoder needs are reflect-padded inside the model
and the mask is cropped back; multiples are untouched; the layers doing it save, reload and work with None."""

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models.blocks import ResizeToReference
from segmentation_models.decoders.common import CropToInput, PadToMultiple
from segmentation_models.decoders.pspnet import GridPooling2D

from conftest import ON_TF
from helpers import forward

SMALL_UNET = dict(encoder_weights=None, classes=3, activation="softmax", decoder_filters=(32, 16, 16, 8, 8))


@pytest.fixture(scope="module")
def variable_unet():
    keras.utils.set_random_seed(0)
    return sm.Unet("resnet18", input_shape=(None, None, 3), **SMALL_UNET)


_predict = forward  # eager on TensorFlow/torch, compiled on JAX


def test_variable_size_predicts_odd_sizes(variable_unet):
    rng = np.random.default_rng(0)
    for h, w in [(65, 97), (97, 65)]:
        x = rng.random((1, h, w, 3)).astype("float32")
        out = _predict(variable_unet, x)
        assert out.shape == (1, h, w, 3)
        # the same as padding by hand (reflect, centred, to 96 x 128) and cropping the mask
        ph, pw = (-h) % 32, (-w) % 32
        padded = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)], mode="reflect")
        by_hand = _predict(variable_unet, padded)[:, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        np.testing.assert_allclose(out, by_hand, atol=1e-5)
        if ON_TF:  # a traced graph too (the second size retraces with unknown sizes: the pad amounts are tensors)
            np.testing.assert_allclose(variable_unet.predict(x, verbose=0), out, atol=1e-5)


def test_multiples_are_untouched(variable_unet):
    """A fixed multiple of 32 gets no padding layers; the variable-size model equals it there (padding is a no-op)."""
    fixed = sm.Unet("resnet18", input_shape=(64, 96, 3), **SMALL_UNET)
    names = [layer.name for layer in fixed.layers]
    assert "pad_to_multiple" not in names and "crop_to_input" not in names
    assert len(fixed.layers) == len(variable_unet.layers) - 2
    fixed.set_weights(variable_unet.get_weights())
    x = np.random.default_rng(1).random((2, 64, 96, 3)).astype("float32")
    np.testing.assert_array_equal(_predict(fixed, x), _predict(variable_unet, x))


def test_odd_fixed_size_saves_and_reloads(tmp_path, reload_checker):
    model = sm.Unet("resnet18", input_shape=(65, 97, 3), **SMALL_UNET)
    assert model.output_shape == (None, 65, 97, 3)
    assert model.get_layer("pad_to_multiple").output.shape == (None, 96, 128, 3)
    x = np.random.default_rng(2).random((2, 65, 97, 3)).astype("float32")
    expected = _predict(model, x)
    path = tmp_path / "unet_65x97.keras"
    model.save(path)
    reloaded = sm.accel.adopt(keras.saving.load_model(path, safe_mode=True))  # on the package's kernels again
    assert reloaded.output_shape == (None, 65, 97, 3)
    np.testing.assert_array_equal(_predict(reloaded, x), expected)
    reload_checker.add(path, x, expected, "unet-65x97")


def test_pad_and_crop_layers():
    x = np.arange(2 * 5 * 7 * 1, dtype="float32").reshape(2, 5, 7, 1)
    padded = keras.ops.convert_to_numpy(PadToMultiple(4)(x))
    np.testing.assert_array_equal(padded, np.pad(x, [(0, 0), (1, 2), (0, 1), (0, 0)], mode="reflect"))
    zeros = keras.ops.convert_to_numpy(PadToMultiple(4, mode="constant")(x))
    np.testing.assert_array_equal(zeros, np.pad(x, [(0, 0), (1, 2), (0, 1), (0, 0)]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(CropToInput(4)([padded, x])), x)
    assert PadToMultiple(8)(x[:, :4, :4]).shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(PadToMultiple(4)(x[:, :4, :4])), x[:, :4, :4])
    layer = PadToMultiple.from_config(PadToMultiple(48, mode="constant", name="p").get_config())
    assert (layer.multiple, layer.mode, layer.name) == (48, "constant", "p")
    assert CropToInput.from_config(CropToInput(48).get_config()).multiple == 48
    with pytest.raises(ValueError, match="mode must be 'reflect' or 'constant'"):
        PadToMultiple(32, mode="edge")


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_grid_pooling_and_resize_match_fixed_size_layers(pooling):
    """The size-agnostic pyramid layers equal 1.0.1's fixed-size pooling and bilinear upsampling."""
    x = np.random.default_rng(3).random((2, 12, 18, 4)).astype("float32")
    pooled = keras.ops.convert_to_numpy(GridPooling2D(3, pooling)(x))
    pool = keras.layers.AveragePooling2D if pooling == "avg" else keras.layers.MaxPooling2D
    np.testing.assert_allclose(
        pooled, keras.ops.convert_to_numpy(pool((4, 6), strides=(4, 6), padding="same")(x)), atol=1e-6
    )
    resized = keras.ops.convert_to_numpy(ResizeToReference()([pooled, x]))
    upsampled = keras.layers.UpSampling2D((4, 6), interpolation="bilinear")(pooled)
    np.testing.assert_allclose(resized, keras.ops.convert_to_numpy(upsampled), atol=1e-5)
    # non-integer factors too (as ops.image.resize)
    small = x[:, :5, :7]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ResizeToReference()([small, x])),
        keras.ops.convert_to_numpy(keras.ops.image.resize(small, (12, 18))),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="pooling must be 'avg' or 'max'"):
        GridPooling2D(2, "median")


# small decoders: this test is about sizes, the architecture tests cover the defaults
SMALL_DECODERS = {
    "Unet": dict(decoder_filters=(32, 16, 16, 8, 8)),
    "FPN": dict(pyramid_block_filters=16),
    "Linknet": {},
    "PSPNet": dict(psp_conv_filters=16),
    "UnetPlusPlus": dict(decoder_channels=(32, 16, 16, 8, 8)),
    "MAnet": dict(decoder_channels=(32, 16, 16, 8, 8), decoder_pab_channels=8),
    "PAN": dict(decoder_channels=16),
    "DeepLabV3": dict(decoder_channels=16),
    "DeepLabV3Plus": dict(decoder_channels=16),
    "UPerNet": dict(decoder_channels=16),
    "SegFormer": dict(decoder_segmentation_channels=16),
    "DPT": dict(decoder_intermediate_channels=(8, 16, 16, 16), decoder_fusion_channels=8),
}


@pytest.mark.skipif(
    not ON_TF, reason="the padding layers are checked on every backend by the Unet/FPN/Linknet/PSPNet tests"
)
@pytest.mark.parametrize("arch", sorted(sm.available_architectures()))
def test_every_architecture_returns_the_input_size(arch):
    """Every registered architecture (through decoders/common.py) gives a mask of the input's size, eagerly and
    in a traced graph: `predict` on a second size retraces with unknown height and width (where
    ``ops.image.resize`` and bilinear UpSampling2D fail: FPN, PSPNet, DeepLabV3(+), UPerNet and PAN did)."""
    model = sm.create_model(
        arch,
        backbone_name="resnet18",
        input_shape=(None, None, 3),
        encoder_weights=None,
        classes=2,
        **SMALL_DECODERS.get(arch, {}),
    )
    rng = np.random.default_rng(0)
    for h, w in [(65, 97), (97, 65), (64, 96)]:
        x = rng.random((1, h, w, 3)).astype("float32")
        out = keras.ops.convert_to_numpy(model(x, training=False))
        assert out.shape == (1, h, w, 2), (arch, out.shape)
        np.testing.assert_allclose(model.predict(x, verbose=0), out, atol=1e-4, err_msg=arch)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_resizing_to_sizes_unknown_until_run_time_equals_ops_image_resize(interpolation):
    """blocks.resize_images' path for symbolic sizes (gathered rows and columns) is ops.image.resize's."""
    from segmentation_models.blocks import resize_images

    x = np.random.default_rng(1).random((2, 7, 10, 3)).astype("float32")
    for size in [(14, 20), (28, 40), (7, 10), (3, 4), (11, 23)]:
        expected = keras.ops.convert_to_numpy(keras.ops.image.resize(x, size, interpolation=interpolation))
        symbolic = tuple(keras.ops.convert_to_tensor(v, "int32") for v in size)  # not Python ints: gathered
        got = keras.ops.convert_to_numpy(resize_images(keras.ops.convert_to_tensor(x), symbolic, interpolation))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=str(size))
