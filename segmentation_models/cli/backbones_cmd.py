"""`segmentation-models backbones`: list the registered backbones, or write docs/backbones.md."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("backbones", help="list backbones; --markdown PATH writes the generated backbone table")
    p.add_argument(
        "--markdown",
        metavar="PATH",
        default=None,
        help="write the Markdown table (name, family, parameters, features, weights, preprocessing) "
        "to PATH, e.g. docs/backbones.md; builds every backbone once to count parameters",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..backbones import available_backbones, get_backbone_spec

    if args.markdown:
        from ..backbones.table import write_backbones_markdown

        print(f"wrote {write_backbones_markdown(args.markdown)}")
        return 0
    for name in available_backbones():
        spec = get_backbone_spec(name)
        strides = ", ".join(f"{s}:{c}" for s, c in sorted(spec.channels.items()))
        print(f"{name:20s} {spec.family:16s} {strides}")
    from ..backbones.hub import HUB_FAMILIES

    print("\nkeras-hub backbones (--backbone hub:<preset or folder>; pip install 'segmentation-models-keras[hub]'):")
    for family, (kind, strides, architectures) in HUB_FAMILIES.items():
        print(f"{family:20s} {kind:27s} strides {strides:10s} {architectures}")
    return 0
