"""The studio's state without a browser: detection, edits, sidecars, exports (cendetect/studio)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from cendetect.cli import main
from cendetect.studio.export import ExportOptions, export
from cendetect.studio.session import PathRefused, Studio, StudioError
from cendetect.studio.state import sidecar_path
from tests.studio.conftest import DEFAULT_MODEL, censored, wait_for, write

CENSORED = "ünïcødé/censored ß.png"


@pytest.fixture
def studios():
    """Makes studios and closes each at teardown: a worker left running would keep detecting
    (and changing the process's thread counts) during the tests that follow in this process."""
    made: list[Studio] = []

    def make(*args, **kwargs) -> Studio:  # noqa: ANN002, ANN003
        made.append(Studio(*args, **kwargs))
        return made[-1]

    yield make
    for studio in made:
        studio.close()


def _opened(studios, folder: Path, out: Path, detector) -> Studio:  # noqa: ANN001
    studio = studios(lambda: detector)
    studio.open(folder, out)
    wait_for(lambda: studio.done == len(studio.names), 180, "detection")
    return studio


@pytest.fixture
def opened(studios, folder: Path, tmp_path: Path, default_detector) -> Studio:  # noqa: ANN001
    return _opened(studios, folder, tmp_path / "out", default_detector)


def test_open_detects_every_image_and_reports_the_broken_one(opened: Studio) -> None:
    assert opened.names == ["broken.jpg", "sample_1.jpg", "sample_2.jpg", CENSORED]
    broken = opened.records["broken.jpg"]
    assert (
        broken.status == "broken"
        and "truncated" in broken.reason
        or "not a readable" in broken.reason
    )
    for name in opened.names[1:]:
        rec = opened.records[name]
        assert rec.status == "done", (name, rec.reason)
        assert rec.instances, name  # every picture has bars or mosaics
        assert sidecar_path(opened.output, name).is_file()
    assert not sidecar_path(opened.output, "broken.jpg").exists()


def test_output_inside_the_folder_is_refused(studios, folder: Path, default_detector) -> None:  # noqa: ANN001
    with pytest.raises(StudioError, match="inside the opened folder"):
        studios(lambda: default_detector).open(folder, folder / "out")


def test_paths_outside_the_folder_are_refused(opened: Studio, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    write(outside, np.zeros((8, 8, 3), np.uint8))
    os.symlink(outside, opened.root / "link.png")
    for bad in ("../secret.png", "sub/../../secret.png", str(outside), "/etc/passwd",
                "a\\..\\b", "", "link.png"):  # fmt: skip
        with pytest.raises(PathRefused):
            opened.input_path(bad)
    assert opened.input_path(CENSORED) == (opened.root / CENSORED).resolve()


def test_unedited_export_is_byte_for_byte_cendetect_run(opened: Studio, tmp_path: Path) -> None:
    res = export(opened, ExportOptions(green=True, masks=True))
    assert res["images"] == 3 and not res["failed"]
    ref = tmp_path / "ref"
    rc = main(["run", "--no-progress", "--input_path", str(opened.root), "--output_path", str(ref),
               "--checkpoint", str(DEFAULT_MODEL), "--output_mask_image"])  # fmt: skip
    assert rc == 1  # the broken file
    ours = sorted(p.relative_to(opened.output) for p in opened.output.rglob("*.png")
                  if STATE not in p.parts)  # fmt: skip
    theirs = sorted(p.relative_to(ref) for p in ref.rglob("*.png"))
    assert ours == theirs and len(ours) == 6
    for rel in ours:
        assert (opened.output / rel).read_bytes() == (ref / rel).read_bytes(), rel


STATE = ".cendetect-studio"


def test_edits_undo_redo_and_sidecar_restore(
    opened: Studio,
    studios,
    tmp_path: Path,
    default_detector,  # noqa: ANN001
) -> None:
    rec = opened.records["sample_1.jpg"]
    first = rec.instances[0]
    info = opened.edit("sample_1.jpg", "toggle", {"id": first.id})
    assert not next(i for i in info["instances"] if i["id"] == first.id)["kept"]
    opened.edit("sample_1.jpg", "label", {"id": first.id, "label": 1})
    # a brush stroke of radius 5 from (10, 10) to (30, 10): a 20 x 11 capsule
    stroke = {"points": [[10.5, 10.5], [30.5, 10.5]], "radius": 5, "label": 0}
    info = opened.edit("sample_1.jpg", "brush", stroke)
    added = rec.instances[-1]
    assert added.source == "user" and added.label == 0 and added.score == 1.0
    full = np.zeros(rec.size, bool)
    x0, y0, x1, y1 = added.window
    full[y0:y1, x0:x1] = added.crop
    assert full[10, 10:31].all() and full[5:16, 20].all()  # the line and its full width
    assert not full[17, 20] and not full[10, 37]  # nothing beyond the radius
    opened.edit("sample_1.jpg", "brush", {"id": added.id, "points": [[20.5, 10.5]], "radius": 2,
                                          "erase": True})  # fmt: skip
    erased = rec.find(added.id)
    full[:] = False
    x0, y0, x1, y1 = erased.window
    full[y0:y1, x0:x1] = erased.crop
    assert not full[10, 19:22].any() and full[10, 12]
    opened.edit("sample_1.jpg", "confirm", {"value": True})
    before = [(i.id, i.kept, i.label, i.window, i.crop.tobytes()) for i in rec.instances]
    opened.edit("sample_1.jpg", "undo", {})
    assert not rec.confirmed
    opened.edit("sample_1.jpg", "undo", {})
    assert rec.find(added.id).crop.tobytes() != erased.crop.tobytes()  # the erase is undone
    opened.edit("sample_1.jpg", "redo", {})
    opened.edit("sample_1.jpg", "redo", {})
    assert rec.confirmed

    # a new studio on the same folder reads the sidecars: same state, no model run
    class NoModel:
        class_names = default_detector.class_names
        device = default_detector.device

        def predict(self, images):  # noqa: ANN001, ANN202
            raise AssertionError("the model ran on an image with a saved state")

    again = _opened(studios, opened.root, opened.output, NoModel())
    rec2 = again.records["sample_1.jpg"]
    assert rec2.confirmed and rec2.edited
    assert [(i.id, i.kept, i.label, i.window, i.crop.tobytes()) for i in rec2.instances] == before


def test_changed_input_is_detected_again(opened: Studio, studios, default_detector) -> None:  # noqa: ANN001
    path = opened.root / "sample_2.jpg"
    image = censored(2, 200, 300)[0]
    write(path.with_suffix(".png"), image)
    os.replace(path.with_suffix(".png"), path)  # same name, other content
    again = _opened(studios, opened.root, opened.output, default_detector)
    assert again.records["sample_2.jpg"].size == (200, 300)


def test_threshold_and_edits_shape_the_export(opened: Studio) -> None:
    rec = opened.records[CENSORED]
    for inst in list(rec.instances):
        if inst.kept:
            opened.edit(CENSORED, "toggle", {"id": inst.id})  # drop everything
    opened.edit(CENSORED, "box", {"box": [4, 4, 40, 30], "label": 1})
    export(opened, ExportOptions(green=True))
    import cv2

    out = cv2.imread(str(opened.output / "ünïcødé" / "censored ß.png"))
    src = cv2.imread(str(opened.root / CENSORED))
    green = (out == (0, 255, 0)).all(axis=2)
    assert green[4:30, 4:40].all()  # the box (a mosaic box without a grid stays a rectangle)
    assert green.sum() == 36 * 26
    assert (out[~green] == src[~green]).all()


def test_coco_export_trains_and_the_result_loads(opened: Studio, tmp_path: Path) -> None:
    opened.edit("sample_1.jpg", "box", {"box": [0, 0, 24, 24], "label": 0})
    res = export(opened, ExportOptions(green=False, coco=True, deepcreampy=True))
    assert res["images"] == 3
    ds = opened.output / "reviewed"
    coco = COCO(str(ds / "annotations" / "instances_train.json"))
    names = {im["file_name"] for im in coco.dataset["images"]}
    assert names == {"sample_1.jpg", "sample_2.jpg", CENSORED}
    for name in names:
        assert (ds / "train" / name).read_bytes() == (opened.root / name).read_bytes()
    s1 = next(im["id"] for im in coco.dataset["images"] if im["file_name"] == "sample_1.jpg")
    assert len(coco.getAnnIds(imgIds=[s1])) == len(opened.records["sample_1.jpg"].visible(0.3))
    # DeepCreamPy's layout, by the same writer as cendetect run --layout deepcreampy
    assert (opened.output / "deepcreampy" / "bar" / "decensor_input" / "sample_1.png").is_file()
    # review -> export COCO -> cendetect train --init-from the shipped model (a tiny run)
    run = tmp_path / "finetune"
    rc = main(["train", "--dataset", str(ds), "--out", str(run), "--init-from", str(DEFAULT_MODEL),
               "--iters", "2", "--batch-size", "1", "--train-scale", "160,192", "--test-scale",
               "192", "--eval-every", "0", "--checkpoint-every", "2", "--workers", "0",
               "--threads", "1", "--no-progress"])  # fmt: skip
    assert rc == 0
    tuned = run / "model_fp16.pth"
    assert tuned.is_file()
    # cendetect studio --checkpoint <the fine-tuned file>
    from tests.studio.conftest import Server

    server = Server([str(opened.root), "--output_path", str(tmp_path / "out2"),
                     "--checkpoint", str(tuned)])  # fmt: skip
    try:
        server.start()
        state = server.wait_done()
        assert state["classes"] == ["bar", "mosaic"]
        done = {im["name"] for im in state["images"] if im["status"] == "done"}
        assert done == {"sample_1.jpg", "sample_2.jpg", CENSORED}
    finally:
        server.stop()
    meta = json.loads(sidecar_path(tmp_path / "out2", "sample_1.jpg").read_text())
    assert meta["cendetect_studio"]["status"] == "done"


def test_pixel_limit_as_in_the_cli(studios, folder: Path, tmp_path: Path, default_detector) -> None:  # noqa: ANN001
    studio = studios(lambda: default_detector, max_pixels=200_000)
    studio.open(folder, tmp_path / "out")
    wait_for(lambda: studio.done == len(studio.names), 180, "detection")
    big = studio.records["sample_1.jpg"]  # 511 x 697 = 356,167 pixels
    assert big.status == "broken" and "above the limit of 200000" in big.reason
    assert studio.records[CENSORED].status == "done"  # 480 x 360 = 172,800


def test_cancel_stops_after_the_current_picture_and_run_resumes(
    studios,
    folder: Path,
    tmp_path: Path,
    default_detector,  # noqa: ANN001
) -> None:
    import time

    class Slow:
        class_names = default_detector.class_names
        device = default_detector.device

        def predict(self, images):  # noqa: ANN001, ANN202
            time.sleep(0.5)
            return default_detector.predict(images)

    studio = studios(lambda: Slow())
    studio.open(folder, tmp_path / "out")
    wait_for(lambda: studio.done >= 1, 60, "the first picture")
    studio.cancel()
    wait_for(lambda: not studio.progress()["running"], 30, "the worker to stop")
    stopped = studio.done
    time.sleep(1.0)
    assert studio.done == stopped < len(studio.names)
    assert studio.progress()["cancelled"]
    studio.run()
    wait_for(lambda: studio.done == len(studio.names), 60, "the rest")
    assert not studio.progress()["cancelled"]


def test_thread_counts_are_the_process_s_own_between_pictures_and_after_close(
    studios,
    folder: Path,
    tmp_path: Path,
    default_detector,  # noqa: ANN001
) -> None:
    """The worker takes one stream's share of the kernel threads while it detects, and gives
    them back: an idle studio (the page's edits) and the rest of the process keep them all."""
    import torch

    from cendetect.ops import get_num_threads

    before = (torch.get_num_threads(), get_num_threads())
    seen: list[tuple[int, int]] = []

    class Watching:
        class_names = default_detector.class_names
        device = default_detector.device

        def predict(self, images):  # noqa: ANN001, ANN202
            seen.append((torch.get_num_threads(), get_num_threads()))
            return default_detector.predict(images)

    studio = studios(lambda: Watching())
    studio.open(folder, tmp_path / "out")
    wait_for(lambda: studio.done == len(studio.names), 180, "detection")
    wait_for(lambda: not studio.progress()["running"], 30, "the worker to go idle")
    assert seen  # three readable pictures were detected
    from cendetect.flow.images import default_streams

    streams = default_streams("cpu")
    share = (max(1, before[0] // streams), max(1, before[1] // streams))
    assert set(seen) == {share if streams > 1 else before}
    assert (torch.get_num_threads(), get_num_threads()) == before  # idle: all of them
    studio.close()
    assert not studio._worker.is_alive()
    assert (torch.get_num_threads(), get_num_threads()) == before
    with pytest.raises(StudioError, match="closed"):
        studio.run()
