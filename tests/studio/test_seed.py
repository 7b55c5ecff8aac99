"""One-click and box regions (cendetect/studio/seed.py) on pictures with known truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cendetect.studio.seed import SeedError, box_region, seed_region
from tests.studio.conftest import censored


def _full(
    shape: tuple[int, int], window: tuple[int, int, int, int], crop: np.ndarray
) -> np.ndarray:
    m = np.zeros(shape, bool)
    x0, y0, x1, y1 = window
    m[y0:y1, x0:x1] = crop
    return m


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("quality", [None, 75])
def test_one_click_grows_a_whole_bar(quality: int | None) -> None:
    image, bar, _ = censored(3)
    if quality:
        image = _jpeg(image, quality)
    ys, xs = np.nonzero(bar)
    y, x = int(np.median(ys)), int(np.median(xs))
    window, crop = seed_region(image, x, y, "bar")
    # the bar's anti-aliasing-free edge is exact; JPEG ringing may move a pixel or two of the
    # ~4,000-pixel border region's rim
    assert _iou(_full(bar.shape, window, crop), bar) >= (0.99 if quality is None else 0.95)


@pytest.mark.parametrize("quality", [None, 85])
def test_one_click_grows_a_whole_mosaic(quality: int | None) -> None:
    image, _, mosaic = censored(4)
    if quality:
        image = _jpeg(image, quality)
    ys, xs = np.nonzero(mosaic)
    window, crop = seed_region(image, int(np.median(xs)), int(np.median(ys)), "mosaic")
    # whole 16-px cells: a missed or extra rim cell of the 10 x 7 cells costs about 0.1
    assert _iou(_full(mosaic.shape, window, crop), mosaic) >= 0.85


def test_a_click_on_texture_is_no_bar_and_no_mosaic() -> None:
    image, bar, mosaic = censored(5)
    y, x = 20, image.shape[1] - 30  # plain texture, far from both
    assert not bar[y, x] and not mosaic[y, x]
    with pytest.raises(SeedError, match="not a mosaic|not inside a mosaic"):
        seed_region(image, x, y, "mosaic")
    with pytest.raises(SeedError):
        seed_region(image, -1, 5, "bar")
    with pytest.raises(SeedError, match="box"):
        seed_region(image, x, y, "person")


def test_a_background_of_one_colour_is_refused() -> None:
    image = np.full((100, 120, 3), 200, np.uint8)
    with pytest.raises(SeedError, match="background"):
        seed_region(image, 50, 50, "bar")


def test_box_snaps_to_the_bar_inside_it() -> None:
    image, bar, _ = censored(6)
    ys, xs = np.nonzero(bar)
    box = (int(xs.min()) - 4, int(ys.min()) - 4, int(xs.max()) + 5, int(ys.max()) + 5)
    window, crop = box_region(image, box, "bar")
    m = _full(bar.shape, window, crop)
    rect = _full(bar.shape, box, np.ones((box[3] - box[1], box[2] - box[0]), bool))
    assert _iou(m, bar) > _iou(rect, bar) + 0.1  # refined, not the rectangle
    with pytest.raises(SeedError, match="too small"):
        box_region(image, (5, 5, 6, 6), "bar")
