"""Rebuild the parity-fixture weights and write them as mmdetection checkpoints.

The rule is the one in ``tests/data/mmdet/README.md`` ("Rebuilding the weights"); the result is
checked against ``state_dict_sha256`` in the folder's ``expected.json``.

The rule's ``torch.randn`` is reproduced bit for bit only by ATen's vectorized normal sampler
(AVX2 and up: Box-Muller with SLEEF's vector log/cos/sin), which made the fixtures. ATen's
scalar path (``ATEN_CPU_CAPABILITY=default``: a CPU without AVX2, or the ISA matrix's
``default`` level) uses libm's instead: measured on 10^6 unit normals, 38 % of the values differ,
by at most 2.1e-6. So where ATen was only told to take its scalar path on a CPU that has AVX2
(the ISA matrix), the weights are rebuilt in a child process on the CPU's own vectorized path
and are exact. On a CPU without AVX2 they cannot be: there the hash cannot match, the rebuilt
weights are checked against ``weights_sample.npz`` (made by ``python -m tests.weights`` on a
vectorized path: 64 values of every tensor, its float64 sum and max |value|) within
:data:`SCALAR_NORMAL_RTOL`, and :func:`inexact_fixture_weights` tells the tests that compare
with mmdetection's outputs that its network and ours are not the same one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FAMILY_FIXTURES",
    "check_weights_sample",
    "inexact_fixture_weights",
    "rebuild_state_dict",
    "save_mmdet2_checkpoint",
    "save_family_checkpoint",
    "save_mmdet3_checkpoint",
    "rule_of",
    "scalar_normals",
    "state_dict_sha256",
    "weights_sample",
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

#: values kept per tensor in ``weights_sample.npz``
SAMPLE_SIZE = 64

#: how far ATen's scalar normal sampler may put a rebuilt value from the vectorized one,
#: relative to the tensor's max |value| (measured: 2.1e-6 absolute on unit normals whose max
#: is >= 2 from 16 values up; below 16 values both paths are the same scalar code)
SCALAR_NORMAL_RTOL = 4e-6


def scalar_normals() -> bool:
    """True where ``torch.randn`` runs ATen's scalar sampler (its values differ from the
    fixtures' in the last bits, see the module docstring)."""
    return torch.backends.cpu.get_cpu_capability() == "DEFAULT"


def _cpu_has_avx2() -> bool:
    from tests.isa import cpu_flags

    return {"avx2", "fma"} <= cpu_flags()


def inexact_fixture_weights() -> str | None:
    """Why the fixture weights rebuilt here are not mmdetection's bit for bit (a reason for a
    test that compares with mmdetection's outputs to skip), or None: they are."""
    if scalar_normals() and not _cpu_has_avx2():
        return (
            "this CPU has no AVX2: torch.randn's scalar sampler rebuilds the fixture weights "
            "up to 2.1e-6 off mmdetection's (tests/weights.py), so its network and ours differ "
            "and NMS ties and saturated scores may fall otherwise"
        )
    return None


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


def _family_tensor(seed: int, name: str, shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    """The rule of the detectron2 and maskrcnn-benchmark fixtures (their README.md)."""
    if dtype != torch.float32:
        return torch.zeros(shape, dtype=dtype)
    s = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)
    g = torch.Generator().manual_seed(s)
    if len(shape) == 1 and name.endswith("bias"):
        return torch.randn(shape, generator=g) * 0.1
    if len(shape) == 1:
        return torch.rand(shape, generator=g) * 0.5 + 0.5
    gain = 1.0 if ".fpn_" in name else math.sqrt(2)
    # one float multiplier, as for the mmdet fixtures: the README's "* gain / sqrt(...)" read
    # left to right rounds twice and misses the hash
    return torch.randn(shape, generator=g) * (gain / math.sqrt(math.prod(shape[1:])))


#: how each fixture folder's weights are drawn: "mmdet" (tests/data/mmdet/README.md) or
#: "family" (tests/data/detectron2/README.md, also maskrcnn_benchmark's)
_RULES = {"mmdet": _seeded_tensor, "family": _family_tensor}


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over each name's bytes then the tensor's contiguous bytes, names sorted."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def rebuild_state_dict(arch_dir: Path, rule: str = "mmdet") -> dict[str, torch.Tensor]:
    """The fixture state dict of ``arch_dir`` (keys.json order), verified against expected.json.

    ``rule``: ``"mmdet"`` for the mmdetection fixtures, ``"family"`` for detectron2's and
    maskrcnn-benchmark's.

    Raises:
        ValueError: the rebuilt weights do not hash to ``state_dict_sha256``.
    """
    arch_dir = Path(arch_dir)
    expected = json.loads((arch_dir / "expected.json").read_text())
    keys = json.loads((arch_dir / "keys.json").read_text())
    seed = int(expected["seed"])
    draw = _RULES[rule]
    out = {name: draw(seed, name, shape, _DTYPES[dt]) for name, shape, dt in keys}
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
        if scalar_normals() and _cpu_has_avx2() and "_CENDETECT_WEIGHTS_CHILD" not in os.environ:
            return _rebuild_vectorized(arch_dir, rule)
        if scalar_normals():
            check_weights_sample(arch_dir, out)
            return out
        raise ValueError(
            f"{arch_dir}: rebuilt weights hash to {digest}, expected.json says "
            f"{expected['state_dict_sha256']}"
        )
    return out


def _rebuild_vectorized(arch_dir: Path, rule: str = "mmdet") -> dict[str, torch.Tensor]:
    """:func:`rebuild_state_dict` in a child whose ATen takes this CPU's vectorized path
    (``ATEN_CPU_CAPABILITY`` unset), hash-checked there; handed back through a file."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env["_CENDETECT_WEIGHTS_CHILD"] = "1"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="cendetect_weights_") as tmp:
        out = Path(tmp) / "state_dict.pt"
        code = (
            "import sys, torch\n"
            "from tests.weights import rebuild_state_dict\n"
            "torch.save(rebuild_state_dict(sys.argv[1], sys.argv[3]), sys.argv[2])\n"
        )
        cmd = [sys.executable, "-c", code, str(arch_dir), str(out), rule]
        subprocess.run(cmd, env=env, check=True)
        return torch.load(out, weights_only=True)


def _sample_index(numel: int) -> np.ndarray:
    return np.unique(np.linspace(0, numel - 1, num=min(SAMPLE_SIZE, numel)).astype(np.int64))


def weights_sample(state_dict: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``{name: [sum, max |value|, v_0 .. v_k]}`` (float64) with up to :data:`SAMPLE_SIZE`
    values at evenly spaced flat positions of each tensor."""
    out = {}
    for name, t in state_dict.items():
        flat = t.detach().reshape(-1).double().numpy()
        head = [flat.sum(), np.abs(flat).max()] if flat.size else [0.0, 0.0]
        out[name] = np.concatenate([head, flat[_sample_index(flat.size)]])
    return out


def check_weights_sample(arch_dir: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Check ``state_dict`` against ``arch_dir/weights_sample.npz`` within
    :data:`SCALAR_NORMAL_RTOL` of each tensor's max |value| (the sum: that times its size).

    Raises:
        ValueError: a tensor is missing or off, naming it and by how much.
    """
    path = Path(arch_dir) / "weights_sample.npz"
    if not path.exists():
        raise ValueError(f"{path}: missing; make it with `python -m tests.weights` (AVX2+)")
    got = weights_sample(state_dict)
    with np.load(path) as ref:
        if sorted(ref.files) != sorted(got):
            raise ValueError(f"{path}: its tensor names differ from the rebuilt state dict")
        for name in ref.files:
            want, have = ref[name], got[name]
            tol = SCALAR_NORMAL_RTOL * max(float(want[1]), 1e-30)
            n = state_dict[name].numel()
            if abs(have[0] - want[0]) > tol * n or np.abs(have[1:] - want[1:]).max() > tol:
                raise ValueError(
                    f"{path}: {name} rebuilt off by {np.abs(have[1:] - want[1:]).max():.3g} "
                    f"(allowed {tol:.3g}), sum by {abs(have[0] - want[0]):.3g}"
                )


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


#: fixture folders whose weights follow the "family" rule
FAMILY_FIXTURES = ("detectron2", "detectron2_cfg", "maskrcnn_benchmark")


def rule_of(folder: Path) -> str:
    """The weight rule of a fixture folder (see :data:`_RULES`)."""
    return "family" if Path(folder).name in FAMILY_FIXTURES else "mmdet"


def save_family_checkpoint(fixture_dir: Path, out_path: Path, prefix: str = "") -> Path:
    """Write ``{"model": state_dict}`` as detectron2's ``DetectionCheckpointer`` and
    maskrcnn-benchmark's ``Checkpointer`` save it; ``prefix="module."`` gives what a
    DistributedDataParallel training run saves."""
    sd = rebuild_state_dict(fixture_dir, "family")
    torch.save({"model": {prefix + k: v for k, v in sd.items()}}, out_path)
    return Path(out_path)


def _write_samples(folders: list[Path]) -> None:
    if scalar_normals():
        raise SystemExit("run this on ATen's vectorized path (unset ATEN_CPU_CAPABILITY, AVX2+)")
    for folder in folders:
        sample = weights_sample(rebuild_state_dict(folder, rule_of(folder)))  # hash-checked
        np.savez_compressed(folder / "weights_sample.npz", **sample)
        print(f"wrote {folder / 'weights_sample.npz'} ({len(sample)} tensors)")


if __name__ == "__main__":
    # python -m tests.weights [FIXTURE_FOLDER ...]: (re)make weights_sample.npz, by default for
    # every fixture folder under tests/data/mmdet and tests/data/mmdet3, and the two families'
    _data = Path(__file__).parent / "data"
    _write_samples(
        [Path(a) for a in sys.argv[1:]]
        or sorted(p.parent for p in _data.glob("mmdet*/*/expected.json"))
        + [_data / f for f in FAMILY_FIXTURES]
    )
