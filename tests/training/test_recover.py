"""The recovered platedet: same outputs as its ONNX export, trainable, exportable at other sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from platemask.detect import platedet_onnx
from platemask.runtime import SegmentationModel, letterbox
from tests.support.synthetic import make_car_photo
from training.recover import calibration_photos, recover, save_checkpoint

pytestmark = pytest.mark.model


def _input(photo: np.ndarray) -> np.ndarray:
    """A photo as the model's input, exactly as the product prepares it."""
    return letterbox(photo, (640, 640))[0]


@pytest.fixture(scope="module")
def recovered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = recover(platedet_onnx(), calibration_photos(4))
    return save_checkpoint(model, tmp_path_factory.mktemp("recovered") / "platedet.pt", "platedet.onnx")


def _onnx_outputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(platedet_onnx()), providers=["CPUExecutionProvider"])
    rows, protos = session.run(None, {"images": x.astype(np.float16)})
    return rows.astype(np.float32), protos.astype(np.float32)


def _torch_outputs(checkpoint: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    model = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"].float().eval()
    with torch.no_grad():
        (rows, protos), _ = model(torch.from_numpy(x))
    return rows.numpy(), protos.numpy()


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda: _input(make_car_photo(seed=5).image), id="car-photo"),
        pytest.param(lambda: np.random.default_rng(1).random((1, 3, 640, 640), dtype=np.float32), id="noise"),
    ],
)
def test_raw_outputs_equal_the_onnx_model_within_fp16(recovered: Path, make_input) -> None:
    x = make_input()
    rows, protos = _torch_outputs(recovered, x)
    want_rows, want_protos = _onnx_outputs(x)
    assert rows.shape == want_rows.shape == (1, 37, 8400)
    assert protos.shape == want_protos.shape == (1, 32, 160, 160)
    # fp16 keeps 11 bits: half a pixel at 512-640 px, about 1e-3 on a score.
    assert np.abs(rows[:, :4] - want_rows[:, :4]).max() < 1.0
    assert np.abs(rows[:, 4] - want_rows[:, 4]).max() < 2e-3
    assert np.abs(rows[:, 5:] - want_rows[:, 5:]).max() < 0.05
    assert np.abs(protos - want_protos).max() < 0.05 * max(1.0, float(np.abs(want_protos).max()))


def _train_mode_drift(model) -> float:
    """Mean relative change of the backbone's last features when BatchNorm uses the batch's statistics."""
    import torch

    x = torch.from_numpy(np.concatenate([_input(make_car_photo(seed=s).image) for s in (11, 12)]))
    features: list[torch.Tensor] = []
    hook = model.model[9].register_forward_hook(lambda _m, _i, out: features.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model.eval()
            model(x)
            model.train()
            model(x)
    finally:
        hook.remove()
        model.eval()
    eval_features, train_features = features
    return float((train_features - eval_features).abs().mean() / eval_features.abs().mean())


def test_calibrated_batchnorm_keeps_training_mode_close_to_the_model() -> None:
    """Fine-tuning starts from platedet only if training-mode BatchNorm computes about what eval mode does."""
    calibrated = _train_mode_drift(recover(platedet_onnx(), calibration_photos(4)))
    uncalibrated = _train_mode_drift(recover(platedet_onnx()))
    assert calibrated < 0.4
    assert uncalibrated > 1.0  # without calibration, the first training step would see another network


@pytest.mark.parametrize(
    ("fmt", "imgsz", "batch"),
    [pytest.param("onnx", 800, 2, id="onnx-800-batch2"), pytest.param("openvino", 1280, 1, id="openvino-1280")],
)
def test_exports_at_other_sizes_and_batches(recovered: Path, tmp_path: Path, fmt: str, imgsz: int, batch: int) -> None:
    from ultralytics import YOLO

    source = tmp_path / recovered.name
    source.write_bytes(recovered.read_bytes())
    exported = Path(YOLO(str(source)).export(format=fmt, imgsz=imgsz, batch=batch, half=fmt == "openvino"))
    model = SegmentationModel(exported)
    assert model.info.imgsz == (imgsz, imgsz) and model.info.batch == batch
    photo = make_car_photo(seed=2, size=(1600, 1200), view="front", style="private")
    found = model.predict(photo.image, conf=0.25, iou=0.5, max_det=50)
    x1, y1, x2, y2 = photo.plate_box
    assert any(d.box[0] < x2 and x1 < d.box[2] and d.box[1] < y2 and y1 < d.box[3] for d in found)
