"""Modern backbones (EfficientNetV2, ConvNeXt, MobileNetV3, ResNetV2, Xception): features, Unet,
keras.applications weight files, and pretrained weights for inputs with other than 3 channels."""

from __future__ import annotations

import hashlib
import re

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import weights as smw
from segmentation_models.backbones import get_backbone_spec
from segmentation_models.backbones.factory import build_encoder

from conftest import ON_TF, shared_path
from helpers import (
    EAGER_TRAINING,
    check_model,
    pick,
    randomize_weights,
    write_keras_applications_h5,
    write_model_as_keras2_h5,
)

A = keras.applications
MODERN = {
    "efficientnetv2b0": "efficientnetv2",
    "efficientnetv2b1": "efficientnetv2",
    "efficientnetv2b2": "efficientnetv2",
    "efficientnetv2b3": "efficientnetv2",
    "efficientnetv2s": "efficientnetv2",
    "efficientnetv2m": "efficientnetv2",
    "efficientnetv2l": "efficientnetv2",
    "convnext_tiny": "convnext",
    "convnext_small": "convnext",
    "convnext_base": "convnext",
    "convnext_large": "convnext",
    "mobilenetv3small": "mobilenetv3",
    "mobilenetv3large": "mobilenetv3",
    "resnet50v2": "resnetv2",
    "resnet101v2": "resnetv2",
    "resnet152v2": "resnetv2",
    "xception": "xception",
}
# one per family: trained, saved and reloaded on every backend
REPRESENTATIVES = ["efficientnetv2b0", "convnext_tiny", "mobilenetv3small", "resnet50v2", "xception"]
# costly to build and run: built (feature shapes checked) without a forward pass
BUILD_ONLY = {"efficientnetv2m", "efficientnetv2l", "convnext_base", "convnext_large", "resnet152v2"}

# keras.applications builders of the representatives, with their own preprocessing (images in 0..255)
KERAS_APPS = {
    "efficientnetv2b0": lambda shape: A.EfficientNetV2B0(include_top=False, weights=None, input_shape=shape),
    "convnext_tiny": lambda shape: A.ConvNeXtTiny(include_top=False, weights=None, input_shape=shape),
    "mobilenetv3small": lambda shape: A.MobileNetV3Small(include_top=False, weights=None, input_shape=shape),
    "resnet50v2": lambda shape: A.ResNet50V2(include_top=False, weights=None, input_shape=shape),
    "xception": lambda shape: A.Xception(include_top=False, weights=None, input_shape=(96, 96, 3)),  # min 71
}


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror folder served through SM_WEIGHTS_MIRROR; registry entries restored afterwards."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv(smw.MIRROR_ENV, str(folder))
    monkeypatch.delenv(smw.REGISTRY_ENV, raising=False)
    saved = dict(smw.registry._WEIGHTS)
    yield folder
    smw.registry._WEIGHTS.clear()
    smw.registry._WEIGHTS.update(saved)


def _publish(folder, backbone: str, source_model: keras.Model) -> str:
    """Write ``source_model`` in the keras.applications layout under the registered file name of
    ``backbone``'s ImageNet weights and re-register that name with the file's hash (URL unreachable)."""
    entry = smw.get_weights_entry(backbone, "imagenet")
    path = write_keras_applications_h5(source_model, folder / entry.filename)
    smw.register_weights(
        backbone,
        "imagenet",
        "http://127.0.0.1:9/" + entry.filename,
        hashlib.sha256(path.read_bytes()).hexdigest(),
        format=entry.format,
    )
    return str(path)


# ---- registry facts ----------------------------------------------------------------------
def test_registry_lists_keras_applications_backbones_with_weights_and_features():
    names = sm.get_available_backbone_names()
    for name, family in MODERN.items():
        assert name in names
        spec = get_backbone_spec(name)
        assert spec.family == family and spec.weights_layout == "by_order" and spec.first_conv
        entry = smw.get_weights_entry(name, "imagenet")
        assert entry.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
        assert len(entry.file_hash) in (32, 64)
        auto = r"(add|activation|re_lu|multiply|conv2d|batch_normalization|layer_normalization)(_\d+)?"
        assert not any(re.fullmatch(auto, n) for n in spec.features.values()), spec.features
    assert set(get_backbone_spec("convnext_tiny").features) == {4, 8, 16, 32}  # no stride-2 map
    assert smw.get_weights_entry("xception", "imagenet").file_hash == "b0042744bf5b25fce3cb969f33bebb97"


def test_preprocessing_per_family():
    image = np.full((1, 4, 4, 3), 255.0, "float32")
    assert sm.get_preprocessing("resnet50v2").mode == "tf"
    np.testing.assert_allclose(sm.get_preprocessing("xception")(image), 1.0)
    for name in ("efficientnetv2b0", "efficientnetv2s", "convnext_tiny", "mobilenetv3small"):
        assert sm.get_preprocessing(name).mode == "identity"  # they normalise inside the model


def test_no_dilation_clear_error():
    with pytest.raises(ValueError, match="cannot be dilated"):
        build_encoder("xception", input_shape=(64, 64, 3), encoder_weights=None, output_stride=16)


# ---- every backbone in a Unet --------------------------------------------------------------
@pytest.mark.parametrize("name", pick(list(MODERN), REPRESENTATIVES))
def test_unet_on_keras_applications_backbone(name, tmp_path, reload_checker):
    spec = get_backbone_spec(name)

    def build():
        return sm.Unet(name, input_shape=(64, 64, 3), classes=2, activation="softmax", encoder_weights=None)

    if name in BUILD_ONLY:
        model = build()
        assert model.output_shape == (None, 64, 64, 2)
    else:
        model = check_model(
            build,
            (64, 64, 3),
            2,
            tmp_path,
            reload_checker if name in REPRESENTATIVES else None,
            activation="softmax",
            label=f"unet-{name}",
            train=name in REPRESENTATIVES and (ON_TF or name == "mobilenetv3small"),
        )
    for stride, layer_name in spec.features.items():
        assert tuple(model.get_layer(layer_name).output.shape[1:]) == (
            64 // stride,
            64 // stride,
            spec.channels[stride],
        )


@pytest.mark.skipif(not ON_TF, reason="layer naming does not depend on the backend; checked once")
def test_layer_names_do_not_depend_on_session():
    first = [
        layer.name for layer in build_encoder("xception", input_shape=(64, 64, 3), encoder_weights=None).model.layers
    ]
    build_encoder("mobilenetv3small", input_shape=(64, 64, 3), encoder_weights=None)  # bumps Keras' name counters
    second = [
        layer.name for layer in build_encoder("xception", input_shape=(64, 64, 3), encoder_weights=None).model.layers
    ]
    assert first == second
    assert "block2_pool_add" in first and not any(n.startswith(("add", "conv2d", "batch_normalization")) for n in first)


# ---- keras.applications ImageNet files through the registry + mirror path ------------------
@pytest.mark.parametrize("name", pick(REPRESENTATIVES, ["mobilenetv3small", "convnext_tiny"]))
def test_published_keras_applications_file_loads(name, mirror):
    app = KERAS_APPS[name]((64, 64, 3))
    randomize_weights(app, seed=1)
    path = _publish(mirror, name, app)
    app.load_weights(path)  # the file is one keras.applications itself loads
    encoder = build_encoder(name, input_shape=(64, 64, 3), encoder_weights="imagenet").model  # what Unet(...) calls
    ours = [
        keras.ops.convert_to_numpy(v)
        for layer in encoder.layers
        for v in list(layer.trainable_weights) + list(layer.non_trainable_weights)
    ]
    theirs = [
        keras.ops.convert_to_numpy(v)
        for layer in app.layers
        for v in list(layer.trainable_weights) + list(layer.non_trainable_weights)
    ]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    if name != "xception":  # same graph (Xception's input padding makes its maps larger)
        x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
        x_in = sm.get_preprocessing(name)(x)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(encoder(x_in)), keras.ops.convert_to_numpy(app(x_in)), rtol=1e-4, atol=1e-4
        )


def test_weights_file_of_another_model_is_refused(mirror):
    path = _publish(mirror, "mobilenetv3large", KERAS_APPS["mobilenetv3small"]((64, 64, 3)))
    with pytest.raises(smw.WeightsMismatchError, match="another backbone"):
        sm.Unet("mobilenetv3large", input_shape=(64, 64, 3), encoder_weights="imagenet")
    with pytest.raises(smw.WeightsMismatchError, match="not in the model"):  # a by-name family
        sm.Unet("resnet18", input_shape=(64, 64, 3), encoder_weights=path)


# ---- input channels other than 3 -------------------------------------------------------------
def test_first_conv_rule_numbers():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 8)).astype("float32")
    np.testing.assert_allclose(smw.adapt_first_conv_kernel(kernel, 1), kernel.sum(axis=2, keepdims=True))
    four = smw.adapt_first_conv_kernel(kernel, 4)
    np.testing.assert_allclose(four, kernel[:, :, [0, 1, 2, 0], :] * 0.75)
    np.testing.assert_allclose(smw.adapt_first_conv_kernel(kernel, 2), kernel[:, :, [0, 1], :] * 1.5)
    np.testing.assert_array_equal(smw.cycle_channels(np.arange(3.0), 5), [0, 1, 2, 0, 1])


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnv3")
    app = KERAS_APPS["mobilenetv3small"]((64, 64, 3))
    randomize_weights(app, seed=2)
    entry = smw.get_weights_entry("mobilenetv3small", "imagenet")
    return write_keras_applications_h5(app, folder / entry.filename)


def _use_file(mirror, backbone, path):
    entry = smw.get_weights_entry(backbone, "imagenet")
    (mirror / entry.filename).write_bytes(path.read_bytes())
    smw.register_weights(backbone, "imagenet", "http://127.0.0.1:9/" + entry.filename, smw.file_hash(path))


def test_one_channel_equals_rgb_on_replicated_grey(mirror, mobilenet_file):
    _use_file(mirror, "mobilenetv3small", mobilenet_file)
    rgb = build_encoder("mobilenetv3small", input_shape=(64, 64, 3)).model
    grey = build_encoder("mobilenetv3small", input_shape=(64, 64, 1)).model
    kernel = rgb.get_layer("conv").get_weights()[0]
    np.testing.assert_allclose(grey.get_layer("conv").get_weights()[0], kernel.sum(axis=2, keepdims=True), rtol=1e-6)
    image = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(grey(image)),
        keras.ops.convert_to_numpy(rgb(np.repeat(image, 3, axis=-1))),
        rtol=1e-4,
        atol=1e-4,
    )
    four = build_encoder("mobilenetv3small", input_shape=(64, 64, 4)).model
    np.testing.assert_allclose(four.get_layer("conv").get_weights()[0], kernel[:, :, [0, 1, 2, 0], :] * 0.75, rtol=1e-6)
    out = keras.ops.convert_to_numpy(four(np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 4)).astype("float32")))
    assert np.isfinite(out).all()


@pytest.mark.skipif(not ON_TF, reason="in-model normalisation layers are backend independent; TensorFlow suffices")
@pytest.mark.parametrize("name", ["efficientnetv2b0", "convnext_tiny"])
def test_in_model_normalisation_cycles_statistics(name):
    model = build_encoder(name, input_shape=(64, 64, 4), encoder_weights=None).model
    norm = model.get_layer("input_normalization")
    np.testing.assert_allclose(
        np.ravel(keras.ops.convert_to_numpy(norm.mean))[[0, 3]], np.ravel(keras.ops.convert_to_numpy(norm.mean))[[0, 0]]
    )
    assert model.output_shape[-1] == get_backbone_spec(name).channels[32]


def test_by_name_family_adapts_first_conv_and_input_layers(tmp_path):
    """resnet18 (image-classifiers files, matched by name): conv0 summed, bn_data statistics cycled."""
    source = sm.Backbones.get_backbone("resnet18", input_shape=(64, 64, 3), weights=None)
    randomize_weights(source, seed=3)
    path = write_model_as_keras2_h5(source, tmp_path / "r18.h5")
    model = sm.Unet("resnet18", input_shape=(64, 64, 2), encoder_weights=str(path))
    np.testing.assert_allclose(
        model.get_layer("conv0").get_weights()[0],
        source.get_layer("conv0").get_weights()[0][:, :, [0, 1], :] * 1.5,
        rtol=1e-6,
    )
    for got, ref in zip(model.get_layer("bn_data").get_weights(), source.get_layer("bn_data").get_weights()):
        np.testing.assert_array_equal(got, ref[[0, 1]])


def test_one_channel_unet_with_adapted_weights_trains_on_isbi(mirror, mobilenet_file):
    from PIL import Image

    folder = shared_path("isbi2012-membrane")
    names = sorted(p.name for p in (folder / "image").iterdir())[:4]
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for n in names:
        image = np.asarray(Image.open(folder / "image" / n).convert("L"), "float32")
        label = np.asarray(Image.open(folder / "label" / n).convert("L"), "float32") / 255.0
        r, c = rng.integers(0, image.shape[0] - 64, size=2)
        xs.append(image[r : r + 64, c : c + 64, None])
        ys.append(label[r : r + 64, c : c + 64, None])
    x, y = np.stack(xs), np.stack(ys)
    _use_file(mirror, "mobilenetv3small", mobilenet_file)
    model = sm.Unet("mobilenetv3small", input_shape=(64, 64, 1), encoder_weights="imagenet")
    assert model.get_layer("conv").get_weights()[0].shape[2] == 1
    model.compile(keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=EAGER_TRAINING)
    losses = [float(model.train_on_batch(x, y)) for _ in range(6)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
