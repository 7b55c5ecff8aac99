"""RoIAlign forward + feature backward at training sizes: the C++ kernel vs autograd.

Ours: ``cendetect::multi_level_roi_align`` (C++ forward, C++ backward of csrc/roi_align.cpp).
Peer: the same op's values through autograd of the pure-torch RoIAlign (roi_align_torch.py; the
backward cendetect used before the kernel existed, and the one it still uses off the CPU).
Sizes: the default model's training step (2 images of 512 x 384, FPN 128 channels at strides
4-32; 1024 box RoIs at 7 x 7 and 128 mask RoIs at 14 x 14). Prints both times and the ratio.

    .venv/bin/python benchmarks/bench_roi_align_grad.py
"""

from __future__ import annotations

import argparse
import time

import torch

from cendetect.ops import multi_level_roi_align
from cendetect.ops.roi_align_autograd import _torch_pool
from cendetect.ops.roi_align_op import _multi_level_by_level

SCALES = [1 / 4, 1 / 8, 1 / 16, 1 / 32]


def _inputs(n_rois: int, channels: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(2, channels, 384 // s, 512 // s, generator=g) for s in (4, 8, 16, 32)]
    xy = torch.rand(n_rois, 2, generator=g) * torch.tensor([480.0, 350.0])
    wh = torch.rand(n_rois, 2, generator=g) ** 2 * 300 + 4
    idx = torch.randint(0, 2, (n_rois, 1), generator=g).float()
    return feats, torch.cat([idx, xy, xy + wh], dim=1)


def _time(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _case(n: int, size: int, repeat: int) -> tuple[float, float]:
    """Best seconds of (ours, peer) for forward + feature backward of ``n`` rois."""
    feats, rois = _inputs(n, 128, size)
    leaves = [f.requires_grad_() for f in feats]
    grad = torch.randn(n, 128, size, size)

    def ours() -> None:
        out = multi_level_roi_align(leaves, rois, size, SCALES, 0, True, 56)
        torch.autograd.grad(out, leaves, grad, allow_unused=True)

    def peer() -> None:
        out = _multi_level_by_level(leaves, rois, size, SCALES, 0, True, 56, pool=_torch_pool)
        torch.autograd.grad(out, leaves, grad, allow_unused=True)

    return _time(ours, repeat), _time(peer, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, torch {torch.__version__}; best of {args.repeat}")
    print(f"{'case':<22}{'ours ms':>10}{'autograd ms':>13}{'ratio':>8}")
    for name, n, size in (("box 1024 x 7x7", 1024, 7), ("mask 128 x 14x14", 128, 14)):
        a, b = _case(n, size, args.repeat)
        print(f"{name:<22}{a * 1e3:>10.1f}{b * 1e3:>13.1f}{b / a:>7.1f}x")


if __name__ == "__main__":
    main()
