"""``torch.export`` of the detector with dynamic input height and width.

One program per artifact, built for one image (``B = 1``): the model's per-image loops are
unrolled by the exporter, so the batch size is baked in and the runner
(:class:`~cendetect.engine.runners.EngineRunner`) feeds images one at a time. Height and width
are symbolic multiples of the pre-processing's ``size_divisor`` between the spec's min and max.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cendetect.engine.runners import InputSpec
from cendetect.engine.runners.export_ops import repeat_via_expand

__all__ = ["example_inputs", "export_program"]


def example_inputs(
    spec: InputSpec, device: torch.device | str = "cpu", seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """A seeded random image at the spec's ``opt`` size, as the model takes it.

    Returns ``(images [1,3,H,W] float32, image_sizes [1,2] int64, scale_factors [1,4] float32)``.
    """
    h, w = spec.opt
    g = torch.Generator().manual_seed(seed)
    images = torch.randn((1, 3, h, w), generator=g).to(device)
    sizes = torch.tensor([[h, w]], dtype=torch.int64, device=device)
    factors = torch.ones((1, 4), dtype=torch.float32, device=device)
    return images, sizes, factors


def export_program(
    model: nn.Module, spec: InputSpec, divisor: int, device: torch.device | str = "cpu"
) -> torch.export.ExportedProgram:
    """Export ``model`` (on ``device``, eval mode) for ``[1, 3, H, W]`` inputs within ``spec``.

    ``H`` and ``W`` are ``divisor * k`` with ``k`` symbolic in ``[min / divisor, max /
    divisor]``; a spec with ``min == max`` exports a static shape. ``aten.repeat`` is rewritten
    around an Inductor miscompile (:mod:`cendetect.engine.runners.export_ops`); the program
    stays exact (same values as eager).
    """
    args = example_inputs(spec, device)
    dynamic: tuple[dict[int, object] | None, None, None] = (None, None, None)
    if spec.min != spec.max:
        dims = {}
        sides = ((2, "h", spec.min[0], spec.max[0]), (3, "w", spec.min[1], spec.max[1]))
        for axis, name, lo, hi in sides:
            # k >= 2: the exporter specialises a dimension that can be 1 (0/1 specialisation).
            k = torch.export.Dim(f"{name}{divisor}", min=max(lo // divisor, 2), max=hi // divisor)
            dims[axis] = divisor * k
        dynamic = (dims, None, None)
    with torch.no_grad():
        program = torch.export.export(model.eval(), args, dynamic_shapes=dynamic)
    table = torch.export.default_decompositions()
    table[torch.ops.aten.repeat.default] = repeat_via_expand
    return program.run_decompositions(table)
