"""The fixture-weight rebuild (tests/weights.py): exact where torch.randn is vectorized, checked
against ``weights_sample.npz`` where it is not (ATen's scalar path)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import DATA
from tests.isa import ISA_LEVELS, missing_flags
from tests.weights import (
    SCALAR_NORMAL_RTOL,
    check_weights_sample,
    rebuild_state_dict,
    scalar_normals,
    state_dict_sha256,
)

R50 = DATA / "mmdet" / "mask_rcnn_r50_fpn"


@pytest.fixture(scope="module")
def r50() -> dict[str, torch.Tensor]:
    return rebuild_state_dict(R50)


def test_sample_accepts_the_rebuilt_weights(r50: dict[str, torch.Tensor]) -> None:
    check_weights_sample(R50, r50)


def test_sample_refuses_a_wrong_rule(r50: dict[str, torch.Tensor]) -> None:
    name = "backbone.layer1.0.conv2.weight"
    scale = float(r50[name].abs().max())
    # 10x the scalar sampler's allowance: far below any wrong gain or seed (whole percents)
    off = dict(r50, **{name: r50[name] + 10 * SCALAR_NORMAL_RTOL * scale})
    with pytest.raises(ValueError, match=f"weights_sample.npz: {name} rebuilt off by"):
        check_weights_sample(R50, off)
    swapped = dict(r50, **{name: r50[name].flip(0)})  # same values, other places
    with pytest.raises(ValueError, match=name):
        check_weights_sample(R50, swapped)


def test_exact_on_a_vectorized_sampler(r50: dict[str, torch.Tensor]) -> None:
    if scalar_normals():
        pytest.skip("ATEN_CPU_CAPABILITY=default: torch.randn runs the scalar sampler here")
    expected = json.loads((R50 / "expected.json").read_text())
    assert state_dict_sha256(r50) == expected["state_dict_sha256"]


_CHILD = (
    "import torch\n"
    "from tests.conftest import DATA\n"
    "from tests.weights import inexact_fixture_weights, rebuild_state_dict, state_dict_sha256\n"
    "assert torch.backends.cpu.get_cpu_capability() == 'DEFAULT'\n"
    "sd = rebuild_state_dict(DATA / 'mmdet' / 'mask_rcnn_r50_fpn')\n"
    "print(state_dict_sha256(sd), inexact_fixture_weights() is None)\n"
)


def _child(**extra: str) -> tuple[str, str]:
    env = {**ISA_LEVELS["default"].environ(), **extra}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], out[1]


@pytest.mark.slow
def test_scalar_level_rebuilds_exactly_on_an_avx2_cpu() -> None:
    """ATEN_CPU_CAPABILITY=default on a CPU with AVX2 (the ISA matrix): the weights come from
    a child on the vectorized sampler, bit for bit."""
    if missing_flags(ISA_LEVELS["avx2"]):
        pytest.skip("this CPU has no AVX2: the sampler cannot be vectorized here")
    digest, exact = _child()
    assert digest == json.loads((R50 / "expected.json").read_text())["state_dict_sha256"]
    assert exact == "True"


@pytest.mark.slow
def test_scalar_sampler_rebuild_is_accepted() -> None:
    """What a CPU without AVX2 gets (the child's own scalar sampler, forced): a hash that
    differs, weights the sample check accepts, and inexact_fixture_weights() saying so when
    the CPU really lacks AVX2."""
    digest, exact = _child(_CENDETECT_WEIGHTS_CHILD="1")
    expected = json.loads((R50 / "expected.json").read_text())
    assert digest != expected["state_dict_sha256"], "the scalar sampler now matches: simplify"
    assert exact == str(not missing_flags(ISA_LEVELS["avx2"]))
