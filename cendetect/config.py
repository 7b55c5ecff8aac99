"""What an mmdetection config (parsed as data by :mod:`cendetect.config_text`) says about the
model and its test-time pre-processing.

Test-time pre-processing follows mmdetection 2.28 / 3.3 semantics:

* a keep-ratio ``Resize`` scale ``(a, b)`` means "long edge at most ``max(a, b)``, short edge at
  most ``min(a, b)``" whatever the order (mmcv ``rescale_size``), so it is stored (long, short);
* without keep-ratio the scale is the exact output ``(width, height)`` (mmcv ``imresize``);
* mean/std apply after the optional BGR->RGB swap, in the swapped channel order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cendetect.errors import ConfigError

__all__ = [
    "RESIZE_RULES",
    "ConfigError",
    "PreprocessConfig",
    "model_config_from",
    "num_classes_from",
    "preprocess_config_from",
]


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
