"""FPN, Linknet and PSPNet (1.0.1's architectures): the shared architecture check, 1.0.1 layer names,
argument errors, `create_model`."""

import inspect

import numpy as np
import pytest

import segmentation_models as sm

from conftest import BACKEND, ON_TF
from helpers import check_architecture, forward

REGISTERED = set(sm.get_available_backbone_names())
# one backbone per family; vgg16 also exercises the centre block (encoder output after max pooling)
FAMILY_BACKBONES = ["resnet18", "vgg16", "mobilenetv2", "efficientnetb0"] if ON_TF else ["resnet18"]
# narrower pyramids than the defaults keep the check cheap (the oracle test covers the default widths)
VARIANTS = [
    ("FPN", {"pyramid_block_filters": 64}),
    ("FPN", {"pyramid_block_filters": 64, "pyramid_style": "smp", "pyramid_aggregation": "sum"}),
    ("Linknet", {"decoder_block_type": "upsampling"}),
    ("Linknet", {"decoder_block_type": "transpose"}),
    ("PSPNet", {"psp_conv_filters": 64}),
]


# every variant on resnet18; the block type does not depend on the backbone, so other families skip it
CASES = [
    (b, arch, kwargs)
    for b in FAMILY_BACKBONES
    for arch, kwargs in VARIANTS
    if b == "resnet18" or (kwargs.get("decoder_block_type") != "transpose" and "pyramid_style" not in kwargs)
]


@pytest.mark.parametrize(
    "backbone,arch,kwargs",
    [
        pytest.param(
            b,
            a,
            k,
            id=f"{b}-{a}-{'-'.join(map(str, k.values()))}",
            marks=pytest.mark.skipif(b not in REGISTERED, reason=f"backbone {b} is not registered yet"),
        )
        for b, a, k in CASES
    ],
)
def test_architecture(backbone, arch, kwargs, tmp_path, reload_checker):
    # training is checked on resnet18 (on JAX, which compiles a train step per model, for FPN and PSPNet; Linknet
    # trains on the other backends); the other families: build, forward, sizes, save/reload
    # (the SMP-style FPN pyramid trains on TF and torch; on JAX the 1.0.1 FPN's train step covers FPN)
    train = backbone == "resnet18" and (BACKEND != "jax" or (arch != "Linknet" and "pyramid_style" not in kwargs))
    check_architecture(getattr(sm, arch), backbone, tmp_path, reload_checker, train=train, **kwargs)


@pytest.mark.parametrize(
    "arch,defaults",
    [
        (
            "FPN",
            dict(
                backbone_name="vgg16",
                input_shape=(None, None, 3),
                classes=21,
                activation="softmax",
                weights=None,
                encoder_weights="imagenet",
                encoder_freeze=False,
                encoder_features="default",
                pyramid_block_filters=256,
                pyramid_use_batchnorm=True,
                pyramid_aggregation="concat",
                pyramid_dropout=None,
            ),
        ),
        (
            "Linknet",
            dict(
                backbone_name="vgg16",
                input_shape=(None, None, 3),
                classes=1,
                activation="sigmoid",
                weights=None,
                encoder_weights="imagenet",
                encoder_freeze=False,
                encoder_features="default",
                decoder_block_type="upsampling",
                decoder_filters=(None, None, None, None, 16),
                decoder_use_batchnorm=True,
            ),
        ),
        (
            "PSPNet",
            dict(
                backbone_name="vgg16",
                input_shape=(384, 384, 3),
                classes=21,
                activation="softmax",
                weights=None,
                encoder_weights="imagenet",
                encoder_freeze=False,
                downsample_factor=8,
                psp_conv_filters=512,
                psp_pooling_type="avg",
                psp_use_batchnorm=True,
                psp_dropout=None,
            ),
        ),
    ],
)
def test_signature_is_101s(arch, defaults):
    """1.0.1's parameters in 1.0.1's order and defaults; additions only keyword-only (FPN's pyramid_style,
    Linknet's feature_layout)."""
    params = inspect.signature(getattr(sm, arch)).parameters
    positional = {n: p for n, p in params.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD}
    assert list(positional) == list(defaults)
    assert {n: p.default for n, p in positional.items()} == defaults
    extra = {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert extra == {"FPN": {"pyramid_style": "1.0.1"}, "Linknet": {"feature_layout": "1.0.1"}}.get(arch, {})


def test_layer_names_and_sizes():
    fpn = sm.FPN(
        "resnet18", input_shape=(64, 64, 3), encoder_weights=None, pyramid_aggregation="sum", pyramid_dropout=0.1
    )
    names = {layer.name for layer in fpn.layers}
    assert {
        "fpn_stage_p5_pre_conv",
        "fpn_stage_p2_conv",
        "fpn_stage_p3_add",
        "segm_stage5a_conv",
        "segm_stage2b_bn",
        "upsampling_stage5",
        "aggregation_sum",
        "pyramid_dropout",
        "final_stage_relu",
        "final_upsampling",
        "head_conv",
        "softmax",
    } <= names
    assert "pad_to_multiple" not in names and "crop_to_input" not in names  # a multiple of 32: no padding
    psp = sm.PSPNet("resnet18", input_shape=(96, 96, 3), encoder_weights=None, psp_dropout=0.1)
    names = {layer.name for layer in psp.layers}
    assert {
        "psp_level1_pooling",
        "psp_level6_conv",
        "psp_level3_bn",
        "psp_level2_relu",
        "psp_level6_upsampling",
        "psp_concat",
        "aggregation_conv",
        "spatial_dropout",
        "final_conv",
        "final_upsampling",
        "softmax",
    } <= names
    assert psp.get_layer("psp_concat").output.shape == (
        None,
        12,
        12,
        128 + 4 * 512,
    )  # stride 8 of resnet18 (stage3_unit1_relu1)
    linknet = sm.Linknet("vgg16", input_shape=(64, 64, 3), encoder_weights=None, decoder_block_type="transpose")
    names = {layer.name for layer in linknet.layers}
    assert {
        "center_block1_conv",
        "decoder_stage0a_conv",
        "decoder_stage1b_transpose",
        "decoder_stage2b_bn",
        "decoder_stage3c_relu",
        "decoder_stage0_add",
        "final_conv",
        "sigmoid",
    } <= names
    assert linknet.get_layer("decoder_stage4c_conv").filters == 16


def test_fpn_smp_pyramid_matches_smp_structure():
    """pyramid_style='smp': levels at strides 32..4 merged at stride 4, 1x1 head, x4 upsampling (SMP's FPN)."""
    fpn = sm.FPN(
        "resnet18",
        input_shape=(64, 64, 3),
        encoder_weights=None,
        classes=3,
        pyramid_style="smp",
        pyramid_aggregation="sum",
        pyramid_dropout=0.2,
    )
    assert fpn.get_layer("fpn_stage_p5_pre_conv").output.shape == (None, 2, 2, 256)  # the encoder output, stride 32
    assert fpn.get_layer("fpn_stage_p2_add").output.shape == (None, 16, 16, 256)  # stride 4
    assert fpn.get_layer("aggregation_sum").output.shape == (None, 16, 16, 128)
    convs = [layer.name for layer in fpn.layers if layer.name.startswith("segm_stage") and layer.name.endswith("_conv")]
    assert len(convs) == 3 + 2 + 1 + 1  # one 3x3 conv per x2 upsampling, one on the stride-4 level
    assert fpn.get_layer("head_conv").kernel_size == (1, 1) and fpn.output_shape == (None, 64, 64, 3)
    assert forward(fpn, np.zeros((1, 64, 64, 3), "float32")).shape == (1, 64, 64, 3)


def test_pspnet_lifts_the_101_size_limit():
    """1.0.1 needed a fixed size divisible by 6 * downsample_factor; any size >= the minimum works now."""
    model = sm.PSPNet("resnet18", input_shape=(None, None, 3), encoder_weights=None, classes=2, psp_conv_filters=16)
    for size in [(64, 64), (50, 70)]:
        assert forward(model, np.zeros((1, *size, 3), "float32")).shape == (1, *size, 2)
    fixed = sm.PSPNet("resnet18", input_shape=(64, 80, 3), encoder_weights=None, psp_conv_filters=16)
    assert fixed.output_shape == (None, 64, 80, 21)
    with pytest.raises(
        ValueError, match=r"too small for PSPNet with downsample_factor=16.*multiple of 96.*at least 49"
    ):
        sm.PSPNet("resnet18", input_shape=(40, 64, 3), encoder_weights=None, downsample_factor=16)


@pytest.mark.parametrize(
    "arch,kwargs,message",
    [
        (
            "FPN",
            dict(pyramid_aggregation="mean"),
            r"pyramid_aggregation must be one of \['sum', 'concat'\], got 'mean'",
        ),
        ("FPN", dict(pyramid_dropout=1.5), r"pyramid_dropout must be None or a dropout rate in \[0, 1\)"),
        ("FPN", dict(pyramid_block_filters=0), "pyramid_block_filters must be a positive integer"),
        ("FPN", dict(encoder_features=["relu0"]), "FPN needs 4 encoder_features"),
        ("FPN", dict(pyramid_style="torch"), r"pyramid_style must be one of \['1.0.1', 'smp'\], got 'torch'"),
        ("Linknet", dict(decoder_block_type="deconv"), "decoder_block_type must be one of"),
        ("Linknet", dict(decoder_filters=(None, None, None, 16)), "decoder_filters must be 5 entries"),
        ("Linknet", dict(decoder_filters=(None, None, None, None, None)), r"None only for the first 4 blocks"),
        ("Linknet", dict(decoder_filters=(None, None, None, None, -3)), "each a positive integer or None"),
        ("PSPNet", dict(downsample_factor=32), r"downsample_factor must be one of \[4, 8, 16\], got 32"),
        ("PSPNet", dict(psp_pooling_type="median"), r"psp_pooling_type must be one of \['avg', 'max'\]"),
        ("PSPNet", dict(psp_conv_filters=0), "psp_conv_filters must be a positive integer"),
        ("PSPNet", dict(psp_dropout=-0.1), "psp_dropout must be None or a dropout rate"),
        ("PSPNet", dict(input_shape=(16, 64, 3)), "too small for PSPNet"),
    ],
)
def test_bad_arguments(arch, kwargs, message):
    kwargs = {"input_shape": (64, 64, 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        getattr(sm, arch)("resnet18", encoder_weights=None, **kwargs)


def test_create_model_builds_them_by_name():
    assert {"Unet", "FPN", "Linknet", "PSPNet"} <= set(sm.available_architectures())
    model = sm.create_model(
        "pspnet", backbone_name="resnet18", input_shape=(48, 48, 3), encoder_weights=None, classes=3, psp_conv_filters=8
    )
    assert model.name == "pspnet_resnet18" and model.output_shape == (None, 48, 48, 3)
    with pytest.raises(ValueError, match="Unknown architecture 'fnp'.*did you mean.*fpn"):
        sm.create_model("fnp", backbone_name="resnet18")
