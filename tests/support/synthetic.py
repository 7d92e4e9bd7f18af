"""Synthetic photos of cars with Japanese licence plates, for the demo and the tests.

Customer photos may not be shipped, so the demo and the tests draw their own: a showroom or an
outdoor lot, a car seen from the front or the rear, and one plate in one of the four Japanese
colour schemes, finished like a camera would (lighting, blur, sensor noise, JPEG). Everything is
drawn with OpenCV and numpy except the Japanese characters, which Pillow renders with IPAexGothic
from the ``matplotlib-fontja`` package (IPA Font License v1.0). Same seed, same pixels.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "PLATE_STYLES",
    "SyntheticPhoto",
    "make_car_photo",
    "make_scene",
    "photo_jpeg",
    "render_plate",
    "render_random_plate",
]

PLATE_STYLES = ("private", "kei", "commercial", "kei_commercial")
_VIEWS = ("front", "rear")

# (plate background, characters), BGR.
_STYLE_COLOURS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "private": ((236.0, 240.0, 238.0), (58.0, 92.0, 0.0)),
    "kei": ((10.0, 206.0, 248.0), (22.0, 22.0, 22.0)),
    "commercial": ((78.0, 124.0, 0.0), (248.0, 250.0, 248.0)),
    "kei_commercial": ((34.0, 34.0, 34.0), (20.0, 214.0, 252.0)),
}
_REGIONS = (
    "品川", "練馬", "足立", "多摩", "横浜", "湘南", "川崎", "相模", "名古屋", "豊田",
    "大阪", "なにわ", "和泉", "神戸", "京都", "札幌", "福岡", "北九州", "千葉", "習志野",
    "大宮", "所沢", "宇都宮", "仙台", "広島", "静岡", "浜松", "尾張小牧",
)  # fmt: skip
# Private cars never get お, し, へ, ん; あ–こ and を are for commercial vehicles.
_HIRAGANA_PRIVATE = "さすせそたちつてとなにぬねのはひふほまみむめもやゆよらりるろれわ"
_HIRAGANA_COMMERCIAL = "あいうえかきくけこを"
_CLASS_NUMBERS = {
    "private": ("300", "330", "331", "338", "339", "500", "501", "502", "530", "531", "533"),
    "kei": ("580", "581", "583", "585", "50", "51", "54", "55"),
    "commercial": ("100", "101", "400", "401", "410", "800", "801", "11", "40", "44"),
    "kei_commercial": ("480", "481", "483", "41", "45", "40", "880"),
}
_BODY_COLOURS = (  # BGR, with how common each is among used cars
    ((236.0, 236.0, 233.0), 6),  # pearl white
    ((205.0, 205.0, 200.0), 3),  # silver
    ((24.0, 24.0, 27.0), 5),  # black
    ((78.0, 76.0, 74.0), 2),  # gunmetal
    ((36.0, 34.0, 160.0), 2),  # red
    ((130.0, 62.0, 22.0), 2),  # blue
    ((72.0, 40.0, 22.0), 1),  # navy
    ((150.0, 178.0, 198.0), 1),  # beige
    ((70.0, 96.0, 48.0), 1),  # dark green
    ((40.0, 120.0, 200.0), 1),  # orange
)
_MAX_WORK_SIDE = 2048  # scenes are drawn at most this large, then scaled up; plates always at full size
_MIN_SIDE = 64


@dataclass(frozen=True)
class SyntheticPhoto:
    """A generated photo and where its plate is."""

    image: np.ndarray  # BGR uint8, H×W×3
    plate_quad: np.ndarray  # (4, 2) float32: TL, TR, BR, BL plate corners in image pixels
    plate_text: str  # e.g. "品川 330 さ 12-34"

    @property
    def plate_box(self) -> tuple[int, int, int, int]:
        """Axis-aligned ``x1, y1, x2, y2`` that encloses the plate quad."""
        height, width = self.image.shape[:2]
        x1, y1 = np.floor(self.plate_quad.min(axis=0)).astype(int)
        x2, y2 = np.ceil(self.plate_quad.max(axis=0)).astype(int)
        return max(int(x1), 0), max(int(y1), 0), min(int(x2), width), min(int(y2), height)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def render_plate(text_top: str, hiragana: str, number: str, style: str = "private", width: int = 330) -> np.ndarray:
    """BGR image of a flat plate, ``width`` × ``width // 2``."""
    _check_style(style)
    if width < 20:
        raise ValueError(f"width must be at least 20 pixels, not {width}")
    region, _, class_number = text_top.strip().rpartition(" ")
    if not region:  # no space: the whole top row is the region name
        region, class_number = class_number, ""
    plate, alpha = _plate_layers(region, class_number, hiragana, number, style, width)
    # The rounded corners show the dark plastic that plates are usually screwed onto.
    out = plate * alpha[..., None] + np.float32(48.0) * (1.0 - alpha[..., None])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_random_plate(rng: np.random.Generator, width: int, style: str | None = None) -> tuple[np.ndarray, str]:
    """A flat plate with random text (BGR, ``width`` × ``width // 2``) and that text."""
    style = style or PLATE_STYLES[int(rng.integers(len(PLATE_STYLES)))]
    region, class_number, hiragana, number = _plate_text(rng, style)
    plate = render_plate(f"{region} {class_number}", hiragana, number, style, width)
    return plate, f"{region} {class_number} {hiragana} {number}"


def make_car_photo(
    seed: int, size: tuple[int, int] = (1280, 960), style: str | None = None, view: str | None = None
) -> SyntheticPhoto:
    """A deterministic photo (same seed, same pixels) of a car with one Japanese plate; size is (w, h)."""
    width, height = _check_size(size)
    if style is not None:
        _check_style(style)
    if view is not None and view not in _VIEWS:
        raise ValueError(f"view must be one of {', '.join(_VIEWS)} or None, not {view!r}")
    rng = np.random.default_rng(seed)
    # Drawn even when given, so one seed shows the same scene whatever style or view is asked for.
    drawn_style = PLATE_STYLES[int(rng.integers(len(PLATE_STYLES)))]
    drawn_view = _VIEWS[int(rng.integers(len(_VIEWS)))]
    style = style or drawn_style
    view = view or drawn_view

    scale = min(1.0, _MAX_WORK_SIDE / max(width, height))
    work_w, work_h = max(round(width * scale), 1), max(round(height * scale), 1)
    car = _car_geometry(rng, width, height, view)
    outdoor = bool(rng.random() < 0.5)
    horizon = (car.ground - car.width * rng.uniform(0.3, 0.6)) * scale
    image = _background(rng, work_w, work_h, horizon, outdoor)
    _draw_car(rng, image, car, scale, reflect=not outdoor)
    tone = _Tone.draw(rng, scale)
    image = tone.apply(image, rng)
    if scale < 1.0:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)

    text = _plate_text(rng, style)
    _paste_plate(rng, image, car, text, style, tone, scale)
    quality = int(rng.integers(82, 96))
    image = cv2.imdecode(np.frombuffer(photo_jpeg(image, quality), np.uint8), cv2.IMREAD_COLOR)
    return SyntheticPhoto(image=image, plate_quad=car.plate_quad, plate_text=" ".join(text))


def make_far_car_photo(seed: int, size: tuple[int, int] = (1280, 960), scale: float = 0.25) -> SyntheticPhoto:
    """A car far away: ``make_car_photo(seed)`` shrunk by ``scale`` into a corner of an empty lot.

    Its plate is a few dozen pixels wide, small enough for the model to miss: a photo a person has
    to mask by hand.
    """
    near = make_car_photo(seed, size)
    width, height = near.image.shape[1], near.image.shape[0]
    small_w, small_h = max(round(width * scale), 1), max(round(height * scale), 1)
    image = np.full_like(near.image, 96)
    left, top = width - small_w - width // 20, height - small_h - height // 20
    image[top : top + small_h, left : left + small_w] = cv2.resize(
        near.image, (small_w, small_h), interpolation=cv2.INTER_AREA
    )
    quad = (near.plate_quad * np.float32([small_w / width, small_h / height]) + np.float32([left, top])).astype(
        np.float32
    )
    return SyntheticPhoto(image=image, plate_quad=quad, plate_text=near.plate_text)


def make_scene(seed: int, size: tuple[int, int] = (1280, 960)) -> np.ndarray:
    """A car-less photographic background (an interior, a wheel, an empty lot) with no plate."""
    width, height = _check_size(size)
    rng = np.random.default_rng(seed)
    scale = min(1.0, _MAX_WORK_SIDE / max(width, height))
    work_w, work_h = max(round(width * scale), 1), max(round(height * scale), 1)
    kind = ("interior", "wheel", "showroom", "lot")[int(rng.integers(4))]
    if kind == "interior":
        image = _interior(rng, work_w, work_h)
    elif kind == "wheel":
        image = _wheel_closeup(rng, work_w, work_h)
    else:
        horizon = work_h * rng.uniform(0.35, 0.6)
        image = _background(rng, work_w, work_h, horizon, outdoor=kind == "lot")
    image = _Tone.draw(rng, scale).apply(image, rng)
    if scale < 1.0:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.imdecode(np.frombuffer(photo_jpeg(image, int(rng.integers(82, 96))), np.uint8), cv2.IMREAD_COLOR)


def photo_jpeg(image: np.ndarray, quality: int = 90, exif_orientation: int | None = None) -> bytes:
    """JPEG bytes; with ``exif_orientation`` the pixels are stored turned so an EXIF-aware viewer shows ``image``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be a BGR uint8 H×W×3 array, not {image.dtype} {image.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, not {quality}")
    stored = image
    if exif_orientation is not None:
        if exif_orientation not in _UNDO_ORIENTATION:
            raise ValueError(f"exif_orientation must be between 1 and 8, not {exif_orientation}")
        stored = _UNDO_ORIENTATION[exif_orientation](image)
    pil = Image.fromarray(np.ascontiguousarray(stored[..., ::-1]))
    buffer = io.BytesIO()
    if exif_orientation is None:
        pil.save(buffer, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        pil.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


# A viewer shows stored pixels after applying the orientation's transform, so the stored pixels
# are the displayed ones put through the inverse (rotations swap direction; flips undo themselves).
_UNDO_ORIENTATION: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda im: im,
    2: lambda im: im[:, ::-1],
    3: lambda im: im[::-1, ::-1],
    4: lambda im: im[::-1],
    5: lambda im: im.transpose(1, 0, 2),
    6: lambda im: np.rot90(im, 1),  # shown turned 90° clockwise, so stored turned counter-clockwise
    7: lambda im: im[::-1, ::-1].transpose(1, 0, 2),
    8: lambda im: np.rot90(im, -1),
}


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if min(width, height) < _MIN_SIDE:
        raise ValueError(f"size must be at least {_MIN_SIDE}×{_MIN_SIDE}, not {width}×{height}")
    return width, height


def _check_style(style: str) -> None:
    if style not in PLATE_STYLES:
        raise ValueError(f"style must be one of {', '.join(PLATE_STYLES)}, not {style!r}")


# --------------------------------------------------------------------------------------------------
# Plates
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _font_path() -> Path:
    """Path of IPAexGothic inside the installed ``matplotlib-fontja`` package."""
    # find_spec locates the package without importing it: its __init__ imports matplotlib and
    # rewrites matplotlib's global font settings, which a photo generator must not do.
    spec = importlib.util.find_spec("matplotlib_fontja")
    path = Path(spec.origin).parent / "fonts" / "ipaexg.ttf" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "the Japanese font IPAexGothic was not found; install it with pip install matplotlib-fontja==1.1.0"
        )
    return path


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    """IPAexGothic at the size glyphs are rendered at before being scaled to their box."""
    return ImageFont.truetype(str(_font_path()), 160)


@lru_cache(maxsize=256)
def _glyph(text: str) -> np.ndarray:
    """Coverage mask (uint8) of ``text`` in a bold-ish IPAexGothic, cropped to its ink, 160 px tall font."""
    font = _font()
    # A stroke thickens the regular weight towards the heavy lettering that plates use.
    stroke = 5
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    canvas = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    ink = np.asarray(canvas)
    rows, cols = np.nonzero(ink)
    if rows.size == 0:  # a space, or a character the font lacks
        return np.zeros((0, 0), np.uint8)
    return np.ascontiguousarray(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])


def _put_glyph(ink: np.ndarray, text: str, centre_x: float, top: float, height: float, max_width: float) -> None:
    """Draw ``text`` ``height`` tall (narrowed to ``max_width``) centred on ``centre_x``."""
    glyph = _glyph(text)
    if glyph.size == 0:
        return
    natural = glyph.shape[1] * height / glyph.shape[0]
    width = min(natural, max_width)
    x0, y0 = round(centre_x - width / 2), round(top)
    w, h = max(round(width), 1), max(round(height), 1)
    patch = cv2.resize(glyph, (w, h), interpolation=cv2.INTER_AREA if h < glyph.shape[0] else cv2.INTER_LINEAR)
    _max_into(ink, patch, x0, y0)


def _max_into(target: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    """``target = max(target, patch)`` with ``patch`` placed at (x0, y0), clipped to the target."""
    height, width = target.shape[:2]
    px0, py0 = max(0, -x0), max(0, -y0)
    x1, y1 = min(width, x0 + patch.shape[1]), min(height, y0 + patch.shape[0])
    x0, y0 = max(x0, 0), max(y0, 0)
    if x1 > x0 and y1 > y0:
        view = target[y0:y1, x0:x1]
        np.maximum(view, patch[py0 : py0 + y1 - y0, px0 : px0 + x1 - x0], out=view)


def _round_rect(x0: float, y0: float, x1: float, y1: float, radius: float, steps: int = 6) -> np.ndarray:
    """Polygon (N, 2) of a rectangle with rounded corners."""
    radius = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
    points = []
    corners = ((x1 - radius, y0 + radius, -90), (x1 - radius, y1 - radius, 0), (x0 + radius, y1 - radius, 90))
    for cx, cy, start in ((x0 + radius, y0 + radius, 180), *corners):
        for angle in np.radians(np.linspace(start, start + 90, steps)):
            points.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle)))
    return np.array(points, np.float32)


def _format_number(value: int) -> str:
    """Plate form of a serial number: 12-34 from 1000 up, leading dots below (・・12)."""
    if value >= 1000:
        return f"{value // 100:02d}-{value % 100:02d}"
    digits = str(value)
    return "・" * (4 - len(digits)) + digits


def _plate_text(rng: np.random.Generator, style: str) -> tuple[str, str, str, str]:
    """Random region, class number, hiragana and serial number for a plate of ``style``."""
    region = _REGIONS[int(rng.integers(len(_REGIONS)))]
    classes = _CLASS_NUMBERS[style]
    class_number = classes[int(rng.integers(len(classes)))]
    kana = _HIRAGANA_COMMERCIAL if style in ("commercial", "kei_commercial") else _HIRAGANA_PRIVATE
    hiragana = kana[int(rng.integers(len(kana)))]
    # Most serials have four digits; short ones show the leading dots now and then.
    value = int(rng.integers(1000, 10000)) if rng.random() < 0.75 else int(rng.integers(1, 1000))
    return region, class_number, hiragana, _format_number(value)


def _plate_layers(
    region: str, class_number: str, hiragana: str, number: str, style: str, width: int, seal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Flat plate as float32 BGR (0–255) and its coverage (rounded corners), ``width`` × ``width // 2``."""
    height = max(width // 2, 1)
    mm = width / 330.0  # the layout below is in millimetres of a 330 × 165 mm plate
    background, colour = _STYLE_COLOURS[style]
    ink = np.zeros((height, width), np.uint8)

    # Top row: region name then classification number, centred between the bolts.
    region_w = min(len(region) * 34.0, 96.0)
    class_w = min(len(class_number) * 19.0, 64.0)
    gap = 9.0 if class_number else 0.0
    left = 165.0 - (region_w + gap + class_w) / 2
    if region:
        _put_glyph(ink, region, (left + region_w / 2) * mm, 13 * mm, 35 * mm, region_w * mm)
    if class_number:
        _put_glyph(ink, class_number, (left + region_w + gap + class_w / 2) * mm, 13 * mm, 35 * mm, class_w * mm)

    # Bottom row: the hiragana small at the left, then the big serial number.
    if hiragana:
        _put_glyph(ink, hiragana, 38 * mm, 88 * mm, 38 * mm, 40 * mm)
    slots = (97.0, 153.0, 229.0, 285.0)  # centres of the four digit places; the hyphen sits at 191
    chars = [c for c in number if c != "-"][-4:]
    chars = ["・"] * (4 - len(chars)) + chars
    for centre, char in zip(slots, chars, strict=True):
        if char == "・":
            radius = max(round(6.5 * mm), 1)
            cv2.circle(ink, (round(centre * mm * 16), round(101 * mm * 16)), radius * 16, 255, -1, cv2.LINE_AA, 4)
        else:
            _put_glyph(ink, char, centre * mm, 60 * mm, 82 * mm, 50 * mm)
    if "-" in number:
        bar = np.array([[181, 97], [201, 97], [201, 106], [181, 106]], np.float32) * mm
        cv2.fillPoly(ink, [np.round(bar * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)

    # Thin border line inside the edge, in the character colour.
    border = _round_rect(5 * mm, 5 * mm, 325 * mm, 160 * mm, 9 * mm)
    thickness = max(round(1.8 * mm), 1)
    cv2.polylines(ink, [np.round(border * 16).astype(np.int32)], True, 255, thickness, cv2.LINE_AA, 4)

    coverage = ink.astype(np.float32) / 255.0
    plate = np.empty((height, width, 3), np.float32)
    plate[:] = background
    plate += (np.array(colour, np.float32) - plate) * coverage[..., None]
    if width >= 120:
        # Pressed characters stand out of the plate: a thin shadow below-right of each stroke.
        shift = max(round(0.9 * mm), 1)
        shadow = np.zeros_like(coverage)
        shadow[shift:, shift:] = coverage[:-shift, :-shift]
        shadow = np.clip(shadow - coverage, 0.0, 1.0)
        plate *= (1.0 - 0.22 * shadow)[..., None]
    # Retro-reflective sheet: a touch brighter at the top.
    plate *= np.linspace(1.03, 0.96, height, dtype=np.float32)[:, None, None]

    for index, x in enumerate((60.0, 270.0)):
        if seal and index == 0:
            _bolt(plate, x * mm, 27 * mm, 10.0 * mm, (196.0, 200.0, 204.0), ridges=True)
        else:
            _bolt(plate, x * mm, 27 * mm, 7.0 * mm, (150.0, 152.0, 155.0), ridges=False)

    alpha = np.zeros((height, width), np.uint8)
    outline = _round_rect(0, 0, width - 1, height - 1, 11 * mm)
    cv2.fillPoly(alpha, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return plate, alpha.astype(np.float32) / 255.0


def _bolt(plate: np.ndarray, x: float, y: float, radius: float, colour: tuple[float, ...], ridges: bool) -> None:
    """A chrome bolt head (or the rear plate's aluminium seal) with a dark rim and a highlight."""
    if radius < 1.0:
        return
    r0 = max(int(radius + 3), 2)
    x0, y0 = int(x) - r0, int(y) - r0
    ys, xs = np.mgrid[y0 : y0 + 2 * r0 + 1, x0 : x0 + 2 * r0 + 1].astype(np.float32)
    dist = np.hypot(xs - x, ys - y) / radius
    inside = np.clip((1.0 - dist) * radius + 0.5, 0.0, 1.0)
    rim = np.clip(1.0 - np.abs(dist - 0.92) * radius / 1.2, 0.0, 1.0)
    light = 0.75 + 0.45 * np.clip(((x - xs) + (y - ys)) / (2 * radius), -1.0, 1.0)
    face = np.array(colour, np.float32) * light[..., None]
    if ridges:  # the seal's embossed ring
        face *= (1.0 - 0.25 * np.clip(1.0 - np.abs(dist - 0.6) * radius / 1.0, 0.0, 1.0))[..., None]
    face *= (1.0 - 0.55 * rim)[..., None]
    h, w = plate.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + 2 * r0 + 1, w), min(y0 + 2 * r0 + 1, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    local = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    a = inside[local][..., None]
    region = plate[sy0:sy1, sx0:sx1]
    region += (face[local] - region) * a


# --------------------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------------------

_Fill = tuple[float, float, float] | Callable[[np.ndarray, np.ndarray], np.ndarray]


def _chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Round the corners of a closed polygon by corner cutting."""
    points = np.asarray(points, np.float32)
    for _ in range(iterations):
        following = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following], axis=1).reshape(-1, 2)
    return points


def _rounded(points: np.ndarray, radius: float, steps: int = 6) -> np.ndarray:
    """Replace each corner of a closed polygon with a curve that starts ``radius`` before it."""
    points = np.asarray(points, np.float32)
    out = []
    for i, corner in enumerate(points):
        before, after = points[i - 1], points[(i + 1) % len(points)]
        to_before, to_after = before - corner, after - corner
        len_b, len_a = float(np.hypot(*to_before)), float(np.hypot(*to_after))
        r = min(radius, 0.45 * len_b, 0.45 * len_a)
        if r <= 0:
            out.append(corner)
            continue
        start, end = corner + to_before / len_b * r, corner + to_after / len_a * r
        for t in np.linspace(0.0, 1.0, steps, dtype=np.float32):  # quadratic Bézier through the corner
            out.append((1 - t) ** 2 * start + 2 * (1 - t) * t * corner + t * t * end)
    return np.array(out, np.float32)


def _vgrad(y_top: float, y_bottom: float, top: tuple[float, ...], bottom: tuple[float, ...]) -> _Fill:
    """Fill that blends from ``top`` to ``bottom`` colour between two image rows."""
    top_a, bottom_a = np.array(top, np.float32), np.array(bottom, np.float32)

    def fill(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        t = np.clip((ys - y_top) / max(y_bottom - y_top, 1e-3), 0.0, 1.0)[..., None]
        return top_a + (bottom_a - top_a) * t

    return fill


class _Canvas:
    """A float32 BGR image (0–255) painted with anti-aliased shapes, each only inside its own box."""

    def __init__(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
        self.rgb = rgb
        self.alpha = alpha

    def _box(self, points: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        h, w = self.rgb.shape[:2]
        x0 = max(int(np.floor(points[:, 0].min() - pad)), 0)
        y0 = max(int(np.floor(points[:, 1].min() - pad)), 0)
        x1 = min(int(np.ceil(points[:, 0].max() + pad)) + 1, w)
        y1 = min(int(np.ceil(points[:, 1].max() + pad)) + 1, h)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def coverage(
        self, points: np.ndarray, feather: float = 0.0, thickness: float = 0.0, closed: bool = True
    ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """Box and 0–1 coverage of a polygon (or of its outline when ``thickness`` > 0)."""
        points = np.asarray(points, np.float32)
        box = self._box(points, 3 * feather + thickness + 2)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        local = np.round((points - (x0, y0)) * 16).astype(np.int32)
        if thickness > 0:
            cv2.polylines(mask, [local], closed, 255, max(round(thickness), 1), cv2.LINE_AA, 4)
        else:
            cv2.fillPoly(mask, [local], 255, cv2.LINE_AA, 4)
        cover = mask.astype(np.float32) * np.float32(1 / 255)
        if feather > 0.3:
            cover = cv2.GaussianBlur(cover, (0, 0), feather)
        return box, cover

    def paint(
        self,
        points: np.ndarray,
        fill: _Fill,
        *,
        opacity: float = 1.0,
        feather: float = 0.0,
        thickness: float = 0.0,
        closed: bool = True,
        behind: bool = False,
    ) -> None:
        """Blend ``fill`` into the polygon; ``behind`` paints only where nothing is yet."""
        found = self.coverage(points, feather, thickness, closed)
        if found is None:
            return
        (x0, y0, x1, y1), cover = found
        cover *= opacity
        if behind and self.alpha is not None:
            cover *= 1.0 - self.alpha[y0:y1, x0:x1]
        self.blend((x0, y0, x1, y1), cover, fill)

    def blend(self, box: tuple[int, int, int, int], cover: np.ndarray, fill: _Fill) -> None:
        """Blend ``fill`` into ``box`` weighted by ``cover``."""
        x0, y0, x1, y1 = box
        if callable(fill):
            ys = np.arange(y0, y1, dtype=np.float32)[:, None]
            xs = np.arange(x0, x1, dtype=np.float32)[None, :]
            colour = fill(ys, xs)
        else:
            colour = np.array(fill, np.float32)
        region = self.rgb[y0:y1, x0:x1]
        region += (colour - region) * cover[..., None]
        if self.alpha is not None:
            a = self.alpha[y0:y1, x0:x1]
            a += (1.0 - a) * cover

    def shade(self, box: tuple[int, int, int, int], cover: np.ndarray, factor: float) -> None:
        """Multiply the image by ``factor`` where ``cover`` is 1 (shadows, recesses)."""
        x0, y0, x1, y1 = box
        region = self.rgb[y0:y1, x0:x1]
        region *= (1.0 - (1.0 - factor) * cover)[..., None]


def _pixel_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise (float32) drawn from a child generator, so it costs ``rng`` one number."""
    # Noise takes one number per pixel; drawn from ``rng`` itself it would shift every later choice,
    # and the same seed would give a different car at another photo size.
    child = np.random.default_rng(int(rng.integers(2**63)))
    return child.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], ``cells`` blobs across the longer side."""
    aspect = height / width
    gw, gh = max(int(cells), 2), max(int(cells * aspect), 2)
    grid = _pixel_noise(rng, (gh, gw), 1.0)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * np.float32(0.6)


def _pick_colour(
    rng: np.random.Generator, colours: tuple[tuple[float, float, float], ...], jitter: float
) -> np.ndarray:
    """One of ``colours``, each channel nudged by up to ``jitter``."""
    base = np.array(colours[int(rng.integers(len(colours)))], np.float32)
    return np.clip(base + rng.uniform(-jitter, jitter, 3).astype(np.float32), 0, 255)


# --------------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, width: int, height: int, horizon: float, outdoor: bool) -> np.ndarray:
    """A showroom or an outdoor lot, float32 BGR, already out of focus like behind a photographed car."""
    # Drawn small then scaled up: the background is out of focus anyway, and it keeps 4000 px fast.
    small_w = max(min(width, 480), 32)
    small_h = max(round(height * small_w / width), 24)
    k = small_w / width
    hy = float(np.clip(horizon * k, small_h * 0.15, small_h * 0.85))
    small = np.empty((small_h, small_w, 3), np.float32)
    canvas = _Canvas(small)
    ys = np.arange(small_h, dtype=np.float32)[:, None, None]
    if outdoor:
        _lot(rng, canvas, ys, hy)
    else:
        _showroom(rng, canvas, ys, hy)
    blur = rng.uniform(0.6, 1.6)
    small = cv2.GaussianBlur(canvas.rgb, (0, 0), blur)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    # Fine grain (tarmac, floor texture) only exists at full size.
    grain = _pixel_noise(rng, (height, width), rng.uniform(1.5, 4.0))
    image += grain[..., None]
    return image


def _showroom(rng: np.random.Generator, canvas: _Canvas, ys: np.ndarray, hy: float) -> None:
    """Bright wall with ceiling lights and windows over a glossy tiled floor."""
    img = canvas.rgb
    h, w = img.shape[:2]
    wall = _pick_colour(rng, ((232, 234, 236), (214, 222, 230), (198, 200, 206), (222, 226, 226), (180, 186, 192)), 8)
    floor = _pick_colour(rng, ((200, 202, 204), (170, 176, 182), (150, 150, 152), (214, 214, 210), (120, 124, 130)), 8)
    t_wall = ys / max(hy, 1.0)
    img[:] = wall * (0.78 + 0.22 * t_wall)
    below = ys >= hy
    t_floor = np.clip((ys - hy) / max(h - hy, 1.0), 0.0, 1.0)
    img[:] = np.where(below, floor * (0.92 + 0.14 * t_floor), img)
    # Glass wall to the outside, with mullions.
    if rng.random() < 0.6:
        x0 = rng.uniform(-0.2, 0.5) * w
        x1 = x0 + rng.uniform(0.4, 1.0) * w
        top = hy * rng.uniform(0.15, 0.35)
        outside = _pick_colour(rng, ((236, 226, 210), (220, 214, 205), (200, 215, 205)), 10)
        pane = np.array([[x0, top], [x1, top], [x1, hy - 1], [x0, hy - 1]], np.float32)
        canvas.paint(pane, _vgrad(top, hy, tuple(outside * 1.05), tuple(outside * 0.8)))
        trees = [(x, hy - rng.uniform(0.05, 0.25) * hy) for x in np.linspace(x0, x1, 9)]
        canvas.paint(np.array([(x0, hy), *trees, (x1, hy)], np.float32), (60, 110, 80), opacity=0.5)
        for x in np.arange(x0, x1, rng.uniform(0.1, 0.25) * w):
            canvas.paint(
                np.array([[x, top], [x, hy]], np.float32), (70, 70, 74), thickness=max(w / 200, 1), closed=False
            )
    # Pillars and panels.
    for _ in range(int(rng.integers(0, 3))):
        x = rng.uniform(0, w)
        pw = rng.uniform(0.03, 0.1) * w
        colour = tuple(wall * rng.uniform(0.75, 1.05))
        canvas.paint(np.array([[x, 0], [x + pw, 0], [x + pw, hy], [x, hy]], np.float32), colour)
    # Skirting board.
    canvas.paint(np.array([[0, hy - 1.5], [w, hy - 1.5], [w, hy], [0, hy]], np.float32), tuple(wall * 0.45))
    # Ceiling lights and their reflections on the floor.
    for x in np.linspace(0, w, int(rng.integers(3, 7))) + rng.uniform(-0.1, 0.1) * w:
        y = rng.uniform(0.02, 0.12) * h
        lamp = cv2.ellipse2Poly((int(x), int(y)), (max(int(0.04 * w), 2), max(int(0.012 * h), 1)), 0, 0, 360, 10)
        found = canvas.coverage(lamp.astype(np.float32), feather=1.5)
        if found:
            canvas.blend(found[0], found[1], (255, 255, 255))
        streak = np.array([[x - 0.015 * w, hy + 2], [x + 0.015 * w, hy + 2], [x + 0.03 * w, h], [x - 0.03 * w, h]])
        canvas.paint(streak.astype(np.float32), (250, 250, 250), opacity=0.18, feather=3)
    # Floor tile joints in perspective.
    vx = rng.uniform(0.3, 0.7) * w
    for x in np.linspace(-1.5 * w, 2.5 * w, 15):
        canvas.paint(
            np.array([[vx, hy], [x, h]], np.float32), tuple(floor * 0.8), thickness=1, closed=False, opacity=0.5
        )
    y = hy + 2.0
    while y < h:
        canvas.paint(np.array([[0, y], [w, y]], np.float32), tuple(floor * 0.8), thickness=1, closed=False, opacity=0.5)
        y = hy + (y - hy) * 1.6 + 2


def _lot(rng: np.random.Generator, canvas: _Canvas, ys: np.ndarray, hy: float) -> None:
    """Sky, buildings and trees on the horizon, tarmac with parking lines."""
    img = canvas.rgb
    h, w = img.shape[:2]
    overcast = rng.random() < 0.35
    zenith = np.array((205, 200, 196) if overcast else (205, 150, 95), np.float32) + rng.uniform(-10, 10, 3)
    haze = np.array((228, 226, 224) if overcast else (238, 222, 204), np.float32) + rng.uniform(-8, 8, 3)
    t = np.clip(ys / max(hy, 1.0), 0.0, 1.0)
    img[:] = zenith + (haze - zenith) * t
    clouds = _smooth_noise(rng, w, h, 6)
    img += np.clip(clouds, 0, 1)[..., None] * 35.0  # the ground below replaces it
    tarmac = np.array(rng.uniform(85, 130), np.float32) * np.array((1.0, 1.0, 1.03), np.float32)
    t_ground = np.clip((ys - hy) / max(h - hy, 1.0), 0.0, 1.0)
    ground = tarmac * (1.1 - 0.2 * t_ground) + 10.0 * _smooth_noise(rng, w, h, 12)[..., None]
    img[:] = np.where(ys >= hy, ground, img)
    # Skyline: buildings, then trees in front.
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        bw = rng.uniform(0.05, 0.2) * w
        bh = rng.uniform(0.05, 0.35) * hy
        colour = _pick_colour(rng, ((200, 200, 200), (170, 180, 190), (150, 160, 170), (215, 210, 200)), 12)
        canvas.paint(np.array([[x, hy - bh], [x + bw, hy - bh], [x + bw, hy], [x, hy]], np.float32), tuple(colour))
        x += bw * rng.uniform(0.9, 1.6)
    tree = np.array((rng.uniform(40, 70), rng.uniform(85, 120), rng.uniform(55, 80)), np.float32)
    xs_tree = np.linspace(0, w, 24)
    tops = hy - rng.uniform(0.03, 0.16, len(xs_tree)) * hy
    canvas.paint(np.array([(0, hy), *zip(xs_tree, tops, strict=True), (w, hy)], np.float32), tuple(tree))
    # Parking bay lines towards a vanishing point.
    vx = rng.uniform(0.2, 0.8) * w
    for x_bottom in np.arange(-2 * w, 3 * w, rng.uniform(0.35, 0.6) * w):
        line = np.array([[vx + (x_bottom - vx) * 0.1, hy + (h - hy) * 0.1], [x_bottom, h]], np.float32)
        canvas.paint(line, (225, 228, 230), thickness=max(w / 250, 1), closed=False, opacity=0.8)


# --------------------------------------------------------------------------------------------------
# The car
# --------------------------------------------------------------------------------------------------


@dataclass
class _CarGeometry:
    """Where the car and its plate are, in final image pixels; shapes in car widths above the ground."""

    cx: float
    ground: float
    width: float
    roof: float  # body height
    belt: float  # top of the front/rear face
    shoulder: float  # bottom of the windscreen / rear window
    cabin_bottom: float  # cabin width at the shoulder
    cabin_top: float  # cabin width at the roof
    plate_v: float  # plate centre height
    plate_quad: np.ndarray
    view: str
    colour: np.ndarray


def _car_geometry(rng: np.random.Generator, width: int, height: int, view: str) -> _CarGeometry:
    """Random body proportions and placement, and the plate's corners in the final image."""
    body = ("sedan", "suv", "kei")[int(rng.integers(3))]
    if body == "sedan":
        roof, belt = rng.uniform(0.78, 0.86), rng.uniform(0.43, 0.48)
        shoulder = belt + rng.uniform(0.06, 0.1)
        cabin_bottom, cabin_top = rng.uniform(0.8, 0.86), rng.uniform(0.6, 0.68)
    elif body == "suv":
        roof, belt = rng.uniform(0.9, 1.0), rng.uniform(0.52, 0.58)
        shoulder = belt + rng.uniform(0.05, 0.09)
        cabin_bottom, cabin_top = rng.uniform(0.84, 0.9), rng.uniform(0.7, 0.78)
    else:
        roof, belt = rng.uniform(1.0, 1.1), rng.uniform(0.45, 0.52)
        shoulder = belt + rng.uniform(0.04, 0.07)
        cabin_bottom, cabin_top = rng.uniform(0.86, 0.92), rng.uniform(0.78, 0.86)
    # Car width: 40–78 % of the photo, but the whole car must fit in the frame.
    fraction = rng.uniform(0.40, 0.78)
    car_w = min(fraction * width, 0.86 * height / (roof + 0.06), 0.9 * width)
    margin_x = (width - 1.1 * car_w) / 2
    cx = width / 2 + rng.uniform(-0.7, 0.7) * max(margin_x, 0.0)
    low = roof * car_w + 0.04 * height
    ground = rng.uniform(max(low, 0.62 * height), max(low, 0.95 * height - 0.02 * car_w))
    ground = min(ground, 0.985 * height)

    colours = tuple(c for c, _ in _BODY_COLOURS)
    weights = np.array([n for _, n in _BODY_COLOURS], np.float64)
    colour = np.array(colours[int(rng.choice(len(colours), p=weights / weights.sum()))], np.float32)
    colour = np.clip(colour + rng.uniform(-6, 6, 3), 0, 255).astype(np.float32)

    # Front plates sit low on the bumper, rear plates higher up on the tailgate.
    plate_v = rng.uniform(0.17, 0.22) if view == "front" else rng.uniform(0.26, min(0.33, belt - 0.14))
    # Japanese plates are 330 mm on a 1.5–1.85 m wide car.
    plate_w = car_w * rng.uniform(0.16, 0.21)
    plate_h = plate_w / 2 * rng.uniform(0.9, 1.0)  # the bumper face leans back a little
    centre = np.array([cx + rng.uniform(-0.01, 0.01) * car_w, ground - plate_v * car_w], np.float32)
    roll = np.radians(rng.uniform(-1.5, 1.5))
    yaw = rng.uniform(-0.05, 0.05)  # one side a bit nearer than the other
    corners = np.array(
        [
            [-plate_w / 2, -plate_h / 2 * (1 - yaw)],
            [plate_w / 2, -plate_h / 2 * (1 + yaw)],
            [plate_w / 2, plate_h / 2 * (1 + yaw)],
            [-plate_w / 2, plate_h / 2 * (1 - yaw)],
        ],
        np.float32,
    )
    rotation = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]], np.float32)
    quad = (corners @ rotation.T + centre).astype(np.float32)
    return _CarGeometry(
        cx=cx,
        ground=ground,
        width=car_w,
        roof=roof,
        belt=belt,
        shoulder=shoulder,
        cabin_bottom=cabin_bottom,
        cabin_top=cabin_top,
        plate_v=plate_v,
        plate_quad=quad,
        view=view,
        colour=colour,
    )


class _CarFrame:
    """The car's own drawing layer and its coordinates: (across, up) in car widths from the ground centre."""

    def __init__(self, image_shape: tuple[int, ...], car: _CarGeometry, scale: float) -> None:
        h, w = image_shape[:2]
        self.cw = car.width * scale
        self.cx, self.gy = car.cx * scale, car.ground * scale
        self.x0, self.x1 = int(max(self.cx - 0.6 * self.cw, 0)), int(min(self.cx + 0.6 * self.cw, w))
        self.y0, self.y1 = int(max(self.gy - (car.roof + 0.05) * self.cw, 0)), int(min(self.gy + 0.03 * self.cw, h))
        height, width = self.y1 - self.y0, self.x1 - self.x0
        self.layer = _Canvas(np.zeros((height, width, 3), np.float32), np.zeros((height, width), np.float32))

    def at(self, *uv: tuple[float, float]) -> np.ndarray:
        """Layer pixels of points given in car coordinates."""
        pts = np.array(uv, np.float32)
        return np.stack([self.cx + pts[:, 0] * self.cw - self.x0, self.gy - pts[:, 1] * self.cw - self.y0], axis=1)

    def sym(self, points: list[tuple[float, float]]) -> list[np.ndarray]:
        """A shape on the right of the car and its mirror image on the left."""
        return [self.at(*points), self.at(*[(-u, v) for u, v in points])]

    def ellipse(self, u: float, v: float, ru: float, rv: float) -> np.ndarray:
        """Layer polygon of an ellipse centred at (u, v) with radii in car widths."""
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return self.at(*[(u + ru * np.cos(a), v + rv * np.sin(a)) for a in angles])

    def line(self, width: float) -> float:
        """Stroke thickness in layer pixels for a line ``width`` car widths thick (at least one pixel)."""
        return max(width * self.cw, 1.0)


def _draw_car(rng: np.random.Generator, image: np.ndarray, car: _CarGeometry, scale: float, reflect: bool) -> None:
    """Draw the car, its shadow and (on a glossy floor) its reflection into ``image`` in place."""
    frame = _CarFrame(image.shape, car, scale)
    offset = np.float32([frame.x0, frame.y0])
    # Ground shadow first, on the background.
    background = _Canvas(image)
    found = background.coverage(frame.ellipse(0.0, 0.012, 0.56, 0.035) + offset, feather=0.02 * frame.cw)
    if found:
        background.shade(found[0], found[1], rng.uniform(0.3, 0.55))

    _draw_body(rng, frame, car)
    _draw_glass(rng, frame, car)
    if car.view == "front":
        _front(rng, frame, car)
    else:
        _rear(rng, frame, car)
    _plate_mount(rng, frame, car, car.plate_quad * np.float32(scale) - offset)
    layer = frame.layer
    gap = frame.at((-0.47, car.belt - 0.004), (0.47, car.belt - 0.004))  # panel gap under the bonnet or boot
    layer.paint(gap, (20, 20, 20), thickness=frame.line(0.0025), closed=False, opacity=0.5)

    # Composite, with a faint upside-down reflection on a glossy floor.
    x0, y0, x1, y1 = frame.x0, frame.y0, frame.x1, frame.y1
    region = image[y0:y1, x0:x1]
    alpha = layer.alpha[..., None]
    region *= 1.0 - alpha
    region += layer.rgb * alpha
    ground = int(frame.gy)
    rows = min(image.shape[0] - ground, int(0.25 * frame.cw), ground - y0)
    if reflect and rows > 2:
        top_row = ground - y0
        source = layer.rgb[top_row - rows : top_row][::-1]
        fade = np.linspace(0.22, 0.0, rows, dtype=np.float32)[:, None] * layer.alpha[top_row - rows : top_row][::-1]
        fade = cv2.GaussianBlur(fade, (0, 0), max(0.004 * frame.cw, 0.5))
        floor = image[ground : ground + rows, x0:x1]
        floor += (source - floor) * fade[..., None]


def _draw_body(rng: np.random.Generator, frame: _CarFrame, car: _CarGeometry) -> None:
    """Lower face, bonnet or boot lid, cabin and mirrors in flat paint, then shaded; tyres and underbody."""
    at, layer, colour = frame.at, frame.layer, tuple(car.colour)
    belt, shoulder, roof = car.belt, car.shoulder, car.roof
    lower = at(
        (-0.46, 0.07), (0.46, 0.07), (0.5, 0.12), (0.5, belt - 0.07),
        (0.485, belt), (-0.485, belt), (-0.5, belt - 0.07), (-0.5, 0.12),
    )  # fmt: skip
    layer.paint(_chaikin(lower, 3), colour)
    half_b, half_t = car.cabin_bottom / 2, car.cabin_top / 2
    layer.paint(
        at((-0.485, belt - 0.01), (0.485, belt - 0.01), (half_b + 0.03, shoulder), (-half_b - 0.03, shoulder)), colour
    )
    cabin = at(
        (-half_b, shoulder - 0.01), (half_b, shoulder - 0.01), (half_t, roof - 0.015),
        (half_t - 0.04, roof), (0.04 - half_t, roof), (-half_t, roof - 0.015),
    )  # fmt: skip
    layer.paint(_rounded(cabin, 0.05 * frame.cw), colour)
    mirror_colour = colour if rng.random() < 0.6 else (30.0, 30.0, 32.0)
    mirror = [(half_b - 0.01, shoulder + 0.01), (half_b + 0.08, shoulder + 0.02),
              (half_b + 0.085, shoulder + 0.07), (half_b + 0.01, shoulder + 0.075)]  # fmt: skip
    for shape in frame.sym(mirror):
        layer.paint(_chaikin(shape, 2), mirror_colour)
    _shade_body(rng, layer, car, frame.cx - frame.x0, frame.gy - frame.y0, frame.cw)

    # Tyres and the underbody show below the body, so they are painted behind it.
    for tyre in frame.sym([(0.33, 0.0), (0.46, 0.0), (0.47, 0.02), (0.47, 0.2), (0.33, 0.2), (0.32, 0.02)]):
        top, bottom = tyre[:, 1].min(), tyre[:, 1].max()
        layer.paint(_chaikin(tyre, 2), _vgrad(top, bottom, (40, 40, 42), (18, 18, 19)), behind=True)
    layer.paint(at((-0.34, 0.03), (0.34, 0.03), (0.34, 0.1), (-0.34, 0.1)), (22, 22, 24), behind=True)


def _draw_glass(rng: np.random.Generator, frame: _CarFrame, car: _CarGeometry) -> None:
    """Windscreen or rear window: dark glass reflecting the sky, light streaks, head rests behind."""
    at, layer = frame.at, frame.layer
    half_b, half_t = car.cabin_bottom / 2 - 0.035, car.cabin_top / 2 - 0.035
    bottom = car.shoulder + 0.012
    top = car.roof - (0.05 if car.view == "front" else 0.06)
    glass = at((-half_b, bottom), (half_b, bottom), (half_t, top), (-half_t, top))
    sky = rng.uniform(90, 150)
    fill = _vgrad(glass[:, 1].min(), glass[:, 1].max(), (sky, sky * 0.97, sky * 0.92), (28, 28, 30))
    layer.paint(_rounded(glass, 0.035 * frame.cw), fill)
    for _ in range(2):
        u, du = rng.uniform(-0.25, 0.2), rng.uniform(0.03, 0.09)
        streak = at((u, bottom), (u + du, bottom), (u + du + 0.12, top), (u + 0.12, top))
        layer.paint(streak, (235, 235, 235), opacity=rng.uniform(0.06, 0.16), feather=0.01 * frame.cw)
    rest = [(0.1, bottom + 0.02), (0.24, bottom + 0.02), (0.23, bottom + 0.1), (0.11, bottom + 0.1)]
    for shape in frame.sym(rest):
        layer.paint(_chaikin(shape, 3), (18, 18, 20), opacity=0.6, feather=0.006 * frame.cw)
    if car.view == "rear":  # high-mounted stop lamp
        layer.paint(
            at((-0.06, top + 0.008), (0.06, top + 0.008), (0.06, top + 0.016), (-0.06, top + 0.016)), (40, 40, 150)
        )


def _front(rng: np.random.Generator, frame: _CarFrame, car: _CarGeometry) -> None:
    """Headlights, grille and badge, lower intake, fog lamps and a bumper crease."""
    at, layer = frame.at, frame.layer
    top = car.belt - rng.uniform(0.02, 0.04)
    inner, outer = rng.uniform(0.2, 0.27), rng.uniform(0.44, 0.47)
    depth = rng.uniform(0.06, 0.1)
    slant = rng.uniform(-0.01, 0.04)
    chrome = rng.random() < 0.5
    outline = [(inner, top), (outer, top + 0.005), (outer + 0.01, top - depth * 0.6),
               (inner + 0.04, top - depth - slant), (inner, top - depth + 0.01)]  # fmt: skip
    for side, shape in zip((1, -1), frame.sym(outline), strict=True):
        lamp = _chaikin(shape, 2)
        layer.paint(lamp, _vgrad(lamp[:, 1].min(), lamp[:, 1].max(), (70, 72, 76), (150, 152, 156)))
        layer.paint(lamp, (15, 15, 15), thickness=frame.line(0.004))
        u = side * (inner + outer) / 2
        for du in (-0.05, 0.03):  # projector lenses
            r = depth * 0.3
            v = top - depth * 0.45
            layer.paint(frame.ellipse(u + side * du, v, r, r), (40, 40, 44))
            layer.paint(frame.ellipse(u + side * du, v, r * 0.7, r * 0.7), (215, 218, 222))
            glint = frame.ellipse(u + side * du - 0.2 * r, v + 0.2 * r, r * 0.3, r * 0.3)
            layer.paint(glint, (255, 255, 255), feather=0.2 * r * frame.cw)
        drl = at((side * (inner + 0.02), top - depth + 0.012), (side * outer, top - depth * 0.55))
        layer.paint(drl, (250, 250, 255), thickness=frame.line(0.006), closed=False)

    # Grille between the lamps, dark with horizontal slats, badge in the middle.
    g_half = inner - rng.uniform(0.01, 0.03)
    g_top, g_bottom = top - 0.005, top - depth - rng.uniform(0.02, 0.06)
    grille = _chaikin(at((-g_half, g_top), (g_half, g_top), (g_half - 0.02, g_bottom), (0.02 - g_half, g_bottom)), 2)
    layer.paint(grille, (24, 24, 26))
    slat = (95.0, 96.0, 100.0) if chrome else (48.0, 48.0, 50.0)
    for v in np.arange(g_bottom + 0.012, g_top - 0.005, 0.016):
        layer.paint(at((0.03 - g_half, v), (g_half - 0.03, v)), slat, thickness=frame.line(0.004), closed=False)
    if chrome:
        layer.paint(grille, (200, 202, 206), thickness=frame.line(0.006))
    layer.paint(frame.ellipse(0.0, (g_top + g_bottom) / 2, 0.035, 0.023), (205, 208, 212))
    layer.paint(frame.ellipse(0.0, (g_top + g_bottom) / 2, 0.026, 0.017), (120, 122, 126))

    # Lower intake and fog lamps below the plate, and a crease across the bumper.
    layer.paint(_chaikin(at((-0.3, 0.125), (0.3, 0.125), (0.27, 0.085), (-0.27, 0.085)), 2), (22, 22, 24))
    for v in (0.095, 0.105, 0.115):
        layer.paint(at((-0.27, v), (0.27, v)), (45, 45, 48), thickness=1, closed=False)
    for u in (-0.39, 0.39):
        layer.paint(frame.ellipse(u, 0.115, 0.032, 0.017), (28, 28, 30))
        layer.paint(frame.ellipse(u, 0.115, 0.02, 0.01), (190, 192, 196))
    crease = at(*[(u, 0.27 + 0.015 * (u / 0.45) ** 2) for u in np.linspace(-0.45, 0.45, 12)])
    layer.paint(crease, tuple(car.colour * 0.6), thickness=frame.line(0.003), closed=False, opacity=0.6)


def _rear(rng: np.random.Generator, frame: _CarFrame, car: _CarGeometry) -> None:
    """Tail lights, garnish, badge, bumper crease and valance, reflectors and exhaust."""
    at, layer = frame.at, frame.layer
    top = car.belt + rng.uniform(-0.02, 0.03)
    inner = rng.uniform(0.26, 0.34)
    depth = rng.uniform(0.08, 0.13)
    outline = [(inner, top), (0.485, top + 0.01), (0.495, top - depth), (inner + 0.02, top - depth * 0.7)]
    for side, shape in zip((1, -1), frame.sym(outline), strict=True):
        lamp = _chaikin(shape, 2)
        layer.paint(lamp, _vgrad(lamp[:, 1].min(), lamp[:, 1].max(), (40, 40, 185), (20, 20, 120)))
        layer.paint(lamp, (15, 15, 25), thickness=frame.line(0.004))
        u = side * (inner + 0.49) / 2
        layer.paint(frame.ellipse(u, top - depth * 0.45, 0.05, 0.03), (90, 90, 235), thickness=frame.line(0.005))
        a, b = side * (inner + 0.02), side * (inner + 0.07)
        reverse = at((a, top - depth * 0.55), (b, top - depth * 0.55), (b, top - depth * 0.75), (a, top - depth * 0.75))
        layer.paint(reverse, (225, 225, 228))
    if rng.random() < 0.6:  # garnish strip between the lamps
        low, high = top - depth * 0.45, top - depth * 0.3
        strip = at((-inner, high), (inner, high), (inner, low), (-inner, low))
        layer.paint(strip, (205, 208, 212) if rng.random() < 0.5 else (30, 30, 32))
    layer.paint(frame.ellipse(0.0, min(car.plate_v + 0.1, top - depth * 0.6), 0.03, 0.02), (205, 208, 212))
    crease = at(*[(u, 0.2 - 0.01 * (u / 0.45) ** 2) for u in np.linspace(-0.47, 0.47, 12)])
    layer.paint(crease, tuple(car.colour * 0.55), thickness=frame.line(0.004), closed=False, opacity=0.7)
    layer.paint(_chaikin(at((-0.44, 0.07), (0.44, 0.07), (0.45, 0.11), (-0.45, 0.11)), 2), (30, 30, 32))
    for reflector in frame.sym([(0.38, 0.13), (0.45, 0.13), (0.45, 0.15), (0.38, 0.15)]):
        layer.paint(reflector, (30, 30, 140))
    layer.paint(frame.ellipse(0.3, 0.065, 0.03, 0.018), (150, 150, 152))  # exhaust tip
    layer.paint(frame.ellipse(0.3, 0.065, 0.022, 0.013), (15, 15, 15))


def _plate_mount(rng: np.random.Generator, frame: _CarFrame, car: _CarGeometry, plate: np.ndarray) -> None:
    """The recess or bracket the plate is screwed onto, around the plate's quad (layer pixels)."""
    layer, cw = frame.layer, frame.cw
    centre = plate.mean(axis=0)
    across = (plate[1] - plate[0] + plate[2] - plate[3]) / 2  # the plate's width and height vectors
    down = (plate[3] - plate[0] + plate[2] - plate[1]) / 2

    def grown(sx: float, sy: float, lift: float = 0.0) -> np.ndarray:
        """The plate's quad scaled about its centre (and moved up by ``lift`` plate heights)."""
        signs = ((-sx, -sy), (sx, -sy), (sx, sy), (-sx, sy))
        return np.stack([centre + a * across / 2 + d * down / 2 - lift * down for a, d in signs]).astype(np.float32)

    if car.view == "rear":
        found = layer.coverage(_rounded(grown(1.4, 1.45, 0.08), 0.15 * float(np.hypot(*down))), feather=0.004 * cw)
        if found:
            layer.shade(found[0], found[1], 0.85)
    elif rng.random() < 0.6:
        layer.paint(_chaikin(grown(1.1, 1.14), 2), (26, 26, 28))
    # Dark edge right around the plate, so the plate never blends into a white bumper.
    layer.paint(grown(1.025, 1.05), tuple(car.colour * 0.35), opacity=0.8, feather=0.002 * cw)


def _shade_body(rng: np.random.Generator, layer: _Canvas, car: _CarGeometry, cx: float, gy: float, cw: float) -> None:
    """Light the flat-coloured body: darker low down and at the sides, sky on the bonnet, a shoulder highlight."""
    h, w = layer.alpha.shape
    v = (gy - np.arange(h, dtype=np.float32)) / cw  # height above ground, car widths
    u = (np.arange(w, dtype=np.float32) - cx) / cw
    brightness = float(car.colour.mean()) / 255.0
    dark = brightness < 0.35
    # Light paint would burn out under the same boosts that make dark paint look glossy.
    top = 1.0 - 0.12 * brightness
    low = np.clip((v - 0.05) / max(car.belt - 0.05, 0.1), 0.0, 1.0)
    diffuse = top * (0.62 + 0.38 * low * low * (3 - 2 * low))
    bonnet = np.clip(1.0 - np.abs(v - (car.belt + car.shoulder) / 2) / ((car.shoulder - car.belt) / 2 + 0.02), 0, 1)
    bonnet = bonnet * bonnet * (3 - 2 * bonnet)
    diffuse += (0.03 + 0.1 * (1.0 - brightness)) * bonnet
    horizon = car.belt * rng.uniform(0.45, 0.75)  # where the ground's reflection starts on glossy paint
    diffuse *= 1.0 - rng.uniform(0.05, 0.15) * np.clip((horizon - v) / 0.03, 0, 1)
    sides = 1.0 - 0.35 * np.clip((np.abs(u) - 0.36) / 0.14, 0, 1) ** 2
    reflect = (rng.uniform(45, 90) if dark else rng.uniform(8, 25) * (1.0 - 0.6 * brightness)) * bonnet
    highlight = np.exp(-(((v - (car.belt - 0.025)) / 0.012) ** 2)) * (rng.uniform(40, 90) if dark else 18)
    roof_sheen = np.exp(-(((v - car.roof + 0.01) / 0.01) ** 2)) * (30 if dark else 10)
    factor = (diffuse[:, None] * sides[None, :])[..., None]
    add = (reflect + highlight + roof_sheen)[:, None, None] * (0.6 + 0.4 * sides[None, :, None])
    layer.rgb[:] = (layer.rgb * factor + add * layer.alpha[..., None]).clip(0, 255)


# --------------------------------------------------------------------------------------------------
# The plate in the photo
# --------------------------------------------------------------------------------------------------


def _paste_plate(
    rng: np.random.Generator,
    image: np.ndarray,
    car: _CarGeometry,
    text: tuple[str, str, str, str],
    style: str,
    tone: _Tone,
    scale: float,
) -> None:
    """Warp a freshly rendered plate onto its quad at full size and finish it like the rest of the photo."""
    h, w = image.shape[:2]
    quad = car.plate_quad
    plate_w = float(np.linalg.norm(quad[1] - quad[0]))
    render_w = int(np.clip(round(plate_w * 1.5), 40, 1600))
    region, class_number, hiragana, number = text
    plate, alpha = _plate_layers(region, class_number, hiragana, number, style, render_w, seal=car.view == "rear")
    ph = plate.shape[0]
    # Light on the plate: brightness of the bumper there, a left–right gradient, a soft top shadow at the rear.
    light = rng.uniform(0.82, 1.02) * np.linspace(1 - 0.06, 1 + 0.06, render_w, dtype=np.float32)[None, :]
    if rng.random() < 0.5:
        light = light[:, ::-1]
    if car.view == "rear":
        light = light * (1.0 - 0.12 * np.exp(-np.arange(ph, dtype=np.float32) / (0.15 * ph)))[:, None]
    else:
        light = np.broadcast_to(light, (ph, render_w))
    plate = plate * light[..., None]
    dirt = _smooth_noise(rng, render_w, ph, 5)
    plate *= (1.0 - 0.05 * np.abs(dirt))[..., None]
    plate = tone.finish_patch(plate, quad.mean(axis=0) / (w, h))

    x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 4
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    source = np.array([[0, 0], [render_w, 0], [render_w, ph], [0, ph]], np.float32)
    matrix = cv2.getPerspectiveTransform(source, (quad - np.float32([x0, y0])).astype(np.float32))
    size = (x1 - x0, y1 - y0)
    # The plate was rendered 1.5× larger than it appears; linear sampling is enough given the blur below.
    warped = cv2.warpPerspective(plate, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cover = cv2.warpPerspective(alpha, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    region = image[y0:y1, x0:x1].astype(np.float32)
    noise = _pixel_noise(rng, region.shape[:2], tone.noise)
    warped += noise[..., None]
    region += (warped - region) * cover[..., None]
    # The scene was blurred (and maybe upscaled): match the plate's sharpness to it.
    sigma = tone.blur / scale * 0.8 + 0.25
    region = cv2.GaussianBlur(region, (0, 0), sigma)
    image[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Camera finish
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tone:
    """One photo's exposure, white balance, vignetting, contrast curve, blur and noise."""

    gains: np.ndarray  # BGR multipliers
    vignette: float
    lut: np.ndarray
    blur: float  # Gaussian sigma in working pixels
    noise: float  # sensor noise sigma, 0–255 scale

    @classmethod
    def draw(cls, rng: np.random.Generator, scale: float) -> _Tone:
        """Random camera settings for one photo."""
        exposure = rng.uniform(0.8, 1.12)
        balance = 1.0 + rng.uniform(-0.06, 0.06, 3)
        contrast = rng.uniform(0.0, 0.35)
        gamma = rng.uniform(0.85, 1.15)
        x = np.linspace(0.0, 1.0, 256)
        curve = x**gamma
        curve = curve + contrast * (curve - curve**2) * (2 * curve - 1) * 2  # gentle S-curve
        lut = np.clip(curve * 255 + 0.5, 0, 255).astype(np.uint8)
        return cls(
            gains=(exposure * balance).astype(np.float32),
            vignette=float(rng.uniform(0.05, 0.3)),
            lut=lut,
            blur=float(rng.uniform(0.3, 1.0) * max(scale, 0.5)),
            noise=float(rng.uniform(1.0, 4.0)),
        )

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Finish a float32 working image into uint8: light, blur, noise, curve."""
        h, w = image.shape[:2]
        fy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        fx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        falloff = (1.0 - self.vignette * 2.0 * (fy - 0.5) ** 2) * (1.0 - self.vignette * 2.0 * (fx - 0.5) ** 2)
        # One OpenCV multiply by a 3-channel map is several times faster than numpy broadcasting here.
        image = cv2.multiply(image, cv2.merge([falloff * np.float32(g) for g in self.gains]))
        if self.blur > 0.3:
            image = cv2.GaussianBlur(image, (0, 0), self.blur)
        luma = _pixel_noise(rng, (h, w), self.noise)
        image += luma[..., None]
        chroma = _pixel_noise(rng, (max(h // 4, 1), max(w // 4, 1), 3), self.noise)
        image += cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR)
        np.clip(image, 0, 255, out=image)
        return cv2.LUT(image.astype(np.uint8), self.lut)

    def finish_patch(self, patch: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Give a float32 patch at a fractional image position the same light and curve (no noise)."""
        fx, fy = float(centre[0]), float(centre[1])
        factor = (1.0 - self.vignette * 2.0 * (fy - 0.5) ** 2) * (1.0 - self.vignette * 2.0 * (fx - 0.5) ** 2)
        out = np.clip(patch * (self.gains * np.float32(factor)), 0, 255).astype(np.uint8)
        return cv2.LUT(out, self.lut).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Car-less scenes
# --------------------------------------------------------------------------------------------------


def _interior(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Driver's view of a dashboard: bright windscreen, dash, instruments, steering wheel."""
    horizon = height * rng.uniform(0.2, 0.35)
    image = _background(rng, width, height, horizon, outdoor=True) * np.float32(1.15)
    canvas = _Canvas(image)
    trim = _pick_colour(rng, ((40, 40, 42), (60, 62, 66), (120, 140, 160), (30, 30, 30)), 8)
    dash_top = height * rng.uniform(0.38, 0.5)
    xs = np.linspace(-0.05, 1.05, 20) * width
    edge = dash_top - np.sin(np.linspace(0, np.pi, 20)) * height * rng.uniform(0.0, 0.06)
    dash = np.array([*zip(xs, edge, strict=True), (width * 1.05, height * 1.05), (-0.05 * width, height * 1.05)])
    canvas.paint(dash.astype(np.float32), _vgrad(dash_top, height, tuple(trim * 1.3), tuple(trim * 0.6)))
    for side in (0, 1):  # A-pillars
        x = 0 if side == 0 else width
        d = width * rng.uniform(0.08, 0.16) * (1 if side == 0 else -1)
        canvas.paint(
            np.array([[x, 0], [x + d * 0.4, 0], [x + d, dash_top], [x, dash_top]], np.float32), tuple(trim * 0.8)
        )
    # Instrument cluster and gauges (rings and ticks, no figures).
    wheel_x = width * rng.uniform(0.25, 0.45)
    wheel_y = height * rng.uniform(0.75, 0.95)
    radius = min(width, height) * rng.uniform(0.3, 0.42)
    cluster = _round_rect(
        wheel_x - radius * 0.8,
        dash_top + height * 0.04,
        wheel_x + radius * 0.8,
        dash_top + height * 0.22,
        radius * 0.15,
    )
    canvas.paint(cluster, (14, 14, 16))
    for gx in (wheel_x - radius * 0.4, wheel_x + radius * 0.4):
        gy = dash_top + height * 0.13
        gr = height * 0.065
        ring = cv2.ellipse2Poly((int(gx), int(gy)), (int(gr), int(gr)), 0, 0, 360, 8).astype(np.float32)
        canvas.paint(ring, (200, 200, 205), thickness=max(width / 400, 1))
        for angle in np.radians(np.arange(-225, 46, 27)):
            tick = np.array(
                [
                    [gx + gr * 0.8 * np.cos(angle), gy + gr * 0.8 * np.sin(angle)],
                    [gx + gr * 0.95 * np.cos(angle), gy + gr * 0.95 * np.sin(angle)],
                ],
                np.float32,
            )
            canvas.paint(tick, (210, 210, 215), thickness=max(width / 600, 1), closed=False)
        angle = np.radians(rng.uniform(-200, -60))
        needle = np.array([[gx, gy], [gx + gr * 0.85 * np.cos(angle), gy + gr * 0.85 * np.sin(angle)]], np.float32)
        canvas.paint(needle, (40, 60, 230), thickness=max(width / 500, 1), closed=False)
    # Centre stack: screen and vents.
    sx = width * rng.uniform(0.6, 0.72)
    screen = _round_rect(sx, dash_top + height * 0.05, sx + width * 0.18, dash_top + height * 0.17, width * 0.01)
    canvas.paint(screen, _vgrad(dash_top, dash_top + height * 0.17, (60, 55, 50), (10, 10, 12)))
    for vy in np.linspace(dash_top + height * 0.22, dash_top + height * 0.28, 5):
        canvas.paint(
            np.array([[sx, vy], [sx + width * 0.18, vy]], np.float32),
            (20, 20, 22),
            thickness=max(height / 250, 1),
            closed=False,
        )
    # Steering wheel: rim, spokes, hub.
    rim = cv2.ellipse2Poly((int(wheel_x), int(wheel_y)), (int(radius), int(radius * 0.95)), 0, 0, 360, 4)
    canvas.paint(rim.astype(np.float32), (26, 26, 28), thickness=radius * 0.16)
    for angle in np.radians((0.0, 180.0, 90.0)):
        spoke = np.array([[wheel_x, wheel_y], [wheel_x + radius * np.cos(angle), wheel_y + radius * np.sin(angle)]])
        canvas.paint(spoke.astype(np.float32), (34, 34, 36), thickness=radius * 0.14, closed=False)
    hub = cv2.ellipse2Poly((int(wheel_x), int(wheel_y)), (int(radius * 0.3), int(radius * 0.26)), 0, 0, 360, 8)
    canvas.paint(hub.astype(np.float32), (38, 38, 40))
    badge = cv2.ellipse2Poly((int(wheel_x), int(wheel_y)), (int(radius * 0.06), int(radius * 0.04)), 0, 0, 360, 12)
    canvas.paint(badge.astype(np.float32), (190, 192, 196))
    return canvas.rgb


def _wheel_closeup(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Close-up of an alloy wheel in its arch, body panel above and ground below."""
    image = _background(rng, width, height, height * rng.uniform(0.6, 0.8), outdoor=bool(rng.random() < 0.5))
    canvas = _Canvas(image)
    colour = np.array(_BODY_COLOURS[int(rng.integers(len(_BODY_COLOURS)))][0], np.float32)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.5, 0.62)
    radius = min(width, height) * rng.uniform(0.3, 0.4)
    panel = np.array([[0, 0], [width, 0], [width, cy + radius * 0.4], [0, cy + radius * 0.4]], np.float32)
    canvas.paint(panel, _vgrad(0, cy + radius * 0.4, tuple(colour * 1.1), tuple(colour * 0.6)))

    def circle(r: float) -> np.ndarray:
        return cv2.ellipse2Poly((int(cx), int(cy)), (int(r), int(r)), 0, 0, 360, 4).astype(np.float32)

    canvas.paint(circle(radius * 1.12), (12, 12, 13))  # arch
    canvas.paint(circle(radius), _vgrad(cy - radius, cy + radius, (48, 48, 50), (22, 22, 24)))  # tyre
    canvas.paint(circle(radius * 0.68), (210, 212, 215))  # rim
    canvas.paint(circle(radius * 0.6), (70, 70, 74))  # brake disc behind the spokes
    spokes = int(rng.integers(5, 11))
    for k in range(spokes):
        angle = 2 * np.pi * k / spokes + rng.uniform(0, 0.1)
        spoke = np.array([[cx, cy], [cx + radius * 0.62 * np.cos(angle), cy + radius * 0.62 * np.sin(angle)]])
        canvas.paint(spoke.astype(np.float32), (200, 202, 206), thickness=radius * 0.12, closed=False)
    canvas.paint(circle(radius * 0.16), (180, 182, 186))
    canvas.paint(circle(radius * 0.07), (60, 60, 64))
    return canvas.rgb
