"""Records and sidecars of the studio (cendetect/studio/state.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from cendetect.studio.state import Instance, _rle, polygons, tight


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_rle_from_the_crop_equals_pycocotools_on_the_full_mask(data: st.DataObject) -> None:
    h = data.draw(st.integers(1, 30))
    w = data.draw(st.integers(1, 30))
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    crop = rng.random((y1 - y0, x1 - x0)) < rng.random()
    full = np.zeros((h, w), np.uint8, order="F")
    full[y0:y1, x0:x1] = crop
    ref = mask_utils.encode(full)
    got = _rle((h, w), (x0, y0, x1, y1), crop)
    assert got["counts"] == ref["counts"].decode("ascii") and got["size"] == [h, w]


def test_an_edit_makes_a_new_instance_with_its_own_rle() -> None:
    crop = np.zeros((4, 5), bool)
    crop[1:3, 1:4] = True
    inst = Instance(
        id=0, label=0, score=0.9, window=(10, 20, 15, 24), crop=crop, box=(10, 20, 15, 24)
    )
    first = inst.rle((50, 60))
    moved = inst.with_mask((0, 0, 5, 4), crop)
    assert moved.window == (1, 1, 4, 3) and moved.edited  # trimmed to the tight window
    assert moved.rle((50, 60)) != first
    assert replace(inst, kept=False).rle((50, 60)) == first
    assert tight((3, 3, 8, 8), np.zeros((5, 5), bool))[1].size == 0


def test_polygons_trace_the_pixel_edges() -> None:
    crop = np.zeros((5, 5), bool)
    crop[1:4, 1:4] = True
    crop[2, 2] = False  # a hole: two rings
    inst = Instance(
        id=0, label=0, score=1.0, window=(10, 10, 15, 15), crop=crop, box=(10, 10, 15, 15)
    )
    rings = polygons(inst)
    assert len(rings) == 2
    outer = max((np.asarray(r).reshape(-1, 2) for r in rings), key=lambda r: np.ptp(r[:, 0]))
    # the 3 x 3 square at (11..14) with its ring 0.25 px inside the pixel edges
    assert np.allclose(outer.min(0), 11.25) and np.allclose(outer.max(0), 13.75)
