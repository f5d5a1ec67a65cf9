"""`segmentation-models predict`: masks (class-index PNG with a color palette) and color overlays for images.

For each input image NAME, writes <output>/NAME_mask.png (pixel value = class index) and NAME_overlay.png
(images whose names clash, e.g. x.png and x.jpg, get NAME_EXTENSION or the folders below the common one).
Files already in --output are replaced only in a folder that predict made, or with --overwrite.
--tile predicts by sliding windows; images above 33.5 megapixels, and TIFFs with --tile, are streamed window by
window into NAME_mask.tif (no overlay) in memory bounded by the windows, not the image.
"""

from __future__ import annotations

import argparse

from .arguments import add_model_argument, add_window_arguments, command_parser, keywords_for


def add_parser(sub) -> None:
    p = command_parser(sub, "predict", "predict masks and color overlays for image files or folders", __doc__)
    add_model_argument(p)
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--output", help="folder for the masks and overlays (default <run>/predictions)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in a folder predict did not make")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_window_arguments(p, streaming=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..prediction import predict

    predict(args.model, **keywords_for(predict, args, verbose=not args.quiet))
    return 0
