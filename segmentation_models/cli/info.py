"""`segmentation-models info`: architectures, backbones and registered pretrained weights."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="list architectures, backbones and pretrained weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import keras

    from .. import __version__
    from ..backbones import available_backbones
    from ..backbones.registry import get_backbone_spec
    from ..factory import available_architectures
    from ..weights import available_weights

    print(f"segmentation_models {__version__}, Keras {keras.__version__}, backend {keras.backend.backend()}")
    print(f"\narchitectures: {', '.join(available_architectures())}")
    weights: dict[str, list[str]] = {}
    for entry in available_weights():
        weights.setdefault(entry.backbone, []).append(entry.name)
    print(f"\n{'backbone':24s} {'preprocessing':14s} weights")
    for name in available_backbones():
        spec = get_backbone_spec(name)
        print(f"{name:24s} {spec.preprocessing:14s} {', '.join(weights.get(name, [])) or '-'}")
    print("\n`segmentation-models weights list` shows URLs and hashes; `weights download NAME` prefetches.")
    return 0
