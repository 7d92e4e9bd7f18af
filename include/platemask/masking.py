"""What gets masked on one photo, and why: the one home of that decision.

The trip of a photo's plates, in order:

1. **model pass**: the plate model on the whole photo (:class:`~platemask.detect.PlateDetector`);
2. **checks**: each box must look like a plate could (:func:`plate_shaped`);
3. **second look** (:mod:`platemask.second_look`): text and weak plates the masks leave visible,
   looked at closer;
4. **the final list**: every mask with where it came from, what is left visible for a person, and
   the review reasons of the photo (:mod:`platemask.review` explains each code).

The pipeline, ``platemask mask-dir`` and ``scripts/evaluate.py`` all call :func:`find_masks`, so
what is measured is what ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from platemask.detect import Detection, PlateDetector
from platemask.review import review_reasons
from platemask.second_look import SecondLook

__all__ = ["Masks", "find_masks"]


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
    first: bool = False,
    review_conf: float = 0.5,
) -> Masks:
    """The masks of one BGR photo; ``padding``: how far a mask grows past its box; ``first``: a first photo."""
    if second_look is not None and second_look.enabled:
        plates, weak = second_look.first_pass(image, detector)
        look = second_look.look(image, plates, detector, padding, weak)
        plates, unmasked = [*plates, *look.masks], look.unmasked
    else:
        plates, unmasked = detector.detect([image])[0], []
    return Masks(plates, unmasked, review_reasons(plates, unmasked, first=first, review_conf=review_conf))
