"""A short AMP training run on CUDA (float16 autocast with the grad scaler): the losses stay
finite and fall on a fixed batch. Written for the GPU device (tools/gpu_check.sh); it skips on a
machine without CUDA, which is every machine this project's suite normally runs on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cendetect.train.data import collate
from cendetect.train.loop import Trainer
from tests.train.test_train_loop import _cfg


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP training needs a CUDA device")
def test_amp_losses_fall_on_a_fixed_batch(tiny_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tiny_dataset, tmp_path / "run", lr=0.01, device="cuda", amp=True))
    assert trainer.autocast_dtype == torch.float16 and trainer.scaler.is_enabled()
    torch.manual_seed(0)
    batch = collate([trainer.train_set[0], trainer.train_set[1]])
    records = [trainer.step(batch, it) for it in range(12)]
    done = [r for r in records if "skipped" not in r]  # the scaler may skip an overflow step
    assert len(done) >= 9, records
    assert all(math.isfinite(r["loss"]) for r in done)
    first = sum(r["loss"] for r in done[:2]) / 2
    last = sum(r["loss"] for r in done[-2:]) / 2
    assert last < first, [r["loss"] for r in done]
