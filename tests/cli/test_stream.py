"""The embedding API: detect_stream yields in order, with bounded look-ahead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cendetect.flow.stream import decoded_in_order, detect_stream
from cendetect.io.decode import ImageDecodeError
from tests.cli.conftest import make_image, write_image
from tests.matching import box_iou
from tests.tolerances import BOX_IOU_MIN


def test_stream_matches_predict_in_order_for_paths_and_arrays(
    tiny_detector, tmp_path: Path
) -> None:
    images = [make_image(i, 40 + 4 * i, 56) for i in range(5)]
    frames: list[object] = [write_image(tmp_path / f"{i}.png", im) for i, im in enumerate(images)]
    frames[1] = images[1]  # mixed: paths and arrays
    got = list(detect_stream(tiny_detector, iter(frames), batch_size=2, lookahead=3))
    want = [tiny_detector(im) for im in images]
    assert [d.image_size for d in got] == [im.shape[:2] for im in images]
    # batches of two against one image at a time: the same padded inputs, but convolutions and
    # fc layers sum in other orders for another batch size (measured: boxes 3e-4 px, scores
    # 7e-6 apart over the ISA levels), so boxes are matched by IoU (tests/tolerances.py); a
    # frame out of order gives another image's boxes
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.labels, w.labels)
        assert (box_iou(g.boxes, w.boxes).diagonal() >= BOX_IOU_MIN).all()


def test_lookahead_bounds_how_far_the_source_is_pulled(tiny_detector) -> None:
    pulled = 0

    def endless() -> Iterator[np.ndarray]:
        nonlocal pulled
        while True:
            pulled += 1
            yield make_image(pulled, 32, 32)

    stream = detect_stream(tiny_detector, endless(), batch_size=2, lookahead=4)
    for _ in range(3):
        next(stream)
    # 3 results need 2 batches (4 frames); at most `lookahead` more are held
    assert pulled <= 4 + 4
    stream.close()


def test_a_bad_path_raises_after_the_frames_before_it(tiny_detector, tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", make_image(1))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    stream = detect_stream(tiny_detector, [good, bad, good])
    assert next(stream).image_size == (48, 64)
    with pytest.raises(ImageDecodeError, match="bad.png: file is empty"):
        next(stream)


def test_decoded_in_order_keeps_order_and_returns_errors() -> None:
    def decode(i: int) -> int:
        if i == 3:
            raise ValueError("three")
        return i * i

    out = list(decoded_in_order(range(6), decode, workers=3, lookahead=2))
    assert [i for i, _ in out] == list(range(6))
    assert isinstance(out[3][1], ValueError) and out[5][1] == 25
    assert [r for _, r in decoded_in_order(range(3), decode, workers=0)] == [0, 1, 4]
