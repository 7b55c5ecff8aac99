"""Painted-art sources for synthetic data, and ONLY these: Debian's ``wesnoth-1.16-data`` (the
core game's images, ``data/core/images``; never the campaign packages) and ``flare-game``.

The two packages are fetched with ``apt-get download`` (no root needed) into
``$CENDETECT_CACHE/debs`` (default ``~/.cache/cendetect/debs``) and unpacked with
``dpkg-deb -x``; nothing is installed. Pinned versions (:data:`DEBS`) keep a seed's dataset
stable.

Every file becomes an :class:`Artwork` of one kind:

* ``painting``: a full-frame painting (Wesnoth story art and title backgrounds, Flare menu
  backgrounds, cut-scenes and parallax layers), cropped like a photo;
* ``portrait``: a character painting with an alpha channel (Wesnoth and Flare portraits),
  composited over a background;
* ``texture``: terrain tiles and tile sheets (alpha), scattered densely to paint a ground;
* ``sprite``: units, scenery and loot (alpha), scattered over a scene.

:func:`compose` draws one canvas (BGR uint8) from a split's artworks; :func:`split_artworks`
splits by *group* (the file for paintings and portraits, the folder for textures and sprites,
whose neighbours are variants of one drawing), so no picture of the painted val part is ever
trained on.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cendetect.data.photos import split_by_group

__all__ = [
    "DEBS",
    "KINDS",
    "Artwork",
    "PaintedSourceError",
    "compose",
    "discover_artworks",
    "ensure_painted",
    "split_artworks",
]

#: package -> pinned version (Debian trixie); ``apt-get download PKG=VERSION``
DEBS: dict[str, str] = {"wesnoth-1.16-data": "1:1.16.9-1", "flare-game": "1.14-1"}
KINDS = ("painting", "portrait", "texture", "sprite")

_WESNOTH = Path("usr/share/games/wesnoth/1.16/data/core/images")
_FLARE = Path("usr/share/games/flare/mods")
_EXTS = (".png", ".jpg", ".jpeg", ".webp")

#: (root-relative folder, kind, recursive): where each kind lives. Flare's sprite sheets
#: (avatar, enemies, npcs) hold animation frames: used as sprites, cropped at random.
_LAYOUT: tuple[tuple[Path, str, bool], ...] = (
    (_WESNOTH / "story", "painting", False),
    (_WESNOTH / "maps", "painting", False),
    (_WESNOTH / "portraits", "portrait", True),
    (_WESNOTH / "terrain", "texture", True),
    (_WESNOTH / "units", "sprite", True),
    (_WESNOTH / "scenery", "sprite", True),
    (_FLARE / "fantasycore/images/menus/backgrounds", "painting", False),
    (_FLARE / "empyrean_campaign/images/cutscenes", "painting", False),
    (_FLARE / "empyrean_campaign/images/parallax", "painting", False),
    (_FLARE / "fantasycore/images/portraits", "portrait", False),
    (_FLARE / "empyrean_campaign/images/portraits", "portrait", False),
    (_FLARE / "fantasycore/images/tilesets", "texture", False),
    (_FLARE / "fantasycore/images/enemies", "sprite", False),
    (_FLARE / "fantasycore/images/npcs", "sprite", False),
    (_FLARE / "fantasycore/images/loot", "sprite", False),
)
#: files that are logos or text, not art
_SKIPPED = frozenset({"wesnoth/maps/wesnoth.png"})


class PaintedSourceError(RuntimeError):
    """A painted-art package is missing; the message says how to get it."""


@dataclass(frozen=True)
class Artwork:
    """One painted-art file: ``id`` ``<game>/<path below the images folder>``, ``group`` the
    split unit, ``kind`` one of :data:`KINDS`, ``path`` the file."""

    id: str
    group: str
    kind: str
    path: str


def default_deb_dir() -> Path:
    """``$CENDETECT_CACHE/debs`` or ``~/.cache/cendetect/debs``."""
    root = os.environ.get("CENDETECT_CACHE") or Path.home() / ".cache" / "cendetect"
    return Path(root) / "debs"


def ensure_painted(cache_dir: Path | None = None, download: bool = True) -> Path:
    """The folder the packages of :data:`DEBS` are unpacked in (``<cache>/root``).

    Downloads (``apt-get download``, no root) and unpacks (``dpkg-deb -x``) what is missing.

    Raises:
        PaintedSourceError: a package is missing and cannot be downloaded or unpacked.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_deb_dir()
    root = cache / "root"
    for pkg, version in DEBS.items():
        stamp = cache / f"{pkg}.unpacked"
        if stamp.is_file() and stamp.read_text().strip() == version:
            continue
        if not download:
            raise PaintedSourceError(
                f"{pkg} {version} is not unpacked in {cache}; run ./setup.sh (or "
                f"'apt-get download {pkg}={version}' and 'dpkg-deb -x' it into {root})"
            )
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise PaintedSourceError(f"{pkg}: '{tool}' not found; painted art needs Debian")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            proc = subprocess.run(
                ["apt-get", "download", f"{pkg}={version}"],
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            debs = sorted(Path(tmp).glob("*.deb"))
            if proc.returncode != 0 or not debs:
                raise PaintedSourceError(
                    f"apt-get download {pkg}={version} failed: {proc.stderr.strip()[-400:]}"
                )
            root.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                ["dpkg-deb", "-x", str(debs[0]), str(root)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise PaintedSourceError(
                    f"dpkg-deb -x {debs[0].name} failed: {proc.stderr.strip()[-400:]}"
                )
        stamp.write_text(version + "\n")
    return root


def discover_artworks(root: Path) -> list[Artwork]:
    """Every artwork under an unpacked ``root`` (see :func:`ensure_painted`), sorted by id."""
    root = Path(root)
    arts: list[Artwork] = []
    for folder, kind, recursive in _LAYOUT:
        base = root / folder
        if not base.is_dir():
            continue
        files = base.rglob("*") if recursive else base.iterdir()
        game = "wesnoth" if folder.is_relative_to(_WESNOTH) else "flare"
        top = _WESNOTH if game == "wesnoth" else _FLARE
        for f in files:
            if not f.is_file() or f.suffix.lower() not in _EXTS:
                continue
            rel = f.relative_to(root / top).as_posix()
            aid = f"{game}/{rel}"
            if aid in _SKIPPED:
                continue
            group = aid if kind in ("painting", "portrait") else f"{game}/{Path(rel).parent}"
            arts.append(Artwork(aid, group, kind, str(f)))
    return sorted(arts, key=lambda a: a.id)


def split_artworks(
    arts: Iterable[Artwork], seed: int, val_fraction: float = 0.15
) -> tuple[list[Artwork], list[Artwork]]:
    """Train/val split by group, per kind, seeded (the photos' rule,
    :func:`cendetect.data.photos.split_by_group`): each kind with two or more groups puts at
    least one in val."""
    return split_by_group(arts, KINDS, seed, val_fraction)


@functools.lru_cache(maxsize=512)
def load_rgba(path: str) -> np.ndarray:
    """BGRA uint8 ``[H, W, 4]`` (opaque alpha for files without one).

    Raises:
        PaintedSourceError: the file cannot be decoded.
    """
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PaintedSourceError(f"{path}: cannot be decoded as an image")
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    img.setflags(write=False)
    return img


def _over(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    """Alpha-composite BGRA ``src`` onto BGR ``dst`` (in place) with its corner at (x, y)."""
    h, w = dst.shape[:2]
    sh, sw = src.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + sw), min(h, y + sh)
    if x0 >= x1 or y0 >= y1:
        return
    s = src[y0 - y : y1 - y, x0 - x : x1 - x]
    a = s[..., 3:4].astype(np.float32) / 255.0
    d = dst[y0:y1, x0:x1]
    d[:] = np.round(d * (1 - a) + s[..., :3] * a).astype(np.uint8)


def _scaled(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interp)


def _pick(rng: np.random.Generator, arts: Sequence[Artwork]) -> Artwork:
    return arts[int(rng.integers(0, len(arts)))]


def _sheet_crop(rng: np.random.Generator, img: np.ndarray, max_side: int) -> np.ndarray:
    """A random window of at most ``max_side`` of a sprite or tile sheet (whole if smaller)."""
    h, w = img.shape[:2]
    ch, cw = min(h, max_side), min(w, max_side)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def _flat_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A flat colour or a two-colour linear gradient, BGR."""
    c0 = rng.integers(0, 256, 3).astype(np.float32)
    if rng.random() < 0.4:
        return np.broadcast_to(c0.astype(np.uint8), (h, w, 3)).copy()
    c1 = rng.integers(0, 256, 3).astype(np.float32)
    t = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    p = xx * np.cos(t) + yy * np.sin(t)
    p = (p - p.min()) / max(float(p.max() - p.min()), 1.0)
    return np.round(c0 + (c1 - c0) * p[..., None]).astype(np.uint8)


def _ground(rng: np.random.Generator, textures: Sequence[Artwork], h: int, w: int) -> np.ndarray:
    """A painted ground: texture tiles scaled 1.5-4x and scattered over a flat or gradient
    colour until their summed opaque area is about 1.5x the canvas (at most 150 tiles; mostly
    transparent tiles, the terrain-transition masks, are skipped)."""
    out = _flat_background(rng, h, w)
    scale = float(rng.uniform(1.5, 4.0))
    picks = [_pick(rng, textures) for _ in range(int(rng.integers(1, 4)))]
    covered = 0.0
    for _ in range(150):
        tile = _sheet_crop(rng, load_rgba(_pick(rng, picks).path), 256)
        opaque = float(tile[..., 3].mean()) / 255.0
        if opaque < 0.25:
            continue
        tile = _scaled(tile, scale)
        th, tw = tile.shape[:2]
        _over(out, tile, int(rng.integers(-tw // 2, w)), int(rng.integers(-th // 2, h)))
        covered += th * tw * opaque
        if covered > 1.5 * h * w:
            break
    return out


def compose(
    rng: np.random.Generator,
    arts: Sequence[Artwork],
    long_side: int = 1280,
    backgrounds: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, str]:
    """One painted-art canvas, BGR uint8 ``[H, W, 3]`` with ``max(H, W) ~ long_side``.

    Recipes (each needs its kinds in ``arts``; one that cannot be made falls to the next):

    * a painting, whole (cropping happens later, as for photos);
    * a portrait (scaled to 55-100 % of the height, standing on the bottom edge or placed
      anywhere) over a painting, a painted ground, a flat or gradient colour, or one of
      ``backgrounds`` (e.g. flat illustrations), sometimes two portraits;
    * a scene: a painted ground with 3-14 sprites scaled 1.5-5x.

    Returns:
        (canvas, the id of its main artwork).
    """
    by_kind = {k: [a for a in arts if a.kind == k] for k in KINDS}
    recipe = ("painting", "portrait", "scene")[int(rng.choice(3, p=[0.3, 0.4, 0.3]))]
    if recipe == "painting" and by_kind["painting"]:
        art = _pick(rng, by_kind["painting"])
        img = load_rgba(art.path)
        bg = np.full((*img.shape[:2], 3), 255, np.uint8)
        _over(bg, img, 0, 0)
        return _scaled(bg, long_side / max(bg.shape[:2])), art.id
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))  # w / h
    w, h = (
        (long_side, round(long_side / aspect))
        if aspect >= 1
        else (
            round(long_side * aspect),
            long_side,
        )
    )
    if recipe in ("painting", "portrait") and by_kind["portrait"]:
        u = rng.random()
        if u < 0.3 and by_kind["painting"]:
            p = load_rgba(_pick(rng, by_kind["painting"]).path)
            bg = cv2.resize(np.ascontiguousarray(p[..., :3]), (w, h), interpolation=cv2.INTER_AREA)
            if rng.random() < 0.5:
                bg = cv2.GaussianBlur(bg, (0, 0), float(rng.uniform(1, 6)))
        elif u < 0.5 and by_kind["texture"]:
            bg = _ground(rng, by_kind["texture"], h, w)
        elif u < 0.65 and backgrounds:
            b = backgrounds[int(rng.integers(0, len(backgrounds)))]
            bg = cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA)
        else:
            bg = _flat_background(rng, h, w)
        main = ""
        for k in range(1 if rng.random() < 0.75 else 2):
            art = _pick(rng, by_kind["portrait"])
            main = main or art.id
            por = load_rgba(art.path)
            por = _scaled(por, h * float(rng.uniform(0.55, 1.0)) / por.shape[0])
            if rng.random() < 0.5:
                por = por[:, ::-1]
            ph, pw = por.shape[:2]
            x = int(rng.integers(-pw // 4, max(w - 3 * pw // 4, -pw // 4 + 1)))
            y = h - ph if rng.random() < 0.7 else int(rng.integers(-ph // 4, max(h - ph // 2, 1)))
            if k == 1:
                x = w - pw - x
            _over(bg, np.ascontiguousarray(por), x, y)
        return bg, main
    if by_kind["texture"] and by_kind["sprite"]:
        bg = _ground(rng, by_kind["texture"], h, w)
        main = ""
        for _ in range(int(rng.integers(3, 15))):
            art = _pick(rng, by_kind["sprite"])
            main = main or art.id
            spr = _sheet_crop(rng, load_rgba(art.path), 192)
            spr = _scaled(spr, float(rng.uniform(1.5, 5.0)))
            sh, sw = spr.shape[:2]
            _over(bg, spr, int(rng.integers(-sw // 3, w)), int(rng.integers(-sh // 3, h)))
        return bg, main
    if by_kind["painting"]:
        art = _pick(rng, by_kind["painting"])
        img = np.ascontiguousarray(load_rgba(art.path)[..., :3])
        return _scaled(img, long_side / max(img.shape[:2])), art.id
    raise PaintedSourceError("no artwork of a usable kind in this split")
