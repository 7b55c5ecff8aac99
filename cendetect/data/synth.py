"""Synthetic bar/mosaic datasets: paint on crops of the photos of :mod:`cendetect.data.photos`
and write COCO instance segmentation.

One sample, in order (every draw from a generator seeded by ``(seed, split, index)``, so a
seed gives the same files whatever the number of worker processes):

1. pick a source photo of the split (or, ``negative_fraction`` of the time, a hard negative
   illustration); take a random crop (aspect 1:2 to 2:1, 25-100 % of the largest such crop),
   sometimes flipped or turned grey;
2. resize it to the *working* size: the output long side (``min_size..max_size``) divided by
   the later resize factor;
3. paint 0-``max_instances`` instances, bars (:func:`~cendetect.data.paint.bar_mask`) and
   mosaics (:func:`~cendetect.data.paint.paint_mosaic`); later ones occlude earlier ones, and a
   new instance that would leave an earlier one with less than ``min_visible`` of its painted
   area is drawn again (up to 10 tries), so no unannotated fragments remain, and so is a mosaic
   that changes its pixels by less than ``min_mosaic_change`` (a flat area: nothing to see);
4. optionally JPEG-compress (quality 50-95), then resize to the output size (INTER_AREA when
   shrinking, INTER_LINEAR / INTER_CUBIC when enlarging); masks are resized with the same
   geometry as float and thresholded at 0.5;
5. drop instances with less than ``min_area`` visible pixels; save as JPEG (quality 45-97) or
   PNG.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cendetect.data.coco import CATEGORY_IDS, CocoBuilder
from cendetect.data.paint import bar_colour, bar_mask, mosaic_mask, paint_bar, paint_mosaic
from cendetect.data.painted import (
    DEBS,
    Artwork,
    compose,
    discover_artworks,
    ensure_painted,
    split_artworks,
)
from cendetect.data.photos import WHEELS, Photo, discover_photos, split_photos

__all__ = ["Instance", "Sample", "SynthConfig", "make_sample", "write_dataset"]

_SPLIT_CODE = {"train": 0, "val": 1, "val_painted": 2}
#: painted-art canvases are composed at this long side, then cropped like photos
_CANVAS_LONG = 1280


@dataclass(frozen=True)
class SynthConfig:
    """Synthesis parameters (recorded in ``synth.json``)."""

    min_size: int = 512  #: output long side, lower bound (px)
    max_size: int = 1024  #: output long side, upper bound (px)
    max_instances: int = 6
    empty_fraction: float = 0.08  #: photos painted with nothing
    negative_fraction: float = 0.08  #: samples taken from the hard-negative images
    mosaic_fraction: float = 0.5  #: share of instances that are mosaics
    min_visible: float = 0.3  #: keep >= this share of an earlier instance visible
    min_area: int = 48  #: drop instances with fewer visible output pixels
    min_mosaic_change: float = 2.0  #: redraw mosaics changing pixels less (mean abs, 0-255)
    resize_prob: float = 0.6  #: resize after painting (else paint at the output size)
    jpeg_mid_prob: float = 0.5  #: an extra JPEG pass before the resize (v1 datasets: 0.3)
    png_fraction: float = 0.1  #: samples saved as PNG (the rest JPEG)
    gray_prob: float = 0.08
    val_fraction: float = 0.15  #: share of source photo groups held out for val
    #: degradations: "v1" (the first datasets and samples/) or "v2": also anti-aliased and
    #: rounded bars, bars of nearly the background's colour, small regions, mosaic cells up to
    #: 8 % of the short side, more JPEG passes (quality 60-95) between painting and resizing
    degradations: str = "v2"
    painted_fraction: float = 0.45  #: train samples drawn on painted art (v2 sources)
    small_prob: float = 0.2  #: v2: instances drawn at a small scale (down to ~12 px)
    soft_bar_prob: float = 0.4  #: v2: bars with anti-aliased edges
    near_colour_prob: float = 0.12  #: v2: bars of about the colour under them

    def __post_init__(self) -> None:
        if not 16 <= self.min_size <= self.max_size:
            raise ValueError(
                f"min_size {self.min_size} / max_size {self.max_size}: need 16 <= min <= max"
            )
        if self.max_instances < 0:
            raise ValueError(f"max_instances {self.max_instances}: must be >= 0")
        if self.degradations not in ("v1", "v2"):
            raise ValueError(f"degradations {self.degradations!r}: use 'v1' or 'v2'")


@dataclass
class Instance:
    """One painted instance: ``category`` is ``"bar"`` or ``"mosaic"``, ``mask`` bool
    ``[H, W]`` (visible pixels), ``shape`` the shape name, ``params`` what else was drawn."""

    category: str
    mask: np.ndarray
    shape: str
    params: dict[str, Any]


@dataclass
class Sample:
    """An output image (BGR uint8 ``[H, W, 3]``), its instances and how to save it."""

    image: np.ndarray
    instances: list[Instance]
    source: str
    ext: str  #: ".jpg" or ".png"
    quality: int  #: JPEG quality (0 for PNG)


def _crop(rng: np.random.Generator, img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # w / h of the crop
    cw, ch = (w, w / aspect) if w / aspect <= h else (h * aspect, h)
    scale = float(np.sqrt(rng.uniform(0.25, 1.0)))
    cw, ch = max(8, int(cw * scale)), max(8, int(ch * scale))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    s = long_side / max(cw, ch)
    size = (max(8, round(cw * s)), max(8, round(ch * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    out = cv2.resize(crop, size, interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _visible_ok(masks: list[np.ndarray], areas: list[int], new: np.ndarray, frac: float) -> bool:
    """Would every earlier instance keep >= ``frac`` of its painted area with ``new`` on top?"""
    return all(int(np.count_nonzero(m & ~new)) >= frac * a for m, a in zip(masks, areas))


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def make_sample(
    rng: np.random.Generator, photo: np.ndarray, source: str, negative: bool, cfg: SynthConfig
) -> Sample:
    """Paint one sample on ``photo`` (BGR uint8); see the module docstring for the steps."""
    out_long = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    factor = float(rng.uniform(0.6, 1.5)) if rng.random() < cfg.resize_prob else 1.0
    work_long = max(16, round(out_long / factor))
    img = _crop(rng, photo, work_long)
    if rng.random() < cfg.gray_prob:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]

    n = 0
    if not negative and cfg.max_instances > 0 and rng.random() >= cfg.empty_fraction:
        n = int(rng.integers(1, cfg.max_instances + 1))
    masks: list[np.ndarray] = []
    painted_area: list[int] = []
    meta: list[tuple[str, str, dict[str, Any]]] = []
    v2 = cfg.degradations == "v2"
    for _ in range(n):
        category = "mosaic" if rng.random() < cfg.mosaic_fraction else "bar"
        # v2: some instances at a small scale (a virtual short side of 40-140 px)
        scale = float(rng.uniform(40, 140)) if v2 and rng.random() < cfg.small_prob else None
        for _try in range(10):
            if category == "bar":
                m, shape = bar_mask(rng, h, w, scale, v2=v2)
            else:
                m, shape = mosaic_mask(rng, h, w, scale)
            if np.count_nonzero(m) < cfg.min_area or not _visible_ok(
                masks, painted_area, m, cfg.min_visible
            ):
                continue
            if category == "bar":
                if v2 and rng.random() < cfg.near_colour_prob:
                    under = np.median(img[m], axis=0)
                    near = under + rng.normal(0, 10, 3)
                    colour = tuple(int(v) for v in np.clip(np.round(near), 0, 255))
                else:
                    colour = bar_colour(rng)
                soften = (
                    float(rng.uniform(0.35, 0.9))
                    if v2 and rng.random() < cfg.soft_bar_prob
                    else 0.0
                )
                paint_bar(img, m, colour, soften)
                params: dict[str, Any] = {"colour_bgr": list(colour)}
                if soften:
                    params["soften"] = round(soften, 3)
                break
            before = img.copy()
            m, block = paint_mosaic(rng, img, m, 0.08 if v2 else 0.06)
            params = {"block": block}
            # a mosaic over a flat area changes nothing visible: an unlearnable label
            if np.any(m) and _visible_ok(masks, painted_area, m, cfg.min_visible):
                diff = np.abs(img[m].astype(np.int16) - before[m]).mean()
                if diff >= cfg.min_mosaic_change:
                    break
            img[:] = before
        else:
            continue
        if not np.any(m):
            continue
        masks = [old & ~m for old in masks]
        masks.append(m)
        painted_area.append(int(np.count_nonzero(m)))
        meta.append((category, shape, params))

    if rng.random() < cfg.jpeg_mid_prob:
        img = _jpeg(img, int(rng.integers(60, 96) if v2 else rng.integers(50, 96)))
    if factor != 1.0:
        ow, oh = max(8, round(w * factor)), max(8, round(h * factor))
        interp = (
            cv2.INTER_AREA
            if factor < 1
            else (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[int(rng.integers(0, 2))]
        )
        img = cv2.resize(img, (ow, oh), interpolation=interp)
        masks = [
            cv2.resize(m.astype(np.float32), (ow, oh), interpolation=cv2.INTER_LINEAR) >= 0.5
            for m in masks
        ]
    instances = [
        Instance(cat, m, shape, params)
        for m, (cat, shape, params) in zip(masks, meta)
        if int(np.count_nonzero(m)) >= cfg.min_area
    ]
    if rng.random() < cfg.png_fraction:
        return Sample(img, instances, source, ".png", 0)
    return Sample(img, instances, source, ".jpg", int(rng.integers(45, 98)))


# ---------------------------------------------------------------------------- dataset writer

_WORKER: dict[str, Any] = {}
#: photos are kept at most this large in memory (long side, px); crops are resized anyway
_PHOTO_LONG = 1600


def _load_small(p: Photo) -> np.ndarray:
    img = p.load()
    h, w = img.shape[:2]
    s = _PHOTO_LONG / max(h, w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img


def _job(args: tuple[str, int]) -> dict[str, Any]:
    split, index = args
    cfg: SynthConfig = _WORKER["cfg"]
    seed: int = _WORKER["seed"]
    side = "val" if split == "val_painted" else split
    photos: list[Photo] = _WORKER["photos"][side]
    negatives: list[Photo] = _WORKER["negatives"][side]
    arts: list[Artwork] = _WORKER["painted"][side]
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
    painted = split == "val_painted" or (
        split == "train" and bool(arts) and cfg.painted_fraction > 0
        and rng.random() < cfg.painted_fraction
    )  # fmt: skip
    if painted:
        backgrounds = [_WORKER["images"][p.id] for p in negatives]
        canvas, source = compose(rng, arts, _CANVAS_LONG, backgrounds)
        sample = make_sample(rng, canvas, source, False, cfg)
    else:
        negative = bool(negatives) and rng.random() < cfg.negative_fraction
        pool = negatives if negative else photos
        photo = pool[int(rng.integers(0, len(pool)))]
        sample = make_sample(rng, _WORKER["images"][photo.id], photo.id, negative, cfg)
    name = f"{split}_{index:06d}{sample.ext}"
    out_dir: Path = _WORKER["out"] / split
    if sample.ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, sample.quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(sample.ext, sample.image, params)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"cannot encode {name}")
    buf.tofile(str(out_dir / name))
    h, w = sample.image.shape[:2]
    return {
        "file_name": name,
        "width": w,
        "height": h,
        "source": sample.source,
        "quality": sample.quality,
        "instances": [
            (i.category, np.packbits(i.mask), i.mask.shape, i.shape, i.params)
            for i in sample.instances
        ],
    }


def write_dataset(
    out: Path,
    num_train: int,
    num_val: int,
    seed: int,
    cfg: SynthConfig | None = None,
    workers: int = 1,
    photos: list[Photo] | None = None,
    progress: Callable[[int, int], None] | None = None,
    num_val_painted: int = 0,
    artworks: list[Artwork] | None = None,
) -> dict[str, Any]:
    """Write ``out/{train,val,val_painted}/*``, ``out/annotations/instances_<split>.json`` and
    ``out/synth.json``.

    ``val`` is painted on held-out photos; ``val_painted`` (``num_val_painted`` images) on
    canvases composed from held-out painted art; ``train`` mixes both domains
    (``cfg.painted_fraction`` painted). Painted art is split by group as photos are, so no val
    picture of either part is ever trained on.

    Args:
        photos: the source images (default :func:`~cendetect.data.photos.discover_photos`).
        artworks: the painted-art sources (default
            :func:`~cendetect.data.painted.discover_artworks` of
            :func:`~cendetect.data.painted.ensure_painted`); only read when painted art is
            needed (``cfg.painted_fraction > 0`` with training images, or ``num_val_painted``).
        workers: processes (fork); the files do not depend on it.
        progress: called with (done, total) after each image.
    Returns:
        the content of ``synth.json``.
    """
    cfg = cfg or SynthConfig()
    out = Path(out)
    photos = discover_photos() if photos is None else photos
    train, val = split_photos(photos, seed, cfg.val_fraction)
    by_split = {"train": train, "val": val}
    for split in by_split:
        if not [p for p in by_split[split] if p.kind == "photo"]:
            raise ValueError(f"no source photo for the {split} split: need more photos")
        (out / split).mkdir(parents=True, exist_ok=True)
    needs_art = num_val_painted > 0 or (num_train > 0 and cfg.painted_fraction > 0)
    if needs_art and artworks is None:
        artworks = discover_artworks(ensure_painted())
    arts_train, arts_val = split_artworks(artworks or [], seed, cfg.val_fraction)
    if num_val_painted > 0:
        if not arts_val:
            raise ValueError("no painted art for the val_painted split: need more artworks")
        (out / "val_painted").mkdir(parents=True, exist_ok=True)
    _WORKER.update(
        painted={"train": arts_train if needs_art else [], "val": arts_val},
        cfg=cfg,
        seed=seed,
        out=out,
        photos={k: [p for p in v if p.kind == "photo"] for k, v in by_split.items()},
        negatives={k: [p for p in v if p.kind == "negative"] for k, v in by_split.items()},
        images={p.id: _load_small(p) for p in photos},
    )
    jobs = [("train", i) for i in range(num_train)] + [("val", i) for i in range(num_val)]
    jobs += [("val_painted", i) for i in range(num_val_painted)]
    builders = {"train": CocoBuilder(), "val": CocoBuilder()}
    if num_val_painted > 0:
        builders["val_painted"] = CocoBuilder()
    counts = {s: {"images": 0, "bar": 0, "mosaic": 0, "empty": 0} for s in builders}
    try:
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                results = pool.imap(_job, jobs, chunksize=4)
                _collect(jobs, results, builders, counts, progress)
        else:
            _collect(jobs, map(_job, jobs), builders, counts, progress)
    finally:
        _WORKER.clear()
    info = {"description": "cendetect synthetic bars and mosaics", "seed": seed}
    for split, b in builders.items():
        b.write(out / "annotations" / f"instances_{split}.json", info | {"split": split})
    record = {
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
        "config": asdict(cfg),
        "categories": {"1": "bar", "2": "mosaic"},
        "wheels": {name: req for name, (req, _) in WHEELS.items()},
        "wallpapers": "Debian plasma-workspace-wallpapers",
        "num_val_painted": num_val_painted,
        "painted_art": {
            "debs": dict(DEBS) if artworks else {},
            "artworks": len(artworks or []),
            "val_groups": sorted({a.group for a in arts_val}),
        },
        "counts": counts,
        "sources": [
            {
                "id": p.id,
                "group": p.group,
                "kind": p.kind,
                "flatness": p.flatness,
                "split": "val" if p in val else "train",
                "path": p.path,
            }
            for p in photos
        ],
    }
    (out / "synth.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _collect(
    jobs: list[tuple[str, int]],
    results: Iterable[dict[str, Any]],
    builders: dict[str, CocoBuilder],
    counts: dict[str, dict[str, int]],
    progress: Callable[[int, int], None] | None,
) -> None:
    for k, ((split, _), r) in enumerate(zip(jobs, results)):
        b = builders[split]
        image_id = b.add_image(r["file_name"], r["width"], r["height"], source=r["source"])
        counts[split]["images"] += 1
        counts[split]["empty"] += not r["instances"]
        for cat, bits, shape, kind, params in r["instances"]:
            mask = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)
            b.add_mask(image_id, CATEGORY_IDS[cat], mask, shape=kind, **params)
            counts[split][cat] += 1
        if progress is not None:
            progress(k + 1, len(jobs))
