"""The wheel maps engine/ and compile/ into the cendetect package and carries the extension.

Builds a real wheel (scikit-build-core, no isolation: the build tools are in the venv), so it is
marked slow (~30 s on 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_torch_is_pinned_exactly() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = meta["project"]["dependencies"]
    torch_deps = [d for d in deps if d.replace(" ", "").startswith("torch")]
    assert torch_deps == ["torch==2.13.0"], torch_deps
    table = meta["tool"]["scikit-build"]["wheel"]["packages"]
    assert table == {
        "cendetect": "cendetect",
        "cendetect/engine": "engine",
        "cendetect/compile": "compile",
    }


@pytest.mark.slow
def test_wheel_layout(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
        str(ROOT),
    ]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("cendetect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cendetect/engine/__init__.py" in names
    assert "cendetect/engine/preprocess.py" in names
    assert "cendetect/compile/__init__.py" in names
    assert "cendetect/models/mask_rcnn.py" in names
    assert any(n.startswith("cendetect/_C.") and n.endswith(".so") for n in names), names
    # the default model ships inside the package (cendetect.zoo.DEFAULT_CHECKPOINT)
    assert "cendetect/weights/mobilenet_v2_fpn.pth" in names
    # the studio's page ships inside the package (it loads nothing from elsewhere)
    for name in ("index.html", "studio.js", "studio.css"):
        assert f"cendetect/studio/static/{name}" in names
    # the source folders must not leak out as top-level packages
    assert not any(n.startswith(("engine/", "compile/", "csrc/", "tests/")) for n in names)
