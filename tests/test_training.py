"""Training from Python (`segmentation_models.training`): the typed configuration, its config.json form, and
`train` giving what `segmentation-models train` gives with the same options."""

from __future__ import annotations

import json

import numpy as np
import pytest

import segmentation_models as sm
from segmentation_models.cli import build_parser, main
from segmentation_models.cli.train import train_config_from_args
from segmentation_models.data.shapes import write_shapes_dataset
from segmentation_models.runs import load_model
from segmentation_models.training import DataConfig, ModelConfig, TrainConfig, TrainingOptions

from conftest import ON_TF

CLASSES = ["background", "disc", "square"]


def test_defaults_are_the_cli_defaults(tmp_path):
    """The dataclasses' defaults are the command's: the config of `train --data X` equals TrainConfig(data=X)."""
    args = build_parser().parse_args(["train", "--data", str(tmp_path)])
    assert train_config_from_args(args) == TrainConfig(data=DataConfig(data=str(tmp_path)))
    assert TrainConfig(data={"data": str(tmp_path)}).to_dict() == train_config_from_args(args).to_dict()


def test_config_round_trips_through_the_run_folder_layout(tmp_path):
    config = TrainConfig(
        data=DataConfig(data=str(tmp_path), classes=("a", "b")),
        model=ModelConfig(backbone="resnet18", encoder_weights="none", options={"decoder_filters": [8] * 5}),
        train=TrainingOptions(epochs=3, crop=64, metrics="mean_iou, accuracy"),
        skip_bad=True,
    )
    as_dict = config.to_dict()
    assert list(as_dict) == ["data", "model", "train"]
    assert as_dict["model"]["encoder_weights"] is None and as_dict["train"]["crop"] == [64, 64]
    assert as_dict["train"]["metrics"] == ["mean_iou", "accuracy"] and as_dict["data"]["classes"] == ["a", "b"]
    recorded = dict(json.loads(json.dumps(as_dict)), skip_bad=True, classes={"names": ["a", "b"]}, counts={})
    assert TrainConfig.from_dict(recorded) == config
    # a config.json written before an option existed: the option takes its default
    del recorded["train"]["cache_mb"], recorded["train"]["bn_batches"]
    old = TrainConfig.from_dict(recorded)
    assert old.train.cache_mb == 1024 and old.train.bn_batches == 10


@pytest.mark.parametrize(
    "section, options, message",
    [
        ("train", {"epochs": 0}, "epochs must be a positive integer, got 0"),
        ("train", {"batch_size": 2.5}, "batch_size must be a positive integer, got 2.5"),
        ("train", {"lr": 0}, "lr must be a positive number, got 0"),
        ("train", {"optimizer": "adamx"}, r"optimizer must be one of \['adam', 'adamw', 'sgd'\], got 'adamx'"),
        ("train", {"schedule": "step"}, "schedule must be one of"),
        ("train", {"precision": "float16"}, "precision must be one of"),
        ("train", {"bn_batches": -1}, r"bn_batches must be an integer >= 0 \(0: no re-estimation\), got -1"),
        ("train", {"steps_per_epoch": -2}, "steps_per_epoch must be None or an integer >= 0"),
        ("train", {"crop": (64, 0)}, "crop must be None, N or"),
        ("train", {"epoch": 3}, r"TrainingOptions: unknown option\(s\) \['epoch'\]"),
        ("model", {"arch": ""}, "arch must be a name"),
        ("model", {"options": [1]}, "options must be a dict"),
        ("data", {"mask_mode": "rgb"}, "mask_mode must be one of"),
    ],
)
def test_config_checks_its_arguments(tmp_path, section, options, message):
    sections = {"data": {"data": str(tmp_path)}, "model": {}, "train": {}}
    sections[section].update(options)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**sections)


def test_config_needs_data():
    with pytest.raises(ValueError, match="give the data"):
        DataConfig()
    with pytest.raises(ValueError, match="config=None reads a run folder's config.json"):
        sm.train(None)


@pytest.mark.skipif(not ON_TF, reason="trains twice: checked on the TensorFlow pass")
def test_train_from_python_matches_the_cli(tmp_path, capsys):
    """`sm.train(TrainConfig(...))` and `segmentation-models train` with the same options: the same config.json,
    history and final weights (deterministic kernels, a few steps)."""
    data = write_shapes_dataset(tmp_path / "data", 16, 64, seed=0)
    common = ["--epochs", "2", "--batch-size", "4", "--steps-per-epoch", "2", "--val-steps", "1", "--lr", "3e-3"]
    argv = ["train", "--data", str(data), "--classes", ",".join(CLASSES), "--backbone", "resnet18"]
    argv += ["--encoder-weights", "none", "--model-arg", "decoder_filters=[16,8,8,8,8]", *common]
    argv += ["--bn-batches", "1", "--workers", "1", "--overlays", "1", "--deterministic", "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "cli")]) == 0

    config = TrainConfig(
        data=DataConfig(data=data, classes=CLASSES),
        model=ModelConfig(backbone="resnet18", encoder_weights=None, options={"decoder_filters": [16, 8, 8, 8, 8]}),
        train=TrainingOptions(
            epochs=2,
            batch_size=4,
            steps_per_epoch=2,
            val_steps=1,
            lr=3e-3,
            bn_batches=1,
            workers=1,
            overlays=1,
            deterministic=True,
        ),
    )
    summary = sm.train(config, tmp_path / "python", verbose=0)
    assert summary["epochs"] == 2 and "trained unet-resnet18 on" in capsys.readouterr().out

    cli, python = tmp_path / "cli", tmp_path / "python"
    assert json.loads((cli / "config.json").read_text()) == json.loads((python / "config.json").read_text())

    def history(run):
        return [
            {k: v for k, v in row.items() if k != "seconds"} for row in json.loads((run / "history.json").read_text())
        ]

    assert history(cli) == history(python)
    for got, expected in zip(load_model(python / "last.keras").weights, load_model(cli / "last.keras").weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=got.path)
    assert sorted(p.name for p in python.iterdir()) == sorted(p.name for p in cli.iterdir())
