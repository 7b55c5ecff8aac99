"""The studio's server from outside: Host, Origin, token and path checks (a real server)."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.studio.conftest import DEFAULT_MODEL


def _request(url: str, method: str, path: str, headers: dict[str, str] | None = None,
             body: dict | None = None) -> tuple[int, dict]:  # fmt: skip
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    h = {"Host": f"{u.hostname}:{u.port}", **(headers or {})}
    if data is not None:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(data))
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in h.items():
        conn.putheader(k, v)
    conn.endheaders(data)
    r = conn.getresponse()
    raw = r.read()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, {"bytes": len(raw)}


@pytest.fixture
def running(server, folder: Path, tmp_path: Path):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((folder / "sample_1.jpg").read_bytes())
    os.symlink(outside, folder / "escape.jpg")
    s = server(
        str(folder), "--output_path", str(tmp_path / "out"), "--checkpoint", str(DEFAULT_MODEL)
    )
    s.start()
    s.wait_done()
    return s


def test_files_outside_the_folder_are_refused(running) -> None:
    url = running.base
    ok, _ = _request(url, "GET", "/api/thumb/sample_1.jpg")
    assert ok == 200
    for path in ("/api/thumb/../secret.jpg", "/api/thumb/..%2Fsecret.jpg",
                 "/api/view/%2e%2e/secret.jpg", "/api/thumb/%2Fetc%2Fpasswd",
                 "/api/view//etc/passwd", "/api/thumb/escape.jpg",
                 "/api/image/sub%2F..%2F..%2Fsecret.jpg"):  # fmt: skip
        status, body = _request(url, "GET", path)
        assert status == 403, (path, status, body)
    assert "refused" in "".join(running.log) or "leads outside" in "".join(running.log)


def test_cross_site_and_rebinding_requests_are_refused(running) -> None:
    url = running.base
    u = urlsplit(url)
    assert _request(url, "GET", "/api/state", {"Host": f"evil.example:{u.port}"})[0] == 403
    assert _request(url, "GET", "/api/state", {"Host": f"localhost:{u.port}"})[0] == 200
    edit = {"name": "sample_1.jpg", "op": "confirm", "value": True}
    assert _request(url, "POST", "/api/edit", {"Origin": "http://evil.example"}, edit)[0] == 403
    assert _request(url, "POST", "/api/edit", {"Sec-Fetch-Site": "cross-site"}, edit)[0] == 403
    status, body = _request(
        url, "POST", "/api/edit", {"Origin": f"http://127.0.0.1:{u.port}"}, edit
    )
    assert status == 200, body
    assert body["confirmed"]


def test_another_host_needs_the_token(server, folder: Path, tmp_path: Path) -> None:
    s = server(str(folder), "--output_path", str(tmp_path / "out"), "--host", "0.0.0.0",
               "--checkpoint", str(DEFAULT_MODEL))  # fmt: skip
    url = s.start()
    token = url.split("token=")[1]
    assert len(token) >= 24
    port = urlsplit(url).port
    base = f"http://127.0.0.1:{port}/"
    assert _request(base, "GET", "/api/state")[0] == 403
    assert _request(base, "GET", f"/api/state?token={token}")[0] == 200
    assert _request(base, "GET", "/api/state", {"X-Cendetect-Token": token})[0] == 200
    assert _request(base, "GET", "/api/state", {"X-Cendetect-Token": token + "x"})[0] == 403
