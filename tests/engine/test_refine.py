"""Bar mask refinement (engine/refine.py): what it recovers, and where it keeps the model's mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cendetect.data.paint import paint_bar
from cendetect.engine.masks import InstanceMasks
from cendetect.engine.refine import (
    REFINE_BAR,
    REFINE_NONE,
    BarRefineParams,
    refine_bar_reference,
    refine_masks,
    refine_masks_reference,
)
from cendetect.engine.refine_mosaic import _disk


def _scene(seed: int, soften: float = 0.0, jpeg: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured 200 x 240 picture with a black, slightly rotated bar; returns (image, truth)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 230, (20, 24, 3), dtype=np.uint8)
    img = cv2.resize(small, (240, 200), interpolation=cv2.INTER_CUBIC)
    truth = np.zeros((200, 240), np.uint8)
    box = cv2.boxPoints(((120.0, 100.0), (140.0, 36.0), 8.0))
    cv2.fillPoly(truth, [np.round(box).astype(np.int32)], 1)
    paint_bar(img, truth.astype(bool), (8, 8, 8), soften)
    if jpeg:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, truth.astype(bool)


def _model_mask(truth: np.ndarray) -> np.ndarray:
    """What a 28 x 28 mask head gives: round corners and an edge a few pixels off."""
    small = cv2.resize(truth.astype(np.float32), (28, 28), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.2)
    return cv2.resize(small, truth.shape[::-1], interpolation=cv2.INTER_LINEAR) >= 0.55


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _refine_full(
    img: np.ndarray, mask: np.ndarray, params: BarRefineParams | None = None
) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    win = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    crop = mask[win[1] : win[3], win[0] : win[2]]
    res = refine_bar_reference(img, win, crop, params or BarRefineParams())
    if res is None:
        return None
    (x0, y0, x1, y1), crop = res
    full = np.zeros_like(mask)
    full[y0:y1, x0:x1] = crop
    return full


def test_recovers_hard_antialiased_and_jpeg_edges() -> None:
    for seed, soften, jpeg in ((0, 0.0, 0), (1, 0.7, 0), (2, 0.5, 75), (3, 0.0, 60)):
        img, truth = _scene(seed, soften, jpeg)
        model = _model_mask(truth)
        refined = _refine_full(img, model)
        assert refined is not None
        # the model's rounded mask is ~0.9 IoU; the refined one is within ~1 px of the edge
        assert _iou(model, truth) < 0.95 and _iou(refined, truth) > 0.97, (seed, soften, jpeg)


def test_edge_rule_includes_half_covered_pixels() -> None:
    img, truth = _scene(4, soften=0.9)
    model = _model_mask(truth)
    plain = _refine_full(img, model, BarRefineParams(edge_rule=False))
    full = _refine_full(img, model)
    assert plain is not None and full is not None
    assert _iou(full, truth) >= _iou(plain, truth)


def test_textured_region_keeps_the_model_mask() -> None:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)  # nothing flat anywhere
    mask = np.zeros((120, 120), bool)
    mask[30:90, 20:100] = True
    assert _refine_full(img, mask) is None


def test_never_grows_past_the_band() -> None:
    # a flat image: the whole picture matches the bar's colour; the band stops the growth
    img = np.full((300, 300, 3), 40, np.uint8)
    mask = np.zeros((300, 300), bool)
    mask[140:160, 100:200] = True
    p = BarRefineParams(max_ratio=100.0, rim_max=1.0)  # step 7 off: the band is the limit
    full = _refine_full(img, mask, p)
    assert full is not None
    band = int(np.clip(round(p.band_frac * np.sqrt(mask.sum())), p.band_min, p.band_max))
    assert band > 4
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * band + 3,) * 2, np.uint8)).astype(bool)
    assert not (full & ~grown).any() and full.sum() > mask.sum()
    # step 7 on (the default): the colour reached the band's ring, so it may grow `clip` px only
    clipped = _refine_full(img, mask, BarRefineParams(max_ratio=100.0))
    assert clipped is not None
    near = cv2.dilate(mask.astype(np.uint8), _disk(BarRefineParams().clip)).astype(bool)
    assert np.array_equal(clipped, near)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_background_of_nearly_the_bar_s_colour_stays_near_the_model_mask(seed: int) -> None:
    """A black bar on dark, noisy foliage whose pixels are within the bar's colour tolerance:
    without step 7 the colour leaks into the foliage up to the band; with it the result stays
    within `clip` px of the model's mask, and is closer to the truth than the leak."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 22, (40, 48, 3), dtype=np.uint8)
    img = cv2.resize(small, (240, 200), interpolation=cv2.INTER_NEAREST)
    img[rng.random((200, 240)) < 0.3] = (70, 110, 60)  # leaves: breaks the dark into patches
    truth = np.zeros((200, 240), np.uint8)
    box = cv2.boxPoints(((120.0, 100.0), (120.0, 50.0), 4.0))
    cv2.fillPoly(truth, [np.round(box).astype(np.int32)], 1)
    truth = truth.astype(bool)
    paint_bar(img, truth, (6, 6, 6))
    model = _model_mask(truth)
    leak = _refine_full(img, model, BarRefineParams(rim_max=1.0))
    kept = _refine_full(img, model)
    assert leak is not None and kept is not None
    near = cv2.dilate(model.astype(np.uint8), _disk(BarRefineParams().clip)).astype(bool)
    assert not (kept & ~near).any()
    ious = _iou(model, truth), _iou(leak, truth), _iou(kept, truth)
    # kept squares the model's soft edge (IoU ~0.94); the leak adds foliage (~0.88-0.90)
    assert ious[2] > max(ious[:2]) + 0.03, ious


def test_area_outside_the_ratio_keeps_the_model_mask() -> None:
    img, truth = _scene(7)
    model = _model_mask(truth)
    assert _refine_full(img, model, BarRefineParams(max_ratio=0.9)) is None


def test_refine_masks_only_touches_bar_kinds() -> None:
    img, truth = _scene(6)
    model = _model_mask(truth)
    ys, xs = np.nonzero(model)
    win = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]] * 2)
    crop = model[win[0, 1] : win[0, 3], win[0, 0] : win[0, 2]].astype(np.uint8).reshape(-1)
    masks = InstanceMasks((200, 240), win, np.array([0, crop.size, 2 * crop.size]),
                          np.concatenate([crop, crop]))  # fmt: skip
    out, changed = refine_masks_reference(img, masks, np.array([REFINE_BAR, REFINE_NONE]))
    assert changed.tolist() == [True, False]
    assert np.array_equal(out.crop(1), masks.crop(1))
    full = out.to_full()
    assert _iou(full[0], truth) > 0.97 and np.array_equal(full[1], model)


def _random_case(seed: int) -> tuple[np.ndarray, InstanceMasks, np.ndarray]:
    """A picture with 1-5 bars (some soft, some JPEG'd) and model-like masks of them, plus a
    few masks on texture; the masks' windows are the masks' bounding boxes, as pasted."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(80, 260)), int(rng.integers(80, 260))
    small = rng.integers(0, 256, (max(2, h // 12), max(2, w // 12), 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    truths = []
    for _ in range(int(rng.integers(1, 6))):
        t = np.zeros((h, w), np.uint8)
        rect = ((rng.uniform(0, w), rng.uniform(0, h)), (rng.uniform(6, w), rng.uniform(4, h / 2)),
                rng.uniform(-90, 90))  # fmt: skip
        cv2.fillPoly(t, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        paint_bar(img, t.astype(bool), colour, float(rng.choice([0.0, 0.6])))
        truths.append(t.astype(bool))
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    windows, crops = [], []
    for t in truths + [rng.random((h, w)) < 0.05]:  # the last: scattered noise, not a bar
        m = _model_mask(t) if t.sum() > 30 else t
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        windows.append((x0, y0, x1, y1))
        crops.append(m[y0:y1, x0:x1].astype(np.uint8).reshape(-1))
    offsets = np.concatenate([[0], np.cumsum([c.size for c in crops])])
    masks = InstanceMasks((h, w), np.array(windows).reshape(-1, 4), offsets, np.concatenate(crops))
    return img, masks, rng.random(len(windows)) < 0.8


def test_kernel_equals_reference_pixel_for_pixel() -> None:
    """csrc/refine.cpp against engine/refine.py: integer arithmetic on both sides, so every
    window and every pixel must be equal (no tolerance)."""
    changed_any = clipped_any = 0
    for seed in range(60):
        img, masks, which = _random_case(seed)
        for params in (
            BarRefineParams(),
            BarRefineParams(edge_rule=False, band_frac=0.3),
            BarRefineParams(rim_max=0.0, clip=1),  # step 7 wherever the result touches the rim
        ):
            ours, ch = refine_masks(img, masks, which, params)
            ref, ch_ref = refine_masks_reference(img, masks, which, params)
            assert np.array_equal(ch, ch_ref), seed
            assert np.array_equal(ours.windows, ref.windows), seed
            assert np.array_equal(ours.offsets, ref.offsets), seed
            assert np.array_equal(ours.data, ref.data), seed
            changed_any += int(ch.sum())
        no_rim, _ = refine_masks(img, masks, which, BarRefineParams(rim_max=1.0))
        clipped_any += int(not np.array_equal(no_rim.data, refine_masks(img, masks, which)[0].data))
    assert changed_any > 50  # the cases exercise the refinement, not only the kept masks
    assert clipped_any >= 3  # and step 7 (the band's limit) in some of them


def test_kernel_threads_and_errors() -> None:
    from cendetect.engine import compositor

    img, masks, which = _random_case(3)
    before = compositor.get_num_threads()
    try:
        compositor.set_num_threads(1)
        one = refine_masks(img, masks, which)[0]
        compositor.set_num_threads(2)
        two = refine_masks(img, masks, which)[0]
    finally:
        compositor.set_num_threads(before)
    assert np.array_equal(one.data, two.data) and np.array_equal(one.windows, two.windows)
    with pytest.raises(ValueError, match="masks were pasted for"):
        refine_masks(img[:-1], masks, which)
    with pytest.raises(ValueError, match="kinds has"):
        refine_masks(img, masks, which[:-1])
    # a non-packed view is copied, not misread
    wide = np.zeros((img.shape[0], img.shape[1], 4), np.uint8)
    wide[..., :3] = img
    view = wide[..., :3]
    assert np.array_equal(refine_masks(view, masks, which)[0].data, one.data)
