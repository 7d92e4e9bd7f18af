"""Tests of the synthetic car photos used by the demo and the other tests (no plate model needed)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import platemask
from tests.support.synthetic import (
    PLATE_STYLES,
    SyntheticPhoto,
    _format_number,
    make_car_photo,
    make_scene,
    photo_jpeg,
    render_plate,
)

PLATE_TEXT = re.compile(r"^\S{2,4} \d{2,3} [ぁ-ゖ] (\d{2}-\d{2}|・{1,3}\d{1,3})$")


def _hue_class(bgr: np.ndarray) -> str:
    """Name of the colour family of one BGR colour: white, black, yellow or green."""
    b, g, r = (float(v) for v in bgr)
    if max(b, g, r) < 70:
        return "black"
    if min(b, g, r) > 120 and max(b, g, r) - min(b, g, r) < 45:
        return "white"
    if r > 150 and g > 120 and b < 90:
        return "yellow"
    if g > r + 30 and g > b + 10:
        return "green"
    return "other"


# What a plate of each style is mostly made of, and the colour of its characters.
STYLE_COLOURS = {
    "private": ("white", "green"),
    "kei": ("yellow", "black"),
    "commercial": ("green", "white"),
    "kei_commercial": ("black", "yellow"),
}


@pytest.mark.parametrize(
    "size",
    [
        pytest.param((640, 480), id="640x480"),
        pytest.param((1280, 960), id="1280x960"),
        pytest.param((720, 1280), id="portrait"),
        pytest.param((4000, 3000), id="4000x3000"),
    ],
)
def test_car_photo_shape_and_plate_geometry(size: tuple[int, int]) -> None:
    photo = make_car_photo(3, size)
    width, height = size
    assert isinstance(photo, SyntheticPhoto)
    assert photo.image.shape == (height, width, 3)
    assert photo.image.dtype == np.uint8
    assert photo.plate_quad.shape == (4, 2)
    assert photo.plate_quad.dtype == np.float32
    assert (photo.plate_quad >= 0).all()
    assert (photo.plate_quad[:, 0] <= width).all()
    assert (photo.plate_quad[:, 1] <= height).all()
    x1, y1, x2, y2 = photo.plate_box
    assert all(isinstance(v, int) for v in photo.plate_box)
    assert 0 <= x1 < x2 <= width
    assert 0 <= y1 < y2 <= height
    # TL, TR, BR, BL: left corners left of right corners, top corners above bottom ones.
    tl, tr, br, bl = photo.plate_quad
    assert tl[0] < tr[0] and bl[0] < br[0]
    assert tl[1] < bl[1] and tr[1] < br[1]
    # Plate about 2:1 and a plausible share of the photo (car 40-78 % of the width).
    plate_w, plate_h = x2 - x1, y2 - y1
    assert 1.5 < plate_w / plate_h < 2.6
    assert 0.04 < plate_w / width < 0.2
    assert PLATE_TEXT.match(photo.plate_text), photo.plate_text


@pytest.mark.parametrize(
    "seed",
    [pytest.param(0, id="seed0"), pytest.param(17, id="seed17")],
)
def test_car_photo_is_deterministic(seed: int) -> None:
    first = make_car_photo(seed, (640, 480))
    second = make_car_photo(seed, (640, 480))
    assert np.array_equal(first.image, second.image)
    assert np.array_equal(first.plate_quad, second.plate_quad)
    assert first.plate_text == second.plate_text
    other = make_car_photo(seed + 1, (640, 480))
    assert not np.array_equal(first.image, other.image)


def test_same_seed_same_car_at_every_size() -> None:
    # A demo at 4000×3000 and a test at 640×480 can share a seed and mean the same car and plate.
    small = make_car_photo(4, (640, 480))
    large = make_car_photo(4, (1280, 960))
    assert small.plate_text == large.plate_text
    np.testing.assert_allclose(small.plate_quad * 2, large.plate_quad, rtol=1e-4, atol=0.05)
    shrunk = cv2.resize(large.image, (640, 480), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(np.int16) - small.image).mean() < 12


@pytest.mark.parametrize("style", [pytest.param(s, id=s) for s in PLATE_STYLES])
@pytest.mark.parametrize("view", [pytest.param(v, id=v) for v in ("front", "rear")])
def test_car_photo_plate_has_the_style_colour(style: str, view: str) -> None:
    photo = make_car_photo(5, (1280, 960), style=style, view=view)
    # Sample inside the plate, away from its border: the background colour dominates.
    quad = photo.plate_quad
    centre = quad.mean(axis=0)
    inner = (centre + (quad - centre) * 0.8).astype(np.int32)
    mask = np.zeros(photo.image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [inner], 255)
    median = np.median(photo.image[mask > 0], axis=0)
    assert _hue_class(median) == STYLE_COLOURS[style][0], median


def test_style_does_not_change_the_scene() -> None:
    # The seed alone decides the scene, so a test can compare plate styles on the same photo.
    private = make_car_photo(8, (640, 480), style="private", view="front")
    kei = make_car_photo(8, (640, 480), style="kei", view="front")
    assert np.array_equal(private.plate_quad, kei.plate_quad)
    assert private.plate_text.split()[0] == kei.plate_text.split()[0]
    x1, y1, x2, y2 = private.plate_box
    outside = np.ones(private.image.shape[:2], bool)
    outside[max(y1 - 16, 0) : y2 + 16, max(x1 - 16, 0) : x2 + 16] = False
    diff = np.abs(private.image.astype(np.int16) - kei.image)[outside]
    assert diff.mean() < 2.0


@pytest.mark.parametrize("style", [pytest.param(s, id=s) for s in PLATE_STYLES])
def test_render_plate_colours(style: str) -> None:
    plate = render_plate("品川 330", "さ", "12-34", style)
    assert plate.shape == (165, 330, 3)
    assert plate.dtype == np.uint8
    background, characters = STYLE_COLOURS[style]
    pixels = plate[8:-8, 8:-8].reshape(-1, 3)
    families = np.array([_hue_class(p) for p in pixels[::7]])
    share = {name: float(np.mean(families == name)) for name in ("white", "black", "yellow", "green")}
    assert share[background] > 0.5, share
    assert share[characters] > 0.08, share  # the characters are clearly there, in their colour
    assert max(share, key=share.get) == background


@pytest.mark.parametrize(
    ("width", "shape"),
    [
        pytest.param(330, (165, 330, 3), id="330"),
        pytest.param(64, (32, 64, 3), id="small"),
        pytest.param(1001, (500, 1001, 3), id="odd"),
    ],
)
def test_render_plate_size(width: int, shape: tuple[int, int, int]) -> None:
    plate = render_plate("なにわ 500", "あ", "・・12", "commercial", width)
    assert plate.shape == shape


def test_render_plate_draws_the_text() -> None:
    # Different text, different ink; and the big digits sit in the lower half.
    a = render_plate("品川 330", "さ", "12-34").astype(np.int16)
    b = render_plate("品川 330", "さ", "56-78").astype(np.int16)
    diff = np.abs(a - b).sum(axis=2) > 60
    rows = np.nonzero(diff.any(axis=1))[0]
    assert rows.min() > a.shape[0] * 0.3


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(1234, "12-34", id="four-digits"),
        pytest.param(1005, "10-05", id="inner-zero"),
        pytest.param(123, "・123", id="three-digits"),
        pytest.param(12, "・・12", id="two-digits"),
        pytest.param(7, "・・・7", id="one-digit"),
    ],
)
def test_serial_number_format(value: int, text: str) -> None:
    assert _format_number(value) == text


@pytest.mark.parametrize(
    "size",
    [pytest.param((640, 480), id="640x480"), pytest.param((1280, 960), id="1280x960")],
)
def test_scene_shape_and_determinism(size: tuple[int, int]) -> None:
    for seed in range(4):  # every kind of scene
        image = make_scene(seed, size)
        assert image.shape == (size[1], size[0], 3)
        assert image.dtype == np.uint8
        assert image.std() > 5  # a picture, not a flat fill
        assert np.array_equal(image, make_scene(seed, size))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: make_car_photo(0, style="taxi"), "style", id="bad-style"),
        pytest.param(lambda: make_car_photo(0, view="side"), "view", id="bad-view"),
        pytest.param(lambda: make_car_photo(0, (20, 20)), "size", id="tiny"),
        pytest.param(lambda: render_plate("品川 330", "さ", "12-34", "blue"), "style", id="plate-style"),
        pytest.param(lambda: photo_jpeg(np.zeros((8, 8, 3), np.uint8), exif_orientation=9), "orientation", id="exif"),
    ],
)
def test_invalid_arguments(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def _asymmetric_image() -> np.ndarray:
    """A 120×200 image whose every flip and rotation looks different."""
    image = np.zeros((120, 200, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, 200, dtype=np.uint8)[None, :]
    image[..., 1] = np.linspace(0, 255, 120, dtype=np.uint8)[:, None]
    image[10:40, 20:70] = (0, 0, 255)
    return image


@pytest.mark.parametrize("orientation", [pytest.param(o, id=f"orientation-{o}") for o in range(1, 9)])
def test_photo_jpeg_exif_orientation_round_trip(orientation: int) -> None:
    image = _asymmetric_image()
    data = photo_jpeg(image, 95, exif_orientation=orientation)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == orientation
    buffer = np.frombuffer(data, np.uint8)
    shown = cv2.imdecode(buffer, cv2.IMREAD_COLOR)  # applies the EXIF orientation
    assert shown.shape == image.shape
    assert np.abs(shown.astype(np.int16) - image).mean() < 4
    stored = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    turned = orientation >= 5
    assert stored.shape[:2] == (image.shape[1::-1] if turned else image.shape[:2])
    if orientation != 1:
        same = stored.shape == image.shape and np.abs(stored.astype(np.int16) - image).mean() < 4
        assert not same  # the pixels really are stored turned


def test_photo_jpeg_plain() -> None:
    image = _asymmetric_image()
    data = photo_jpeg(image, 90)
    assert data[:2] == b"\xff\xd8"
    assert 0x0112 not in Image.open(io.BytesIO(data)).getexif()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded.astype(np.int16) - image).mean() < 4


def test_import_pulls_in_neither_matplotlib_nor_airflow() -> None:
    # The font is found without importing matplotlib_fontja (which reconfigures matplotlib).
    code = (
        "import sys; from tests.support.synthetic import make_car_photo; make_car_photo(1, (320, 240)); "
        "bad = [m for m in ('matplotlib', 'airflow') if m in sys.modules]; assert not bad, bad"
    )
    root = str(Path(platemask.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
