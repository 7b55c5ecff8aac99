"""The folder pipeline behind ``cendetect run``: decode, detect, composite and write, overlapped.

Three stages run at once: worker threads decode the next images while the model runs on the
current batch, and other worker threads composite and encode the previous batch's outputs
(OpenCV releases the GIL while decoding; PNG outputs are encoded by :mod:`cendetect.io.png`,
whose row filter and ISA-L deflate release it too). Both queues are bounded, so memory does
not grow with the number of inputs. Each output is written atomically, so an interrupted run
leaves no half-written file, and a re-run skips inputs whose outputs all exist.

On the CPU the model can also run as several *streams*: ``streams`` batches are in flight at
once, each on its own thread with ``cores / streams`` intra-op threads. One image per core
group scales better than splitting every operator across all cores (the small operators, NMS
and the post-processing barely parallelise); on the 2-core test machine two single-threaded
streams give 1.15-1.30x the images/s of one two-threaded stream with the default model
(benchmarks/bench_streams.py, docs/benchmarks.md). Results are still written in input order.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cendetect.engine.postprocess import Detections
from cendetect.flow.stream import decoded_in_order, select
from cendetect.io.atomic import write_image_atomic
from cendetect.io.coco import CocoWriter
from cendetect.io.decode import read_image_file
from cendetect.io.deepcreampy import CLASSES as DCP_CLASSES
from cendetect.io.deepcreampy import Ledger, write_deepcreampy
from cendetect.io.mask_image import mask_image_name, write_mask_image
from cendetect.io.opex import write_opex
from cendetect.io.roi_csv import write_roi_csv
from cendetect.io.shapes import ShapeOptions

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = [
    "Job",
    "OutputOptions",
    "Pending",
    "Summary",
    "default_streams",
    "pending",
    "plan_jobs",
    "run_images",
    "write_outputs",
]

COCO_FILE = "coco.json"


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each input.

    Attributes:
        mode: composite mode of the output image (``fill`` is CenDetect's green fill).
        dilate: grow masks by this many pixels before compositing.
        confidence: keep detections with a score strictly above this.
        classes: class names to keep (None: all).
        save_json: ``"coco"`` (one ``coco.json`` in the output root), ``"opex"`` (one
            ``.json`` beside each output image) or None.
        save_csv: write a ROI CSV (``*-rois.csv``) beside each output image.
        layout: ``"tree"`` (the input's sub-folders, one output image per input) or
            ``"deepcreampy"`` (:mod:`cendetect.io.deepcreampy`: flat per-class folders).
        layout_classes: the per-class trees of the deepcreampy layout.
        shapes: outline and box options of the OPEX / ROI CSV outputs (mmdet_predict's).
        output_mask_image: also write ``{stem}-mask.png`` beside each output image
            (:mod:`cendetect.io.mask_image`).
    """

    mode: str = "fill"
    dilate: int = 0
    confidence: float = 0.3
    classes: tuple[str, ...] | None = None
    save_json: str | None = None
    save_csv: bool = False
    layout: str = "tree"
    layout_classes: tuple[str, ...] = DCP_CLASSES
    shapes: ShapeOptions | None = None
    output_mask_image: bool = False


@dataclass(frozen=True)
class Job:
    """One input image and where its outputs go.

    Attributes:
        source: the input file.
        name: its path relative to the input root (``file_name`` in COCO, ``file`` in CSV).
        image: the output image path; ``opex`` and ``csv`` are derived from it.
        flat: the file name in the deepcreampy layout's flat folders (None in the tree layout).
        uri: where to read the input when it is not a local file (a storage URI such as
            ``s3://bucket/a.jpg``; ``cendetect run --ray``); ``source`` is then its path
            relative to the input root.
    """

    source: Path
    name: str
    image: Path
    flat: str | None = None
    uri: str | None = None

    @property
    def where(self) -> str:
        """The input as the user named it (the URI, else the path), for messages."""
        return self.uri or str(self.source)

    @property
    def opex(self) -> Path:
        return self.image.with_suffix(".json")

    @property
    def csv(self) -> Path:
        return self.image.with_name(self.image.stem + "-rois.csv")

    def done(self, opts: OutputOptions) -> bool:
        """Whether every output ``opts`` asks for exists (a re-run skips the job)."""
        return all(p.is_file() for p in self.outputs(opts))

    def outputs(self, opts: OutputOptions) -> list[Path]:
        out = [self.image]
        if opts.save_json == "opex":
            out.append(self.opex)
        if opts.save_csv:
            out.append(self.csv)
        return out


@dataclass
class Summary:
    """What a run did; ``failed`` holds ``(path, reason)`` pairs."""

    processed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    #: deepcreampy layout: images written into each class's tree (and "neither")
    trees: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def merge(self, other: Summary) -> None:
        self.processed += other.processed
        for k, v in other.skipped.items():
            self.skip(k, v)
        self.failed.extend(other.failed)
        self.seconds += other.seconds
        for k, v in other.trees.items():
            self.trees[k] = self.trees.get(k, 0) + v

    def line(self) -> str:
        """``12 processed, 3 skipped (3 already done), 1 failed in 4.2 s (2.9 images/s)``."""
        n_skip = sum(self.skipped.values())
        why = ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items()))
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        trees = ""
        if self.trees:
            parts = [f"{v} in {k}/" for k, v in self.trees.items() if k != "neither"]
            trees = f"; {', '.join(parts)}, {self.trees.get('neither', 0)} with neither"
        return (
            f"{self.processed} processed, {n_skip} skipped" + (f" ({why})" if why else "")
            + f", {len(self.failed)} failed in {self.seconds:.1f} s ({rate:.2f} images/s)"
            + trees
        )  # fmt: skip


def plan_jobs(
    inputs: Sequence[Path],
    mapping: dict[Path, Path],
    input_root: Path,
    flat: dict[Path, str] | None = None,
) -> list[Job]:
    """Jobs for ``inputs`` with output images from ``mapping`` (see ``io.discovery``) and, for
    the deepcreampy layout, flat names from ``flat`` (``io.deepcreampy.flat_names``)."""
    base = input_root if input_root.is_dir() else input_root.parent
    jobs = []
    for p in inputs:
        name = p.relative_to(base).as_posix() if p.is_relative_to(base) else p.name
        jobs.append(Job(source=p, name=name, image=mapping[p], flat=flat[p] if flat else None))
    return jobs


@dataclass
class Pending:
    """The inputs of a run still to do, and the run-wide outputs their results go into.

    Attributes:
        todo: the jobs to run, in input order.
        summary: the run's summary so far (the skipped inputs counted).
        coco: the ``coco.json`` being built (``save_json == "coco"``), else None.
        ledger: the deepcreampy layout's ledger, else None.
        output_root: where ``coco.json`` goes.
    """

    todo: list[Job]
    summary: Summary
    coco: CocoWriter | None
    ledger: Ledger | None
    output_root: Path

    def record(self, job: Job, det: Detections, written: dict[str, list[str]] | None) -> None:
        """One job's outputs are written: add it to the COCO file and the ledger, in order."""
        if self.coco is not None:
            self.coco.add(job.name, det)
        if self.ledger is not None and job.flat is not None and written is not None:
            self.ledger.record(job.flat, written)
            for cls in written or {"neither": []}:
                self.summary.trees[cls] = self.summary.trees.get(cls, 0) + 1
        self.summary.processed += 1

    def finish(self) -> None:
        """Write ``coco.json`` (when anything changed or it is missing)."""
        coco_path = self.output_root / COCO_FILE
        if self.coco is not None and (self.todo or not coco_path.exists()):
            self.coco.write(coco_path)


def pending(
    jobs: Sequence[Job],
    opts: OutputOptions,
    output_root: Path,
    class_names: Sequence[str],
    overwrite: bool = False,
) -> Pending:
    """What is left to do of ``jobs``: a job whose outputs all exist is skipped (counted as
    "already done") unless ``overwrite``; with ``save_json="coco"`` the previous ``coco.json``
    keeps the skipped inputs' entries, and a done job the file lacks is redone."""
    summary = Summary()
    coco_path = output_root / COCO_FILE
    ledger = Ledger(output_root) if opts.layout == "deepcreampy" else None
    todo = []
    for job in jobs:
        if ledger is not None and job.flat is not None:
            done = not overwrite and ledger.finished(job.flat, output_root)
        else:
            done = not overwrite and job.done(opts)
        if done:
            summary.skip("already done")
        else:
            todo.append(job)
    coco = None
    if opts.save_json == "coco":
        done = {j.name for j in jobs} - {j.name for j in todo}
        coco = CocoWriter(class_names, previous=coco_path, keep=done)
        carried = {im["file_name"] for im in coco.images}
        missing = [j for j in jobs if j.name in done - carried]  # outputs exist, COCO lacks them
        todo.extend(missing)
        if missing:
            summary.skip("already done", -len(missing))
    return Pending(todo, summary, coco, ledger, output_root)


def write_outputs(
    job: Job, image: np.ndarray, det: Detections, opts: OutputOptions, output_root: Path
) -> dict[str, list[str]] | None:
    """Write one input's outputs; in the deepcreampy layout, returns what it wrote per class."""
    if opts.layout == "deepcreampy":
        assert job.flat is not None
        return write_deepcreampy(
            output_root, job.flat, image, det, opts.layout_classes, opts.dilate
        )
    if opts.mode == "mask":
        out = det.composite(image, mode="mask", dilate=opts.dilate)
    else:
        out = det.composite(image, mode=opts.mode, dilate=opts.dilate, inplace=True)
    write_image_atomic(job.image, out)
    if opts.save_json == "opex":
        write_opex(job.opex, det, job.name, opts.shapes)
    if opts.save_csv:
        write_roi_csv(job.csv, det, job.source.name, opts.shapes)
    if opts.output_mask_image:
        write_mask_image(job.image.with_name(mask_image_name(job.image.name)), det)
    return None


def _predict_one(
    detector: Detector, job: Job, image: np.ndarray, fail: Callable[[Path, str], None]
) -> Detections | None:
    try:
        return detector.predict([image])[0]
    except Exception as exc:  # noqa: BLE001 - reported; the run goes on
        fail(job.source, f"inference failed: {type(exc).__name__}: {exc}")
        return None


def default_streams(device_type: str, cores: int | None = None) -> int:
    """Inference streams ``cendetect run`` uses by default: 2 on a CPU with 2+ cores, else 1.

    A CUDA device runs one stream (the GPU serialises kernels anyway; batches feed it).
    """
    if device_type != "cpu":
        return 1
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 if (cores or 1) >= 2 else 1


@contextmanager
def stream_threads(streams: int) -> Iterator[int]:
    """Gives each of ``streams`` CPU inference streams its share of torch's and cendetect's
    kernel threads for the duration; restores both thread counts afterwards. Yields the share."""
    import torch

    from cendetect.ops import get_num_threads, set_num_threads

    if streams <= 1:
        yield torch.get_num_threads()
        return
    torch_before, ops_before = torch.get_num_threads(), get_num_threads()
    share = max(1, torch_before // streams)
    torch.set_num_threads(share)
    set_num_threads(max(1, ops_before // streams))
    try:
        yield share
    finally:
        torch.set_num_threads(torch_before)
        set_num_threads(ops_before)


def run_images(
    detector: Detector,
    jobs: Sequence[Job],
    opts: OutputOptions,
    output_root: Path,
    *,
    batch_size: int = 1,
    workers: int = 2,
    streams: int = 1,
    overwrite: bool = False,
    max_pixels: int | None = None,
    progress: bool | None = None,
    report: Callable[[str], None] | None = None,
) -> Summary:
    """Process image jobs with decoding, inference and writing overlapped.

    Args:
        detector: the model.
        jobs: from :func:`plan_jobs`.
        opts: what to write.
        output_root: where ``coco.json`` goes.
        batch_size: images per model call.
        workers: decoding threads, and as many writing threads.
        streams: batches in flight at once (CPU: each stream gets ``cores / streams``
            threads, see :func:`stream_threads`); outputs are still written in input order.
        overwrite: redo jobs whose outputs all exist (else they are skipped).
        max_pixels: refuse images with more pixels (default Pillow's limit).
        progress: show a tqdm bar (None: only on a terminal).
        report: called with one line per failed input (default: printed to stderr).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    plan = pending(jobs, opts, output_root, detector.class_names, overwrite)
    summary, todo = plan.summary, plan.todo
    hide = not sys.stderr.isatty() if progress is None else not progress
    bar = tqdm(total=len(todo), unit="img", disable=hide, leave=False, file=sys.stderr)

    def fail(path: Path, reason: str) -> None:
        summary.failed.append((str(path), reason))
        line = f"cendetect: {path}: {reason}"
        (report or (lambda m: tqdm.write(m, file=sys.stderr)))(line)
        bar.update(1)

    # Writes in flight, in input order. The COCO file is filled here, on this thread, as each
    # write completes, so its images keep the input order whatever the thread timing.
    # The deepcreampy ledger is appended here too, after the input's files are written.
    writing: deque[tuple[Job, Detections, Future[dict[str, list[str]] | None]]] = deque()

    def settle(limit: int) -> None:
        while len(writing) > limit:
            job, det, fut = writing.popleft()
            exc = fut.exception()
            if exc is not None:
                fail(job.source, f"cannot write the outputs: {exc}")
            else:
                plan.record(job, det, fut.result())
                bar.update(1)

    batch: list[tuple[Job, np.ndarray]] = []
    # Batches handed to the inference threads, oldest first, and their detections.
    inflight: deque[tuple[list[tuple[Job, np.ndarray]], Future[list[Detections]]]] = deque()
    streams = max(1, streams)
    cpu = getattr(getattr(detector, "device", None), "type", "cpu") == "cpu"
    with (
        stream_threads(streams if cpu else 1),
        ThreadPoolExecutor(streams, thread_name_prefix="cendetect-infer") as infer,
        ThreadPoolExecutor(max(1, workers), thread_name_prefix="cendetect-write") as pool,
    ):

        def collect(limit: int) -> None:
            while len(inflight) > limit:
                items, fut = inflight.popleft()
                try:
                    dets: list[Detections | None] = list(fut.result())
                except Exception:  # noqa: BLE001 - retried image by image: one bad image fails alone
                    dets = [_predict_one(detector, job, im, fail) for job, im in items]
                for (job, image), det in zip(items, dets, strict=True):
                    if det is None:
                        continue
                    det = select(det, opts.confidence, opts.classes)
                    writing.append(
                        (job, det, pool.submit(write_outputs, job, image, det, opts, output_root))
                    )
                settle(2 * max(1, workers) + batch_size)

        def flush() -> None:
            if not batch:
                return
            items = list(batch)
            batch.clear()
            inflight.append((items, infer.submit(detector.predict, [im for _, im in items])))
            collect(streams)

        decode = lambda job: read_image_file(job.source, max_pixels)  # noqa: E731
        lookahead = (streams + 1) * batch_size + max(1, workers)
        for job, image in decoded_in_order(todo, decode, workers, lookahead):
            if isinstance(image, BaseException):
                fail(job.source, str(getattr(image, "reason", image)))
                continue
            batch.append((job, image))
            if len(batch) >= batch_size:
                flush()
        flush()
        collect(0)
        settle(0)
    bar.close()
    plan.finish()
    summary.seconds = time.perf_counter() - t0
    return summary
