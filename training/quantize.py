"""Quantize the plate model to INT8 for the CPU, reproducibly (NNCF post-training quantization).

The shipped weights (``include/platemask/models/plates.pt``) are exported to OpenVINO as
``platemask prepare-model`` does, then NNCF measures each layer's activations on calibration photos
and stores the network with 8-bit weights and activations. On this 2-core CPU (AVX-512 VNNI) a
640 × 480 photo then takes 75 instead of 119 ms; the plates found are the same or more
(docs/model-card.md). The head's decoding (box distribution, anchors, sigmoid) stays in floating
point: it is cheap, and boxes must keep their pixel accuracy.

Calibration photos are real training photos, never evaluation ones: the Open Images training split
of the Roboflow export and the EU dash-camera frames that ``training/build_dataset.py`` also reads,
minus every photo that matches an evaluation photo by Open Images id or perceptual hash. Each is
letterboxed exactly as the detector does in production.

Run: .venv/bin/python -m training.quantize --roboflow-git DIR --dashcam-git DIR   (make quantize)
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import yaml

from platemask.detect import SHIPPED_INT8, SHIPPED_WEIGHTS, export_openvino, staging_folder, swap_in
from platemask.runtime import STRIDE, export_metadata, ir_file, is_free_size, letterbox, model_info
from training.build_dataset import EVAL_DATA, _EvalIndex, _roboflow_photos, _voc_photos

PER_SOURCE = 150  # calibration photos from each source: 300 in all, NNCF's own default subset


def main(argv: Sequence[str] | None = None) -> int:
    """Export, calibrate and write the INT8 model folder."""
    args = _parser().parse_args(argv)
    photos = calibration_photos(args.roboflow_git, args.dashcam_git, args.eval_data, args.per_source)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_openvino(args.weights, Path(tmp) / "fp16")
        print(quantize(exported, photos, args.out))
    return 0


def calibration_photos(
    roboflow_git: Path | None, dashcam_git: Path | None, eval_data: Path | None, per_source: int
) -> list[np.ndarray]:
    """Up to ``per_source`` photos from each source's training part, none of them an evaluation photo."""
    if eval_data is not None and not eval_data.is_dir():
        raise FileNotFoundError(f"evaluation sets {eval_data} not found: cannot keep them out of calibration")
    excluded = _EvalIndex.load(eval_data)
    sources: list[Iterator[np.ndarray]] = []
    if roboflow_git is not None:
        training = (p for split, p in _roboflow_photos(roboflow_git, None) if split == "train")
        sources.append(p.image for p in training if not excluded.reason(p))
    if dashcam_git is not None:
        sources.append(p.image for _, p in _voc_photos(dashcam_git, "dashcam", None) if not excluded.reason(p))
    return [image for source in sources for image in itertools.islice(source, per_source)]


def quantize(model_dir: Path, photos: Iterable[np.ndarray], target: Path) -> Path:
    """An INT8 copy of the OpenVINO export in ``model_dir``, calibrated on ``photos``, written to ``target``."""
    import nncf
    import openvino as ov

    xml = ir_file(model_dir)
    if xml is None:
        raise FileNotFoundError(f"no OpenVINO model (.xml) in {model_dir}")
    metadata = export_metadata(model_dir)
    stride = STRIDE if is_free_size(metadata) else None  # as SegmentationModel letterboxes in production
    tensors = [letterbox(photo, model_info(metadata).imgsz, stride)[0] for photo in photos]
    if not tensors:
        raise ValueError("no calibration photos")
    model = ov.Core().read_model(str(xml))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(tensors),
        preset=nncf.QuantizationPreset.MIXED,  # symmetric weights, asymmetric activations (SiLU is not symmetric)
        subset_size=len(tensors),
        ignored_scope=nncf.IgnoredScope(names=head_decoding(model)),
    )
    staging = staging_folder(target)
    ov.save_model(quantized, str(staging / xml.name))
    metadata["description"] = f"platemask's plate model, OpenVINO IR, INT8 (NNCF, {len(tensors)} calibration photos)"
    metadata.setdefault("args", {})["quantize"] = 8
    (staging / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False), encoding="utf-8")
    return swap_in(staging, target)


def head_decoding(model: object) -> list[str]:
    """Operations of the detection head that decode its outputs (everything but its convolutions).

    The head is the module holding the network's last sigmoid (ultralytics' own INT8 export finds it
    the same way). Its convolutions are quantized like the rest: keeping them in floating point
    made the model 12 % slower and found no more plates.
    """
    ops = model.get_ordered_ops()  # type: ignore[attr-defined]
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        raise ValueError("not a YOLO detection model: no sigmoid in its head")
    head = sigmoids[-1].split("/", 1)[0]  # e.g. __module.model.22
    return [op.get_friendly_name() for op in ops if op.get_friendly_name().startswith((f"{head}/", f"{head}.dfl"))]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS, help="ultralytics checkpoint to quantize")
    parser.add_argument("--out", type=Path, default=SHIPPED_INT8, help="target folder (default: the shipped model)")
    parser.add_argument("--roboflow-git", type=Path, help="git directory of komsait/License-Plate-Detector")
    parser.add_argument("--dashcam-git", type=Path, help="git directory of RobertLucian/license-plate-dataset")
    parser.add_argument("--eval-data", type=Path, default=EVAL_DATA, help="evaluation sets to keep out")
    parser.add_argument("--per-source", type=int, default=PER_SOURCE, help="calibration photos per source")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
