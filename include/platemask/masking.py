"""What gets masked on one photo, and why: the one home of that decision.

The trip of a photo's plates, in order:

1. **model pass**: the plate model on the whole photo (:class:`~platemask.detect.PlateDetector`);
2. **checks** (:class:`~platemask.config.MaskChecks`): a small box is masked as it is; a large one
   could deface the photo if it is wrong, so it must be confirmed by two of three signs: the model
   is sure of it, characters that read like a plate's span its width (the second look's text
   detector and recogniser), and the model finds it again in a crop of its own. On photos with no
   plate the model boxes wheels, grilles, lamps, whole cars, lawns and signs, at confidences up to
   0.8; rarely do two of the three signs hold for them;
3. **zoomed out**: the whole photo again at half the scale, for plates too large for the model at
   full scale (close-ups); such a plate is confirmed like any other large box;
4. **second look** (:mod:`platemask.second_look`): small text and weak plates the masks leave
   visible, looked at closer; its masks are never larger than twice the plate the text could be;
   larger text is a sign (the model sees plates that size itself);
5. **the final list**: every mask with where it came from (``Detection.source``), what is left
   visible for a person, and the photo's review reasons (:data:`platemask.review.REASONS`).

The pipeline, ``platemask mask-dir`` and ``scripts/evaluate.py`` all call :func:`find_masks`, so
what is measured is what ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from platemask.config import MaskChecks
from platemask.detect import Detection, PlateDetector
from platemask.review import review_reasons
from platemask.second_look import SecondLook, TextRegion, overlap_of_smaller, plate_around

__all__ = ["Masks", "find_masks"]

Box = tuple[float, float, float, float]
DEFAULT_CHECKS = MaskChecks()
_WHOLE_PHOTO = 1.0  # a window's context that makes its crop the whole photo


@dataclass
class Masks:
    """One photo's decision: what to hide, what to leave visible for a person, and why."""

    plates: list[Detection] = field(default_factory=list)  # to hide, each with its ``source``
    unmasked: list[Detection] = field(default_factory=list)  # plate-like, left visible (review mode)
    review: list[str] = field(default_factory=list)  # reason codes (platemask.review.REASONS)
    dropped: list[Detection] = field(default_factory=list)  # large boxes the checks did not confirm


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
    if looking:
        plates, weak = second_look.first_pass(image, detector)
        regions = second_look.text_regions(image)
    else:
        plates, weak, regions = detector.detect([image])[0], [], []
    reads = _PlateText(image, second_look if looking else None, regions)
    kept, doubtful, dropped = _check(plates, reads, large, checks)
    if second_look is None:  # nothing to look again with: a doubt is a no
        dropped, doubtful = [*dropped, *(doubt.plate for doubt in doubtful)], []
    # One mosaic for the zoomed-out photo and the crops of the doubtful boxes.
    windows = [((0.0, 0.0, float(width), float(height)), _WHOLE_PHOTO)] if looking and checks.zoom_out else []
    windows += [(doubt.plate.box, checks.relook_context) for doubt in doubtful]
    seen = second_look.look_again(image, windows, detector) if windows else []
    zoomed = seen.pop(0) if looking and checks.zoom_out else []
    for doubt, again in zip(doubtful, seen, strict=True):
        (kept if _confirmed(doubt, again, checks) else dropped).append(doubt.plate)
    kept += _zoomed_out_plates(zoomed, plates, reads, large, detector.options.conf, checks)
    unmasked: list[Detection] = []
    if looking:
        weak = [w for w in weak if _area(w.box) < large]  # a large weak box is no plate's closer look
        small = [r for r in regions if _area(plate_around(r.box)) < large]
        look = second_look.look(image, kept, detector, padding, weak, small)
        kept, unmasked = [*kept, *look.masks], look.unmasked
    largest = max((_padded_area(p, padding, width, height) for p in kept), default=0)
    review = review_reasons(
        kept,
        unmasked,
        first=first,
        review_conf=review_conf,
        large_mask=largest >= checks.review_area * width * height,
    )
    return Masks(kept, unmasked, review, dropped)


def _check(
    plates: Sequence[Detection], reads: _PlateText, large: float, checks: MaskChecks
) -> tuple[list[Detection], list[_Doubt], list[Detection]]:
    """The model's boxes sorted into kept, doubtful (a look at their own crop decides) and dropped."""
    kept, doubtful, dropped = [], [], []
    for plate in plates:
        if _area(plate.box) < large:
            kept.append(plate)
            continue
        read, unread = reads.across(plate.box, checks.text_share)
        votes = int(plate.conf >= checks.sure) + int(read)
        if votes >= checks.votes:
            kept.append(plate)
        elif votes + 1 + int(unread) >= checks.votes:
            doubtful.append(_Doubt(plate, votes, unread))
        else:
            dropped.append(plate)
    return kept, doubtful, dropped


def _confirmed(doubt: _Doubt, again: Sequence[Detection], checks: MaskChecks) -> bool:
    """Whether the look at the box's own crop tips a doubtful box over (see MaskChecks)."""
    best = max((d.conf for d in again if _iou(d.box, doubt.plate.box) >= 0.3), default=0.0)
    votes = doubt.votes + int(best >= checks.relook_conf) + int(doubt.unread and best >= checks.relook_sure)
    return votes >= checks.votes


def _zoomed_out_plates(
    zoomed: Sequence[Detection],
    plates: Sequence[Detection],
    reads: _PlateText,
    large: float,
    conf: float,
    checks: MaskChecks,
) -> list[Detection]:
    """Large plates only the zoomed-out look saw, each sure and full of characters."""
    found = []
    for plate in zoomed:
        if plate.conf < conf or _area(plate.box) < large:
            continue  # a small plate is seen better at full scale
        if any(overlap_of_smaller(plate.box, seen.box) >= 0.3 for seen in plates):
            continue  # the full-scale pass saw it and its checks decided
        if plate.conf >= checks.sure and reads.across(plate.box, checks.text_share)[0]:
            found.append(replace(plate, source="zoomed_out"))
    return found


@dataclass(frozen=True)
class _Doubt:
    """A large box whose checks so far fall short by what a look at its own crop can add."""

    plate: Detection
    votes: int
    unread: bool  # characters across it that do not read like a plate's


class _PlateText:
    """Lines of characters in the photo that read like a plate's, asked for box by box."""

    def __init__(self, image: np.ndarray, second_look: SecondLook | None, regions: Sequence[TextRegion]) -> None:
        self._image, self._second_look, self._regions = image, second_look, regions
        self._read: dict[int, bool] = {}  # region index: reads like a plate (each region is read once)

    def across(self, box: Box, share: float) -> tuple[bool, bool]:
        """Whether a line of characters lies in the box across ``share`` of its width and reads like
        a plate's; and whether such a line is there that does not.

        Only a region within the box (70 % of it) and not larger than it counts: a plate's
        characters are inside the plate, while a box around a whole car holds small text. Signs,
        badges and slogans read as words; a plate the recogniser cannot read (a Japanese plate's
        kana, blur) is an unread line.
        """
        width, area = box[2] - box[0], _area(box)
        unread = False
        for index, region in enumerate(self._regions):
            x1, y1, x2, y2 = region.box
            within = (x2 - x1) * (y2 - y1) <= 1.2 * area and overlap_of_smaller(region.box, box) >= 0.7
            if within and (x2 - x1) >= share * width:
                if self._reads_like_plate(index, region):
                    return True, False
                unread = True
        return False, unread

    def _reads_like_plate(self, index: int, region: TextRegion) -> bool:
        if index not in self._read:
            assert self._second_look is not None
            self._read[index] = self._second_look.reads_like_plate(self._image, region)
        return self._read[index]


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _padded_area(plate: Detection, padding: float, width: int, height: int) -> float:
    return _area(plate.padded(padding, width, height))


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (_area(a) + _area(b) - inter)
