"""MiT (SegFormer's Mix Transformer) encoders: registry facts, golden equivalence with the reference
implementation through the real safetensors loading path (registry + mirror), and clear errors for
checkpoints that do not fit."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models import weights as smw
from segmentation_models.backbones import get_backbone_spec
from segmentation_models.backbones.factory import build_encoder, load_encoder_weights

from conftest import ON_TF, ROOT

safetensors_numpy = pytest.importorskip("safetensors.numpy")

GOLDEN = ROOT / "tests" / "data" / "mit_golden.npz"
STRIDES = (4, 8, 16, 32)


def _golden_module():
    """scripts/make_mit_golden.py: the seeded weights/input generator shared with the golden script."""
    spec = importlib.util.spec_from_file_location("make_mit_golden", ROOT / "scripts" / "make_mit_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def mit_b0():
    """One MiT-B0 encoder with variable input size, shared by the tests of this module (weights reloaded)."""
    return build_encoder("mit_b0", input_shape=(None, None, 3), encoder_weights=None)


def _checkpoint(golden, variant: str) -> dict[str, np.ndarray]:
    """The reference checkpoint of the golden run, rebuilt from its seed (PyTorch names and layouts)."""
    names, shapes = json.loads(str(golden[f"{variant}/names_shapes"]))
    return _golden_module().seeded_tensors(names, shapes)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Own cache folder, a mirror folder, and the weights registry restored afterwards."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(smw.REGISTRY_ENV, raising=False)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(smw.MIRROR_ENV, str(mirror))
    saved = dict(smw.registry._WEIGHTS)
    yield mirror
    smw.registry._WEIGHTS.clear()
    smw.registry._WEIGHTS.update(saved)


def _publish(mirror, variant: str, tensors: dict, name: str = "golden") -> None:
    """Write ``tensors`` as a safetensors file into the mirror and register it (URL unreachable, sha256)."""
    path = mirror / f"{variant}_{name}.safetensors"
    safetensors_numpy.save_file(tensors, str(path))
    smw.register_weights(
        variant,
        name,
        f"https://127.0.0.1:9/{path.name}",
        hashlib.sha256(path.read_bytes()).hexdigest(),
        format="safetensors",
    )


def test_registry_specs():
    names = sm.get_available_backbone_names()
    for i in range(6):
        spec = get_backbone_spec(f"mit_b{i}")
        assert f"mit_b{i}" in names
        assert spec.family == "mit" and sorted(spec.features) == [4, 8, 16, 32]  # no stride-2 map
        assert sorted(spec.channels) == [4, 8, 16, 32]
        assert spec.preprocessing == "torch" and spec.first_conv == "patch_embed1_proj"
    assert get_backbone_spec("mit_b0").channels == {4: 32, 8: 64, 16: 160, 32: 256}
    assert get_backbone_spec("mit_b5").channels == {4: 64, 8: 128, 16: 320, 32: 512}
    x = np.full((1, 2, 2, 3), 255.0, "float32")
    np.testing.assert_allclose(
        sm.get_preprocessing("mit_b2")(x)[0, 0, 0],
        (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
        rtol=1e-6,
    )
    entry = smw.get_weights_entry("mit_b1", "imagenet")
    assert (
        entry.format == "safetensors"
        and len(entry.file_hash) == 64
        and entry.url.startswith("https://huggingface.co/nvidia/mit-b1/")
    )


@pytest.mark.parametrize("variant", ["mit_b0", "mit_b1"] if ON_TF else ["mit_b0"])
def test_golden_equivalence_through_registry_and_mirror(variant, golden, isolated, mit_b0):
    _publish(isolated, variant, _checkpoint(golden, variant))
    if variant == "mit_b0":  # the shared encoder, through the same loader build_encoder uses
        encoder = mit_b0
        load_encoder_weights(encoder.model, encoder.spec, "golden")
    else:
        encoder = build_encoder(variant, input_shape=(64, 64, 3), encoder_weights="golden")
    # the reference counts its parameters without the ImageNet classifier
    names, shapes = json.loads(str(golden[f"{variant}/names_shapes"]))
    reference_params = sum(int(np.prod(s)) for n, s in zip(names, shapes) if not n.startswith("classifier."))
    assert encoder.model.count_params() == reference_params
    features = keras.Model(encoder.input, [encoder.feature(s) for s in STRIDES])
    outputs = features(_golden_module().seeded_input(), training=False)
    for stride, out in zip(STRIDES, outputs):
        want = golden[f"{variant}/stride{stride}"]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), want, rtol=0, atol=1e-4, err_msg=f"stride {stride}")


def test_variable_input_size_and_drop_path_inactive_at_inference(mit_b0):
    encoder = mit_b0
    x = np.random.default_rng(0).normal(size=(1, 96, 64, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(encoder.model(x, training=False))
    b = keras.ops.convert_to_numpy(encoder.model(x, training=False))
    assert a.shape == (1, 3, 2, 256)
    np.testing.assert_array_equal(a, b)
    c = keras.ops.convert_to_numpy(encoder.model(x, training=True))
    assert not np.allclose(a, c)  # stochastic depth acts in training


def _expect_mismatch(mirror, encoder, tensors: dict, *fragments: str):
    _publish(mirror, encoder.spec.name, tensors, name="bad")
    with pytest.raises(smw.WeightsMismatchError) as info:
        load_encoder_weights(encoder.model, encoder.spec, "bad")
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_missing_tensor_is_named(golden, isolated, mit_b0):
    tensors = _checkpoint(golden, "mit_b0")
    del tensors["segformer.encoder.block.1.0.attention.self.key.weight"]
    _expect_mismatch(isolated, mit_b0, tensors, "missing", "encoder.block.1.0.attention.self.key.weight")


def test_extra_tensor_is_named(golden, isolated, mit_b0):
    tensors = _checkpoint(golden, "mit_b0")
    tensors["segformer.encoder.block.0.2.layer_norm_1.weight"] = np.ones(32, "float32")
    _expect_mismatch(isolated, mit_b0, tensors, "unexpected", "encoder.block.0.2.layer_norm_1.weight")


def test_another_models_file_names_wrong_shapes(golden, isolated, mit_b0):
    tensors = _checkpoint(golden, "mit_b1")  # a MiT-B1 checkpoint offered as MiT-B0 weights
    _expect_mismatch(
        isolated,
        mit_b0,
        tensors,
        "encoder.block.0.0.attention.self.query.weight",
        "(64, 64)",
        "block1_0_attn_q",
        "another MiT variant",
    )


@pytest.mark.skipif(not ON_TF, reason="backend-independent dispatch: checked once, on TensorFlow")
def test_safetensors_for_a_family_without_converter(golden, isolated):
    _publish(isolated, "resnet18", _checkpoint(golden, "mit_b0"), name="bad")
    with pytest.raises(smw.WeightsMismatchError, match="cannot be converted for the 'resnet' family"):
        build_encoder("resnet18", input_shape=(64, 64, 3), encoder_weights="bad")
