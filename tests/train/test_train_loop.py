"""Training end to end on a tiny dataset: losses, checkpoints, resume, fine-tuning, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
import torch

from cendetect.checkpoint import load_checkpoint
from cendetect.cli import main
from cendetect.detector import Detector
from cendetect.train.data import collate
from cendetect.train.loop import TrainConfig, Trainer, lr_at


def _cfg(dataset: Path, out: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(
        dataset=str(dataset),
        out=str(out),
        iters=2,
        batch_size=2,
        lr=0.01,
        warmup_iters=0,
        checkpoint_every=2,
        eval_every=0,
        eval_images=2,
        train_scale=(128, 128),
        test_scale=128,
        hflip=0.0,
        crop_prob=0.0,
        colour_jitter=0.0,
        pretrained="none",
        workers=0,
        progress=False,
    )
    return replace(base, **kw)


def test_lr_schedule() -> None:
    cfg = TrainConfig(dataset="", out="", iters=100, lr=0.1, warmup_iters=10, warmup_ratio=0.1)
    # float64 Python arithmetic (no torch kernels): the same on every CPU; approx absorbs only
    # the formulas' own last-bit rounding (0.1 * 0.1 = 0.010000000000000002)
    assert lr_at(cfg, 0) == pytest.approx(0.01)
    assert lr_at(cfg, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 100) == pytest.approx(0.1 * cfg.min_lr_ratio)
    step = replace(cfg, schedule="step", steps=(0.5, 0.9))
    assert [lr_at(step, i) for i in (20, 50, 95)] == pytest.approx([0.1, 0.01, 0.001])


@pytest.mark.slow
def test_losses_finite_and_decrease_on_a_fixed_batch(tiny_dataset: Path, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tiny_dataset, tmp_path / "run", lr=0.01))
    torch.manual_seed(0)
    batch = collate([trainer.train_set[0], trainer.train_set[1]])
    assert all(b.shape[0] == 2 for b in batch.boxes)  # one bar, one mosaic per image
    records = [trainer.step(batch, it) for it in range(8)]
    keys = ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask")
    for rec in records:
        assert "skipped" not in rec
        assert all(math.isfinite(rec[k]) for k in (*keys, "loss"))
    first = sum(r["loss"] for r in records[:2]) / 2
    last = sum(r["loss"] for r in records[-2:]) / 2
    assert last < first, [r["loss"] for r in records]


@pytest.mark.slow
def test_checkpoint_round_trip_resume_and_finetune(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = Trainer(_cfg(tiny_dataset, out, eval_every=2))
    final = trainer.run()
    assert final == out / "iter_2.pth"
    for name in ("latest.pth", "train_state.pth", "model_fp16.pth", "log.jsonl"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log if "loss" in r] == [1, 2]
    evals = [r["eval"] for r in log if "eval" in r]
    assert len(evals) == 1 and set(evals[0]) >= {"bbox_mAP", "segm_mAP"}

    # the checkpoint is a plain mmdet 2.x one and loads in the detector with its own config
    ckpt = load_checkpoint(final)
    assert ckpt.layout == "mmdet2" and ckpt.classes == ("bar", "mosaic")
    assert ckpt.config["model"]["backbone"]["type"] == "MobileNetV2"
    det = Detector.from_checkpoint(final)
    assert det.preprocess_cfg.img_scale == (128, 128)
    for key, value in det.model.state_dict().items():  # a copy through torch.save: exact
        torch.testing.assert_close(
            value, trainer.model.state_dict()[key].cpu(), rtol=0, atol=0, msg=key
        )
    image = cv2.imread(str(tiny_dataset / "val" / "000.png"))
    result = det(image)
    assert result.image_size == image.shape[:2]
    half = Detector.from_checkpoint(out / "model_fp16.pth")
    assert half.class_names == ("bar", "mosaic")
    assert (out / "model_fp16.pth").stat().st_size < final.stat().st_size * 0.6

    # resume through the CLI: continues at iteration 2 and writes iteration 3
    code = main(
        ["train", "--dataset", str(tiny_dataset), "--out", str(out), "--resume",
         "--iters", "3", "--checkpoint-every", "3", "--eval-every", "0", "--train-scale", "128",
         "--test-scale", "128", "--pretrained", "none", "--workers", "0", "--no-progress",
         "--lr", "0.01", "--warmup-iters", "0"]
    )  # fmt: skip
    assert code == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log if "loss" in r] == [1, 2, 3]
    assert any("resumed" in str(r.get("start", "")) for r in log)
    assert load_checkpoint(out / "iter_3.pth").meta["iter"] == 3

    # fine-tune with the classes in the other order: class rows follow the names
    ft = Trainer(
        _cfg(tiny_dataset, tmp_path / "ft", classes=("mosaic", "bar"), init_from=str(final))
    )
    assert ft.classes == ("mosaic", "bar")
    assert "initialised from" in ft.note
    old, new = ckpt.state_dict, ft.model.state_dict()
    w_old, w_new = old["roi_head.bbox_head.fc_cls.weight"], new["roi_head.bbox_head.fc_cls.weight"]
    exact = {"rtol": 0, "atol": 0}  # the rows are copies
    torch.testing.assert_close(w_new[0], w_old[1], **exact)
    torch.testing.assert_close(w_new[1], w_old[0], **exact)
    torch.testing.assert_close(w_new[2], w_old[2], **exact)  # background
    r_old, r_new = old["roi_head.bbox_head.fc_reg.weight"], new["roi_head.bbox_head.fc_reg.weight"]
    torch.testing.assert_close(r_new[:4], r_old[4:], **exact)
    m_old = old["roi_head.mask_head.conv_logits.weight"]
    torch.testing.assert_close(new["roi_head.mask_head.conv_logits.weight"][0], m_old[1], **exact)
    torch.testing.assert_close(
        new["neck.fpn_convs.0.conv.weight"], old["neck.fpn_convs.0.conv.weight"], **exact
    )
    rec = ft.step(collate([ft.train_set[0], ft.train_set[1]]), 0)
    assert math.isfinite(rec["loss"])


@pytest.mark.slow
def test_finetune_to_a_new_class_keeps_known_rows(tiny_dataset: Path, tmp_path: Path) -> None:
    """A class the checkpoint lacks keeps its fresh initialisation; known classes are copied."""
    from cendetect.train.init import remap_class_rows

    old = torch.arange(12.0).view(3, 4)  # bar, mosaic, background
    new = torch.full((4, 4), -1.0)  # text, bar, mosaic, background
    out = remap_class_rows(
        "roi_head.bbox_head.fc_cls.weight", old, new, ("bar", "mosaic"), ("text", "bar", "mosaic")
    )
    assert out[0].tolist() == [-1.0] * 4
    torch.testing.assert_close(out[1:], old, rtol=0, atol=0)  # copied rows: exact


def test_cli_refuses_a_missing_dataset(tmp_path: Path) -> None:
    assert main(["train", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
