"""A throw-away ``redis-server`` on a free loopback port, for the Redis worker's tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["redis_server_or_skip", "running_redis"]


def redis_server_or_skip() -> str:
    """The ``redis-server`` binary; a test failure under CI, a skip elsewhere, when missing."""
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "redis-server is not installed (Debian package redis-server; ./setup.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_redis(workdir: Path) -> Iterator[int]:
    """Start redis-server on 127.0.0.1 in ``workdir`` (no persistence); yield its port."""
    import redis

    exe = redis_server_or_skip()
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}") from None
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not answer PING within 10 s")
        client.close()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
