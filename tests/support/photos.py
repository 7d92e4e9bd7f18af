"""Test doubles and photos shared by the test layers: plain pixels, plain JPEGs, a model stand-in."""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

__all__ = ["StubDetector", "jpeg_bytes", "no_second_look", "noisy_photo"]


def noisy_photo(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A BGR image with gradients and noise, so JPEG changes are measurable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-20, 20, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    """Encode BGR pixels as a plain JPEG (no EXIF)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class StubDetector:
    """Stands in for the model where a test is about the rules, not the model: fixed boxes."""

    def __init__(
        self, boxes: Sequence[tuple[float, float, float, float]] = ((100, 300, 260, 380),), conf: float = 0.9
    ) -> None:
        from platemask.config import DetectOptions
        from platemask.detect import Detection

        self.options = DetectOptions()
        self.detections = [Detection(box=tuple(map(float, b)), conf=conf) for b in boxes]
        self.calls = 0

    def load_async(self) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def detect(self, images: Sequence[np.ndarray], *, conf: float | None = None) -> list[list]:
        if conf is not None:  # the second look's closer look at a crop: this model sees nothing more
            return [[] for _ in images]
        self.calls += len(images)
        return [list(self.detections) for _ in images]


def no_second_look():
    """The second look switched off (``PLATEMASK_SECOND_LOOK=off``): its text models never load."""
    from platemask.config import SecondLookOptions
    from platemask.second_look import SecondLook

    return SecondLook(SecondLookOptions(mode="off"))
