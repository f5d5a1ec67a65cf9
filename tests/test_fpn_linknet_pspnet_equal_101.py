"""FPN, Linknet and PSPNet: weights of models built by segmentation_models 1.0.1 load by layer name into ours
and give the same predictions (1.0.1 runs as an oracle in one subprocess for the whole module)."""

import json

import numpy as np
import pytest

import segmentation_models as sm

from conftest import ON_TF, run_oracle

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not ON_TF, reason="oracle comparisons run once, on the TensorFlow pass"),
]

BACKBONES = ["resnet34", "mobilenetv2", "efficientnetb0"]
AVAILABLE = [b for b in BACKBONES if b in sm.get_available_backbone_names()]
# one non-default variant per backbone keeps the cost to 4 models per backbone
VARIANTS = {
    "resnet34": {"FPN": {}, "PSPNet": {}},
    "mobilenetv2": {
        "FPN": {"pyramid_aggregation": "sum", "pyramid_dropout": 0.2},
        "PSPNet": {"psp_pooling_type": "max"},
    },
    "efficientnetb0": {
        "FPN": {"pyramid_block_filters": 64},
        "PSPNet": {"downsample_factor": 16, "psp_conv_filters": 64},
    },
}


def _cases(backbone):
    v = VARIANTS[backbone]
    return [
        ("FPN", 64, v["FPN"]),
        ("Linknet", 64, {"decoder_block_type": "upsampling"}),
        ("Linknet", 64, {"decoder_block_type": "transpose", "decoder_filters": (None, None, None, None, 8)}),
        # 1.0.1 needs multiples of 6 * downsample_factor
        ("PSPNet", 6 * v["PSPNet"].get("downsample_factor", 8), v["PSPNet"]),
    ]


CASES = [(b, *case) for b in AVAILABLE for case in _cases(b)]
PARAMS = [
    pytest.param(
        b, i, id=f"{b}-{i}", marks=pytest.mark.skipif(b not in AVAILABLE, reason=f"backbone {b} is not registered yet")
    )
    for b in BACKBONES
    for i in range(4)
]


def _tag(backbone, arch, kwargs):
    return f"{backbone}_{arch}_" + "_".join(f"{k}-{v}" for k, v in sorted(kwargs.items())).replace(" ", "")


@pytest.fixture(scope="module")
def oracle_models(tmp_path_factory):
    """1.0.1 builds every case with random weights and random BN statistics, saves layer-keyed h5 + predictions."""
    folder = tmp_path_factory.mktemp("oracle_arch101")
    cases = [(b, arch, size, kwargs, _tag(b, arch, kwargs)) for b, arch, size, kwargs in CASES]
    (folder / "cases.json").write_text(json.dumps(cases))
    run_oracle(
        """
        import json, numpy as np, h5py
        import segmentation_models as sm
        from keras.src.legacy.saving import legacy_h5_format
        rng = np.random.default_rng(0)
        for backbone, arch, size, kwargs, tag in json.load(open('cases.json')):
            if 'decoder_filters' in kwargs:
                kwargs['decoder_filters'] = tuple(kwargs['decoder_filters'])
            m = getattr(sm, arch)(backbone, input_shape=(size, size, 3), classes=3, activation='softmax',
                                  encoder_weights=None, **kwargs)
            for layer in m.layers:
                w = layer.get_weights()
                if layer.__class__.__name__ == 'BatchNormalization':
                    layer.set_weights([rng.uniform(0.5, 1.5, a.shape).astype('float32') if i in (0, 3) and len(w) == 4
                                       else rng.normal(0, 0.1, a.shape).astype('float32') for i, a in enumerate(w)])
            x = (rng.random((2, size, size, 3)) * 2 - 1).astype('float32')
            with h5py.File(tag + '.h5', 'w') as f:   # the layer-keyed format 1.0.1 users have on disk
                legacy_h5_format.save_weights_to_hdf5_group(f, m)
            np.save(tag + '_x.npy', x)
            np.save(tag + '_pred.npy', np.asarray(m(x, training=False)))
            json.dump(m.count_params(), open(tag + '_params.json', 'w'))
        """,
        folder,
    )
    return folder


@pytest.mark.parametrize("backbone,index", PARAMS)
def test_weights_from_101_give_same_predictions(oracle_models, backbone, index):
    arch, size, kwargs = _cases(backbone)[index]
    tag = _tag(backbone, arch, kwargs)
    model = getattr(sm, arch)(
        backbone,
        input_shape=(size, size, 3),
        classes=3,
        activation="softmax",
        encoder_weights=None,
        weights=str(oracle_models / f"{tag}.h5"),
        **kwargs,
    )
    assert model.count_params() == json.loads((oracle_models / f"{tag}_params.json").read_text())
    x = np.load(oracle_models / f"{tag}_x.npy")
    got = np.asarray(model(x, training=False))
    np.testing.assert_allclose(got, np.load(oracle_models / f"{tag}_pred.npy"), atol=1e-4, err_msg=tag)
