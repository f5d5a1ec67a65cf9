"""Process settings of the `segmentation-models` command, made before TensorFlow is imported.

The command owns its process, so it silences TensorFlow's C++ start-up logs (oneDNN notes, "Could not find cuda
drivers", "failed call to cuInit" on machines without a GPU); a library imported by someone else's program must
not, so this acts only when the process is the command (the console script or ``python -m segmentation_models``).
A ``TF_CPP_MIN_LOG_LEVEL`` the user set wins.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile


def is_cli_process() -> bool:
    """True when this process runs the `segmentation-models` command."""
    if os.path.basename(sys.argv[0] or "").startswith("segmentation-models"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and argv[i + 1 : i + 2] == ["segmentation_models"] for i, a in enumerate(argv))


def quiet_tensorflow() -> None:
    """In the command's process: TensorFlow's log level 3, and its import with stderr held back. TensorFlow
    writes its start-up notes before its log level is read ("All log messages before absl::InitializeLog()"),
    so they are discarded; an import that fails shows them."""
    if not is_cli_process():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if (
        os.environ["TF_CPP_MIN_LOG_LEVEL"] != "3"
        or "tensorflow" in sys.modules
        or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"
        or importlib.util.find_spec("tensorflow") is None
    ):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
