"""Fixtures of the CLI/service tests: the tiny checkpoint, its detector, small images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.tiny_model import save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(checkpoint_dir: Path) -> Path:
    """mmdet 2.x checkpoint: R50 fixture weights, 64x64 test scale (see tests/tiny_model.py)."""
    return save_tiny_checkpoint(checkpoint_dir / "tiny_r50.pth")


@pytest.fixture
def nameless(tiny_ckpt: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint without its class names (meta.CLASSES removed)."""
    import torch

    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    del ckpt["meta"]["CLASSES"]
    path = tmp_path / "nameless.pth"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def tiny_detector(tiny_ckpt: Path):
    from cendetect import Detector

    return Detector.from_checkpoint(tiny_ckpt, device="cpu")


def make_image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A BGR uint8 image of smooth noise (the fixture weights find regions in it)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 8, 1), max(w // 8, 1), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def write_image(path: Path, image: np.ndarray) -> Path:
    """Encode ``image`` by the path's extension (unicode paths work)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix.lower(), image)
    assert ok, path
    buf.tofile(str(path))
    return path
