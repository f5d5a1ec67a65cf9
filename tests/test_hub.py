"""keras-hub backbones as encoders and DPT, on tiny randomly initialised keras-hub configs saved as local presets
(`save_to_preset`, then ``"hub:<folder>"``): no network. Every model goes through the shared `check_model`
(build, forward, a few steps lower the loss, exact `.keras` reload in a fresh process)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import segmentation_models as sm  # noqa: E402
from segmentation_models.preprocessing import preprocess_input  # noqa: E402

from conftest import BACKEND, ON_TF  # noqa: E402
from helpers import check_model, forward  # noqa: E402

M = keras_hub.models

# one tiny backbone per keras-hub image family that exposes a feature pyramid (EfficientNet keeps its default
# num_features: keras-hub 0.32 leaves it out of its config, so another value does not survive save_to_preset)
PYRAMIDS = {
    "resnet": lambda: M.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 8, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    ),
    "cspnet": lambda: M.CSPNetBackbone(
        stem_filters=8,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 1, 1, 1, 1],
        stackwise_strides=[2, 2, 2, 2, 2],
        stackwise_num_filters=[8, 16, 16, 32, 32],
        bottle_ratio=[0.5],
        block_ratio=[1.0],
        expand_ratio=[1.0],
        stage_type="dark",
        block_type="dark_block",
        stem_padding="same",
    ),
    "densenet": lambda: M.DenseNetBackbone(stackwise_num_repeats=[1, 1, 1, 1], growth_rate=4),
    "efficientnet": lambda: M.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 7,
        stackwise_depth_coefficients=[1.0] * 7,
        stackwise_kernel_sizes=[3] * 7,
        stackwise_num_repeats=[1] * 7,
        stackwise_input_filters=[8, 8, 8, 8, 16, 16, 16],
        stackwise_output_filters=[8, 8, 8, 16, 16, 16, 16],
        stackwise_expansion_ratios=[1, 2, 2, 2, 2, 2, 2],
        stackwise_squeeze_and_excite_ratios=[0.25] * 7,
        stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
        stackwise_block_types=["v1"] * 7,
        min_depth=8,
    ),
    "hgnetv2": lambda: M.HGNetV2Backbone(
        depths=[1, 1, 1, 1],
        embedding_size=8,
        hidden_sizes=[16, 16, 32, 32],
        stem_channels=[3, 8, 8],
        hidden_act="relu",
        use_learnable_affine_block=False,
        stackwise_stage_filters=[(8, 8, 16, 1, 1, 3), (16, 8, 16, 1, 1, 3), (16, 8, 32, 1, 1, 3), (32, 8, 32, 1, 1, 3)],
        apply_downsample=[False, True, True, True],
        use_lightweight_conv_block=[False] * 4,
    ),
    "mit": lambda: M.MiTBackbone(
        layerwise_depths=[1, 1, 1, 1],
        num_layers=4,
        layerwise_num_heads=[1, 1, 1, 1],
        layerwise_sr_ratios=[8, 4, 2, 1],
        max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3, 3, 3],
        layerwise_strides=[4, 2, 2, 2],
        hidden_dims=[8, 16, 16, 32],
        image_shape=(64, 64, 3),
    ),
}
# plain ViTs (DPT): a ViT with a class token and a DINOv2 with two register tokens, patch 8, three blocks (DPT
# taps blocks 0, 0, 1, 2)
VITS = {
    "vit": lambda: M.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32
    ),
    "dinov2": lambda: M.DINOV2Backbone(
        patch_size=8,
        num_layers=3,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(32, 32, 3),
        position_embedding_shape=(32, 32, 3),
        num_register_tokens=2,
    ),
}

ARCHITECTURES = {
    "Unet": lambda name: sm.Unet(name, decoder_filters=(16, 8, 8, 8, 8), **COMMON),
    "FPN": lambda name: sm.FPN(name, pyramid_style="smp", pyramid_block_filters=16, **COMMON),
    "DeepLabV3Plus": lambda name: sm.DeepLabV3Plus(name, encoder_output_stride=32, decoder_channels=16, **COMMON),
}
COMMON = dict(input_shape=(64, 64, 3), classes=2, activation="softmax", encoder_weights="preset")
# TensorFlow: every pyramid family with each of the three architectures (the Unet trained); JAX and torch: every
# family once, the architectures taken in turn (trained on torch; on JAX, where each model's train step compiles
# for ~15 s, built, run and reloaded). Training the shared decoders is checked by their own tests; DPT below
# trains on every backend.
CASES = [
    (family, arch)
    for i, family in enumerate(PYRAMIDS)
    for j, arch in enumerate(ARCHITECTURES)
    if ON_TF or j == i % len(ARCHITECTURES)
]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    keras.utils.set_random_seed(0)  # module fixtures run before the per-test seeding (conftest)
    root = tmp_path_factory.mktemp("hub_presets")
    paths = {}
    for family, make in {**PYRAMIDS, **VITS}.items():
        make().save_to_preset(str(root / family))
        paths[family] = f"hub:{root / family}"
    return paths


@pytest.mark.parametrize("family,arch", CASES)
def test_pyramid_family_builds_trains_and_reloads(family, arch, presets, tmp_path, reload_checker):
    model = check_model(
        lambda: ARCHITECTURES[arch](presets[family]),
        (64, 64, 3),
        2,
        tmp_path,
        reload_checker,
        activation="softmax",
        label=f"{arch}-hub-{family}",
        learning_rate=1e-3,  # Adam: SGD left the tiny DenseNet DeepLabV3+ loss flat over 3 steps
        train=BACKEND == "torch" or arch == "Unet" and ON_TF,  # JAX compiles a train step per model (~15 s)
    )
    spec = sm.backbones.get_backbone_spec(presets[family])
    assert model.get_layer("hub_features").backbone.__class__.__name__ == spec.hub.family
    assert max(spec.features) == 32 and 4 in spec.features


@pytest.mark.skipif(not ON_TF, reason="any-size padding is the shared builders' (checked on every backend there)")
def test_pyramid_family_any_input_size(presets):
    model = sm.Unet(presets["resnet"], input_shape=(None, None, 3), classes=3, encoder_weights=None)
    for h, w in ((45, 70), (64, 33)):
        assert forward(model, np.zeros((1, h, w, 3), "float32")).shape == (1, h, w, 3)


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's


@pytest.mark.skipif(not ON_TF, reason="backend-independent: checked on the TensorFlow pass")
def test_instance_weights_and_preprocessing(tmp_path):
    backbone = PYRAMIDS["resnet"]()
    model = sm.Unet(backbone, input_shape=(64, 64, 3), encoder_weights="imagenet")
    assert model.get_layer("hub_features").backbone is backbone  # its own weights
    fresh = sm.Unet(backbone, input_shape=(64, 64, 3), encoder_weights=None, encoder_freeze=True)
    assert fresh.get_layer("hub_features").backbone is not backbone
    frozen = fresh.get_layer("hub_features").backbone.layers
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in frozen)
    for layer in frozen:  # as the package's own encoders: all frozen but BatchNormalization
        assert layer.trainable == isinstance(layer, keras.layers.BatchNormalization), layer.name
    path = tmp_path / "frozen.keras"
    fresh.save(path)
    reloaded = keras.saving.load_model(path).get_layer("hub_features").backbone.layers
    assert [layer.trainable for layer in reloaded] == [layer.trainable for layer in frozen]
    sm.utils.set_trainable(fresh, recompile=False)
    assert all(layer.trainable for layer in frozen)
    # the preset's image converter: ImageNet mean/std is the `torch` mode; another scale/offset is applied as is
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for folder, options, mode in (
        ("torch", dict(scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD)]), "torch"),
        ("unit", dict(scale=1 / 255), "hub"),
    ):
        path = tmp_path / folder
        backbone.save_to_preset(str(path))
        keras_hub.layers.ResNetImageConverter(**options).save_to_preset(str(path))
        preprocessing = sm.get_preprocessing(f"hub:{path}")
        assert preprocessing.mode == mode
        expected = preprocess_input(x, "torch") if mode == "torch" else x / 255
        np.testing.assert_allclose(preprocessing(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not ON_TF, reason="backend-independent: checked on the TensorFlow pass")
def test_clear_errors(presets):
    with pytest.raises(ValueError, match=r"plain ViT.*strides \[2, 4, 16, 32\] are missing.*sm.DPT"):
        sm.Unet(presets["vit"], input_shape=(32, 32, 3), encoder_weights=None)
    with pytest.raises(ValueError, match=r"DeepLabV3 needs a feature pyramid.*plain ViT"):
        sm.DeepLabV3(presets["dinov2"], input_shape=(32, 32, 3), encoder_weights=None)
    with pytest.raises(ValueError, match="encoder_weights .* must be 'imagenet' or 'preset'"):
        sm.Unet(presets["resnet"], input_shape=(64, 64, 3), encoder_weights="ssl")
    with pytest.raises(ValueError, match="needs a fixed input size"):
        sm.Unet(presets["mit"], input_shape=(None, None, 3), encoder_weights=None)
    with pytest.raises(ValueError, match="cannot be dilated"):
        sm.DeepLabV3Plus(presets["resnet"], input_shape=(64, 64, 3), encoder_weights=None)
    with pytest.raises(ValueError, match="no stride-2 map.*pyramid_style='smp'"):
        sm.FPN(presets["resnet"], input_shape=(64, 64, 3), encoder_weights=None)
    with pytest.raises(ValueError, match=r"takes 3-channel images .* encoder_weights=None"):
        sm.Unet(presets["resnet"], input_shape=(64, 64, 4), encoder_weights="preset")
    assert sm.Unet(presets["resnet"], input_shape=(64, 64, 4), encoder_weights=None).output_shape == (None, 64, 64, 1)
    with pytest.raises(ValueError, match="(?s)cannot read keras-hub preset .* Offline, give a local preset folder"):
        sm.Unet("hub:/no/such/preset/folder", encoder_weights=None)
    with pytest.raises(ValueError, match=r"'hub:<preset>'"):
        sm.Unet("hub:", encoder_weights=None)
    with pytest.raises(ValueError, match="VGGBackbone .* is not supported as an encoder"):
        tiny_vgg = M.VGGBackbone(stackwise_num_repeats=[1], stackwise_num_filters=[4], image_shape=(32, 32, 3))
        sm.Unet(tiny_vgg, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="position embeddings for 32x32"):
        sm.DPT(presets["vit"], input_shape=(40, 40, 3), encoder_weights="preset")
    with pytest.raises(ValueError, match="encoder_output_indices must be 4 block indices"):
        sm.DPT(presets["vit"], encoder_output_indices=(0, 1, 9, 3), encoder_weights=None)
    with pytest.raises(ValueError, match="decoder_readout must be one of"):
        sm.DPT(presets["vit"], decoder_readout="mean", encoder_weights=None)


DPT_SMALL = dict(
    classes=2, activation="softmax", decoder_intermediate_channels=(8, 16, 16, 16), decoder_fusion_channels=8
)


@pytest.mark.parametrize(
    "family,input_shape,readout",
    [
        ("vit", (30, 30, 3), "cat"),  # padded to the preset's 32x32 (pretrained position embeddings)
        ("dinov2", (40, 36, 3), "add"),  # padded to 48x48 (square, multiples of 2 x patch)
    ],
)
def test_dpt_on_vits(family, input_shape, readout, presets, tmp_path, reload_checker):
    model = check_model(
        lambda: sm.DPT(
            presets[family], input_shape=input_shape, encoder_weights="preset", decoder_readout=readout, **DPT_SMALL
        ),
        input_shape,
        2,
        tmp_path,
        reload_checker,
        activation="softmax",
        label=f"DPT-hub-{family}",
        learning_rate=1e-3,
    )
    names = {layer.name for layer in model.layers}
    assert {"pad_to_size", "crop_to_input", "decoder_fusion3_project", "decoder_reassemble0_upsample"} <= names
    assert ("decoder_reassemble0_readout" in names) == (readout == "cat" or family == "dinov2")


@pytest.mark.skipif(not ON_TF, reason="the hierarchical path shares its layers with the ViT one; TensorFlow only")
def test_dpt_on_mit_b0(tmp_path, reload_checker):
    model = check_model(
        lambda: sm.DPT("mit_b0", input_shape=(None, None, 3), encoder_weights=None, **DPT_SMALL),
        (64, 64, 3),
        2,
        tmp_path,
        reload_checker,
        activation="softmax",
        label="DPT-mit_b0",
        learning_rate=1e-3,
    )
    assert forward(model, np.zeros((1, 45, 70, 3), "float32")).shape == (1, 45, 70, 2)


@pytest.mark.skipif(not ON_TF, reason="backend-independent: checked on the TensorFlow pass")
def test_cli_takes_hub_backbones(presets, capsys):
    """`--backbone hub:<folder>` goes into the run's ModelConfig and build_model (`segmentation-models train`'s
    path; a whole CLI run is tests/test_cli.py's), its run folder is one folder; `backbones` lists the families."""
    from segmentation_models.cli import main
    from segmentation_models.training.config import ModelConfig, TrainConfig
    from segmentation_models.training.model import build_model

    cfg = ModelConfig(
        arch="fpn", backbone=presets["cspnet"], encoder_weights=None, options={"pyramid_block_filters": 8}
    )
    assert build_model(cfg, 3).output_shape == (None, None, None, 3)
    folder = TrainConfig(data={"data": "data"}, model=cfg).default_output()
    assert folder.parent.name == "runs" and folder.name.startswith("fpn-hub_") and "/" not in folder.name
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "keras-hub backbones" in out and "DINOV2Backbone" in out and "MiTBackbone" in out


@pytest.mark.skipif(not ON_TF, reason="build-only count, backend independent: TensorFlow only")
def test_dpt_decoder_matches_smp_parameter_count():
    """Decoder and head of a DPT on a patch-16 ViT (width 32, readout 'cat') have SMP 0.6's trainable parameter
    count: 74,651, counted from segmentation_models_pytorch's DPTDecoder(encoder_out_channels=(32,) * 4,
    encoder_output_strides=(16,) * 4, intermediate_channels=(8, 16, 24, 32), fusion_channels=16) and
    DPTSegmentationHead(16, 3) (.bench/smp, 2026-12-07)."""
    vit = M.ViTBackbone(image_shape=(64, 64, 3), patch_size=16, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=32)
    model = sm.DPT(
        vit,
        input_shape=(64, 64, 3),
        classes=3,
        encoder_weights=None,
        decoder_intermediate_channels=(8, 16, 24, 32),
        decoder_fusion_channels=16,
    )
    decoder = [layer for layer in model.layers if layer.name != "hub_features"]
    assert sum(int(np.prod(w.shape)) for layer in decoder for w in layer.trainable_weights) == 74_651
