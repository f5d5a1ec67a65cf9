"""docs/backbones.md is generated from the registry and must be up to date."""

import pytest

from segmentation_models.backbones import available_backbones
from segmentation_models.backbones.table import backbones_markdown, count_parameters, parameters_from_markdown

from conftest import ON_TF, ROOT

REGENERATE = "regenerate it with: python -m segmentation_models backbones --markdown docs/backbones.md"


@pytest.mark.skipif(not ON_TF, reason="the table does not depend on the backend; checked once")
def test_backbone_table_is_up_to_date():
    text = (ROOT / "docs" / "backbones.md").read_text()
    recorded = parameters_from_markdown(text)
    missing = sorted(set(available_backbones()) - set(recorded))
    assert not missing, f"docs/backbones.md lacks {missing}; {REGENERATE}"
    assert backbones_markdown(recorded) == text, f"docs/backbones.md differs from the registry; {REGENERATE}"
    assert recorded["mobilenetv3small"] == count_parameters("mobilenetv3small")
    assert recorded["resnet18"] == count_parameters("resnet18")


def test_cli_lists_backbones(capsys):
    from segmentation_models.cli import main

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("convnext_tiny "))
    assert line.split()[1] == "convnext" and line.split(None, 2)[2] == "4:96, 8:192, 16:384, 32:768"  # no stride 2
