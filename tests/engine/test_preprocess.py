"""``preprocess``: the table-lookup normalisation equals mmcv's arithmetic bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cendetect.engine.preprocess import (
    PreprocessConfig,
    normalise_arithmetic,
    preprocess,
    resize_image,
)


def _mmcv_normalise(image: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """mmcv's imnormalize as mmdet's Normalize calls it, after the resize: ``[3, h, w]``."""
    return normalise_arithmetic(resize_image(image, cfg)[0], cfg)


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
