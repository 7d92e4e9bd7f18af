"""Recover platedet's ONNX model as a trainable ultralytics YOLOv8s-seg checkpoint.

platedet ships only an ONNX export (ultralytics 8.0.227, fp16, batch 1, 640²). Its initializers are
exactly the weights of ``yolov8s-seg.yaml`` with one class, each Conv already fused with its
BatchNorm. This script rebuilds that network, puts the fused weights back into it and gives every
BatchNorm statistics that undo themselves:

    conv.weight = W_fused,  bn.running_mean = mu,  bn.running_var = var,
    bn.weight = sqrt(var + eps),  bn.bias = b_fused + mu

so that in eval mode ``bn(conv(x)) = conv(x) + b_fused``: the exported model, exactly. ``mu`` and
``var`` are the per-channel statistics of each conv's output on calibration photos, so that in
training mode, where BatchNorm normalises with the batch's own statistics, the network starts out
computing nearly the same thing instead of rescaled noise. Fine-tuning then starts from platedet.

Run: .venv/bin/python -m training.recover [--out training/weights/platedet-recovered.pt]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from platemask.detect import platedet_onnx, quiet_ultralytics_environment
from platemask.runtime import letterbox

DEFAULT_OUT = Path(__file__).parent / "weights" / "platedet-recovered.pt"
ARCHITECTURE = "yolov8s-seg.yaml"
NAMES = {0: "plate"}


def recover(onnx_path: Path, calibration: Iterable[np.ndarray] = ()) -> object:
    """The ultralytics ``SegmentationModel`` that computes what ``onnx_path`` computes (fp32, eval mode)."""
    import onnx
    import torch
    from onnx import numpy_helper

    quiet_ultralytics_environment()
    from ultralytics.nn.modules import Conv
    from ultralytics.nn.tasks import SegmentationModel

    weights = {
        init.name: numpy_helper.to_array(init).astype(np.float32)
        for init in onnx.load(str(onnx_path)).graph.initializer
        if init.name.startswith("model.")
    }
    model = SegmentationModel(ARCHITECTURE, nc=len(NAMES), verbose=False)
    # Every tensor but the BatchNorms the export folded away, plus the fused convs' biases.
    expected = {name for name in model.state_dict() if ".bn." not in name} | _fused_bias_names(model)
    if set(weights) != expected:
        raise ValueError(
            f"{onnx_path} is not a fused {ARCHITECTURE} with nc={len(NAMES)}: "
            f"{len(set(weights) - expected)} unexpected and {len(expected - set(weights))} missing tensors"
        )
    with torch.no_grad():
        state = model.state_dict()
        for name, value in weights.items():
            if name in state:
                state[name].copy_(torch.from_numpy(value))
        for name, module in model.named_modules():
            if isinstance(module, Conv):
                _identity_bn(module, torch.from_numpy(weights[f"{name}.conv.bias"]))
    model.names = dict(NAMES)
    model.eval()
    _calibrate(model, list(calibration))
    return model


def save_checkpoint(model: object, out: Path, source: str, made_by: str = "training/recover.py") -> Path:
    """Save ``model`` as an ultralytics checkpoint (fp16, as ultralytics itself saves) that YOLO() and training load."""
    import copy
    from datetime import UTC, datetime

    import torch
    import ultralytics

    out.parent.mkdir(parents=True, exist_ok=True)
    model.args = {"task": "segment", "imgsz": 640, "single_cls": True}
    checkpoint = {
        "epoch": -1,
        "best_fitness": None,
        "model": copy.deepcopy(model).half(),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": dict(model.args),
        "date": datetime.now(UTC).isoformat(),
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 https://ultralytics.com/license",
        "docs": f"made from {source} by {made_by}",
    }
    partial = out.with_name(out.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(out)
    return out


def calibration_photos(count: int = 8) -> list[np.ndarray]:
    """Generated car photos (BGR) for the BatchNorm statistics: deterministic, nothing downloaded."""
    from tests.support.synthetic import make_car_photo

    return [make_car_photo(seed=9000 + i).image for i in range(count)]


def _fused_bias_names(model: object) -> set[str]:
    from ultralytics.nn.modules import Conv

    return {f"{name}.conv.bias" for name, module in model.named_modules() if isinstance(module, Conv)}


def _identity_bn(module: object, bias: object) -> None:
    """BatchNorm that adds ``bias`` and nothing else (its statistics are set by _calibrate)."""
    bn = module.bn
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.copy_(bias)


def _calibrate(model: object, photos: Sequence[np.ndarray]) -> None:
    """Give each BatchNorm the statistics of its conv's output on ``photos``, keeping eval outputs unchanged."""
    import torch
    from ultralytics.nn.modules import Conv

    if not photos:
        return
    convs = [module for module in model.modules() if isinstance(module, Conv)]
    sums: dict[int, list[torch.Tensor]] = {}

    def record(module: object, _inputs: object, output: torch.Tensor) -> None:
        z = output.double()
        stats = sums.setdefault(id(module), [torch.zeros(z.shape[1], dtype=torch.float64)] * 2 + [0])
        stats[0] = stats[0] + z.sum(dim=(0, 2, 3))
        stats[1] = stats[1] + (z * z).sum(dim=(0, 2, 3))
        stats[2] += z.shape[0] * z.shape[2] * z.shape[3]

    hooks = [module.conv.register_forward_hook(record) for module in convs]
    try:
        with torch.no_grad():
            for photo in photos:
                model(torch.from_numpy(letterbox(photo, (640, 640))[0]))  # as the product feeds it
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for module in convs:
            total, squares, n = sums[id(module.conv)]
            mean = total / n
            var = (squares / n - mean * mean).clamp(min=1e-6)
            bn = module.bn
            bias = bn.bias.double().clone()  # identity BN: bias is the fused conv bias
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_((var + bn.eps).sqrt())
            bn.bias.copy_(bias + mean)


def main(argv: Sequence[str] | None = None) -> int:
    """Recover platedet and save it as an ultralytics checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, help="platedet ONNX file (default: the installed platedet package's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    source = args.onnx or platedet_onnx()
    model = recover(source, calibration_photos())
    print(save_checkpoint(model, args.out, f"platedet 0.0.2 ({source.name})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
