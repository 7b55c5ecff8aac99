"""Composite modes (fill, mask, mosaic, blur, overlay, dilate) against numpy/OpenCV references.

All comparisons are exact: the masks are the compositor's own bitmaps, and every mode computes
uint8 pixels with integer arithmetic (blur: OpenCV's fixed-point 8-bit GaussianBlur, bit-exact
on each of its SIMD paths, over a margin that covers its kernel).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cendetect.engine import InstanceMasks, composite, paste_masks
from tests.engine.reference import block_mean_reference, dilate_reference, fill_reference
from tests.engine.test_compositor_paste import random_boxes

H, W = 120, 150


@pytest.fixture
def scene() -> tuple[np.ndarray, InstanceMasks, np.ndarray]:
    rng = np.random.default_rng(5)
    n = 9
    probs = rng.random((n, 28, 28), dtype=np.float32)
    probs[:, 6:22, 6:22] = 0.9  # solid centres: real regions, not just noise
    boxes = random_boxes(rng, n, H, W)
    boxes[:3] = [[5, 5, 60, 40], [50, 30, 140, 110], [0, 90, 30, 120]]
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return image, paste_masks(probs, boxes, (H, W)), rng.integers(0, 2, n)


def test_fill_per_class_colours_later_wins(scene) -> None:
    image, masks, labels = scene
    table = np.array([[0, 255, 0], [0, 255, 255]], np.uint8)
    out = composite(image, masks, labels, "fill", colors=table)
    assert np.array_equal(out, fill_reference(image, masks.to_full(), table[labels]))
    by_name = composite(
        image,
        masks,
        labels,
        colors={"bar": (0, 255, 0), "mosaic": (0, 255, 255)},
        class_names=("bar", "mosaic"),
    )
    assert np.array_equal(by_name, out)


def test_fill_inplace_and_copy(scene) -> None:
    image, masks, _ = scene
    original = image.copy()
    out = composite(image, masks)
    assert np.array_equal(image, original) and out is not image
    same = composite(image, masks, inplace=True)
    assert same is image and np.array_equal(image, out)


@pytest.mark.parametrize("view", ["reversed_channels", "strided_crop", "flipped_rows"])
def test_fill_inplace_on_non_contiguous_views(scene, view: str) -> None:
    image, masks, _ = scene
    big = np.zeros((H * 2, W * 2, 3), np.uint8)
    if view == "reversed_channels":
        target = image.copy()[:, :, ::-1]
    elif view == "strided_crop":
        big[::2, ::2] = image
        target = big[::2, ::2]
    else:
        target = image[::-1].copy()[::-1]
    want = composite(np.ascontiguousarray(target), masks)
    got = composite(target, masks, inplace=True)
    assert got is target and np.array_equal(target, want)


def test_torch_image_inplace(scene) -> None:
    image, masks, _ = scene
    t = torch.from_numpy(image.copy())
    composite(t, masks, inplace=True)
    assert np.array_equal(t.numpy(), composite(image, masks))


def test_mask_mode_annotation_colours_and_single_channel(scene) -> None:
    image, masks, labels = scene
    full = masks.to_full()
    out = composite(image, masks, labels, "mask")
    colours = np.array([[0, 255, 0], [0, 255, 255]], np.uint8)[labels]
    assert np.array_equal(out, fill_reference(np.zeros_like(image), full, colours))
    one = composite(None, masks, mode="mask", channels=1)
    assert one.shape == (H, W) and one.dtype == np.uint8
    assert np.array_equal(one, full.any(0).astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="new image"):
        composite(image, masks, mode="mask", inplace=True)


@pytest.mark.parametrize("block", [1, 4, 7, 16])
def test_mosaic_is_block_means_inside_masks_only(scene, block: int) -> None:
    image, masks, _ = scene
    union = masks.union()
    out = composite(image, masks, mode="mosaic", block_size=block)
    want = block_mean_reference(image, block)
    assert np.array_equal(out[union], want[union])
    assert np.array_equal(out[~union], image[~union])


def test_mosaic_default_block(scene) -> None:
    image, masks, _ = scene
    out = composite(image, masks, mode="mosaic")
    union = masks.union()
    assert np.array_equal(out[union], block_mean_reference(image, 4)[union])  # max(4, 150/100)


@pytest.mark.parametrize("sigma", [0.8, 3.0, 25.0])
def test_blur_equals_whole_image_gaussian_inside_masks(scene, sigma: float) -> None:
    image, masks, _ = scene
    union = masks.union()
    out = composite(image, masks, mode="blur", blur_sigma=sigma)
    want = cv2.GaussianBlur(image, (0, 0), sigma)
    assert np.array_equal(out[union], want[union])
    assert np.array_equal(out[~union], image[~union])


@pytest.mark.parametrize("k", [1, 3, 12])
def test_dilate_grows_each_mask_by_k(scene, k: int) -> None:
    image, masks, _ = scene
    grown = masks.dilate(k)
    want = np.stack([dilate_reference(m, k) for m in masks.to_full()])
    assert np.array_equal(grown.to_full(), want)
    out = composite(image, masks, mode="fill", dilate=k)
    assert np.array_equal(out, fill_reference(image, want, np.tile([0, 255, 0], (len(masks), 1))))


def test_overlay_blends_outlines_and_tags(scene) -> None:
    image, masks, labels = scene
    full = masks.to_full()
    plain = composite(image, masks, labels, "overlay", alpha=0.5, outline=False)
    union = full.any(0)
    assert np.array_equal(plain[~union], image[~union])
    # First instance alone, opaque parts: (p * 128 + c * 128 + 128) >> 8 per channel.
    only = masks.select([0])
    one = composite(image, only, None, "overlay", alpha=0.5, outline=False, colors=(10, 200, 90))
    m = full[0]
    want = (image[m].astype(np.int32) * 128 + np.array([10, 200, 90]) * 128 + 128) >> 8
    assert np.array_equal(one[m], want.astype(np.uint8))
    boxes = np.array([[5, 5, 60, 40]] + [[0, 0, 0, 0]] * (len(masks) - 1), np.float32)
    tagged = composite(
        image,
        masks,
        labels,
        "overlay",
        boxes=boxes,
        scores=np.full(len(masks), 0.97),
        class_names=("bar", "mosaic"),
    )
    changed = (tagged != image).any(2)
    assert changed[5, 5:60].all() and changed[5:40, 5].all()  # the box
    near_masks = dilate_reference(union, 1)  # outlines are 1 px wide at this size
    tag_and_box = np.zeros_like(union)
    tag_and_box[:45, :65] = True
    assert not (changed & ~near_masks & ~tag_and_box).any()


def test_modes_with_no_instances_change_nothing() -> None:
    image = np.full((10, 12, 3), 7, np.uint8)
    empty = InstanceMasks.empty((10, 12))
    for mode in ("fill", "mosaic", "blur", "overlay"):
        assert np.array_equal(composite(image, empty, mode=mode), image)
    assert not composite(image, empty, mode="mask").any()


def test_mode_errors(scene) -> None:
    image, masks, labels = scene
    with pytest.raises(ValueError, match="mode must be one of"):
        composite(image, masks, mode="paint")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="120x150"):
        composite(image[:50], masks)
    with pytest.raises(ValueError, match="need labels"):
        composite(image, masks, colors=[[0, 255, 0], [0, 0, 255]])
    with pytest.raises(ValueError, match="label 1 has no colour"):
        composite(image, masks, np.ones(len(masks), int), colors=[[0, 255, 0]])
    with pytest.raises(ValueError, match="integers in"):
        composite(image, masks, colors=(0, 256, 0))
    with pytest.raises(ValueError, match="dilate"):
        composite(image, masks, dilate=-1)
    with pytest.raises(ValueError, match="block_size"):
        composite(image, masks, mode="mosaic", block_size=0)
    with pytest.raises(ValueError, match="blur_sigma"):
        composite(image, masks, mode="blur", blur_sigma=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        composite(image, masks, mode="overlay", alpha=1.5)
