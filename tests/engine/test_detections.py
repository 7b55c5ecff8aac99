"""Detections keep compact masks from the compositor; ``.masks`` is built lazily."""

from __future__ import annotations

import numpy as np
import torch

from cendetect.engine import Batch, Detections, to_detections
from cendetect.engine.compositor import paste_masks
from tests.engine.reference import assert_matches_reference, paste_reference


def _raw_and_batch() -> tuple[tuple[torch.Tensor, ...], Batch]:
    g = torch.Generator().manual_seed(0)
    n = 7
    boxes = torch.rand(n, 4, generator=g) * 200
    boxes[:, 2:] = boxes[:, :2] + 5 + torch.rand(n, 2, generator=g) * 100
    scores = torch.sort(torch.rand(n, generator=g), descending=True).values
    labels = torch.randint(0, 2, (n,), generator=g)
    probs = torch.rand(n, 28, 28, generator=g)
    batch_ids = torch.tensor([0, 0, 1, 0, 1, 1, 0])
    batch = Batch(
        images=torch.zeros(2, 3, 320, 320),
        image_sizes=torch.tensor([[300, 320], [320, 240]]),
        scale_factors=torch.tensor([[1.25, 1.25, 1.25, 1.25], [0.8, 0.8, 0.8, 0.8]]),
        original_sizes=((240, 256), (400, 300)),
    )
    return (boxes, scores, labels, probs, batch_ids), batch


def test_to_detections_pastes_like_mmdetection() -> None:
    raw, batch = _raw_and_batch()
    results = to_detections(raw, batch, ("bar", "mosaic"))
    assert [len(r) for r in results] == [4, 3]
    for i, res in enumerate(results):
        sel = (raw[4] == i).nonzero().squeeze(1)
        h, w = batch.original_sizes[i]
        want_boxes = (raw[0][sel] / batch.scale_factors[i]).numpy()
        assert np.array_equal(res.boxes, want_boxes)  # the same float32 division: exact
        ref, values, noise = paste_reference(raw[3][sel].numpy(), want_boxes, h, w)
        assert "masks" not in res.__dict__  # not built yet
        assert res.masks.dtype == np.bool_
        assert_matches_reference(res.masks, ref, values, noise)
        assert res.masks is res.masks  # built once
        assert res.image_size == (h, w) and res.label_names[0] in ("bar", "mosaic")


def test_detections_composite_modes() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((2, 28, 28), dtype=np.float32)
    boxes = np.array([[5, 5, 40, 30], [20, 10, 60, 50]], np.float32)
    det = Detections(
        boxes=boxes,
        scores=np.array([0.9, 0.6], np.float32),
        labels=np.array([0, 1]),
        instance_masks=paste_masks(probs, boxes, (64, 80)),
        class_names=("bar", "mosaic"),
        image_size=(64, 80),
    )
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    green = det.composite(image)
    assert (green[det.masks.any(0)] == (0, 255, 0)).all()
    annotation = det.composite(image, mode="mask")
    assert (annotation[det.masks[1]] == (0, 255, 255)).all()
    assert det.composite(image, mode="overlay").shape == image.shape
    assert len(det.instance_masks.to_rle()) == 2
