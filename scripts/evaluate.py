"""Measure how well plates get hidden on labelled photo sets (a benchmark that prints figures, not a test).

Each set is a folder with a ``gt.jsonl`` (see shared/platedata/README.md). Photos go through the real
pipeline pieces (decode, :class:`PlateDetector`, padded boxes); a plate counts as hidden when at least
90 % of its labelled box lies under the mask the ``fill`` style draws. Several ``--conf``,
``--padding``, ``--flip``, ``--second-look`` or ``--model`` values print one row each, side by
side in one run; paddings share the model's pass (the second look, which depends on what the
masks leave visible, runs once per padding). Recall is also given for plates at least 16 px wide
and per plate-width bucket (labelled box width in photo pixels), with each bucket's plate count.
ms/photo is the model time: ``PlateDetector.detect`` and the second look (``--second-look``), not
decoding or masking.
The default sets are shared/platedata's two and, once training/build_dataset.py has written it,
the held-back synthetic Japanese set.

Run: .venv/bin/python scripts/evaluate.py [DATA_DIR ...] [--conf 0.10] [--padding 0.10] [--flip on off]
     [--second-look mask review off] [--model built-in PATH ...] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from platemask.config import SECOND_LOOK_MODES, DetectOptions, Limits, RenderOptions, SecondLookOptions
from platemask.detect import Detection, PlateDetector
from platemask.images import decode_any
from platemask.second_look import SecondLook

DATA = Path(__file__).parents[2] / "shared" / "platedata"
DEFAULT_SETS = ("openalpr_br", "roboflow_openimages_f8vsn")
HIDDEN = 0.90  # share of a plate's box the mask must cover (shared/platedata/README.md)
BUCKETS = {"<16": (0, 16), "16-32": (16, 32), "32-64": (32, 64), "64-128": (64, 128), ">128": (128, 1e9)}


@dataclass
class Score:
    """Running totals for one set under one setting."""

    photos: int = 0
    coverages: list[float] = field(default_factory=list)
    widths: list[float] = field(default_factory=list)
    extra: int = 0
    seconds: float = 0.0

    def add(self, other: Score) -> None:
        """Pool ``other`` into this one (for the all-sets row)."""
        self.photos += other.photos
        self.coverages += other.coverages
        self.widths += other.widths
        self.extra += other.extra
        self.seconds += other.seconds

    def row(self) -> list[str]:
        """Table cells: photos, plates, recall, recall on plates >= 16 px, per width bucket, extra/photo, ms/photo."""
        cov, widths = np.asarray(self.coverages), np.asarray(self.widths)
        hidden = cov >= HIDDEN
        buckets = [_share(hidden[(widths >= lo) & (widths < hi)]) for lo, hi in BUCKETS.values()]
        per_photo = self.seconds / self.photos * 1000 if self.photos else float("nan")
        extra = self.extra / self.photos if self.photos else float("nan")
        return [
            str(self.photos),
            str(len(cov)),
            _share(hidden),
            _share(hidden[widths >= 16]),
            *buckets,
            f"{extra:.3f}",
            f"{per_photo:.0f}",
        ]


def _share(hidden: np.ndarray) -> str:
    """Recall as a percentage with its count, or a dash for an empty bucket."""
    return f"{hidden.mean():.1%} ({len(hidden)})" if len(hidden) else "-"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, score every set under every model and setting, print one table."""
    args = _parser().parse_args(argv)
    sets = [Path(d) for d in args.data] or [DATA / name for name in DEFAULT_SETS] + _dev_sets()
    for folder in sets:
        if not (folder / "gt.jsonl").is_file():
            print(f"no gt.jsonl in {folder}", file=sys.stderr)
            return 2
    header = [
        "set",
        "model",
        "flip",
        "second look",
        "conf",
        "pad",
        "photos",
        "plates",
        "recall",
        "recall>=16",
        *BUCKETS,
    ]
    header += ["extra/photo", "ms/photo"]
    rows: list[list[str]] = []
    models = [_model_path(name) for name in args.model or ["built-in"]]
    settings = [(m, f, c, s) for m in models for f in args.flip for c in args.conf for s in args.second_look]
    for model, flip, conf, mode in settings:
        detector = PlateDetector(_detect_options(model, conf, flip == "on"))
        detector.load_async().result()  # load time is not per-photo time
        second_look = SecondLook(SecondLookOptions(mode=mode))
        if second_look.enabled:
            second_look.load_async().result()
        setting = [_model_name(model), flip, mode, f"{conf:.2f}"]
        totals = {padding: Score() for padding in args.padding}
        for folder in sets:
            scores = _score_set(folder, detector, second_look, args.padding, args.limit)
            for padding, score in scores.items():
                rows.append([folder.name, *setting, f"{padding:.2f}", *score.row()])
                totals[padding].add(score)
            print(f"done {folder.name} {setting}", file=sys.stderr)
        if len(sets) > 1:
            rows += [["all", *setting, f"{p:.2f}", *s.row()] for p, s in totals.items()]
    _print_table(header, rows)
    return 0


def _dev_sets() -> list[Path]:
    """The held-back synthetic Japanese set, when training/build_dataset.py has written it."""
    folder = Path(__file__).parents[1] / "training" / "data" / "dev_synthetic_jp"
    return [folder] if (folder / "gt.jsonl").is_file() else []


def _model_name(model: str | None) -> str:
    return "built-in" if model is None else Path(model).name


def _model_path(name: str) -> str | None:
    return None if name == "built-in" else name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", help=f"folders with gt.jsonl (default: {', '.join(DEFAULT_SETS)} in {DATA})")
    parser.add_argument("--conf", type=float, nargs="+", default=[DetectOptions.conf], help="confidence threshold(s)")
    parser.add_argument(
        "--padding", type=float, nargs="+", default=[RenderOptions.padding], help="mask padding(s), fraction of box"
    )
    parser.add_argument(
        "--flip",
        nargs="+",
        choices=["on", "off"],
        default=["on" if DetectOptions.flip else "off"],
        help="also detect on the mirrored photo (PlateDetector's second pass)",
    )
    parser.add_argument(
        "--second-look",
        nargs="+",
        choices=SECOND_LOOK_MODES,
        default=[SecondLookOptions.mode],
        help="PLATEMASK_SECOND_LOOK mode(s): the text detector and closer look after the model",
    )
    parser.add_argument("--model", nargs="+", help="model path(s), side by side (default: the built-in model)")
    parser.add_argument("--limit", type=int, help="only the first N photos of each set")
    return parser


def _detect_options(model: str | None, conf: float, flip: bool) -> DetectOptions:
    return DetectOptions(model=model, conf=conf, flip=flip)


def _score_set(
    folder: Path, detector: PlateDetector, second_look: SecondLook, paddings: Sequence[float], limit: int | None
) -> dict[float, Score]:
    lines = (folder / "gt.jsonl").read_text(encoding="utf-8").splitlines()
    labels = [json.loads(line) for line in lines if line.strip()][:limit]
    scores = {padding: Score() for padding in paddings}
    limits = Limits()
    for label in labels:
        image = decode_any((folder / label["image"]).read_bytes(), limits)
        height, width = image.shape[:2]
        boxes = [_pixel_box(box, width, height) for box in label["boxes"]]
        started = time.perf_counter()
        [found] = detector.detect([image])  # one model pass, shared by every padding
        model_seconds = time.perf_counter() - started
        for padding, score in scores.items():
            started = time.perf_counter()
            # The second look depends on the padding (what the masks leave visible): once per padding.
            detections = [*found, *second_look.look(image, found, detector, padding).masks]
            seconds = model_seconds + time.perf_counter() - started
            coverages, extra = _coverage(detections, boxes, padding, width, height)
            score.photos += 1
            score.coverages += coverages
            score.widths += [x2 - x1 for x1, _, x2, _ in boxes]
            score.extra += extra
            score.seconds += seconds
    return scores


def _pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A labelled box as whole pixels, at least one pixel in size, inside the photo."""
    x1, y1 = min(max(0, round(box[0])), width - 1), min(max(0, round(box[1])), height - 1)
    x2, y2 = min(max(x1 + 1, round(box[2])), width), min(max(y1 + 1, round(box[3])), height)
    return x1, y1, x2, y2


def _coverage(
    detections: Sequence[Detection], boxes: Sequence[tuple[int, int, int, int]], padding: float, width: int, height: int
) -> tuple[list[float], int]:
    """Covered share of each labelled box, and how many masks touch no labelled box."""
    # The union of padded rectangles is exactly what render.mask_plates paints in the fill style.
    mask = np.zeros((height, width), bool)
    rects = [detection.padded(padding, width, height) for detection in detections]
    for x1, y1, x2, y2 in rects:
        mask[y1:y2, x1:x2] = True
    coverages = [float(mask[y1:y2, x1:x2].mean()) for x1, y1, x2, y2 in boxes]
    extra = sum(
        1
        for rx1, ry1, rx2, ry2 in rects
        if rx2 > rx1
        and ry2 > ry1
        and not any(rx1 < bx2 and bx1 < rx2 and ry1 < by2 and by1 < ry2 for bx1, by1, bx2, by2 in boxes)
    )
    return coverages, extra


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
