"""Measure both sides of masking on labelled photo sets (a benchmark that prints figures, not a test).

Each set is a folder with a ``gt.jsonl`` (see shared/platedata/README.md). Photos go through what
the car task runs: decode, then :func:`platemask.masking.find_masks`; what is masked is
:func:`platemask.render.mask_area`, the pixels every style paints. Both sides are read from those pixels:

- **plates hidden**: a labelled plate is hidden when at least 90 % of its box is masked; recall
  overall, for plates at least 16 px wide, and per plate-width bucket (with each bucket's count);
- **extra masks**: masked pixels outside every labelled plate box grown by half its size on each
  side (room for a padded plate mask). Per photo, as a share of the photo: *touched* photos have
  at least 0.1 % of extra mask, *defaced* ones at least 2 %; the mean and the largest share.
  ``extra/photo`` counts masks that lie mostly outside every grown plate box (some are real,
  unlabelled plates).

``ms/photo`` is the model time: ``find_masks`` (the model and the second look), not decoding.
The default sets are shared/platedata's two and the car-centred sets of
``scripts/evaluation_sets.py`` (held-back synthetic Japanese cars, close-ups, plate-free crops,
scenes with no plate), built on first use. Several ``--conf``, ``--padding``, ``--flip``,
``--second-look`` or ``--model`` values print one row each, side by side in one run.
``--sheet`` draws the worst photos of each setting on a contact sheet, to look at by eye;
``--breakdown`` splits the extra masks by source, confidence, size and shape.

Run: .venv/bin/python scripts/evaluate.py [DATA_DIR ...] [--conf 0.10] [--padding 0.10] [--flip on off]
     [--second-look mask review off] [--model built-in PATH ...] [--limit N] [--sheet PNG] [--breakdown]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO)]

from platemask.config import (  # noqa: E402
    SECOND_LOOK_MODES,
    DetectOptions,
    Limits,
    MaskChecks,
    RenderOptions,
    SecondLookOptions,
)
from platemask.detect import Detection, PlateDetector  # noqa: E402
from platemask.images import decode_any  # noqa: E402
from platemask.masking import find_masks  # noqa: E402
from platemask.render import mask_area  # noqa: E402
from platemask.second_look import SecondLook  # noqa: E402
from scripts import evaluation_sets  # noqa: E402

DATA = REPO.parent / "shared" / "platedata"
DEFAULT_SETS = ("openalpr_br", "roboflow_openimages_f8vsn")
HIDDEN = 0.90  # share of a plate's box the mask must cover (shared/platedata/README.md)
ROOM = 0.5  # a labelled box grows by this share of its size on each side before extra mask counts
TOUCHED = 0.001  # of the photo: extra mask a person would notice
DEFACED = 0.02  # of the photo: extra mask that spoils it
BUCKETS = {"<16": (0, 16), "16-32": (16, 32), "32-64": (32, 64), "64-128": (64, 128), ">128": (128, 1e9)}
WORST = 20  # photos on a contact sheet
Box = tuple[int, int, int, int]


@dataclass
class Photo:
    """One scored photo, kept for the contact sheet and the breakdown."""

    path: Path
    set: str
    extra: float  # share of the photo masked outside the grown plate boxes
    boxes: list[Box]
    plates: list[Detection]
    stray: list[tuple[Detection, float]]  # masks mostly outside every grown plate, with the extra share each adds


@dataclass
class Score:
    """Running totals for one set under one setting."""

    photos: int = 0
    coverages: list[float] = field(default_factory=list)
    widths: list[float] = field(default_factory=list)
    extras: list[float] = field(default_factory=list)  # per photo
    stray: int = 0
    seconds: float = 0.0

    def add(self, other: Score) -> None:
        """Pool ``other`` into this one (for the all-sets row)."""
        self.photos += other.photos
        self.coverages += other.coverages
        self.widths += other.widths
        self.extras += other.extras
        self.stray += other.stray
        self.seconds += other.seconds

    def row(self) -> list[str]:
        """Table cells in HEADER order."""
        cov, widths, extras = np.asarray(self.coverages), np.asarray(self.widths), np.asarray(self.extras)
        hidden = cov >= HIDDEN
        buckets = [_share(hidden[(widths >= lo) & (widths < hi)]) for lo, hi in BUCKETS.values()]
        photos = max(self.photos, 1)
        return [
            str(self.photos),
            str(len(cov)),
            _share(hidden),
            _share(hidden[widths >= 16]),
            *buckets,
            f"{(extras >= TOUCHED).mean():.1%}" if len(extras) else "-",
            f"{(extras >= DEFACED).mean():.1%}" if len(extras) else "-",
            f"{extras.mean():.2%}" if len(extras) else "-",
            f"{extras.max():.1%}" if len(extras) else "-",
            f"{self.stray / photos:.3f}",
            f"{self.seconds / photos * 1000:.0f}",
        ]


SETTING = ["model", "flip", "second look", "conf", "pad", "checks"]
HEADER = [
    "set",
    *SETTING,
    "photos",
    "plates",
    "recall",
    "recall>=16",
    *BUCKETS,
    "touched",
    "defaced",
    "extra mean",
    "extra max",
    "extra/photo",
    "ms/photo",
]


def _share(hidden: np.ndarray) -> str:
    """Recall as a percentage with its count, or a dash for an empty bucket."""
    return f"{hidden.mean():.1%} ({len(hidden)})" if len(hidden) else "-"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, score every set under every model and setting, print one table."""
    args = _parser().parse_args(argv)
    sets = [Path(d) for d in args.data] or [DATA / name for name in DEFAULT_SETS] + _car_sets()
    for folder in sets:
        if not (folder / "gt.jsonl").is_file():
            print(f"no gt.jsonl in {folder}", file=sys.stderr)
            return 2
    rows: list[list[str]] = []
    models = [_model_path(name) for name in args.model or ["built-in"]]
    settings = [
        (m, f, c, s, p, k)
        for m in models
        for f in args.flip
        for c in args.conf
        for s in args.second_look
        for p in args.padding
        for k in args.checks
    ]
    for number, (model, flip, conf, mode, padding, checks) in enumerate(settings, 1):
        detector = PlateDetector(DetectOptions(model=model, conf=conf, flip=flip == "on"))
        detector.load_async().result()  # load time is not per-photo time
        second_look = SecondLook(SecondLookOptions(mode=mode, max_candidates=args.max_candidates))
        if second_look.enabled:
            second_look.load_async().result()
        setting = [_model_name(model), flip, mode, f"{conf:.2f}", f"{padding:.2f}", checks]
        total, photos = Score(), []
        for folder in sets:
            score = Score()
            scored = _score_set(folder, detector, second_look, padding, _checks(checks), args.limit)
            for photo, seconds, coverages, widths in scored:
                score.photos += 1
                score.coverages += coverages
                score.widths += widths
                score.extras.append(photo.extra)
                score.stray += len(photo.stray)
                score.seconds += seconds
                photos.append(photo)
            rows.append([folder.name, *setting, *score.row()])
            total.add(score)
            print(f"done {folder.name} {setting}", file=sys.stderr)
        if len(sets) > 1:
            rows.append(["all", *setting, *total.row()])
        if args.breakdown:
            _print_breakdown(setting, photos)
        if args.sheet:
            sheet = args.sheet if len(settings) == 1 else args.sheet.with_stem(f"{args.sheet.stem}-{number}")
            _write_sheet(sheet, setting, photos, padding)
    _print_table(HEADER, rows)
    return 0


def _car_sets() -> list[Path]:
    """The car-centred sets (scripts/evaluation_sets.py), built on first use."""
    folders = [evaluation_sets.OUT / name for name in evaluation_sets.SET_NAMES]
    if not all((folder / "gt.jsonl").is_file() for folder in folders):
        print(f"building the car-centred sets in {evaluation_sets.OUT}", file=sys.stderr)
        folders = evaluation_sets.build()
    return folders


def _model_name(model: str | None) -> str:
    return "built-in" if model is None else Path(model).name


def _model_path(name: str) -> str | None:
    return None if name == "built-in" else name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", nargs="*", help=f"folders with gt.jsonl (default: {', '.join(DEFAULT_SETS)} and the car-centred sets)"
    )
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
    parser.add_argument(
        "--checks",
        nargs="+",
        default=["default"],
        help="what a large box must show (MaskChecks): default, none, or field=value,... e.g. sure=0.8,votes=3",
    )
    parser.add_argument(
        "--max-candidates",
        type=int,
        default=SecondLookOptions.max_candidates,
        help="the second look's text candidates per photo at most (four share one closer look)",
    )
    parser.add_argument("--model", nargs="+", help="model path(s), side by side (default: the built-in model)")
    parser.add_argument("--limit", type=int, help="only the first N photos of each set")
    parser.add_argument("--sheet", type=Path, help=f"contact sheet of the {WORST} worst photos (PNG; one per setting)")
    parser.add_argument("--breakdown", action="store_true", help="extra masks by source, confidence, size and shape")
    return parser


def _checks(spec: str) -> MaskChecks:
    """``default``, ``none`` (every box the model finds is masked) or ``field=value,...`` over the defaults."""
    if spec == "default":
        return MaskChecks()
    if spec == "none":
        return MaskChecks(large=float("inf"), zoom_out=False)
    fields = {name: type(value) for name, value in vars(MaskChecks()).items()}
    changes = {}
    for item in spec.split(","):
        name, value = item.split("=")
        changes[name] = value.lower() in ("1", "true", "on") if fields[name] is bool else fields[name](value)
    return MaskChecks(**changes)


def _score_set(
    folder: Path,
    detector: PlateDetector,
    second_look: SecondLook,
    padding: float,
    checks: MaskChecks,
    limit: int | None,
) -> Iterator[tuple[Photo, float, list[float], list[float]]]:
    """Each photo of the set: what was masked, the model time, each plate's coverage and width."""
    lines = (folder / "gt.jsonl").read_text(encoding="utf-8").splitlines()
    labels = [json.loads(line) for line in lines if line.strip()][:limit]
    limits = Limits()
    for label in labels:
        path = folder / label["image"]
        image = decode_any(path.read_bytes(), limits)
        height, width = image.shape[:2]
        boxes = [_pixel_box(box, width, height) for box in label["boxes"]]
        started = time.perf_counter()
        plates = find_masks(image, detector, second_look, padding=padding, checks=checks).plates
        seconds = time.perf_counter() - started
        coverages, extra, stray = score_photo(plates, boxes, width, height, padding)
        photo = Photo(path, folder.name, extra, boxes, plates, stray)
        yield photo, seconds, coverages, [float(x2 - x1) for x1, _, x2, _ in boxes]


def score_photo(
    plates: Sequence[Detection], boxes: Sequence[Box], width: int, height: int, padding: float
) -> tuple[list[float], float, list[tuple[Detection, float]]]:
    """From the pixels the masks cover: each labelled plate's covered share, the share of the photo
    masked outside every plate's room (_room), and the masks lying mostly outside, with what each adds."""
    masked = mask_area(plates, width, height, padding)
    room = _room(boxes, width, height)
    coverages = [float(masked[y1:y2, x1:x2].mean()) for x1, y1, x2, y2 in boxes]
    stray = []
    for plate in plates:
        alone = mask_area([plate], width, height, padding)
        outside = alone & ~room
        if outside.sum() > 0.5 * alone.sum():
            stray.append((plate, float(outside.mean())))
    return coverages, float((masked & ~room).mean()), stray


def _room(boxes: Sequence[Box], width: int, height: int) -> np.ndarray:
    """Where a mask may be without counting as extra: each labelled box grown by ROOM of its size per side."""
    room = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in boxes:
        dx, dy = (x2 - x1) * ROOM, (y2 - y1) * ROOM
        room[max(0, int(y1 - dy)) : int(np.ceil(y2 + dy)), max(0, int(x1 - dx)) : int(np.ceil(x2 + dx))] = True
    return room


def _pixel_box(box: Sequence[float], width: int, height: int) -> Box:
    """A labelled box as whole pixels, at least one pixel in size, inside the photo."""
    x1, y1 = min(max(0, round(box[0])), width - 1), min(max(0, round(box[1])), height - 1)
    x2, y2 = min(max(x1 + 1, round(box[2])), width), min(max(y1 + 1, round(box[3])), height)
    return x1, y1, x2, y2


def _print_breakdown(setting: Sequence[str], photos: Sequence[Photo]) -> None:
    """Extra masks by where they come from, how sure, how large and what shape: count and summed photo share."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for photo in photos:
        for plate, share in photo.stray:
            x1, y1, x2, y2 = plate.box
            aspect = (x2 - x1) / max(y2 - y1, 1e-6)
            groups["source"][plate.source].append(share)
            groups["confidence"][_bucket(plate.conf, (0.2, 0.35, 0.5, 0.7), "{:.2f}")].append(share)
            groups["share of the photo"][_bucket(share, (0.001, 0.01, 0.02, 0.05, 0.2), "{:.1%}")].append(share)
            groups["aspect (w/h)"][_bucket(aspect, (1.0, 1.5, 2.0, 3.0, 5.0), "{:.1f}")].append(share)
    print(f"\nextra masks, {' '.join(setting)} ({len(photos)} photos): count, summed share of a photo", file=sys.stderr)
    for name, buckets in groups.items():
        cells = [f"{key}: {len(v)} / {sum(v):.1%}" for key, v in sorted(buckets.items())]
        print(f"  by {name}: " + "; ".join(cells), file=sys.stderr)


def _bucket(value: float, edges: Sequence[float], fmt: str) -> str:
    for i, edge in enumerate(edges):
        if value < edge:
            return f"{i}: <{fmt.format(edge)}"
    return f"{len(edges)}: >={fmt.format(edges[-1])}"


def _write_sheet(target: Path, setting: Sequence[str], photos: Sequence[Photo], padding: float) -> None:
    """The WORST photos by extra mask, masks tinted red over the photo, labelled plates outlined green."""
    worst = sorted(photos, key=lambda p: p.extra, reverse=True)[:WORST]
    tiles = [_tile(photo, padding) for photo in worst if photo.extra > 0]
    if not tiles:
        print(f"{' '.join(setting)}: no photo with an extra mask, no sheet", file=sys.stderr)
        return
    columns = 5
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    title = np.full((36, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(title, f"worst {len(worst)}: {' '.join(setting)}", (8, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), np.vstack([title, *rows]))
    print(f"contact sheet: {target}", file=sys.stderr)


def _tile(photo: Photo, padding: float, side: int = 320) -> np.ndarray:
    image = decode_any(photo.path.read_bytes(), Limits())
    height, width = image.shape[:2]
    masked = mask_area(photo.plates, width, height, padding)
    image[masked] = (image[masked] * 0.4 + np.float32([0, 0, 255]) * 0.6).astype(np.uint8)
    thickness = max(2, width // 300)
    for x1, y1, x2, y2 in photo.boxes:
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 220, 0), thickness)
    for plate, _ in photo.stray:
        x1, y1, x2, y2 = (round(v) for v in plate.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 255), thickness)
    scale = side / max(height, width)
    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    tile = np.full((side + 40, side, 3), 255, np.uint8)
    tile[: small.shape[0], : small.shape[1]] = small
    sources = ",".join(sorted({f"{p.source} {p.conf:.2f}" for p, _ in photo.stray}))[:48]
    cv2.putText(tile, f"{photo.set[:12]} {photo.path.stem[:16]} {photo.extra:.1%}", (4, side + 16), 0, 0.4, 0, 1)
    cv2.putText(tile, sources, (4, side + 34), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 160), 1)
    return tile


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
