"""Start a faster student from the plate model: YOLOv8n-seg, cut out of the trained YOLOv8s-seg.

YOLOv8n and YOLOv8s have the same layers and depth; n is s at half the width (every layer keeps
half its channels, except the box and mask-coefficient branches of the head, which keep theirs).
So instead of training a nano network from scratch, which needs far more epochs than a CPU
allows, the student starts as the teacher with, in every layer, the half of its output channels
that weigh most (the L1 norm of a channel's filter times its BatchNorm scale). Channels that must
stay the same set are chosen together: the residual chain of a C2f block with shortcuts (its second
half of ``cv1`` and every bottleneck's output), and the four copies of SPPF's pooled features.
Concatenations map each input's kept channels to their place in the concatenated tensor.

Cut, the network finds no plate yet (every layer lost half of what it reads), but it starts from
the teacher's strongest features rather than from noise; ``training/train.py --weights <student>
--freeze 0`` then fine-tunes every layer of it (``make student``).

Run: .venv/bin/python -m training.student [--teacher include/platemask/models/plates.pt] [--out …]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from platemask.detect import SHIPPED_WEIGHTS, quiet_ultralytics_environment
from training.recover import save_checkpoint

DEFAULT_OUT = Path(__file__).parent / "weights" / "student-yolov8n-seg.pt"
ARCHITECTURE = "yolov8n-seg.yaml"

Index = Any  # a torch tensor of kept channel indices
Choose = Callable[[Any, int], Index]  # (importance per channel, how many) → kept channels


def cut_student(teacher: object, architecture: str = ARCHITECTURE, choose: Choose | None = None) -> object:
    """A ``SegmentationModel`` of ``architecture`` holding ``teacher``'s strongest channels (eval mode).

    ``choose(importance, count)`` picks the kept channels of one tensor from their importance;
    by default the ``count`` largest, in their original order.
    """
    from ultralytics.nn.tasks import SegmentationModel

    teacher = teacher.float().eval()
    student = SegmentationModel(architecture, nc=len(teacher.names), verbose=False)
    kept = _Cut(_widths(student), choose or _largest).run(teacher)
    state = student.state_dict()
    sliced = {name: _slice(name, tensor, kept) for name, tensor in teacher.state_dict().items()}
    for name, tensor in sliced.items():
        if tensor.shape != state[name].shape:
            raise ValueError(f"{name}: cut to {tuple(tensor.shape)}, the student needs {tuple(state[name].shape)}")
    student.load_state_dict(sliced)
    student.names = dict(teacher.names)
    student.stride = teacher.stride
    return student.eval()


def _largest(importance: object, count: int) -> Index:
    return importance.topk(count).indices.sort().values


def _widths(model: object) -> dict[str, int]:
    """Output channels of every convolution of ``model``, by module name (ultralytics Conv blocks by their own name)."""
    from torch import nn

    widths = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            widths[name.removesuffix(".conv")] = module.out_channels
    return widths


class _Cut:
    """Walks the teacher layer by layer, choosing each convolution's kept channels from its inputs' kept ones."""

    def __init__(self, widths: dict[str, int], choose: Choose) -> None:
        self.widths = widths  # the student's output channels per convolution
        self.choose = choose
        self.kept: dict[str, tuple[Index, Index]] = {}  # convolution name → (kept inputs, kept outputs)

    def run(self, teacher: object) -> dict[str, tuple[Index, Index]]:
        import torch
        from torch import nn
        from ultralytics.nn.modules import SPPF, C2f, Concat, Conv, Segment

        outputs: list[Index] = []  # kept channels of each layer's output, by layer index
        widths: list[int] = []  # each layer's full output width in the teacher
        for i, layer in enumerate(teacher.model):
            sources = [layer.f] if isinstance(layer.f, int) else list(layer.f)
            ins = [outputs[s if s != -1 else i - 1] for s in sources] if i else [torch.arange(3)]
            full = [widths[s if s != -1 else i - 1] for s in sources] if i else [3]
            name = f"model.{i}"
            if isinstance(layer, Conv):
                out, width = self.conv(name, layer, ins[0]), layer.conv.out_channels
            elif isinstance(layer, nn.Upsample):
                out, width = ins[0], full[0]
            elif isinstance(layer, Concat):
                offsets = [sum(full[:j]) for j in range(len(full))]
                out, width = torch.cat([k + offsets[j] for j, k in enumerate(ins)]), sum(full)
            elif isinstance(layer, C2f):
                out, width = self.c2f(name, layer, ins[0]), layer.cv2.conv.out_channels
            elif isinstance(layer, SPPF):
                pooled, c = self.conv(f"{name}.cv1", layer.cv1, ins[0]), layer.cv1.conv.out_channels
                out = self.conv(f"{name}.cv2", layer.cv2, torch.cat([pooled + c * j for j in range(4)]))
                width = layer.cv2.conv.out_channels
            elif isinstance(layer, Segment):
                self.segment(name, layer, ins)
                out, width = torch.arange(0), 0
            else:
                raise ValueError(f"layer {i} ({type(layer).__name__}) is not a YOLOv8 layer this cut knows")
            outputs.append(out)
            widths.append(width)
        return self.kept

    def conv(self, name: str, module: object, inputs: Index, chosen: Index | None = None) -> Index:
        """Record a Conv block's kept channels: ``chosen``, or its strongest outputs."""
        if chosen is None:
            chosen = self.choose(_importance(module), self.widths[name])
        self.kept[name] = (inputs, chosen)
        return chosen

    def c2f(self, name: str, block: object, inputs: Index) -> Index:
        """C2f: ``cv1``'s output splits in two halves, the second runs through the bottlenecks, all concatenate."""
        import torch

        c, half = block.c, self.widths[f"{name}.cv1"] // 2
        first = self.choose(_importance(block.cv1)[:c], half)
        chain = [_importance(block.cv1)[c:]]
        if block.m[0].add:  # a residual chain: the second half and every bottleneck's output share channels
            chain += [_importance(m.cv2) for m in block.m]
        second = self.choose(sum(w / w.sum() for w in chain), half)
        self.conv(f"{name}.cv1", block.cv1, inputs, torch.cat([first, second + c]))
        parts, previous = [first, second + c], second
        for j, bottleneck in enumerate(block.m):
            hidden = self.conv(f"{name}.m.{j}.cv1", bottleneck.cv1, previous)
            previous = self.conv(f"{name}.m.{j}.cv2", bottleneck.cv2, hidden, second if bottleneck.add else None)
            parts.append(previous + c * (2 + j))
        return self.conv(f"{name}.cv2", block.cv2, torch.cat(parts))

    def segment(self, name: str, head: object, inputs: list[Index]) -> None:
        """The head's three branches per level, then the mask prototypes (from the finest level)."""
        import torch

        for level, features in enumerate(inputs):
            for branch in ("cv2", "cv3", "cv4"):
                stem, previous = getattr(head, branch)[level], features
                for k in (0, 1):
                    previous = self.conv(f"{name}.{branch}.{level}.{k}", stem[k], previous)
                # The last layer is a bare Conv2d predicting box, class or mask coefficients: all kept.
                self.kept[f"{name}.{branch}.{level}.2"] = (previous, torch.arange(stem[2].out_channels))
        proto = head.proto
        hidden = self.conv(f"{name}.proto.cv1", proto.cv1, inputs[0])
        weights = proto.upsample.weight.detach().abs().sum(dim=(0, 2, 3))  # ConvTranspose2d: in × out × k × k
        upsampled = self.choose(weights, self.widths[f"{name}.proto.upsample"])
        self.kept[f"{name}.proto.upsample"] = (hidden, upsampled)
        hidden = self.conv(f"{name}.proto.cv2", proto.cv2, upsampled)
        self.conv(f"{name}.proto.cv3", proto.cv3, hidden, torch.arange(proto.cv3.conv.out_channels))


def _importance(module: object) -> object:
    """Each output channel's weight: the L1 norm of its filter times its BatchNorm scale."""
    bn = module.bn
    scale = bn.weight.detach().abs() / (bn.running_var + bn.eps).sqrt()
    return module.conv.weight.detach().abs().sum(dim=(1, 2, 3)) * scale


def _slice(name: str, tensor: object, kept: dict[str, tuple[Index, Index]]) -> object:
    """``tensor`` of the teacher's state dict cut to the student's kept channels."""
    module, _, field = name.rpartition(".")
    owner = module.removesuffix(".conv").removesuffix(".bn")
    if module.endswith(".dfl.conv") or field == "num_batches_tracked":
        return tensor.clone()
    if owner not in kept:
        raise KeyError(f"{name}: no channels were chosen for {owner}")
    inputs, outputs = kept[owner]
    if tensor.ndim == 4 and module.endswith("upsample"):  # ConvTranspose2d: in × out × k × k
        return tensor[inputs][:, outputs].clone()
    if tensor.ndim == 4:
        return tensor[outputs][:, inputs].clone()
    return tensor[outputs].clone()  # conv bias, BatchNorm weight/bias/statistics


def main(argv: Sequence[str] | None = None) -> int:
    """Cut the student out of the teacher checkpoint and save it as an ultralytics checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=SHIPPED_WEIGHTS, help="trained YOLOv8s-seg checkpoint")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    quiet_ultralytics_environment()
    import torch

    teacher = torch.load(args.teacher, map_location="cpu", weights_only=False)["model"]
    student = cut_student(teacher)
    print(save_checkpoint(student, args.out, f"the YOLOv8s-seg {args.teacher}", made_by="training/student.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
