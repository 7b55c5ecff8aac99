"""Shared pytest fixtures: the data folder and checkpoints rebuilt from the parity fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.weights import save_mmdet2_checkpoint, save_mmdet3_checkpoint

DATA = Path(__file__).parent / "data"
MMDET2 = DATA / "mmdet"
MMDET3 = DATA / "mmdet3"

# ---- running under pytest-xdist (./test.sh: -n 2 --dist loadgroup --no-loadscope-reorder) ----
#
# Much of the suite's time is single-threaded Python (torch.export tracing, Inductor's code
# generation, TorchScript, ONNX translation), so two workers on two cores finish sooner than
# one process with two torch threads. Each worker gets its share of the cores as torch threads
# (and OMP_NUM_THREADS, inherited by the CLI subprocesses the tests start).
#
# Work is handed out by group: by default a test file is one group (its module fixtures are
# built once); ``@pytest.mark.worker_group(NAME)`` (closest mark wins) puts tests that share an
# expensive session fixture, such as one architecture's AOTI and ONNX engines from one export
# (:func:`export_engines`), in one worker. Groups listed in :data:`SLOW_GROUPS` are handed out
# first (measured minutes each), so that the two workers finish close together.

#: the slowest groups, slowest first (durations of a two-worker run; the rest keep file order)
SLOW_GROUPS = (
    "point_rend",
    "cascade",
    "r50_exports",
    "tests/cli/test_redis.py",
    "tests/compile/test_precision_default_model.py",
    "tests/test_parity_mmdet.py",
    "tests/compile/test_torchscript_engine.py",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "worker_group(name): run in the same pytest-xdist worker as the other tests of the group",
    )
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def _group(item: pytest.Item) -> str:
    mark = item.get_closest_marker("worker_group")
    if mark is not None:
        return str(mark.args[0])
    return Path(str(item.path)).relative_to(Path(__file__).parent.parent).as_posix()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into scopes
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its ``xdist_group`` (see above) and put the slowest groups first."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker collects, in the same order
        rank = {name: i for i, name in enumerate(SLOW_GROUPS)}
        items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable sort


#: torch threads of the machine that made the mmdetection fixtures (tests/data/mmdet/README.md)
FIXTURE_THREADS = 2


@pytest.fixture
def fixture_threads() -> Iterator[int]:
    """Run the test with the torch thread count the mmdetection fixtures were made with.

    A convolution's float sums are blocked by thread count, so 1 and 2 threads differ in the
    last bits; on the random-weight fixtures that is enough to flip a near-tie in NMS (seen:
    the 3-stage cascade on ``astronaut_512`` with 1 thread, one box swapped for its neighbour).
    The comparisons with mmdetection's own outputs therefore run with 2 threads, also in a
    one-thread xdist worker.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(FIXTURE_THREADS)
    try:
        yield FIXTURE_THREADS
    finally:
        torch.set_num_threads(before)


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
