"""The training resize keeps masks on their image content (no sub-pixel shift)."""

from __future__ import annotations

import numpy as np
import pytest

from cendetect.train.data import resize_long_side


def _centroid(w: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(w.shape, dtype=np.float64)
    return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()


@pytest.mark.parametrize("target", [180, 510, 900])  # scale factors 3.0, 1.06, 0.6
def test_resized_masks_stay_on_their_content(target: int) -> None:
    """A white rectangle and its mask, resized together: the mask's centroid must sit on the
    resized image's intensity centroid. OpenCV's nearest neighbour (``floor(i * s)``) would put
    it ``(s - 1) / (2 s)`` px down-right (+0.33 px at s = 3, -0.33 px at s = 0.6); the bound is
    0.1 px on the mean over 40 rectangles, whose edges land at random sub-pixel positions, so
    one rectangle's rounding (up to +-0.5 px per edge) averages out."""
    rng = np.random.default_rng(target)
    diffs = []
    for _ in range(40):
        h, w = 540, 400
        x0, y0 = rng.integers(20, 200, 2)
        x1, y1 = x0 + rng.integers(30, 180), y0 + rng.integers(30, 300)
        mask = np.zeros((h, w), np.uint8)
        mask[y0:y1, x0:x1] = 1
        image = np.repeat((mask * 255)[..., None], 3, axis=2)
        img, masks = resize_long_side(image, mask[None], target)
        assert masks.shape == (1, *img.shape[:2]) and masks.dtype == np.uint8
        assert set(np.unique(masks)) <= {0, 1}
        diffs.append(_centroid(masks[0].astype(np.float64)) - _centroid(img[..., 0] / 255.0))
    mean = np.mean(diffs, axis=0)
    assert np.all(np.abs(mean) < 0.1), mean


def test_resize_without_instances() -> None:
    img, masks = resize_long_side(np.zeros((30, 60, 3), np.uint8), np.zeros((0, 30, 60)), 120)
    assert img.shape == (60, 120, 3) and masks.shape == (0, 60, 120)
