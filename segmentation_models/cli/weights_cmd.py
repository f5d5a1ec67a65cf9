"""`segmentation-models weights list|download`: see and prefetch pretrained weights."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="list or prefetch pretrained weights")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    dl = wsub.add_parser("download", help="download and verify weights into the cache (for offline use later)")
    dl.add_argument(
        "names",
        nargs="+",
        metavar="BACKBONE[:WEIGHTS]",
        help="backbones to fetch, e.g. resnet34 or resnet152:imagenet11k; 'all' for every file",
    )
    dl.set_defaults(func=_download)
    ls = wsub.add_parser("list", help="list registered weights files with URL, hash and cache state")
    ls.set_defaults(func=_list)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _download(args: argparse.Namespace) -> int:
    from ..weights import available_weights, fetch_weights, get_weights_entry

    if args.names == ["all"]:
        entries = available_weights()
    else:
        entries = []
        for item in args.names:
            backbone, _, name = item.partition(":")
            from ..backbones import get_backbone_spec

            get_backbone_spec(backbone)  # unknown names get the close-match message
            entries.append(get_weights_entry(backbone, name or "imagenet"))
    for entry in entries:
        path = fetch_weights(entry)
        print(f"{entry.backbone}:{entry.name} -> {path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..weights import available_weights, cache_dir

    cache = cache_dir()
    print(f"cache: {cache}")
    for e in available_weights():
        state = "cached" if (cache / e.filename).is_file() else "-"
        print(f"{e.backbone:16s} {e.name:12s} {state:7s} {e.hash_algorithm or '':6s} {e.file_hash or '':64s} {e.url}")
    return 0
