"""The ``aten.repeat`` rewrite applied before AOTInductor (see ``export_ops``' docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cendetect.engine.runners.export_ops import repeat_via_expand


@pytest.mark.parametrize(
    ("shape", "repeats"), [((5, 4), (1, 3)), ((5, 4), (2, 1)), ((3,), (2, 2)), ((0, 4), (1, 2))]
)
def test_repeat_via_expand_equals_repeat(shape: tuple[int, ...], repeats: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    assert torch.equal(repeat_via_expand(x, repeats), x.repeat(*repeats))  # copies: exact


class _RepeatAfterNonzero(nn.Module):
    """The RoI head's pattern: rows selected by a data-dependent mask, tiled per class."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        idx = (y > 0).nonzero().squeeze(1)
        rows = x[idx[: torch.sym_min(idx.shape[0], 1000)]]
        tiled = rows.repeat(1, 2).reshape(-1, 4)
        return (tiled[:, :2] + tiled[:, 2:]) * 0.5


@pytest.mark.slow
def test_aoti_with_the_rewrite_is_exact(tmp_path: Path) -> None:
    import cendetect.engine.runners.export_ops  # noqa: F401

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, generator=g), torch.randn(50, generator=g)
    n = torch.export.Dim("n", min=2)
    ep = torch.export.export(_RepeatAfterNonzero(), (x, y), dynamic_shapes=({0: n}, {0: n}))
    table = torch.export.default_decompositions()
    table[torch.ops.aten.repeat.default] = repeat_via_expand
    ep = ep.run_decompositions(table)
    path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "r.pt2"))
    compiled = torch._inductor.aoti_load_package(path)
    # exact: copies, one addition and an exact halving; any order or fusion Inductor may choose
    # ((a + b) * 0.5, a * 0.5 + b * 0.5, an FMA) rounds to the same bits
    torch.testing.assert_close(compiled(x, y), _RepeatAfterNonzero()(x, y), rtol=0, atol=0)
