"""Bad input gets a clear ValueError that says what is wrong and how to fix it."""

import keras
import pytest

import segmentation_models as sm

from conftest import ON_TF

pytestmark = pytest.mark.skipif(
    not ON_TF, reason="argument checks run before any backend op: checked once, on the TensorFlow pass"
)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnet35'.*Did you mean.*resnet34"):
        sm.Unet("resnet35", input_shape=(64, 64, 3), encoder_weights=None)
    with pytest.raises(ValueError, match="vgg16"):
        sm.Unet("vgg61", input_shape=(64, 64, 3), encoder_weights=None)


@pytest.mark.parametrize("size", [100, 65])
def test_size_not_divisible_by_32_is_padded_and_cropped(size):
    model = sm.Unet("resnet18", input_shape=(size, 64, 3), encoder_weights=None)
    assert model.output_shape == (None, size, 64, 1)
    assert model.get_layer("pad_to_multiple").compute_output_shape((None, size, 64, 3))[1] % 32 == 0


@pytest.mark.parametrize("shape", [(31, 64, 3), (64, 8, 3)])
def test_size_below_minimum(shape):
    with pytest.raises(ValueError, match=r"input (height|width) \d+ is smaller than the minimum 32.*at least 32x32"):
        sm.Unet("resnet18", input_shape=shape, encoder_weights=None)
    with pytest.raises(ValueError, match="smaller than the minimum 32"):
        sm.Unet("resnet18", input_tensor=keras.Input(shape), encoder_weights=None)


@pytest.mark.parametrize("classes", [0, -1, 2.5, "3", True])
def test_bad_classes(classes):
    with pytest.raises(ValueError, match="classes must be an integer >= 1"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), classes=classes, encoder_weights=None)


def test_unknown_activation_and_block_type():
    with pytest.raises(ValueError, match="Unknown activation 'sigmod'"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), activation="sigmod", encoder_weights=None)
    with pytest.raises(ValueError, match="decoder_block_type must be one of.*upsampling.*transpose"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), decoder_block_type="deconv", encoder_weights=None)


@pytest.mark.parametrize("filters", [(256, 128, 64, 32), (256, 128, 64, 32, 16, 8), (256, 128, 0, 32, 16)])
def test_decoder_filters_wrong_length(filters):
    with pytest.raises(ValueError, match="decoder_filters must be 5 positive integers"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), decoder_filters=filters, encoder_weights=None)


def test_imagenet_weights_with_channel_count_a_family_cannot_adapt(monkeypatch):
    import dataclasses

    from segmentation_models.backbones import registry

    spec = registry.get_backbone_spec("resnet18")
    monkeypatch.setitem(registry._REGISTRY, "resnet18", dataclasses.replace(spec, first_conv=None))
    with pytest.raises(ValueError, match="3-channel.*cannot adapt them to 1 channel"):
        sm.Unet("resnet18", input_shape=(64, 64, 1), encoder_weights="imagenet")


def test_random_weights_work_with_any_channel_count():
    for channels in (1, 4):
        model = sm.Unet("resnet18", input_shape=(64, 64, channels), encoder_weights=None)
        assert model.input_shape == (None, 64, 64, channels)


def test_unknown_keyword_and_bad_encoder_features():
    with pytest.raises(TypeError, match="Unexpected keyword argument 'decoder_channels'"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, decoder_channels=(1, 2))
    with pytest.raises(ValueError, match="'no_such_layer' is not a layer of backbone 'resnet18'"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, encoder_features=["no_such_layer"])


def test_unknown_weights_name_and_missing_file():
    with pytest.raises(ValueError, match="No 'instagram' weights for backbone 'resnet18'.*imagenet"):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights="instagram")
    with pytest.raises(FileNotFoundError):
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=None, weights="/no/such/file.h5")


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(height, width, channels\)"):
        sm.Unet("resnet18", input_shape=(64, 64), encoder_weights=None)
    with pytest.raises(ValueError, match="channels"):
        sm.Unet("resnet18", input_shape=(64, 64, None), encoder_weights=None)
    with pytest.raises(ValueError, match="input_tensor must be a Keras tensor"):
        sm.Unet("resnet18", input_tensor=keras.ops.zeros((1, 64, 64, 3)), encoder_weights=None)


def test_create_model_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown architecture 'unte'.*unet"):
        sm.create_model("unte", backbone_name="resnet18")
    model = sm.create_model("unet", backbone_name="resnet18", input_shape=(64, 64, 3), encoder_weights=None)
    assert model.output_shape == (None, 64, 64, 1)


def test_linknet_on_a_backbone_without_stride_2_says_which_filters_to_give():
    with pytest.raises(ValueError, match=r"gives only 3 .*decoder_filters=\(None, None, None, 32, 16\)"):
        sm.Linknet("mit_b0", input_shape=(64, 64, 3), encoder_weights=None)
    model = sm.Linknet(
        "mit_b0", input_shape=(64, 64, 3), encoder_weights=None, decoder_filters=(None, None, None, 32, 16)
    )
    assert model.output_shape == (None, 64, 64, 1)
