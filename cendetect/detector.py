"""``Detector``: the one obvious way in from Python.

A stateful facade over a stateless model: it owns the model, its class names and its
pre-processing settings, and turns images (BGR uint8 arrays or paths) into
:class:`~cendetect.engine.postprocess.Detections` in original-image pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from cendetect.checkpoint import Checkpoint, check_state_dict_keys
from cendetect.config import (
    PreprocessConfig,
    model_config_from,
    preprocess_config_from,
)
from cendetect.engine.postprocess import PASTE_MODES, Detections, to_detections
from cendetect.engine.preprocess import preprocess
from cendetect.engine.runners import EngineRunner, load_engine
from cendetect.models.build import build_model
from cendetect.zoo import CENDETECT_CLASSES, MODEL_ZOO, ZOO_IMG_NORM, zoo_model_config

#: values of ``Detector.refine`` (and of the commands' ``--refine``)
REFINE_MODES = ("auto", "off")
#: the classes ``refine="auto"`` refines, each by its own rule (:mod:`cendetect.engine.refine`)
REFINED_CLASSES = frozenset({"bar", "mosaic"})

ImageLike = np.ndarray | str | os.PathLike


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to BGR uint8 ``[H, W, 3]``; ``ValueError`` naming the file if not."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    data = np.fromfile(p, dtype=np.uint8)  # np.fromfile + imdecode: unicode paths work everywhere
    if data.size == 0:
        raise ValueError(f"{p}: file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{p}: not a readable image (OpenCV could not decode it)")
    return img


def as_bgr(image: ImageLike) -> np.ndarray:
    """A path or an array as BGR uint8 ``[H, W, 3]`` (gray and BGRA arrays are converted)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a path or a numpy BGR image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def _num_classes_in(state_dict: dict[str, torch.Tensor]) -> int | None:
    # a single box head (Mask R-CNN, PointRend), else the first stage of a cascade
    for key in ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.0.fc_cls.weight"):
        w = state_dict.get(key)
        if w is not None:
            return int(w.shape[0]) - 1
    return None


class Detector:
    """Instance segmentation of bars and mosaics (or whatever the checkpoint was trained on).

    Args:
        model: a module following the raw-detection contract (``MaskRCNN``), or a loaded engine
            artifact (:class:`~cendetect.engine.runners.EngineRunner`, see :meth:`from_engine`).
        class_names: class names in label order.
        preprocess_cfg: resize/normalise/pad settings of the model.
        device: where the model runs.
        fp16: run convolutions in float16 (CUDA only); boxes, NMS and thresholds stay float32.
        mask_threshold: binarisation threshold of the pasted mask probabilities.
        refine: ``"auto"`` (default): refinement of the pasted masks of the classes named
            ``bar`` (exact flat-colour edges) and ``mosaic`` (the cell grid, per cell and per
            pixel) (:mod:`cendetect.engine.refine`; a model without those classes is left as
            it is); ``"off"``: the model's masks as pasted. Settable later
            (``detector.refine = "off"``).
    """

    def __init__(
        self,
        model: nn.Module | EngineRunner,
        class_names: Sequence[str],
        preprocess_cfg: PreprocessConfig,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        mask_threshold: float = 0.5,
        refine: str = "auto",
        paste: str = "mmdet",
    ) -> None:
        if paste not in PASTE_MODES:
            raise ValueError(f"paste={paste!r}: use one of {', '.join(PASTE_MODES)}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but torch sees no CUDA device")
        if fp16 and self.device.type != "cuda":
            raise ValueError(
                "fp16=True needs device='cuda' (CPU half-precision convolutions are slow)"
            )
        if isinstance(model, EngineRunner):
            self.model: nn.Module | EngineRunner = model
            self.engine = model.manifest.engine
        else:
            self.model = model.eval().to(self.device)
            self.engine = "eager"
        self.class_names = tuple(class_names)
        self.preprocess_cfg = preprocess_cfg
        self.fp16 = fp16
        self.mask_threshold = mask_threshold
        self.refine = refine
        #: how masks are pasted: "mmdet" (mmdetection's and detectron2's pixel model) or
        #: "legacy" (maskrcnn-benchmark's Masker; set for its checkpoints)
        self.paste = paste
        #: where the weights came from: "mmdet" or an imported family (from_checkpoint)
        self.checkpoint_format = "mmdet"

    @property
    def refine(self) -> str:
        """``"auto"`` or ``"off"``: see the class docstring."""
        return self._refine

    @refine.setter
    def refine(self, value: str) -> None:
        if value not in REFINE_MODES:
            raise ValueError(f"refine={value!r}: use one of {', '.join(REFINE_MODES)}")
        self._refine = value

    def refined_classes(self) -> frozenset[str]:
        """The class names whose masks :meth:`predict` refines: those of :data:`REFINED_CLASSES`
        the model has (empty with ``refine="off"``)."""
        if self._refine == "off":
            return frozenset()
        return frozenset(n for n in self.class_names if n in REFINED_CLASSES)

    @property
    def concurrent(self) -> bool:
        """Whether :meth:`predict` calls from several threads run side by side (eager,
        TorchScript, ONNX) or one at a time (AOTInductor packages)."""
        return self.model.concurrent if isinstance(self.model, EngineRunner) else True

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        model: str | None = None,
        classes: Sequence[str] | None = None,
        checkpoint_format: str = "auto",
        stride_in_1x1: bool | None = None,
        refine: str = "auto",
        fallback_classes: Sequence[str] | None = None,
        config: str | os.PathLike | None = None,
    ) -> Detector:
        """Load an mmdetection 2.x/3.x checkpoint, a bare state dict, or a detectron2 /
        maskrcnn-benchmark Mask R-CNN checkpoint (``.pth`` or detectron2 ``.pkl``).

        The architecture comes from the config embedded in the checkpoint (it is what the
        weights were trained with, so it wins); ``model`` (a zoo name such as
        ``'mask_rcnn_r50_fpn'``) is used only for a file that embeds no config. Class names come
        from the checkpoint, else ``classes``, else CenDetect's ``('bar', 'mosaic')`` for two
        classes.

        ``checkpoint_format`` (``'auto'``, ``'mmdet'``, ``'detectron2'``,
        ``'maskrcnn_benchmark'``) and ``stride_in_1x1`` (their ``STRIDE_IN_1X1``; None: the
        model zoo's True) apply to imports, see :mod:`cendetect.importers`; the family read is
        left in :attr:`checkpoint_format`. ``refine``: see the class docstring.
        ``fallback_classes`` (the commands' ``MMDET_CLASSES``) name the classes only of a file
        that holds no names itself; their count must be the model's.

        ``config``: the training config, read as data and never executed: an mmdetection
        ``.py`` config (replaces the one embedded in the checkpoint; ``_base_`` files beside it
        are merged in), or the ``config.yaml`` / ``config.yml`` of a detectron2 or
        maskrcnn-benchmark run (:mod:`cendetect.importers.yaml_config`: sizes, thresholds,
        normalisation, anchors, poolers; a key that would change the model in a way cendetect
        does not reproduce is refused by name).
        """
        from cendetect.importers import ImportedCheckpoint, load_any

        loaded = load_any(path, checkpoint_format, stride_in_1x1)
        if config is not None:
            loaded = with_config(loaded, config)
        if isinstance(loaded, ImportedCheckpoint):
            names = tuple(classes) if classes else loaded.classes
            if not names and fallback_classes:
                names = _checked_fallback(fallback_classes, loaded.num_classes, loaded.path)
            names = names or tuple(f"class_{i}" for i in range(loaded.num_classes))
            net = build_model(loaded.model_config, num_classes=len(names))
            check_state_dict_keys(net, loaded.state_dict, loaded.path)
            net.load_state_dict(loaded.state_dict, strict=True)
            paste = "legacy" if loaded.family == "maskrcnn_benchmark" else "mmdet"
            det = cls(
                net, names, loaded.preprocess, device=device, fp16=fp16, refine=refine,
                paste=paste,
            )  # fmt: skip
            det.checkpoint_format = loaded.family
            return det
        ckpt = loaded
        model_cfg, pre_cfg, mask_thr = _architecture(ckpt, model, classes)
        names = _class_names(ckpt, classes, fallback_classes)
        net = build_model(model_cfg, num_classes=len(names))
        check_state_dict_keys(net, ckpt.state_dict, ckpt.path)
        net.load_state_dict(ckpt.state_dict, strict=True)
        return cls(
            net, names, pre_cfg, device=device, fp16=fp16, mask_threshold=mask_thr, refine=refine
        )

    @classmethod
    def from_engine(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        checkpoint: str | os.PathLike | None = None,
        refine: str = "auto",
    ) -> Detector:
        """Load an artifact written by ``cendetect-compile`` (TorchScript ``.ts``, AOTI ``.pt2``,
        ONNX ``.onnx`` run by onnxruntime, TensorRT ``.ep``).

        Class names, pre-processing and mask threshold come from the artifact's manifest; the
        pre- and post-processing are the same code as for :meth:`from_checkpoint`.

        Args:
            path: the artifact.
            device: where to run; default the device it was built for.
            checkpoint: check the artifact against this checkpoint (default: the recorded
                checkpoint path, if that file still exists).
            refine: see the class docstring.

        Raises:
            EngineError: the artifact is unknown, from another torch version, built for CUDA
                on a machine without it, or its checkpoint changed; the message says how to
                rebuild it. The engine's optional package missing (onnxruntime,
                torch_tensorrt): the message names the pip extra.
        """
        runner = load_engine(path, device=device, checkpoint=checkpoint)
        m = runner.manifest
        return cls(
            runner,
            m.classes,
            m.preprocess,
            device=runner.device,
            mask_threshold=m.mask_threshold,
            refine=refine,
            paste=m.paste,
        )

    def __call__(
        self, images: ImageLike | Sequence[ImageLike] | Iterator[ImageLike]
    ) -> Detections | list[Detections] | Iterator[Detections]:
        """Detect in one image (returns ``Detections``), a list of images (returns a list), or
        an iterator of frames (returns an iterator, in order, with bounded look-ahead)."""
        if isinstance(images, (np.ndarray, str, os.PathLike)):
            return self.predict([images])[0]
        if isinstance(images, Iterator):
            return self.stream(images)
        return self.predict(list(images))

    def stream(
        self, frames: Iterable[ImageLike], batch_size: int = 1, lookahead: int | None = None
    ) -> Iterator[Detections]:
        """Results for ``frames`` in order; at most ``lookahead`` frames are held at once
        (video and other long inputs stay in bounded memory). See
        :func:`cendetect.flow.stream.detect_stream`."""
        from cendetect.flow.stream import detect_stream

        return detect_stream(self, frames, batch_size=batch_size, lookahead=lookahead)

    @torch.inference_mode()
    def predict(self, images: Sequence[ImageLike]) -> list[Detections]:
        """Run one batch: ``images`` are BGR uint8 arrays or paths."""
        if len(images) == 0:
            return []
        bgr = [as_bgr(im) for im in images]
        batch = preprocess(bgr, self.preprocess_cfg).to(self.device)
        if isinstance(self.model, EngineRunner):  # precision is baked into the artifact
            raw = self.model(batch)
        elif self.fp16:
            with torch.autocast("cuda", dtype=torch.float16):
                raw = self.model(batch.images, batch.image_sizes, batch.scale_factors)
        else:
            raw = self.model(batch.images, batch.image_sizes, batch.scale_factors)
        return to_detections(
            raw,
            batch,
            self.class_names,
            self.mask_threshold,
            bgr,
            self.refined_classes(),
            self.paste,
        )


def with_config(loaded: Any, config: str | os.PathLike) -> Any:
    """``loaded`` (a :class:`~cendetect.checkpoint.Checkpoint` or an imported checkpoint) with
    the config file ``config`` applied (see :meth:`Detector.from_checkpoint`).

    Raises:
        ConfigError: the file's kind does not fit the checkpoint's family, or the file is
            refused (see :func:`cendetect.config_text.read_config_file`,
            :func:`cendetect.importers.yaml_config.settings_from_yaml`).
    """
    import dataclasses

    from cendetect.config_text import read_config_file
    from cendetect.errors import ConfigError
    from cendetect.importers import ImportedCheckpoint
    from cendetect.importers.yaml_config import (
        YAML_SUFFIXES,
        apply_settings,
        read_yaml_config,
        settings_from_yaml,
    )

    cfg_path = Path(config)
    suffix = cfg_path.suffix.lower()
    if not cfg_path.is_file():
        raise ConfigError(f"config {cfg_path}: no such file")
    if suffix in YAML_SUFFIXES:
        if not isinstance(loaded, ImportedCheckpoint):
            raise ConfigError(
                f"config {cfg_path} is a detectron2 / maskrcnn-benchmark YAML config but "
                f"{loaded.path} is an mmdetection checkpoint; give its .py config"
            )
        settings = settings_from_yaml(read_yaml_config(cfg_path), loaded.family, str(cfg_path))
        return apply_settings(loaded, settings)
    if suffix == ".py":
        if isinstance(loaded, ImportedCheckpoint):
            raise ConfigError(
                f"config {cfg_path} is an mmdetection config but {loaded.path} is a "
                f"{loaded.family} checkpoint; give its config.yaml"
            )
        return dataclasses.replace(loaded, config=read_config_file(cfg_path))
    raise ConfigError(
        f"config {cfg_path}: unknown kind of config file (.py for mmdetection, .yaml / .yml "
        "for detectron2 and maskrcnn-benchmark)"
    )


def _architecture(
    ckpt: Checkpoint, model: str | None, classes: Sequence[str] | None
) -> tuple[dict[str, Any], PreprocessConfig, float]:
    if ckpt.config is not None:
        cfg = ckpt.config
        model_cfg = model_config_from(cfg)
        test_cfg = model_cfg.get("test_cfg") or cfg.get("test_cfg") or {}
        if "test_cfg" not in model_cfg and test_cfg:
            model_cfg = {**model_cfg, "test_cfg": test_cfg}
        pre = preprocess_config_from(cfg)
    else:
        if model is None:
            raise ValueError(
                f"{ckpt.path}: the checkpoint embeds no config, so the architecture is unknown; "
                f"pass model=NAME (one of: {', '.join(sorted(MODEL_ZOO))})"
            )
        n = len(classes) if classes else _num_classes_in(ckpt.state_dict)
        if n is None:
            raise ValueError(f"{ckpt.path}: cannot tell the number of classes; pass classes=[...]")
        model_cfg = zoo_model_config(model, n)
        # the normalisation the zoo entry's weights were trained with (caffe-style: BGR, unit std)
        pre = PreprocessConfig(**ZOO_IMG_NORM.get(model, {}))
    mask_thr = float(model_cfg.get("test_cfg", {}).get("rcnn", {}).get("mask_thr_binary", 0.5))
    return model_cfg, pre, mask_thr


def _checked_fallback(names: Sequence[str], n: int | None, path: object) -> tuple[str, ...]:
    if n is not None and len(names) != n:
        raise ValueError(
            f"{path}: MMDET_CLASSES names {len(names)} classes ({', '.join(names)}) but the "
            f"model has {n}"
        )
    return tuple(names)


def _class_names(
    ckpt: Checkpoint, classes: Sequence[str] | None, fallback: Sequence[str] | None = None
) -> tuple[str, ...]:
    if classes:
        return tuple(classes)
    if ckpt.classes:
        return tuple(ckpt.classes)
    n = _num_classes_in(ckpt.state_dict)
    if fallback:
        return _checked_fallback(fallback, n, ckpt.path)
    if n == len(CENDETECT_CLASSES):
        return CENDETECT_CLASSES
    if n is None:
        raise ValueError(f"{ckpt.path}: cannot tell the class names; pass classes=[...]")
    return tuple(f"class_{i}" for i in range(n))
