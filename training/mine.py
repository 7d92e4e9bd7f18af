"""Mine hard examples: what a trained plate model gets wrong on its own training photos.

Runs a model (by default the built-in one, at a threshold below its default) on every real
training photo, whole, as production sees it, and records in ``training/hard_examples.json``:

- ``marks``: boxes it marks that overlap no plate label and no painted-out region: shop
  signs, headlights, facades. The labels are incomplete (the dash-camera frames box only some
  of the plates in view), so some of these are real plates nobody boxed: ``--sheets`` draws
  every mark on numbered contact sheets to be looked at by eye, and the ids of real plates go
  into the file's ``plates`` list (they become labels), those too small or dark to tell into
  ``unsure`` (painted out); the review is kept when the file is mined again;
- ``missed``: labelled plates its padded masks leave visible.

``make dataset`` (training/build_dataset.py) then adds a window around each mark that holds no
plate (a hard negative) and two around each missed plate to the training set.

Run: .venv/bin/python -m training.mine --roboflow-git ... --dashcam-git ... [--sheets /tmp/sheets]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from platemask.config import DetectOptions, RenderOptions
from platemask.detect import Detection, PlateDetector
from platemask.second_look import overlap_of_smaller
from training.build_dataset import (
    EVAL_DATA,
    HARD_EXAMPLES,
    Box,
    Counts,
    Photo,
    default_teacher,
    real_photos,
)

MINING_CONF = 0.25  # below the default threshold: near misses are worth training against too
HIDDEN = 0.90  # share of a plate's box its masks must cover (scripts/evaluate.py's rule)
LABEL_OVERLAP = 0.3  # a mark overlapping a label by more (of the smaller box) is that plate
PAINTED = 114  # the grey the builder paints regions out with


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    detector = PlateDetector(DetectOptions(model=args.model, conf=args.conf))
    photos = real_photos(args.roboflow_git, args.dashcam_git, args.eval_data, default_teacher(), Counts(), args.limit)
    training = (photo for split, photo in photos if split == "train")
    marks, missed, tiles = mine(training, detector, args.padding, sheets=args.sheets is not None)
    review = _earlier_review(args.out, {item["id"] for item in marks})
    record = {
        "model": args.model or "built-in",
        "conf": args.conf,
        "padding": args.padding,
        **review,
        "marks": marks,
        "missed": missed,
    }
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    partial.replace(args.out)
    if args.sheets:
        _write_sheets(args.sheets, tiles)
    reviewed = len(review["plates"]) + len(review["unsure"])
    print(f"{len(marks)} marks on no labelled plate ({reviewed} reviewed already), {len(missed)} plates missed")
    return 0


def mine(
    photos: Iterable[Photo], detector: PlateDetector, padding: float, sheets: bool = False
) -> tuple[list[dict], list[dict], list[tuple[str, np.ndarray]]]:
    """The marks on no labelled plate (with ids), the missed plates, and a tile per mark if ``sheets``."""
    marks: list[dict] = []
    missed: list[dict] = []
    tiles: list[tuple[str, np.ndarray]] = []
    for photo in photos:
        [found] = detector.detect([photo.image])  # the whole photo, as production sees it
        key = f"{photo.source}/{photo.name}"
        for box in false_marks(photo, found):
            item = {"id": f"{key}@" + ",".join(str(round(v)) for v in box), "photo": key, "box": _rounded(box)}
            marks.append(item)
            if sheets:
                tiles.append((item["id"], _tile(photo, box)))
        missed += [{"photo": key, "box": _rounded(box)} for box in missed_plates(photo, found, padding)]
    return marks, missed, tiles


def false_marks(photo: Photo, found: Sequence[Detection]) -> list[Box]:
    """Boxes the model marked that hold no labelled plate and lie outside painted-out regions."""
    marks = []
    for detection in found:
        box = tuple(float(v) for v in detection.box)
        if any(overlap_of_smaller(box, label) > LABEL_OVERLAP for label in photo.boxes):
            continue
        x1, y1, x2, y2 = (max(round(v), 0) for v in box)
        region = photo.image[y1:y2, x1:x2]
        if region.size and (region == PAINTED).all(axis=2).mean() > 0.5:
            continue  # the teacher was unsure here: neither plate nor background
        marks.append(box)
    return marks


def missed_plates(photo: Photo, found: Sequence[Detection], padding: float) -> list[Box]:
    """Labelled plates that the padded masks of ``found`` leave more than 10 % visible."""
    height, width = photo.image.shape[:2]
    mask = np.zeros((height, width), bool)
    for detection in found:
        x1, y1, x2, y2 = detection.padded(padding, width, height)
        mask[y1:y2, x1:x2] = True
    missed = []
    for box in photo.boxes:
        x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
        x2, y2 = min(max(int(np.ceil(box[2])), x1 + 1), width), min(max(int(np.ceil(box[3])), y1 + 1), height)
        if mask[y1:y2, x1:x2].mean() < HIDDEN:
            missed.append(box)
    return missed


def _rounded(box: Box) -> list[float]:
    return [round(float(v), 1) for v in box]


def _earlier_review(out: Path, ids: set[str]) -> dict[str, list[str]]:
    """The ids an earlier review called real plates or unsure, for the marks found again."""
    earlier = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    return {kind: sorted(set(earlier.get(kind, [])) & ids) for kind in ("plates", "unsure")}


def _tile(photo: Photo, box: Box, size: int = 240) -> np.ndarray:
    """The mark (red) with twice its size of context on every side and the labelled plates (green), ``size``²."""
    height, width = photo.image.shape[:2]
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * 5 + 40
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    right, bottom = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
    scale = size / max(right - left, bottom - top)
    piece = cv2.resize(photo.image[top:bottom, left:right], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for outline, colour in [*((label, (0, 200, 0)) for label in photo.boxes), (box, (0, 0, 255))]:
        corners = [(int((outline[0] - left) * scale), int((outline[1] - top) * scale))]
        corners.append((int((outline[2] - left) * scale), int((outline[3] - top) * scale)))
        cv2.rectangle(piece, corners[0], corners[1], colour, 2)
    tile = np.full((size, size, 3), 40, np.uint8)
    tile[: piece.shape[0], : piece.shape[1]] = piece[:size, :size]
    return tile


def _write_sheets(folder: Path, tiles: list[tuple[str, np.ndarray]], columns: int = 5, rows: int = 4) -> None:
    """Numbered contact sheets of the marks and an index (number → id) to review them by eye."""
    folder.mkdir(parents=True, exist_ok=True)
    per_sheet = columns * rows
    index = {}
    for start in range(0, len(tiles), per_sheet):
        chunk = tiles[start : start + per_sheet]
        size = chunk[0][1].shape[0]
        sheet = np.full((rows * size, columns * size, 3), 0, np.uint8)
        for k, (item_id, tile) in enumerate(chunk):
            number = start + k
            index[number] = item_id
            r, c = divmod(k, columns)
            cell = sheet[r * size : (r + 1) * size, c * size : (c + 1) * size]
            cell[:] = tile
            cv2.putText(cell, str(number), (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
        cv2.imwrite(str(folder / f"sheet-{start // per_sheet:03d}.png"), sheet)
    (folder / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roboflow-git", type=Path, help="git directory of komsait/License-Plate-Detector")
    parser.add_argument("--dashcam-git", type=Path, help="git directory of RobertLucian/license-plate-dataset")
    parser.add_argument("--eval-data", type=Path, default=EVAL_DATA, help="evaluation sets to exclude")
    parser.add_argument("--model", help="model to mine with (default: the built-in model)")
    parser.add_argument("--conf", type=float, default=MINING_CONF)
    parser.add_argument("--padding", type=float, default=RenderOptions.padding, help="mask padding, fraction of box")
    parser.add_argument("--out", type=Path, default=HARD_EXAMPLES)
    parser.add_argument("--sheets", type=Path, help="write numbered contact sheets of the false marks here")
    parser.add_argument("--limit", type=int, help="only the first N photos of each source")
    return parser


if __name__ == "__main__":
    sys.exit(main())
