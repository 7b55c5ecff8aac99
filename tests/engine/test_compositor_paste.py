"""The C++ paste follows mmdetection's pixel model (tests/engine/reference.py) on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cendetect.engine import compositor
from cendetect.engine.compositor import fill_masks, paste_masks, paste_windows
from tests.engine.reference import assert_matches_reference, fill_reference, paste_reference

H, W = 97, 131


def random_boxes(rng: np.random.Generator, n: int, h: int = H, w: int = W) -> np.ndarray:
    """Boxes of every kind: inside, partly and wholly outside, sub-pixel, zero-size."""
    kind = rng.integers(0, 6, n)
    cx = rng.uniform(-0.3 * w, 1.3 * w, n)
    cy = rng.uniform(-0.3 * h, 1.3 * h, n)
    bw = np.where(kind == 0, rng.uniform(0, 1.5, n), rng.uniform(1, 0.8 * w, n))  # sub-pixel
    bh = np.where(kind == 0, rng.uniform(0, 1.5, n), rng.uniform(1, 0.8 * h, n))
    bw = np.where(kind == 1, 0.0, bw)  # zero width
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    far = kind == 2
    boxes[far] += rng.choice([-1, 1], (int(far.sum()), 1)) * 10 * max(h, w)
    return boxes.astype(np.float32)


def near_threshold_masks(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """Masks whose bilinear samples often land on or next to 0.5."""
    choices = np.array(
        [0.0, 1.0, 0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0), 0.25, 0.75], np.float32
    )
    out = rng.choice(choices, (n, m, m))
    return np.where(rng.random((n, m, m)) < 0.3, rng.random((n, m, m)), out).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_paste_matches_reference(dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 24, 28
    masks = (rng.random((n, m, m)) if seed % 2 else near_threshold_masks(rng, n, m)).astype(dtype)
    boxes = random_boxes(rng, n)
    ref, values, noise = paste_reference(masks, boxes, H, W)
    got = paste_masks(masks, boxes, (H, W)).to_full()
    assert_matches_reference(got, ref, values, noise)


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("mask_shape", [(28, 28), (1, 1), (7, 19), (112, 112)])
def test_paste_thresholds_and_mask_sizes(threshold: float, mask_shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    n = 16
    masks = rng.random((n, *mask_shape), dtype=np.float32)
    masks[rng.random(masks.shape) < 0.2] = 1.0
    boxes = random_boxes(rng, n)
    ref, values, noise = paste_reference(masks, boxes, H, W, threshold)
    got = paste_masks(masks, boxes, (H, W), threshold).to_full()
    assert_matches_reference(got, ref, values, noise, threshold)


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
    reason="the compositor mirrors torch's AVX2/AVX-512 grid_sample; this CPU runs another kernel",
)
def test_bit_identical_to_mmdetection_on_this_cpu() -> None:
    # Stronger than the tolerance: on x86 with AVX2 the samples are the same floats, so
    # not a single pixel differs, even with samples exactly at the threshold.
    rng = np.random.default_rng(7)
    n, m = 64, 28
    masks = near_threshold_masks(rng, n, m)
    boxes = random_boxes(rng, n)
    ref, values, noise = paste_reference(masks, boxes, H, W)
    got = paste_masks(masks, boxes, (H, W)).to_full()
    assert np.array_equal(got, ref)
    # the boundary really was exercised: many samples close enough to the threshold that
    # another code path's rounding could flip them (a sensitivity check, not a tolerance)
    near = np.abs(values.astype(np.float64) - 0.5) <= noise[:, None, None]
    assert near.sum() > 100


def test_windows_are_mmdetection_box_plus_one() -> None:
    boxes = np.array(
        [[10.2, 5.0, 20.7, 9.5], [-5, -5, 3, 3], [120, 90, 200, 200], [5, 5, 5, 5]], np.float32
    )
    win = paste_windows(boxes, (H, W))
    assert win.tolist() == [[9, 4, 22, 11], [0, 0, 4, 4], [119, 89, 131, 97], [4, 4, 6, 6]]


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_output_does_not_depend_on_threads(threads: int) -> None:
    # Exact: every pixel is decided by one thread, with the same arithmetic.
    rng = np.random.default_rng(3)
    n = 40
    masks = rng.random((n, 28, 28), dtype=np.float32)
    boxes = random_boxes(rng, n, 400, 500)
    colors = rng.integers(0, 256, (8, 3))
    labels = rng.integers(0, 8, n)
    image = rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)
    before = compositor.get_num_threads()
    try:
        compositor.set_num_threads(1)
        want_masks = paste_masks(masks, boxes, (400, 500)).to_full()
        want_image = fill_masks(image, masks, boxes, labels, colors)
        compositor.set_num_threads(threads)
        assert compositor.get_num_threads() == threads
        assert np.array_equal(paste_masks(masks, boxes, (400, 500)).to_full(), want_masks)
        assert np.array_equal(fill_masks(image, masks, boxes, labels, colors), want_image)
    finally:
        compositor.set_num_threads(0)
    assert compositor.get_num_threads() == before


@pytest.mark.parametrize("seed", range(3))
def test_fill_masks_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    n = 12
    masks = rng.random((n, 28, 28), dtype=np.float32)
    boxes = random_boxes(rng, n)
    labels = rng.integers(0, 3, n)
    table = np.array([[0, 255, 0], [0, 255, 255], [255, 0, 7]], np.uint8)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    ref, values, noise = paste_reference(masks, boxes, H, W)
    got = fill_masks(image, masks, boxes, labels, table)
    # The same instances the compact paste selects, painted in order (exact: same bitmaps).
    exact = paste_masks(masks, boxes, (H, W)).to_full()
    assert_matches_reference(exact, ref, values, noise)
    assert np.array_equal(got, fill_reference(image, exact, table[labels]))


def test_fill_default_is_pure_green_and_leaves_the_rest() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 28, 28), dtype=np.float32)
    boxes = random_boxes(rng, 5)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    union = paste_masks(masks, boxes, (H, W)).union()
    out = fill_masks(image, masks, boxes)
    assert (out[union] == (0, 255, 0)).all()
    assert np.array_equal(out[~union], image[~union])


def test_torch_tensors_zero_copy_and_fp16() -> None:
    rng = np.random.default_rng(2)
    masks = torch.from_numpy(rng.random((6, 28, 28), dtype=np.float32)).half()
    boxes = torch.from_numpy(random_boxes(rng, 6))
    image = torch.from_numpy(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    want = fill_masks(image.numpy(), masks.numpy(), boxes.numpy())
    out = fill_masks(image, masks, boxes, inplace=True)
    assert np.shares_memory(out, image.numpy())
    assert np.array_equal(image.numpy(), want)
    ref, values, noise = paste_reference(masks.numpy(), boxes.numpy(), H, W)
    assert_matches_reference(paste_masks(masks, boxes, (H, W)).to_full(), ref, values, noise)


def _smooth(rng: np.random.Generator, n: int, m: int, lo: float, hi: float) -> np.ndarray:
    coarse = torch.from_numpy(rng.uniform(lo, hi, (n, 1, 3, 3)).astype(np.float32))
    up = torch.nn.functional.interpolate(coarse, (m, m), mode="bilinear", align_corners=False)
    return up[:, 0].numpy().copy()


@pytest.mark.parametrize(
    "family", ["smooth", "near_half", "margins", "binary", "plateau_at_threshold"]
)
@pytest.mark.parametrize("mask_side", [3, 7, 28])
def test_large_boxes_decided_without_sampling_match_reference(family: str, mask_side: int) -> None:
    # Boxes hundreds of pixels wide for a few mask cells: long column segments, so the
    # compositor's shortcuts (segments decided per pair of mask rows, then per image row, then
    # narrowed around the crossing) carry nearly every pixel. They must not change one.
    rng = np.random.default_rng(mask_side)
    n, size = 6, 420
    shape = (n, mask_side, mask_side)
    if family == "smooth":
        masks = _smooth(rng, n, mask_side, 0.0, 1.0)
    elif family == "near_half":
        masks = _smooth(rng, n, mask_side, 0.5 - 3e-5, 0.5 + 3e-5)
    elif family == "margins":
        deltas = np.array([0, 1e-7, -1e-7, 1e-6, -1e-6, 1e-5, -1e-5, 2e-5, -2e-5, 1e-3, -1e-3])
        masks = (0.5 + rng.choice(deltas, shape)).astype(np.float32)
    elif family == "binary":
        masks = (rng.random(shape) < 0.5).astype(np.float32)
    else:
        masks = np.where(rng.random(shape) < 0.5, np.float32(0.5), np.float32(1.0))
    sides = rng.uniform(150, 600, (n, 2))
    x0 = rng.uniform(-100, size - 50, (n, 2))
    boxes = np.concatenate([x0, x0 + sides], 1).astype(np.float32)[:, [0, 1, 2, 3]]
    ref, values, noise = paste_reference(masks, boxes, size, size)
    assert_matches_reference(paste_masks(masks, boxes, (size, size)).to_full(), ref, values, noise)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    got = fill_masks(image, masks, boxes)
    exact = paste_masks(masks, boxes, (size, size)).to_full()
    assert np.array_equal(got, fill_reference(image, exact, np.tile([0, 255, 0], (n, 1))))
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert np.array_equal(exact, ref)


def test_concurrent_calls_from_python_threads_agree() -> None:
    # The GIL is released in the kernels: calls overlap, and one that finds the worker pool
    # busy runs on its own thread. Results must not care.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(21)
    cases = []
    for _ in range(8):
        masks = rng.random((30, 28, 28), dtype=np.float32)
        cases.append((masks, random_boxes(rng, 30, 300, 300)))
    want = [paste_masks(m, b, (300, 300)).to_full() for m, b in cases]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda c: paste_masks(c[0], c[1], (300, 300)).to_full(), cases))
            assert all(np.array_equal(g, w) for g, w in zip(got, want))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_compositor_works_in_a_forked_child() -> None:
    # DataLoader-style workers fork after the parent used the compositor's thread pool.
    import os
    import time

    rng = np.random.default_rng(22)
    masks = rng.random((40, 28, 28), dtype=np.float32)
    boxes = random_boxes(rng, 40, 600, 600)
    compositor.set_num_threads(2)
    try:
        want = paste_masks(masks, boxes, (600, 600)).to_full()  # the pool now has a worker
        pid = os.fork()
        if pid == 0:  # child: must neither deadlock nor differ
            ok = np.array_equal(paste_masks(masks, boxes, (600, 600)).to_full(), want)
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0
                return
            time.sleep(0.05)
        os.kill(pid, 9)
        pytest.fail("the forked child hung in the compositor")
    finally:
        compositor.set_num_threads(0)
