"""The repository's ``samples/``: a few synthetic images for the README quick start, made with

    cendetect synth --samples 4 --out samples --seed 1

Each sample is a photo (never a hard negative) with at least one bar and one mosaic, 640-768 px
on its long side, saved as JPEG quality 90 (well under 300 KB), plus ``samples/instances.json``
(COCO, the same categories as ``cendetect synth``) so ``cendetect eval --dataset
samples/instances.json`` works on them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from cendetect.data.coco import CATEGORY_IDS, CocoBuilder
from cendetect.data.photos import Photo
from cendetect.data.synth import SynthConfig, make_sample

__all__ = ["write_samples"]

SAMPLE_CONFIG = replace(
    SynthConfig(min_size=640, max_size=768, max_instances=5),
    empty_fraction=0.0,
    png_fraction=0.0,
    gray_prob=0.0,
    # the README samples were drawn with the first recipe; they stay byte-identical
    degradations="v1",
    jpeg_mid_prob=0.3,
    painted_fraction=0.0,
)


def write_samples(out: Path, photos: list[Photo], n: int = 4, seed: int = 1) -> list[Path]:
    """Write ``n`` samples ``sample_<k>.jpg`` and ``instances.json`` into ``out``.

    Candidates are drawn from a generator seeded by ``(seed, 2, i)`` for i = 0, 1, ... and kept
    when they hold both classes and come from a photo not used yet.

    Returns:
        the image paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = [p for p in photos if p.kind == "photo"]
    if not pool:
        raise ValueError("no source photos")
    builder = CocoBuilder()
    used: set[str] = set()
    paths: list[Path] = []
    cache: dict[str, np.ndarray] = {}
    i = 0
    while len(paths) < n and i < 1000:
        rng = np.random.default_rng([seed, 2, i])
        i += 1
        photo = pool[int(rng.integers(0, len(pool)))]
        if photo.group in used:
            continue
        if photo.id not in cache:
            cache[photo.id] = photo.load()
        s = make_sample(rng, cache[photo.id], photo.id, False, SAMPLE_CONFIG)
        if {inst.category for inst in s.instances} != {"bar", "mosaic"}:
            continue
        used.add(photo.group)
        name = f"sample_{len(paths) + 1}.jpg"
        ok, buf = cv2.imencode(".jpg", s.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:  # pragma: no cover
            raise RuntimeError(f"cannot encode {name}")
        buf.tofile(str(out / name))
        h, w = s.image.shape[:2]
        image_id = builder.add_image(name, w, h, source=photo.id)
        for inst in s.instances:
            builder.add_mask(image_id, CATEGORY_IDS[inst.category], inst.mask, shape=inst.shape)
        paths.append(out / name)
    if len(paths) < n:
        raise ValueError(f"only {len(paths)} of {n} samples found: need more distinct photos")
    builder.write(
        out / "instances.json",
        {"description": "cendetect samples", "command": f"cendetect synth --samples {n} "
         f"--out {out.name} --seed {seed}"},
    )  # fmt: skip
    return paths
