"""The detector: the real default model on generated photos, and the mirrored second pass."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from platemask.config import DetectOptions, Settings
from platemask.detect import (
    SHIPPED_INT8,
    Detection,
    PlateDetector,
    _merge,
    _unmirror,
    default_model_path,
    get_detector,
    prepared_model_dir,
)
from platemask.errors import ConfigError, ModelError
from tests.support.synthetic import make_car_photo, make_scene


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_default_model_is_the_shipped_int8_model() -> None:
    import yaml

    path = default_model_path()
    assert path == SHIPPED_INT8 and (path / "plates.xml").is_file() and (path / "plates.bin").is_file()
    args = yaml.safe_load((path / "metadata.yaml").read_text(encoding="utf-8"))["args"]
    assert args["quantize"] == 8 and args["dynamic"] is True  # INT8, any input size


@pytest.mark.inference
def test_the_int8_model_finds_the_plates_the_full_precision_copy_finds() -> None:
    int8 = PlateDetector(DetectOptions(model=str(SHIPPED_INT8)))
    full = PlateDetector(DetectOptions(model=str(prepared_model_dir())))
    photos = [
        make_car_photo(seed, size=size, view=view)
        for seed, size, view in ((5, (1280, 960), "front"), (6, (960, 1280), "rear"), (7, (1920, 1080), "front"))
    ]
    images = [p.image for p in photos]
    for photo, quantized, reference in zip(photos, int8.detect(images), full.detect(images), strict=True):
        assert max(_iou(d.box, photo.plate_box) for d in quantized) > 0.5
        for plate in reference:  # every plate of the full-precision model, in nearly the same place
            assert max(_iou(d.box, plate.box) for d in quantized) > 0.85


@pytest.mark.parametrize("flip", [pytest.param(True, id="with-mirror"), pytest.param(False, id="single-pass")])
@pytest.mark.parametrize("outlines", [pytest.param(True, id="outlines"), pytest.param(False, id="boxes")])
@pytest.mark.inference
def test_finds_the_plate_of_a_generated_car(flip: bool, outlines: bool) -> None:
    detector = get_detector(DetectOptions(flip=flip, outlines=outlines))
    photos = [make_car_photo(seed, size=(1280, 960), view="front", style="private") for seed in (1, 2)]
    found = detector.detect([p.image for p in photos])
    for photo, detections in zip(photos, found, strict=True):
        assert max(_iou(d.box, photo.plate_box) for d in detections) > 0.5
        best = max(detections, key=lambda d: _iou(d.box, photo.plate_box))
        if outlines:
            assert best.polygon is not None and best.polygon.shape[1] == 2  # the segmentation outline
        else:
            assert best.polygon is None  # the prototype branch was never run


@pytest.mark.parametrize(("style", "outlines"), [("fill", False), ("blur", False), ("pixelate", False), ("logo", True)])
def test_the_detector_traces_outlines_only_for_the_logo_style(style: str, outlines: bool) -> None:
    settings = Settings.from_env({"PLATEMASK_MASK_STYLE": style})
    assert settings.detect.outlines is outlines
    # However the style is changed afterwards (an operator's mask_style), the detector follows it.
    other = "fill" if outlines else "logo"
    changed = settings.with_overrides(render=replace(settings.render, style=other))
    assert changed.detect.outlines is (not outlines)


@pytest.mark.inference
def test_no_plates_in_a_car_less_scene() -> None:
    assert get_detector(DetectOptions()).detect([make_scene(3, size=(1280, 960))]) == [[]]


@pytest.mark.inference
def test_missing_model_is_a_clear_error(tmp_path) -> None:
    detector = PlateDetector(DetectOptions(model=str(tmp_path / "nope.pt")))
    with pytest.raises(ModelError, match=r"nope\.pt' does not exist"):
        detector.detect([np.zeros((64, 64, 3), np.uint8)])


def test_unmirror_maps_boxes_and_outlines_back() -> None:
    polygon = np.array([[10, 5], [30, 5], [30, 15]], np.float32)
    back = _unmirror(Detection(box=(10.0, 5.0, 30.0, 15.0), conf=0.5, polygon=polygon), width=100)
    assert back.box == (70.0, 5.0, 90.0, 15.0)
    assert back.polygon.tolist() == [[90, 5], [70, 5], [70, 15]]


def test_merge_never_hides_less_than_either_pass() -> None:
    plain = [Detection(box=(100.0, 100.0, 200.0, 150.0), conf=0.6)]
    mirrored = [
        Detection(box=(95.0, 102.0, 205.0, 149.0), conf=0.4),
        Detection(box=(400.0, 50.0, 450.0, 75.0), conf=0.2),
    ]
    merged = _merge(plain, mirrored, iou=0.5, max_det=50)
    assert [d.box for d in merged] == [(95.0, 100.0, 205.0, 150.0), (400.0, 50.0, 450.0, 75.0)]
    assert merged[0].conf == 0.6


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("false", False, id="false"),
        pytest.param("0", False, id="zero"),
        pytest.param("yes", True, id="yes"),
    ],
)
def test_flip_setting(value: str, expected: bool) -> None:
    assert Settings.from_env({"PLATEMASK_FLIP": value}).detect.flip is expected


def test_flip_setting_refuses_nonsense() -> None:
    with pytest.raises(ConfigError, match="PLATEMASK_FLIP must be true or false"):
        Settings.from_env({"PLATEMASK_FLIP": "maybe"})
