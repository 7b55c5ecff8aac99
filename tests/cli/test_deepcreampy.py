"""``cendetect run --layout deepcreampy``: DeepCreamPy's flat per-class folders, names that keep
the sub-folders, originals that line up pixel for pixel, re-runs, collisions and refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cendetect.cli import main
from cendetect.flow.stream import select
from cendetect.io.deepcreampy import LEDGER, SEPARATOR
from tests.cli.conftest import make_image, write_image
from tests.tolerances import masks_agree


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["run", "--no-progress", "--layout", "deepcreampy", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _read(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)


def _green(image: np.ndarray) -> np.ndarray:
    return (image == (0, 255, 0)).all(axis=2)


def _scene(seed: int) -> np.ndarray:
    """Smooth noise with flat dark and light strips (the tiny model finds regions here)."""
    img = make_image(seed, 96, 128)
    img[20:44, 10:90] = (5, 5, 5)
    img[60:70, 30:120] = (250, 250, 250)
    return img


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "input"
    write_image(root / "a.png", _scene(11))
    write_image(root / "sub" / "a.png", _scene(12))  # the same name in another folder
    write_image(root / "sub" / "deep" / "c.webp", _scene(13))
    write_image(root / "plain.png", make_image(14, 40, 40))
    # a JPEG whose EXIF says "rotate 90 degrees clockwise" (orientation 6): 128 x 96 on disk
    pil = Image.fromarray(cv2.cvtColor(_scene(15), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "ünï").mkdir()
    pil.save(root / "ünï" / "photo.jpg", quality=92, exif=exif)
    (root / "clip.mp4").write_bytes(b"not decoded: videos are skipped in this layout")
    return root


FLAT = {
    "a.png": "a.png",
    "sub/a.png": f"sub{SEPARATOR}a.png",
    "sub/deep/c.webp": f"sub{SEPARATOR}deep{SEPARATOR}c.png",
    "plain.png": "plain.png",
    "ünï/photo.jpg": f"ünï{SEPARATOR}photo.png",
}


def test_layout_names_pairing_and_pixels(tree: Path, tmp_path: Path, tiny_ckpt: Path,
                                         tiny_detector, capsys) -> None:  # fmt: skip
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "--input_path", str(tree), "--output_path", str(out),
                           "--checkpoint", str(tiny_ckpt))  # fmt: skip
    assert rc == 0, err
    assert "clip.mp4: skipped" in err
    assert "5 processed, 1 skipped (1 videos (the deepcreampy layout takes images))" in stdout
    expected_trees = {"bar": 0, "mosaic": 0}
    neither = 0
    for rel, flat in FLAT.items():
        image = _read(tree / rel)  # EXIF orientation applied, as the run decodes it
        det = select(tiny_detector(image), 0.3)
        has = {c: bool((det.labels == det.class_names.index(c)).any()) for c in expected_trees}
        neither += not any(has.values())
        for cls, present in has.items():
            green_path = out / cls / "decensor_input" / flat
            assert green_path.is_file() == present, (rel, cls)
            if not present:
                continue
            expected_trees[cls] += 1
            green = _read(green_path)
            assert green.shape == image.shape
            # only this class's regions are filled (pixel flips at the 0.5 threshold allowed:
            # the run's thread count differs from this process's, reason 2 of tolerances.py)
            want = det.masks[det.labels == det.class_names.index(cls)].any(axis=0)
            ok, diff, union = masks_agree(_green(green), want)
            assert ok, (rel, cls, diff, union)
            if cls == "mosaic":
                original = _read(out / "mosaic" / "decensor_input_original" / flat)
                assert np.array_equal(original, image)  # decoded, oriented, lossless PNG
                keep = ~_green(green)
                assert np.array_equal(green[keep], original[keep])
            else:
                assert np.array_equal(green[~_green(green)], image[~_green(green)])
    # the tiny model finds both classes in these pictures, and not every class in every one
    assert 0 < expected_trees["bar"] < len(FLAT), expected_trees
    assert expected_trees["mosaic"] > 0, expected_trees
    assert _read(tree / "ünï" / "photo.jpg").shape[:2] == (128, 96)  # orientation applied
    names = {p.name for p in out.rglob("*.png")}
    assert names <= set(FLAT.values())
    assert not (out / "bar" / "decensor_input_original").exists()
    line = f"{expected_trees['bar']} in bar/, {expected_trees['mosaic']} in mosaic/, "
    assert line + f"{neither} with neither" in stdout
    # a re-run finds every input finished, including those that wrote nothing
    rc, stdout, _ = _run(capsys, "--input_path", str(tree), "--output_path", str(out),
                         "--checkpoint", str(tiny_ckpt))  # fmt: skip
    assert rc == 0 and "0 processed, 6 skipped (5 already done, 1 videos" in stdout
    # a lost output is redone; the ledger says what each input wrote
    victim = next(out.rglob("*.png"))
    victim.unlink()
    rc, stdout, _ = _run(capsys, "--input_path", str(tree), "--output_path", str(out),
                         "--checkpoint", str(tiny_ckpt))  # fmt: skip
    assert rc == 0 and "1 processed" in stdout and victim.is_file()
    assert (out / LEDGER).is_file()


def test_classes_choose_the_trees_and_dilate_grows_the_fill(
    tree: Path, tmp_path: Path, tiny_ckpt: Path, capsys
) -> None:
    plain, grown = tmp_path / "plain", tmp_path / "grown"
    for out, extra in ((plain, []), (grown, ["--dilate", "3"])):
        rc, _, err = _run(capsys, "--input_path", str(tree), "--output_path", str(out),
                          "--checkpoint", str(tiny_ckpt), "--classes", "bar", *extra)  # fmt: skip
        assert rc == 0, err
        assert not (out / "mosaic").exists()
    files = sorted(p.name for p in (plain / "bar" / "decensor_input").iterdir())
    assert files and files == sorted(p.name for p in (grown / "bar" / "decensor_input").iterdir())
    for name in files:
        a = _green(_read(plain / "bar" / "decensor_input" / name))
        b = _green(_read(grown / "bar" / "decensor_input" / name))
        assert (b | ~a).all() and b.sum() > a.sum()


def test_collisions_and_refusals_come_before_any_write(tmp_path: Path, tiny_ckpt: Path,
                                                       capsys) -> None:  # fmt: skip
    root = tmp_path / "input"
    write_image(root / f"a{SEPARATOR}b.png", _scene(1))
    write_image(root / "a" / "b.png", _scene(2))
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--input_path", str(root), "--output_path", str(out),
                      "--checkpoint", str(tiny_ckpt))  # fmt: skip
    assert rc == 2
    assert f"a{SEPARATOR}b.png" in err and str(Path("a") / "b.png") in err
    assert not out.exists() or not any(out.rglob("*.png"))
    for bad, why in ((["--mode", "blur"], "--mode blur"), (["--save-csv"], "--save-csv"),
                     (["--classes", "bar,cat"], "class 'cat'")):  # fmt: skip
        rc, _, err = _run(capsys, "--input_path", str(root), "--output_path", str(out),
                          "--checkpoint", str(tiny_ckpt), *bad)  # fmt: skip
        assert rc == 2 and why in err, (bad, err)
