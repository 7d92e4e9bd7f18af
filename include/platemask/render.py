"""Drawing on photos: plate masks (fill, blur, pixelate, logo) and the branding banner.

Masks cover each detected plate's box grown by the configured padding, so a plate whose edge the
model placed a few pixels off is still fully hidden. Styles only change how the covered area
looks; none of them leaves readable characters.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from platemask.config import RenderOptions
from platemask.detect import Detection
from platemask.errors import ConfigError

__all__ = ["add_banner", "mask_area", "mask_plates", "render_outputs"]

LIT_PLATE = 190.0  # luma of a white plate in good light: the cover is drawn as it is there
LOGO_GAIN = (0.35, 1.15)  # the cover never darker or brighter than this against its own colours


def render_outputs(
    image: np.ndarray, detections: Sequence[Detection], *, first: bool, options: RenderOptions
) -> tuple[np.ndarray, np.ndarray | None]:
    """Spec rules 2 and 3: the ``.detect/`` version (masked + banner) of every photo and, for a
    first photo only, the banner-only version that replaces the original (plate NOT masked)."""
    # One copy per output, drawn on in place: a 12 MP photo is 36 MB per copy.
    masked = mask_plates(image, detections, options)
    _draw_banner(masked, options)
    banner_only = None
    if first:
        banner_only = image.copy()
        _draw_banner(banner_only, options)
    return masked, banner_only


def mask_plates(image: np.ndarray, detections: Sequence[Detection], options: RenderOptions) -> np.ndarray:
    """A copy of ``image`` with every detected plate hidden in the configured style."""
    out = image.copy()
    height, width = out.shape[:2]
    for detection in detections:
        x1, y1, x2, y2 = detection.padded(options.padding, width, height)
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        if options.style == "fill":
            region[:] = options.color
        elif options.style == "blur":
            region[:] = _blur(region)
        elif options.style == "pixelate":
            region[:] = _pixelate(region)
        else:
            quad = _plate_quad(detection, options.padding)
            gain = _lighting(image, quad)  # measured on the upload, before anything is drawn
            # Pixelate first: whatever the warped logo leaves uncovered inside the box stays unreadable.
            region[:] = _pixelate(region)
            _draw_logo(out, quad, _load_rgba(options.logo), gain)
    return out


def mask_area(detections: Sequence[Detection], width: int, height: int, padding: float) -> np.ndarray:
    """The pixels :func:`mask_plates` hides, in every style: ``True`` where a mask is (height × width)."""
    area = np.zeros((height, width), bool)
    for detection in detections:
        x1, y1, x2, y2 = detection.padded(padding, width, height)
        area[y1:y2, x1:x2] = True
    return area


def add_banner(image: np.ndarray, options: RenderOptions) -> np.ndarray:
    """A copy of ``image`` with the banner PNG alpha-blended at the configured corner."""
    out = image.copy()
    _draw_banner(out, options)
    return out


def _draw_banner(out: np.ndarray, options: RenderOptions) -> None:
    if options.banner is None:
        return
    banner = _load_rgba(options.banner)
    height, width = out.shape[:2]
    target_w = max(1, round(width * options.banner_scale))
    target_h = max(1, round(banner.shape[0] * target_w / banner.shape[1]))
    if target_h > height:
        return  # a photo too flat for the banner: leave it clean rather than crop the brand
    resized = cv2.resize(banner, (target_w, target_h), interpolation=cv2.INTER_AREA)
    margin = round(min(width, height) * 0.02)
    top = margin if options.banner_position.startswith("top") else height - target_h - margin
    left = margin if options.banner_position.endswith("left") else width - target_w - margin
    top, left = max(0, top), max(0, left)
    _blend(out, resized, top, left)


def _blend(canvas: np.ndarray, rgba: np.ndarray, top: int, left: int) -> None:
    h = min(rgba.shape[0], canvas.shape[0] - top)
    w = min(rgba.shape[1], canvas.shape[1] - left)
    patch = rgba[:h, :w]
    alpha = patch[:, :, 3:4].astype(np.float32) / 255.0
    area = canvas[top : top + h, left : left + w].astype(np.float32)
    canvas[top : top + h, left : left + w] = (patch[:, :, :3] * alpha + area * (1.0 - alpha)).round().astype(np.uint8)


def _pixelate(region: np.ndarray) -> np.ndarray:
    # About four blocks across the plate's height: no character survives a block that size.
    h, w = region.shape[:2]
    block = max(2, h // 4)
    small = cv2.resize(region, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _blur(region: np.ndarray) -> np.ndarray:
    # Shrinking to a few pixels before smoothing guarantees unreadability; a plain Gaussian of
    # modest size can leave large digits legible.
    h, w = region.shape[:2]
    small = cv2.resize(region, (max(1, w // max(2, h // 3)), 3), interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, (min(h, w) // 4) | 1)
    return cv2.GaussianBlur(smooth, (k, k), 0)


def _plate_quad(detection: Detection, padding: float) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of the plate grown by ``padding``, in perspective when the model
    traced its outline (the outline's four corners), else the padded box's."""
    padding = detection.margin(padding)
    if detection.polygon is not None and len(detection.polygon) >= 4:
        corners = _four_corners(detection.polygon)
        centre = corners.mean(axis=0)
        # Each corner moves away from the centre: the margin takes in the plate's frame.
        return (centre + (corners - centre) * (1 + 2 * padding)).astype(np.float32)
    x1, y1, x2, y2 = detection.box
    dx, dy = (x2 - x1) * padding, (y2 - y1) * padding
    return np.array([[x1 - dx, y1 - dy], [x2 + dx, y1 - dy], [x2 + dx, y2 + dy], [x1 - dx, y2 + dy]], np.float32)


def _four_corners(polygon: np.ndarray) -> np.ndarray:
    """The outline as a quadrilateral: its hull simplified to four points, else its rotated rectangle."""
    hull = cv2.convexHull(polygon.astype(np.float32))
    perimeter = cv2.arcLength(hull, True)
    for share in (0.02, 0.04, 0.06, 0.08, 0.1):
        approx = cv2.approxPolyDP(hull, share * perimeter, True).reshape(-1, 2)
        if len(approx) == 4:
            return _order_corners(approx.astype(np.float32))
        if len(approx) < 4:
            break
    return _order_corners(cv2.boxPoints(cv2.minAreaRect(polygon.astype(np.float32))))


def _lighting(image: np.ndarray, quad: np.ndarray) -> float:
    """How bright the plate is against a white plate in good light (luma LIT_PLATE): the cover's gain.

    A cover in the shade of a bumper should be as dark as the plate it hides, not pasted on.
    """
    height, width = image.shape[:2]
    x1, y1 = np.floor(quad.min(axis=0)).astype(int).clip(0, [width, height])
    x2, y2 = np.ceil(quad.max(axis=0)).astype(int).clip(0, [width, height])
    inside = np.zeros((y2 - y1, x2 - x1), np.uint8)
    cv2.fillPoly(inside, [np.round(quad - [x1, y1]).astype(np.int32)], 1)
    if not inside.any():
        return 1.0
    luma = float(cv2.mean(cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), inside)[0])
    return float(np.clip(luma / LIT_PLATE, *LOGO_GAIN))


def _order_corners(points: np.ndarray) -> np.ndarray:
    s, d = points.sum(axis=1), np.diff(points, axis=1).ravel()
    return np.array([points[s.argmin()], points[d.argmin()], points[s.argmax()], points[d.argmax()]], np.float32)


def _draw_logo(canvas: np.ndarray, quad: np.ndarray, logo: np.ndarray, gain: float = 1.0) -> None:
    # Warp into the quad's bounding box only: warping onto a 12 MP canvas per plate is slow.
    height, width = canvas.shape[:2]
    x1, y1 = np.floor(quad.min(axis=0)).astype(int).clip(0, [width, height])
    x2, y2 = np.ceil(quad.max(axis=0)).astype(int).clip(0, [width, height])
    if x2 <= x1 or y2 <= y1:
        return
    if gain != 1.0:
        logo = logo.copy()
        logo[:, :, :3] = np.clip(logo[:, :, :3].astype(np.float32) * gain, 0, 255).astype(np.uint8)
    h, w = logo.shape[:2]
    source = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(source, (quad - [x1, y1]).astype(np.float32))
    warped = cv2.warpPerspective(logo, matrix, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    _blend(canvas, warped, y1, x1)


@functools.lru_cache(maxsize=8)
def _load_rgba(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConfigError(f"cannot read image {path} (PLATEMASK_BANNER / PLATEMASK_LOGO)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    return image
