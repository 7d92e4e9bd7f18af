"""A tmpfs mounted for one test, to give a photo root the faults of a real file system (needs root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(root: Path, options: str) -> Iterator[Path]:
    """``root`` as a tmpfs with ``options`` (``size=3m``, ``ro``); the test is skipped where that cannot be."""
    root.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(root)], capture_output=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
