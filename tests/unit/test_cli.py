"""``platemask mask-dir`` with the real default model on generated car photos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.synthetic import make_car_photo, photo_jpeg

PLATEMASK = str(Path(sys.executable).with_name("platemask"))


@pytest.fixture
def photo_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int, int, int]]]:
    folder = tmp_path / "in"
    (folder / "car-a").mkdir(parents=True)
    boxes = {}
    for seed, name in ((1, "car-a/1.jpg"), (2, "car-a/2.jpg"), (3, "3.jpg")):
        photo = make_car_photo(seed, size=(1280, 960), view="front", style="private")
        (folder / name).write_bytes(photo_jpeg(photo.image, quality=90))
        boxes[name] = photo.plate_box
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return folder, boxes


@pytest.mark.inference
def test_mask_dir_masks_every_image_into_the_same_relative_path(photo_dir, tmp_path: Path) -> None:
    folder, boxes = photo_dir
    out = tmp_path / "out"
    result = subprocess.run(
        [PLATEMASK, "mask-dir", str(folder), str(out), "--no-banner"],
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 1  # one broken image: reported, the others done
    assert "broken.jpg: invalid_image" in result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("4 images: 3 masked,") and "1 errors" in summary
    for name, (x1, y1, x2, y2) in boxes.items():
        masked = cv2.imread(str(out / name))
        plate = masked[y1:y2, x1:x2].astype(int)
        assert (np.abs(plate - [43, 43, 43]).max(axis=2) < 16).mean() > 0.9, name
        corner = cv2.imread(str(folder / name))[-60:, -200:].astype(int)
        assert np.abs(masked[-60:, -200:].astype(int) - corner).mean() < 6  # --no-banner: corner untouched
    assert not (out / "notes.txt").exists() and not (out / "broken.jpg").exists()


@pytest.mark.inference
def test_mask_dir_style_and_banner(photo_dir, tmp_path: Path) -> None:
    folder, boxes = photo_dir
    out = tmp_path / "out"
    result = subprocess.run(
        [PLATEMASK, "mask-dir", str(folder), str(out), "--style", "pixelate"], capture_output=True, check=False
    )
    assert result.returncode == 1  # broken.jpg; the three car photos are done
    x1, y1, x2, y2 = boxes["3.jpg"]
    source, masked = cv2.imread(str(folder / "3.jpg")).astype(int), cv2.imread(str(out / "3.jpg")).astype(int)
    assert np.abs(masked[y1:y2, x1:x2] - source[y1:y2, x1:x2]).mean() > 10  # pixelated, not filled
    assert not (np.abs(masked[y1:y2, x1:x2] - [43, 43, 43]).max(axis=2) < 16).mean() > 0.5
    assert np.abs(masked[-60:, -200:] - source[-60:, -200:]).mean() > 20  # the banner, bottom-right


def test_bad_arguments_exit_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [PLATEMASK, "mask-dir", str(tmp_path), str(tmp_path / "o")],
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 1 and "no .jpg/.jpeg/.png files" in result.stderr
    result = subprocess.run(
        [PLATEMASK, "mask-dir", "a", "b", "--style", "glitter"],
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.parametrize(("mode", "hidden"), [("mask", True), ("off", False)])
@pytest.mark.inference
def test_mask_dir_second_look(tmp_path: Path, mode: str, hidden: bool, platedet_model: str) -> None:
    # A plate platedet misses at full size (tests/unit/test_second_look.py): only the second look hides it.
    photo = make_car_photo(seed=200041, size=(1024, 768))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "car.jpg").write_bytes(photo_jpeg(photo.image, quality=95))
    result = subprocess.run(
        [
            *(PLATEMASK, "mask-dir", str(tmp_path / "in"), str(tmp_path / "out"), "--no-banner"),
            *("--second-look", mode, "--model", platedet_model, "--conf", "0.10"),
        ],
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    x1, y1, x2, y2 = photo.plate_box
    plate = cv2.imread(str(tmp_path / "out" / "car.jpg"))[y1:y2, x1:x2].astype(int)
    assert bool((np.abs(plate - [43, 43, 43]).max(axis=2) < 16).mean() > 0.9) is hidden
    assert result.stdout.strip().splitlines()[-1].startswith(f"1 images: 1 masked, {int(hidden)} plates,")
