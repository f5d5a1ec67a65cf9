"""segmentation_models_pytorch's architectures (Unet++, MAnet, PAN, DeepLabV3/V3+, UPerNet) and SMP's keyword
arguments (encoder_depth, decoder_channels, aux_params, decoder_attention_type, dilated encoders)."""

import keras
import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models.backbones.registry import get_backbone_spec

from conftest import BACKEND
from helpers import check_model, forward, pick

# small decoders keep the tests cheap; the defaults' sizes are checked in test_default_decoder_sizes_match_smp
SMALL = {
    "UnetPlusPlus": dict(decoder_channels=(32, 16, 16, 8, 8)),
    "MAnet": dict(decoder_channels=(32, 16, 16, 8, 8), decoder_pab_channels=8),
    "PAN": dict(decoder_channels=16),
    "DeepLabV3": dict(decoder_channels=32, decoder_aspp_dropout=None),  # no dropout noise in 3 steps
    "DeepLabV3Plus": dict(decoder_channels=32, decoder_aspp_dropout=None),
    "UPerNet": dict(decoder_channels=32),
}
DILATED = ("PAN", "DeepLabV3", "DeepLabV3Plus")  # default encoder_output_stride < 32
BACKBONES = ["resnet18"]  # the train matrix; other families are covered by test_unet and test_fpn_linknet_pspnet
SHAPE = (64, 64, 3)


def _build(arch, backbone="resnet18", **kwargs):
    options = dict(SMALL[arch], backbone_name=backbone, input_shape=SHAPE, encoder_weights=None)
    if backbone.startswith("vgg") and arch in DILATED:
        options["encoder_output_stride"] = 32  # VGG cannot be dilated
    options.update(kwargs)
    return getattr(sm, arch)(**options)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("arch", list(SMALL))
def test_architecture_trains_and_reloads(arch, backbone, tmp_path, reload_checker):
    # random VGG (no batch norm) is unstable at these learning rates: train the decoder on the frozen encoder there
    freeze = backbone.startswith("vgg")
    # JAX compiles a train step per model (~20 s each): there, three decoders with distinct parts train
    # (nested skips, pyramid pooling, dilated ASPP); the others build, predict and reload exactly
    train = BACKEND != "jax" or arch in ("UnetPlusPlus", "UPerNet", "DeepLabV3Plus")
    check_model(
        lambda: _build(arch, backbone, encoder_freeze=freeze),
        SHAPE,
        1,
        tmp_path,
        reload_checker,
        label=f"{arch}-{backbone}",
        train=train,
    )


@pytest.mark.parametrize("arch", ["DeepLabV3", "DeepLabV3Plus"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplab_output_stride_sets_encoder_resolution(arch, output_stride):
    model = _build(arch, encoder_output_stride=output_stride)
    size = SHAPE[0] // output_stride
    assert model.get_layer("relu1").output.shape[1:] == (size, size, 512)  # ResNet-18's encoder output
    assert model.get_layer("decoder_aspp_concat").output.shape[1:3] == (size, size)
    assert model.output_shape == (None, 64, 64, 1)
    # the strides of the last stage(s) became dilations: 2 (stride 16) or 2 then 4 (stride 8)
    expected = {
        16: {"stage3_unit2_conv1": 1, "stage4_unit1_conv1": 1, "stage4_unit1_conv2": 2, "stage4_unit2_conv1": 2},
        8: {"stage3_unit1_conv2": 2, "stage4_unit1_conv1": 2, "stage4_unit2_conv1": 4},
    }[output_stride]
    for layer, rate in expected.items():
        assert model.get_layer(layer).dilation_rate == (rate, rate), layer


def test_deeplabv3plus_on_a_dilated_efficientnet(tmp_path, reload_checker):
    """EfficientNets dilate too (depthwise convolutions): DeepLabV3+'s stride-16 encoder output."""
    # 6 steps, not 3: drop-connect makes each training loss noisy by about as much as one SGD step lowers it (CI,
    # 2026-12-02: 0.765, 0.775, 0.766); over 6 steps the fall is 0.01-0.02 for seeds 0-4 against ~0.005 of noise
    model = check_model(
        lambda: _build("DeepLabV3Plus", "efficientnetb0"),
        SHAPE,
        1,
        tmp_path,
        reload_checker,
        label="DeepLabV3Plus-efficientnetb0",
        train=BACKEND != "jax",
        steps=6,
    )
    # SMP's taps: ASPP on the last block's output (320 channels), not on 1.0.1's 1280-channel top_activation
    assert model.get_layer("block7a_project_bn").output.shape[1:] == (4, 4, 320)
    assert "top_conv" not in [layer.name for layer in model.layers]
    assert model.get_layer("decoder_highres_conv").input.shape[1:] == (16, 16, 24)  # block2b_add
    assert model.get_layer("block6b_dwconv").dilation_rate == (2, 2)


@pytest.mark.parametrize("backbone", ["resnet18"])  # basic blocks; bottlenecks (resnet50) checked by hand
def test_dilated_resnet_equals_undilated_on_its_grid(backbone):
    """A correctly dilated encoder computes the undilated one's output at every (32 / stride)-th position."""
    spec = get_backbone_spec(backbone)
    plain = spec.build(keras.Input(SHAPE))
    x = np.random.default_rng(0).random((1,) + SHAPE).astype("float32")
    reference = keras.ops.convert_to_numpy(plain(x))
    for output_stride in (16, 8):
        dilated = spec.build(keras.Input(SHAPE), output_stride=output_stride)
        dilated.set_weights(plain.get_weights())
        out = keras.ops.convert_to_numpy(dilated(x))
        step = 32 // output_stride
        assert out.shape[1] == SHAPE[0] // output_stride
        np.testing.assert_allclose(out[:, ::step, ::step], reference, atol=1e-5 * np.abs(reference).max())


def test_aux_head_returns_mask_and_labels_and_trains_with_two_losses(tmp_path, reload_checker):
    aux = {"classes": 4, "pooling": "max", "dropout": 0.2}
    model = check_model(
        lambda: _build("DeepLabV3", aux_params=aux),
        SHAPE,
        1,
        tmp_path,
        reload_checker,
        aux_classes=4,
        learning_rate=1e-4,
        label="deeplabv3-aux",
    )
    assert model.output_names[1] == "aux_linear"
    assert model.get_layer("aux_dense").input.shape[-1] == 512  # on the deepest encoder feature


def test_scse_attention_builds_for_unet_and_unetplusplus():
    plain = sm.Unet("resnet18", input_shape=SHAPE, encoder_weights=None)
    assert not [layer.name for layer in plain.layers if "attention" in layer.name]  # the 1.0.1 Unet is unchanged
    unet = sm.Unet("resnet18", input_shape=SHAPE, encoder_weights=None, decoder_attention_type="scse")
    names = {layer.name for layer in unet.layers}
    assert {"decoder_stage0_attention1_add", "decoder_stage4_attention2_add", "decoder_stage0a_conv"} <= names
    assert "decoder_stage4_attention1_add" not in names  # no skip at full resolution, no attention on it
    assert unet.count_params() > plain.count_params()
    nested = _build("UnetPlusPlus", decoder_attention_type="scse")
    names = {layer.name for layer in nested.layers}
    assert {"decoder_x_0_0_attention1_add", "decoder_x_1_3_attention2_add", "decoder_x_0_4_attention2_add"} <= names
    x = np.random.default_rng(0).random((1,) + SHAPE).astype("float32")
    for model in (unet, nested):
        assert forward(model, x).shape == (1, 64, 64, 1)


@pytest.mark.parametrize("depth", [3, 4])
@pytest.mark.parametrize(
    "arch",
    pick(
        ["Unet", "UnetPlusPlus", "MAnet", "PAN", "DeepLabV3", "DeepLabV3Plus", "UPerNet"],
        ["Unet", "UnetPlusPlus", "DeepLabV3Plus"],
    ),
)
def test_encoder_depth_and_aux_head(arch, depth):
    """Every architecture builds at encoder_depth 3 and 4 (PAN has a fixed depth) and takes an aux head."""
    aux = {"classes": 2, "activation": "softmax"}
    deepest = {3: 128, 4: 256, 5: 512}[depth if arch != "PAN" else 5]  # ResNet-18 channels
    if arch == "Unet":
        model = sm.Unet("resnet18", input_shape=SHAPE, encoder_weights=None, encoder_depth=depth, aux_params=aux)
        blocks = {
            layer.name[: len("decoder_stageN")] for layer in model.layers if layer.name.startswith("decoder_stage")
        }
        assert len(blocks) == depth
    elif arch == "PAN":
        if depth == 4:
            pytest.skip("PAN has no encoder_depth (SMP's design): checked once")
        model = _build(arch, aux_params=aux)
    else:
        kwargs = (
            {"decoder_channels": SMALL[arch]["decoder_channels"][:depth]} if arch in ("UnetPlusPlus", "MAnet") else {}
        )
        model = sm.create_model(
            arch.lower(),
            **dict(
                SMALL[arch],
                backbone_name="resnet18",
                input_shape=SHAPE,
                encoder_weights=None,
                encoder_depth=depth,
                aux_params=aux,
                **kwargs,
            ),
        )
        assert "relu1" not in {layer.name for layer in model.layers}  # the deeper encoder stages are not used
    assert model.get_layer("aux_dense").input.shape[-1] == deepest
    assert [tuple(s) for s in model.output_shape] == [(None, 64, 64, 1), (None, 2)]
    if depth == 3:
        mask, labels = forward(model, np.zeros((1,) + SHAPE, "float32"))
        assert tuple(mask.shape) == (1, 64, 64, 1)
        np.testing.assert_allclose(labels.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "name, arch",
    [
        ("unet++", "UnetPlusPlus"),
        ("UNET_PLUS_PLUS", "UnetPlusPlus"),
        ("manet", "MAnet"),
        ("pan", "PAN"),
        ("deeplabv3", "DeepLabV3"),
        ("DeepLabV3+", "DeepLabV3Plus"),
        ("deeplab-v3-plus", "DeepLabV3Plus"),
        ("upernet", "UPerNet"),
    ],
)
def test_create_model_finds_architecture(name, arch):
    from segmentation_models.factory import _key

    assert _key(name) == _key(arch) and arch in sm.available_architectures()
    assert getattr(sm, arch) is sm.decoders.ARCHITECTURES[arch]


BAD = [
    (lambda: _build("UnetPlusPlus", encoder_depth=6), "encoder_depth must be one of [3, 4, 5]"),
    (lambda: _build("UPerNet", encoder_depth=2), "encoder_depth must be one of [3, 4, 5]"),
    (lambda: _build("DeepLabV3", backbone="vgg16", encoder_output_stride=8), "cannot be dilated"),
    (lambda: sm.DeepLabV3Plus("vgg16", input_shape=SHAPE, encoder_weights=None), "encoder_output_stride=32"),
    (lambda: sm.PAN("vgg16", input_shape=SHAPE, encoder_weights=None), "cannot be dilated"),
    (lambda: _build("PAN", encoder_output_stride=8), "encoder_output_stride must be one of [16, 32]"),
    (lambda: _build("UnetPlusPlus", decoder_channels=(32, 16)), "decoder_channels must have encoder_depth=5"),
    (lambda: _build("MAnet", encoder_depth=3, decoder_channels=(32, 16, 8, 8)), "encoder_depth=3 positive integers"),
    (
        lambda: sm.Unet("resnet18", encoder_weights=None, encoder_depth=4, decoder_filters=(8, 8)),
        "decoder_filters must have",
    ),
    (lambda: _build("DeepLabV3", decoder_channels=(32, 16)), "decoder_channels must be a positive integer"),
    (lambda: _build("UPerNet", aux_params={"classes": 2, "pool": "avg"}), "unknown key(s) ['pool']"),
    (lambda: _build("UPerNet", aux_params={"pooling": "avg"}), "aux_params needs 'classes'"),
    (lambda: _build("PAN", aux_params={"classes": 2, "pooling": "mean"}), "aux_params['pooling'] must be one of"),
    (lambda: _build("DeepLabV3", aux_params={"classes": 0}), "aux_params: classes must be an integer"),
    (lambda: _build("DeepLabV3", aux_params=4), "aux_params must be None or a dict"),
    (lambda: _build("UnetPlusPlus", decoder_attention_type="cbam"), "decoder_attention_type must be None or 'scse'"),
    (lambda: sm.Unet("resnet18", encoder_weights=None, decoder_attention_type="se"), "decoder_attention_type"),
    (lambda: _build("DeepLabV3", upsampling=4), "upsampling=4 would not give a mask of the input's size"),
    (lambda: _build("DeepLabV3Plus", decoder_atrous_rates=(6, 12)), "decoder_atrous_rates must be 3 positive"),
    (lambda: _build("UPerNet", upsampling=8), "upsampling must be 4 for UPerNet"),
]


@pytest.mark.parametrize("build, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_arguments_raise_clear_errors(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert message in str(info.value)


def _trainable_params(model, prefixes):
    return sum(
        int(np.prod(w.shape))
        for layer in model.layers
        if layer.name.startswith(prefixes)
        for w in layer.trainable_weights
    )


def _tapped_backbone_layers(model, backbone: str) -> set:
    """Names of the backbone layers whose outputs feed a layer outside the backbone (the decoder's taps)."""
    inside = {layer.name for layer in get_backbone_spec(backbone).build(keras.Input(SHAPE)).layers}
    tapped = set()
    for layer in model.layers:
        if layer.name in inside:
            continue
        for node in layer._inbound_nodes[:1]:
            tapped |= {t._keras_history.operation.name for t in node.input_tensors} & inside
    return tapped


@pytest.mark.skipif(not pick([1], []), reason="build-only layout check, backend independent: TensorFlow only")
@pytest.mark.parametrize("backbone", ["efficientnetb0", "mobilenetv2"])
def test_smp_architectures_tap_the_backbone_where_smp_does(backbone):
    """SMP's architectures take SMP's encoder features (each stage's output); 1.0.1's keep 1.0.1's skips."""
    spec = get_backbone_spec(backbone)
    smp_taps, taps_101 = set(spec.smp_features.values()), set(spec.features.values())
    builds = {arch: (lambda arch=arch: _build(arch, backbone)) for arch in SMALL}
    builds["FPN-smp"] = lambda: sm.FPN(backbone, input_shape=SHAPE, encoder_weights=None, pyramid_style="smp")
    builds["SegFormer"] = lambda: sm.SegFormer(backbone, input_shape=SHAPE, encoder_weights=None)
    for arch, build in builds.items():
        if arch in DILATED and not spec.can_dilate:
            continue
        tapped = _tapped_backbone_layers(build(), backbone)
        assert spec.smp_features[32] in tapped and tapped <= smp_taps, (arch, tapped)
    full = {"UnetPlusPlus", "MAnet"}  # these use all five strides
    for arch in full:
        assert _tapped_backbone_layers(builds[arch](), backbone) == smp_taps, arch
    above_stride2 = {layer for stride, layer in spec.smp_features.items() if stride >= 4}
    assert _tapped_backbone_layers(builds["UPerNet"](), backbone) == above_stride2  # SMP 0.6: strides 4 .. 32
    for build in (
        lambda: sm.Unet(backbone, input_shape=SHAPE, encoder_weights=None),
        lambda: sm.FPN(backbone, input_shape=SHAPE, encoder_weights=None),
    ):
        assert _tapped_backbone_layers(build(), backbone) == taps_101
    for build in (
        lambda: sm.Unet(backbone, input_shape=SHAPE, encoder_weights=None, feature_layout="smp"),
        lambda: sm.Linknet(backbone, input_shape=SHAPE, encoder_weights=None, feature_layout="smp"),
    ):
        assert _tapped_backbone_layers(build(), backbone) == smp_taps


def test_feature_layouts_are_validated():
    from segmentation_models.backbones.factory import build_encoder
    from segmentation_models.backbones.registry import BackboneSpec, register_backbone

    with pytest.raises(ValueError, match="feature_layout must be one of"):
        build_encoder("resnet18", input_shape=SHAPE, encoder_weights=None, feature_layout="pytorch")
    spec = get_backbone_spec("resnet18")
    assert spec.feature_layers("smp") is spec.features  # no SMP-specific taps: the same
    bad = dict(
        name="resnet18_bad_layout",
        family="test",
        builder=spec.builder,
        features=spec.features,
        channels=spec.channels,
        default_skips=spec.default_skips,
    )
    with pytest.raises(ValueError, match="go together"):
        register_backbone(BackboneSpec(**bad, smp_features=dict(spec.features)))
    with pytest.raises(ValueError, match="must have the strides of features"):
        register_backbone(BackboneSpec(**bad, smp_features={32: "relu1"}, smp_channels={32: 512}))


@pytest.mark.skipif(not pick([1], []), reason="build-only size check, backend independent: TensorFlow only")
def test_default_decoder_sizes_match_smp():
    """With their defaults on resnet34 (512 channels at stride 32, 64 at stride 4), the DeepLab and UPerNet decoders
    have the trainable parameter counts of segmentation_models_pytorch's (PyTorch counts BN as 2*C)."""
    bn = lambda c: 2 * c  # noqa: E731
    aspp_plain = 512 * 256 + bn(256) + 3 * (9 * 512 * 256 + bn(256)) + 512 * 256 + bn(256) + 5 * 256 * 256 + bn(256)
    smp_deeplabv3 = aspp_plain + 9 * 256 * 256 + bn(256)  # + the 3x3 conv-bn-relu
    aspp_separable = (
        512 * 256 + bn(256) + 3 * (9 * 512 + 512 * 256 + bn(256)) + 512 * 256 + bn(256) + 5 * 256 * 256 + bn(256)
    )
    smp_deeplabv3plus = (
        aspp_separable
        + 9 * 256
        + 256 * 256
        + bn(256)  # separable 3x3 after ASPP
        + 64 * 48
        + bn(48)  # stride-4 projection
        + 9 * 304
        + 304 * 256
        + bn(256)
    )  # separable fusion conv
    head = 256 * 1 + 1
    v3 = sm.DeepLabV3("resnet34", encoder_weights=None)
    v3p = sm.DeepLabV3Plus("resnet34", encoder_weights=None)
    assert _trainable_params(v3, "decoder_") == smp_deeplabv3 == 4_722_176
    assert _trainable_params(v3p, "decoder_") == smp_deeplabv3plus == 1_152_528
    assert _trainable_params(v3, "final_conv") == _trainable_params(v3p, "final_conv") == head
    # UPerNet as SMP 0.6 builds it: LayerNorm per level, PSP (bins to 256, 3x3 fusion), laterals, 3x3 per level,
    # 3x3 fusion of four levels; 8,314,752 + SMP's head = 8,315,266 = SMP's UPerNet('tu-resnet34', classes=2) decoder
    d = 256
    smp_upernet = (
        2 * (64 + 128 + 256 + 512)  # LayerNorm on strides 4..32
        + 4 * (512 * d + bn(d))
        + 9 * (512 + 4 * d) * d
        + bn(d)  # pyramid pooling
        + sum(c * d + bn(d) for c in (256, 128, 64))  # lateral 1x1s
        + 3 * (9 * d * d + bn(d))  # a 3x3 per FPN level
        + 9 * 4 * d * d
        + bn(d)
    )  # fusion
    upernet = sm.UPerNet("resnet34", encoder_weights=None)
    assert _trainable_params(upernet, "decoder_") == smp_upernet == 8_314_752


@pytest.mark.parametrize("arch", pick(list(SMALL), ["MAnet", "PAN", "DeepLabV3Plus"]))
def test_any_input_size(arch):
    """Through `start`/`finish`, sizes that are not multiples of 32 (and None) give a mask of the input's size."""
    model = _build(arch, input_shape=(None, None, 3))
    for size in [(65, 97)] + ([(97, 65)] if arch == "MAnet" else []):  # MAnet's attention reshapes H x W
        out = forward(model, np.random.default_rng(0).random((1, *size, 3)).astype("float32"))
        assert tuple(out.shape) == (1, *size, 1)
