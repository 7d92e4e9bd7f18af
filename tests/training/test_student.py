"""The student cut out of the plate model: the cut keeps the network's function, and YOLOv8n-seg's shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from platemask.detect import SHIPPED_WEIGHTS
from platemask.runtime import letterbox
from tests.support.synthetic import make_car_photo
from training.student import _importance, cut_student
from training.student import main as student_main

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def teacher():
    import torch

    return torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=False)["model"].float().eval()


def _rows(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        (rows, _protos), _ = model(torch.from_numpy(x))
    return rows.numpy()


def test_a_cut_that_keeps_every_channel_shuffled_computes_what_the_teacher_computes(teacher) -> None:
    # Every channel kept, in a random order per tensor: the network is the same function only if
    # each layer reads its inputs where the layer before put them (splits, residuals, concatenations).
    import torch

    generator = torch.Generator().manual_seed(7)
    shuffled = cut_student(teacher, "yolov8s-seg.yaml", lambda w, n: torch.randperm(len(w), generator=generator)[:n])
    x = letterbox(make_car_photo(seed=11).image, (640, 640), 32)[0]
    want, got = _rows(teacher, x), _rows(shuffled, x)
    assert got.shape == want.shape
    assert np.abs(got[:, :4] - want[:, :4]).max() < 0.05  # boxes, in input pixels
    assert want[:, 4].max() > 0.5  # the teacher sees the plate,
    assert np.abs(got[:, 4] - want[:, 4]).max() < 1e-4  # and so does the shuffled copy, as surely


def test_the_student_is_yolov8n_seg_holding_the_strongest_channels(teacher, tmp_path: Path) -> None:
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import SegmentationModel
    from ultralytics.utils.torch_utils import intersect_dicts

    out = tmp_path / "student.pt"
    assert student_main(["--out", str(out)]) == 0
    student = torch.load(out, map_location="cpu", weights_only=False)["model"].float()
    assert sum(p.numel() for p in student.parameters()) == 3_263_811  # yolov8n-seg.yaml, one class
    # The stem keeps the 16 of its 32 filters that weigh most, in their order.
    strongest = _importance(teacher.model[0]).topk(16).indices.sort().values
    assert torch.equal(student.model[0].conv.weight, teacher.model[0].conv.weight[strongest].half().float())
    # The box branch keeps all 64 of its channels, reading the half of P3 the neck kept.
    assert student.model[22].cv2[0][0].conv.weight.shape == (64, 64, 3, 3)
    # Training rebuilds the network from the checkpoint's yaml and keeps only the weights whose
    # shapes match: every one of the cut's must, or training would start from noise there.
    rebuilt = YOLO(str(out)).model.yaml
    fresh = SegmentationModel(rebuilt, nc=1, verbose=False).state_dict()
    assert len(intersect_dicts(student.state_dict(), fresh)) == len(fresh)
