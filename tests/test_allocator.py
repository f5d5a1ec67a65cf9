"""segmentation_models.allocator: glibc keeps freed memory on the torch backend (no page faults every step)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import BACKEND
from segmentation_models import allocator

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
def test_applied_at_import_on_torch_only_and_switchable():
    code = "import segmentation_models.allocator as a; print(a.retaining_freed_memory())"

    def retained(**env):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True)
        return out.stdout.split()[-1]

    if BACKEND == "torch":
        assert retained(KERAS_BACKEND="torch") == "True"
        assert retained(KERAS_BACKEND="torch", SM_TORCH_RETAIN_MEMORY="0") == "False"
    else:
        assert retained(KERAS_BACKEND=BACKEND) == "False"


def test_not_glibc_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.retain_freed_memory(True) is False
    assert allocator.release_freed_memory() is False
