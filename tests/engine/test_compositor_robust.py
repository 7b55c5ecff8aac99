"""Bad input never crashes: a clear ValueError or a defined (documented) result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cendetect._compositor as ext
from cendetect.engine import composite, fill_masks, paste_masks
from tests.engine.reference import assert_matches_reference, paste_reference

H, W = 40, 50
NAN, INF = float("nan"), float("inf")


def test_degenerate_boxes_have_defined_results() -> None:
    boxes = np.array(
        [
            [NAN, 1, 10, 10],  # non-finite: empty
            [1, 1, INF, 10],
            [-INF, 1, 10, 10],
            [20, 20, 10, 30],  # inverted: empty
            [5, 5, 5.0, 15],  # zero width: mmdet samples the mask's centre column
            [1e4, 1e4, 2e4, 2e4],  # far outside: empty
            [-1e30, -1e30, 1e30, 1e30],  # covers everything
            [-3e38, 0, 3e38, 10],  # x2 - x1 overflows to inf
            [10.3, 10.4, 10.6, 10.7],  # sub-pixel
        ],
        np.float32,
    )
    rng = np.random.default_rng(0)
    probs = rng.random((len(boxes), 28, 28), dtype=np.float32)
    probs[:, 10:18, 10:18] = 1.0
    got = paste_masks(probs, boxes, (H, W))
    full = got.to_full()
    empty = [0, 1, 2, 3, 5]
    assert not full[empty].any()
    assert (got.offsets[np.array(empty) + 1] == got.offsets[empty]).all()  # no bytes stored
    ref, values, noise = paste_reference(probs, boxes, H, W)
    assert_matches_reference(full, ref, values, noise)
    assert full[4].any() and full[6].any()


def test_no_instances_and_empty_images() -> None:
    none = np.zeros((0, 28, 28), np.float32)
    assert len(paste_masks(none, np.zeros((0, 4)), (H, W))) == 0
    image = np.full((H, W, 3), 9, np.uint8)
    assert np.array_equal(fill_masks(image, none, np.zeros((0, 4))), image)
    probs = np.ones((2, 28, 28), np.float32)
    boxes = np.array([[0, 0, 5, 5], [2, 2, 9, 9]], np.float32)
    for size in [(0, W), (H, 0), (0, 0)]:
        m = paste_masks(probs, boxes, size)
        assert m.to_full().shape == (2, *size) and m.data.size == 0
        out = fill_masks(np.zeros((*size, 3), np.uint8), probs, boxes)
        assert out.shape == (*size, 3)
        assert composite(np.zeros((*size, 3), np.uint8), m, mode="mosaic").shape == (*size, 3)


def test_nan_and_out_of_range_probabilities_are_defined() -> None:
    probs = np.full((1, 4, 4), NAN, np.float32)
    probs[0, :2] = 7.0
    got = paste_masks(probs, np.array([[0, 0, 20, 20]], np.float32), (H, W)).to_full()
    ref, values, noise = paste_reference(probs, np.array([[0, 0, 20, 20]]), H, W)
    # exact: NaN samples are never selected, and the others (>= 7 * 0.6 * 0.6 at the corner)
    # lie far from the threshold
    assert np.array_equal(got, ref)


def test_non_contiguous_inputs_equal_contiguous() -> None:
    rng = np.random.default_rng(4)
    probs = rng.random((6, 28, 28), dtype=np.float32)
    boxes = rng.uniform(0, 40, (6, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]
    want = paste_masks(probs, boxes, (H, W)).to_full()
    probs_t = np.ascontiguousarray(probs.transpose(0, 2, 1)).transpose(0, 2, 1)
    boxes_f = np.asfortranarray(boxes)
    strided = np.zeros((12, 28, 28), np.float32)
    strided[::2] = probs
    assert np.array_equal(paste_masks(probs_t, boxes_f, (H, W)).to_full(), want)
    assert np.array_equal(paste_masks(strided[::2], boxes[:, :], (H, W)).to_full(), want)
    assert np.array_equal(paste_masks(probs[:, None], boxes, (H, W)).to_full(), want)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask_probs": np.zeros((2, 28, 28), np.uint8)}, "floating-point"),
        ({"mask_probs": np.zeros((2, 28), np.float32)}, r"\[N, M, M\]"),
        ({"mask_probs": np.zeros((2, 0, 28), np.float32)}, "empty mask side"),
        ({"boxes": np.zeros((2, 5), np.float32)}, r"\[N, 4\]"),
        ({"boxes": np.zeros((3, 4), np.float32)}, "pair up"),
        ({"boxes": np.array([["a"] * 4] * 2)}, "real numbers"),
        ({"image_size": (10,)}, "height, width"),
        ({"image_size": (-1, 10)}, "non-negative"),
        ({"image_size": (10.5, 10)}, "integers"),
        ({"threshold": NAN}, r"\(0, 1\]"),
        ({"threshold": 0.0}, "soft masks"),
        ({"threshold": 1.5}, r"\(0, 1\]"),
    ],
)
def test_paste_argument_errors(kwargs: dict, match: str) -> None:
    args = {
        "mask_probs": np.zeros((2, 28, 28), np.float32),
        "boxes": np.zeros((2, 4), np.float32),
        "image_size": (H, W),
        "threshold": 0.5,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        paste_masks(**args)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((H, W, 3), np.float32), "uint8"),
        (np.zeros((H, W, 4), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((H, W), np.uint8), r"\[H, W, 3\]"),
        ("not an image", "uint8"),
    ],
)
def test_fill_image_errors(image: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fill_masks(image, np.zeros((1, 28, 28), np.float32), np.zeros((1, 4)))


def test_read_only_image_inplace_is_refused_not_crashed() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    image.flags.writeable = False
    probs, boxes = np.ones((1, 28, 28), np.float32), np.array([[0, 0, 9, 9]], np.float32)
    with pytest.raises(ValueError, match="read-only"):
        fill_masks(image, probs, boxes, inplace=True)
    assert fill_masks(image, probs, boxes).any()  # a copy is fine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_pointed_to_the_torch_path() -> None:
    with pytest.raises(ValueError, match="paste_torch"):
        paste_masks(torch.zeros((1, 28, 28), device="cuda"), torch.zeros((1, 4)), (H, W))


def test_native_layer_checks_its_arguments() -> None:
    # Callers that skip cendetect.engine still get exceptions, not memory errors.
    probs = np.ones((1, 4, 4), np.float32)
    boxes = np.array([[0, 0, 9, 9]], np.float32)
    out = np.zeros(100, np.uint8)
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="not inside"):
        ext.paste_masks(
            probs, boxes, np.array([[0, 0, 20, 5]]), np.array([0, 100]), 10, 10, 0.5, out
        )
    with pytest.raises(ValueError, match="offsets"):
        ext.paste_masks(probs, boxes, np.array([[0, 0, 5, 5]]), np.array([0, 7]), 10, 10, 0.5, out)
    with pytest.raises(ValueError, match="smaller"):
        ext.paste_masks(
            probs, boxes, np.array([[0, 0, 5, 5]]), np.array([0, 25]), 10, 10, 0.5, out[:3]
        )
    with pytest.raises(ValueError, match="channels"):
        ext.paste_fill(
            probs, boxes, np.array([[0, 0, 5, 5]]), 0.5, np.zeros((1, 4), np.uint8), image
        )
    with pytest.raises(ValueError, match="packed"):
        ext.paste_fill(
            probs,
            boxes,
            np.array([[0, 0, 5, 5]]),
            0.5,
            np.zeros((1, 3), np.uint8),
            image[:, :, ::-1],
        )
    with pytest.raises(ValueError, match="cover"):
        ext.copy_bitmaps(
            np.ones(25, np.uint8),
            np.array([[0, 0, 5, 5]]),
            np.array([0, 25]),
            np.zeros((3, 3, 3), np.uint8),
            0,
            0,
            image,
        )
    with pytest.raises(ValueError, match="alpha"):
        ext.fill_bitmaps(
            np.ones(25, np.uint8),
            np.array([[0, 0, 5, 5]]),
            np.array([0, 25]),
            np.zeros((1, 3), np.uint8),
            300,
            image,
        )


# ---- property-based: any inputs, no crash, reference agreement ------------------------------

coords = st.one_of(
    st.floats(-80, 80, width=32),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 39.5, 40.0, 49.99, -1e30, 1e30]),
)


@st.composite
def paste_inputs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[int, int], float]:
    n = draw(st.integers(0, 5))
    mh, mw = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    values = st.one_of(st.floats(0, 1, width=32), st.sampled_from([0.0, 0.5, 1.0, NAN, 2.0]))
    probs = draw(hnp.arrays(np.float32, (n, mh, mw), elements=values))
    boxes = draw(hnp.arrays(np.float32, (n, 4), elements=coords))
    size = (draw(st.integers(0, 40)), draw(st.integers(0, 50)))
    threshold = draw(st.sampled_from([0.5, 0.5, 0.25, 1.0, 0.999]))
    return probs, boxes, size, threshold


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paste_inputs(), st.integers(1, 3))
def test_property_paste_and_fill_agree_with_reference(inputs, threads: int) -> None:
    probs, boxes, (h, w), threshold = inputs
    ext.set_num_threads(threads)
    try:
        masks = paste_masks(probs, boxes, (h, w), threshold)
        ref, values, noise = paste_reference(probs, boxes, h, w, threshold)
        assert_matches_reference(masks.to_full(), ref, values, noise, threshold)
        image = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
        filled = fill_masks(image, probs, boxes, threshold=threshold)
        union = masks.union()
        assert np.array_equal(filled[~union], image[~union])
        assert (filled[union] == (0, 255, 0)).all()
        assert np.array_equal(composite(image, masks), filled)
    finally:
        ext.set_num_threads(0)
