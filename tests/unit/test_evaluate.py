"""scripts/evaluate.py and scripts/evaluation_sets.py: both sides of masking, measured from pixels."""

from __future__ import annotations

import pytest

from platemask.detect import Detection
from scripts.evaluate import DEFACED, TOUCHED, score_photo
from scripts.evaluation_sets import _largest_free_window

WIDTH, HEIGHT = 1000, 800
PLATE = (400, 500, 600, 560)  # 200×60


def test_a_mask_on_the_plate_hides_it_and_costs_the_photo_nothing() -> None:
    # A padded mask (25 %: 50 px and 15 px) stays in the plate's room (half its size each side).
    coverages, extra, stray = score_photo([Detection(PLATE, 0.9)], [PLATE], WIDTH, HEIGHT, 0.25)
    assert coverages == [1.0] and extra == 0.0 and stray == []


def test_a_mask_where_no_plate_is_counts_by_its_area() -> None:
    wheel = Detection((100.0, 100.0, 300.0, 300.0), 0.6)  # 200×200: 5 % of the photo
    coverages, extra, stray = score_photo([wheel], [PLATE], WIDTH, HEIGHT, 0.0)
    assert coverages == [0.0]
    assert extra == pytest.approx(0.05) and extra >= DEFACED > TOUCHED
    assert stray == [(wheel, pytest.approx(0.05))]


def test_a_mask_spilling_past_the_plates_room_counts_only_the_spill() -> None:
    car = Detection((200.0, 400.0, 800.0, 700.0), 0.5)  # a box around the whole car, its plate inside
    coverages, extra, _ = score_photo([car], [PLATE], WIDTH, HEIGHT, 0.0)
    room = (600 - 400 + 200) * (560 - 500 + 60)  # the plate grown by half its size on each side
    assert coverages == [1.0] and extra == pytest.approx((600 * 300 - room) / (WIDTH * HEIGHT))


def test_a_plate_free_crop_keeps_clear_of_every_plate() -> None:
    # The plate grown by its own size on each side takes (200, 440, 800, 620): the largest strip
    # clear of it is the one above, 1000×440, cut to 2:1 about its middle.
    assert _largest_free_window(WIDTH, HEIGHT, [PLATE]) == (60, 0, 940, 440)
    assert _largest_free_window(WIDTH, HEIGHT, []) == (0, 0, WIDTH, HEIGHT)
