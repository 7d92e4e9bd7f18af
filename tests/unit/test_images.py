from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from platemask.config import Limits
from platemask.errors import ImageTooLargeError, InvalidImageError
from platemask.images import decode, encode_jpeg, inspect, output_source, sha256
from tests.support.photos import jpeg_bytes, noisy_photo

LIMITS = Limits()


def _pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_inspect_reads_size_without_decoding() -> None:
    info = inspect(jpeg_bytes(noisy_photo(640, 480)), LIMITS)
    assert (info.width, info.height, info.mode) == (640, 480, "RGB")


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        pytest.param(b"", InvalidImageError, "empty file", id="zero-bytes"),
        pytest.param(
            _pil_bytes(Image.new("RGB", (64, 64)), "PNG"), InvalidImageError, "not a JPEG (PNG", id="png-named-jpg"
        ),
        pytest.param(b"hello world, not an image", InvalidImageError, "not a JPEG (unknown", id="text"),
        pytest.param(jpeg_bytes(noisy_photo())[:5000], InvalidImageError, "truncated JPEG", id="truncated"),
        pytest.param(
            _pil_bytes(Image.new("RGB", (1, 1)), "JPEG"), InvalidImageError, "too small", id="one-by-one-pixel"
        ),
        pytest.param(b"\xff\xd8\xff\xe0garbage\xff\xda\x00\xff\xd9", InvalidImageError, "corrupt", id="garbage"),
    ],
)
def test_inspect_refuses_bad_input(data: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason.replace("(", r"\(")):
        inspect(data, LIMITS)


def test_inspect_refuses_huge_dimensions_without_decoding() -> None:
    # 10000×10000 in a few KB: a decompression bomb must be refused from its header alone.
    data = _pil_bytes(Image.new("L", (10000, 10000)), "JPEG", quality=10)
    with pytest.raises(ImageTooLargeError, match="10000×10000"):
        inspect(data, LIMITS)


def test_inspect_refuses_oversized_file() -> None:
    with pytest.raises(ImageTooLargeError, match="byte limit"):
        inspect(jpeg_bytes(noisy_photo()), Limits(max_bytes=1000))


def test_decode_applies_exif_orientation() -> None:
    upright = noisy_photo(200, 100)
    upright[:, :100] = 255  # left half white when shown upright (landscape)
    stored = Image.fromarray(upright[:, :, ::-1]).transpose(Image.Transpose.ROTATE_90)  # portrait on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode(_pil_bytes(stored, "JPEG", exif=exif.tobytes(), quality=95), LIMITS)
    assert decoded.shape == (100, 200, 3)
    assert decoded[50, 20].mean() > 200 and decoded[50, 180].mean() < 200


def test_decode_cmyk_jpeg_keeps_colours() -> None:
    red = Image.new("RGB", (64, 64), (200, 30, 30)).convert("CMYK")
    decoded = decode(_pil_bytes(red, "JPEG", quality=95), LIMITS)
    b, g, r = decoded[32, 32].astype(int)
    assert r > 150 and g < 80 and b < 80


def test_encode_marks_output_and_drops_exif() -> None:
    source = jpeg_bytes(noisy_photo())
    data = encode_jpeg(noisy_photo(), quality=90, source_sha256=sha256(source))
    assert output_source(data) == sha256(source)
    assert output_source(source) is None
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif()  # no EXIF block at all, so never GPS
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)


def test_encode_keeps_colour_profile() -> None:
    profile = b"ICC_PROFILE-test-payload" * 20
    source = _pil_bytes(Image.new("RGB", (64, 64)), "JPEG", icc_profile=profile)
    data = encode_jpeg(noisy_photo(64, 64), quality=90, source_sha256=sha256(source), icc_from=source)
    with Image.open(io.BytesIO(data)) as image:
        assert image.info.get("icc_profile") == profile


def test_gps_exif_is_not_copied() -> None:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (35.0, 39.0, 0.0)}  # GPSInfo
    source = _pil_bytes(Image.fromarray(noisy_photo()[:, :, ::-1]), "JPEG", exif=exif.tobytes())
    image = decode(source, LIMITS)
    data = encode_jpeg(image, quality=90, source_sha256=sha256(source), icc_from=source)
    assert b"Exif\x00\x00" not in data
