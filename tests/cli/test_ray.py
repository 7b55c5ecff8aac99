"""``cendetect run --ray`` and ``cendetect.ray.detect_dataset`` on a real local Ray cluster.

The module starts one cluster (``ray start --head``, 2 CPUs, its own temp folder) and stops it
at the end; the runs join it by address. One run starts its own cluster (``--ray`` without an
address), as a user's first try would. Without Ray (``cendetect[ray]``, installed by
./setup.sh) the module skips, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import ray  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise ImportError(
            "Ray is missing under CI=true: ./setup.sh installs cendetect[ray]"
        ) from None
    pytest.skip("Ray is not installed (pip install 'cendetect[ray]')", allow_module_level=True)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "samples").glob("*.jpg"))
RAY = Path(sys.executable).with_name("ray")
#: Ray 2.60 clusters authenticate their clients with a token; the module's cluster and every
#: client it starts share this one (Ray's RAY_AUTH_MODE / RAY_AUTH_TOKEN variables)
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": os.urandom(16).hex(),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a local 2-CPU Ray cluster for this module.

    ``ray start --head --block`` runs in its own session and is stopped by signalling that
    session at the end; ``ray stop`` is not used: it stops every Ray process on the machine,
    a user's own cluster or another test run's included."""
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    env = {**os.environ, **RAY_ENV}
    log = open(temp / "ray_start.log", "w+")  # noqa: SIM115 - read back on failure
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={temp}",
         "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert head.poll() is None, f"ray start exited: {log.seek(0) or log.read()[-3000:]}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the Ray head did not come up in 180 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        # SIGINT: the blocking `ray start` stops the cluster it started; then whatever of its
        # session is left (SIGKILL to the session's process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        log.close()


def _tree(tmp: Path, n_copies: int = 1) -> Path:
    """Samples in a folder and a sub-folder, plus one broken file."""
    src = tmp / "in"
    (src / "sub").mkdir(parents=True)
    for k in range(n_copies):
        for i, p in enumerate(SAMPLES):
            dst = src / ("sub" if i % 2 else ".") / f"{p.stem}_{k}{p.suffix}"
            shutil.copy(p, dst)
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return src


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cendetect", "run", *args, "--no-progress"],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _same_trees(a: Path, b: Path) -> None:
    want, got = _files(a), _files(b)
    assert got == want
    _, mismatch, errors = filecmp.cmpfiles(a, b, want, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


def test_ray_output_tree_equals_a_local_run(cluster: str, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    outputs = ("--save-json", "coco", "--save-csv")
    local = _cli("--input_path", str(src), "--output_path", str(tmp_path / "local"), *outputs)
    assert local.returncode == 1, local.stderr[-2000:]  # the broken file
    on_ray = _cli(
        "--input_path", str(src), "--output_path", str(tmp_path / "ray"), *outputs,
        "--ray", cluster, "--actors", "2",
    )  # fmt: skip
    assert on_ray.returncode == 1, on_ray.stdout[-2000:] + on_ray.stderr[-3000:]
    assert f"{len(SAMPLES)} processed, 0 skipped, 1 failed" in on_ray.stdout, on_ray.stdout
    assert on_ray.stderr.count("broken.jpg") == 1, on_ray.stderr[-3000:]  # one line, no retries
    _same_trees(tmp_path / "local", tmp_path / "ray")
    # a re-run skips what is done and leaves every file as it was
    again = _cli(
        "--input_path", str(src), "--output_path", str(tmp_path / "ray"), *outputs,
        "--ray", cluster,
    )  # fmt: skip
    assert f"0 processed, {len(SAMPLES)} skipped (" in again.stdout, again.stdout
    _same_trees(tmp_path / "local", tmp_path / "ray")


def test_ray_deepcreampy_layout_and_own_local_cluster(tmp_path: Path) -> None:
    """``--ray`` with no address starts (and stops) a cluster for the run."""
    src = _tree(tmp_path)
    layout = ("--layout", "deepcreampy")
    local = _cli("--input_path", str(src), "--output_path", str(tmp_path / "local"), *layout)
    on_ray = _cli(
        "--input_path", str(src), "--output_path", str(tmp_path / "ray"), *layout, "--ray"
    )
    assert on_ray.returncode == local.returncode == 1, on_ray.stderr[-3000:]
    assert (
        on_ray.stdout.splitlines()[-1].split(" in ")[0]
        == (local.stdout.splitlines()[-1].split(" in ")[0])
    )
    _same_trees(tmp_path / "local", tmp_path / "ray")


def _actor_pids() -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", r"MapBatches\(_Detect\)"], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


def test_a_killed_actor_loses_nothing(cluster: str, tmp_path: Path) -> None:
    """SIGKILL one model actor mid-run: Ray restarts it and retries its batch; every output is
    written once, complete, and the summary counts every input once."""
    src = _tree(tmp_path, n_copies=8)  # 32 images + the broken one
    n = 8 * len(SAMPLES)
    out = tmp_path / "ray"
    env = {**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cendetect", "run", "--input_path", str(src), "--output_path",
         str(out), "--save-json", "coco", "--ray", cluster, "--actors", "2", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        pids = _actor_pids()
        if pids and any(out.rglob("*.png")):  # the run is under way
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed is not None, "the run ended before an actor could be killed"
    assert proc.returncode == 1, stdout[-2000:] + stderr[-3000:]
    assert f"{n} processed, 0 skipped, 1 failed" in stdout, stdout + stderr[-3000:]
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == n
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # none half-written
    local = _cli("--input_path", str(src), "--output_path", str(tmp_path / "local"),
                 "--save-json", "coco")  # fmt: skip
    assert local.returncode == 1
    _same_trees(tmp_path / "local", out)


_API_SCRIPT = """
import pickle, sys
import cv2, numpy as np, ray
from cendetect import Detector
from cendetect.ray import detect_dataset
from cendetect.zoo import default_checkpoint

det = Detector.from_checkpoint(default_checkpoint())
images = [cv2.imread(p) for p in sys.argv[2:]]
ray.init(address=sys.argv[1], log_to_driver=False)
ds = ray.data.from_items([{"id": i, "image": im} for i, im in enumerate(images)])
rows = sorted(detect_dataset(ds, det, actors=(1, 1)).take_all(), key=lambda r: r["id"])
ray.shutdown()
assert [r["id"] for r in rows] == list(range(len(images)))
for row, image in zip(rows, images, strict=True):
    assert row["error"] == "", row["error"]
    got, want = pickle.loads(row["detections"]), det(image)
    assert len(got) == len(want) > 0
    np.testing.assert_array_equal(got.boxes, want.boxes)  # the same model, the same bits
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.masks, want.masks)
print("ok", len(rows))
"""


def test_detect_dataset_python_api(cluster: str) -> None:
    """``cendetect.ray.detect_dataset`` inside a user's own Ray program (a fresh process: Ray
    reads its authentication settings when it is first imported)."""
    env = {**os.environ, **RAY_ENV, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _API_SCRIPT, cluster, *map(str, SAMPLES)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0 and f"ok {len(SAMPLES)}" in res.stdout, res.stderr[-3000:]


def test_list_file_and_storage_uri_inputs(cluster: str, tmp_path: Path) -> None:
    """A list file (local and on Ray) and a ``file://`` URI read through pyarrow's filesystem
    (the way ``s3://`` and ``gs://`` inputs are read) give a local folder run's outputs."""
    src = _tree(tmp_path)
    (src / "sub" / "broken.jpg").unlink()
    folder = _cli("--input_path", str(src), "--output_path", str(tmp_path / "folder"),
                  "--save-json", "coco")  # fmt: skip
    assert folder.returncode == 0, folder.stderr[-2000:]
    on_uri = _cli("--input_path", src.as_uri(), "--output_path", str(tmp_path / "uri"),
                  "--save-json", "coco", "--ray", cluster)  # fmt: skip
    assert on_uri.returncode == 0, on_uri.stdout[-2000:] + on_uri.stderr[-3000:]
    _same_trees(tmp_path / "folder", tmp_path / "uri")
    no_ray = _cli("--input_path", src.as_uri(), "--output_path", str(tmp_path / "x"))
    assert no_ray.returncode == 2 and "add --ray" in no_ray.stderr
    listing = src / "inputs.txt"
    first = sorted(src.glob("*.jpg"))[0]
    listing.write_text(f"# two entries and a missing one\nsub\n{first.name}\n\nnot_there.jpg\n")
    local = _cli("--input_path", str(listing), "--output_path", str(tmp_path / "list_local"))
    on_ray = _cli("--input_path", str(listing), "--output_path", str(tmp_path / "list_ray"),
                  "--ray", cluster)  # fmt: skip
    for res in (local, on_ray):
        assert res.returncode == 1, res.stderr[-2000:]  # the missing entry
        assert "not_there.jpg" in res.stderr and "line 5" in res.stderr
    want = sorted(
        [f"sub/{p.stem}.png" for p in (src / "sub").glob("*.jpg")] + [f"{first.stem}.png"]
    )
    assert _files(tmp_path / "list_local") == want
    _same_trees(tmp_path / "list_local", tmp_path / "list_ray")


def test_folder_rows_follow_local_planning(tmp_path: Path) -> None:
    """The rows a Ray read task lists for a folder: the same inputs, order, names and output
    paths (the clash rule included) as a local run's planning."""
    from cendetect.flow.images import OutputOptions, plan_jobs
    from cendetect.io.discovery import IMAGE_EXTENSIONS, discover_inputs, output_paths
    from cendetect.ray import _FolderSource

    src = tmp_path / "in"
    names = ["a.jpg", "a.png", "a b/x.jpg", "a/x.jpg", "a/y.webp", "b.JPG", ".hidden.jpg",
             ".h/z.jpg", "c.txt", "a/deep/er/z.png"]  # fmt: skip
    for n in names:
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(b"x")
    out = tmp_path / "out"
    inputs = discover_inputs(src, IMAGE_EXTENSIONS)
    want = [
        (str(j.source), j.name, str(j.image))
        for j in plan_jobs(inputs, output_paths(inputs, src, out), src)
    ]
    rows = list(_FolderSource(src, out, OutputOptions(), False, None).rows())
    assert [(r["source"], r["name"], r["image"]) for r in rows] == want
    assert [r["i"] for r in rows] == list(range(len(want)))
    assert not any(r["skip"] or r["error"] for r in rows)


def test_engine_artifact_is_shipped_to_the_actors(cluster: str, tmp_path: Path) -> None:
    """``--engine FILE``: the artifact's bytes go to the object store once and each actor loads
    its own copy; the outputs equal a local run's with the same engine."""
    src = _tree(tmp_path)
    (src / "sub" / "broken.jpg").unlink()
    engine = tmp_path / "default.ts"
    build = subprocess.run(
        [str(Path(sys.executable).with_name("cendetect-compile")), "--engine", "torchscript",
         "--checkpoint", str(ROOT / "cendetect" / "weights" / "mobilenet_v2_fpn.pth"),
         "--output", str(engine)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    local = _cli("--input_path", str(src), "--output_path", str(tmp_path / "local"),
                 "--engine", str(engine), "--save-json", "coco")  # fmt: skip
    assert local.returncode == 0, local.stderr[-2000:]
    on_ray = _cli("--input_path", str(src), "--output_path", str(tmp_path / "ray"),
                  "--engine", str(engine), "--save-json", "coco", "--ray", cluster,
                  "--actors", "2")  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stdout[-2000:] + on_ray.stderr[-3000:]
    _same_trees(tmp_path / "local", tmp_path / "ray")
