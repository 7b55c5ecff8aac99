"""cendetect.ops.roi_align / multi_level_roi_align against the slow references."""

from __future__ import annotations

import pytest
import torch

from cendetect.ops import (
    get_num_threads,
    multi_level_roi_align,
    roi_align,
    roi_align_op,
    set_num_threads,
)
from cendetect.ops.roi_align_torch import roi_align_torch
from tests.ops.reference import (
    map_roi_levels,
    multi_level_reference,
    reorder_bound,
    roi_align_reference,
    samples_per_bin,
)
from tests.tolerances import U32, reorder_tol

DTYPES = [torch.float32, torch.float64]

# The C++ kernels (NCHW and channels-last) and the reference round alike, step by step, on every
# code path (tests/ops/reference.py): they are compared exactly. The pure-torch fallback sums a
# bin's samples with ATen's reduction, whose order depends on the ISA: within reorder_bound of
# the samples per bin, at the features' scale (a bin averages values <= max |feature|).

#: float16 results pooled in float32 by two implementations: rounded once each, so they differ
#: by at most one float16 ulp (2**-10 of the value) beyond their float32 difference
HALF_ULP_RTOL = 2.0**-10


def random_rois(
    k: int, batch: int, extent: float, seed: int, dtype: torch.dtype, contiguous: bool = True
) -> torch.Tensor:
    """Rois in image pixels over an `extent`-pixel image: many inside, some hanging over or
    wholly outside the border, some of zero or negative size."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * 1.4 * extent - 0.3 * extent
    wh = torch.rand(k, 2, generator=g, dtype=torch.float64) * 0.6 * extent
    wh[: k // 8] = 0.0  # zero size
    wh[k // 8 : k // 5] *= -0.1  # negative size
    b = torch.randint(0, batch, (k, 1), generator=g).to(torch.float64)
    rois = torch.cat([b, xy, xy + wh], dim=1).to(dtype)
    if contiguous:
        return rois
    wide = torch.zeros(10, k, dtype=dtype)
    wide[::2] = rois.t()
    return wide[::2].t()


def random_feat(shape: tuple[int, ...], seed: int, dtype: torch.dtype, contiguous: bool = True):
    g = torch.Generator().manual_seed(seed)
    if contiguous:
        return torch.randn(shape, generator=g, dtype=dtype)
    b, c, h, w = shape
    return torch.randn((b, h, w, c), generator=g, dtype=dtype).permute(0, 3, 1, 2)


CASES = [
    # (output_size, spatial_scale, sampling_ratio, aligned)
    ((7, 7), 0.25, 0, True),
    ((3, 5), 0.5, 2, True),
    ((2, 2), 1.0, 0, False),
    ((4, 3), 0.125, 3, False),
    ((1, 1), 0.25, 1, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_roi_align_matches_reference(dtype: torch.dtype, case: tuple, contiguous: bool) -> None:
    output_size, scale, ratio, aligned = case
    height, width = 13, 17
    feat = random_feat((2, 3, height, width), 0, dtype, contiguous)
    rois = random_rois(24, 2, width / scale, ratio, dtype, contiguous)
    assert rois.is_contiguous() == feat.is_contiguous() == contiguous
    out = roi_align(feat, rois, list(output_size), scale, ratio, aligned)
    assert out.shape == (24, 3, *output_size) and out.dtype == dtype
    expected = roi_align_reference(feat, rois, list(output_size), scale, ratio, aligned)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # same roundings: exact
    assert out.abs().sum() > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES[:3])
def test_torch_fallback_matches_reference(dtype: torch.dtype, case: tuple) -> None:
    output_size, scale, ratio, aligned = case
    feat = random_feat((2, 4, 11, 9), 1, dtype)
    rois = random_rois(30, 2, 9 / scale, seed=5, dtype=dtype)
    out = roi_align_torch(feat, rois, output_size, scale, ratio, aligned)
    expected = roi_align_reference(feat, rois, list(output_size), scale, ratio, aligned)
    depth = samples_per_bin(rois, list(output_size), [scale], ratio, aligned)
    tol = reorder_bound(dtype, depth, float(feat.abs().max()))  # ATen's sum of the samples
    torch.testing.assert_close(out, expected, rtol=0, atol=tol)


def test_hand_computed_value() -> None:
    # One 2 x 2 bin grid over a ramp f[y][x] = 10 y + x; aligned shifts by half a pixel, so the
    # roi (0, 0, 4, 4) pools at the sub-bin centres (0.5, 0.5), (0.5, 2.5), ... exactly: weights
    # of 0.5 and sums of quarter-integers, all exact in float32, so the result is too.
    feat = (10 * torch.arange(6.0)[:, None] + torch.arange(6.0)[None, :])[None, None]
    out = roi_align(feat, torch.tensor([[0, 0, 0, 4, 4.0]]), [2, 2], 1.0, 0, True)
    torch.testing.assert_close(out[0, 0], torch.tensor([[5.5, 7.5], [25.5, 27.5]]), rtol=0, atol=0)


def test_empty_and_outside() -> None:
    feat = random_feat((1, 2, 8, 8), 2, torch.float32)
    out = roi_align(feat, torch.zeros(0, 5), [7, 7], 0.25, 0, True)
    assert out.shape == (0, 2, 7, 7)
    # samples outside the map contribute exact zeros, and 0 / count is 0
    far = torch.tensor([[0, 500, 500, 600, 600.0], [0, -90, -90, -10, -10]])
    assert roi_align(feat, far, [2, 2], 0.25, 2, True).abs().max() == 0
    empty_map = torch.zeros(1, 2, 0, 5)
    assert roi_align(empty_map, far, [2, 2], 0.25, 2, True).abs().max() == 0


def test_nan_roi_gives_zeros() -> None:
    feat = random_feat((1, 2, 8, 8), 2, torch.float32)
    rois = torch.tensor([[0, float("nan"), 0, 4, 4], [0, 0, 0, 4, 4]])
    for ratio in (0, 2):
        out = roi_align(feat, rois, [2, 2], 1.0, ratio, True)
        assert out[0].abs().max() == 0 and torch.isfinite(out).all()


def test_half_input() -> None:
    feat = random_feat((1, 3, 10, 10), 3, torch.float16)
    rois = random_rois(10, 1, 40.0, seed=3, dtype=torch.float32)
    out = roi_align(feat, rois, [3, 3], 0.25, 0, True)
    assert out.dtype == torch.float16
    # pooled in float32 from the exactly widened values (bit for bit the reference), then
    # rounded once to float16
    expected = roi_align_reference(feat.float(), rois, [3, 3], 0.25, 0, True)
    torch.testing.assert_close(out, expected.half(), rtol=0, atol=0)


def test_threads_do_not_change_results() -> None:
    feat = random_feat((2, 16, 40, 40), 4, torch.float32)
    rois = random_rois(300, 2, 160.0, seed=4, dtype=torch.float32)
    before = get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 5):
            set_num_threads(threads)
            outs.append(roi_align(feat, rois, [7, 7], 0.25, 0, True))
    finally:
        set_num_threads(before)
    for out in outs[1:]:  # threads split rois and channels, never one bin's sum: exact
        torch.testing.assert_close(out, outs[0], rtol=0, atol=0)


def multiscale_rois(k: int, batch: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Rois of 4 to 600 pixels over a 160 x 128 image (all FPN levels), plus some of zero
    area and some with one negative side (NaN level in mmdetection)."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(k, 2, generator=g, dtype=torch.float64) * torch.tensor([160.0, 128.0])
    size = torch.exp(torch.empty(k, 2, dtype=torch.float64).uniform_(1.4, 6.4, generator=g))
    size[:3] = 0.0
    size[3:6, 0] *= -1
    b = torch.randint(0, batch, (k, 1), generator=g).to(torch.float64)
    return torch.cat([b, centre - size / 2, centre + size / 2], dim=1).to(dtype)


def fpn(batch: int, channels: int, dtype: torch.dtype, seed: int, contiguous: bool = True):
    shapes = [(32, 40), (16, 20), (8, 10), (4, 5)]
    feats = [
        random_feat((batch, channels, h, w), seed + i, dtype, contiguous)
        for i, (h, w) in enumerate(shapes)
    ]
    return feats, [1 / 4, 1 / 8, 1 / 16, 1 / 32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("ratio", "aligned"), [(0, True), (2, False)])
def test_multi_level_matches_reference(
    dtype: torch.dtype, seed: int, ratio: int, aligned: bool
) -> None:
    feats, scales = fpn(2, 3, dtype, seed, contiguous=seed == 0)
    rois = multiscale_rois(60, 2, seed, dtype)
    # Sizes at and around the level boundaries (56, 112, 224 with finest_scale 56).
    rois[-4:, 1:3] = 10.0
    rois[-4:, 3:] = 10.0 + torch.tensor([55.9, 56.0, 112.0, 500.0], dtype=dtype)[:, None]
    if seed == 1:  # non-contiguous
        rois = torch.cat([rois, rois], dim=1)[:, :5]
    levels = map_roi_levels(rois, len(feats), 56)
    assert set(levels) == {None, 0, 1, 2, 3}
    args = (rois, 7, scales, ratio, aligned, 56)
    out = multi_level_roi_align(feats, *args)
    assert out.shape == (60, 3, 7, 7) and out.dtype == dtype
    expected = multi_level_reference(feats, *args)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # same roundings: exact
    assert out[[lvl is None for lvl in levels]].abs().max() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_multi_level_device_path_matches_kernel(dtype: torch.dtype) -> None:
    # The code run on non-CPU devices (level loop, then torchvision or the torch fallback),
    # here on CPU tensors.
    feats, scales = fpn(2, 3, dtype, 5)
    rois = multiscale_rois(40, 2, 5, torch.float32)
    args = (rois, 7, scales, 0, True, 56)
    kernel = multi_level_roi_align(feats, *args)
    # The NCHW kernel level by level equals the channels-last one exactly; the torch fallback
    # sums each bin in ATen's order (both pool float16 in float32, then round once).
    depth = samples_per_bin(rois, 7, scales, 0, True)
    atol = reorder_tol(depth, max(float(f.abs().max()) for f in feats))
    rtol = HALF_ULP_RTOL if dtype == torch.float16 else 0.0
    for pool, tols in ((roi_align_op._roi_align_cpu, (0, 0)),
                       (roi_align_op._roi_align_device, (rtol, atol))):  # fmt: skip
        looped = roi_align_op._multi_level_by_level(feats, *args, pool=pool)
        assert looped.dtype == dtype
        torch.testing.assert_close(looped, kernel, rtol=tols[0], atol=tols[1])


def test_multi_level_single_level_and_empty() -> None:
    feats, scales = fpn(1, 2, torch.float32, 6)
    rois = random_rois(12, 1, 160.0, seed=6, dtype=torch.float32)
    one = multi_level_roi_align(feats[:1], rois, 7, scales[:1], 0, True, 56)
    # the channels-last kernel and the NCHW one round alike: exact
    want = roi_align(feats[0], rois, [7, 7], scales[0], 0, True)
    torch.testing.assert_close(one, want, rtol=0, atol=0)
    empty = multi_level_roi_align(feats, torch.zeros(0, 5), 7, scales, 0, True, 56)
    assert empty.shape == (0, 2, 7, 7)


def test_bad_batch_index() -> None:
    feat = torch.zeros(2, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 2, 2], [2, 0, 0, 2, 2.0]])
    with pytest.raises(ValueError, match=r"rois\[1, 0\] = 2.0 is not an image of the batch"):
        roi_align(feat, rois, [2, 2], 1.0, 0, True)
    with pytest.raises(ValueError, match=r"rois\[1, 0\]"):
        multi_level_roi_align([feat, feat], rois, 2, [1.0, 0.5], 0, True, 56)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input": torch.zeros(3, 4, 4)}, r"input must have shape \[B, C, H, W\]"),
        ({"rois": torch.zeros(2, 4)}, r"rois must have shape \[K, 5\]"),
        ({"rois": torch.zeros(2, 5, dtype=torch.long)}, "rois must be floating point"),
        ({"input": torch.zeros(1, 1, 4, 4, dtype=torch.uint8)}, "input must be floating"),
        ({"output_size": [7]}, "output_size must be two positive ints"),
        ({"output_size": [7, 0]}, "output_size must be two positive ints"),
    ],
)
def test_roi_align_input_errors(kwargs: dict, match: str) -> None:
    args = {"input": torch.zeros(1, 1, 4, 4), "rois": torch.zeros(2, 5), "output_size": [2, 2]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        roi_align(args["input"], args["rois"], args["output_size"], 1.0, 0, True)


def test_multi_level_input_errors() -> None:
    feats, scales = fpn(1, 2, torch.float32, 0)
    rois = torch.zeros(1, 5)
    with pytest.raises(ValueError, match="4 feature levels but 3 spatial_scales"):
        multi_level_roi_align(feats, rois, 7, scales[:3], 0, True, 56)
    with pytest.raises(ValueError, match="at least one feature level"):
        multi_level_roi_align([], rois, 7, [], 0, True, 56)
    with pytest.raises(ValueError, match="all levels must match"):
        multi_level_roi_align([feats[0], feats[1].double()], rois, 7, scales[:2], 0, True, 56)
    with pytest.raises(ValueError, match="all levels must match"):
        multi_level_roi_align([feats[0], feats[1][:, :1]], rois, 7, scales[:2], 0, True, 56)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    feats, scales = fpn(2, 8, torch.float32, 7)
    rois = multiscale_rois(64, 2, 7, torch.float32)
    scale = max(float(f.abs().max()) for f in feats)
    # torchvision's CUDA kernel (when installed) fuses multiply-adds: a sample position moves by
    # <= 3 roundings (U32 of the map's side each) per axis, so a sample by that times its slope
    # (<= 2 max |feature|); its 4 taps and the bin's samples are summed in another order.
    # Unverified on a GPU (none in this project's test machines).
    side = max(max(f.shape[-2:]) for f in feats) + 1
    moved = 2 * 3 * U32 * side * 2 * scale
    depth = samples_per_bin(rois, 7, scales, 0, True)
    expected = multi_level_roi_align(feats, rois, 7, scales, 0, True, 56)
    got = multi_level_roi_align([f.cuda() for f in feats], rois.cuda(), 7, scales, 0, True, 56)
    tol = moved + reorder_tol(4 * depth, scale)
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=tol)
    # The fallback is one correctly rounded torch op at a time on either device: only its sum
    # over the samples may run in another order.
    got = roi_align_torch(feats[0].cuda(), rois.cuda(), (7, 7), 0.25, 0, True)
    expected = roi_align(feats[0], rois, [7, 7], 0.25, 0, True)
    tol = reorder_tol(samples_per_bin(rois, 7, [0.25], 0, True), float(feats[0].abs().max()))
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("ratio", "aligned"), [(0, True), (2, False)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("channels", [3, 40])
def test_nhwc_kernel_equals_nchw_kernel_bitwise(
    dtype: torch.dtype, ratio: int, aligned: bool, layout: str, channels: int
) -> None:
    # The CPU op runs the channels-last kernel; the NCHW one is the reference it must equal to
    # the last bit (same per-channel arithmetic). 40 channels exercise the vector loops and
    # their remainders; 12 rois with 2 threads split the channels into blocks.
    feats, scales = fpn(2, channels, dtype, 11)
    if layout == "channels_last":
        feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    for k in (60, 3):
        rois = multiscale_rois(k, 2, 11, dtype)
        args = (rois, 7, scales, ratio, aligned, 56)
        got = multi_level_roi_align(feats, *args)
        want = roi_align_op._multi_level_cpu_nchw(feats, *args)
        assert got.shape == want.shape and got.dtype == dtype
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(got, want)


def test_bfloat16_features_pool_in_float32_without_a_copy() -> None:
    # bf16 features are read as their bits and widened in the kernel: the result is the float32
    # pooling of the same values, rounded once to bf16.
    feats, scales = fpn(2, 24, torch.float32, 12)
    low = [f.bfloat16().contiguous(memory_format=torch.channels_last) for f in feats]
    rois = multiscale_rois(50, 2, 12, torch.float32)
    args = (rois, 14, scales, 0, True, 56)
    got = multi_level_roi_align(low, *args)
    assert got.dtype == torch.bfloat16
    want = roi_align_op._multi_level_cpu_nchw([f.float() for f in low], *args)
    assert torch.equal(got, want.bfloat16())


def test_fake_kernel_strides_match_the_cpu_kernel() -> None:
    # torch.export / AOTInductor plan memory from the fake kernel: its strides must be the real
    # ones (channels-last on the CPU).
    from torch._subclasses.fake_tensor import FakeTensorMode

    feats, scales = fpn(1, 8, torch.float32, 13)
    rois = multiscale_rois(9, 1, 13, torch.float32)
    real = multi_level_roi_align(feats, rois, 7, scales, 0, True, 56)
    with FakeTensorMode() as mode:
        fake = multi_level_roi_align(
            [mode.from_tensor(f) for f in feats], mode.from_tensor(rois), 7, scales, 0, True, 56
        )
    assert fake.shape == real.shape and fake.stride() == real.stride()
