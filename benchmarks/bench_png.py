"""PNG encoding of output images: cendetect's writer against OpenCV's ``imencode``.

What is measured: milliseconds per encode and the file size, for each photo (the bundled
``samples/`` and the kite fixture by default, or ``--images``) resized to ``--size`` x
``--size``, with the composite ``cendetect run`` writes (detected regions filled green; here
the sample's own annotation boxes stand in, so every photo has flat green areas like real
outputs). Both sides encode the same array, alternately, ``--calls`` times each; the medians
are printed with the ratio. Both files are decoded and compared with the image (they must be
exact).

- **ours**: ``cendetect.io.png.encode_png`` ("up" row filter in C++, ISA-L deflate level 1).
- **OpenCV**: ``cv2.imencode(".png", image)`` with OpenCV's defaults (what CenDetect's det.py
  writes through ``cv2.imwrite``).

Usage (repo root):
    .venv/bin/python benchmarks/bench_png.py [--size 1024] [--calls 30] [--images A.jpg ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KITE = REPO / "tests" / "data" / "mmdet" / "images" / "kite_1024x576.png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--images", type=Path, nargs="*", help="photos (default: samples/ and kite)")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO))
    import cv2
    import numpy as np

    from cendetect.io.png import DEFLATE, encode_png

    paths = args.images or [*sorted((REPO / "samples").glob("*.jpg")), KITE]
    print(f"{args.size}x{args.size}, {args.calls} encodes per side, alternately; "
          f"deflate {DEFLATE}, OpenCV {cv2.__version__}")  # fmt: skip
    print(f"{'image':28s} {'ours ms':>8s} {'OpenCV ms':>10s} {'speed-up':>9s} "
          f"{'ours MB':>8s} {'OpenCV MB':>10s}")  # fmt: skip
    ratios, sizes = [], []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"{path}: cannot read it as an image")
        image = cv2.resize(image, (args.size, args.size), interpolation=cv2.INTER_AREA)
        # a few green regions, as in cendetect run's outputs
        h = args.size
        for i in range(3):
            y0, x0 = (i * 7 + 3) * h // 32, (i * 11 + 5) * h // 40
            image[y0 : y0 + h // 10, x0 : x0 + h // 5] = (0, 255, 0)
        ours_t, cv_t = [], []
        ours_b = cv_b = b""
        for _ in range(args.calls + 1):
            t = time.perf_counter()
            ours_b = encode_png(image)
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            cv_b = cv2.imencode(".png", image)[1].tobytes()
            cv_t.append(time.perf_counter() - t)
        for data in (ours_b, cv_b):
            back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if not np.array_equal(back, image):
                raise SystemExit(f"{path}: a PNG did not decode back to the image")
        ours_ms = 1000 * statistics.median(ours_t[1:])
        cv_ms = 1000 * statistics.median(cv_t[1:])
        ratios.append(cv_ms / ours_ms)
        sizes.append(len(ours_b) / len(cv_b))
        print(f"{path.name[:28]:28s} {ours_ms:8.1f} {cv_ms:10.1f} {cv_ms / ours_ms:8.2f}x "
              f"{len(ours_b) / 1e6:8.3f} {len(cv_b) / 1e6:10.3f}")  # fmt: skip
    print(f"geometric mean speed-up {statistics.geometric_mean(ratios):.2f}x; "
          f"file size ours / OpenCV {statistics.geometric_mean(sizes):.3f} (geometric mean); "
          "all decoded back exactly")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
