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

# ---- running under pytest-xdist (./test.sh: -n 2 --dist loadfile --no-loadscope-reorder) ----
#
# Much of the suite's time is single-threaded Python (torch.export tracing, Inductor's code
# generation, TorchScript, ONNX translation), so two workers on two cores finish sooner than
# one process with two torch threads. Each worker gets its share of the cores as torch threads
# (and OMP_NUM_THREADS, inherited by the CLI subprocesses the tests start). Work is handed out
# by test file (module fixtures are built once); the files in :data:`SLOW_FILES` go first, so
# that the two workers finish close together. (``--dist loadgroup`` would let groups span
# files, but pytest-xdist 3.8 does not apply groups under pytest 9: it renames
# ``item._nodeid``, which pytest 9 no longer reads.)

#: the slowest test files, slowest first (fresh-clone CI run of 2026-11-22, two workers; the
#: rest keep collection order)
SLOW_FILES = (
    "tests/test_exe.py",  # ~4 min: PyInstaller one-file build of torch + two runs
    "tests/cli/test_ray.py",  # ~3.5 min: a local Ray cluster, six runs
    "tests/test_parity_point_rend.py",  # ~5 min: AOTI + ONNX build, mmdet parity, TorchScript
    "tests/test_parity_cascade.py",  # ~4 min
    "tests/compile/test_r101_engines.py",  # ~2.5 min (measured alone)
    "tests/compile/test_aoti_engine.py",
    "tests/cli/test_redis.py",
    "tests/compile/test_default_model_engines.py",
    "tests/test_parity_mmdet.py",
    "tests/importers/test_family_resize.py",  # ~1.5 min: R50 at 800 x 1333, 8 pictures
    "tests/compile/test_precision_default_model.py",
    "tests/models/test_cascade.py",
    "tests/compile/test_torchscript_engine.py",
    "tests/compile/test_onnx_engine.py",
)


#: test files that compare no floats computed by torch, oneDNN, oneMKL or Inductor (file I/O,
#: packaging, configs, services, datasets, COCO evaluation of given results): everything else
#: is marked ``numerics`` and is what ``tests/isa_matrix.py`` runs under other CPUs' code paths
NOT_NUMERIC = (
    "tests/io/",
    "tests/datasets/test_convert.py",
    "tests/datasets/test_eval.py",
    "tests/cli/test_models_command.py",
    "tests/cli/test_redis.py",
    "tests/train/test_curve.py",
    "tests/test_build.py",
    "tests/test_checkpoint.py",
    "tests/test_config.py",
    "tests/test_packaging.py",
    "tests/test_runtime.py",
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The CPU and the code paths forced by environment variables, in every run's log: a
    numeric failure means little without them."""
    import torch

    from tests.isa import active_variables, cpu_model

    return [
        f"cpu: {cpu_model()}, torch capability {torch.backends.cpu.get_cpu_capability()}",
        f"ISA variables: {active_variables()}",
    ]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "numerics: compares floats with a tolerance; run under other CPUs' code paths by "
        "tests/isa_matrix.py",
    )
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the ``numerics`` tests; in an xdist worker, put the slowest files first (every
    worker sorts alike)."""
    root = Path(__file__).parent.parent
    for item in items:
        rel = Path(str(item.path)).relative_to(root).as_posix()
        if not rel.startswith(NOT_NUMERIC):
            item.add_marker(pytest.mark.numerics)
        # a test that skips without CUDA is a CUDA test (tools/gpu_check.sh runs `-m cuda`)
        for mark in item.iter_markers("skipif"):
            reason = str(mark.kwargs.get("reason", ""))
            if "cuda" in reason.lower():
                item.add_marker(pytest.mark.cuda)
                break
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: i for i, name in enumerate(SLOW_FILES)}

        def key(item: pytest.Item) -> int:
            return rank.get(Path(str(item.path)).relative_to(root).as_posix(), len(rank))

        items.sort(key=key)  # stable: the order within a file is kept


#: torch threads of the machine that made the mmdetection fixtures (tests/data/mmdet/README.md)
FIXTURE_THREADS = 2


@pytest.fixture
def fixture_threads() -> Iterator[int]:
    """Run the test with the torch thread count the mmdetection fixtures were made with.

    A convolution's float sums are blocked by thread count, so 1 and 2 threads differ in the
    last bits; on the random-weight fixtures that is enough to flip a near-tie in NMS (seen:
    the 3-stage cascade on ``astronaut_512`` with 1 thread, one box swapped for its neighbour).
    The comparisons with mmdetection's and mmcv's own outputs therefore run with 2 threads,
    also in a one-thread xdist worker.
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
) -> Callable[..., dict[str, Path]]:
    """``export_engines(checkpoint, kinds=('aoti', 'onnx')) -> {kind: path}`` at
    :data:`EXPORT_SIZES`.

    Built on first request, once per checkpoint and kind for the session (of an xdist worker),
    the kinds of one request from one ``torch.export`` (``compile_engines``): the export is about
    half of each engine's build, so a test file that checks both engines of an architecture asks
    for both at once. ``'onnx'`` is left out when the onnx extra is not installed (the ONNX
    tests skip themselves then).
    """
    from cendetect.compile.build import compile_engines
    from cendetect.engine.runners import ENGINE_KINDS

    root = tmp_path_factory.mktemp("export_engines")
    built: dict[tuple[Path, str], Path] = {}

    def get(checkpoint: Path, kinds: tuple[str, ...] = ("aoti", "onnx")) -> dict[str, Path]:
        key = checkpoint.resolve()
        wanted = [k for k in kinds if not (k == "onnx" and _onnx_missing())]
        missing = {
            k: root / f"{checkpoint.stem}_{len(built)}{ENGINE_KINDS[k]}"
            for k in wanted
            if (key, k) not in built
        }
        if missing:
            compile_engines(checkpoint, missing, **EXPORT_SIZES)
            built.update({(key, k): path for k, path in missing.items()})
        return {k: built[(key, k)] for k in wanted}

    return get
