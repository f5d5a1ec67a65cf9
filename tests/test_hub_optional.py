"""keras-hub is optional: the package imports without it, and `hub:` names then say which extra to install.

Runs in the minimal venv too (Makefile test-min-keras), where keras-hub is not installed.
"""

from __future__ import annotations

import sys

import pytest

import segmentation_models as sm

from conftest import ROOT, run_fresh_python


def test_import_does_not_import_keras_hub():
    out = run_fresh_python(
        """
        import sys
        import segmentation_models as sm
        sm.backbones.get_backbone_spec("resnet18")
        print("keras_hub" in sys.modules)
        """,
        cwd=ROOT,
    )
    assert out.strip().splitlines()[-1] == "False"


def test_hub_names_without_keras_hub_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` raises ImportError, as when absent
    match = r"pip install 'segmentation-models-keras\[hub\]'"
    with pytest.raises(ImportError, match=match):
        sm.Unet("hub:resnet_18_imagenet", input_shape=(64, 64, 3), encoder_weights=None)
    with pytest.raises(ImportError, match=match):
        sm.get_preprocessing("hub:/no/such/preset")
    # everything else works without it
    assert sm.backbones.get_backbone_spec("resnet18").name == "resnet18"
