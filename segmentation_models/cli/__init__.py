"""The `segmentation-models` command line (also `python -m segmentation_models`).

Each sub-command lives in its own module with ``add_parser(subparsers)`` that sets ``func``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from .._cli_env import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported (when another import of the package has not done it yet)

from . import backbones_cmd, demo, evaluate, export_cmd, info, predict, train, weights_cmd  # noqa: E402

COMMANDS = [train, evaluate, predict, export_cmd, info, backbones_cmd, weights_cmd, demo]
# Commands that own their process: every model takes the fast paths, glibc keeps freed memory (torch), while they run.
ACCELERATED = ("train", "evaluate", "predict")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="segmentation-models",
        description="Segmentation models for Keras 3: train, evaluate, predict, export, manage pretrained weights.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .. import accel
    from ..training.distribute import LostProcessError

    try:
        with accel.process_wide() if args.command in ACCELERATED else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except LostProcessError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # the engine's exit handlers would wait for the lost process (JAX's shutdown barrier aborts the process
        # after its heartbeat timeout): this process is the command's own, so it ends here with the message above
        os._exit(1)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback of Keras' internals
        print(interrupted_message(args), file=sys.stderr)
        return 130


def interrupted_message(args: argparse.Namespace) -> str:
    run_folder = getattr(args, "run_folder", None)
    if args.command == "train" and run_folder is not None:
        return (
            f"interrupted: the completed epochs are kept; continue with "
            f"`segmentation-models train --output {run_folder} --resume`"
        )
    return f"interrupted: {args.command} stopped; files it wrote are complete, the others were not written"
