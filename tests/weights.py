"""Rebuild the parity-fixture weights and write them as mmdetection checkpoints.

The rule is the one in ``tests/data/mmdet/README.md`` ("Rebuilding the weights"); the result is
checked against ``state_dict_sha256`` in the folder's ``expected.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "rebuild_state_dict",
    "save_mmdet2_checkpoint",
    "save_mmdet3_checkpoint",
    "state_dict_sha256",
]

_LOGITS = {"rpn_cls", "fc_cls", "conv_logits", "fc_logits"}
_GAIN = {
    "conv_logits": 3.0,
    "rpn_cls": 0.75,
    "fc_cls": 0.75,
    "fc_logits": 0.75,
    "rpn_reg": 0.1,
    "fc_reg": 0.1,
    "conv_offset": 0.3,
}
_DTYPES = {"torch.float32": torch.float32, "torch.int64": torch.int64}


def _seeded_tensor(seed: int, name: str, shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    s = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)
    g = torch.Generator().manual_seed(s)
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=dtype)
    if name.endswith("running_var"):
        t = torch.rand(shape, generator=g) + 0.5
    elif name.endswith("running_mean"):
        t = torch.randn(shape, generator=g) * 0.1
    elif len(shape) == 1 and name.endswith(".weight"):
        t = torch.rand(shape, generator=g) * 0.5 + 0.5
    elif len(shape) == 1 and name.endswith(".bias"):
        t = torch.randn(shape, generator=g) * 0.1
    else:
        t = torch.randn(shape, generator=g)
        layer = name[: -len(".weight")].rsplit(".", 1)[-1] if name.endswith(".weight") else ""
        if layer in _LOGITS:
            t = t - t.mean(dim=tuple(range(1, t.dim())), keepdim=True)
        # One float multiplier: (t * gain) / sqrt(fan) rounds differently and misses the hash.
        t = t * (_GAIN.get(layer, 1.0) / math.sqrt(math.prod(shape[1:])))
    return t.to(dtype)


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over each name's bytes then the tensor's contiguous bytes, names sorted."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def rebuild_state_dict(arch_dir: Path) -> dict[str, torch.Tensor]:
    """The fixture state dict of ``arch_dir`` (keys.json order), verified against expected.json.

    Raises:
        ValueError: the rebuilt weights do not hash to ``state_dict_sha256``.
    """
    arch_dir = Path(arch_dir)
    expected = json.loads((arch_dir / "expected.json").read_text())
    keys = json.loads((arch_dir / "keys.json").read_text())
    seed = int(expected["seed"])
    out = {name: _seeded_tensor(seed, name, shape, _DTYPES[dt]) for name, shape, dt in keys}
    with np.load(arch_dir / "overrides.npz") as overrides:
        for name in overrides.files:
            if name not in out:
                raise ValueError(f"{arch_dir}/overrides.npz: {name!r} is not in keys.json")
            value = torch.from_numpy(overrides[name].copy())
            if value.shape != out[name].shape or value.dtype != out[name].dtype:
                raise ValueError(f"{arch_dir}/overrides.npz: {name!r} has the wrong shape/dtype")
            out[name] = value
    digest = state_dict_sha256(out)
    if digest != expected["state_dict_sha256"]:
        raise ValueError(
            f"{arch_dir}: rebuilt weights hash to {digest}, expected.json says "
            f"{expected['state_dict_sha256']}"
        )
    return out


def _classes(arch_dir: Path) -> tuple[str, ...]:
    return tuple(json.loads((arch_dir / "expected.json").read_text())["classes"])


def save_mmdet2_checkpoint(arch_dir: Path, out_path: Path) -> Path:
    """Write ``{'meta': {'CLASSES', 'config'}, 'state_dict'}`` as an mmdetection 2.x run does."""
    arch_dir = Path(arch_dir)
    meta = {
        "mmdet_version": "2.28.2",
        "CLASSES": _classes(arch_dir),
        "config": (arch_dir / "config.py").read_text(),
    }
    torch.save({"meta": meta, "state_dict": rebuild_state_dict(arch_dir)}, out_path)
    return Path(out_path)


def save_mmdet3_checkpoint(arch_dir: Path, out_path: Path) -> Path:
    """Write ``{'meta': {'dataset_meta': {'classes'}, 'cfg'}, 'state_dict'}`` as mmengine does."""
    arch_dir = Path(arch_dir)
    meta = {
        "mmengine_version": "0.10.7",
        "dataset_meta": {"classes": _classes(arch_dir)},
        "cfg": (arch_dir / "config.py").read_text(),
    }
    torch.save({"meta": meta, "state_dict": rebuild_state_dict(arch_dir)}, out_path)
    return Path(out_path)
