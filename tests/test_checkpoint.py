"""cendetect.checkpoint: checkpoints are read as data; hostile pickles are refused unexecuted."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from cendetect.checkpoint import (
    Checkpoint,
    CheckpointError,
    PickledObject,
    check_state_dict_keys,
    load_checkpoint,
    load_data,
    load_into,
)
from cendetect.config import num_classes_from, preprocess_config_from
from tests.conftest import DATA
from tests.weights import state_dict_sha256

CHECKPOINTS = DATA / "checkpoints"
MARKER = "CENDETECT_PICKLE_EXECUTED"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- files as real tools write them -----------------------------------------------------------


def test_mmdet2_training_layout() -> None:
    path = CHECKPOINTS / "mmdet2_training_layout.pth"
    ckpt = load_checkpoint(path)
    assert ckpt.layout == "mmdet2"
    assert ckpt.classes == ("bar", "mosaic")
    assert ckpt.config == {"model": {"type": "MaskRCNN"}}
    assert ckpt.config_text == "model = dict(type='MaskRCNN')\n"
    assert list(ckpt.state_dict) == [
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert ckpt.meta["epoch"] == 12 and ckpt.meta["mmdet_version"] == "2.28.2"
    assert "CLASSES" not in ckpt.meta and "config" not in ckpt.meta
    assert ckpt.sha256 == _file_sha256(path)
    assert ckpt.path == str(path)


def test_mmdet3_training_layout() -> None:
    path = CHECKPOINTS / "mmdet3_training_layout.pth"
    with pytest.raises(Exception, match="HistoryBuffer"):  # plain weights_only refuses it
        torch.load(path, map_location="cpu", weights_only=True)
    ckpt = load_checkpoint(path)
    assert ckpt.layout == "mmdet3"
    assert ckpt.classes == ("bar", "mosaic")
    assert ckpt.config is not None and ckpt.config["model"]["type"] == "MaskRCNN"
    assert preprocess_config_from(ckpt.config).img_scale == (1333, 800)
    assert num_classes_from(ckpt.config) == 2
    assert list(ckpt.state_dict) == ["backbone.conv1.weight", "backbone.bn1.running_mean"]
    assert ckpt.state_dict["backbone.conv1.weight"].shape == (4, 3, 3, 3)
    assert ckpt.meta["mmengine_version"] == "0.10.7"
    assert ckpt.sha256 == _file_sha256(path)


def test_mmdet3_message_hub_becomes_placeholders() -> None:
    obj = load_data(CHECKPOINTS / "mmdet3_training_layout.pth")
    buffer = obj["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, PickledObject)
    assert buffer.global_name == "mmengine.logging.history_buffer.HistoryBuffer"
    assert buffer.state["_log_history"].to_numpy().tolist() == [1.0, 0.5, 1 / 3]
    assert buffer.state["_count_history"].to_numpy().tolist() == [1, 1, 1]
    method = buffer.state["statistics_methods"]["mean"]
    assert method.args == ("mmengine.logging.history_buffer.HistoryBuffer.mean",)


def test_malicious_file_is_refused_and_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = CHECKPOINTS / "malicious.pth"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "posix.system" in message
    assert "data only" in message and "state_dict" in message  # how to convert a trusted file
    assert info.value.path == str(path)
    assert not (tmp_path / MARKER).exists()
    assert not os.listdir(tmp_path)


class _Hostile:
    """Pickles as a call to ``func(*args)``; never unpickle it with the plain pickle module."""

    def __init__(self, func: object, *args: object):
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("func", [os.system, eval, getattr], ids=["system", "eval", "getattr"])
def test_hostile_globals_are_refused(
    func: object, zip_format: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = {
        os.system: (f"touch {MARKER}",),
        eval: (f"open({MARKER!r}, 'w')",),
        # getattr is allowed only on our placeholders, not on what torch allows by default.
        getattr: (collections.OrderedDict, "fromkeys"),
    }[func]
    path = tmp_path / "hostile.pth"
    payload = {"state_dict": {"w": torch.zeros(1)}, "meta": {"x": _Hostile(func, *args)}}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the legacy pickle protocol
        with pytest.raises(CheckpointError, match="refused") as info:
            load_checkpoint(path)
    assert str(path) in str(info.value)
    named = {os.system: "posix.system", eval: "builtins.eval", getattr: "getattr(<class"}[func]
    assert named in str(info.value)
    assert not (tmp_path / MARKER).exists()


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: object) -> None:
    for i in range(1, name.count(".") + 2):
        part = ".".join(name.split(".")[:i])
        if part not in sys.modules:
            monkeypatch.setitem(sys.modules, part, types.ModuleType(part))
    for key, value in attrs.items():
        value.__module__ = name  # type: ignore[attr-defined]
        value.__qualname__ = key  # type: ignore[attr-defined]
        setattr(sys.modules[name], key, value)


def test_mmengine_config_objects_load_as_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-ins that pickle the way mmengine's ConfigDict and Config do.
    class ConfigDict(dict):
        def __reduce_ex__(self, proto: int) -> tuple:
            return (self.__class__, (dict(self),), None, None, None, None)

    class Config:
        def __getstate__(self) -> tuple:
            return (ConfigDict(a=1), "cfg.py", "a = 1", {}, True, set())

    _fake_module(monkeypatch, "mmengine.config.config", ConfigDict=ConfigDict, Config=Config)
    path = tmp_path / "cfg_objects.pth"
    meta = {"CLASSES": ("bar",), "hook": ConfigDict(x=ConfigDict(y=2)), "cfg_obj": Config()}
    torch.save({"meta": meta, "state_dict": {"w": torch.ones(2)}}, path)
    monkeypatch.undo()  # the classes are gone again: loading must not need them
    ckpt = load_checkpoint(path)
    assert ckpt.meta["hook"] == {"x": {"y": 2}} and type(ckpt.meta["hook"]) is dict
    assert isinstance(ckpt.meta["cfg_obj"], PickledObject)
    assert ckpt.meta["cfg_obj"].state[:3] == ({"a": 1}, "cfg.py", "a = 1")


# --- the rebuilt parity checkpoints -----------------------------------------------------------

REBUILT = [
    ("mmdet2_r50_ckpt", "mmdet/mask_rcnn_r50_fpn", "mmdet2", 50),
    ("mmdet2_r101_ckpt", "mmdet/mask_rcnn_r101_fpn", "mmdet2", 101),
    ("mmdet3_r50_ckpt", "mmdet3/mask_rcnn_r50_fpn", "mmdet3", 50),
]


@pytest.mark.parametrize(
    ("fixture", "arch", "layout", "depth"), REBUILT, ids=[r[0] for r in REBUILT]
)
def test_rebuilt_checkpoints(
    fixture: str, arch: str, layout: str, depth: int, request: pytest.FixtureRequest
) -> None:
    ckpt = load_checkpoint(request.getfixturevalue(fixture))
    expected = json.loads((DATA / arch / "expected.json").read_text())
    keys = json.loads((DATA / arch / "keys.json").read_text())
    assert ckpt.layout == layout
    assert ckpt.classes == tuple(expected["classes"])
    assert [(k, list(v.shape), str(v.dtype)) for k, v in ckpt.state_dict.items()] == [
        (k, s, d) for k, s, d in keys
    ]
    assert state_dict_sha256(ckpt.state_dict) == expected["state_dict_sha256"]
    assert ckpt.config is not None and ckpt.config["model"]["backbone"]["depth"] == depth
    assert ckpt.config_text == (DATA / arch / "config.py").read_text()
    assert num_classes_from(ckpt.config) == 2
    assert preprocess_config_from(ckpt.config).mean == (123.675, 116.28, 103.53)
    assert "state_dict" not in repr(ckpt) and "tensor" not in repr(ckpt)


# --- other layouts and broken files -----------------------------------------------------------


def test_bare_and_wrapped_state_dicts(tmp_path: Path) -> None:
    weights = {"a.weight": torch.randn(2, 3), "a.bias": torch.randn(2)}
    for name, payload in {
        "bare": weights,
        "wrapped": {"state_dict": weights},
        "detectron": {"model": weights, "__author__": "someone"},
        "parameters": {k: torch.nn.Parameter(v) for k, v in weights.items()},
    }.items():
        path = tmp_path / f"{name}.pth"
        torch.save(payload, path)
        ckpt = load_checkpoint(path)
        assert ckpt.layout == "state_dict", name
        assert (ckpt.classes, ckpt.config, ckpt.config_text, ckpt.meta) == (None, None, None, {})
        assert list(ckpt.state_dict) == ["a.weight", "a.bias"]
        assert all(type(v) is torch.Tensor for v in ckpt.state_dict.values())
        assert torch.equal(ckpt.state_dict["a.weight"], weights["a.weight"])


def test_module_prefix_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "dp.pth"
    torch.save(
        {"state_dict": {"module.conv.weight": torch.ones(1), "module.x": torch.ones(1)}}, path
    )
    assert list(load_checkpoint(path).state_dict) == ["conv.weight", "x"]
    torch.save({"module.x": torch.ones(1), "x": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="both 'module.x' and 'x'"):
        load_checkpoint(path)


def test_non_tensor_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"meta": {}, "state_dict": {"w": torch.ones(1), "step": 3}}, path)
    with pytest.raises(CheckpointError, match=r"state_dict\['step'\] is a int, not a tensor"):
        load_checkpoint(path)
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        load_checkpoint(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_checkpoint(path)


def test_unparseable_embedded_config(tmp_path: Path) -> None:
    path = tmp_path / "cfg.pth"
    meta = {"CLASSES": ("bar",), "config": "import os\nmodel = dict()\n"}
    torch.save({"meta": meta, "state_dict": {"w": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match=r"import statement.*parse_config=False"):
        load_checkpoint(path)
    ckpt = load_checkpoint(path, parse_config=False)
    assert ckpt.config is None and ckpt.config_text == meta["config"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (lambda good: good[: len(good) // 2], "truncated"),
        (lambda good: good[:-10], "truncated"),
        (lambda good: b"model = dict(type='MaskRCNN')\n", "not a PyTorch checkpoint"),
        (lambda good: b"", "empty"),
    ],
    ids=["half", "tail-cut", "text", "empty"],
)
def test_broken_files(content: object, needle: str, tmp_path: Path) -> None:
    good = (CHECKPOINTS / "mmdet2_training_layout.pth").read_bytes()
    path = tmp_path / "broken.pth"
    path.write_bytes(content(good))  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=needle) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)


# --- loading into a model ---------------------------------------------------------------------


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def _ckpt(state_dict: dict[str, torch.Tensor]) -> Checkpoint:
    return Checkpoint("w.pth", state_dict, None, None, None, "state_dict", "0" * 64, {})


def test_load_into() -> None:
    source = _model()
    for p in source.parameters():
        torch.nn.init.normal_(p)
    state = dict(source.state_dict())
    del state["1.num_batches_tracked"]  # old checkpoints lack it; torch fills it in
    target = _model()
    load_into(target, _ckpt(state))
    assert all(torch.equal(a, b) for a, b in zip(source.parameters(), target.parameters()))
    assert "1.num_batches_tracked" not in state  # the checkpoint's dict is left alone


def test_key_mismatch_lists_names() -> None:
    state = dict(_model().state_dict())
    del state["0.bias"]
    state["1.weight"] = torch.ones(5)
    state["head.fc_cls.weight"] = torch.ones(2)
    with pytest.raises(CheckpointError) as info:
        load_into(_model(), _ckpt(state))
    message = str(info.value)
    assert "checkpoint w.pth does not fit Sequential" in message
    assert "1 missing keys: 0.bias" in message
    assert "1 unexpected keys: head.fc_cls.weight" in message
    assert "1 shape mismatches: 1.weight checkpoint [5] vs model [4]" in message


def test_key_mismatch_listing_is_capped() -> None:
    state = {f"extra.{i}": torch.ones(1) for i in range(30)}
    state.update(_model().state_dict())
    with pytest.raises(CheckpointError, match=r"30 unexpected keys \(first 20 of 30\)") as info:
        check_state_dict_keys(_model(), state, "big.pth")
    assert "extra.19" in str(info.value) and "extra.20" not in str(info.value)
