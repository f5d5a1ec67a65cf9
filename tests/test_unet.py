"""Unet on every foundation backbone x decoder block type, through the shared model check."""

import pytest

import segmentation_models as sm

from helpers import check_model, pick

FOUNDATION_BACKBONES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19"]
TRAINED = pick(FOUNDATION_BACKBONES, ["resnet18", "vgg16"])
# the decoder's transpose block on one backbone of each kind (basic and bottleneck ResNet blocks, VGG): the block
# is the decoder's, the same on every backbone
TRANSPOSE = ["resnet18", "resnet50", "vgg16"]


@pytest.mark.parametrize(
    "backbone, block_type",
    [(b, "upsampling") for b in FOUNDATION_BACKBONES] + [(b, "transpose") for b in TRANSPOSE],
)
def test_unet_backbone_block(backbone, block_type, tmp_path, reload_checker):
    train = backbone in TRAINED
    check_model(
        lambda: sm.Unet(
            backbone,
            input_shape=(64, 64, 3),
            classes=2,
            activation="softmax",
            encoder_weights=None,
            decoder_block_type=block_type,
        ),
        (64, 64, 3),
        2,
        tmp_path,
        reload_checker,
        activation="softmax",
        train=train,
        label=f"unet-{backbone}-{block_type}",
    )


def test_unet_binary_default_activation(tmp_path):
    model = check_model(
        lambda: sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None),
        (64, 64, 3),
        1,
        tmp_path,
        train=False,
    )
    assert model.layers[-1].name == "sigmoid"


def test_unet_variable_input_size():
    import numpy as np

    model = sm.Unet("resnet18", encoder_weights=None, classes=3, activation="softmax")
    assert model.input_shape == (None, None, None, 3)
    for size in [(64, 96), (96, 64)]:
        out = model.predict(np.zeros((1, *size, 3), "float32"), verbose=0)
        assert out.shape == (1, *size, 3)
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


def test_input_tensor_reaches_backbone():
    import keras

    inp = keras.Input((64, 64, 3), name="my_input")
    model = sm.Unet("resnet18", input_tensor=inp, encoder_weights=None)
    assert model.inputs[0] is inp or model.inputs[0].name == inp.name
    assert model.output_shape == (None, 64, 64, 1)


def test_encoder_freeze_keeps_batchnorm_trainable():
    import keras

    model = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, encoder_freeze=True)
    conv0 = model.get_layer("conv0")
    bn0 = model.get_layer("bn0")
    assert not conv0.trainable and bn0.trainable
    assert model.get_layer("decoder_stage0a_conv").trainable
    frozen = sum(1 for layer in model.layers if not layer.trainable)
    assert frozen > 20
    assert all(layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_set_trainable_recompiles_and_trains():
    import numpy as np

    model = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, encoder_freeze=True)
    model.compile("adam", loss="binary_crossentropy", metrics=["accuracy"])
    x = np.random.rand(2, 64, 64, 3).astype("float32")
    y = (np.random.rand(2, 64, 64, 1) > 0.5).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    before = model.get_layer("conv0").get_weights()[0].copy()
    sm.utils.set_trainable(model)
    assert all(layer.trainable for layer in model.layers)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert "accuracy" in history.history
    assert not np.allclose(model.get_layer("conv0").get_weights()[0], before)


def test_encoder_features_by_name_and_index():
    default = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None)
    names = ["stage4_unit1_relu1", "stage3_unit1_relu1", "stage2_unit1_relu1", "relu0"]
    by_name = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, encoder_features=names)
    assert by_name.count_params() == default.count_params()
    backbone_layers = [layer.name for layer in default.layers]
    indices = [backbone_layers.index(n) for n in names]
    by_index = sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, encoder_features=indices)
    assert by_index.count_params() == default.count_params()


def test_unet_layer_names_match_101():
    model = sm.Unet("resnet34", input_shape=(64, 64, 3), encoder_weights=None)
    names = {layer.name for layer in model.layers}
    for expected in [
        "bn_data",
        "conv0",
        "relu0",
        "stage1_unit1_conv1",
        "stage4_unit3_bn2",
        "relu1",
        "decoder_stage0_upsampling",
        "decoder_stage0a_conv",
        "decoder_stage0a_bn",
        "decoder_stage0a_relu",
        "decoder_stage4b_conv",
        "final_conv",
        "sigmoid",
    ]:
        assert expected in names, expected
    assert model.count_params() == 24456154  # segmentation_models 1.0.1 gives the same count
