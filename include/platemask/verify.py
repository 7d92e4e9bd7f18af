"""Spec rule 4: an output counts only once it is on storage, decodable, and the right size."""

from __future__ import annotations

import cv2
import numpy as np

from platemask.config import Limits
from platemask.errors import InvalidImageError, MissingFileError, OutputMissingError, OutputVerificationError
from platemask.images import inspect, sha256
from platemask.storage import Storage

__all__ = ["verify_output"]


def verify_output(store: Storage, path: str, *, expected_sha256: str, size: tuple[int, int], limits: Limits) -> None:
    """Re-read ``path`` from storage and check its bytes, decodability and ``(width, height)``."""
    try:
        data = store.read(path)
    except MissingFileError:
        raise OutputMissingError(f"['{path}']") from None
    if sha256(data) != expected_sha256:
        raise OutputVerificationError(f"{path} on storage differs from what was written")
    try:
        info = inspect(data, limits)
    except InvalidImageError as exc:
        raise OutputVerificationError(f"{path}: {exc}") from None
    if (info.width, info.height) != size:
        raise OutputVerificationError(f"{path} is {info.width}×{info.height}, expected {size[0]}×{size[1]}")
    # Decoding at 1/8 scale still runs the whole entropy-coded stream, at a fraction of the cost.
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8) is None:
        raise OutputVerificationError(f"{path} does not decode")
