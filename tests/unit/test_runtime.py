"""The direct OpenVINO / ONNX Runtime path: same plates as ultralytics, without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from platemask.detect import platedet_onnx, prepared_model_dir
from platemask.runtime import SegmentationModel, decode, letterbox
from tests.support.synthetic import make_car_photo

SIZES = [(1280, 960), (640, 480), (2000, 1000), (800, 1200), (4000, 3000)]


@pytest.mark.model
@pytest.mark.parametrize(
    "path", [pytest.param(prepared_model_dir, id="openvino"), pytest.param(platedet_onnx, id="onnx")]
)
def test_same_plates_as_ultralytics_on_generated_photos(path) -> None:
    from ultralytics import YOLO

    model_path = Path(path())
    direct = SegmentationModel(model_path)
    reference = YOLO(str(model_path), task="segment")
    compared = 0
    for seed, size in enumerate(SIZES * 2):
        image = make_car_photo(seed=seed, size=size).image
        found = direct.predict(image, conf=0.10, iou=0.5, max_det=50)
        [result] = reference.predict(image, conf=0.10, iou=0.5, max_det=50, verbose=False)
        boxes, confs = result.boxes.xyxy.numpy(), result.boxes.conf.numpy()
        assert len(found) == len(boxes), f"seed {seed}"
        for detection, box, conf in zip(found, boxes, confs, strict=True):
            assert np.abs(np.array(detection.box) - box).max() <= 1.0
            assert abs(detection.conf - conf) < 1e-3
            assert detection.polygon is not None and len(detection.polygon) >= 3
            compared += 1
    assert compared >= len(SIZES)


@pytest.mark.model
@pytest.mark.parametrize(
    "path", [pytest.param(prepared_model_dir, id="openvino"), pytest.param(platedet_onnx, id="onnx")]
)
def test_boxes_alone_are_the_boxes_found_with_outlines(path, tmp_path: Path) -> None:
    """Without outlines the prototype branch is left out; the plates found stay exactly the same."""
    model_path = Path(path())
    with_outlines = SegmentationModel(model_path, tmp_path)
    boxes_only = SegmentationModel(model_path, tmp_path, outlines=False)
    found = 0
    for seed, size in enumerate(SIZES):
        image = make_car_photo(seed=seed, size=size).image
        full = with_outlines.predict(image, conf=0.10, iou=0.5, max_det=50)
        light = boxes_only.predict(image, conf=0.10, iou=0.5, max_det=50)
        assert len(light) == len(full), f"seed {seed}"
        for a, b in zip(light, full, strict=True):
            assert np.abs(np.array(a.box) - np.array(b.box)).max() <= 0.5 and abs(a.conf - b.conf) < 1e-3
        assert all(d.polygon is None for d in light) and all(d.polygon is not None for d in full)
        found += len(full)
    assert found >= len(SIZES)


@pytest.mark.model
def test_the_built_in_model_looks_at_a_photo_only_as_large_as_it_needs(tmp_path: Path) -> None:
    """The prepared export takes any input size: a 4:3 photo is padded to 640 × 480, not 640 × 640."""
    seen: list[tuple[int, ...]] = []
    model = SegmentationModel(prepared_model_dir(), tmp_path, outlines=False)
    run = model._run
    model._run = lambda batch: seen.append(batch.shape) or run(batch)
    for size in [(1280, 960), (960, 1280), (1920, 1080), (1000, 1000)]:
        assert model.predict(make_car_photo(seed=3, size=size).image, conf=0.1, iou=0.5, max_det=50)
    assert seen == [(1, 3, 480, 640), (1, 3, 640, 480), (1, 3, 384, 640), (1, 3, 640, 640)]


def test_letterbox_pads_only_to_the_stride_when_the_model_takes_any_size() -> None:
    image = np.full((280, 600, 3), 200, np.uint8)
    tensor, gain, (left, top) = letterbox(image, (640, 640), stride=32)
    assert tensor.shape == (1, 3, 320, 640)  # 299 rows once scaled, padded to 320
    assert gain == pytest.approx(640 / 600) and (left, top) == (0, 10)
    assert tensor[0, :, 5, 320] == pytest.approx(114 / 255) and tensor[0, :, 160, 320] == pytest.approx(200 / 255)


def test_letterbox_keeps_the_aspect_and_centres() -> None:
    image = np.full((300, 600, 3), 200, np.uint8)
    tensor, gain, (left, top) = letterbox(image, (640, 640))
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    assert gain == pytest.approx(640 / 600) and (left, top) == (0, 160)
    assert tensor[0, :, 0, 0] == pytest.approx(114 / 255)  # grey border
    assert tensor[0, :, 320, 320] == pytest.approx(200 / 255)


def test_decode_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    # Rows: cx, cy, w, h, score (one class), 2 mask weights; anchors along the second axis.
    anchors = np.array(
        [
            [100, 100, 40, 20, 0.9, 1, 1],
            [102, 101, 40, 20, 0.8, 1, 1],  # overlaps the first: suppressed
            [300, 300, 40, 20, 0.4, 1, 1],
            [500, 500, 40, 20, 0.05, 1, 1],  # under the threshold
        ],
        np.float32,
    ).T
    kept = decode(anchors, nc=1, conf=0.1, iou=0.5, max_det=10)
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.4])
    assert kept[0, :4].tolist() == [80, 90, 120, 110]
    assert kept.shape[1] == 6 + 2


def test_decode_never_suppresses_across_classes_and_keeps_disjoint_boxes() -> None:
    # Rows: cx, cy, w, h, score of class 0, score of class 1; the first two overlap but differ in class.
    anchors = np.array(
        [
            [100, 100, 40, 20, 0.9, 0.0],
            [101, 100, 40, 20, 0.0, 0.8],
            [300, 300, 40, 20, 0.7, 0.0],
            [101, 101, 40, 20, 0.6, 0.0],  # overlaps the first, same class: suppressed
        ],
        np.float32,
    ).T
    kept = decode(anchors, nc=2, conf=0.1, iou=0.5, max_det=10)
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert kept[:, 5].tolist() == [0, 1, 0]
    assert decode(anchors, nc=2, conf=0.1, iou=0.5, max_det=2)[:, 4].tolist() == pytest.approx([0.9, 0.8])


@pytest.mark.inference
def test_a_car_task_never_imports_torch_or_ultralytics() -> None:
    """The default model runs through OpenVINO: photo work must not pay torch's import."""
    code = (
        "import sys\n"
        "from platemask.config import DetectOptions\n"
        "from platemask.detect import PlateDetector\n"
        "from tests.support.synthetic import make_car_photo\n"
        "found = PlateDetector(DetectOptions()).detect([make_car_photo(seed=1).image])\n"
        "assert found[0], 'no plate found'\n"
        "print(sorted(m for m in ('torch', 'ultralytics', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_outline_holds_every_piece_of_the_mask() -> None:
    """A plate's mask in two pieces (a clean rectangle and a small ragged blob): both are outlined."""
    from platemask.runtime import _outline

    protos = np.full((1, 160, 160), -1.0, np.float32)
    protos[0, 40:50, 20:55] = 1.0  # the plate, 4 corners once traced
    protos[0, 44:47, 60:63] = 1.0  # a small piece beside it, inside the same box
    protos[0, 45, 61] = -1.0  # ragged: more contour points than the rectangle
    box = np.float32([4 * 18, 4 * 38, 4 * 66, 4 * 52])  # letterbox pixels (protos are 1/4 scale)
    polygon = _outline(protos, np.float32([1.0]), box, (640, 640), gain=1.0, pad=(0, 0), photo_shape=(640, 640))
    assert polygon is not None
    assert polygon[:, 0].min() <= 4 * 20 + 1 and polygon[:, 0].max() >= 4 * 62


@pytest.mark.inference
def test_car_tasks_starting_together_on_a_cold_model_cache_all_load(tmp_path: Path) -> None:
    # Each process compiles the plate model and both text models into one empty cache, at once.
    script = (
        "import numpy as np\n"
        "from platemask.config import DetectOptions, SecondLookOptions\n"
        "from platemask.detect import PlateDetector\n"
        "from platemask.second_look import SecondLook\n"
        "detector, look = PlateDetector(DetectOptions()), SecondLook(SecondLookOptions())\n"
        "detector.load_async().result(); look.load_async().result()\n"
        "image = np.full((480, 640, 3), 128, np.uint8)\n"
        "print('ready', len(look.look(image, detector.detect([image])[0], detector, 0.25).masks))\n"
    )
    env = {**os.environ, "PLATEMASK_MODEL_CACHE": str(tmp_path / "cache")}
    tasks = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    results = [(task.wait(timeout=300), *task.communicate()) for task in tasks]
    for returncode, out, err in results:
        assert returncode == 0 and out.decode().strip() == "ready 0", err.decode()[-2000:]
    assert list((tmp_path / "cache").glob("*.blob"))  # and the cache was written for later tasks


@pytest.mark.parametrize(
    ("value", "threads"),
    [pytest.param(None, 1, id="default"), pytest.param("4", 4, id="four"), pytest.param("0", None, id="auto")],
)
def test_models_compile_unpinned_with_the_configured_threads(monkeypatch, value, threads) -> None:
    from platemask.runtime import cpu_config

    if value is None:
        monkeypatch.delenv("PLATEMASK_INFERENCE_THREADS", raising=False)
    else:
        monkeypatch.setenv("PLATEMASK_INFERENCE_THREADS", value)
    config = cpu_config()
    assert config["ENABLE_CPU_PINNING"] is False
    assert config.get("INFERENCE_NUM_THREADS") == threads


@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_bad_thread_count_is_a_model_error_naming_the_setting(monkeypatch, value) -> None:
    from platemask.errors import ModelError
    from platemask.runtime import cpu_config

    monkeypatch.setenv("PLATEMASK_INFERENCE_THREADS", value)
    with pytest.raises(ModelError, match="PLATEMASK_INFERENCE_THREADS"):
        cpu_config()


@pytest.mark.inference
def test_the_compiled_plate_model_runs_one_unpinned_thread(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PLATEMASK_INFERENCE_THREADS", raising=False)
    from platemask.detect import default_model_path
    from platemask.runtime import compile_openvino, ir_file

    compiled = compile_openvino(ir_file(default_model_path()), tmp_path)
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("ENABLE_CPU_PINNING") is False


def _plate_ir() -> Path:
    from platemask.detect import default_model_path
    from platemask.runtime import ir_file

    return ir_file(default_model_path())


@pytest.mark.inference
def test_a_later_process_imports_the_compiled_model_and_gets_the_same_plates(tmp_path: Path) -> None:
    from platemask.runtime import cached_file, compile_openvino, letterbox

    tensor = letterbox(make_car_photo(seed=3).image, (640, 640))[0]
    first = compile_openvino(_plate_ir(), tmp_path)
    blob = cached_file(_plate_ir(), ".blob", tmp_path)
    assert blob is not None and blob.stat().st_size > 1_000_000
    before = blob.stat().st_mtime_ns
    imported = compile_openvino(_plate_ir(), tmp_path)
    assert blob.stat().st_mtime_ns == before  # imported, not compiled and written again
    expected, got = first.create_infer_request().infer({0: tensor}), imported.create_infer_request().infer({0: tensor})
    for port in first.outputs:
        np.testing.assert_array_equal(expected[port], got[imported.outputs[first.outputs.index(port)]])


@pytest.mark.inference
def test_a_damaged_blob_is_compiled_again_and_replaced(tmp_path: Path) -> None:
    from platemask.runtime import cached_file, compile_openvino

    blob = cached_file(_plate_ir(), ".blob", tmp_path)
    assert blob is not None
    blob.write_bytes(b"not a compiled model")
    compiled = compile_openvino(_plate_ir(), tmp_path)
    assert compiled.create_infer_request() is not None
    assert blob.stat().st_size > 1_000_000


@pytest.mark.inference
def test_without_a_usable_cache_folder_models_still_compile(tmp_path: Path) -> None:
    from platemask.runtime import cached_file, compile_openvino

    cache = tmp_path / "taken"
    cache.write_text("a file where the cache folder should be")
    assert cached_file(_plate_ir(), ".blob", cache) is None
    assert compile_openvino(_plate_ir(), cache).create_infer_request() is not None
    assert cache.read_text() == "a file where the cache folder should be"


def test_a_replaced_model_or_another_setting_never_meets_an_old_blob(tmp_path: Path, monkeypatch) -> None:
    from platemask.runtime import cached_file

    model = tmp_path / "plates.onnx"
    model.write_bytes(b"one model")
    name = cached_file(model, ".blob", tmp_path / "cache")
    assert cached_file(model, ".blob", tmp_path / "cache") == name
    model.write_bytes(b"another, longer model")
    assert cached_file(model, ".blob", tmp_path / "cache") != name
    changed = cached_file(model, ".blob", tmp_path / "cache")
    monkeypatch.setenv("PLATEMASK_INFERENCE_THREADS", "2")
    assert cached_file(model, ".blob", tmp_path / "cache") != changed


@pytest.mark.inference
def test_the_recogniser_reads_the_same_characters_from_the_cache(tmp_path: Path) -> None:
    from platemask.runtime import cached_file
    from platemask.second_look import _characters, text_model_path

    path = text_model_path("ch_PP-OCRv4_rec_infer.onnx")
    read = _characters(path, tmp_path)
    kept = cached_file(path, ".characters.json", tmp_path)
    assert kept is not None and kept.is_file()
    assert len(read) > 6000 and _characters(path, tmp_path) == read


def test_a_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    from platemask.errors import ModelError
    from platemask.runtime import compile_openvino

    with pytest.raises(ModelError, match=r"cannot load model .*nope\.xml"):
        compile_openvino(tmp_path / "nope.xml", tmp_path / "cache")
