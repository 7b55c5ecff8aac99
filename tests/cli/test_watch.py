"""The polled folder (mmdet_predict): complete files only, outputs before inputs move."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import pytest

from cendetect.cli import main
from cendetect.services.watch import FAILED_DIR, FolderWatcher, WatchOptions
from tests.cli.conftest import make_image, write_image


def _wait_for(cond, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_half_written_file_waits_corrupt_is_set_aside(tiny_detector, tmp_path: Path) -> None:
    inp, out, tmp = tmp_path / "in", tmp_path / "out", tmp_path / "tmp"
    inp.mkdir()
    data = cv2.imencode(".png", make_image(1))[1].tobytes()
    partial = inp / "slow.png"
    partial.write_bytes(data[: len(data) // 2])  # a copy still in progress
    write_image(inp / "ok.jpg", make_image(2))
    (inp / "corrupt.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + b"junk" * 10 + b"\0\0\0\0IEND\xaeB`\x82"
    )
    lines: list[str] = []
    opts = WatchOptions(
        inp,
        out,
        prediction_tmp=tmp,
        poll_wait=0.05,
        continuous=True,
        prediction_format="opex",
        stale_polls=1000,
    )
    watcher = FolderWatcher(tiny_detector, opts, report=lines.append)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        assert _wait_for(lambda: (out / "ok.json").exists() and (out / "ok.jpg").exists())
        assert _wait_for(lambda: (out / FAILED_DIR / "corrupt.png").exists())
        time.sleep(0.5)  # many polls: the half-written file is left alone
        assert partial.exists() and not (out / "slow.json").exists()
        with open(partial, "ab") as f:  # the copy completes
            f.write(data[len(data) // 2 :])
        assert _wait_for(lambda: (out / "slow.json").exists() and (out / "slow.png").exists())
        assert not partial.exists() and (out / "slow.png").read_bytes() == data
    finally:
        watcher.stop()
        thread.join(30)
    assert [ln for ln in lines if "corrupt.png" in ln] and len(lines) == 1, lines
    assert list(tmp.iterdir()) == []  # outputs were moved out of the tmp folder
    from opex import ObjectPredictions

    assert ObjectPredictions.from_json_string((out / "slow.json").read_text()).id == "slow"


def test_cli_once_with_roi_csv_and_delete_input(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_image(inp / f"img{i}.png", make_image(i))
    (inp / "stale.jpg").write_bytes(b"\xff\xd8\xff\xe0 never finished")
    rc = main(
        [
            "watch",
            "--checkpoint",
            str(tiny_ckpt),
            "--prediction_in",
            str(inp),
            "--prediction_out",
            str(out),
            "--poll_wait",
            "0.05",
            "--delete_input",
            "--score",
            "0.5",
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 1 and "3 processed" in stdout and "1 failed" in stdout
    assert "stale.jpg: file is truncated" in err
    assert sorted(p.name for p in out.iterdir()) == [
        FAILED_DIR,
        "img0-rois.csv",
        "img1-rois.csv",
        "img2-rois.csv",
    ]
    assert sorted(p.name for p in inp.iterdir()) == []  # deleted, or set aside
    header = (out / "img0-rois.csv").read_text().splitlines()[0]
    assert header.startswith("file,x0,y0,x1,y1,x0n,y0n,x1n,y1n,label,label_str,score,poly_x")


@pytest.mark.parametrize("flag", ["--prediction_in"])
def test_missing_folder_is_a_usage_error(flag: str, tmp_path: Path, capsys) -> None:
    rc = main(["watch", flag, str(tmp_path / "nope"), "--prediction_out", str(tmp_path)])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
