"""``cendetect run``: CenDetect's flags, outputs, re-runs, bad inputs and exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cendetect.cli import main
from cendetect.flow.stream import select
from tests.cli.conftest import make_image, write_image
from tests.tolerances import masks_agree


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["run", "--no-progress", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _reference_fill(detector, image: np.ndarray, confidence: float = 0.3) -> np.ndarray:
    """What CenDetect's det.py does: union of the full masks above the threshold, filled green."""
    det = detector(image)
    keep = det.scores > confidence
    out = image.copy()
    if keep.any():
        out[det.masks[keep].any(axis=0)] = (0, 255, 0)
    return out


def _green(image: np.ndarray) -> np.ndarray:
    return (image == (0, 255, 0)).all(axis=2)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "input"
    write_image(root / "a.png", make_image(1))
    write_image(root / "a.JPG", make_image(2))  # same base name as a.png
    write_image(root / "sub" / "b.webp", make_image(3, 40, 40))
    write_image(root / "sub" / "deep" / "c.TIFF", make_image(4))
    write_image(root / "ünïcødé" / "ß.bmp", make_image(5))
    (root / "notes.txt").write_text("not an image")
    return root


def test_run_writes_green_filled_pngs_keeping_folders(
    folder: Path, tmp_path: Path, tiny_ckpt: Path, tiny_detector, capsys
) -> None:
    out = tmp_path / "out" / "nested"  # created by the run
    rc, stdout, _ = _run(
        capsys,
        "--input_path",
        str(folder),
        "--output_path",
        str(out),
        "--checkpoint",
        str(tiny_ckpt),
        "--device",
        "cpu",
        "--batch-size",
        "2",
    )
    assert rc == 0
    assert "5 processed, 0 skipped, 0 failed" in stdout
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.JPG.png", "a.png", "sub/b.png", "sub/deep/c.png", "ünïcødé/ß.png"]
    for src, dst in [("a.png", "a.png"), ("a.JPG", "a.JPG.png"), ("sub/b.webp", "sub/b.png")]:
        image = cv2.imdecode(np.fromfile(folder / src, np.uint8), cv2.IMREAD_COLOR)
        got = cv2.imdecode(np.fromfile(out / dst, np.uint8), cv2.IMREAD_COLOR)
        # --batch-size 2 against one image at a time: the same padded inputs, but sums in other
        # orders for another batch size (measured: scores 7e-6 apart over the ISA levels), so a
        # full-resolution pixel at the 0.5 mask threshold may flip (reason 2 of
        # tests/tolerances.py): the green fill is compared by pixel count, the rest exactly
        green, want = _green(got), _green(_reference_fill(tiny_detector, image))
        ok, diff, union = masks_agree(green, want)
        assert ok, f"{dst}: the fill differs in {diff} of {union} pixels"
        np.testing.assert_array_equal(got[~green], image[~green])
        assert green.any()  # the fixture weights do find regions


def test_rerun_skips_done_work_unless_overwrite(
    folder: Path, tmp_path: Path, tiny_ckpt: Path, capsys
) -> None:
    args = [
        "--input_path",
        str(folder),
        "--output_path",
        str(tmp_path / "o"),
        "--checkpoint",
        str(tiny_ckpt),
        "--save-csv",
    ]
    assert _run(capsys, *args)[0] == 0
    (tmp_path / "o" / "sub" / "b-rois.csv").unlink()  # one output missing: redone
    rc, stdout, _ = _run(capsys, *args)
    assert rc == 0 and "1 processed, 4 skipped (4 already done)" in stdout
    rc, stdout, _ = _run(capsys, *args, "--overwrite")
    assert rc == 0 and "5 processed, 0 skipped" in stdout


def test_missing_model_says_what_was_looked_for(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    rc, _, err = _run(
        capsys,
        "--input_path",
        str(tmp_path / "in"),
        "--model_directory",
        str(tmp_path / "m"),
        "--model",
        "mask_rcnn_r101_fpn",
    )
    assert rc == 2
    assert str(tmp_path / "m" / "mask_rcnn_r101_fpn.pth") in err and "--checkpoint" in err
    assert err.count("\n") == 1


def test_cendetect_flags_without_command_and_single_file(
    folder: Path, tmp_path: Path, tiny_ckpt: Path, capsys
) -> None:
    out = tmp_path / "single"
    rc = main(
        [
            "--input_path",
            str(folder / "sub" / "b.webp"),
            "--output_path",
            str(out),
            "--checkpoint",
            str(tiny_ckpt),
            "--confidence",
            "0.5",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert [p.name for p in out.iterdir()] == ["b.png"]


def test_outputs_by_flag(
    folder: Path, tmp_path: Path, tiny_ckpt: Path, tiny_detector, capsys
) -> None:
    from opex import ObjectPredictions
    from pycocotools.coco import COCO

    out = tmp_path / "o"
    base = ["--input_path", str(folder), "--checkpoint", str(tiny_ckpt), "--confidence", "0.5"]
    assert (
        _run(
            capsys,
            *base,
            "--output_path",
            str(out),
            "--save-json",
            "opex",
            "--save-csv",
            "--mode",
            "mask",
            "--classes",
            "mosaic",
        )[0]
        == 0
    )
    image = cv2.imdecode(np.fromfile(folder / "a.png", np.uint8), cv2.IMREAD_COLOR)
    det = select(tiny_detector(image), 0.5, ["mosaic"])
    doc = ObjectPredictions.from_json_string((out / "a.json").read_text())
    assert doc.id == "a.png" and len(doc.objects) == len(det) > 0
    assert {o.label for o in doc.objects} == {"mosaic"}
    with open(out / "a-rois.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:14] == [
        "file",
        "x0",
        "y0",
        "x1",
        "y1",
        "x0n",
        "y0n",
        "x1n",
        "y1n",
        "label",
        "label_str",
        "score",
        "poly_x",
        "poly_y",
    ]
    assert len(rows) == len(det) and rows[0]["file"] == "a.png" and rows[0]["label"] == "1"
    assert len(rows[0]["poly_x"].split(",")) == len(rows[0]["poly_y"].split(",")) >= 3
    mask_png = cv2.imread(str(out / "a.png"))
    assert set(map(tuple, mask_png.reshape(-1, 3))) <= {(0, 0, 0), (0, 255, 255)}

    out2 = tmp_path / "o2"
    assert (
        _run(capsys, *base, "--output_path", str(out2), "--save-json", "coco", "--dilate", "2")[0]
        == 0
    )
    coco = COCO(str(out2 / "coco.json"))
    assert sorted(im["file_name"] for im in coco.dataset["images"]) == [
        "a.JPG",
        "a.png",
        "sub/b.webp",
        "sub/deep/c.TIFF",
        "ünïcødé/ß.bmp",
    ]
    img_id = next(i["id"] for i in coco.dataset["images"] if i["file_name"] == "a.png")
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
    full = select(tiny_detector(image), 0.5)
    assert len(anns) == len(full)
    # exact: the run and this call make the same single-image forward in one process, and
    # COCO's RLE is lossless
    np.testing.assert_array_equal(np.stack([coco.annToMask(a) for a in anns]), full.masks)
    # a re-run keeps the COCO entries of skipped images
    assert _run(capsys, *base, "--output_path", str(out2), "--save-json", "coco")[0] == 0
    again = json.loads((out2 / "coco.json").read_text())
    assert len(again["images"]) == 5 and len(again["annotations"]) == len(
        coco.dataset["annotations"]
    )


def test_bad_inputs_are_reported_one_line_each_and_the_run_goes_on(
    tmp_path: Path, tiny_ckpt: Path, capsys
) -> None:
    root = tmp_path / "bad"
    good = write_image(root / "good.png", make_image(7))
    (root / "zero.png").write_bytes(b"")
    data = cv2.imencode(".jpg", make_image(8))[1].tobytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (root / "broken-link.png").symlink_to(tmp_path / "nowhere.png")
    write_image(root / "gray.png", make_image(9)[:, :, 0])
    write_image(root / "rgba.png", np.dstack([make_image(10), np.full((48, 64), 128, np.uint8)]))
    write_image(root / "deep16.png", make_image(11).astype(np.uint16) * 257)
    rc, stdout, err = _run(
        capsys,
        "--input_path",
        str(root),
        "--output_path",
        str(tmp_path / "o"),
        "--checkpoint",
        str(tiny_ckpt),
        "--max-pixels",
        "5000",
    )
    assert rc == 1
    assert "0 processed, 0 skipped, 8 failed" not in stdout
    reasons = {
        "zero.png": "empty",
        "truncated.jpg": "truncated",
        "corrupt.png": "truncated",
        "broken-link.png": "no such file",
    }
    lines = [ln for ln in err.splitlines() if ln.startswith("cendetect: ")]
    for name, reason in reasons.items():
        hits = [ln for ln in lines if name in ln]
        assert len(hits) == 1 and reason in hits[0], (name, hits)
    big = [ln for ln in lines if "good.png" in ln]  # 64x48 = 3072 pixels < 5000: fine
    assert not big
    assert (tmp_path / "o" / "good.png").is_file() and good.is_file()
    for name in ("gray", "rgba", "deep16"):
        assert (tmp_path / "o" / f"{name}.png").is_file()
    assert "4 processed" in stdout and "4 failed" in stdout
    # the pixel limit
    rc, _, err = _run(
        capsys,
        "--input_path",
        str(good),
        "--output_path",
        str(tmp_path / "p"),
        "--checkpoint",
        str(tiny_ckpt),
        "--max-pixels",
        "1000",
    )
    assert rc == 1 and "64x48 = 3072 pixels, above the limit of 1000" in err


def test_engine_artifact_gives_the_checkpoints_output(
    folder: Path, tmp_path: Path, tiny_ckpt: Path, capsys
) -> None:
    from cendetect.compile.cli import main as compile_main

    artifact = tmp_path / "tiny.ts"
    assert compile_main(["--checkpoint", str(tiny_ckpt), "-o", str(artifact)]) == 0
    src = str(folder / "a.png")
    assert _run(capsys, "--input_path", src, "--output_path", str(tmp_path / "e"),
                "--engine", str(artifact))[0] == 0  # fmt: skip
    assert _run(capsys, "--input_path", src, "--output_path", str(tmp_path / "c"),
                "--checkpoint", str(tiny_ckpt))[0] == 0  # fmt: skip
    # byte-equal: the fp32 TorchScript engine runs eager's kernels on the same input in one
    # process, no fusion on the CPU (the tiny model measured bit-equal on every ISA level)
    assert (tmp_path / "e" / "a.png").read_bytes() == (tmp_path / "c" / "a.png").read_bytes()
    rc, _, err = _run(capsys, "--input_path", src, "--engine", str(tmp_path / "missing.ts"))
    assert rc == 2 and "missing.ts: no such file" in err


def test_an_image_failing_inference_fails_alone(tiny_detector, tmp_path: Path) -> None:
    from cendetect.flow.images import OutputOptions, plan_jobs, run_images
    from cendetect.io.discovery import discover_inputs, output_paths

    class Flaky:
        """Fails on 40-pixel-high images, as a model running out of memory would."""

        class_names = tiny_detector.class_names

        def predict(self, images: list[np.ndarray]) -> list:
            if any(im.shape[0] == 40 for im in images):
                raise RuntimeError("out of memory")
            return tiny_detector.predict(images)

    root = tmp_path / "in"
    for i, h in enumerate((48, 40, 48)):
        write_image(root / f"{i}.png", make_image(i, h, 64))
    inputs = discover_inputs(root)
    jobs = plan_jobs(inputs, output_paths(inputs, root, tmp_path / "out"), root)
    lines: list[str] = []
    summary = run_images(Flaky(), jobs, OutputOptions(), tmp_path / "out", batch_size=3,
                         progress=False, report=lines.append)  # fmt: skip
    assert summary.processed == 2 and [p for p, _ in summary.failed] == [str(root / "1.png")]
    assert lines == [f"cendetect: {root / '1.png'}: inference failed: RuntimeError: out of memory"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "2.png"]


def test_streams_give_the_same_outputs_in_input_order(
    tmp_path: Path, tiny_ckpt: Path, capsys
) -> None:
    import torch

    from cendetect.ops import get_num_threads

    root = tmp_path / "input"
    for i in range(9):
        write_image(root / f"im{i}.png", make_image(10 + i, 56, 72))
    # One intra-op thread on both sides: oneDNN's float32 sums depend on the thread count (last
    # bits), and streams only change which thread runs which image, so every batch is computed
    # alike and the outputs are compared exactly.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        threads = (torch.get_num_threads(), get_num_threads())
        outs = {}
        for streams in ("1", "3"):
            out = tmp_path / f"out{streams}"
            rc, _, _ = _run(
                capsys, "--input_path", str(root), "--output_path", str(out),
                "--checkpoint", str(tiny_ckpt), "--device", "cpu", "--streams", streams,
                "--batch-size", "2", "--save-json", "coco",
            )  # fmt: skip
            assert rc == 0
            outs[streams] = out
        # the run gives the threads back
        assert (torch.get_num_threads(), get_num_threads()) == threads
    finally:
        torch.set_num_threads(before)
    for i in range(9):
        a = cv2.imread(str(outs["1"] / f"im{i}.png"))
        b = cv2.imread(str(outs["3"] / f"im{i}.png"))
        assert a is not None and np.array_equal(a, b), i
    coco = [json.loads((outs[s] / "coco.json").read_text()) for s in ("1", "3")]
    assert [im["file_name"] for im in coco[0]["images"]] == [
        im["file_name"] for im in coco[1]["images"]
    ]
    assert coco[0]["annotations"] == coco[1]["annotations"]
    rc, _, err = _run(capsys, "--input_path", str(root), "--streams", "0")
    assert rc == 2 and "--streams 0: must be >= 1" in err


def test_default_streams_and_thread_shares() -> None:
    import torch

    from cendetect.flow.images import default_streams, stream_threads
    from cendetect.ops import get_num_threads

    assert default_streams("cuda", cores=16) == 1
    assert default_streams("cpu", cores=1) == 1
    assert default_streams("cpu", cores=2) == 2
    before = (torch.get_num_threads(), get_num_threads())
    with stream_threads(2) as share:
        assert share == max(1, before[0] // 2) == torch.get_num_threads()
        assert get_num_threads() == max(1, before[1] // 2)
    assert (torch.get_num_threads(), get_num_threads()) == before
    with stream_threads(1) as share:
        assert share == before[0]


def test_refine_flag_reaches_the_detector(
    tiny_ckpt: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--refine auto`` (default) sends the bar (and mosaic) masks through the refinement,
    ``off`` never calls it; the API refuses an unknown mode, the command line too."""
    import cendetect.engine.postprocess as post
    from cendetect import Detector

    calls: list[int] = []
    real = post.refine_masks

    def spy(image, masks, which, *args, **kwargs):
        calls.append(int(np.count_nonzero(which)))
        return real(image, masks, which, *args, **kwargs)

    monkeypatch.setattr(post, "refine_masks", spy)
    src = tmp_path / "in"
    img = make_image(11, 96, 128)
    img[20:44, 10:90] = (5, 5, 5)  # flat bars: the tiny model finds a "bar" here
    img[60:70, 30:120] = (250, 250, 250)
    write_image(src / "x.png", img)
    assert Detector.from_checkpoint(tiny_ckpt).class_names[0] == "bar"
    for mode in ("auto", "off"):
        calls.clear()
        args = ["--input_path", str(src), "--output_path", str(tmp_path / mode)]
        rc, _, err = _run(capsys, *args, "--checkpoint", str(tiny_ckpt), "--refine", mode)
        assert rc == 0, err
        # the tiny model finds a bar in this picture (label 0, score ~1)
        assert (sum(calls) > 0) == (mode == "auto"), (mode, calls)
    with pytest.raises(ValueError, match="refine='sharp'"):
        Detector.from_checkpoint(tiny_ckpt, refine="sharp")
    with pytest.raises(SystemExit) as exc:  # argparse: not one of the choices
        main(["run", "--input_path", str(src), "--refine", "sharp"])
    assert exc.value.code == 2


def test_refined_classes_follow_the_class_names(tiny_detector) -> None:
    import copy

    from cendetect.engine.refine import REFINE_BAR, REFINE_MOSAIC, refine_kinds

    det = copy.copy(tiny_detector)
    det.refine = "auto"
    assert det.refined_classes() == frozenset({"bar", "mosaic"}) & set(det.class_names)
    det.class_names = ("mosaic", "cat", "bar")
    assert det.refined_classes() == frozenset({"bar", "mosaic"})
    kinds = refine_kinds(np.array([2, 1, 0, 2]), det.class_names, det.refined_classes())
    assert kinds.tolist() == [REFINE_BAR, 0, REFINE_MOSAIC, REFINE_BAR]
    assert refine_kinds(np.array([0, 2]), det.class_names, frozenset({"bar"})).tolist() == [0, 1]
    det.class_names = ("cat",)  # a model without those classes is left as it is
    assert det.refined_classes() == frozenset()
    det.refine = "off"
    assert det.refined_classes() == frozenset()
