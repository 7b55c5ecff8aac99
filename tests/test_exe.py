"""The one-file executable (packaging/build_exe.sh): built, then run on the bundled samples in an
environment without Python or the venv, its output equal byte for byte to ``cendetect run``'s;
started with no arguments, it serves the studio's page.

Slow (the PyInstaller build collects and compresses torch: several minutes on 2 cores), and
part of the test command. Without PyInstaller (installed by ./setup.sh) it skips, except under
``CI=true`` where that is a failure.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def _pyinstaller_or_skip() -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("PyInstaller is missing under CI=true: ./setup.sh installs it")
        pytest.skip("PyInstaller is not installed (./setup.sh installs it)")


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_one_file_executable_matches_cendetect_run(tmp_path: Path) -> None:
    _pyinstaller_or_skip()
    dist = tmp_path / "dist"
    build = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build_exe.sh"), str(dist)],
        env={**os.environ, "CENDETECT_EXE_WORK": str(tmp_path / "work")},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    exe = dist / "cendetect"
    assert exe.is_file() and os.access(exe, os.X_OK)
    # the executable must not need the source tree either: move it away from everything
    alone = tmp_path / "elsewhere" / "cendetect"
    alone.parent.mkdir()
    shutil.move(exe, alone)
    inputs = tmp_path / "samples"
    inputs.mkdir()
    for image in sorted(SAMPLES.glob("*.jpg")):
        shutil.copy(image, inputs / image.name)
    threads = {"OMP_NUM_THREADS": "1", "CENDETECT_NUM_THREADS": "1"}
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), **threads}
    t0 = time.perf_counter()
    version = subprocess.run(
        [str(alone), "--version"], capture_output=True, text=True, env=clean_env, cwd=tmp_path
    )
    startup = time.perf_counter() - t0
    assert version.returncode == 0, version.stderr[-2000:]
    run_args = ["run", "--input_path", str(inputs), "--save-json", "coco"]
    frozen = subprocess.run(
        [str(alone), *run_args, "--output_path", str(tmp_path / "out_exe")],
        capture_output=True,
        text=True,
        env=clean_env,
        cwd=tmp_path,
        timeout=600,
    )
    assert frozen.returncode == 0, frozen.stdout[-2000:] + frozen.stderr[-2000:]
    env = {**os.environ, **threads}
    source = subprocess.run(
        [sys.executable, "-m", "cendetect", *run_args, "--output_path", str(tmp_path / "out_py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert source.returncode == 0, source.stderr[-2000:]
    want, got = _tree(tmp_path / "out_py"), _tree(tmp_path / "out_exe")
    assert got == want and len(want) >= len(list(inputs.iterdir()))
    _, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "out_py", tmp_path / "out_exe", want, shallow=False
    )
    assert not mismatch and not errors, (mismatch, errors)
    # with no arguments (a double click) it opens the studio: BROWSER=true stands in for the
    # browser webbrowser.open would start
    studio = subprocess.Popen(
        [str(alone)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**clean_env, "BROWSER": "true"}, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    try:
        assert studio.stdout is not None
        url = ""
        for line in studio.stdout:
            if "http://" in line:
                url = line.split()[-1]
                break
        assert url.startswith("http://127.0.0.1:"), url
        page = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    page = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "cendetect studio" in page
        with urllib.request.urlopen(url + "static/studio.js", timeout=5) as r:
            assert b"EventSource" in r.read()
    finally:
        os.killpg(studio.pid, signal.SIGTERM)
        studio.wait(30)
    size_mb = alone.stat().st_size / 1e6
    print(f"one-file executable: {size_mb:.0f} MB, `--version` in {startup:.1f} s")
