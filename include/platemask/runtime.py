"""The plate model run directly by OpenVINO or ONNX Runtime: no torch, no ultralytics.

A car task's start-up used to be dominated by importing torch and ultralytics (about 2.5 CPU-s)
to run a model that OpenVINO executes on its own. This module does what ultralytics' predictor
does for an exported YOLO segmentation model, step for step, with numpy and OpenCV:

1. letterbox: resize with the aspect kept (bilinear), pad with grey 114 to the model's square or,
   for a model exported with a free input size, only up to the next multiple of 32 (a 4:3 photo
   is looked at as 640 × 480, not 640 × 640: a quarter less model time, as ultralytics' own
   rectangular inference);
2. inference (OpenVINO; a new process imports the compiled model from the cache folder). The
   mask prototypes cost a quarter of the network; they are only computed when the outlines are
   wanted (``outlines=True``: the logo style warps its picture onto them);
3. decode: ``(4 + classes + 32, anchors)`` rows of centre/size boxes, scores and mask weights;
4. non-maximum suppression per class, most confident first, at most ``max_det`` plates;
5. the outline: each plate's mask from the 32 prototypes, inside its box, traced as a polygon.

Boxes agree with ultralytics' to well under a pixel (tests/unit/test_runtime.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from platemask.errors import ModelError
from platemask.storage import atomic_write

__all__ = [
    "BackgroundLoad",
    "ModelInfo",
    "SegmentationModel",
    "cached_file",
    "compile_openvino",
    "cpu_config",
    "is_direct_model",
]

log = logging.getLogger(__name__)

PAD_VALUE = 114
STRIDE = 32  # a YOLO model's largest stride: a free-size input must be a multiple of it
MAX_NMS = 30_000  # candidates kept for NMS, as ultralytics


@dataclass(frozen=True)
class ModelInfo:
    """What the exported model's metadata says about its input."""

    imgsz: tuple[int, int]  # height, width
    batch: int
    names: dict[int, str]
    task: str = "segment"  # or "detect": a model without mask weights in its rows


@dataclass(frozen=True)
class RawDetection:
    """One plate in photo pixels, with its outline when the mask has one."""

    box: tuple[float, float, float, float]
    conf: float
    polygon: np.ndarray | None


class BackgroundLoad:
    """A model load that runs once, in a background thread, while the task reads its first photos."""

    def __init__(self, load: Callable[[], None], thread_name: str) -> None:
        self._load, self._thread_name = load, thread_name
        self._lock = threading.Lock()
        self._future: Future[None] | None = None

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._future is not None

    def start(self) -> Future[None]:
        """Start the load (idempotent); the future says when it is done, or why it failed."""
        with self._lock:
            if self._future is None:
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
                self._future = pool.submit(self._load)
                pool.shutdown(wait=False)
            return self._future


def is_direct_model(path: Path) -> bool:
    """Whether this module can run ``path``: an OpenVINO IR (folder or .xml) or an .onnx file."""
    if path.is_dir():
        return any(path.glob("*.xml"))
    return path.suffix in (".xml", ".onnx")


class SegmentationModel:
    """An exported YOLO segmentation model, loaded once, safe to call from several threads.

    ``outlines``: trace each plate's outline from the mask prototypes; without it the prototype
    branch is cut out of the network and never runs.
    """

    def __init__(self, path: Path, cache_dir: Path | None = None, *, outlines: bool = True) -> None:
        self.path = path
        try:
            if ir_file(path):
                metadata = export_metadata(path)
                self._run, free_size = _openvino(path, cache_dir, metadata, outlines)
            else:
                self._run, metadata, free_size = _onnxruntime(path, outlines)
            self.info = model_info(metadata)
            #: Photos are padded to a multiple of the stride, not to the model's square (a free input size).
            self.stride: int | None = STRIDE if free_size else None
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot load plate model {str(path)!r}: {exc}") from exc
        self._lock = threading.Lock()

    def predict(self, image: np.ndarray, conf: float, iou: float, max_det: int) -> list[RawDetection]:
        """Plates in one BGR photo, most confident first."""
        tensor, gain, pad = letterbox(image, self.info.imgsz, self.stride)
        batch = np.repeat(tensor, self.info.batch, axis=0) if self.info.batch > 1 else tensor
        try:
            with self._lock:  # one inference request per model: OpenVINO parallelises inside it
                outputs = self._run(batch)
        except Exception as exc:
            raise ModelError(f"inference failed with {self.path}: {exc}") from exc
        rows = outputs[0][0]
        protos = outputs[1][0] if len(outputs) > 1 else None  # a detection model has no mask prototypes
        if protos is not None:
            # Classes are what the rows hold besides the box and the mask weights, whatever the metadata says.
            nc = rows.shape[0] - 4 - protos.shape[0]
        elif self.info.task == "segment":
            nc = len(self.info.names)  # the prototypes were left out; the rows still end in mask weights
        else:
            nc = rows.shape[0] - 4
        kept = decode(rows, nc, conf, iou, max_det)
        height, width = image.shape[:2]
        return [
            RawDetection(
                box=_to_photo(row[:4], gain, pad, width, height),
                conf=float(row[4]),
                polygon=None
                if protos is None
                else _outline(protos, row[6:], row[:4], tensor.shape[2:], gain, pad, (height, width)),
            )
            for row in kept
        ]


def letterbox(
    image: np.ndarray, size: tuple[int, int], stride: int | None = None
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The model's (1, 3, H, W) float input, the scale applied and the (left, top) padding.

    The photo is scaled to fit ``size``; it is padded to ``size`` or, with ``stride``, only to the
    next multiple of it on each axis.
    """
    height, width = image.shape[:2]
    gain = min(size[0] / height, size[1] / width)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    if stride:
        size = (-(-new_h // stride) * stride, -(-new_w // stride) * stride)
    resized = (
        image
        if (new_w, new_h) == (width, height)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    tensor = cv2.dnn.blobFromImage(padded, scalefactor=1 / 255.0, swapRB=True)  # BGR→RGB, HWC→NCHW, float32
    return tensor, gain, (left, top)


def decode(rows: np.ndarray, nc: int, conf: float, iou: float, max_det: int) -> np.ndarray:
    """Kept rows ``x1 y1 x2 y2 score class mask...`` (letterbox pixels) from raw ``(4+nc+k, anchors)`` output."""
    rows = rows.astype(np.float32, copy=False)
    scores = rows[4 : 4 + nc]
    best = scores.max(axis=0)
    candidates = np.flatnonzero(best > conf)
    if not len(candidates):
        return np.zeros((0, 6 + rows.shape[0] - 4 - nc), np.float32)
    picked = rows[:, candidates].T
    cls = scores[:, candidates].argmax(axis=0).astype(np.float32)
    score = best[candidates]
    order = np.argsort(-score, kind="stable")[:MAX_NMS]
    picked, cls, score = picked[order], cls[order], score[order]
    xy, wh = picked[:, :2], picked[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    # OpenCV's greedy NMS, per class (classes never suppress each other), most confident first.
    keep = np.asarray(
        cv2.dnn.NMSBoxesBatched(np.concatenate([xy - wh / 2, wh], axis=1), score, cls.astype(np.int32), 0.0, iou),
        np.int64,
    ).reshape(-1)[:max_det]
    return np.concatenate([boxes[keep], score[keep, None], cls[keep, None], picked[keep, 4 + nc :]], axis=1)


def _to_photo(box: np.ndarray, gain: float, pad: tuple[int, int], width: int, height: int) -> tuple[float, ...]:
    x1, y1, x2, y2 = ((box - np.float32([pad[0], pad[1], pad[0], pad[1]])) / gain).tolist()
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def _outline(
    protos: np.ndarray,
    weights: np.ndarray,
    box: np.ndarray,
    imgsz: tuple[int, int],
    gain: float,
    pad: tuple[int, int],
    photo_shape: tuple[int, int],
) -> np.ndarray | None:
    """The plate's outline in photo pixels: its mask (prototypes × weights) inside its box, traced."""
    channels, mh, mw = protos.shape
    sx, sy = mw / imgsz[1], mh / imgsz[0]
    px1, py1 = max(int(np.floor(box[0] * sx)), 0), max(int(np.floor(box[1] * sy)), 0)
    px2, py2 = min(int(np.ceil(box[2] * sx)), mw), min(int(np.ceil(box[3] * sy)), mh)
    if px2 <= px1 or py2 <= py1:
        return None
    logits = weights.astype(np.float32) @ protos[:, py1:py2, px1:px2].reshape(channels, -1).astype(np.float32)
    logits = logits.reshape(py2 - py1, px2 - px1)
    # Up to letterbox pixels (bilinear, as ultralytics), then only what lies inside the box.
    lx1, ly1 = px1 / sx, py1 / sy
    out_w, out_h = max(round((px2 - px1) / sx), 1), max(round((py2 - py1) / sy), 1)
    up = cv2.resize(logits, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    inside = (xs + lx1 >= box[0]) & (xs + lx1 < box[2]) & (ys + ly1 >= box[1]) & (ys + ly1 < box[3])
    binary = ((up > 0) & inside).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    # All the mask's pieces: the mask is later fitted with one rotated rectangle (minAreaRect),
    # and picking one piece could leave the rest of the plate outside it.
    contour = np.concatenate(contours).reshape(-1, 2).astype(np.float32)
    if len(contour) < 3:
        return None
    contour += np.float32([lx1 - pad[0], ly1 - pad[1]])
    contour /= gain
    height, width = photo_shape
    contour[:, 0] = np.clip(contour[:, 0], 0, width)
    contour[:, 1] = np.clip(contour[:, 1], 0, height)
    return contour


def export_metadata(path: Path) -> dict[str, Any]:
    """An OpenVINO export's metadata.yaml (ultralytics writes it next to the IR), or nothing."""
    folder = path if path.is_dir() else path.parent
    if not (folder / "metadata.yaml").is_file():
        return {}
    import yaml

    return yaml.safe_load((folder / "metadata.yaml").read_text(encoding="utf-8")) or {}


def model_info(metadata: dict[str, Any]) -> ModelInfo:
    """Input size, batch and class names from an export's metadata (ultralytics' keys)."""
    imgsz = metadata.get("imgsz", [640, 640])
    imgsz = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    names = {int(k): str(v) for k, v in (metadata.get("names") or {0: "plate"}).items()}
    task = str(metadata.get("task", "segment"))
    return ModelInfo(imgsz=imgsz, batch=int(metadata.get("batch", 1)), names=names, task=task)


def is_free_size(metadata: dict[str, Any]) -> bool:
    """Whether an export takes any input size (ultralytics' ``dynamic=True``), read from its metadata."""
    return bool((metadata.get("args") or {}).get("dynamic"))


def ir_file(path: Path) -> Path | None:
    """The .xml of an OpenVINO IR given as the file or its folder, or None when ``path`` is no IR."""
    if path.suffix == ".xml":
        return path
    if path.is_dir():
        return next(iter(sorted(path.glob("*.xml"))), None)
    return None


def cpu_config() -> dict[str, Any]:
    """How every model is compiled for the CPU.

    Throughput comes from car tasks side by side, one per core (``PLATEMASK_CAR_TASKS``), each
    process with its own models. OpenVINO's defaults (threads on every core, pinned to them)
    made two tasks on two cores pin their threads onto the same cores and fight for them. One
    unpinned thread per model did two tasks' plate inferences in 8.7 s where the defaults took
    12.5 s (2 × 83 inferences, median of 3), and alone it is as fast as two threads on this
    2-core machine. ``PLATEMASK_INFERENCE_THREADS`` gives a host with more cores than car tasks
    more threads per model (0: OpenVINO's choice).
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    threads = inference_threads()
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def inference_threads() -> int:
    """``PLATEMASK_INFERENCE_THREADS``: threads per model inference, 0 for OpenVINO's choice (default 1)."""
    value = os.environ.get("PLATEMASK_INFERENCE_THREADS", "").strip() or "1"
    try:
        threads = int(value)
    except ValueError:
        threads = -1
    if threads < 0:
        raise ModelError(f"PLATEMASK_INFERENCE_THREADS must be 0 or a positive number of threads, not {value!r}")
    return threads


def compile_openvino(path: Path, cache_dir: Path | None = None, edit: Callable[[Any], Any] | None = None) -> Any:
    """An OpenVINO IR or ONNX file compiled for the CPU, imported from the cache folder when it can be.

    The first process compiles the model and exports the compiled model into the cache folder;
    later task processes import that blob, which skips reading, converting and compiling the
    model. Measured in a process whose CPU plugin is already up: 0.16 instead of 0.38 CPU-s for
    the plate model, 0.10 instead of 0.48 for the text recogniser (OpenVINO's own CACHE_DIR still
    reads every model to hash it); the first model of a process also pays the plugin's start.

    ``edit`` changes the read model before it is compiled (an input shape, outputs left out); its
    name is part of the blob's, so each edit of a model has a blob of its own.
    """
    import openvino as ov

    config = cpu_config()
    core = ov.Core()
    try:
        suffix = f".{edit.__name__}.blob" if edit else ".blob"
        blob = cached_file(path, suffix, cache_dir)  # a missing model file fails here, as a ModelError
        with _cache_lock(blob.parent if blob else None):
            if blob is not None and blob.is_file():
                try:
                    return core.import_model(blob.read_bytes(), "CPU", config)
                except Exception as exc:  # a blob of another build or a damaged file: compile again
                    log.warning("Compiled model %s not usable (%s); compiling %s again", blob, exc, path)
            compiled = core.compile_model(edit(core.read_model(str(path))) if edit else str(path), "CPU", config)
            if blob is not None:
                _write_atomically(blob, compiled.export_model().getvalue())
            return compiled
    except Exception as exc:
        raise ModelError(f"cannot load model {path}: {exc}") from exc


def cached_file(path: Path, suffix: str, cache_dir: Path | None = None) -> Path | None:
    """Where something derived from model file ``path`` is kept in the cache folder, or None when
    the folder cannot be written (then it is derived again in every process: slower, correct).

    The name holds the model files' identity (path, size, modification time), OpenVINO's version
    and the CPU settings, so a replaced model, an upgrade or another setting never meets an old blob.
    """
    import openvino as ov

    cache = cache_dir or default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not os.access(cache, os.W_OK):
            return None
    except OSError:
        return None
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    identity = [ov.get_version(), repr(sorted(cpu_config().items()))]
    for file in files:
        stat = file.stat()
        identity.append(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:20]
    return cache / f"{path.stem}-{digest}{suffix}"


def _write_atomically(target: Path, data: bytes) -> None:
    """Temp file + rename: a process that reads the cache never sees half a blob."""
    try:
        atomic_write(target, data)
    except OSError as exc:  # a full or read-only cache only costs the next process a compile
        log.warning("Could not keep %s in the model cache: %s", target.name, exc)


@contextlib.contextmanager
def _cache_lock(cache: Path | None) -> Iterator[None]:
    """One process at a time compiles into (or imports from) the cache folder.

    Car tasks start together on a cold cache: the first compiles and exports the blob, the
    others wait and import it, instead of every one of them compiling the same model.
    """
    if cache is None:
        yield
        return
    try:
        handle = open(cache / ".compile.lock", "a")  # noqa: SIM115 (held for the whole block)
    except OSError:
        yield  # a read-only cache: nobody writes blobs there
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _openvino(path: Path, cache_dir: Path | None, metadata: dict[str, Any], outlines: bool) -> tuple[Any, bool]:
    """A runner for an OpenVINO IR, and whether its input size is free (a ``dynamic=True`` export).

    Whether it is free is read from the export's metadata, not the model: reading the model is
    what the compiled-model cache spares a task process.
    """
    free_size = is_free_size(metadata)
    compiled = compile_openvino(
        ir_file(path), cache_dir, _plate_model_edit(free_size, int(metadata.get("batch", 1)), outlines)
    )
    request = compiled.create_infer_request()
    outputs = sorted(compiled.outputs, key=lambda port: len(port.get_partial_shape()))  # rows (3-D), then protos (4-D)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        result = request.infer({0: batch}, share_inputs=True)  # no copy of the input tensor
        return [np.asarray(result[port]) for port in outputs]

    return run, free_size


def _plate_model_edit(free_size: bool, batch: int, outlines: bool) -> Callable[[Any], Any] | None:
    """How the plate model is changed before it is compiled, or None to compile it as exported.

    A free-size model gets a fixed batch and a free height and width: one compiled model runs
    every photo shape, as fast as one compiled for that shape alone (640 × 480: 123 against
    123 ms; 640 × 640: 163 against 161 ms). Without outlines only the plate rows are kept, and
    OpenVINO drops the prototype branch that fed the rest (640 × 640: 161 instead of 219 ms).
    """
    if outlines and not free_size:
        return None
    import openvino as ov

    def edit(model: Any) -> Any:
        if free_size:
            model.reshape({0: ov.PartialShape([batch, 3, -1, -1])})
        if not outlines:
            rows = min(model.outputs, key=lambda port: len(port.get_partial_shape()))
            model = ov.Model([rows.get_node().input_value(0)], model.get_parameters(), "plate_rows")
        return model

    edit.__name__ = f"{'any-size' if free_size else 'fixed-size'}-{'outlines' if outlines else 'boxes'}"
    return edit


def _onnxruntime(path: Path, outlines: bool) -> tuple[Any, dict[str, Any], bool]:
    """A runner for an ONNX export, the metadata ultralytics stores in its properties, and
    whether its input size is free."""
    import ast

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = inference_threads()  # as for OpenVINO (cpu_config); 0 is its own choice
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"cannot load plate model {str(path)!r}: {exc}") from exc
    props = session.get_modelmeta().custom_metadata_map
    metadata = {key: ast.literal_eval(props[key]) for key in ("imgsz", "batch", "names") if key in props}
    if "task" in props:
        metadata["task"] = props["task"]  # a plain word, not a Python literal
    feed = session.get_inputs()[0]
    dtype = np.float16 if "float16" in feed.type else np.float32
    names = [o.name for o in sorted(session.get_outputs(), key=lambda o: len(o.shape))]  # rows, then protos
    if not outlines:
        names = names[:1]
    free_size = not isinstance(feed.shape[2], int)  # a named (symbolic) height: any size goes in

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return session.run(names, {feed.name: batch.astype(dtype, copy=False)})

    return run, metadata, free_size


def default_cache_dir() -> Path:
    """Where OpenVINO keeps compiled models between task processes: ``PLATEMASK_MODEL_CACHE``, or a temp folder."""
    configured = os.environ.get("PLATEMASK_MODEL_CACHE")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"platemask-{os.getuid()}" / "openvino"
