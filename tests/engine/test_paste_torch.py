"""The torch (GPU) path shares the compositor's reference tests.

Unverified on CUDA: this project's test machine has no GPU, so the "cuda" cases skip there; the
"cpu" cases run the same torch code on CPU tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cendetect.engine.paste_torch import fill_masks_torch, paste_crops_torch, paste_masks_torch
from tests.engine.reference import assert_matches_reference, fill_reference, paste_reference
from tests.engine.test_compositor_paste import H, W, near_threshold_masks, random_boxes

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device (GPU path unverified here)"
        ),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("seed", range(3))
def test_torch_paste_matches_reference(device: str, dtype: torch.dtype, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20
    probs = near_threshold_masks(rng, n, 28) if seed == 0 else rng.random((n, 28, 28), np.float32)
    boxes = random_boxes(rng, n)
    boxes[0] = [np.nan, 0, 5, 5]
    boxes[1] = [30, 30, 20, 40]  # inverted
    ref, values, noise = paste_reference(torch.from_numpy(probs).to(dtype).numpy(), boxes, H, W)
    got = paste_masks_torch(
        torch.from_numpy(probs).to(device, dtype), torch.from_numpy(boxes).to(device), (H, W)
    )
    assert_matches_reference(got.to_full(), ref, values, noise)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_fill_matches_reference(device: str) -> None:
    rng = np.random.default_rng(9)
    n = 10
    probs = rng.random((n, 28, 28), dtype=np.float32)
    boxes = random_boxes(rng, n)
    labels = rng.integers(0, 2, n)
    table = np.array([[0, 255, 0], [0, 255, 255]], np.uint8)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    t = torch.from_numpy(image.copy()).to(device)
    out = fill_masks_torch(
        t,
        torch.from_numpy(probs).to(device),
        torch.from_numpy(boxes).to(device),
        torch.from_numpy(labels),
        table,
    )
    assert out is t
    ref, values, noise = paste_reference(probs, boxes, H, W)
    # as assert_matches_reference: pixels whose sample lies within its mask's noise of 0.5
    near = (np.abs(values.astype(np.float64) - 0.5) <= noise[:, None, None]).any(0)
    want = fill_reference(image, ref, table[labels])
    agree = (out.cpu().numpy() == want).all(2)
    assert agree[~near].all()


def test_torch_crops_are_window_sized_not_image_sized() -> None:
    probs = torch.rand(3, 28, 28)
    boxes = torch.tensor([[1.0, 1, 9, 5], [0, 0, 0, 0], [100, 100, 110, 120]])
    windows, crops = paste_crops_torch(probs, boxes, (H, W))
    for (x0, y0, x1, y1), c in zip(windows.tolist(), crops):
        assert tuple(c.shape) == (y1 - y0, x1 - x0) and c.dtype == torch.bool


def test_torch_path_errors() -> None:
    with pytest.raises(ValueError, match="torch tensors"):
        paste_crops_torch(np.zeros((1, 28, 28)), torch.zeros(1, 4), (H, W))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        paste_crops_torch(torch.zeros(2, 28, 28), torch.zeros(1, 4), (H, W))
    with pytest.raises(ValueError, match="uint8"):
        fill_masks_torch(torch.zeros(H, W, 3), torch.zeros(1, 28, 28), torch.zeros(1, 4))
