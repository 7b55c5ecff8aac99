"""Shared pytest fixtures: the data folder and checkpoints rebuilt from the parity fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weights import save_mmdet2_checkpoint, save_mmdet3_checkpoint

DATA = Path(__file__).parent / "data"
MMDET2 = DATA / "mmdet"
MMDET3 = DATA / "mmdet3"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``."""
    return DATA


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for the rebuilt checkpoints."""
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def mmdet2_r50_ckpt(checkpoint_dir: Path) -> Path:
    """mmdetection 2.x checkpoint of the ``mask_rcnn_r50_fpn`` parity fixture."""
    return save_mmdet2_checkpoint(MMDET2 / "mask_rcnn_r50_fpn", checkpoint_dir / "mmdet2_r50.pth")


@pytest.fixture(scope="session")
def mmdet2_r101_ckpt(checkpoint_dir: Path) -> Path:
    """mmdetection 2.x checkpoint of the ``mask_rcnn_r101_fpn`` parity fixture."""
    return save_mmdet2_checkpoint(MMDET2 / "mask_rcnn_r101_fpn", checkpoint_dir / "mmdet2_r101.pth")


@pytest.fixture(scope="session")
def mmdet3_r50_ckpt(checkpoint_dir: Path) -> Path:
    """mmdetection 3.x checkpoint of the ``mask_rcnn_r50_fpn`` 3.x parity fixture."""
    return save_mmdet3_checkpoint(MMDET3 / "mask_rcnn_r50_fpn", checkpoint_dir / "mmdet3_r50.pth")
