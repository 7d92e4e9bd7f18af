"""INT8 quantization (training/quantize.py): its calibration photos, and a quantization on a tiny set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from platemask.config import DetectOptions
from platemask.detect import PlateDetector, prepared_model_dir
from tests.support.synthetic import make_car_photo
from tests.training.test_dataset_and_training import KEPT, _eval_set, _export_repo, _voc_repo
from training.quantize import calibration_photos, head_decoding, quantize


def test_calibration_photos_are_training_photos_and_never_evaluation_ones(tmp_path: Path) -> None:
    git_dir, images = _export_repo(tmp_path)
    photos = calibration_photos(git_dir, _voc_repo(tmp_path), _eval_set(tmp_path, images), per_source=10)
    # Of the export's three training photos, one shares an evaluation photo's Open Images id and
    # one its pixels; its validation photo is not a training photo. The dash-camera frame stays.
    assert [p.shape[:2] for p in photos] == [(480, 640), (720, 1280)]
    assert np.abs(photos[0].astype(int) - images[KEPT].astype(int)).mean() < 3  # the same photo, JPEG apart

    with pytest.raises(FileNotFoundError, match="cannot keep them out"):
        calibration_photos(git_dir, None, tmp_path / "no-such-folder", per_source=10)


@pytest.mark.inference
def test_quantize_writes_an_int8_model_that_finds_the_same_plate(tmp_path: Path) -> None:
    import openvino as ov

    calibration = [make_car_photo(seed, size=(1280, 960)).image for seed in (11, 12, 13)]
    out = quantize(prepared_model_dir(), calibration, tmp_path / "int8")

    model = ov.Core().read_model(str(out / "plates.xml"))
    quantized = {
        node.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "FakeQuantize"
        for node in (target.get_node() for target in op.output(0).get_target_inputs())
    }
    assert len(quantized) > 60  # the convolutions run in INT8 ...
    assert not quantized & set(head_decoding(model))  # ... the decoding of boxes stays in floating point
    metadata = yaml.safe_load((out / "metadata.yaml").read_text(encoding="utf-8"))
    assert metadata["args"]["quantize"] == 8 and metadata["args"]["dynamic"] is True
    assert not (tmp_path / "int8.partial").exists()

    photo = make_car_photo(21, size=(1280, 960), view="rear")  # not a calibration photo
    [found] = PlateDetector(DetectOptions(model=str(out))).detect([photo.image])
    assert any(max(abs(a - b) for a, b in zip(d.box, photo.plate_box, strict=True)) < 8 for d in found)
