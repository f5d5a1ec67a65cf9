"""Process settings of the `segmentation-models` command, made before TensorFlow is imported.

The command owns its process, so it silences TensorFlow's C++ start-up logs (oneDNN notes, "failed call to
cuInit" on machines without a GPU); a library imported by someone else's program must not, so this runs only when
the process is the command (the console script or ``python -m segmentation_models``). A value the user set wins.
"""
from __future__ import annotations

import os
import sys


def is_cli_process() -> bool:
    """True when this process runs the `segmentation-models` command."""
    if os.path.basename(sys.argv[0] or "").startswith("segmentation-models"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and argv[i + 1:i + 2] == ["segmentation_models"] for i, a in enumerate(argv))


def quiet_tensorflow() -> None:
    if is_cli_process():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
