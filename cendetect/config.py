"""Read the mmdetection config stored inside a checkpoint, as data.

mmdetection 2.x keeps the full config text in ``meta['config']``, 3.x (mmengine) in ``meta['cfg']``.
Both are Python source made of ``name = value`` assignments. This module never executes it: it walks
the syntax tree and accepts only literal displays, ``dict(...)`` calls and references to earlier
names; anything else (imports, other calls, attribute access, operators, lambdas, f-strings) is a
:class:`ConfigError` that names the source and the line.

Test-time pre-processing follows mmdetection 2.28 / 3.3 semantics:

* a keep-ratio ``Resize`` scale ``(a, b)`` means "long edge at most ``max(a, b)``, short edge at
  most ``min(a, b)``" whatever the order (mmcv ``rescale_size``), so it is stored (long, short);
* without keep-ratio the scale is the exact output ``(width, height)`` (mmcv ``imresize``);
* mean/std apply after the optional BGR->RGB swap, in the swapped channel order.
"""

from __future__ import annotations

import ast
import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cendetect.errors import ConfigError

__all__ = [
    "ConfigError",
    "PreprocessConfig",
    "model_config_from",
    "num_classes_from",
    "parse_config_text",
    "preprocess_config_from",
    "read_config_file",
]

# Names for the constructs a config may not use, for error messages.
_CONSTRUCT_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Lambda: "a lambda",
    ast.JoinedStr: "an f-string",
    ast.BinOp: "an operator expression",
    ast.BoolOp: "a boolean operator",
    ast.Compare: "a comparison",
    ast.IfExp: "a conditional expression",
    ast.Subscript: "subscripting",
    ast.ListComp: "a list comprehension",
    ast.DictComp: "a dict comprehension",
    ast.SetComp: "a set comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.Starred: "star-unpacking",
    ast.NamedExpr: "an assignment expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Import: "an import statement",
    ast.ImportFrom: "an import statement",
    ast.FunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        try:
            return f"a call to {ast.unparse(node.func)!r}"
        except Exception:  # unparse is best-effort, for the message only
            return "a function call"
    return _CONSTRUCT_NAMES.get(type(node), f"{type(node).__name__} syntax")


class _Reader:
    """Evaluates the whitelisted subset of Python expressions; never calls into user code."""

    def __init__(self, source: str):
        self.source = source
        self.names: dict[str, Any] = {}

    def fail(self, node: ast.AST, what: str) -> ConfigError:
        lineno = getattr(node, "lineno", None)
        where = f"{self.source}:{lineno}" if lineno is not None else self.source
        return ConfigError(
            f"{where}: {what} is not allowed in a config (configs are read as data, never "
            "executed; only literals, dict(...) and names assigned earlier are accepted)",
            source=self.source,
            lineno=lineno,
        )

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Expr):
            if isinstance(stmt.value, ast.Constant):
                return  # a docstring or a stray literal: inert
            raise self.fail(stmt, _describe(stmt.value))
        if not isinstance(stmt, ast.Assign):
            if type(stmt) in _CONSTRUCT_NAMES:
                raise self.fail(stmt, _describe(stmt))
            raise self.fail(stmt, f"a statement of kind {type(stmt).__name__}")
        if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
            raise self.fail(stmt, "an assignment to anything but a single plain name")
        self.names[stmt.targets[0].id] = self.value(stmt.value)

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis or isinstance(node.value, complex):
                raise self.fail(node, f"the literal {node.value!r}")
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand)
            if isinstance(operand, bool) or not isinstance(operand, (int, float)):
                raise self.fail(node, "a sign on a non-number")
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.Set):
            return {self.hashable(e) for e in node.elts}
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for key, val in zip(node.keys, node.values):
                if key is None:  # {**name}
                    out.update(self.mapping(val))
                else:
                    out[self.hashable(key)] = self.value(val)
            return out
        if isinstance(node, ast.Call):
            return self.dict_call(node)
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise self.fail(node, f"the name {node.id!r} (not assigned earlier in the config)")
            # A copy, so that two config entries never share one mutable object.
            return copy.deepcopy(self.names[node.id])
        raise self.fail(node, _describe(node))

    def hashable(self, node: ast.expr) -> Any:
        val = self.value(node)
        try:
            hash(val)
        except TypeError:
            raise self.fail(node, f"an unhashable key or set item {val!r}") from None
        return val

    def mapping(self, node: ast.expr) -> dict[Any, Any]:
        val = self.value(node)
        if not isinstance(val, dict):
            raise self.fail(node, "**-unpacking of a non-dict")
        return val

    def dict_call(self, node: ast.Call) -> dict[str, Any]:
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict") or node.args:
            raise self.fail(node, _describe(node))
        out: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:  # dict(**name)
                out.update(self.mapping(kw.value))
            else:
                out[kw.arg] = self.value(kw.value)
        return out


def parse_config_text(text: str, source: str = "<config>") -> dict[str, Any]:
    """Parse mmdetection config text (2.x ``meta['config']`` or 3.x ``meta['cfg']``) as data.

    Args:
        text: Python-syntax config made of ``name = value`` assignments.
        source: where the text came from, used in error messages.

    Returns:
        The assigned names in file order. Tuples stay tuples, lists stay lists.

    Raises:
        ConfigError: on a syntax error or any construct outside the data subset, with the line.
    """
    try:
        tree = ast.parse(text, filename=source, mode="exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"{source}:{exc.lineno}: not valid config syntax: {exc.msg}",
            source=source,
            lineno=exc.lineno,
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ConfigError(f"{source}: config text cannot be parsed: {exc}", source=source) from None
    reader = _Reader(source)
    try:
        for stmt in tree.body:
            reader.statement(stmt)
    except RecursionError:
        raise ConfigError(f"{source}: config is nested too deeply", source=source) from None
    return reader.names


_MAX_BASE_DEPTH = 8


def _merge_mmdet(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base`` as mmcv/mmengine ``Config`` merges inherited files: dicts merge
    key by key, a dict with ``_delete_=True`` replaces the base's, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and value.get("_delete_") is True:
            out[key] = copy.deepcopy({k: v for k, v in value.items() if k != "_delete_"})
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_mmdet(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(path: str | os.PathLike[str], _depth: int = 0) -> dict[str, Any]:
    """An mmdetection config file (``.py``) parsed as data, its ``_base_`` files merged in.

    ``_base_`` (a file name or a list of them) is resolved relative to the file, loaded in
    order, and the file's own names merged over them (``_delete_=True`` replaces a dict).
    Nothing is executed: each file goes through :func:`parse_config_text`. mmcv's
    ``{{_base_.name}}`` text substitution is not a data construct and is refused.

    Raises:
        ConfigError: unreadable file, a construct outside the data subset, a missing base,
            bases nested more than 8 deep.
    """
    path = Path(path)
    if _depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"config {path}: _base_ files nest more than {_MAX_BASE_DEPTH} deep")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc}", source=str(path)) from None
    if "{{" in text and "_base_." in text:
        raise ConfigError(
            f"config {path}: uses mmcv's {{{{_base_.name}}}} substitution, which cendetect does "
            "not evaluate; save the config as mmdetection dumps it (Config.dump, or the "
            "work_dir copy) and pass that file",
            source=str(path),
        )
    names = parse_config_text(text, str(path))
    bases = names.pop("_base_", None)
    if bases is None:
        return names
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"config {path}: _base_ must be a file name or a list of them")
    merged: dict[str, Any] = {}
    for name in bases:
        base = (path.parent / name).resolve()
        if not base.is_file():
            raise ConfigError(f"config {path}: _base_ file {name} not found ({base})")
        merged = _merge_mmdet(merged, read_config_file(base, _depth + 1))
    return _merge_mmdet(merged, names)


#: the keep-ratio resize rules :class:`PreprocessConfig` reproduces (each family's own)
RESIZE_RULES = ("mmcv", "detectron2", "maskrcnn_benchmark")


@dataclass(frozen=True)
class PreprocessConfig:
    """Test-time image pre-processing, as mmdetection's test pipeline does it.

    Attributes:
        img_scale: with ``keep_ratio``, (max long edge, max short edge) in pixels; without it, the
            exact output (width, height).
        keep_ratio: resize keeping the aspect ratio (mmcv ``imrescale``), else to ``img_scale``.
        mean: per-channel mean subtracted after the optional BGR->RGB swap, in that channel order.
        std: per-channel divisor, same order as ``mean``.
        to_rgb: swap decoded BGR images to RGB before normalising.
        size_divisor: pad bottom/right with zeros (after normalising) to a multiple of this.
        resize: whose keep-ratio resize, exactly (``engine/preprocess.py``): ``"mmcv"``
            (mmdetection: mmcv's size rule, OpenCV bilinear), ``"detectron2"``
            (``ResizeShortestEdge``: its size rule, PIL bilinear) or ``"maskrcnn_benchmark"``
            (its demo ``Resize``: truncating size rule, PIL bilinear). With the last two,
            ``img_scale`` is (``MAX_SIZE_TEST``, ``MIN_SIZE_TEST``).
    """

    img_scale: tuple[int, int] = (1333, 800)
    keep_ratio: bool = True
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    to_rgb: bool = True
    size_divisor: int = 32
    resize: str = "mmcv"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_RULES:
            raise ValueError(
                f"PreprocessConfig.resize={self.resize!r}: use one of {', '.join(RESIZE_RULES)}"
            )


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _dataset_pipeline(dataset: Any) -> list[Any] | None:
    """The pipeline of a dataset config, looking through wrappers (mmdet get_test_pipeline_cfg)."""
    if isinstance(dataset, (list, tuple)):
        return _dataset_pipeline(dataset[0]) if dataset else None
    if not isinstance(dataset, Mapping):
        return None
    if "pipeline" in dataset:
        return dataset["pipeline"]
    if "dataset" in dataset:
        return _dataset_pipeline(dataset["dataset"])
    if "datasets" in dataset:
        return _dataset_pipeline(dataset["datasets"])
    return None


def _scale(value: Any, where: str) -> tuple[int, int]:
    """One test scale from an mmdet ``img_scale``/``scale``: a pair, an int, or a 1-element list."""
    if isinstance(value, list):
        if len(value) != 1:
            raise ConfigError(
                f"{where}: multi-scale testing ({len(value)} scales {value!r}) is not supported; "
                "keep one scale in the checkpoint's test pipeline"
            )
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"{where}: expected an image scale (w, h), got {value!r}")
    return int(value[0]), int(value[1])


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
        raise ConfigError(f"{name}: expected 1 or 3 numbers, got {value!r}")
    vals = tuple(float(v) for v in value)
    return (vals * 3) if len(vals) == 1 else vals  # type: ignore[return-value]


def _walk(pipeline: list[Any], where: str, in_tta: bool = False) -> dict[str, dict[str, Any]]:
    """Flatten a test pipeline into {transform type: its config}, rejecting test-time augmentation.

    ``in_tta``: inside a ``MultiScaleFlipAug``, whose own ``flip`` decides RandomFlip.
    """
    found: dict[str, dict[str, Any]] = {}
    for step in pipeline:
        if not isinstance(step, Mapping):
            raise ConfigError(f"{where}: pipeline step is not a dict: {step!r}")
        kind = str(step.get("type", "")).rsplit(".", 1)[-1]  # 'mmdet.Resize' -> 'Resize'
        if kind == "MultiScaleFlipAug":
            if step.get("flip", False):
                raise ConfigError(
                    f"{where}: flip test-time augmentation (MultiScaleFlipAug flip=True) is not "
                    "supported; set flip=False"
                )
            if step.get("img_scale") is None:
                raise ConfigError(f"{where}: MultiScaleFlipAug without img_scale is not supported")
            found["MultiScaleFlipAug"] = dict(step)
            found.update(_walk(list(step.get("transforms", [])), where, in_tta=True))
        elif kind in ("TestTimeAug", "MultiScaleAug"):
            raise ConfigError(f"{where}: test-time augmentation ({kind}) is not supported")
        elif kind == "RandomFlip":
            prob = step.get("prob", step.get("flip_ratio"))
            if prob and not in_tta:
                raise ConfigError(f"{where}: a test-time RandomFlip (prob {prob}) is not supported")
        elif kind.endswith("Resize") and kind != "Resize":
            raise ConfigError(f"{where}: test-time {kind} is not supported, only Resize")
        elif kind in ("Resize", "Normalize", "Pad"):
            if kind in found:
                raise ConfigError(f"{where}: more than one {kind} in the test pipeline")
            found[kind] = dict(step)
    return found


def _v2(cfg: Mapping[str, Any]) -> PreprocessConfig:
    default = PreprocessConfig()
    pipeline = _dataset_pipeline(_get(cfg, "data", "test"))
    where = "data.test.pipeline"
    if pipeline is None:
        pipeline, where = cfg.get("test_pipeline"), "test_pipeline"
    if pipeline is None:
        norm = cfg.get("img_norm_cfg")
        if not isinstance(norm, Mapping):
            return default
        return PreprocessConfig(
            mean=_triple(norm.get("mean", default.mean), "img_norm_cfg.mean"),
            std=_triple(norm.get("std", default.std), "img_norm_cfg.std"),
            to_rgb=bool(norm.get("to_rgb", True)),
        )
    steps = _walk(list(pipeline), where)
    resize = steps.get("Resize")
    if resize is None:
        raise ConfigError(f"{where}: the test pipeline has no Resize, which is not supported")
    if resize.get("ratio_range") is not None:
        raise ConfigError(f"{where}: Resize ratio_range at test time is not supported")
    # MultiScaleFlipAug sets results['scale'], which wins over Resize's own img_scale.
    scale_src = steps.get("MultiScaleFlipAug", resize).get("img_scale")
    if scale_src is None:
        raise ConfigError(f"{where}: no img_scale for the test Resize")
    img_scale = _scale(scale_src, where)
    keep_ratio = bool(resize.get("keep_ratio", True))  # mmdet 2.x Resize default
    norm = steps.get("Normalize", {"mean": (0.0,), "std": (1.0,), "to_rgb": False})
    pad = steps.get("Pad")
    return PreprocessConfig(
        img_scale=_ordered(img_scale, keep_ratio),
        keep_ratio=keep_ratio,
        mean=_triple(norm.get("mean"), f"{where} Normalize.mean"),
        std=_triple(norm.get("std"), f"{where} Normalize.std"),
        to_rgb=bool(norm.get("to_rgb", True)),  # mmdet 2.x Normalize default
        size_divisor=_size_divisor(pad, where),
    )


def _size_divisor(pad: Mapping[str, Any] | None, where: str) -> int:
    if pad is None:
        return 1
    if pad.get("size") is not None or pad.get("pad_to_square"):
        raise ConfigError(f"{where}: Pad to a fixed size or square is not supported")
    return int(pad.get("size_divisor") or 1)


def _ordered(img_scale: tuple[int, int], keep_ratio: bool) -> tuple[int, int]:
    return (max(img_scale), min(img_scale)) if keep_ratio else img_scale


def _v3(cfg: Mapping[str, Any]) -> PreprocessConfig:
    where = "test_dataloader.dataset.pipeline"
    pipeline = _dataset_pipeline(_get(cfg, "test_dataloader", "dataset"))
    if pipeline is None:
        pipeline, where = cfg.get("test_pipeline"), "test_pipeline"
    dp = _get(cfg, "model", "data_preprocessor") or {}
    mean, std = dp.get("mean"), dp.get("std")
    if (mean is None) != (std is None):
        raise ConfigError("model.data_preprocessor: mean and std must both be set or both None")
    img_scale, keep_ratio = PreprocessConfig().img_scale, True
    if pipeline is not None:
        steps = _walk(list(pipeline), where)
        for kind in ("Normalize", "Pad"):
            if kind in steps:
                raise ConfigError(
                    f"{where}: a {kind} transform in a 3.x test pipeline is not "
                    "supported; mmdet 3.x normalises in model.data_preprocessor"
                )
        resize = steps.get("Resize")
        if resize is None:
            raise ConfigError(f"{where}: the test pipeline has no Resize, which is not supported")
        if resize.get("scale") is None:
            raise ConfigError(f"{where}: Resize without scale (scale_factor) is not supported")
        img_scale = _scale(resize["scale"], where)
        keep_ratio = bool(resize.get("keep_ratio", False))  # mmcv 2.x Resize default
    return PreprocessConfig(
        img_scale=_ordered(img_scale, keep_ratio),
        keep_ratio=keep_ratio,
        mean=(0.0, 0.0, 0.0) if mean is None else _triple(mean, "data_preprocessor.mean"),
        std=(1.0, 1.0, 1.0) if std is None else _triple(std, "data_preprocessor.std"),
        to_rgb=bool(dp.get("bgr_to_rgb", False) or dp.get("rgb_to_bgr", False)),
        size_divisor=int(dp.get("pad_size_divisor") or 1),
    )


def preprocess_config_from(cfg: Mapping[str, Any]) -> PreprocessConfig:
    """Test-time pre-processing from a parsed mmdetection 2.x or 3.x config.

    2.x: the test pipeline (``data.test.pipeline``, else ``test_pipeline``): ``MultiScaleFlipAug``
    / ``Resize`` / ``Normalize`` / ``Pad``; without a pipeline, ``img_norm_cfg`` and the defaults.
    3.x: ``model.data_preprocessor`` and the ``Resize`` of ``test_dataloader.dataset.pipeline``
    (else ``test_pipeline``).

    Raises:
        ConfigError: for multi-scale or flip test-time augmentation and other unsupported steps.
    """
    model = cfg.get("model")
    is_v3 = (isinstance(model, Mapping) and "data_preprocessor" in model) or (
        "test_dataloader" in cfg
    )
    return _v3(cfg) if is_v3 else _v2(cfg)


def model_config_from(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` section of a parsed config; ConfigError when it is missing."""
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise ConfigError(
            f"config has no 'model' dict (top-level names: {sorted(cfg)[:20]}); "
            "is this an mmdetection config?"
        )
    return model


def num_classes_from(cfg: Mapping[str, Any]) -> int | None:
    """``model.roi_head.bbox_head.num_classes`` (a dict, or a list of dicts for Cascade R-CNN).

    Returns None when the config does not say. Raises ConfigError when cascade stages disagree.
    """
    head = _get(cfg, "model", "roi_head", "bbox_head")
    heads = head if isinstance(head, list) else [head]
    found = {h["num_classes"] for h in heads if isinstance(h, Mapping) and "num_classes" in h}
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"model.roi_head.bbox_head stages disagree on num_classes: {found}")
    value = found.pop()
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"model.roi_head.bbox_head.num_classes is not an int: {value!r}")
    return value
