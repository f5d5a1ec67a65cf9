"""segmentation_models.accel.allocator: glibc keeps freed memory (torch backend), only where asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from segmentation_models.accel import allocator

from conftest import BACKEND

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="needs Linux with glibc (mallopt)")


@glibc
def test_retain_and_restore():
    before = allocator.retaining_freed_memory()
    try:
        assert allocator.retain_freed_memory(True) and allocator.retaining_freed_memory()
        block = bytearray(64 << 20)  # served from the heap now; freeing it keeps the memory for reuse
        del block
        assert allocator.retain_freed_memory(False) and not allocator.retaining_freed_memory()
        assert isinstance(allocator.release_freed_memory(), bool)
    finally:
        allocator.retain_freed_memory(before)


@glibc
def test_opt_in_on_torch_only_and_switchable():
    """Not on import (nor when the package builds a model); enable(allocator=True) and the command line turn it on
    for the torch backend unless SM_TORCH_RETAIN_MEMORY=0; the command line gives the setting back when it returns."""
    code = (
        "import segmentation_models as sm; from segmentation_models.accel import allocator as a\n"
        "sm.Unet('resnet18', input_shape=(32, 32, 3), classes=1, encoder_weights=None)\n"
        "imported = a.retaining_freed_memory(); sm.accel.enable(allocator=True); enabled = a.retaining_freed_memory()\n"
        "sm.accel.disable()\n"
        "with sm.accel.process_wide():\n    cli = a.retaining_freed_memory()\n"
        "print(imported, enabled, cli, a.retaining_freed_memory())"
    )

    def retained(**env):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        return out.stdout.split()[-4:]

    if BACKEND == "torch":
        assert retained(KERAS_BACKEND="torch") == ["False", "True", "True", "False"]
        assert retained(KERAS_BACKEND="torch", SM_TORCH_RETAIN_MEMORY="0") == ["False"] * 4
    else:
        assert retained(KERAS_BACKEND=BACKEND) == ["False"] * 4


def test_not_glibc_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.retain_freed_memory(True) is False
    assert allocator.release_freed_memory() is False
