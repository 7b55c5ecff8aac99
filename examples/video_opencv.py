"""Detect and mask bars/mosaics in a video, frame by frame, with OpenCV doing the video I/O.

    python examples/video_opencv.py --checkpoint mask_rcnn_r50_fpn.pth in.mp4 out.mp4

Frames are read lazily from ``cv2.VideoCapture`` and fed to ``detect_stream``, which batches
them and keeps at most ``--lookahead`` frames in flight, so memory stays flat on long videos.
Each result is an ordinary ``Detections``: here it is composited, and its first detections
are printed as OPEX and COCO dicts. (``cendetect run in.mp4`` does the same and also copies the
audio track; this example shows the API for embedding in your own pipeline.)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from cendetect import Detector
from cendetect.flow.stream import detect_stream, select
from cendetect.io.coco import detections_to_coco
from cendetect.io.opex import to_opex


def frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """BGR uint8 frames until the end of the video."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--confidence", type=float, default=0.3)
    p.add_argument("--mode", default="fill", help="fill, mask, mosaic, blur or overlay")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--lookahead", type=int, default=4)
    args = p.parse_args()

    detector = Detector.from_checkpoint(args.checkpoint, device=args.device)
    capture = cv2.VideoCapture(str(args.video))
    if not capture.isOpened():
        raise SystemExit(f"{args.video}: OpenCV cannot open this video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(args.output), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)

    # The frames are needed again for compositing: keep them beside the stream in a small
    # queue (detect_stream returns results in input order, one per frame).
    pending: list[np.ndarray] = []

    def remember(source: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in source:
            pending.append(frame)
            yield frame

    n = 0
    stream = detect_stream(detector, remember(frames(capture)), args.batch_size, args.lookahead)
    for det in stream:
        frame = pending.pop(0)
        det = select(det, args.confidence)
        writer.write(det.composite(frame, mode=args.mode, inplace=args.mode != "mask"))
        if n == 0 and len(det):
            print("first frame, OPEX:", to_opex(det, "frame-0").to_json_string()[:200], "...")
            coco = detections_to_coco(det, image_id=0)[0]
            print("first frame, COCO:", json.dumps({k: coco[k] for k in ("bbox", "score")}))
        n += 1
    capture.release()
    writer.release()
    print(f"{n} frames written to {args.output} ({fps:.2f} fps)")


if __name__ == "__main__":
    main()
