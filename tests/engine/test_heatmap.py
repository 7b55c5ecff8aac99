"""``mode="heatmap"``: the mask probabilities before the threshold, over the image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cendetect.engine.heatmap import draw_heatmap, probability_map
from cendetect.engine.masks import InstanceMasks
from cendetect.engine.postprocess import Detections


def test_probability_map_samples_each_box_and_keeps_the_maximum() -> None:
    probs = np.zeros((2, 28, 28), np.float32)
    probs[0] = 0.25
    probs[1, :, 14:] = 0.9  # right half high
    boxes = np.array([[10, 10, 50, 30], [30, 20, 70, 40]], np.float32)
    heat = probability_map(boxes, probs, (60, 80))
    assert heat.shape == (60, 80) and heat.dtype == np.float32
    assert heat[0, 0] == 0 and heat[59, 79] == 0  # no box: no probability
    assert heat[15, 15] == pytest.approx(0.25)  # inside the first box only
    assert heat[35, 65] == pytest.approx(0.9)  # the second box's high half
    assert heat[25, 35] == pytest.approx(0.25)  # overlap: its low half loses to the first
    assert heat[25, 60] == pytest.approx(0.9)  # overlap area, high half: the maximum
    assert heat[:, 71:].max() == 0  # nothing past the second box's right edge


def test_draw_heatmap_leaves_zero_probability_pixels_alone() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), np.uint8)
    probs = np.full((1, 28, 28), 0.8, np.float32)
    out = draw_heatmap(img, np.array([[10, 5, 30, 25]], np.float32), probs, alpha=0.5)
    assert np.array_equal(out[:5], img[:5]) and np.array_equal(out[:, 31:], img[:, 31:])
    inside = out[10:20, 15:25].astype(int) - img[10:20, 15:25].astype(int)
    assert np.abs(inside).max() > 10  # coloured
    # 0.8 maps to a warm JET colour: red dominates blue where the image was grey
    grey = np.full_like(img, 128)
    warm = draw_heatmap(grey, np.array([[10, 5, 30, 25]], np.float32), probs, alpha=1.0)
    b, g, r = (int(v) for v in warm[15, 20])
    assert r > b
    with pytest.raises(ValueError, match="alpha"):
        draw_heatmap(img, np.zeros((0, 4)), np.zeros((0, 28, 28)), alpha=2.0)


def test_detections_carry_probabilities_through_take_and_composite() -> None:
    masks = np.zeros((2, 30, 40), bool)
    masks[0, 5:15, 5:15] = masks[1, 10:25, 20:35] = True
    det = Detections(
        boxes=np.array([[5, 5, 15, 15], [20, 10, 35, 25]], np.float32),
        scores=np.array([0.9, 0.4], np.float32),
        labels=np.array([0, 1]),
        instance_masks=InstanceMasks.from_full(masks),
        class_names=("bar", "mosaic"),
        image_size=(30, 40),
        mask_probs=np.stack([np.full((28, 28), 0.3), np.full((28, 28), 0.7)]).astype(np.float32),
    )
    one = det.take(np.array([1]))
    assert one.mask_probs is not None and one.mask_probs.shape == (1, 28, 28)
    assert one.mask_probs[0, 0, 0] == pytest.approx(0.7)
    img = np.full((30, 40, 3), 100, np.uint8)
    out = det.composite(img, mode="heatmap")
    assert not np.array_equal(out, img) and np.array_equal(out[0, 0], img[0, 0])
    bare = Detections(det.boxes, det.scores, det.labels, det.instance_masks, det.class_names,
                      det.image_size)  # fmt: skip
    with pytest.raises(ValueError, match="mask probabilities"):
        bare.composite(img, mode="heatmap")


def test_run_mode_heatmap_and_min_image_size(tmp_path: Path) -> None:
    """Through ``cendetect run --mode heatmap``, and ``--min-image-size`` on the model options."""
    import argparse

    from cendetect.cli import main
    from cendetect.cli.common import add_model_args, add_shape_args, load_detector
    from tests.cli.conftest import make_image, write_image
    from tests.tiny_model import save_tiny_checkpoint

    tiny_ckpt = save_tiny_checkpoint(tmp_path / "tiny.pth")
    src, out = tmp_path / "in", tmp_path / "out"
    img = make_image(4, 96, 128)
    write_image(src / "a.png", img)
    rc = main(
        ["run", "--no-progress", "--input_path", str(src), "--output_path", str(out),
         "--checkpoint", str(tiny_ckpt), "--mode", "heatmap", "--confidence", "0"]
    )  # fmt: skip
    assert rc == 0
    res = cv2.imread(str(out / "a.png"))
    assert res.shape == img.shape and not np.array_equal(res, img)
    p = argparse.ArgumentParser()
    add_model_args(p)
    add_shape_args(p)
    args = p.parse_args(["--checkpoint", str(tiny_ckpt), "--min-image-size", "48"])
    det = load_detector(args)
    assert min(det.preprocess_cfg.img_scale) == 48
