"""SegFormer (all-MLP decoder) on MiT and on a CNN backbone, and Unet on MiT (no stride-2 skip),
through the shared model check."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import segmentation_models as sm

from conftest import BACKEND, ON_TF
from helpers import check_model


def test_segformer_mit_b0(tmp_path, reload_checker):
    model = check_model(
        lambda: sm.SegFormer("mit_b0", input_shape=(64, 64, 3), classes=3, activation="softmax", encoder_weights=None),
        (64, 64, 3),
        3,
        tmp_path,
        reload_checker,
        activation="softmax",
        label="segformer-mit_b0",
        learning_rate=1e-4,
    )
    names = {layer.name for layer in model.layers}
    assert {"decoder_stride4_linear", "decoder_stride32_linear", "decoder_fuse_conv", "final_conv"} <= names
    assert "decoder_stride2_linear" not in names  # MiT has no stride-2 map
    assert model.get_layer("decoder_concat").output.shape[-1] == 4 * 256


def test_segformer_cnn_backbone_uses_stride2(tmp_path, reload_checker):
    model = check_model(
        lambda: sm.SegFormer(
            "resnet18", input_shape=(64, 64, 3), encoder_weights=None, decoder_segmentation_channels=32
        ),
        (64, 64, 3),
        1,
        tmp_path,
        reload_checker,
        train=ON_TF,
        label="segformer-resnet18",
    )
    assert model.get_layer("decoder_concat").output.shape[1:] == (16, 16, 5 * 32)
    assert model.layers[-1].name == "sigmoid"


def test_unet_mit_b0_upsamples_without_stride2_skip(tmp_path, reload_checker):
    model = check_model(
        lambda: sm.Unet("mit_b0", input_shape=(64, 64, 3), encoder_weights=None, decoder_filters=(64, 32, 16, 16, 8)),
        (64, 64, 3),
        1,
        tmp_path,
        reload_checker,
        label="unet-mit_b0",
        learning_rate=1e-4,
        train=ON_TF,
    )
    names = {layer.name for layer in model.layers}
    assert {"decoder_stage0_concat", "decoder_stage1_concat", "decoder_stage2_concat"} <= names
    assert "decoder_stage3_concat" not in names and "decoder_stage4_concat" not in names


def test_segformer_variable_input_size_and_create_model():
    model = sm.create_model(
        "segformer",
        backbone_name="mit_b0",
        classes=2,
        activation="softmax",
        encoder_weights=None,
        decoder_segmentation_channels=16,
    )
    assert model.input_shape == (None, None, None, 3)
    for size in [(64, 96), (65, 97)]:  # any size: padded to a multiple of 32 and cropped back (decoders/common.py)
        x = np.random.default_rng(0).random((1, *size, 3)).astype("float32")
        out = model.predict(x, verbose=0)  # traced with unknown sizes (TensorFlow: interpolation matrices)
        assert out.shape == (1, *size, 2)
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
        if BACKEND != "jax":  # eager: known sizes (JAX's predict already traced them known; eager recompiles per op)
            np.testing.assert_allclose(out, keras.ops.convert_to_numpy(model(x)), atol=1e-5)
    assert "SegFormer" in sm.available_architectures()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(decoder_segmentation_channels=0), "decoder_segmentation_channels must be a positive integer"),
        (dict(decoder_segmentation_channels="256"), "decoder_segmentation_channels must be a positive integer"),
        (dict(input_shape=(64, 64)), "input_shape must be"),
        (dict(backbone_name="mit_b9"), "Unknown backbone 'mit_b9'"),
        (dict(classes=0), "classes must be an integer"),
        (dict(activation="sigmod"), "Unknown activation"),
        (dict(encoder_weights="imagenet", backbone_name="mit_b0"), "No 'imagenet' weights for backbone 'mit_b0'"),
    ],
)
def test_segformer_argument_errors(kwargs, message):
    args = dict(backbone_name="mit_b0", input_shape=(64, 64, 3), encoder_weights=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sm.SegFormer(**args)
