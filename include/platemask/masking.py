"""What gets masked on one photo, and why: the one home of that decision.

The trip of a photo's plates, in order:

1. **model pass**: the plate model on the whole photo (:class:`~platemask.detect.PlateDetector`);
2. **checks** (:class:`~platemask.config.MaskChecks`): a small box is masked as it is; a large one
   could deface the photo if it is wrong, so it must be confirmed by two of three signs: the model
   is sure of it, characters fill its width (the second look's text detector), and the model
   finds it again in a crop of its own. On photos with no plate the model boxes wheels, grilles,
   lamps, whole cars and lawns, at confidences up to 0.8; no two of the three signs hold for them;
3. **zoomed out**: the whole photo again at half the scale, for plates too large for the model at
   full scale (close-ups); such a plate is confirmed like any other large box;
4. **second look** (:mod:`platemask.second_look`): text and weak plates the masks leave visible,
   looked at closer; its masks are never larger than the plate the text could be;
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
from platemask.second_look import SecondLook, TextRegion, overlap_of_smaller

__all__ = ["Masks", "find_masks", "text_share"]

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
    kept, doubtful, dropped = _check(plates, regions, large, checks)
    if second_look is None:  # nothing to look again with: a doubt is a no
        dropped, doubtful = [*dropped, *doubtful], []
    # One mosaic for the zoomed-out photo and the crops of the doubtful boxes.
    windows = [((0.0, 0.0, float(width), float(height)), _WHOLE_PHOTO)] if looking and checks.zoom_out else []
    windows += [(plate.box, checks.relook_context) for plate in doubtful]
    seen = second_look.look_again(image, windows, detector) if windows else []
    zoomed = seen.pop(0) if looking and checks.zoom_out else []
    for plate, again in zip(doubtful, seen, strict=True):
        confirmed = any(d.conf >= checks.relook_conf and _iou(d.box, plate.box) >= 0.3 for d in again)
        (kept if confirmed else dropped).append(plate)
    kept += _zoomed_out_plates(zoomed, plates, regions, large, detector.options.conf, checks)
    unmasked: list[Detection] = []
    if looking:
        weak = [w for w in weak if _area(w.box) < large]  # a large weak box is no plate's closer look
        look = second_look.look(image, kept, detector, padding, weak, regions)
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
    plates: Sequence[Detection], regions: Sequence[TextRegion], large: float, checks: MaskChecks
) -> tuple[list[Detection], list[Detection], list[Detection]]:
    """The model's boxes sorted into kept, doubtful (a look at their own crop decides) and dropped."""
    kept, doubtful, dropped = [], [], []
    for plate in plates:
        if _area(plate.box) < large:
            kept.append(plate)
            continue
        votes = int(plate.conf >= checks.sure) + int(text_share(plate.box, regions) >= checks.text_share)
        if votes >= checks.votes:
            kept.append(plate)
        elif votes + 1 >= checks.votes:
            doubtful.append(plate)
        else:
            dropped.append(plate)
    return kept, doubtful, dropped


def _zoomed_out_plates(
    zoomed: Sequence[Detection],
    plates: Sequence[Detection],
    regions: Sequence[TextRegion],
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
        if plate.conf >= checks.sure and text_share(plate.box, regions) >= checks.text_share:
            found.append(replace(plate, source="zoomed_out"))
    return found


def text_share(box: Box, regions: Sequence[TextRegion]) -> float:
    """How much of the box's width its widest line of characters spans (0 without one).

    Only a region that lies within the box (70 % of it) and is not larger than it counts: a
    plate's characters are inside the plate, while a box around a whole car holds small text.
    """
    width = box[2] - box[0]
    area = _area(box)
    best = 0.0
    for region in regions:
        x1, y1, x2, y2 = region.box
        if overlap_of_smaller(region.box, box) >= 0.7 and (x2 - x1) * (y2 - y1) <= 1.2 * area:
            best = max(best, (x2 - x1) / width)
    return best


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
