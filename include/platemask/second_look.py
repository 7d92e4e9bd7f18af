"""The second look (``PLATEMASK_SECOND_LOOK``): an independent opinion on plates the model missed.

No plate model finds every plate, and a plate left readable is the worst failure there is. A
text detector (PaddleOCR's PP-OCRv4 ``det``, Apache-2.0, shipped in the ``rapidocr-onnxruntime``
wheel) marks every place where characters are; on real photos every plate the model missed was
such a place. Alone it cannot mask (signs, badges and stickers are text too), so:

1. text regions that the plate masks do not already cover, and that are shaped like a plate's
   characters, become *candidates*;
2. each candidate gets a closer look by the plate model: a crop around it, enlarged so that a
   plate there is a comfortable size for the model; up to four crops share one inference (a
   mosaic of 320-px tiles, 1 × 2 or 2 × 2). A plate found there at ``PLATEMASK_CONF`` is masked
   like any other (``closer_look``), never larger than twice the plate the text could be;
3. a candidate the closer look only half-believes (a weak detection) stays *unconfirmed*; one
   it does not see at all is read by the bundled recogniser (PP-OCRv4 ``rec``) and stays
   unconfirmed when its characters read like a plate (:func:`looks_like_plate_text`). The mode
   decides what happens to unconfirmed candidates: ``mask`` hides them (fail-closed, the
   default), ``review`` only lists them; ``off`` skips the whole second look. Anything else (a
   shop sign, a badge) is left alone.

The cost is the text detector on every photo (about 40 ms at 640 px on a 2-core CPU), one model
pass per four candidates and a few milliseconds per reading, only where there are candidates.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from platemask.config import SecondLookOptions
from platemask.detect import Detection, PlateDetector
from platemask.errors import ModelError
from platemask.render import mask_area
from platemask.runtime import BackgroundLoad, cached_file, compile_openvino
from platemask.storage import atomic_write

__all__ = [
    "Look",
    "SecondLook",
    "TextDetector",
    "TextReader",
    "TextRegion",
    "get_second_look",
    "looks_like_plate_text",
    "looks_like_words",
    "plate_around",
    "text_model_path",
]

_TILE = 320  # side of one crop in the closer look's mosaic (at most 640 × 640)
_GRID = 2
_PAD_VALUE = 114
#: A plate around its text region is this much wider and taller (plate_around).
PLATE_PER_TEXT = (1.6, 2.8)
#: A second-look mask is at most this many times a plate's width and height (area: its square).
MAX_GROWTH = 2.0
_LOOKS: dict[SecondLookOptions, SecondLook] = {}
_LOOKS_LOCK = threading.Lock()


@dataclass(frozen=True)
class TextRegion:
    """Where the text detector sees characters: a rotated quadrilateral and its upright box."""

    quad: np.ndarray  # (4, 2) float32, photo pixels
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The smallest upright box around the quadrilateral."""
        x1, y1 = self.quad.min(axis=0)
        x2, y2 = self.quad.max(axis=0)
        return float(x1), float(y1), float(x2), float(y2)


#: What the closer look crops: a box, and the crop's side as a multiple of the box's width.
Window = tuple[tuple[float, float, float, float], float]


@dataclass
class Look:
    """What the second look adds to one photo's plates."""

    masks: list[Detection] = field(default_factory=list)  # to hide, beside the model's own
    unmasked: list[Detection] = field(default_factory=list)  # unconfirmed candidates left visible (review mode)


#: Characters a plate line is made of: Latin capitals, digits, kana and kanji (Japanese region names).
_PLATE_CHAR = re.compile(r"[A-Z0-9\u3040-\u30ff\u4e00-\u9fff]")
_SEPARATORS = re.compile(r"[\s\-·・.:]")


def looks_like_plate_text(text: str) -> bool:
    """Whether recognised characters read like a plate line: ``品川330``, ``さ12-34``, ``WXD 1620``.

    Four to nine capitals, digits or Japanese characters once separators are dropped, with
    digits in them; words (``FORD``, ``SALE``), lower-case text, prices and phone numbers are not.
    The rule is deliberately loose: it only decides what a closer look could not, and a sign
    masked by mistake costs a little of the photo, a plate left visible costs privacy.
    """
    compact = _SEPARATORS.sub("", text)
    # One character the recogniser has no symbol for (a kana read as "*") is forgiven.
    known = "".join(_PLATE_CHAR.findall(compact))
    if len(compact) - len(known) > 1 or not 4 <= len(known) <= 9:
        return False
    compact = known
    digits = sum(ch.isdigit() for ch in compact)
    return digits >= 2 or (digits >= 1 and len(compact) >= 5)


def looks_like_words(text: str) -> bool:
    """Whether recognised characters read as words, not a plate: four letters or more and no digit.

    ``OCCASIONS.NL``, ``EN ZONA VERDE``, ``RESERVED``. A Japanese plate always has digits (so do
    nearly all plates elsewhere; a vanity plate of letters alone would read as words).
    """
    letters = sum(ch.isalpha() and ch.isascii() for ch in text)
    return letters >= 4 and not any(ch.isdigit() for ch in text)


def text_model_path(name: str = "ch_PP-OCRv4_det_infer.onnx") -> Path:
    """A PP-OCRv4 model inside the installed ``rapidocr-onnxruntime`` wheel (not imported: its deps are not)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "second look: the text detector package is missing "
            "(pip install --no-deps rapidocr-onnxruntime==1.4.4, or PLATEMASK_SECOND_LOOK=off)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModelError(f"second look: no text model at {path}")
    return path


class TextDetector:
    """PP-OCR's DB text detector run by OpenVINO: a probability map of characters, traced into regions."""

    # PaddleOCR's DB post-processing settings as rapidocr ships them.
    BINARY_THRESHOLD = 0.3
    MIN_SIDE = 3
    UNCLIP_RATIO = 1.6

    def __init__(self, path: Path, *, long_side: int, min_score: float, cache_dir: Path | None = None) -> None:
        self.long_side = long_side
        self.min_score = min_score
        compiled = compile_openvino(path, cache_dir)
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def find(self, image: np.ndarray) -> list[TextRegion]:
        """Text regions in a BGR photo, in photo pixels."""
        height, width = image.shape[:2]
        scale = self.long_side / max(height, width)
        size = (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        # PaddleOCR normalises BGR pixels to [-1, 1] (mean 0.5, std 0.5), channels first.
        tensor = cv2.dnn.blobFromImage(resized, scalefactor=1 / 127.5, mean=(127.5, 127.5, 127.5))
        try:
            with self._lock:
                result = self._request.infer({0: tensor}, share_inputs=True)
                probability = np.array(next(iter(result.values()))[0, 0], np.float32)
        except Exception as exc:
            raise ModelError(f"second look: text detection failed: {exc}") from exc
        gain = np.float32([width / size[0], height / size[1]])
        return [TextRegion(quad * gain, score) for quad, score in self._regions(probability)]

    def _regions(self, probability: np.ndarray) -> list[tuple[np.ndarray, float]]:
        bitmap = cv2.dilate((probability > self.BINARY_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        regions = []
        for contour in contours[:1000]:
            (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
            if min(w, h) < self.MIN_SIDE:
                continue
            score = _mean_inside(probability, contour)
            if score < self.min_score:
                continue
            # DB predicts a shrunk text kernel: grow it back by area × ratio / perimeter on each side.
            grow = w * h * self.UNCLIP_RATIO / (2 * (w + h))
            quad = cv2.boxPoints(((cx, cy), (w + 2 * grow, h + 2 * grow), angle)).astype(np.float32)
            regions.append((quad, score))
        return regions


class TextReader:
    """PP-OCR's recogniser (CRNN + CTC) run by OpenVINO: the characters of one text region."""

    HEIGHT = 48
    MAX_WIDTH = 320

    def __init__(self, path: Path, cache_dir: Path | None = None) -> None:
        characters = _characters(path, cache_dir)
        self._characters = ["", *characters, " "]  # CTC: blank first, space last (PaddleOCR's use_space_char)
        compiled = compile_openvino(path, cache_dir)
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def read(self, image: np.ndarray, quad: np.ndarray) -> tuple[str, float]:
        """The region's characters and the recogniser's mean confidence in them."""
        line = _straighten(image, quad, self.HEIGHT)
        # Widths in steps of 32 px: a handful of input shapes, each compiled once.
        width = min(self.MAX_WIDTH, max(32, -(-line.shape[1] // 32) * 32))
        line = cv2.resize(line, (min(width, line.shape[1]), self.HEIGHT), interpolation=cv2.INTER_LINEAR)
        tensor = np.zeros((1, 3, self.HEIGHT, width), np.float32)  # padding is grey: 0 after normalising
        tensor[0, :, :, : line.shape[1]] = cv2.dnn.blobFromImage(line, 1 / 127.5, mean=(127.5, 127.5, 127.5))[0]
        with self._lock:
            result = self._request.infer({0: tensor}, share_inputs=True)
            scores = np.array(next(iter(result.values()))[0], np.float32)
        best, confidence = scores.argmax(axis=1), scores.max(axis=1)
        keep = (best != 0) & np.r_[True, best[1:] != best[:-1]]  # CTC: drop blanks and repeats
        text = "".join(self._characters[i] for i in best[keep] if i < len(self._characters))
        return text, float(confidence[keep].mean()) if keep.any() else 0.0


def _characters(path: Path, cache_dir: Path | None) -> list[str]:
    """The recogniser's character list, which travels in the ONNX file's metadata, one per line.

    Reading the model for it costs 0.4 CPU-s, so it is kept beside the compiled model in the cache.
    """
    kept = cached_file(path, ".characters.json", cache_dir)
    if kept is not None and kept.is_file():
        with contextlib.suppress(OSError, ValueError):
            return list(json.loads(kept.read_text(encoding="utf-8")))
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
        characters = str(model.get_rt_info()["framework"]["character"].astype(str)).splitlines()
    except Exception as exc:
        raise ModelError(f"second look: cannot read the recogniser's characters from {path}: {exc}") from exc
    if kept is not None:
        with contextlib.suppress(OSError):  # without it the next process reads the model again
            atomic_write(kept, json.dumps(characters, ensure_ascii=False).encode())
    return characters


class SecondLook:
    """The text detector plus a closer look by the plate model; loaded once per process."""

    def __init__(self, options: SecondLookOptions) -> None:
        self.options = options
        self._text: TextDetector | None = None
        self._reader: TextReader | None = None
        self._loader = BackgroundLoad(self._load, "platemask-text")

    @property
    def enabled(self) -> bool:
        """Whether this look does anything (``PLATEMASK_SECOND_LOOK`` is not ``off``)."""
        return self.options.mode != "off"

    def load_async(self) -> Future[None]:
        """Start loading the text models in the background (idempotent)."""
        return self._loader.start()

    def _load(self) -> None:
        self._text = TextDetector(
            text_model_path(), long_side=self.options.text_side, min_score=self.options.text_score
        )
        self._reader = TextReader(text_model_path("ch_PP-OCRv4_rec_infer.onnx"))

    def text_regions(self, image: np.ndarray) -> list[TextRegion]:
        """Where the text detector sees characters in the photo (empty when this look is off)."""
        if not self.enabled:
            return []
        self.load_async().result()
        assert self._text is not None
        return self._text.find(image)

    def look(
        self,
        image: np.ndarray,
        plates: Sequence[Detection],
        detector: PlateDetector,
        padding: float,
        regions: Sequence[TextRegion] | None = None,
    ) -> Look:
        """Candidates the ``plates`` (masked with ``padding``) leave visible, looked at closer.

        ``regions``: the photo's :meth:`text_regions`, when already known.
        """
        if not self.enabled:
            return Look()
        regions = self.text_regions(image) if regions is None else regions
        height, width = image.shape[:2]
        covered = mask_area(plates, width, height, padding)
        regions = [r for r in regions if self._plate_like(r, width, height) and not _hidden(r.box, covered)]
        candidates = sorted(regions, key=lambda r: r.score, reverse=True)[: self.options.max_candidates]
        look = Look()
        for index in range(0, len(candidates), _GRID * _GRID):
            batch = candidates[index : index + _GRID * _GRID]
            windows = [(region.box, self.options.context) for region in batch]
            for region, found in zip(batch, self._closer_look(image, windows, detector), strict=True):
                self._decide(image, region, found, look, detector.options.conf)
        return look

    def read(self, image: np.ndarray, region: TextRegion) -> tuple[str, bool]:
        """The region's characters, and whether the recogniser is sure of them (``read_conf``)."""
        self.load_async().result()
        assert self._reader is not None
        text, certainty = self._reader.read(image, region.quad)
        return text, certainty >= self.options.read_conf

    def reads_like_plate(self, image: np.ndarray, region: TextRegion) -> bool:
        """Whether the recogniser reads the region's characters, surely, as a plate line."""
        text, sure = self.read(image, region)
        return sure and looks_like_plate_text(text)

    def look_again(
        self, image: np.ndarray, windows: Sequence[Window], detector: PlateDetector
    ) -> list[list[Detection]]:
        """What the model finds in each window, in photo pixels.

        The same mosaic as the closer look (four windows per inference), but any box counts,
        however much of its tile it takes: a whole photo zoomed out is a window too.
        """
        found: list[list[Detection]] = []
        for index in range(0, len(windows), _GRID * _GRID):
            found += self._closer_look(image, windows[index : index + _GRID * _GRID], detector, any_size=True)
        return found

    def _plate_like(self, region: TextRegion, width: int, height: int) -> bool:
        """Shaped like a plate's characters: a line of text, neither a dot nor a shop sign."""
        (_, _), (w, h), _ = cv2.minAreaRect(region.quad)
        long, short = max(w, h), min(w, h)
        o = self.options
        return (
            short >= o.min_text_height
            and o.min_aspect <= long / short <= o.max_aspect
            and long <= o.max_text_width * width
            and short <= o.max_text_width * height
        )

    def _closer_look(
        self, image: np.ndarray, windows: Sequence[Window], detector: PlateDetector, *, any_size: bool = False
    ) -> list[list[Detection]]:
        """Plates the model finds in an enlarged crop of each window (up to four per inference).

        Unless ``any_size``, a box taking more than ``max_plate_share`` of its crop is no plate.

        One or two crops make a 320 × 640 mosaic, which a model of free input size runs in half
        the time of the full 640 × 640 (most closer looks have one or two candidates).
        """
        rows = 1 if len(windows) <= _GRID else _GRID
        mosaic = np.full((_TILE * rows, _TILE * _GRID, 3), _PAD_VALUE, np.uint8)
        placed = []
        for slot, (box, context) in enumerate(windows):
            crop_box, gain = self._crop_window(box, context, image.shape)
            x1, y1, x2, y2 = crop_box
            crop = image[y1:y2, x1:x2]
            w, h = max(1, round((x2 - x1) * gain)), max(1, round((y2 - y1) * gain))
            top, left = (slot // _GRID) * _TILE, (slot % _GRID) * _TILE
            interpolation = cv2.INTER_AREA if gain < 1 else cv2.INTER_LINEAR
            mosaic[top : top + h, left : left + w] = cv2.resize(crop, (w, h), interpolation=interpolation)
            placed.append((left, top, w, h, x1, y1, gain))
        [found] = detector.detect([mosaic], conf=self.options.weak_conf)
        per_region: list[list[Detection]] = [[] for _ in windows]
        largest = float("inf") if any_size else _TILE * self.options.max_plate_share
        for detection in found:
            if max(detection.box[2] - detection.box[0], detection.box[3] - detection.box[1]) > largest:
                # The model taking most of a crop for a plate: no plate's box (on the evaluation
                # photos, such boxes hid up to three quarters of a photo, and few plates).
                continue
            cx = (detection.box[0] + detection.box[2]) / 2
            cy = (detection.box[1] + detection.box[3]) / 2
            for slot, (left, top, w, h, x1, y1, gain) in enumerate(placed):
                if left <= cx < left + w and top <= cy < top + h:
                    per_region[slot].append(_from_tile(detection, left, top, w, h, x1, y1, gain))
                    break
        return per_region

    def _crop_window(
        self, box: tuple[float, ...], context: float, shape: tuple[int, ...]
    ) -> tuple[tuple[int, int, int, int], float]:
        """A square crop centred on the box, ``context`` × its width (or twice its height), and its zoom into a tile."""
        height, width = shape[:2]
        x1, y1, x2, y2 = box
        side = max((x2 - x1) * context, (y2 - y1) * context * 2, self.options.min_crop)
        side = min(side, max(width, height))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        left = int(min(max(cx - side / 2, 0), max(width - side, 0)))
        top = int(min(max(cy - side / 2, 0), max(height - side, 0)))
        right, bottom = min(width, int(left + side)), min(height, int(top + side))
        return (left, top, right, bottom), _TILE / max(right - left, bottom - top)

    def _decide(self, image: np.ndarray, region: TextRegion, found: list[Detection], look: Look, conf: float) -> None:
        """A plate on the region is masked; a weak one or plate-like characters are unconfirmed;
        anything else is dropped. No mask is ever larger than the plate the region could belong
        to (:func:`plate_around`) grown to twice its width and height."""
        on_region = [d for d in found if overlap_of_smaller(d.box, region.box) >= 0.3]
        best = max(on_region, key=lambda d: d.conf) if on_region else None
        plate = plate_around(region.box)
        if best is not None and best.conf >= conf:
            box = _clip(best.box, _scaled(plate, MAX_GROWTH))
            outline = best.polygon if box == best.box else None  # an outline is only good for its own box
            look.masks.append(replace(best, box=box, polygon=outline, source="closer_look"))
            return
        if best is None and not self.reads_like_plate(image, region):
            return
        # Only the plate its characters could be: a weak closer-look box is no measure of a plate
        # (on the evaluation photos such boxes took up to 96 % of a photo).
        unconfirmed = Detection(box=plate, conf=best.conf if best is not None else 0.0, source="second_look")
        (look.masks if self.options.mode == "mask" else look.unmasked).append(unconfirmed)


def get_second_look(options: SecondLookOptions) -> SecondLook:
    """The process-wide second look for ``options`` (the text detector loads once per process)."""
    with _LOOKS_LOCK:
        if options not in _LOOKS:
            _LOOKS[options] = SecondLook(options)
        return _LOOKS[options]


def _from_tile(detection: Detection, left: int, top: int, w: int, h: int, x1: int, y1: int, gain: float) -> Detection:
    """A detection in a mosaic tile, in photo pixels (clipped to the tile: nothing leaks from a neighbour)."""
    bx1, by1, bx2, by2 = detection.box
    bx1, bx2 = min(max(bx1, left), left + w), min(max(bx2, left), left + w)
    by1, by2 = min(max(by1, top), top + h), min(max(by2, top), top + h)
    box = ((bx1 - left) / gain + x1, (by1 - top) / gain + y1, (bx2 - left) / gain + x1, (by2 - top) / gain + y1)
    polygon = None
    if detection.polygon is not None:
        polygon = (detection.polygon - np.float32([left, top])) / gain + np.float32([x1, y1])
    return Detection(box=box, conf=detection.conf, polygon=polygon)


def _hidden(box: tuple[float, float, float, float], covered: np.ndarray, share: float = 0.9) -> bool:
    """Whether the masks already cover ``share`` of the box."""
    height, width = covered.shape
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return True
    return float(covered[y1:y2, x1:x2].mean()) >= share


def overlap_of_smaller(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box: a plate box around a text box overlaps it fully."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def _clip(box: tuple[float, ...], window: tuple[float, ...]) -> tuple[float, float, float, float]:
    """``box`` cut to ``window`` (``window`` itself when they do not meet)."""
    x1, y1, x2, y2 = max(box[0], window[0]), max(box[1], window[1]), min(box[2], window[2]), min(box[3], window[3])
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else (window[0], window[1], window[2], window[3])


def _scaled(box: tuple[float, ...], factor: float) -> tuple[float, float, float, float]:
    """``box`` scaled by ``factor`` in width and height about its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def plate_around(text: tuple[float, ...]) -> tuple[float, float, float, float]:
    """The plate a line of characters could belong to: the text box grown by PLATE_PER_TEXT.

    A plate's characters span most of its width (a US plate's about 60 %, an EU plate's 80 %); a
    Japanese plate's big number line is about 40 % of its height, and the small top line is
    often a text region of its own. Measured against 1.3 × 2.2: as many plates hidden and fewer
    photos defaced (a larger plate is more often a large one, which needs a second sign).
    """
    cx, cy = (text[0] + text[2]) / 2, (text[1] + text[3]) / 2
    width = (text[2] - text[0]) * PLATE_PER_TEXT[0]
    height = max((text[3] - text[1]) * PLATE_PER_TEXT[1], width / 5)
    return cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2


def _straighten(image: np.ndarray, quad: np.ndarray, height: int) -> np.ndarray:
    """The region as an upright line of text ``height`` px high (a tall region is turned)."""
    s, d = quad.sum(axis=1), np.diff(quad, axis=1).ravel()
    corners = np.float32([quad[np.argmin(s)], quad[np.argmin(d)], quad[np.argmax(s)], quad[np.argmax(d)]])
    width = max(1, round(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[3] - corners[2]))))
    tall = max(1, round(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2]))))
    target = np.float32([[0, 0], [width, 0], [width, tall], [0, tall]])
    line = cv2.warpPerspective(
        image, cv2.getPerspectiveTransform(corners, target), (width, tall), borderMode=cv2.BORDER_REPLICATE
    )
    if tall > 1.5 * width:
        line = np.ascontiguousarray(np.rot90(line))
    return cv2.resize(line, (max(1, round(line.shape[1] * height / line.shape[0])), height))


def _mean_inside(probability: np.ndarray, contour: np.ndarray) -> float:
    """Mean probability inside a contour (PaddleOCR's box score), computed on its bounding box only."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - np.int32([x, y])], 1)
    return float(cv2.mean(probability[y : y + h, x : x + w], mask)[0])
