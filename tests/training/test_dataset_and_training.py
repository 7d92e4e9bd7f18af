"""The training set builder on a tiny fixture, and training (with resume) on a tiny set."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from platemask.detect import Detection
from tests.support.synthetic import make_car_photo
from training.build_dataset import (
    CROP,
    INFERENCE_SIDE,
    Counts,
    HardExamples,
    Photo,
    _complete_labels,
    _hard_crops,
    build,
)
from training.mine import false_marks, missed_plates

# Open Images style names, as in the Roboflow export: <id>_jpg.rf.<hash>.jpg
KEPT, SAME_ID, SAME_PIXELS = "0a1b2c3d4e5f6071", "1122334455667788", "99aabbccddeeff00"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _export_repo(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A git repository whose history holds a Roboflow-style export that a later commit deleted."""
    repo = root / "repo"
    images: dict[str, np.ndarray] = {}
    for split, names in {"train": [KEPT, SAME_ID, SAME_PIXELS], "valid": ["7777777777777777"]}.items():
        (repo / "dataset" / split / "images").mkdir(parents=True)
        (repo / "dataset" / split / "labels").mkdir(parents=True)
        for seed, name in enumerate(names, start=len(images) * 10):
            photo = make_car_photo(seed=seed, size=(640, 480), view="front")
            images[name] = photo.image
            x1, y1, x2, y2 = photo.plate_box
            box = f"0 {(x1 + x2) / 1280:.6f} {(y1 + y2) / 960:.6f} {(x2 - x1) / 640:.6f} {(y2 - y1) / 480:.6f}\n"
            polygon = f"0 {x1 / 640:.6f} {y1 / 480:.6f} {x2 / 640:.6f} {y1 / 480:.6f} {x2 / 640:.6f} {y2 / 480:.6f}\n"
            # Two augmented copies of each photo; only one must be kept.
            for copy, label in (("aaaa", box), ("bbbb", polygon)):
                stem = f"{name}_jpg.rf.{copy}"
                cv2.imwrite(str(repo / "dataset" / split / "images" / f"{stem}.jpg"), photo.image)
                (repo / "dataset" / split / "labels" / f"{stem}.txt").write_text(label, encoding="utf-8")
    (repo / "dataset" / "data.yaml").write_text("nc: 1\nnames: ['plate']\n", encoding="utf-8")
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "export")
    _git(repo, "rm", "-rq", "dataset")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "drop the export")
    return repo / ".git", images


def _voc_repo(root: Path) -> Path:
    """A git repository holding a Pascal VOC export, as RobertLucian/license-plate-dataset does."""
    repo = root / "voc"
    photo = make_car_photo(seed=77, size=(1280, 720), view="rear")
    x1, y1, x2, y2 = photo.plate_box
    for folder in ("images", "annots"):
        (repo / "dataset" / "train" / folder).mkdir(parents=True)
    cv2.imwrite(str(repo / "dataset" / "train" / "images" / "ride.mp4#t=1.jpg"), photo.image)
    (repo / "dataset" / "train" / "annots" / "ride.mp4#t=1.xml").write_text(
        f"<annotation><object><name>license-plate</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object></annotation>",
        encoding="utf-8",
    )
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "voc export")
    return repo / ".git"


def _eval_set(root: Path, images: dict[str, np.ndarray]) -> Path:
    """An evaluation set holding one photo by Open Images id and another one resized under a new name."""
    folder = root / "platedata" / "set" / "images"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / f"{SAME_ID}_jpg.rf.zzzz.jpg"), images[SAME_ID])
    cv2.imwrite(str(folder / "renamed.jpg"), cv2.resize(images[SAME_PIXELS], (416, 416)))
    return root / "platedata"


SURE_UNBOXED, UNSURE = (400.0, 40.0, 460.0, 60.0), (100.0, 400.0, 150.0, 420.0)


def _teacher(image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
    """A stand-in for the default model: a plate no box holds, and one it is unsure of."""
    return [(SURE_UNBOXED, 0.8), (UNSURE, 0.2)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("dataset")
    _, images = _export_repo(root)
    _eval_set(root, images)
    _voc_repo(root)
    out = root / "out"
    return out, _build(root, out)


def _build(root: Path, out: Path, **options: object) -> Counts:
    """The builder on the fixture's repositories and evaluation set under ``root``."""
    return build(
        out,
        root / "repo" / ".git",
        synthetic=4,
        jp_share=1.0,
        dev_synthetic=3,
        eval_data=root / "platedata",
        teacher=_teacher,
        dashcam_git=root / "voc" / ".git",
        **options,
    )


def test_the_teacher_labels_plates_the_boxes_missed_and_paints_out_what_it_is_unsure_of() -> None:
    image = np.full((480, 640, 3), 200, np.uint8)
    photo = Photo(name="p", source="roboflow", image=image, boxes=[(205.0, 298.0, 298.0, 332.0)])
    counts = Counts()
    boxed_a_little_differently = ((200.0, 300.0, 300.0, 330.0), 0.9)
    completed = _complete_labels(photo, lambda image: [*_teacher(image), boxed_a_little_differently], counts)
    # The boxed plate is not labelled twice; the sure one is added; the unsure one is neither.
    assert completed.boxes == [(205.0, 298.0, 298.0, 332.0), SURE_UNBOXED]
    assert (completed.image[400:420, 100:150] == 114).all()
    assert (completed.image[40:60, 400:460] == 200).all()  # a labelled plate keeps its pixels
    assert (image == 200).all()  # the source photo is not changed in place
    assert counts.plates == {"roboflow: added by the teacher": 1, "roboflow: painted out, teacher unsure": 1}


def test_builder_keeps_one_copy_per_photo_and_drops_evaluation_photos(built) -> None:
    _, counts = built
    assert counts.dropped == {
        "roboflow: Open Images id in an evaluation set": 1,
        "roboflow: perceptual hash matches an evaluation photo": 1,
    }
    assert counts.photos["roboflow"] == 2  # KEPT (train) and the valid photo
    assert counts.photos["jp_pasted"] == 1  # every kept training photo again, with a Japanese plate
    assert counts.photos["synthetic"] == 4
    assert counts.photos["dashcam"] == 1 and counts.plates["dashcam"] == 1 + 1  # its box, and the teacher's
    # The teacher completes the labels of the real photos (not of the generated ones).
    assert counts.plates["roboflow: added by the teacher"] == 2
    assert counts.plates["roboflow: painted out, teacher unsure"] == 2


def test_real_photos_also_give_a_window_of_background_only(built) -> None:
    _, counts = built
    # Per real photo: one window per plate (two after the teacher), one at random, one with no plate.
    assert counts.crops["train/dashcam"] == 2 + 1 + 1


def test_builder_writes_crops_with_polygon_labels(built) -> None:
    out, _ = built
    images = sorted((out / "images" / "train").glob("*.jpg"))
    assert images
    labelled = 0
    for image in images:
        assert cv2.imread(str(image)).shape == (CROP, CROP, 3)
        for line in (out / "labels" / "train" / f"{image.stem}.txt").read_text(encoding="utf-8").splitlines():
            values = [float(v) for v in line.split()]
            assert values[0] == 0 and len(values) == 9  # class + four corners
            assert all(0.0 <= v <= 1.0 for v in values[1:])
            labelled += 1
    assert labelled >= 2 + 4  # at least one plate crop per plate photo
    assert "train: images/train" in (out / "data.yaml").read_text(encoding="utf-8")
    assert json.loads((out / "counts.json").read_text(encoding="utf-8"))["photos"]["synthetic"] == 4


def test_builder_writes_the_held_back_set_in_the_evaluation_format(built) -> None:
    out, _ = built
    lines = (out / "dev_synthetic_jp" / "gt.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    for line in lines:
        label = json.loads(line)
        image = cv2.imread(str(out / "dev_synthetic_jp" / label["image"]))
        assert image.shape[:2] == (label["height"], label["width"])
        x1, y1, x2, y2 = label["boxes"][0]
        assert 0 <= x1 < x2 <= label["width"] and 0 <= y1 < y2 <= label["height"]


def test_mining_finds_marks_on_no_plate_and_plates_left_visible() -> None:
    image = np.full((480, 640, 3), 200, np.uint8)
    image[400:420, 100:150] = 114  # painted out: the teacher was unsure there
    plates = [(100.0, 100.0, 160.0, 120.0), (300.0, 300.0, 360.0, 320.0)]
    photo = Photo(name="p", source="roboflow", image=image, boxes=plates)
    found = [
        Detection(box=(101.0, 101.0, 159.0, 119.0), conf=0.9),  # the first plate, hidden once padded
        Detection(box=(300.0, 300.0, 320.0, 320.0), conf=0.6),  # a third of the second: still readable
        Detection(box=(500.0, 50.0, 560.0, 70.0), conf=0.4),  # a sign
        Detection(box=(101.0, 401.0, 149.0, 419.0), conf=0.3),  # inside the painted-out region
    ]
    assert false_marks(photo, found) == [(500.0, 50.0, 560.0, 70.0)]
    assert missed_plates(photo, found, padding=0.25) == [plates[1]]


def test_a_review_by_eye_labels_plates_paints_out_the_unsure_and_keeps_the_rest_as_negatives(tmp_path: Path) -> None:
    record = {
        "plates": ["dashcam/f@20,20,80,40"],
        "unsure": ["dashcam/f@500,300,560,320"],
        "marks": [
            {"id": "dashcam/f@20,20,80,40", "photo": "dashcam/f", "box": [20.0, 20.0, 80.0, 40.0]},
            {"id": "dashcam/f@500,300,560,320", "photo": "dashcam/f", "box": [500.0, 300.0, 560.0, 320.0]},
            {"id": "dashcam/f@200,10,260,30", "photo": "dashcam/f", "box": [200.0, 10.0, 260.0, 30.0]},
        ],
        "missed": [{"photo": "roboflow/r", "box": [1.0, 2.0, 3.0, 4.0]}],
    }
    (tmp_path / "hard.json").write_text(json.dumps(record), encoding="utf-8")
    hard = HardExamples.load(tmp_path / "hard.json")
    assert hard.negatives == {"dashcam/f": [(200.0, 10.0, 260.0, 30.0)]}
    assert hard.missed == {"roboflow/r": [(1.0, 2.0, 3.0, 4.0)]}
    image = np.full((480, 640, 3), 200, np.uint8)
    photo = Photo(name="f", source="dashcam", image=image, boxes=[(100.0, 100.0, 160.0, 120.0)])
    completed = hard.complete(photo)
    assert completed.boxes == [(100.0, 100.0, 160.0, 120.0), (20.0, 20.0, 80.0, 40.0)]
    assert (completed.image[300:320, 500:560] == 114).all() and (completed.image[20:40, 20:80] == 200).all()
    assert (image == 200).all()  # the source photo is not changed in place
    other = Photo(name="g", source="dashcam", image=image, boxes=[])
    assert hard.complete(other).image is image


def test_the_builder_trains_on_hard_examples(built, tmp_path: Path) -> None:
    out, _ = built
    hard = HardExamples(
        negatives={"dashcam/ride.mp4#t=1": [(20.0, 20.0, 80.0, 40.0)]}, missed={f"roboflow/{KEPT}": [(1, 2, 3, 4)]}
    )
    counts = _build(out.parent, tmp_path / "out", hard=hard)
    assert counts.crops["train/dashcam: hard_negative"] == 1
    assert counts.crops["train/roboflow: hard_positive"] == 2
    assert len(list((tmp_path / "out" / "images" / "train").glob("*hard_*.jpg"))) == 3


def test_full_frames_write_each_photo_whole_at_inference_scale_with_every_plate(built, tmp_path: Path) -> None:
    out, _ = built
    hard = HardExamples(plates={"dashcam/ride.mp4#t=1": [(30.0, 30.0, 90.0, 50.0)]})
    counts = _build(out.parent, tmp_path / "frames", hard=hard, full_frames=True)
    # One sample per photo (no windows, no hard windows: a frame holds its hard examples).
    assert counts.crops["train/dashcam"] == 1 and counts.crops["train/synthetic"] + counts.crops["val/synthetic"] == 4
    assert not any("hard" in key for key in counts.crops)
    [frame] = (tmp_path / "frames" / "images" / "train").glob("*dashcam*.jpg")
    image = cv2.imread(str(frame))
    assert max(image.shape[:2]) == INFERENCE_SIDE and (image != 114).any(axis=2).mean() > 0.99  # whole, unpadded
    lines = (tmp_path / "frames" / "labels" / "train" / f"{frame.stem}.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 1 + 1  # its box, the teacher's plate, the plate found by eye


def test_a_hard_window_holds_the_whole_mark_and_labels_the_plates_beside_it() -> None:
    image = np.full((960, 1280, 3), 90, np.uint8)
    image[900:940, 1160:1240] = (0, 0, 255)  # the false mark: a red sign in a corner
    plate = (1000.0, 880.0, 1100.0, 920.0)
    photo = Photo(name="p", source="dashcam", image=image, boxes=[plate])
    hard = HardExamples(negatives={"dashcam/p": [(1160.0, 900.0, 1240.0, 940.0)]}, missed={"dashcam/p": [plate]})
    windows = list(_hard_crops(photo, hard))
    assert [(kind, k) for kind, k, _ in windows] == [("hard_negative", 0), ("hard_positive", 0), ("hard_positive", 1)]
    for _, _, (crop, boxes) in windows:
        assert crop.shape == (CROP, CROP, 3)
        # At inference scale (long side 640) the plate is 50 × 20 px; every window labels it.
        assert [tuple(round(b[2] - b[0]) for b in boxes), tuple(round(b[3] - b[1]) for b in boxes)] == [(50,), (20,)]
    red = (windows[0][2][0] == (0, 0, 255)).all(axis=2).sum()
    assert red == 40 * 20  # the whole sign (80 × 40 at half scale) is inside its window


@pytest.mark.model
def test_one_training_epoch_then_resume_from_its_checkpoint(built, tmp_path: Path) -> None:
    import torch

    from platemask.detect import platedet_onnx
    from training.recover import recover, save_checkpoint
    from training.train import _export, _finished, train

    out, _ = built
    start = save_checkpoint(recover(platedet_onnx()), tmp_path / "start.pt", "platedet.onnx")
    run = tmp_path / "runs" / "tiny"
    last = train(out / "data.yaml", run, epochs=2, imgsz=64, batch=4, device="cpu", weights=start, fraction=1.0)
    assert _finished(last)
    first_epoch = run / "weights" / "epoch0.pt"  # ultralytics numbers epoch checkpoints from 0
    assert not _finished(first_epoch)  # an epoch checkpoint keeps its optimizer: it can be resumed
    # A session stopped after epoch 1: its last.pt is that checkpoint, and train() resumes it.
    last.write_bytes(first_epoch.read_bytes())
    resumed = train(out / "data.yaml", run, epochs=2, imgsz=64, batch=4, device="cpu", weights=start)
    checkpoint = torch.load(resumed, map_location="cpu", weights_only=False)
    assert _finished(resumed) and checkpoint["train_args"]["epochs"] == 2
    trained = checkpoint["model"].float().state_dict()
    initial = torch.load(start, map_location="cpu", weights_only=False)["model"].float().state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial if k.endswith("conv.weight"))
    # Shipping: the optimizer stripped, the class named as the product names it.
    shipped = tmp_path / "plates.pt"
    assert _export(resumed, shipped) == 0
    exported = torch.load(shipped, map_location="cpu", weights_only=False)
    assert exported["optimizer"] is None and exported["model"].names == {0: "plate"}
    assert shipped.stat().st_size < 25e6


@pytest.mark.inference
def test_mining_with_the_built_in_model_reports_an_unboxed_plate_and_keeps_an_earlier_review(tmp_path: Path) -> None:
    from platemask.config import DetectOptions
    from platemask.detect import PlateDetector
    from tests.support.synthetic import render_random_plate
    from training.mine import _earlier_review, _write_sheets, mine

    car = make_car_photo(seed=5, size=(1280, 960), view="rear")
    image = car.image.copy()
    # A second plate, of a car behind, that nobody boxed: what the dash-camera labels left out.
    plate, _ = render_random_plate(np.random.default_rng(3), width=160)
    image[60 : 60 + plate.shape[0], 1000:1160] = plate
    photo = Photo(name="frame", source="dashcam", image=image, boxes=[tuple(map(float, car.plate_box))])
    detector = PlateDetector(DetectOptions(conf=0.25))
    marks, missed, tiles = mine([photo], detector, padding=0.25, sheets=True)
    assert missed == []  # the labelled plate is hidden
    [mark] = marks
    x1, y1, x2, y2 = mark["box"]
    assert abs(x1 - 1000) < 8 and abs(y1 - 60) < 8 and abs(x2 - 1160) < 8 and abs(y2 - 60 - plate.shape[0]) < 8
    assert mark["photo"] == "dashcam/frame" and mark["id"].startswith("dashcam/frame@")
    # The reviewer called it a real plate; mined again, the review holds for the mark found again only.
    out = tmp_path / "hard.json"
    out.write_text(json.dumps({"plates": [mark["id"], "dashcam/gone@1,2,3,4"], "unsure": []}), encoding="utf-8")
    assert _earlier_review(out, {mark["id"]}) == {"plates": [mark["id"]], "unsure": []}
    _write_sheets(tmp_path / "sheets", tiles)
    assert cv2.imread(str(tmp_path / "sheets" / "sheet-000.png")).shape == (4 * 240, 5 * 240, 3)
    assert json.loads((tmp_path / "sheets" / "index.json").read_text(encoding="utf-8")) == {"0": mark["id"]}
