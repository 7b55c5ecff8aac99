"""``torch.ops.cendetect_export.materialize``: an opaque copy that exported programs call.

Why it exists: torch 2.13's Inductor (AOTInductor, CPU) miscompiles ``x.repeat(...)`` followed
by a reshape when ``x`` has a data-dependent (unbacked) row count, as the RoI head's
``rois.repeat(1, num_classes).reshape(-1, 4)`` has after NMS: the fused kernel reads row 0 for
every row, so every class box of every RoI decodes from the first RoI. Minimal repro in
``tests/compile/test_export_workarounds.py``. ``cendetect.compile.export`` decomposes
``aten.repeat`` into ``view + expand`` and passes the result through this op, which Inductor
cannot fuse into its consumers; the consumers then index a plain contiguous buffer.

The op is registered on import; loading a ``.pt2`` that calls it imports this module first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["materialize", "repeat_via_expand"]


@torch.library.custom_op("cendetect_export::materialize", mutates_args=())
def materialize(x: Tensor) -> Tensor:
    """A contiguous copy of ``x`` (same shape, dtype and device)."""
    return x.contiguous().clone()


@materialize.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def repeat_via_expand(x: Tensor, repeats: Sequence[int]) -> Tensor:
    """``x.repeat(*repeats)`` as ``view + expand + reshape``, materialised by the opaque op.

    ``repeat`` tiles: output index ``i`` along a dimension of size ``s`` repeated ``r`` times
    reads input ``i % s``, i.e. the ``(r, s)`` layout of ``x.view(1, s).expand(r, s)``.
    """
    lead = len(repeats) - x.dim()
    shape = [1] * lead + list(x.shape)
    view: list[int] = []
    expanded: list[int] = []
    out: list[int] = []
    for r, s in zip(repeats, shape):
        view += [1, s]
        expanded += [r, s]
        out.append(r * s)
    tiled = x.reshape(shape).reshape(view).expand(expanded).reshape(out)
    return torch.ops.cendetect_export.materialize(tiled)
