"""Reading keys of an mmdetection model config: a missing key or an unsupported value is a
:class:`~cendetect.config.ConfigError` naming it (shared by :mod:`cendetect.models.build` and
:mod:`cendetect.models.build_heads`)."""

from __future__ import annotations

from typing import Any

from cendetect.config import ConfigError


def get_key(cfg: dict[str, Any], key: str, where: str) -> Any:
    """``cfg[key]``; a missing key is an error naming ``where.key``."""
    if key not in cfg:
        raise ConfigError(f"model config: {where}.{key} is missing")
    return cfg[key]


def expect_value(
    cfg: dict[str, Any], key: str, allowed: tuple[Any, ...], default: Any, where: str
) -> Any:
    """``cfg.get(key, default)`` if it is one of ``allowed``, else an error naming it."""
    value = cfg.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"model config: {where}.{key}={value!r} is not supported (supported: {allowed})"
        )
    return value


def box_coder(
    cfg: dict[str, Any], where: str, default_stds: tuple[float, ...]
) -> tuple[tuple, tuple]:
    """``(target_means, target_stds)`` of a head's ``bbox_coder`` (only mmdetection's
    ``DeltaXYWHBBoxCoder`` with its default clamping is supported)."""
    coder = cfg.get("bbox_coder", {"type": "DeltaXYWHBBoxCoder"})
    expect_value(coder, "type", ("DeltaXYWHBBoxCoder",), None, f"{where}.bbox_coder")
    expect_value(coder, "add_ctr_clamp", (False,), False, f"{where}.bbox_coder")
    expect_value(coder, "clip_border", (True,), True, f"{where}.bbox_coder")
    means = tuple(float(m) for m in coder.get("target_means", (0.0, 0.0, 0.0, 0.0)))
    stds = tuple(float(s) for s in coder.get("target_stds", default_stds))
    return means, stds
