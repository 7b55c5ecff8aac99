"""Fixtures of the dataset/eval tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_model import save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(checkpoint_dir: Path) -> Path:
    """mmdet 2.x checkpoint: R50 fixture weights, 64x64 test scale (see tests/tiny_model.py)."""
    return save_tiny_checkpoint(checkpoint_dir / "tiny_r50_datasets.pth")
