"""Reading and writing photos: strict JPEG checks, EXIF orientation, clean re-encoding.

Photos come from phones and staff PCs; a bad one must fail with a precise reason, never crash
or hang the day. Written JPEGs carry no EXIF (so no GPS), keep the colour profile, and carry a
comment that identifies them as our output of a given original.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from platemask.config import Limits
from platemask.errors import ImageTooLargeError, InvalidImageError

__all__ = ["PhotoInfo", "decode", "decode_any", "encode_jpeg", "encode_like", "inspect", "output_source", "sha256"]

_SIGNATURES = {
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"RIFF": "WebP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"%PDF": "PDF",
}
_MARKER = b"platemask:v1 source-sha256="
_MARKER_RE = re.compile(rb"platemask:v1 source-sha256=([0-9a-f]{64})")


@dataclass(frozen=True)
class PhotoInfo:
    """What the JPEG header says, read without decoding the pixels."""

    width: int
    height: int
    mode: str


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``; the identity of a photo version in tracking records."""
    return hashlib.sha256(data).hexdigest()


def inspect(data: bytes, limits: Limits) -> PhotoInfo:
    """Check that ``data`` is a complete JPEG within ``limits``, without decoding pixels."""
    if not data:
        raise InvalidImageError("empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"file is {len(data)} bytes, over the {limits.max_bytes} byte limit")
    if not data.startswith(b"\xff\xd8\xff"):
        kind = next((name for sig, name in _SIGNATURES.items() if data.startswith(sig)), None)
        raise InvalidImageError(f"not a JPEG ({kind} data)" if kind else "not a JPEG (unknown format)")
    # Entropy-coded data never contains an unstuffed FFD9, so a complete file has an EOI after its
    # last scan header (SOS); phones may append trailers after it, which is fine.
    if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise InvalidImageError("truncated JPEG (no end-of-image marker after the last scan)")
    size = _sof_size(data)
    if size is not None and size[0] * size[1] > limits.max_pixels:
        raise ImageTooLargeError(f"{size[0]}×{size[1]} px is over the {limits.max_pixels:,} pixel limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height, mode = *image.size, image.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("image dimensions are absurdly large (decompression bomb)") from None
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise InvalidImageError(f"corrupt JPEG header: {exc}") from None
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(f"{width}×{height} px is over the {limits.max_pixels:,} pixel limit")
    if min(width, height) < limits.min_side:
        raise InvalidImageError(f"{width}×{height} px is too small for a car photo (min {limits.min_side} px)")
    return PhotoInfo(width, height, mode)


def decode(data: bytes, limits: Limits) -> np.ndarray:
    """Decode a JPEG into upright BGR pixels (EXIF orientation applied), after :func:`inspect`."""
    inspect(data, limits)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InvalidImageError("corrupt JPEG data (decoder failed)")
    return image


def encode_jpeg(image: np.ndarray, *, quality: int, source_sha256: str, icc_from: bytes | None = None) -> bytes:
    """Encode ``image`` as a JPEG tagged as our output of the original with ``source_sha256``."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise InvalidImageError("JPEG encoder failed")
    body = buffer.tobytes()
    extra = _segment(0xFE, _MARKER + source_sha256.encode())
    if icc_from:
        extra += b"".join(_icc_segments(icc_from))
    return body[:2] + extra + body[2:]


def output_source(data: bytes) -> str | None:
    """The source hash if ``data`` is a JPEG we wrote (see :func:`encode_jpeg`), else None."""
    match = _MARKER_RE.search(data, 0, 4096)
    return match.group(1).decode() if match else None


def _sof_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the JPEG frame header, read before any library sizes buffers."""
    pos = 2
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _icc_segments(data: bytes) -> list[bytes]:
    """The APP2 ICC_PROFILE segments of a JPEG, so colours survive re-encoding."""
    segments, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):  # start of scan / end: no more headers
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xE2 and data[pos + 4 : pos + 16] == b"ICC_PROFILE\x00":
            segments.append(data[pos : pos + 2 + length])
        pos += 2 + length
    return segments


def decode_any(data: bytes, limits: Limits) -> np.ndarray:
    """Decode a JPEG or PNG (for ``platemask mask-dir``), with the same size limits."""
    if data.startswith(b"\x89PNG"):
        if len(data) > limits.max_bytes:
            raise ImageTooLargeError(f"file is {len(data)} bytes, over the {limits.max_bytes} byte limit")
        with Image.open(io.BytesIO(data)) as header:
            if header.size[0] * header.size[1] > limits.max_pixels:
                raise ImageTooLargeError(f"{header.size[0]}×{header.size[1]} px is over the pixel limit")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise InvalidImageError("corrupt PNG data (decoder failed)")
        return image
    return decode(data, limits)


def encode_like(suffix: str, image: np.ndarray, quality: int, source_sha256: str, source: bytes) -> bytes:
    """Encode in the format a file name's suffix asks for (PNG stays PNG)."""
    if suffix.lower() == ".png":
        ok, buffer = cv2.imencode(".png", image)
        if not ok:
            raise InvalidImageError("PNG encoder failed")
        return buffer.tobytes()
    return encode_jpeg(image, quality=quality, source_sha256=source_sha256, icc_from=source)
