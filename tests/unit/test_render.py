from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from platemask.config import MASK_STYLES, RenderOptions
from platemask.detect import Detection
from platemask.render import add_banner, mask_plates, render_outputs
from tests.support.photos import noisy_photo

BOX = (200.0, 300.0, 360.0, 380.0)  # a 160×80 plate
PLATE = Detection(box=BOX, conf=0.9)


def _plate_region(image: np.ndarray, box=BOX) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    return image[y1:y2, x1:x2].astype(int)


def _stroke_correlation(region: np.ndarray, strokes: np.ndarray) -> float:
    """How much of the character pattern is left: correlation of fine detail with the strokes."""
    gray = region.mean(axis=2)
    detail = gray - cv2.blur(gray, (5, 5))
    if detail.std() < 1e-6:
        return 0.0
    return float(abs(np.corrcoef(detail.ravel(), strokes.ravel())[0, 1]))


@pytest.mark.parametrize("style", [pytest.param(s, id=s) for s in MASK_STYLES])
def test_every_style_destroys_the_plate(style: str) -> None:
    image = noisy_photo()
    # Dark one-pixel "character strokes" on a white plate: the detail a mask must wipe out.
    x1, y1, x2, y2 = (int(v) for v in BOX)
    strokes = np.zeros((y2 - y1, x2 - x1), float)
    strokes[20:-20, 10:-10:6] = 1
    image[y1:y2, x1:x2] = 255
    image[y1:y2, x1:x2][strokes > 0] = 0
    assert _stroke_correlation(_plate_region(image).astype(float), strokes) > 0.5  # the check can see strokes
    out = mask_plates(image, [PLATE], RenderOptions(style=style, banner=None))
    assert _stroke_correlation(_plate_region(out).astype(float), strokes) < 0.1


def test_padding_covers_around_the_box() -> None:
    image = noisy_photo()
    small = Detection(box=(200.0, 300.0, 300.0, 330.0), conf=0.9)  # 100×30: a plate up to 32 px tall
    out = mask_plates(image, [small], RenderOptions(style="fill", padding=0.20, banner=None))
    # 20 % of 100×30 = 20 px and 6 px beyond the box are covered too…
    assert (out[294:336, 180:320] == RenderOptions().color).all()
    # …and nothing further out is touched.
    assert (out[:293] == image[:293]).all() and (out[337:] == image[337:]).all()
    assert (out[:, :179] == image[:, :179]).all() and (out[:, 321:] == image[:, 321:]).all()


def test_a_large_plate_keeps_its_shape() -> None:
    """A close-up's box is placed well: its margin shrinks to 9 % of its size on each side."""
    image = noisy_photo()
    large = Detection(box=(100.0, 100.0, 500.0, 300.0), conf=0.9)  # 400×200
    out = mask_plates(image, [large], RenderOptions(style="fill", padding=0.25, banner=None))
    masked = (out != image).any(axis=2)
    # 9 % on each side: 36 px and 18 px, 1.39 times the plate's area (not 2.25).
    assert masked.sum() == (400 + 2 * 36) * (200 + 2 * 18)
    assert masked[82:318, 64:536].all()


def test_padding_is_clipped_at_photo_edges() -> None:
    image = noisy_photo()
    edge = Detection(box=(600.0, 440.0, 640.0, 480.0), conf=0.5)
    out = mask_plates(image, [edge], RenderOptions(style="fill", banner=None))
    assert out.shape == image.shape and (out[470, 630] == RenderOptions().color).all()


def test_banner_drawn_at_configured_corner() -> None:
    image = noisy_photo(1000, 750)
    options = RenderOptions(banner_position="top-left", banner_scale=0.3)
    out = add_banner(image, options)
    changed = np.abs(out.astype(int) - image.astype(int)).sum(axis=2) > 30
    ys, xs = np.nonzero(changed)
    assert xs.min() < 30 and ys.min() < 30  # near the top-left margin
    assert xs.max() < 1000 * 0.3 + 30 and ys.max() < 750 / 2  # about 30 % wide
    assert not changed[600:, 600:].any()


def test_first_photo_banner_only_keeps_the_plate() -> None:
    image = noisy_photo(1000, 750)
    options = RenderOptions(banner_position="top-left")
    masked, banner_only = render_outputs(image, [PLATE], first=True, options=options)
    assert banner_only is not None
    assert (_plate_region(banner_only) == _plate_region(image)).all()  # plate untouched
    assert (_plate_region(masked) == options.color).all()  # hidden in the .detect/ copy
    outside_banner = (slice(400, 750), slice(0, 1000))
    assert (banner_only[outside_banner] == image[outside_banner]).all()


def test_other_photos_get_one_render() -> None:
    masked, banner_only = render_outputs(noisy_photo(), [PLATE], first=False, options=RenderOptions())
    assert banner_only is None and masked.shape == (480, 640, 3)


def test_logo_uses_the_plate_outline() -> None:
    image = noisy_photo(800, 600)
    # A plate tilted by ~10°: the logo must follow it, inside the padded box.
    polygon = np.array([[300, 300], [460, 272], [468, 352], [308, 380]], np.float32)
    tilted = Detection(box=(300.0, 272.0, 468.0, 380.0), conf=0.9, polygon=polygon)
    out = mask_plates(image, [tilted], replace(RenderOptions(), style="logo", padding=0.10, banner=None))
    changed = np.abs(out.astype(int) - image.astype(int)).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    # Everything drawn stays around the plate (its outline grown by the 10 % padding)…
    assert xs.min() >= 270 and xs.max() <= 500 and ys.min() >= 250 and ys.max() <= 400
    # …and the logo's navy face covers most of the tilted plate.
    inside = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(inside, [polygon.astype(np.int32)], 1)
    b, _, r = (out[inside > 0].astype(int)[:, i] for i in range(3))
    navy = (b > r + 20) & (b < 120)
    assert navy.mean() > 0.5


def _generated_plate(seed: int = 200_007, light: float = 1.0) -> tuple[np.ndarray, Detection, np.ndarray]:
    """A generated rear view (lit by ``light``), its plate as the model traces it (ragged), and its corners."""
    from tests.support.synthetic import make_car_photo

    photo = make_car_photo(seed=seed, size=(1280, 960), view="rear")
    image = np.clip(photo.image.astype(np.float32) * light, 0, 255).astype(np.uint8)
    quad = photo.plate_quad
    # An outline as a segmentation traces it: many points along the plate's edges, a pixel or two off.
    edges = [
        quad[i] + (quad[(i + 1) % 4] - quad[i]) * t for i in range(4) for t in np.linspace(0, 1, 12, endpoint=False)
    ]
    outline = np.float32(edges) + np.random.default_rng(seed).normal(0, 1.0, (len(edges), 2)).astype(np.float32)
    (x1, y1), (x2, y2) = quad.min(axis=0), quad.max(axis=0)
    return image, Detection(box=(float(x1), float(y1), float(x2), float(y2)), conf=0.9, polygon=outline), quad


def test_the_logo_is_warped_onto_the_plates_corners_and_covers_it() -> None:
    image, plate, quad = _generated_plate()
    out = mask_plates(image, [plate], RenderOptions(style="logo", banner=None))
    inside = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(quad).astype(np.int32)], 1)
    b, g, r = (out[inside > 0].astype(int)[:, i] for i in range(3))
    # The cover's navy face and its lettering, not the plate: blue over red, no white plate left.
    covered = (b > r + 10) | ((b > 150) & (g > 150) & (r > 150) & (np.abs(b - r) < 30))
    assert covered.mean() > 0.9
    assert np.abs(out[inside > 0].astype(int) - image[inside > 0]).mean() > 40  # the plate is gone
    # Nothing is drawn outside the plate's padded box.
    x1, y1, x2, y2 = plate.padded(RenderOptions().padding, image.shape[1], image.shape[0])
    outside = np.ones(image.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert (out[outside] == image[outside]).all()


def test_the_logo_is_as_bright_as_the_plate_it_hides() -> None:
    """A cover in the shade is as dark as the plate there, not pasted on in full light."""
    faces = []
    for light in (1.0, 0.45):
        image, plate, quad = _generated_plate(light=light)
        out = mask_plates(image, [plate], RenderOptions(style="logo", banner=None))
        inside = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(inside, [np.round(quad).astype(np.int32)], 1)
        faces.append(float(cv2.mean(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), inside)[0]))
    lit, shaded = faces
    assert shaded < 0.7 * lit
