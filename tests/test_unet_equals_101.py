"""Equivalence with segmentation_models 1.0.1 (run as an oracle in a subprocess)."""

import numpy as np
import pytest

import segmentation_models as sm

from conftest import ON_TF, run_oracle

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not ON_TF, reason="oracle comparisons run once, on the TensorFlow pass"),
]

CASES = [
    ("resnet18", "upsampling"),
    ("resnet18", "transpose"),
    ("resnet34", "upsampling"),
    ("resnet34", "transpose"),
    ("vgg16", "upsampling"),
    ("vgg16", "transpose"),
]


@pytest.fixture(scope="module")
def oracle_models(tmp_path_factory):
    """1.0.1 builds each Unet with random weights (and random BN statistics), saves weights + predictions."""
    folder = tmp_path_factory.mktemp("oracle_unet")
    run_oracle(
        f"""
        import json, numpy as np, h5py
        import segmentation_models as sm
        from keras.src.legacy.saving import legacy_h5_format
        rng = np.random.default_rng(0)
        x = rng.random((2, 64, 64, 3)).astype('float32') * 2 - 1
        np.save('x.npy', x)
        for bb, bt in {CASES!r}:
            m = sm.Unet(bb, input_shape=(64, 64, 3), classes=3, activation='softmax', encoder_weights=None,
                        decoder_block_type=bt)
            for layer in m.layers:
                # scales and variances positive (bn_data: no gamma)
                if layer.__class__.__name__ == 'BatchNormalization':
                    layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype('float32')
                                       if w.name in ('gamma', 'moving_variance')
                                       else rng.normal(0, 0.1, w.shape).astype('float32') for w in layer.weights])
            tag = bb + '_' + bt
            with h5py.File(tag + '.h5', 'w') as f:          # the layer-keyed format 1.0.1 users have on disk
                legacy_h5_format.save_weights_to_hdf5_group(f, m)
            m.save_weights(tag + '.weights.h5')              # Keras 3's own format
            np.save(tag + '_pred.npy', m.predict(x, verbose=0))
        """,
        folder,
    )
    return folder


@pytest.mark.parametrize("backbone,block_type", CASES)
def test_weights_from_101_give_same_predictions(oracle_models, backbone, block_type):
    x = np.load(oracle_models / "x.npy")
    tag = f"{backbone}_{block_type}"
    expected = np.load(oracle_models / f"{tag}_pred.npy")
    for weights_file in (f"{tag}.h5", f"{tag}.weights.h5"):
        model = sm.Unet(
            backbone,
            input_shape=(64, 64, 3),
            classes=3,
            activation="softmax",
            encoder_weights=None,
            decoder_block_type=block_type,
            weights=str(oracle_models / weights_file),
        )
        got = model.predict(x, verbose=0)
        assert np.isfinite(expected).all(), f"1.0.1's {tag} predicted non-finite values: the fixture's weights are off"
        # atol 1e-3: these random ResNet-34 weights give logits of ~1e3, and float32 rounding then moves some
        # softmax outputs by ~4e-4 between 1.0.1 (Keras' own batch norm) and ours on TensorFlow (the fused kernel,
        # segmentation_models/accel/tf_ops.py); measured against float64, both are within 5e-3 on the logits.
        np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=f"{tag} via {weights_file}")


def test_get_preprocessing_matches_101(tmp_path):
    names = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19"]
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(2, 8, 8, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    run_oracle(
        f"""
        import numpy as np, segmentation_models as sm
        x = np.load('x.npy')
        for n in {names!r}:
            np.save(n + '.npy', np.asarray(sm.get_preprocessing(n)(x.copy())))
        """,
        tmp_path,
    )
    for name in names:
        got = sm.get_preprocessing(name)(x)
        np.testing.assert_allclose(got, np.load(tmp_path / f"{name}.npy"), rtol=1e-6, atol=1e-4, err_msg=name)
    # and it never modifies the caller's array (1.0.1 did, in place)
    before = x.copy()
    sm.get_preprocessing("vgg16")(x)
    np.testing.assert_array_equal(x, before)
