"""Session-wide engine artifacts of the R50 parity fixture (each built once per test run)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from cendetect.compile.cli import main as compile_main
from cendetect.engine.runners.manifest import MANIFEST_NAME, Manifest


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="session")
def r50_ts(mmdet2_r50_ckpt: Path, engine_dir: Path) -> Path:
    """TorchScript CPU fp32 artifact of the R50 fixture, built through the console entry point."""
    out = engine_dir / "r50.ts"
    assert compile_main(["--checkpoint", str(mmdet2_r50_ckpt), "-o", str(out)]) == 0
    return out


def rewrite_manifest(src: Path, dst: Path, **changes: object) -> Path:
    """Copy artifact ``src`` to ``dst`` with manifest fields replaced (for refusal tests)."""
    import dataclasses

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(f"extra/{MANIFEST_NAME}"):
                manifest = Manifest.from_json(data.decode())
                data = dataclasses.replace(manifest, **changes).to_json().encode()
            zout.writestr(item, data)
    return dst
