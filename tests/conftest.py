"""Shared pytest fixtures: the data folder and checkpoints rebuilt from the parity fixtures."""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.fixture(scope="session")
def point_rend_ckpt(checkpoint_dir: Path) -> Path:
    """mmdetection 2.x checkpoint of the ``point_rend_r50_fpn`` parity fixture."""
    return save_mmdet2_checkpoint(MMDET2 / "point_rend_r50_fpn", checkpoint_dir / "point_rend.pth")


@pytest.fixture(scope="session")
def cascade_ckpt(checkpoint_dir: Path) -> Path:
    """mmdetection 2.x checkpoint of the ``cascade_mask_rcnn_r50_fpn_dconv`` parity fixture."""
    arch = MMDET2 / "cascade_mask_rcnn_r50_fpn_dconv"
    return save_mmdet2_checkpoint(arch, checkpoint_dir / "cascade2.pth")


#: network-input range of the export-engine tests (inputs up to 320 x 320: 2 slow cores)
EXPORT_SIZES: dict[str, tuple[int, int]] = {
    "min_size": (64, 64),
    "opt_size": (224, 320),
    "max_size": (320, 320),
}


def _onnx_missing() -> str | None:
    try:
        from cendetect.engine.runners.manifest import require_engine_package

        require_engine_package("onnx")
    except ValueError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def export_engines(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Path], dict[str, Path]]:
    """``export_engines(checkpoint) -> {'aoti': .pt2, 'onnx': .onnx}`` at :data:`EXPORT_SIZES`.

    Built on first request, once per checkpoint file for the whole session, from one
    ``torch.export`` (``compile_engines``): the export is about half of each engine's build, and
    the AOTI and ONNX tests of an architecture live in different files. ``'onnx'`` is absent
    when the onnx extra is not installed (the ONNX tests skip themselves then).
    """
    from cendetect.compile.build import compile_engines
    from cendetect.engine.runners import ENGINE_KINDS

    root = tmp_path_factory.mktemp("export_engines")
    built: dict[Path, dict[str, Path]] = {}

    def get(checkpoint: Path) -> dict[str, Path]:
        key = checkpoint.resolve()
        if key not in built:
            kinds = ["aoti"] if _onnx_missing() else ["aoti", "onnx"]
            outputs = {k: root / f"{checkpoint.stem}{ENGINE_KINDS[k]}" for k in kinds}
            compile_engines(checkpoint, outputs, **EXPORT_SIZES)
            built[key] = outputs
        return built[key]

    return get
