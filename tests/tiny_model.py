"""A test checkpoint with the R50 fixture weights and a config whose test-time cost is tiny.

The weights are the parity fixture's (``tests/weights.py``); only the config text embedded in
``meta.config`` changes: the test pipeline resizes to ``img_scale=(64, 64)``, the RPN keeps 50
proposals before NMS and 20 after, and the RCNN stage at most 2 detections (the 4-conv mask
head on 14x14 RoIs costs ~0.46 GMAC per detection, more than the whole backbone at 64x64).
A batch of 32x32 images then costs ~55 ms per image on one CPU thread (torch profiler, on
this 2-core machine under load), which lets the CLI, watch and Redis tests run a thousand
images in about a minute.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.weights import rebuild_state_dict

__all__ = ["TINY_CLASSES", "save_tiny_checkpoint", "tiny_config_text"]

R50 = Path(__file__).parent / "data" / "mmdet" / "mask_rcnn_r50_fpn"
TINY_CLASSES = ("bar", "mosaic")


def tiny_config_text(img_scale: tuple[int, int] = (64, 64)) -> str:
    """The R50 fixture's config with a small test scale and small proposal/detection counts."""
    text = (R50 / "config.py").read_text()
    replacements = {
        "img_scale=(1333, 800)": f"img_scale={tuple(img_scale)}",
        "nms_pre=1000, max_per_img=1000": "nms_pre=50, max_per_img=20",
        "max_per_img=100,": "max_per_img=2,",
    }
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"{R50}/config.py: {old!r} not found; update tests/tiny_model.py")
        text = text.replace(old, new)
    return text


def save_tiny_checkpoint(out_path: Path) -> Path:
    """Write an mmdetection 2.x checkpoint of the fixture weights with :func:`tiny_config_text`."""
    meta = {"mmdet_version": "2.28.2", "CLASSES": TINY_CLASSES, "config": tiny_config_text()}
    torch.save({"meta": meta, "state_dict": rebuild_state_dict(R50)}, out_path)
    return Path(out_path)
