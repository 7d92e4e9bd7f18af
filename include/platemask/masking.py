"""What gets masked on one photo, and why: the one home of that decision.

The trip of a photo's plates, in order:

1. **model pass**: the plate model on the whole photo (:class:`~platemask.detect.PlateDetector`);
2. **zoomed out**: where characters of a plate a quarter of the photo wide lie outside every box,
   the whole photo again at half the scale, for plates too large for the model at full scale
   (close-ups); such a plate is checked like any other large box;
3. **checks** (:class:`~platemask.config.MaskChecks`): a small box is masked as it is; a large one
   could deface the photo if it is wrong, so it must be confirmed by two of three signs: the model
   is sure of it, characters that read like a plate's span its width (the second look's text
   detector and recogniser), and the model finds it again in a crop of its own. On photos with no
   plate the model boxes wheels, grilles, lamps, whole cars, lawns and signs, at confidences up to
   0.8; rarely do two of the three signs hold for them. Characters the recogniser cannot read (a
   Japanese plate's kana, blur) count only with a sure look again; a box that words fill from
   side to side (``OCCASIONS.NL``, ``EN ZONA VERDE``) is a sign, however sure the model is;
4. **second look** (:mod:`platemask.second_look`): text the masks leave visible,
   looked at closer; its masks are never larger than twice the plate the text could be, and a
   large one needs a second sign like a large box of the model's (plate-like text alone that
   large is listed for a person, not masked);
5. **the final list**: every mask with where it came from (``Detection.source``), what is left
   visible for a person, and the photo's review reasons (:data:`platemask.review.REASONS`);
6. **a person's fixes** (:class:`PersonsFixes`, made in the Airflow UI, platemask.corrections):
   masks a person removed stay off, masks a person drew stay on, in every later run of the same
   original (``force`` included).

The pipeline, ``platemask mask-dir`` and ``scripts/evaluate.py`` all call :func:`find_masks`, so
what is measured is what ships.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from platemask.config import MaskChecks
from platemask.detect import Detection, PlateDetector, box_iou
from platemask.review import review_reasons
from platemask.second_look import (
    SecondLook,
    TextRegion,
    looks_like_plate_text,
    looks_like_words,
    overlap_of_smaller,
    plate_around,
)

__all__ = ["Masks", "PersonsFixes", "detection_of", "find_masks", "mask_entry"]

Box = tuple[float, float, float, float]
DEFAULT_CHECKS = MaskChecks()
_WHOLE_PHOTO = 1.0  # a window's context that makes its crop the whole photo
#: A found mask this much like one a person removed is that mask again (the same original, the same model).
REMOVED_IOU = 0.5


@dataclass
class Masks:
    """One photo's decision: what to hide, what to leave visible for a person, and why."""

    plates: list[Detection] = field(default_factory=list)  # to hide, each with its ``source``
    unmasked: list[Detection] = field(default_factory=list)  # plate-like, left visible (review mode)
    review: list[str] = field(default_factory=list)  # reason codes (platemask.review.REASONS)


def find_masks(
    image: np.ndarray,
    detector: PlateDetector,
    second_look: SecondLook | None,
    *,
    padding: float,
    checks: MaskChecks = DEFAULT_CHECKS,
    first: bool = False,
    review_conf: float = 0.5,
) -> Masks:
    """The masks of one BGR photo; ``padding``: how far a mask grows past its box; ``first``: a first photo."""
    height, width = image.shape[:2]
    large = checks.large * width * height
    looking = second_look is not None and second_look.enabled
    plates = detector.detect([image])[0]
    regions = second_look.text_regions(image) if looking else []
    reads = _PlateText(image, second_look if looking else None, regions)
    zoom_text = checks.zoom_text * width * height
    if looking and checks.zoom_out and _large_text_left(regions, plates, zoom_text, padding, width, height):
        plates = [*plates, *_zoomed_out(image, plates, second_look, detector, large)]
    kept, doubtful = _check(plates, reads, large, checks)
    if doubtful and second_look is not None:  # without a look again, a doubt is a no
        windows = [(doubt.plate.box, checks.relook_context) for doubt in doubtful]
        again = second_look.look_again(image, windows, detector)
        kept += [doubt.plate for doubt, found in zip(doubtful, again, strict=True) if _confirmed(doubt, found, checks)]
    unmasked: list[Detection] = []
    if looking:
        look = second_look.look(image, kept, detector, padding, regions)
        unmasked = look.unmasked
        for mask in look.masks:
            if _area(mask.box) < large or _second_sign(mask, reads, checks):
                kept.append(mask)
            elif mask.source == "second_look":
                unmasked.append(mask)  # plate-like text as large as a large box: a person decides
    largest = max((_area(p.padded(padding, width, height)) for p in kept), default=0)
    review = review_reasons(
        kept,
        unmasked,
        first=first,
        review_conf=review_conf,
        large_mask=largest >= checks.review_area * width * height,
    )
    return Masks(kept, unmasked, review)


def _check(
    plates: Sequence[Detection], reads: _PlateText, large: float, checks: MaskChecks
) -> tuple[list[Detection], list[_Doubt]]:
    """The boxes to mask, and the doubtful ones a look at their own crop decides; the rest are dropped."""
    kept, doubtful = [], []
    for plate in plates:
        if _area(plate.box) < large:
            kept.append(plate)
            continue
        lines = reads.across(plate.box, checks.text_share)
        if lines == _Lines.WORDS and reads.across(plate.box, checks.words_share) == _Lines.WORDS:
            continue  # words fill it: a sign or a slogan (a Japanese plate always has digits)
        # Words across part of it (a state's name over a plate's unread number) are no sign either way.
        unread = lines == _Lines.UNREAD
        votes = int(plate.conf >= checks.sure) + int(lines == _Lines.PLATE)
        if votes >= checks.votes:
            kept.append(plate)
        elif votes + 1 + int(unread) >= checks.votes:
            doubtful.append(_Doubt(plate, votes, unread))
    return kept, doubtful


def _confirmed(doubt: _Doubt, again: Sequence[Detection], checks: MaskChecks) -> bool:
    """Whether the look at the box's own crop tips a doubtful box over (see MaskChecks)."""
    best = max((d.conf for d in again if box_iou(d.box, doubt.plate.box) >= 0.3), default=0.0)
    votes = doubt.votes + int(best >= checks.relook_conf) + int(doubt.unread and best >= checks.relook_sure)
    return votes >= checks.votes


def _large_text_left(
    regions: Sequence[TextRegion], plates: Sequence[Detection], large: float, padding: float, width: int, height: int
) -> bool:
    """Whether characters of a plate of ``large`` pixels or more lie outside every box the model
    found: a close-up's plate it may have missed at full scale (most photos have none)."""
    covered = [plate.padded(padding, width, height) for plate in plates]
    return any(
        _area(plate_around(region.box)) >= large and not any(overlap_of_smaller(region.box, c) >= 0.5 for c in covered)
        for region in regions
    )


def _second_sign(mask: Detection, reads: _PlateText, checks: MaskChecks) -> bool:
    """Whether a large second-look mask has a sign besides the closer look that found it (MaskChecks).

    The closer look is the model finding the plate again; unconfirmed text alone is no plate.
    """
    if mask.source != "closer_look":
        return False
    lines = reads.across(mask.box, checks.text_share)
    return (
        mask.conf >= checks.sure
        or lines == _Lines.PLATE
        or (lines == _Lines.UNREAD and mask.conf >= checks.relook_sure)
    )


def _zoomed_out(
    image: np.ndarray, plates: Sequence[Detection], second_look: SecondLook, detector: PlateDetector, large: float
) -> list[Detection]:
    """Large plates the model sees in the whole photo at half the scale and not at full scale."""
    height, width = image.shape[:2]
    [zoomed] = second_look.look_again(image, [((0.0, 0.0, float(width), float(height)), _WHOLE_PHOTO)], detector)
    return [
        replace(plate, source="zoomed_out")
        for plate in zoomed
        if plate.conf >= detector.options.conf
        and _area(plate.box) >= large  # a small plate is seen better at full scale
        and not any(overlap_of_smaller(plate.box, seen.box) >= 0.3 for seen in plates)
    ]


@dataclass(frozen=True)
class _Doubt:
    """A large box whose checks so far fall short by what a look at its own crop can add."""

    plate: Detection
    votes: int
    unread: bool  # characters across it that do not read like a plate's


class _Lines(enum.Enum):
    """What the lines of characters across a box say: a plate's line, a line not read, or words."""

    PLATE = "plate"
    UNREAD = "unread"
    WORDS = "words"
    NONE = "none"


class _PlateText:
    """The photo's lines of characters, read once each, asked for box by box."""

    def __init__(self, image: np.ndarray, second_look: SecondLook | None, regions: Sequence[TextRegion]) -> None:
        self._image, self._second_look, self._regions = image, second_look, regions
        self._read: dict[int, _Lines] = {}  # region index: what it says (_Lines), each region read once

    def across(self, box: Box, share: float) -> _Lines:
        """What the lines in the box that span ``share`` of its width say (_Lines), a plate's first.

        Only a region within the box (70 % of it) and at most twice its size counts: a plate's
        characters are inside the plate, while a box around a whole car holds small text. A plate
        the recogniser cannot read (a Japanese plate's kana, blur) is an unread line; signs,
        slogans and badges read as words.
        """
        if self._second_look is None:
            return _Lines.NONE  # no second look: nothing read
        width, area = box[2] - box[0], _area(box)
        said = set()
        for index, region in enumerate(self._regions):
            x1, y1, x2, y2 = region.box
            within = (x2 - x1) * (y2 - y1) <= 2 * area and overlap_of_smaller(region.box, box) >= 0.7
            if within and (x2 - x1) >= share * width:
                said.add(self._says(index, region))
        for what in (_Lines.PLATE, _Lines.WORDS, _Lines.UNREAD):
            if what in said:
                return what
        return _Lines.NONE

    def _says(self, index: int, region: TextRegion) -> _Lines:
        assert self._second_look is not None
        if index not in self._read:
            text, sure = self._second_look.read(self._image, region)
            if sure and looks_like_plate_text(text):
                self._read[index] = _Lines.PLATE
            elif sure and looks_like_words(text):
                self._read[index] = _Lines.WORDS
            else:
                self._read[index] = _Lines.UNREAD
        return self._read[index]


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def mask_entry(detection: Detection) -> dict[str, Any]:
    """A mask as the tracking record keeps it (``masks``): its box, confidence and source; a mask
    a person drew by its four corners keeps them too."""
    entry: dict[str, Any] = {
        "box": [round(v) for v in detection.box],
        "conf": round(detection.conf, 3),
        "source": detection.source,
    }
    if detection.source == "manual" and detection.polygon is not None:
        entry["corners"] = [[round(float(x)), round(float(y))] for x, y in detection.polygon]
    return entry


def detection_of(entry: Mapping[str, Any]) -> Detection:
    """A recorded mask (:func:`mask_entry`) as the :class:`Detection` the renderer draws."""
    corners = entry.get("corners")
    polygon = np.asarray(corners, dtype=np.float32) if corners else None
    box = tuple(float(v) for v in entry["box"])
    return Detection(box, float(entry.get("conf", 1.0)), polygon, str(entry.get("source", "manual")))  # type: ignore[arg-type]


@dataclass(frozen=True)
class PersonsFixes:
    """What people changed on a photo's masks, from its tracking record: kept by every later run
    that processes the same original (``backup``, its sha256); a new upload starts afresh."""

    backup: str
    added: tuple[Detection, ...] = ()
    removed: tuple[Box, ...] = ()

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> PersonsFixes | None:
        """The fixes a record holds, or None."""
        if not record.get("fixed_for"):
            return None
        return cls(
            backup=str(record["fixed_for"]),
            added=tuple(detection_of(m) for m in record.get("manual_masks", ())),
            removed=tuple(tuple(float(v) for v in m["box"]) for m in record.get("removed_masks", ())),  # type: ignore[misc]
        )

    def apply(self, plates: Sequence[Detection]) -> list[Detection]:
        """``plates`` less those a person removed, plus those a person drew."""
        kept = [p for p in plates if not any(box_iou(p.box, box) >= REMOVED_IOU for box in self.removed)]
        return [*kept, *self.added]
