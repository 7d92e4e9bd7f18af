"""The second look: text regions the masks leave visible, looked at closer; its three modes."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from platemask.config import DetectOptions, SecondLookOptions, Settings
from platemask.detect import Detection, get_detector
from platemask.errors import ConfigError
from platemask.pipeline import process_photos
from platemask.second_look import (
    Look,
    SecondLook,
    TextRegion,
    get_second_look,
    looks_like_plate_text,
    looks_like_words,
    plate_around,
)
from platemask.storage import LocalStorage
from platemask.uploads import Photo
from tests.support.synthetic import make_car_photo, make_scene, photo_jpeg

#: A held-back generated photo (training/build_dataset.py's dev set) whose plate, 117 px wide,
#: platedet does not find at full size (platemask's own model does: no generated photo it
#: misses was found, so these tests look closer with platedet as the model).
MISSED = {"seed": 200041, "size": (1024, 768)}


def _covered(plates: list[Detection], box: tuple[int, int, int, int], shape: tuple[int, ...], padding=0.25) -> float:
    mask = np.zeros(shape[:2], bool)
    for plate in plates:
        x1, y1, x2, y2 = plate.padded(padding, shape[1], shape[0])
        mask[y1:y2, x1:x2] = True
    x1, y1, x2, y2 = box
    return float(mask[y1:y2, x1:x2].mean())


class BlindModel:
    """A plate model that finds nothing at full size; on a closer look, a plate in the middle of each crop."""

    options = DetectOptions()

    def __init__(self, closer_conf: float | None) -> None:
        self.closer_conf = closer_conf
        self.closer_looks = 0
        self.shapes: list[tuple[int, ...]] = []  # of the images looked at closer

    def detect(self, images, *, conf=None):
        if conf is not None:
            self.shapes += [image.shape for image in images]
        if conf is None or self.closer_conf is None or self.closer_conf < conf:  # a model reports what passes conf
            return [[] for _ in images]
        self.closer_looks += 1
        # Crops are centred on their candidate: a plate-sized box at the centre of each 320 px tile.
        centres = [(160 + 320 * col, 160 + 320 * row) for row in (0, 1) for col in (0, 1)]
        return [[Detection((x - 40.0, y - 20.0, x + 40.0, y + 20.0), self.closer_conf) for x, y in centres]]


@pytest.fixture(scope="module")
def car():
    return make_car_photo(seed=1, size=(1280, 960), view="rear", style="private")


@pytest.mark.inference
def test_text_detector_finds_the_plate_characters(car) -> None:
    look = get_second_look(SecondLookOptions())
    look.load_async().result()
    regions = look._text.find(car.image)
    x1, y1, x2, y2 = car.plate_box
    on_plate = [r for r in regions if x1 <= (r.box[0] + r.box[2]) / 2 <= x2 and y1 <= (r.box[1] + r.box[3]) / 2 <= y2]
    assert on_plate and all(isinstance(r, TextRegion) and 0.5 <= r.score <= 1 for r in regions)


@pytest.mark.parametrize(
    ("mode", "closer_conf", "masked_by", "left_visible"),
    [
        pytest.param("mask", 0.6, "closer_look", False, id="confirmed-is-masked"),
        pytest.param("mask", 0.05, "second_look", False, id="unconfirmed-masked-fail-closed"),
        pytest.param("review", 0.05, None, True, id="unconfirmed-only-listed"),
        pytest.param("review", 0.6, "closer_look", False, id="confirmed-masked-in-review-mode-too"),
        # The closer look sees nothing: the recogniser reads the plate's characters (54-07).
        pytest.param("mask", 0.01, "second_look", False, id="read-like-a-plate-masked"),
        pytest.param("review", None, None, True, id="read-like-a-plate-listed"),
    ],
)
@pytest.mark.inference
def test_modes_decide_what_happens_to_a_missed_plate(car, mode, closer_conf, masked_by, left_visible) -> None:
    look = SecondLook(SecondLookOptions(mode=mode)).look(car.image, [], BlindModel(closer_conf), padding=0.25)
    on_plate = [d for d in look.masks if _covered([d], car.plate_box, car.image.shape) > 0.5]
    if masked_by:
        assert on_plate and {d.source for d in on_plate} == {masked_by}
        assert _covered(look.masks, car.plate_box, car.image.shape) >= 0.9
    else:
        assert on_plate == []
    assert bool(look.unmasked) is left_visible
    assert all(d.source == "second_look" for d in look.unmasked)


@pytest.mark.parametrize(
    ("count", "shape"), [(1, (320, 640, 3)), (2, (320, 640, 3)), (3, (640, 640, 3)), (4, (640, 640, 3))]
)
def test_one_or_two_candidates_are_looked_at_in_half_a_mosaic(count: int, shape: tuple[int, ...]) -> None:
    """The closer look's model input is only as large as its crops: one or two take 320 × 640."""
    image = np.full((960, 1280, 3), 90, np.uint8)
    regions = [
        TextRegion(np.float32([[x, 700], [x + 60, 700], [x + 60, 715], [x, 715]]), 0.9) for x in (300, 500, 700, 900)
    ]
    model = BlindModel(0.6)
    windows = [(r.box, 8.0) for r in regions[:count]]
    found = SecondLook(SecondLookOptions())._closer_look(image, windows, model)
    assert model.shapes == [shape]
    # Each crop's plate comes back to its own candidate, in photo pixels.
    for region, plates in zip(regions[:count], found, strict=True):
        [plate] = plates
        assert abs((plate.box[0] + plate.box[2]) / 2 - (region.box[0] + region.box[2]) / 2) < 2


class WholeCropModel(BlindModel):
    """On a closer look, takes the whole first crop for a plate (it happens, at any confidence)."""

    def detect(self, images, *, conf=None):
        self.shapes += [image.shape for image in images]
        return [[Detection((0.0, 0.0, 320.0, 320.0), self.closer_conf)]]


@pytest.mark.parametrize("closer_conf", [0.05, 0.9])
def test_a_closer_look_box_larger_than_half_its_crop_is_no_plate(closer_conf: float) -> None:
    """Masked, such a box would hide most of the car around a line of text, whatever its confidence."""
    image = np.full((960, 1280, 3), 90, np.uint8)
    region = TextRegion(np.float32([[600, 700], [660, 700], [660, 715], [600, 715]]), 0.9)
    assert SecondLook(SecondLookOptions())._closer_look(image, [(region.box, 8.0)], WholeCropModel(closer_conf)) == [[]]


class SprawlingModel(BlindModel):
    """On a closer look, a box much larger than the plate around the crop's centre (half the tile wide)."""

    def detect(self, images, *, conf=None):
        if conf is None:
            return [[] for _ in images]
        self.shapes += [image.shape for image in images]
        centres = [(160 + 320 * col, 160 + 320 * row) for row in (0, 1) for col in (0, 1)]
        return [[Detection((x - 80.0, y - 80.0, x + 80.0, y + 80.0), self.closer_conf) for x, y in centres]]


@pytest.mark.parametrize("closer_conf", [0.9, 0.1])
def test_the_second_look_never_masks_more_than_four_times_a_plate(closer_conf: float) -> None:
    """Confirmed (0.9) or not (0.1), a mask is at most the plate the text could be, grown twice per side."""
    image = np.full((960, 1280, 3), 90, np.uint8)
    region = TextRegion(np.float32([[600, 700], [660, 700], [660, 715], [600, 715]]), 0.9)
    second_look = SecondLook(SecondLookOptions(mode="mask"))
    second_look._reader = object()  # a weak closer-look plate decides without reading
    [found] = second_look._closer_look(image, [(region.box, 8.0)], SprawlingModel(closer_conf))
    look = Look()
    second_look._decide(image, region, found, look, conf=0.35)
    [mask] = look.masks
    px1, py1, px2, py2 = plate_around(region.box)
    x1, y1, x2, y2 = mask.box
    assert (x2 - x1) * (y2 - y1) <= 4 * (px2 - px1) * (py2 - py1) + 1e-6
    assert mask.source == ("closer_look" if closer_conf >= 0.35 else "second_look")
    # What the closer look saw is far larger: only a plate's worth of it is kept.
    fx1, fy1, fx2, fy2 = found[0].box
    assert (fx2 - fx1) * (fy2 - fy1) > 10 * (px2 - px1) * (py2 - py1)


def test_the_plate_around_a_line_of_text() -> None:
    # One line of characters across most of the plate: the plate is a little wider, and taller.
    x1, y1, x2, y2 = plate_around((100.0, 50.0, 200.0, 70.0))
    assert (x2 - x1, y2 - y1) == pytest.approx((160.0, 56.0))
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == (150.0, 60.0)


def test_off_looks_at_nothing(car) -> None:
    model = BlindModel(0.6)
    second_look = SecondLook(SecondLookOptions(mode="off"))
    assert second_look.look(car.image, [], model, padding=0.25).masks == [] and model.closer_looks == 0
    assert not second_look._loader.started  # the text models are never even loaded


@pytest.mark.inference
def test_text_the_masks_already_hide_is_no_candidate(car) -> None:
    model = BlindModel(0.6)
    plate = Detection(tuple(float(v) for v in car.plate_box), 0.9)
    look = SecondLook(SecondLookOptions()).look(car.image, [plate], model, padding=0.25)
    assert all(_covered([d], car.plate_box, car.image.shape) < 0.5 for d in look.masks)


@pytest.mark.inference
def test_a_plate_the_model_misses_at_full_size_is_caught_by_the_closer_look(platedet_model: str) -> None:
    photo = make_car_photo(**MISSED)
    detector = get_detector(DetectOptions(model=platedet_model, conf=0.10))
    [found] = detector.detect([photo.image])
    assert _covered(found, photo.plate_box, photo.image.shape) < 0.9  # the first pass misses it
    look = get_second_look(SecondLookOptions()).look(photo.image, found, detector, padding=0.25)
    assert _covered([*found, *look.masks], photo.plate_box, photo.image.shape) >= 0.9
    assert any(d.source == "closer_look" for d in look.masks)


@pytest.mark.inference
def test_pipeline_masks_what_the_second_look_finds(settings: Settings, photo_root, platedet_model: str) -> None:
    settings = dataclasses.replace(settings, detect=DetectOptions(model=platedet_model, conf=0.10))
    photo = make_car_photo(**MISSED)
    (photo_root / "upfile/1041/8430").mkdir(parents=True)
    (photo_root / "upfile/1041/8430/1.jpg").write_bytes(photo_jpeg(photo.image, quality=95))
    store = LocalStorage(photo_root)
    detector = get_detector(settings.detect)
    row = Photo(file_id=1, car_id="10418430", path="/upfile/1041/8430/1.jpg", branch_no=2)
    [without] = process_photos([row], settings=settings, store=store, backups=store, detector=detector)
    [outcome] = process_photos(
        [row],
        settings=settings,
        store=store,
        backups=store,
        detector=detector,
        second_look=get_second_look(settings.second_look),
    )
    assert without.ok and without.detections == 0
    assert outcome.ok and outcome.detections >= 1
    masked = cv2.imdecode(np.frombuffer(store.read(outcome.outputs["detect"]), np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = photo.plate_box
    assert np.abs(masked[y1:y2, x1:x2].astype(int) - settings.render.color).max(axis=2).mean() < 12


@pytest.mark.parametrize("words", ["SALE", "TOYOTA"])
@pytest.mark.inference
def test_a_sign_the_closer_look_rejects_is_left_alone(words: str) -> None:
    scene = make_scene(3, size=(1280, 960))
    cv2.rectangle(scene, (400, 380), (760, 470), (250, 250, 250), -1)
    cv2.putText(scene, words, (420, 450), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (20, 20, 20), 5)
    second_look = get_second_look(SecondLookOptions())
    second_look.load_async().result()
    [sign] = [r for r in second_look._text.find(scene) if r.box[0] < 500 < r.box[2]]
    assert second_look._reader.read(scene, sign.quad)[0] == words  # read, and not like a plate
    look = second_look.look(scene, [], BlindModel(None), padding=0.25)
    assert look.masks == [] and look.unmasked == []


@pytest.mark.parametrize(
    ("text", "plate_like"),
    [
        ("54-07", True),
        ("品川330", True),
        ("*54-07", True),  # a kana the recogniser has no symbol for
        ("WXD 1620", True),
        ("GBP445JRV", True),
        ("0634", True),
        ("FORD", False),
        ("Safety", False),
        ("¥1,980,000", False),
        ("03-1234-5678", False),
        ("12", False),
        ("", False),
    ],
)
def test_plate_like_text(text: str, plate_like: bool) -> None:
    assert looks_like_plate_text(text) is plate_like


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("OCCASIONS.NL", True),
        ("EN ZONA VERDE", True),
        ("RESERVED", True),
        ("LEXUS 4 LIFE", False),  # a digit: it might be a plate
        ("品川330", False),
        ("AYO·9034", False),
        ("SALE", True),
        ("GTI", False),  # too short to tell
    ],
)
def test_words_are_letters_without_a_digit(text: str, words: bool) -> None:
    assert looks_like_words(text) is words


@pytest.mark.inference
def test_no_candidates_in_a_scene_without_text() -> None:
    model = BlindModel(0.6)
    look = get_second_look(SecondLookOptions()).look(make_scene(3, size=(1280, 960)), [], model, padding=0.25)
    assert look.masks == [] and look.unmasked == []


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PLATEMASK_SECOND_LOOK must be one of mask, review, off"):
        Settings.from_env({"PLATEMASK_SECOND_LOOK": "maybe"})
    assert Settings.from_env({"PLATEMASK_SECOND_LOOK": "Review"}).second_look.mode == "review"
