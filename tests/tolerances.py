"""The suite's numeric tolerances, each with what it guards against.

Two results that should agree can differ for four reasons the tests must allow, and no other:

1. **Summation order.** A float32 sum of ``depth`` terms rounds after each addition; two
   kernels that add in different orders (oneDNN's, oneMKL's and ATen's per-ISA code paths,
   blocking by thread count, batched vs one-at-a-time GEMMs, Inductor's fused loops) end in
   different last bits. :func:`reorder_tol` bounds that difference from the accumulation depth.
2. **A pixel at the mask threshold.** A full-resolution mask pixel whose pasted probability
   lies within float noise of 0.5 lands on either side. That moves a few pixels on the edge of
   a mask, whatever its size; on a 30-pixel mask one pixel is 3 % of the IoU.
   :func:`mask_pixels_allowed` therefore counts differing pixels.
3. **A tie.** Two scores or IoUs within float noise of each other (NMS near-ties, the
   100-detection cut) may order either way; the matching rules allow exactly those swaps.
4. **Lower precision on purpose** (bf16/fp16 engines): compared by mask IoU, not by values.

Everything else (a shifted grid, a wrong sampling rule, a missing stage) moves results by far
more than these bounds, which is what the tests are for. Check a change here with the ISA
matrix (``.venv/bin/python -m tests.isa_matrix``, docs/testing.md): it runs the numerics tests
under the code paths of other CPUs on one machine.
"""

from __future__ import annotations

import math

import numpy as np

#: float32 unit roundoff: the relative error of one rounding (half an ulp of 1.0)
U32 = 2.0**-24

#: how many "standard deviations" of summation-order noise :func:`reorder_tol` allows. The
#: rounding errors of a long sum behave like a random walk, so the difference of two orders
#: grows like sqrt(depth); blocked and pairwise kernels stay well below it, and 8 sigmas leaves
#: room for the rare aligned case without admitting a real error (those are >= 1e-3 relative).
SIGMAS = 8.0


def reorder_tol(depth: int, scale: float = 1.0, layers: int = 1) -> float:
    """Largest |a - b| expected between two float32 results computed in different orders.

    Args:
        depth: terms per sum (a convolution's in_channels * kh * kw, a linear layer's inputs).
        scale: magnitude of the result (its max |value|, or 1 for probabilities).
        layers: stacked sums the error passes through (convolutions on the longest path);
            each adds its own rounding, so the bound grows linearly with them.

    Returns ``SIGMAS * U32 * sqrt(depth) * layers * scale``; e.g. one 3x3x256 convolution of
    unit scale: 2.3e-5, a 50-layer ResNet at depth 4608: 1.6e-3 of the output's scale.
    """
    return SIGMAS * U32 * math.sqrt(depth) * layers * scale


#: a full-resolution mask may differ from its reference by this many pixels whatever its size:
#: the pixels whose pasted probability lies within float noise of the 0.5 threshold (reason 2).
#: Measured (docs/testing.md, "mmdetection's own spread"): the real mmdetection 2.28.2, re-run
#: on its fixtures' weights under the native, avx2 and default code paths of an Intel Xeon,
#: moves masks of a few dozen pixels by 1 to 3 pixels (mask IoU down to 0.909) against its own
#: fixture, which the old "IoU >= 0.98" rule failed; a shifted sampling grid or a wrong paste
#: moves a whole edge (tens of pixels).
MASK_FLIP_PIXELS = 4

#: ... or this fraction of the union (mask IoU >= 0.98), whichever allows more: on a large mask
#: a box that moved by float noise moves the edge by a fraction of a pixel along its length.
MASK_FLIP_FRACTION = 0.02


def mask_pixels_allowed(union: int) -> int:
    """How many pixels two masks whose union has ``union`` pixels may differ by."""
    return max(MASK_FLIP_PIXELS, int(MASK_FLIP_FRACTION * union))


def masks_agree(a: np.ndarray, b: np.ndarray) -> tuple[bool, int, int]:
    """Whether two boolean ``[H, W]`` masks agree within :func:`mask_pixels_allowed`.

    Returns ``(ok, differing pixels, union pixels)``.
    """
    diff = int(np.count_nonzero(a != b))
    union = int(np.count_nonzero(a | b))
    return diff <= mask_pixels_allowed(union), diff, union


#: detection scores of two float32 implementations of one network (mmdetection's and ours,
#: or one CPU's code path and another's): the softmax/sigmoid of logits that carry the
#: summation-order noise of a whole network (measured: mmdetection against its own fixture,
#: <= 3.6e-4 for the 101-layer random R101 on the avx2 path, <= 6e-5 on the others); 1e-3 is
#: above that and far below any real difference in a head (a wrong class or stage)
SCORE_TOL = 1e-3

#: box IoU of a matched pair of float32 detections: box corners carry the same noise as the
#: scores (a few 1e-4 pixels); 0.99 still separates the neighbours an NMS keeps (IoU < 0.5)
BOX_IOU_MIN = 0.99

#: TorchScript and ``torch.export`` programs against eager in one process (STYLE.md's tier,
#: as rtol and atol): both call the same ATen, oneDNN and oneMKL kernels on the same inputs
#: on the same code path, so their sums run in the same order; what differs is only where a
#: program decomposes or fuses an op (an addmm split into mm + add, a folded constant), a
#: rounding or two per op, far below :func:`reorder_tol` of a whole network (1.6e-3 of scale
#: for a 50-layer ResNet). Integer outputs (labels, image ids) must be equal.
PROGRAM_TOL = 1e-4

#: compiled engines (AOTInductor, onnxruntime) against eager: their own kernels sum in their
#: own orders through the whole network, so detections are matched (box IoU >= BOX_IOU_MIN,
#: score within SCORE_TOL, masks by :func:`masks_agree`) and the mean mask IoU of an image's
#: matches must stay >= this: a mean over tens of masks, which one flipped pixel cannot move
ENGINE_MEAN_MASK_IOU = 0.99
