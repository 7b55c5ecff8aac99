"""The training loop behind ``cendetect train``: plain PyTorch, one process.

Per iteration: a batch from :class:`~cendetect.train.data.CocoInstances` (augmented), the five
Mask R-CNN losses of :func:`~cendetect.train.losses.mask_rcnn_losses`, backward (AMP float16 with
a grad scaler on CUDA; optional bfloat16 autocast on CPU), gradient-norm clipping, an SGD or AdamW
step with linear warmup then cosine or step decay. Every ``log_every`` iterations a JSON line
(iteration, lr, losses, grad norm, seconds) goes to ``OUT/log.jsonl``; every
``checkpoint_every`` an mmdet 2.x checkpoint (:mod:`cendetect.train.checkpoints`); every
``eval_every`` COCO mAP on the val split (a JSON line with ``"eval"``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cendetect.config import PreprocessConfig
from cendetect.models.build import build_model
from cendetect.train.checkpoints import LATEST, export_fp16, load_train_state, save_checkpoint
from cendetect.train.config import TrainConfig, config_text, full_config
from cendetect.train.data import AugmentConfig, CocoInstances, Normalize, collate
from cendetect.train.evaluate import evaluate_coco
from cendetect.train.init import initial_model_config, initialise
from cendetect.train.losses import mask_rcnn_losses


def lr_at(cfg: TrainConfig, it: int) -> float:
    """Learning rate of (0-based) iteration ``it``: linear warmup from ``lr * warmup_ratio``,
    then cosine to ``lr * min_lr_ratio`` or x0.1 at each fraction in ``steps``."""
    if it < cfg.warmup_iters:
        k = it / max(cfg.warmup_iters, 1)
        return cfg.lr * (cfg.warmup_ratio + (1 - cfg.warmup_ratio) * k)
    if cfg.schedule == "cosine":
        span = max(cfg.iters - cfg.warmup_iters, 1)
        t = min((it - cfg.warmup_iters) / span, 1.0)
        low = cfg.lr * cfg.min_lr_ratio
        return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** sum(it >= int(f * cfg.iters) for f in cfg.steps)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'cosine' or 'step'")


def _batches(dataset: CocoInstances, cfg: TrainConfig, start_iter: int) -> Iterator[Any]:
    """Endless batches; each pass over the data is shuffled with ``(seed, epoch)``."""
    per_epoch = max(len(dataset) // cfg.batch_size, 1)
    epoch = start_iter // per_epoch
    skip = start_iter % per_epoch
    while True:
        dataset.epoch = epoch
        order = torch.randperm(
            len(dataset), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        )
        order = order[skip * cfg.batch_size :].tolist()
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=order,
            collate_fn=collate,
            num_workers=cfg.workers,
            drop_last=True,
        )
        yield from loader
        epoch, skip = epoch + 1, 0


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'adamw'")


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds the model, data and optimizer of a :class:`TrainConfig`; :meth:`run` trains."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(cfg.device)
        _set_seed(cfg.seed)
        jitter = cfg.colour_jitter
        aug = AugmentConfig(
            long_side=cfg.train_scale,
            hflip=cfg.hflip,
            crop_prob=cfg.crop_prob,
            brightness=jitter,
            contrast=jitter,
            saturation=jitter,
            hue=24 * jitter,
        )
        self.train_set = CocoInstances(cfg.dataset, "train", cfg.classes, aug, cfg.seed)
        self.classes = self.train_set.classes
        val_ann = Path(cfg.dataset) / "annotations" / "instances_val.json"
        self.val_set = (
            CocoInstances(cfg.dataset, "val", self.classes) if val_ann.is_file() else None
        )
        # the painted-art val part (cendetect synth's val_painted), evaluated beside val
        painted_ann = Path(cfg.dataset) / "annotations" / "instances_val_painted.json"
        self.val_painted_set = (
            CocoInstances(cfg.dataset, "val_painted", self.classes)
            if painted_ann.is_file()
            else None
        )
        model_cfg = initial_model_config(cfg.model, cfg.init_from, len(self.classes))
        if cfg.frozen_stages is not None:
            model_cfg["backbone"]["frozen_stages"] = cfg.frozen_stages
        self.config = full_config(
            model_cfg,
            self.classes,
            cfg.test_scale,
            cfg.train_scale,
            Normalize(),
            extra={k: v for k, v in asdict(cfg).items() if v is not None},
        )
        self.config_text = config_text(self.config)
        self.model = build_model(model_cfg, num_classes=len(self.classes))
        self.start_iter = 0
        self.note = initialise(self.model, cfg, self.classes)
        self.model.to(self.device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = _optimizer(cfg, params)
        use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.autocast_dtype = torch.float16 if use_amp else None
        if cfg.cpu_bf16 and self.device.type == "cpu":
            self.autocast_dtype = torch.bfloat16
        if cfg.resume:
            self._resume()
        self.preprocess = PreprocessConfig(
            img_scale=(cfg.test_scale, cfg.test_scale), keep_ratio=True
        )

    def _resume(self) -> None:
        latest = self.out / LATEST
        ckpt = torch.load(latest, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ckpt["state_dict"], strict=True)
        state = load_train_state(self.out)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_iter = int(state["iter"])
        torch.set_rng_state(state["torch_rng"])
        self.note = f"resumed from {latest} at iteration {self.start_iter}"

    def _train_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def checkpoint(self, it: int) -> Path:
        return save_checkpoint(
            self.out, self.model, self.classes, self.config_text, it, self._train_state()
        )

    def evaluate(self, it: int) -> dict[str, float] | None:
        if self.val_set is None:
            return None
        t0 = time.time()
        result = evaluate_coco(
            self.model, self.val_set, self.preprocess, self.cfg.eval_images, self.device
        )
        self.model.train()
        if self.val_painted_set is not None:
            painted = evaluate_coco(
                self.model,
                self.val_painted_set,
                self.preprocess,
                self.cfg.eval_images,
                self.device,
            )
            self.model.train()
            result.update({f"painted_{k}": v for k, v in painted.items()})
        result["seconds"] = round(time.time() - t0, 1)
        self._log({"iter": it, "eval": result})
        return result

    def step(self, batch: Any, it: int) -> dict[str, float]:
        """One optimisation step; returns the losses (floats), ``loss``, ``lr``, ``grad_norm``."""
        lr = lr_at(self.cfg, it)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device)
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                losses = mask_rcnn_losses(self.model, batch)
        else:
            losses = mask_rcnn_losses(self.model, batch)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(total):
            return {
                **{k: float(v.detach()) for k, v in losses.items()},
                "loss": float(total.detach()),
                "lr": lr,
                "skipped": 1.0,
            }
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        out = {k: round(float(v.detach()), 5) for k, v in losses.items()}
        loss = round(float(total.detach()), 5)
        return {**out, "loss": loss, "lr": lr, "grad_norm": float(norm)}

    def run(self) -> Path:
        """Train from ``start_iter`` to ``iters``; returns the final checkpoint's path."""
        from tqdm import tqdm

        cfg = self.cfg
        self._log({"iter": self.start_iter, "start": self.note, "classes": list(self.classes)})
        batches = _batches(self.train_set, cfg, self.start_iter)
        bar = tqdm(
            range(self.start_iter, cfg.iters),
            initial=self.start_iter,
            total=cfg.iters,
            disable=not cfg.progress,
            dynamic_ncols=True,
        )
        last = None
        bad = 0
        for it in bar:
            t0 = time.time()
            batch = next(batches)
            t1 = time.time()
            rec = self.step(batch, it)
            rec.update(iter=it + 1, data_s=round(t1 - t0, 3), step_s=round(time.time() - t1, 3))
            bad = bad + 1 if rec.get("skipped") else 0
            if bad >= 20:
                raise FloatingPointError(
                    f"20 iterations in a row with a non-finite loss (last {rec}); lower --lr"
                )
            if cfg.log_every and (it + 1) % cfg.log_every == 0:
                self._log(rec)
            bar.set_postfix(
                {k: f"{rec[k]:.3f}" for k in ("loss", "loss_rpn_cls", "loss_cls", "loss_mask")}
            )
            if cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0:
                last = self.checkpoint(it + 1)
            if cfg.eval_every and (it + 1) % cfg.eval_every == 0:
                self.evaluate(it + 1)
        if last is None or last.name != f"iter_{cfg.iters}.pth":
            last = self.checkpoint(cfg.iters)
        if cfg.eval_every and cfg.iters % cfg.eval_every:
            self.evaluate(cfg.iters)
        export_fp16(last, self.out / "model_fp16.pth")
        return last
