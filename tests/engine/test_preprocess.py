"""``preprocess``: the table-lookup normalisation equals mmcv's arithmetic bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cendetect.engine.preprocess import PreprocessConfig, preprocess, resize_image


def _mmcv_normalise(image: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """mmcv's imnormalize as mmdet's Normalize calls it: float32 mean subtracted in float32,
    times 1/std formed in float64, rounded once; ``[3, h, w]`` after the resize."""
    r, _ = resize_image(image, cfg)
    t = torch.from_numpy(np.ascontiguousarray(r)).permute(2, 0, 1).float()
    if cfg.to_rgb:
        t = t.flip(0)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.std, dtype=torch.float32).double().view(3, 1, 1)
    return ((t - mean).double() * inv_std).float()


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(size_divisor=32),  # pytorch style: RGB, ImageNet mean/std
        PreprocessConfig(to_rgb=False, mean=(103.53, 116.28, 123.675), std=(1.0, 1.0, 1.0)),
        PreprocessConfig(img_scale=(512, 512), size_divisor=32),
    ],
    ids=["rgb-std", "caffe-bgr", "keep-ratio-512"],
)
def test_table_normalisation_is_bit_exact_and_padding_is_zero(cfg: PreprocessConfig) -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (300, 417, 3), dtype=np.uint8),
        rng.integers(0, 256, (211, 190, 3), dtype=np.uint8),
    ]
    batch = preprocess(images, cfg)
    for i, image in enumerate(images):
        want = _mmcv_normalise(image, cfg)
        h, w = want.shape[1:]
        assert tuple(batch.image_sizes[i].tolist()) == (h, w)
        got = batch.images[i]
        assert torch.equal(got[:, :h, :w], want)  # exact: the same float32 bits
        assert not got[:, h:, :].any() and not got[:, :h, w:].any()  # zero padding
