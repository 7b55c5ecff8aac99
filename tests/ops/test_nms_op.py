"""cendetect.ops.nms / batched_nms against the slow references in reference.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cendetect.ops import batched_nms, get_num_threads, nms, nms_op, set_num_threads
from tests.ops.reference import batched_nms_reference, mmcv_offset_batched_nms, nms_reference

DTYPES = [torch.float32, torch.float64]

# Every comparison here is exact: the outputs are int64 indices, and the kernel computes each IoU
# with the reference's expression in the boxes' dtype, without fused multiply-adds, so both take
# the same decisions on every code path (tests/ops/reference.py).


def random_boxes(n: int, seed: int, dtype: torch.dtype, contiguous: bool = True) -> torch.Tensor:
    """Clustered boxes (so that many overlap), including some zero/negative-size ones."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=torch.float64) * 60
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * 30 + 1
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    degenerate = torch.rand(n, generator=g) < 0.05
    boxes[degenerate, 2] = boxes[degenerate, 0] - torch.rand(int(degenerate.sum()), generator=g)
    boxes = boxes.to(dtype)
    if contiguous:
        return boxes
    wide = torch.zeros(n, 8, dtype=dtype)
    wide[:, ::2] = boxes
    return wide[:, ::2]


def random_scores(n: int, seed: int, dtype: torch.dtype, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000)
    scores = torch.rand(2 * n, generator=g, dtype=torch.float64)[::2]  # non-contiguous
    if ties:  # few distinct values: exercises the stable tie order
        scores = (scores * 5).floor() / 5
    return scores.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("contiguous", [True, False])
def test_nms_matches_reference(dtype: torch.dtype, seed: int, contiguous: bool) -> None:
    n = 150
    boxes = random_boxes(n, seed, dtype, contiguous)
    scores = random_scores(n, seed, dtype, ties=seed % 2 == 1)
    for thr in (0.3, 0.5, 0.7):
        keep = nms(boxes, scores, thr)
        assert keep.dtype == torch.int64
        assert 0 < len(keep) < n  # the clusters make suppression happen
        torch.testing.assert_close(keep, nms_reference(boxes, scores, thr), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_matches_reference(dtype: torch.dtype, seed: int) -> None:
    n = 150
    boxes = random_boxes(n, seed, dtype, contiguous=seed != 1)
    scores = random_scores(n, seed, dtype, ties=seed == 2)
    idxs = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
    keep = batched_nms(boxes, scores, idxs, 0.5)
    torch.testing.assert_close(
        keep, batched_nms_reference(boxes, scores, idxs, 0.5), rtol=0, atol=0
    )


def test_batched_nms_equals_mmcv_offset_trick() -> None:
    # Quarter-pixel coordinates: mmcv's shifted boxes stay exact in float32, so its single-nms
    # formulation must give exactly our per-group result.
    g = torch.Generator().manual_seed(7)
    n = 200
    xy = torch.randint(0, 400, (n, 2), generator=g) / 4
    wh = torch.randint(4, 120, (n, 2), generator=g) / 4
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, 3, (n,), generator=g)
    expected = mmcv_offset_batched_nms(boxes, scores, idxs, 0.6)
    torch.testing.assert_close(batched_nms(boxes, scores, idxs, 0.6), expected, rtol=0, atol=0)


def test_ties_keep_lower_index_first() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [100, 100, 110, 110], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([1, 0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([1, 0, 2]), 0.5).tolist() == [0, 1, 2]


def test_iou_equal_to_threshold_is_kept() -> None:
    # IoU exactly 0.5: suppression needs IoU > threshold.
    boxes = torch.tensor([[0, 0, 4, 2], [0, 0, 2, 2.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


@pytest.mark.parametrize("op", ["nms", "batched_nms"])
def test_empty(op: str) -> None:
    boxes, scores, idxs = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    keep = nms(boxes, scores, 0.5) if op == "nms" else batched_nms(boxes, scores, idxs, 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64


def test_nan_scores_and_degenerate_boxes_do_not_crash() -> None:
    boxes = random_boxes(60, 3, torch.float32)
    boxes[:5, 2:] = boxes[:5, :2]  # zero-area boxes: 0 / 0 IoU among themselves
    scores = random_scores(60, 3, torch.float32)
    scores[::7] = float("nan")
    torch.testing.assert_close(nms(boxes, scores, 0.5), nms_reference(boxes, scores, 0.5))
    idxs = torch.arange(60) % 3
    expected = batched_nms_reference(boxes, scores, idxs, 0.5)
    torch.testing.assert_close(batched_nms(boxes, scores, idxs, 0.5), expected)


def test_half_is_computed_in_float32() -> None:
    boxes = random_boxes(80, 5, torch.float16)
    scores = random_scores(80, 5, torch.float16)
    # float16 widens exactly: the float32 reference's decisions
    expected = nms_reference(boxes.float(), scores.float(), 0.5)
    torch.testing.assert_close(nms(boxes, scores, 0.5), expected)


def test_num_threads_do_not_change_results() -> None:
    # Enough boxes and groups for batched_nms to use its worker threads.
    n = 6000
    boxes = random_boxes(n, 11, torch.float32)
    scores = random_scores(n, 11, torch.float32)
    idxs = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(11))
    before = get_num_threads()
    try:
        results = []
        for threads in (1, 3):
            set_num_threads(threads)
            assert get_num_threads() == threads
            results.append(batched_nms(boxes, scores, idxs, 0.7))
    finally:
        set_num_threads(before)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(3, 5), torch.zeros(3)), r"boxes must have shape \[N, 4\]"),
        ((torch.zeros(3, 4), torch.zeros(2)), r"scores must have shape \[N\] with N = 3"),
        ((torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3)), "must be floating point"),
    ],
)
def test_nms_input_errors(args: tuple[torch.Tensor, torch.Tensor], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nms(*args, 0.5)


def test_batched_nms_idxs_errors() -> None:
    boxes, scores = torch.zeros(3, 4), torch.zeros(3)
    with pytest.raises(ValueError, match="idxs must be an integer tensor"):
        batched_nms(boxes, scores, torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"idxs must have shape \[N\] with N = 3"):
        batched_nms(boxes, scores, torch.zeros(4, dtype=torch.long), 0.5)


class _FakeTorchvisionOps:
    """Stands in for torchvision.ops: its nms semantics are the reference's (unstable ties
    aside), so the device path's rank and group-separation logic can be checked on CPU."""

    @staticmethod
    def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        return nms_reference(boxes, scores, iou_threshold)


@pytest.mark.parametrize("grouped", [False, True])
def test_device_path_logic_with_torchvision_semantics(
    monkeypatch: pytest.MonkeyPatch, grouped: bool
) -> None:
    fake = type("tv", (), {"ops": _FakeTorchvisionOps})
    monkeypatch.setattr(nms_op._torchvision, "call", lambda name, fn: fn(fake))
    boxes = random_boxes(120, 4, torch.float32) - 20  # negative coordinates too
    scores = random_scores(120, 4, torch.float32, ties=True)
    idxs = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(4))
    got = nms_op._nms_torchvision(boxes, scores, idxs if grouped else None, 0.5)
    expected = batched_nms(boxes, scores, idxs, 0.5) if grouped else nms(boxes, scores, 0.5)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    boxes = random_boxes(500, 9, torch.float32)
    scores = random_scores(500, 9, torch.float32)
    idxs = torch.randint(0, 4, (500,), generator=torch.Generator().manual_seed(9))
    keep = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep.is_cuda
    # exact unless an IoU lies within float noise of 0.5 (a tie, CUDA may fuse multiply-adds);
    # these random boxes have none
    torch.testing.assert_close(keep.cpu(), nms(boxes, scores, 0.5), rtol=0, atol=0)
    keep = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu()
    torch.testing.assert_close(keep, batched_nms(boxes, scores, idxs, 0.5), rtol=0, atol=0)


coordinate = st.integers(min_value=-8, max_value=40).map(lambda v: v / 2)


@st.composite
def box_sets(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float]:
    n = draw(st.integers(min_value=0, max_value=25))
    rows = draw(st.lists(st.tuples(*[coordinate] * 4), min_size=n, max_size=n))
    scores = draw(
        st.lists(st.integers(min_value=0, max_value=6).map(lambda v: v / 6), min_size=n, max_size=n)
    )
    thr = draw(st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]))
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(n, 4)
    return boxes, torch.tensor(scores, dtype=torch.float32), thr


@settings(max_examples=150, deadline=None)
@given(box_sets())
def test_nms_property(case: tuple[torch.Tensor, torch.Tensor, float]) -> None:
    boxes, scores, thr = case
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == nms_reference(boxes, scores, thr).tolist()
    # Kept boxes come in non-increasing score order.
    kept_scores = scores[keep]
    assert bool((kept_scores[:-1] >= kept_scores[1:]).all())
