"""The car-centred evaluation sets, derived from the labelled development photos (never trained on).

A used-car site's day is mostly close-ups and photos with no plate at all, while the shared sets
are street and parking-lot photos. This script derives, deterministically, into ``build/evaluation``:

- ``dev_synthetic_jp``: the held-back generated Japanese cars (``training.build_dataset``'s seeds);
- ``closeups``: crops of openalpr_br and the synthetic cars around a labelled plate, so that the
  plate is half or a quarter of the photo wide (a plate close-up, a car from near), scaled to a
  long side of 1024 px like a site's photo;
- ``plate_free_crops``: from every development photo, its largest part that keeps clear of every
  labelled plate (each box grown by its own size on every side): a wheel, a door, the lot, the sky;
- ``no_plate_scenes``: generated interiors, wheel close-ups, showrooms and empty lots.

Each folder has a ``gt.jsonl`` in the shared sets' format (shared/platedata/README.md); the two
plate-free sets have no boxes, so every mask on them is an extra mask. The photos are evaluation
photos like the ones they are cut from: never train on them.

Run: .venv/bin/python scripts/evaluation_sets.py [--out build/evaluation]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]

from tests.support.synthetic import make_scene  # noqa: E402
from training.build_dataset import write_dev_set  # noqa: E402

DATA = REPO.parent / "shared" / "platedata"
OUT = REPO / "build" / "evaluation"
LONG_SIDE = 1024  # what a used-car site's photo is scaled to
CLOSEUP_SHARES = (0.5, 0.25)  # plate width / photo width
MIN_CLOSEUP_PLATE = 40  # px: a smaller plate enlarged to half the photo is only blur
MIN_FREE_SIDE = 128  # px of the source photo
SCENES = 60
SCENE_SEEDS = range(400_000, 400_000 + SCENES)  # the training set's scenes are 300,000 on
Box = tuple[float, float, float, float]

__all__ = ["OUT", "SET_NAMES", "build"]
SET_NAMES = ("dev_synthetic_jp", "closeups", "plate_free_crops", "no_plate_scenes")


def build(out: Path = OUT, data: Path = DATA) -> list[Path]:
    """Write the four sets (again) and return their folders."""
    synthetic = out / "dev_synthetic_jp"
    if not (synthetic / "gt.jsonl").is_file():
        write_dev_set(synthetic, 120)
    sources = [data / "openalpr_br", data / "roboflow_openimages_f8vsn", synthetic]
    _write_set(out / "closeups", _closeups([sources[0], sources[2]]))
    _write_set(out / "plate_free_crops", _plate_free_crops(sources))
    _write_set(out / "no_plate_scenes", _scenes())
    return [out / name for name in SET_NAMES]


def _labelled(folder: Path) -> Iterator[tuple[str, np.ndarray, list[Box]]]:
    for line in (folder / "gt.jsonl").read_text(encoding="utf-8").splitlines():
        label = json.loads(line)
        image = cv2.imread(str(folder / label["image"]), cv2.IMREAD_COLOR)
        if image is not None:
            yield f"{folder.name}-{Path(label['image']).stem}", image, [tuple(map(float, b)) for b in label["boxes"]]


def _closeups(folders: Sequence[Path]) -> Iterator[tuple[str, np.ndarray, list[Box]]]:
    rng = np.random.default_rng(2812)
    for folder in folders:
        for name, image, boxes in _labelled(folder):
            height, width = image.shape[:2]
            plate = max(boxes, key=lambda b: b[2] - b[0])
            plate_w = plate[2] - plate[0]
            if plate_w < MIN_CLOSEUP_PLATE:
                continue
            for share in CLOSEUP_SHARES:
                crop_w = plate_w / share
                crop_h = crop_w * 3 / 4
                if crop_w > width or crop_h > height:
                    continue
                # The plate anywhere in the middle half of the crop, not always dead centre.
                left = plate[0] - (crop_w - plate_w) * rng.uniform(0.25, 0.75)
                top = (plate[1] + plate[3]) / 2 - crop_h * rng.uniform(0.3, 0.7)
                left = min(max(left, 0.0), width - crop_w)
                top = min(max(top, 0.0), height - crop_h)
                window = (round(left), round(top), round(left + crop_w), round(top + crop_h))
                yield f"{name}-{round(share * 100)}", *_cut(image, boxes, window)


def _plate_free_crops(folders: Sequence[Path]) -> Iterator[tuple[str, np.ndarray, list[Box]]]:
    for folder in folders:
        for name, image, boxes in _labelled(folder):
            window = _largest_free_window(image.shape[1], image.shape[0], boxes)
            if window is not None:
                yield name, _cut(image, [], window)[0], []


def _largest_free_window(width: int, height: int, boxes: Sequence[Box]) -> tuple[int, int, int, int] | None:
    """The largest of the strips left, right, above and below every grown plate box, at most 2:1."""
    grown = [(x1 - (x2 - x1), y1 - (y2 - y1), x2 + (x2 - x1), y2 + (y2 - y1)) for x1, y1, x2, y2 in boxes]
    if not grown:
        return 0, 0, width, height
    left = int(max(0, min(g[0] for g in grown)))
    right = int(min(width, np.ceil(max(g[2] for g in grown))))
    top = int(max(0, min(g[1] for g in grown)))
    bottom = int(min(height, np.ceil(max(g[3] for g in grown))))
    strips = [(0, 0, left, height), (right, 0, width, height), (0, 0, width, top), (0, bottom, width, height)]
    strips = [_at_most_two_to_one(s) for s in strips if min(s[2] - s[0], s[3] - s[1]) >= MIN_FREE_SIDE]
    return max(strips, key=lambda s: (s[2] - s[0]) * (s[3] - s[1])) if strips else None


def _at_most_two_to_one(window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = window
    w, h = x2 - x1, y2 - y1
    if w > 2 * h:
        x1 += (w - 2 * h) // 2
        x2 = x1 + 2 * h
    elif h > 2 * w:
        y1 += (h - 2 * w) // 2
        y2 = y1 + 2 * w
    return x1, y1, x2, y2


def _cut(image: np.ndarray, boxes: Sequence[Box], window: tuple[int, int, int, int]) -> tuple[np.ndarray, list[Box]]:
    """The window scaled to a long side of LONG_SIDE, with the boxes that lie in it (clipped), moved along."""
    x1, y1, x2, y2 = window
    crop = image[y1:y2, x1:x2]
    gain = LONG_SIDE / max(crop.shape[:2])
    size = (round(crop.shape[1] * gain), round(crop.shape[0] * gain))
    scaled = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if gain < 1 else cv2.INTER_CUBIC)
    kept = []
    for bx1, by1, bx2, by2 in boxes:
        cx1, cy1, cx2, cy2 = max(bx1, x1), max(by1, y1), min(bx2, x2), min(by2, y2)
        if cx2 > cx1 and cy2 > cy1:
            kept.append(tuple((v - o) * gain for v, o in zip((cx1, cy1, cx2, cy2), (x1, y1, x1, y1), strict=True)))
    return scaled, kept


def _scenes() -> Iterator[tuple[str, np.ndarray, list[Box]]]:
    for seed in SCENE_SEEDS:
        yield f"scene-{seed}", make_scene(seed, size=(1024, 768)), []


def _write_set(folder: Path, photos: Iterator[tuple[str, np.ndarray, list[Box]]]) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for name, image, boxes in photos:
        path = f"images/{name}.jpg"
        cv2.imwrite(str(folder / path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        height, width = image.shape[:2]
        rounded = [[round(v, 1) for v in box] for box in boxes]
        lines.append(json.dumps({"image": path, "boxes": rounded, "width": width, "height": height}))
    (folder / "gt.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared development sets")
    args = parser.parse_args(argv)
    for folder in build(args.out, args.data):
        count = len((folder / "gt.jsonl").read_text(encoding="utf-8").splitlines())
        print(f"{folder}: {count} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
