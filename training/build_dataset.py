"""Build the plate model's training set, reproducibly, from sources whose licences allow it.

Sources (see training/DATACARD.md for licences and the counts of the last build):

- ``roboflow``: the Roboflow Universe export "tahoon/license-plates-zm8ki-okcq6" (CC BY 4.0;
  Open Images photos, CC BY 2.0) found in the history of the GitHub repository
  komsait/License-Plate-Detector under ``dataset/``. Roboflow exported six augmented copies of
  each photo; one copy per photo is kept (ultralytics augments on its own).
- ``jp_pasted``: some of those photos again, every labelled plate replaced by a rendered Japanese
  plate (``tests.support.synthetic``) warped onto its box, in the four colour schemes.
- ``dashcam``: RobertLucian/license-plate-dataset (MIT): 534 dash-camera frames of Romanian
  (EU) traffic, day and night, 1280×720, plate boxes in Pascal VOC XML.
- ``synthetic``: generated car photos with one Japanese plate each (``tests.support.synthetic``).
- ``corrections`` (``--corrections DIR``, repeatable): a site's own photos, fixed by its operators
  in the Airflow UI and written by ``platemask corrections export DIR``: the final plate boxes,
  and crops of removed masks with no label (hard negatives). A person checked every box, so the
  teacher does not complete them.

Open Images boxes are incomplete: a plate in the background is often not boxed. Trained on as
it is, such a plate teaches the model that small plates are background. So the labels are
completed by a *teacher* (platedet, on the whole photo): a plate it is sure of
that no box holds is added as a label, one it is unsure of is painted grey (neither plate nor
background).

Nothing from ``shared/platedata`` (the evaluation sets) is used: photos whose Open Images id or
perceptual hash matches an evaluation photo are dropped and counted. A held-back synthetic
Japanese set (other seeds) is written as an evaluation set in the ``gt.jsonl`` format.

Training images are *crops at inference scale*: each photo is resized the way the detector sees
it (long side 640), then cut into 320² windows, one holding each plate whole and one at random,
so that a CPU epoch costs a quarter of a full frame while plates keep the size the model meets
in production (close-ups are shrunk until the plate fits). Plates a window cuts are painted
grey rather than labelled as slivers. With ``--full-frames`` (for a GPU: ``train.py --imgsz 640``)
each photo is written whole at inference scale instead, so the model sees the context around
every plate and every hard example.

Run: .venv/bin/python -m training.build_dataset --roboflow-git /work/.mirror/komsait+License-Plate-Detector/repo
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from platemask.second_look import overlap_of_smaller
from tests.support.synthetic import make_car_photo, make_scene, render_random_plate

DEFAULT_OUT = Path(__file__).parent / "data"
HARD_EXAMPLES = Path(__file__).parent / "hard_examples.json"  # written by training/mine.py, reviewed by eye
EVAL_DATA = Path(__file__).parents[2] / "shared" / "platedata"
INFERENCE_SIDE = 640  # the detector's input: photos are seen with this long side
CROP = 320
HASH_DISTANCE = 6  # dHash bits within which two photos are the same photo
SYNTHETIC_TRAIN_SEEDS = range(100_000, 100_000 + 10_000)
SYNTHETIC_DEV_SEEDS = range(200_000, 200_000 + 10_000)  # never trained on

BACKGROUND_SOURCES = ("roboflow", "dashcam")  # real photos that also give a window with no plate
TEACHER_SURE = 0.5  # a teacher plate at least this sure that no box holds becomes a label
TEACHER_UNSURE = 0.1  # one between this and TEACHER_SURE is painted out

Box = tuple[float, float, float, float]
#: Plates a model finds in a BGR photo: (box in pixels, confidence).
Teacher = Callable[[np.ndarray], list[tuple[Box, float]]]


@dataclass
class Photo:
    """A labelled source photo: BGR pixels and plate boxes in pixels."""

    name: str
    source: str
    image: np.ndarray
    boxes: list[Box]


@dataclass
class Counts:
    """What a build kept and dropped, per source (written to counts.json and the data card)."""

    photos: dict[str, int] = field(default_factory=dict)
    plates: dict[str, int] = field(default_factory=dict)
    crops: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def add(self, table: dict[str, int], key: str, n: int = 1) -> None:
        """Count ``n`` more under ``key``."""
        table[key] = table.get(key, 0) + n


def main(argv: Sequence[str] | None = None) -> int:
    """Build the data set folder with images/, labels/, data.yaml, counts.json and the dev set."""
    args = _parser().parse_args(argv)
    counts = build(
        out=args.out,
        roboflow_git=args.roboflow_git,
        synthetic=args.synthetic,
        jp_share=args.jp_share,
        dev_synthetic=args.dev_synthetic,
        eval_data=args.eval_data,
        limit=args.limit,
        dashcam_git=args.dashcam_git,
        teacher=None if args.no_teacher else default_teacher(),
        hard=HardExamples.load(args.hard_examples) if args.hard_examples else None,
        full_frames=args.full_frames,
        corrections=args.corrections,
    )
    print(json.dumps(counts.__dict__, indent=2, sort_keys=True))
    return 0


def build(
    out: Path,
    roboflow_git: Path | None,
    synthetic: int,
    jp_share: float,
    dev_synthetic: int,
    eval_data: Path | None = EVAL_DATA,
    limit: int | None = None,
    teacher: Teacher | None = None,
    dashcam_git: Path | None = None,
    hard: HardExamples | None = None,
    full_frames: bool = False,
    corrections: Sequence[Path] = (),
) -> Counts:
    """Write the training set under ``out`` and return what it holds (CROP² windows, or whole photos)."""
    rng = np.random.default_rng(20261201)
    counts = Counts()
    for folder in ("images", "labels", "dev_synthetic_jp"):
        shutil.rmtree(out / folder, ignore_errors=True)  # a rebuild never keeps samples of an older one
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    photos: list[tuple[str, Photo]] = []
    for split, source in real_photos(roboflow_git, dashcam_git, eval_data, teacher, counts, limit, corrections):
        photo = source if hard is None else hard.complete(source)
        photos.append((split, photo))
        if split == "train" and photo.source == "roboflow" and rng.random() < jp_share:
            photos.append((split, _paste_japanese(photo, rng)))
    for i, seed in enumerate(SYNTHETIC_TRAIN_SEEDS[:synthetic]):
        photos.append(("val" if i % 20 == 0 else "train", _synthetic_photo(seed, rng)))
    for split, photo in photos:
        counts.add(counts.photos, photo.source)
        counts.add(counts.plates, photo.source, len(photo.boxes))
        samples = [_frame(photo)] if full_frames else _crops(photo, rng)
        for k, (crop, boxes) in enumerate(samples):
            _write_sample(out, split, f"{photo.source}-{photo.name}-{k}", crop, boxes)
            counts.add(counts.crops, f"{split}/{photo.source}")
        # A whole frame already holds its hard examples: unlabelled marks, labelled missed plates.
        if split == "train" and hard is not None and not full_frames:
            for kind, k, (crop, boxes) in _hard_crops(photo, hard):
                _write_sample(out, split, f"{photo.source}-{photo.name}-{kind}-{k}", crop, boxes)
                counts.add(counts.crops, f"{split}/{photo.source}: {kind}")
    # Hard negatives: photos with no plate at all (interiors, wheels, empty lots).
    for i in range(max(synthetic // 10, 1) if synthetic else 0):
        scene = _to_inference_scale(make_scene(seed=300_000 + i, size=_random_size(rng)))
        crop = scene if full_frames else _window(scene, [], rng)[0]
        _write_sample(out, "train", f"negative-{i}", crop, [])
        counts.add(counts.crops, "train/negative")
    write_dev_set(out / "dev_synthetic_jp", dev_synthetic)
    counts.photos["dev_synthetic_jp (held back)"] = dev_synthetic
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: plate\n", encoding="utf-8"
    )
    (out / "counts.json").write_text(json.dumps(counts.__dict__, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--roboflow-git", type=Path, help="git directory of komsait/License-Plate-Detector (the search tool's fetch)"
    )
    parser.add_argument(
        "--dashcam-git", type=Path, help="git directory of RobertLucian/license-plate-dataset (the search tool's fetch)"
    )
    parser.add_argument("--synthetic", type=int, default=400, help="generated car photos to train on")
    parser.add_argument("--jp-share", type=float, default=0.5, help="share of photos also used with Japanese plates")
    parser.add_argument("--dev-synthetic", type=int, default=120, help="held-back generated photos (evaluation)")
    parser.add_argument("--eval-data", type=Path, default=EVAL_DATA, help="evaluation sets to exclude")
    parser.add_argument("--limit", type=int, help="only the first N photos of each Roboflow split")
    parser.add_argument("--no-teacher", action="store_true", help="train on the Roboflow boxes as they are")
    parser.add_argument(
        "--hard-examples",
        type=Path,
        default=HARD_EXAMPLES if HARD_EXAMPLES.is_file() else None,
        help="what a model got wrong on the training photos (training/mine.py), trained on again",
    )
    parser.add_argument(
        "--full-frames", action="store_true", help="whole photos at inference scale instead of 320² windows (a GPU)"
    )
    parser.add_argument(
        "--corrections",
        type=Path,
        action="append",
        default=[],
        help="a folder of `platemask corrections export`: the site's own fixed photos (repeatable)",
    )
    return parser


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


def real_photos(
    roboflow_git: Path | None,
    dashcam_git: Path | None,
    eval_data: Path | None,
    teacher: Teacher | None,
    counts: Counts,
    limit: int | None = None,
    corrections: Sequence[Path] = (),
) -> Iterator[tuple[str, Photo]]:
    """The real photos a build trains on, as (split, photo), labels completed by the teacher.

    Evaluation photos and photos unlike production are dropped and counted; one place decides
    which real photos are training photos, for the builder and for mining hard examples.
    """
    if eval_data is not None and not eval_data.is_dir():
        raise FileNotFoundError(f"evaluation sets {eval_data} not found: cannot keep them out of training")
    excluded = _EvalIndex.load(eval_data)
    sources: list[Iterator[tuple[str, Photo]]] = []
    if roboflow_git is not None:
        sources.append(_roboflow_photos(roboflow_git, limit))
    if dashcam_git is not None:
        sources.append(_voc_photos(dashcam_git, "dashcam", limit))
    sources.extend(corrections_photos(folder) for folder in corrections)
    for split, source in (item for photos in sources for item in photos):
        reason = excluded.reason(source) or _unlike_production(source)
        if reason:
            counts.add(counts.dropped, f"{source.source}: {reason}")
            continue
        checked = teacher is None or source.source == "corrections"  # a person checked every box
        yield split, source if checked else _complete_labels(source, teacher, counts)


def corrections_photos(folder: Path) -> Iterator[tuple[str, Photo]]:
    """The photos of a ``platemask corrections export`` folder, every 10th one for validation."""
    for n, image_path in enumerate(sorted((folder / "images").glob("*.jpg"))):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        label = folder / "labels" / f"{image_path.stem}.txt"
        if image is None or not label.is_file():
            continue
        height, width = image.shape[:2]
        boxes = _yolo_boxes(label.read_text(encoding="utf-8"), width, height)
        yield ("val" if n % 10 == 9 else "train"), Photo(image_path.stem, "corrections", image, boxes)


def _roboflow_photos(git_dir: Path, limit: int | None) -> Iterator[tuple[str, Photo]]:
    """One copy of each photo of the Roboflow export kept in the repository's history."""
    with _dataset_folder(git_dir, _commit_with(git_dir, "dataset/data.yaml")) as root:
        for roboflow_split, split in (("train", "train"), ("valid", "val"), ("test", "val")):
            seen: set[str] = set()
            images = sorted((root / roboflow_split / "images").glob("*.jpg"))
            kept = 0
            for image_path in images:
                original = image_path.name.split("_jpg.rf.")[0]
                if original in seen:
                    continue  # another augmented copy of a photo already taken
                seen.add(original)
                label = root / roboflow_split / "labels" / (image_path.stem + ".txt")
                image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
                if image is None or not label.is_file():
                    continue
                boxes = _yolo_boxes(label.read_text(encoding="utf-8"), image.shape[1], image.shape[0])
                yield split, Photo(name=original, source="roboflow", image=image, boxes=boxes)
                kept += 1
                if limit is not None and kept >= limit:
                    break


def _voc_photos(git_dir: Path, source: str, limit: int | None) -> Iterator[tuple[str, Photo]]:
    """Photos of a Pascal VOC export (``dataset/<split>/images`` + ``annots``), all trained on."""
    with _dataset_folder(git_dir, _commit_with(git_dir, "dataset")) as root:
        for split_dir in sorted(root.iterdir()):
            for kept, annotation in enumerate(sorted((split_dir / "annots").glob("*.xml"))):
                if limit is not None and kept >= limit:
                    break
                image = cv2.imread(str(split_dir / "images" / (annotation.stem + ".jpg")), cv2.IMREAD_COLOR)
                if image is None:
                    continue
                boxes = [
                    tuple(float(box.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
                    for box in ET.parse(annotation).getroot().iter("bndbox")
                ]
                yield "train", Photo(name=annotation.stem, source=source, image=image, boxes=boxes)


@contextmanager
def _dataset_folder(git_dir: Path, commit: str) -> Iterator[Path]:
    """The ``dataset/`` folder of ``commit``, extracted into a temporary folder while in use."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "--git-dir", str(git_dir), "archive", commit, "dataset"], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / "dataset"


def _commit_with(git_dir: Path, path: str) -> str:
    """The newest commit of any branch whose tree still has ``path`` (the export was deleted later)."""
    commits = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-list", "--all"], check=True, capture_output=True, text=True
    ).stdout.split()
    for commit in commits:
        found = subprocess.run(
            ["git", "--git-dir", str(git_dir), "cat-file", "-e", f"{commit}:{path}"], capture_output=True, check=False
        )
        if found.returncode == 0:
            return commit
    raise FileNotFoundError(f"no commit in {git_dir} has {path}")


def _yolo_boxes(text: str, width: int, height: int) -> list[Box]:
    """YOLO label lines as pixel boxes: ``class cx cy w h`` boxes, or ``class x y x y ...`` polygons (their bounds)."""
    boxes: list[Box] = []
    for line in text.splitlines():
        values = [float(v) for v in line.split()[1:]]
        if len(values) == 4:
            cx, cy, w, h = values
            boxes.append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            boxes.append((min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height))
    return boxes


def _unlike_production(photo: Photo) -> str | None:
    """Why a photo would teach the wrong thing, or None.

    A plate cut by the photo's edge or filling most of it (a close-up of the plate itself) labels
    a region that touches the image border: a model trained on it marks photo edges as plates.
    """
    height, width = photo.image.shape[:2]
    for x1, y1, x2, y2 in photo.boxes:
        if x1 <= 2 or y1 <= 2 or x2 >= width - 2 or y2 >= height - 2:
            return "plate cut by the photo's edge"
        if x2 - x1 > 0.6 * width:
            return "close-up of the plate"
    return None


def default_teacher() -> Teacher:
    """platedet, as the teacher that completes the labels.

    Always platedet, not whatever the default model is now: a build must not change when a
    model trained on it ships, and the thresholds above were set on platedet's confidences.
    """
    from platemask.config import DetectOptions
    from platemask.detect import PlateDetector, platedet_to_openvino

    folder = Path(tempfile.mkdtemp(prefix="platedet-teacher-")) / "platedet_openvino_model"
    detector = PlateDetector(DetectOptions(model=str(platedet_to_openvino(folder)), conf=TEACHER_UNSURE))

    def find(image: np.ndarray) -> list[tuple[Box, float]]:
        return [(tuple(map(float, d.box)), float(d.conf)) for d in detector.detect([image])[0]]

    return find


def _complete_labels(photo: Photo, teacher: Teacher, counts: Counts) -> Photo:
    """``photo`` with the teacher's sure plates that no box holds added, and its unsure ones painted out."""
    image, boxes = photo.image, list(photo.boxes)
    for box, conf in teacher(photo.image):
        if any(overlap_of_smaller(box, label) > 0.3 for label in photo.boxes):
            continue  # a labelled plate, perhaps boxed a little differently
        if conf >= TEACHER_SURE:
            boxes.append(box)
            counts.add(counts.plates, f"{photo.source}: added by the teacher")
        else:
            if image is photo.image:
                image = image.copy()
            x1, y1, x2, y2 = (round(v) for v in box)
            image[max(y1, 0) : y2, max(x1, 0) : x2] = 114
            counts.add(counts.plates, f"{photo.source}: painted out, teacher unsure")
    return Photo(name=photo.name, source=photo.source, image=image, boxes=boxes)


def _synthetic_photo(seed: int, rng: np.random.Generator) -> Photo:
    """A generated car photo at a random size, so its plate takes any size from tiny to large."""
    photo = make_car_photo(seed=seed, size=_random_size(rng))
    return Photo(name=str(seed), source="synthetic", image=photo.image, boxes=[tuple(map(float, photo.plate_box))])


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    width = int(rng.choice([480, 640, 800, 1024, 1280, 1600, 2048]))
    return width, int(width * rng.choice([0.75, 0.5625, 0.667]))


def _paste_japanese(photo: Photo, rng: np.random.Generator) -> Photo:
    """``photo`` with each labelled plate replaced by a rendered Japanese plate warped onto its box."""
    image = photo.image.copy()
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in photo.boxes:
        box_w, box_h = x2 - x1, y2 - y1
        if box_w < 6 or box_h < 3:
            continue
        plate, _ = render_random_plate(rng, width=int(np.clip(box_w * 2, 40, 800)))
        ph, pw = plate.shape[:2]
        # A little perspective, as a plate on a real bumper seen off-axis.
        jitter = rng.uniform(-0.06, 0.06, (4, 2)) * np.float32([box_w, box_h])
        quad = np.float32([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) + jitter.astype(np.float32)
        matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]]), quad)
        warped = cv2.warpPerspective(plate, matrix, (width, height), flags=cv2.INTER_AREA)
        cover = cv2.warpPerspective(np.ones((ph, pw), np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR)
        # Match the photo's sharpness and light roughly: a plate much crisper than its car is easy to learn.
        warped = cv2.GaussianBlur(warped, (0, 0), rng.uniform(0.3, 1.2)).astype(np.float32)
        warped *= rng.uniform(0.6, 1.1)
        image = np.clip(image * (1 - cover[..., None]) + warped * cover[..., None], 0, 255).astype(np.uint8)
    quality = int(rng.integers(60, 95))
    image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    return Photo(name=photo.name, source="jp_pasted", image=image, boxes=list(photo.boxes))


# --------------------------------------------------------------------------------------------------
# Evaluation sets kept out
# --------------------------------------------------------------------------------------------------


@dataclass
class _EvalIndex:
    """Open Images ids and perceptual hashes of every evaluation photo."""

    ids: set[str]
    hashes: np.ndarray  # uint64

    @classmethod
    def load(cls, root: Path | None) -> _EvalIndex:
        ids: set[str] = set()
        hashes: list[int] = []
        if root is not None and root.is_dir():
            for path in sorted(root.rglob("*.jp*g")) + sorted(root.rglob("*.png")):
                ids.add(path.name.split("_jpg.rf.")[0].split(".")[0])
                image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if image is not None:
                    hashes.append(dhash(image))
        return cls(ids=ids, hashes=np.array(hashes, np.uint64))

    def reason(self, photo: Photo) -> str | None:
        """Why ``photo`` must not be trained on, or None."""
        if photo.name in self.ids:
            return "Open Images id in an evaluation set"
        if len(self.hashes):
            gray = cv2.cvtColor(photo.image, cv2.COLOR_BGR2GRAY)
            distance = _popcount(self.hashes ^ np.uint64(dhash(gray))).min()
            if distance <= HASH_DISTANCE:
                return "perceptual hash matches an evaluation photo"
        return None


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash: survives resizing, stretching and re-encoding."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def _popcount(values: np.ndarray) -> np.ndarray:
    bytes_ = values.view(np.uint8).reshape(-1, 8)
    return np.unpackbits(bytes_, axis=1).sum(axis=1)


# --------------------------------------------------------------------------------------------------
# Crops and labels
# --------------------------------------------------------------------------------------------------


def _frame(photo: Photo) -> tuple[np.ndarray, list[Box]]:
    """The whole photo at inference scale, and its plates."""
    image = _to_inference_scale(photo.image)
    scale = image.shape[1] / photo.image.shape[1]
    return image, [tuple(v * scale for v in box) for box in photo.boxes]


def _crops(photo: Photo, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, list[Box]]]:
    """CROP² windows of the photo at inference scale: one around each plate, and one at random."""
    image, boxes = _frame(photo)
    for box in boxes:
        width, height = box[2] - box[0], box[3] - box[1]
        shrink = min(1.0, 0.8 * CROP / max(width, height, 1.0))
        if shrink < 1.0:  # a close-up: the plate only fits a window once the photo is smaller
            small = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            shrunk = [tuple(v * shrink for v in b) for b in boxes]
            yield _window(small, shrunk, rng, around=tuple(v * shrink for v in box))
        else:
            yield _window(image, boxes, rng, around=box)
    crop, kept = _window(image, boxes, rng)
    if (crop == 114).all(axis=2).mean() < 0.3:  # not mostly a painted-out close-up
        yield crop, kept
    if photo.source in BACKGROUND_SOURCES:
        # Real background, whole: buildings, lamps, signs and windows the model must learn are
        # not plates (a first fine-tune without these marked about one per photo).
        for _ in range(10):
            crop, kept = _window(image, boxes, rng)
            if not kept and (crop == 114).all(axis=2).mean() < 0.3:
                yield crop, kept
                break


@dataclass
class HardExamples:
    """What a trained model got wrong on the training photos (training/mine.py), to train on again.

    Keyed by ``source/name`` of the photo, boxes in the photo's pixels. Every mark the model made
    on no labelled plate was looked at by eye: ``negatives`` hold no plate (signs, lights,
    badges); ``plates`` are real plates nobody had boxed, which become labels; ``unsure`` ones
    (too small or dark to tell) are painted grey like the teacher's unsure plates. ``missed``:
    labelled plates the model left visible.
    """

    negatives: dict[str, list[Box]] = field(default_factory=dict)
    plates: dict[str, list[Box]] = field(default_factory=dict)
    unsure: dict[str, list[Box]] = field(default_factory=dict)
    missed: dict[str, list[Box]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> HardExamples:
        data = json.loads(path.read_text(encoding="utf-8"))
        plates, unsure = set(data.get("plates", [])), set(data.get("unsure", []))
        hard = cls()
        for item in data["marks"]:
            kind = hard.plates if item["id"] in plates else hard.unsure if item["id"] in unsure else hard.negatives
            kind.setdefault(item["photo"], []).append(tuple(item["box"]))
        for item in data["missed"]:
            hard.missed.setdefault(item["photo"], []).append(tuple(item["box"]))
        return hard

    def complete(self, photo: Photo) -> Photo:
        """``photo`` with the plates found by eye labelled and the unsure marks painted out."""
        key = f"{photo.source}/{photo.name}"
        unsure = self.unsure.get(key, [])
        image = photo.image.copy() if unsure else photo.image
        for box in unsure:
            x1, y1, x2, y2 = (round(v) for v in box)
            image[max(y1, 0) : y2, max(x1, 0) : x2] = 114
        return Photo(photo.name, photo.source, image, [*photo.boxes, *self.plates.get(key, [])])


def _hard_crops(photo: Photo, hard: HardExamples) -> Iterator[tuple[str, int, tuple[np.ndarray, list[Box]]]]:
    """Windows around what a model got wrong on ``photo``: each false mark once, each missed plate twice.

    Their own random generator, seeded by the photo: a window does not move when the hard
    examples of other photos change.
    """
    key = f"{photo.source}/{photo.name}"
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    image, boxes = _frame(photo)
    scale = image.shape[1] / photo.image.shape[1]
    for k, box in enumerate(hard.negatives.get(key, [])):
        yield "hard_negative", k, _window(image, boxes, rng, around=tuple(v * scale for v in box))
    for k, box in enumerate(hard.missed.get(key, [])):
        for repeat in range(2):
            yield "hard_positive", 2 * k + repeat, _window(image, boxes, rng, around=tuple(v * scale for v in box))


def _to_inference_scale(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = INFERENCE_SIDE / max(height, width)
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


def _window(
    image: np.ndarray, boxes: Sequence[Box], rng: np.random.Generator, around: Box | None = None
) -> tuple[np.ndarray, list[Box]]:
    """A CROP² window (grey-padded where the photo is smaller), at random or holding all of ``around``.

    Plates wholly inside are labelled. A plate the window cuts is painted grey: a labelled
    sliver teaches the model that anything at an image edge is a plate, an unlabelled one that
    plates are background.
    """
    height, width = image.shape[:2]
    span_x, span_y = max(width - CROP, 0), max(height - CROP, 0)
    x0, y0 = int(rng.integers(0, span_x + 1)), int(rng.integers(0, span_y + 1))
    if around is not None:
        x0 = _start_holding(around[0], around[2], span_x, rng)
        y0 = _start_holding(around[1], around[3], span_y, rng)
    crop = np.full((CROP, CROP, 3), 114, np.uint8)
    piece = image[y0 : y0 + CROP, x0 : x0 + CROP]
    crop[: piece.shape[0], : piece.shape[1]] = piece
    kept: list[Box] = []
    for x1, y1, x2, y2 in boxes:
        cx1, cy1 = max(x1 - x0, 0), max(y1 - y0, 0)
        cx2, cy2 = min(x2 - x0, piece.shape[1]), min(y2 - y0, piece.shape[0])
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        if (cx1, cy1, cx2, cy2) == (x1 - x0, y1 - y0, x2 - x0, y2 - y0):
            kept.append((cx1, cy1, cx2, cy2))
        else:
            crop[int(cy1) : int(np.ceil(cy2)), int(cx1) : int(np.ceil(cx2))] = 114
    return crop, kept


def _start_holding(low: float, high: float, span: int, rng: np.random.Generator) -> int:
    """A window start in [0, span] whose CROP-long window holds [low, high] when it can."""
    first, last = max(int(np.ceil(high)) - CROP, 0), min(int(np.floor(low)), span)
    return int(rng.integers(first, last + 1)) if first <= last else int(np.clip(low, 0, span))


def _write_sample(out: Path, split: str, name: str, image: np.ndarray, boxes: Iterable[Box]) -> None:
    """An image and its segmentation label: each plate box as a four-corner polygon, normalised."""
    safe = hashlib.sha1(name.encode()).hexdigest()[:8] + "-" + "".join(c if c.isalnum() else "_" for c in name)[:60]
    height, width = image.shape[:2]
    cv2.imwrite(str(out / "images" / split / f"{safe}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    lines = []
    for x1, y1, x2, y2 in boxes:
        xs, ys = (x1 / width, x2 / width), (y1 / height, y2 / height)
        corners = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1])]
        lines.append("0 " + " ".join(f"{x:.6f} {y:.6f}" for x, y in corners))
    (out / "labels" / split / f"{safe}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def write_dev_set(folder: Path, count: int) -> None:
    """Held-back generated photos (seeds never trained on) as an evaluation set (gt.jsonl)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(31337)
    lines = []
    for seed in SYNTHETIC_DEV_SEEDS[:count]:
        photo = make_car_photo(seed=seed, size=_random_size(rng))
        name = f"images/{seed}.jpg"
        cv2.imwrite(str(folder / name), photo.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        height, width = photo.image.shape[:2]
        box = [float(v) for v in photo.plate_box]
        lines.append(json.dumps({"image": name, "boxes": [box], "width": width, "height": height}))
    (folder / "gt.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
