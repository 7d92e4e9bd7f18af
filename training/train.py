"""Fine-tune the plate model, resumably: every epoch is checkpointed and a later session continues it.

Starts from the recovered platedet weights (training/recover.py) and trains on the set that
training/build_dataset.py writes. On this 2-core CPU it trains on 320² crops at inference scale;
with a GPU (``--device 0``, e.g. on the device machine) use ``--imgsz 640`` and more epochs.

Run:  .venv/bin/python -m training.train --epochs 8            # start, or continue where it stopped
      .venv/bin/python -m training.train --export include/platemask/models/plates.pt
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from platemask.detect import quiet_ultralytics_environment
from training.recover import DEFAULT_OUT as RECOVERED

HERE = Path(__file__).parent
DEFAULT_DATA = HERE / "data" / "data.yaml"
RUNS = HERE / "runs"
LR0 = 0.0005  # AdamW's initial learning rate: small steps from a good model


def main(argv: Sequence[str] | None = None) -> int:
    """Train (or resume), or export the last checkpoint's weights for shipping."""
    args = _parser().parse_args(argv)
    quiet_ultralytics_environment()
    run = RUNS / args.name
    last = run / "weights" / "last.pt"
    if args.export:
        return _export(last, args.export)
    train(
        args.data,
        run,
        args.epochs,
        args.imgsz,
        args.batch,
        args.device,
        weights=args.weights,
        fraction=args.fraction,
        freeze=args.freeze,
        lr0=args.lr0,
    )
    return 0


def train(
    data: Path,
    run: Path,
    epochs: int,
    imgsz: int,
    batch: int,
    device: str,
    weights: Path = RECOVERED,
    fraction: float = 1.0,
    freeze: int = 0,
    lr0: float = LR0,
) -> Path:
    """Run ``epochs`` epochs in ``run`` (resuming its last checkpoint if there is one); the last weights."""
    from ultralytics import YOLO

    last = run / "weights" / "last.pt"
    if last.is_file():
        if _finished(last):
            # Never train over a finished run: its weights may be what ships.
            raise FileExistsError(f"{run} has finished; export it, or train again with another --name")
        YOLO(str(last)).train(resume=True, device=device)
        return last
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: run python -m training.recover first")
    YOLO(str(weights)).train(
        data=str(data),
        task="segment",
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device=device,
        workers=2,
        project=str(run.parent.resolve()),
        name=run.name,
        exist_ok=True,
        save_period=1,  # a checkpoint every epoch: a stopped session loses at most one
        # Fine-tuning a good model: small steps, short warm-up, no new class head.
        optimizer="AdamW",
        lr0=lr0,
        # Frozen first layers keep what the teacher's features already see (small plates among
        # them) and make a CPU epoch cheaper: their gradients are never computed.
        freeze=freeze or None,
        lrf=0.1,
        warmup_epochs=0.3,
        cos_lr=True,
        single_cls=True,
        close_mosaic=1,
        fraction=fraction,
        val=False,  # scored by scripts/evaluate.py on the evaluation sets instead
        plots=False,
        amp=False,
        verbose=False,
    )
    return last


def _finished(last: Path) -> bool:
    """Whether the run that wrote ``last`` ran all its epochs (ultralytics clears the optimizer then)."""
    import torch

    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    epoch = checkpoint.get("epoch", -1)  # 0-based index of the epoch this checkpoint closed
    epochs = (checkpoint.get("train_args") or {}).get("epochs", 0)
    return checkpoint.get("optimizer") is None or epoch == -1 or epoch + 1 >= epochs


def _export(last: Path, target: Path) -> int:
    """Strip the optimizer from the run's last checkpoint and copy its weights to ``target``."""
    from ultralytics.utils.torch_utils import strip_optimizer

    if not last.is_file():
        print(f"no checkpoint at {last}", file=sys.stderr)
        return 2
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(last, partial)
    strip_optimizer(str(partial))
    checkpoint = torch.load(partial, map_location="cpu", weights_only=False)
    checkpoint["model"].names = {0: "plate"}  # single_cls training renames the class "item"
    checkpoint["docs"] = "platemask plate model: platedet 0.0.2 fine-tuned by training/train.py"
    torch.save(checkpoint, partial)
    partial.replace(target)
    print(target)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--name", default="finetune", help="run folder under training/runs/")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, or 0 for the first GPU")
    parser.add_argument("--weights", type=Path, default=RECOVERED, help="starting weights")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the training images to use")
    parser.add_argument("--freeze", type=int, default=10, help="first layers kept as they are (10: the backbone)")
    parser.add_argument("--lr0", type=float, default=LR0, help="initial learning rate (AdamW)")
    parser.add_argument("--export", type=Path, help="write the run's last weights here (optimizer stripped) and stop")
    return parser


if __name__ == "__main__":
    sys.exit(main())
