"""Fixtures of the studio tests: pictures with bars and mosaics, the default model, a server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "cendetect" / "weights" / "mobilenet_v2_fpn.pth"


def textured(seed: int, h: int, w: int) -> np.ndarray:
    """BGR uint8 smooth colour noise (a stand-in for a photo: no flat areas, no grid)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 12, 2), max(w // 12, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def pixelate_box(image: np.ndarray, box: tuple[int, int, int, int], cell: int) -> np.ndarray:
    """``image`` with ``box`` (x0, y0, x1, y1, multiples of ``cell``) replaced by cell means."""
    x0, y0, x1, y1 = box
    out = image.copy()
    for y in range(y0, y1, cell):
        for x in range(x0, x1, cell):
            out[y : y + cell, x : x + cell] = (
                image[y : y + cell, x : x + cell].reshape(-1, 3).mean(0)
            )
    return out


def censored(seed: int, h: int = 360, w: int = 480) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A picture with one rotated black bar and one 16-px mosaic; returns (image, bar truth,
    mosaic truth) with the truths as bool [H, W]."""
    image = textured(seed, h, w)
    bar = np.zeros((h, w), np.uint8)
    pts = cv2.boxPoints(((w * 0.3, h * 0.35), (w * 0.3, h * 0.08), 20)).astype(np.int32)
    cv2.fillPoly(bar, [pts], 1)
    image[bar > 0] = (0, 0, 0)
    mbox = (
        w // 2 // 16 * 16,
        h // 2 // 16 * 16,
        (w // 2 + 160) // 16 * 16,
        (h // 2 + 112) // 16 * 16,
    )
    image = pixelate_box(image, mbox, 16)
    mosaic = np.zeros((h, w), bool)
    mosaic[mbox[1] : mbox[3], mbox[0] : mbox[2]] = True
    return image, bar > 0, mosaic


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix.lower(), image)
    assert ok
    buf.tofile(str(path))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two bundled samples, a generated picture in a non-ASCII sub-folder, and a broken file."""
    root = tmp_path / "pictures"
    root.mkdir()
    for name in ("sample_1.jpg", "sample_2.jpg"):
        (root / name).write_bytes((ROOT / "samples" / name).read_bytes())
    write(root / "ünïcødé" / "censored ß.png", censored(1)[0])
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def default_detector():
    from cendetect import Detector

    return Detector.from_checkpoint(DEFAULT_MODEL, device="cpu")


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Server:
    """``cendetect studio`` in a child process (its own session, so kill -9 takes all of it)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 120.0) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cendetect", "studio", "--no-browser", "--port", "0",
             *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
            start_new_session=True, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        lines = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the studio exited: {''.join(lines)}")
            lines.append(line)
            m = re.search(r"(http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise AssertionError("the studio printed no URL")
        # keep draining its output so that it never blocks on a full pipe
        import threading

        self.log = lines
        threading.Thread(
            target=lambda: [lines.append(x) for x in self.proc.stdout], daemon=True
        ).start()  # type: ignore[union-attr]
        wait_for(self._up, 60, "the studio to answer")
        return self.url

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers
        except OSError:
            return False

    @property
    def base(self) -> str:
        return self.url.split("?")[0]

    def state(self) -> dict:
        import json

        with urllib.request.urlopen(self.base + "api/state", timeout=10) as r:
            return json.load(r)

    def wait_done(self, timeout: float = 180.0) -> dict:
        def done() -> bool:
            p = self.state()["progress"]
            return p["total"] > 0 and p["done"] == p["total"]

        wait_for(done, timeout, "detection to finish")
        return self.state()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Server:
        s = Server([*args], env)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
