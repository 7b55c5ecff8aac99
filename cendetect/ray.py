"""Batch inference on a Ray cluster: ``cendetect run --ray`` and :func:`detect_dataset`.

The run is a Ray Data pipeline of three stages that overlap, each where it belongs:

1. **decode** (Ray tasks): read and decode each input (:func:`cendetect.io.decode.read_image_file`:
   EXIF orientation, the pixel limit); a broken file becomes a row with its reason, never an
   exception, so it is reported once and never retried;
2. **detect** (an actor pool, ``map_batches``): each actor builds one :class:`~cendetect.Detector`
   when it starts, from a *blueprint* the driver puts in the object store once: the eager model
   itself, or the bytes of the compiled engine artifact (compiled once, on the driver, never per
   actor). Actors are restarted when they die and their batch is retried (``max_restarts`` /
   ``max_task_retries``), so a lost worker costs time, not outputs;
3. **write** (Ray tasks): composite and write each input's outputs atomically with the same code
   as ``cendetect run`` (:func:`cendetect.flow.images.write_outputs`).

The driver keeps the order of the inputs (``preserve_order``) and fills ``coco.json`` and the
DeepCreamPy ledger as results arrive, exactly as a local run does, so the output tree of a Ray
run is byte for byte a local run's. Memory is bounded by Ray Data's streaming executor (a few
blocks in flight per stage), not by the number of inputs; the driver holds the list of input
paths (as ``cendetect run`` does).

Ray is an optional extra: ``pip install 'cendetect[ray]'``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from cendetect.flow.images import Job, OutputOptions, Summary, pending, write_outputs
from cendetect.flow.stream import select

if TYPE_CHECKING:
    import ray.data

    from cendetect.detector import Detector

__all__ = [
    "DetectorBlueprint",
    "RayOptions",
    "RayUnavailable",
    "blueprint",
    "detect_dataset",
    "discover_uri",
    "is_storage_uri",
    "run_folder_ray",
    "run_images_ray",
]

#: pip requirement of the extra (pyproject.toml ``[project.optional-dependencies] ray``)
RAY_REQUIREMENT = "ray[data]==2.60.0"


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(
            f"--ray needs Ray: pip install 'cendetect[ray]' (installs {RAY_REQUIREMENT})"
        ) from None
    return ray


class RayUnavailable(RuntimeError):
    """The cluster could not be started or joined (the message says which and why)."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes.

    Attributes:
        address: ``None`` (a local cluster started for the run and stopped after it), ``"auto"``
            (the cluster this machine belongs to) or ``"ray://host:port"``.
        actors: model actors: ``(n, n)`` a fixed pool, ``(lo, hi)`` an autoscaling range.
        cpus_per_actor: CPUs each model actor reserves (its torch threads follow it).
        gpus_per_actor: GPUs each model actor reserves (a fraction shares one GPU).
        batch_size: images per model call.
        io_tasks: decode tasks, and as many write tasks, in flight at once. They reserve no
            CPU (``num_cpus=0``): they overlap with inference on the actors' cores, as the
            decode and write threads of a local run do, and a cluster whose CPUs the actors
            fill still runs them.
    """

    address: str | None = None
    actors: tuple[int, int] = (1, 1)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    batch_size: int = 1
    io_tasks: int = 2


@dataclass(frozen=True)
class DetectorBlueprint:
    """What a model actor rebuilds its :class:`~cendetect.Detector` from.

    Attributes:
        detector: the eager detector itself (pickled into the object store), or None.
        artifact: the bytes of a compiled engine artifact, or None.
        suffix: the artifact's file suffix (``.pt2``, ``.ts``, ``.onnx``...).
        device: ``"cpu"`` or ``"cuda"``.
        settings: detector attributes set on the driver (refinement, mask threshold,
            pre-processing) applied after loading.
    """

    detector: Detector | None
    artifact: bytes | None
    suffix: str
    device: str
    settings: dict[str, Any]

    def build(self) -> Detector:
        """The detector (an engine artifact is written to a private temporary file first)."""
        from cendetect.detector import Detector

        if self.detector is not None:
            det = self.detector
        else:
            assert self.artifact is not None
            fd, name = tempfile.mkstemp(prefix="cendetect-ray-", suffix=self.suffix)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.artifact)
            det = Detector.from_engine(name, device=self.device)
        for key, value in self.settings.items():
            setattr(det, key, value)
        return det


def blueprint(detector: Detector) -> DetectorBlueprint:
    """A :class:`DetectorBlueprint` of ``detector`` (an engine's artifact read once, here)."""
    from cendetect.engine.runners import EngineRunner

    settings = {
        "refine": detector.refine,
        "mask_threshold": detector.mask_threshold,
        "preprocess_cfg": detector.preprocess_cfg,
    }
    device = detector.device.type
    if isinstance(detector.model, EngineRunner):
        path = Path(detector.model.path)
        return DetectorBlueprint(None, path.read_bytes(), path.suffix, device, settings)
    return DetectorBlueprint(detector, None, "", device, settings)


# ---------------------------------------------------------------------------------------------
# The stages (run in Ray workers; module-level so that they pickle by reference).

_EMPTY = np.zeros((0, 0, 3), np.uint8)


def _decode(row: dict[str, Any], max_pixels: int | None) -> dict[str, Any]:
    from cendetect.io.decode import decode_image, read_image_file

    if row["skip"] or row["error"]:  # done already, or a folder that could not be listed
        return {**row, "pixels": _EMPTY}
    try:
        if row["uri"]:
            image = decode_image(_read_uri(row["uri"]), row["uri"], max_pixels)
        else:
            image = read_image_file(Path(row["source"]), max_pixels)
    except Exception as exc:  # noqa: BLE001 - a bad input is one line of the summary
        return {**row, "pixels": _EMPTY, "error": str(getattr(exc, "reason", exc))}
    return {**row, "pixels": image, "error": ""}


class _Detect:
    """The model actor: one detector, built when the actor starts."""

    def __init__(self, holder: list[Any], threads: int) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, threads))
        self.detector = ray.get(holder[0]).build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["source"])
        dets: list[bytes] = [b""] * n
        errors = [str(e) for e in batch["error"]]
        live = [i for i in range(n) if not errors[i] and not batch["skip"][i]]
        images = [np.asarray(batch["pixels"][i]) for i in live]
        results: list[Any] = []
        if images:
            try:
                results = self.detector.predict(images)
            except Exception:  # noqa: BLE001 - retried image by image: one bad image fails alone
                results = []
                for image in images:
                    try:
                        results.append(self.detector.predict([image])[0])
                    except Exception as exc:  # noqa: BLE001
                        results.append(f"inference failed: {type(exc).__name__}: {exc}")
        for i, res in zip(live, results, strict=True):
            if isinstance(res, str):
                errors[i] = res
            else:
                dets[i] = pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL)
        out = dict(batch)
        out["det"] = np.array(dets, dtype=object)
        out["error"] = np.array(errors, dtype=object)
        return out


def _write(row: dict[str, Any], opts: OutputOptions, output_root: str) -> dict[str, Any]:
    out = {"i": row["i"], "name": row["name"], "source": row["source"], "skip": row["skip"],
           "error": row["error"], "det": b"", "written": b""}  # fmt: skip
    if row["error"] or row["skip"]:
        return out
    det = select(pickle.loads(row["det"]), opts.confidence, opts.classes)
    job = _job(row)
    try:
        pixels = np.array(row["pixels"])  # a writable copy: the green fill is drawn in place
        written = write_outputs(job, pixels, det, opts, Path(output_root))
    except Exception as exc:  # noqa: BLE001 - reported; the run goes on
        return {**out, "error": f"cannot write the outputs: {exc}"}
    return {**out, "det": pickle.dumps(det), "written": pickle.dumps(written)}


def _job(row: dict[str, Any]) -> Job:
    flat, uri = row["flat"] or None, row["uri"] or None
    return Job(Path(row["source"]), row["name"], Path(row["image"]), flat, uri)


def _row(i: int, job: Job) -> dict[str, Any]:
    return {
        "i": i,
        "source": str(job.source),
        "uri": job.uri or "",
        "name": job.name,
        "image": str(job.image),
        "flat": job.flat or "",
        "skip": False,
        "error": "",
    }


# ---------------------------------------------------------------------------------------------
# Storage URIs (pyarrow filesystems, which Ray Data reads through).

#: URI schemes read through pyarrow's filesystems (``file://`` is the local one)
STORAGE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs", "file")


def is_storage_uri(text: str) -> bool:
    """``s3://bucket/folder``, ``gs://...``, ``file:///abs/path`` and the like."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in STORAGE_SCHEMES


def _read_uri(uri: str) -> bytes:
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return bytes(stream.read())


def discover_uri(uri: str, extensions: Sequence[str] | None = None) -> dict[str, PurePosixPath]:
    """The image files under a storage URI (recursively, sorted, hidden names skipped), each
    with its path relative to the URI: ``{file_uri: relative_path}``.

    Raises:
        FileNotFoundError: nothing is at the URI.
    """
    from pyarrow import fs

    from cendetect.io.discovery import IMAGE_EXTENSIONS

    exts = {e.lower() for e in (extensions or IMAGE_EXTENSIONS)}
    filesystem, root = fs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(root)
    scheme = uri.partition("://")[0]
    prefix = f"{scheme}://" + ("" if scheme != "file" or root.startswith("/") else "/")
    if info.type == fs.FileType.File:
        return {f"{prefix}{root}": PurePosixPath(PurePosixPath(root).name)}
    if info.type != fs.FileType.Directory:
        raise FileNotFoundError(f"{uri}: nothing there")
    found: dict[str, PurePosixPath] = {}
    for entry in filesystem.get_file_info(fs.FileSelector(root, recursive=True)):
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(root))
        if entry.type != fs.FileType.File or any(p.startswith(".") for p in rel.parts):
            continue
        if rel.suffix.lower() in exts:
            found[f"{prefix}{entry.path}"] = rel
    return dict(sorted(found.items(), key=lambda kv: kv[1].parts))  # local runs' order


def _detect_stage(
    ds: ray.data.Dataset, detector: Detector, options: RayOptions
) -> ray.data.Dataset:
    ray = _ray()
    holder = [ray.put(blueprint(detector))]  # one copy in the object store, for every actor
    lo, hi = options.actors
    threads = max(1, int(options.cpus_per_actor))
    return ds.map_batches(
        _Detect,
        fn_constructor_args=(holder, threads),
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor,
        # a dead actor is restarted and its batch retried, as often as it takes
        max_restarts=-1,
        max_task_retries=-1,
    )


# ---------------------------------------------------------------------------------------------
# Public entry points.


def detect_dataset(
    ds: ray.data.Dataset,
    detector: Detector,
    *,
    actors: tuple[int, int] = (1, 1),
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    batch_size: int = 1,
    image_column: str = "image",
) -> ray.data.Dataset:
    """Detections for a Ray Dataset of images, for pipelines that already use Ray.

    Args:
        ds: rows with ``image_column``: a BGR uint8 ``[H, W, 3]`` array.
        detector: the model; its blueprint goes to the object store once and each actor of
            the pool builds its own copy.
        actors, cpus_per_actor, gpus_per_actor, batch_size: see :class:`RayOptions`.
    Returns:
        The rows with ``image_column`` replaced by ``detections``: a pickled
        :class:`~cendetect.engine.postprocess.Detections` (``pickle.loads`` gives boxes
        ``[N, 4]`` in the image's pixels, x0 y0 x1 y1, scores, labels and masks), and ``error``
        (empty, or why the row has no detections).
    """

    def to_row(row: dict[str, Any]) -> dict[str, Any]:
        pixels = np.asarray(row.pop(image_column))
        ok = pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
        err = "" if ok else f"not a BGR uint8 [H, W, 3] image: {pixels.dtype} {pixels.shape}"
        pixels = pixels if ok else _EMPTY
        return {**row, "source": "", "skip": False, "pixels": pixels, "error": err}

    options = RayOptions(None, actors, cpus_per_actor, gpus_per_actor, batch_size)
    out = _detect_stage(ds.map(to_row, num_cpus=0), detector, options)
    return out.map(_detections_row, num_cpus=0)


def _detections_row(row: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in row.items() if k not in ("pixels", "source", "det", "skip")}
    return {**rest, "detections": row["det"]}


def run_images_ray(
    detector: Detector,
    jobs: Sequence[Job],
    opts: OutputOptions,
    output_root: Path,
    options: RayOptions,
    *,
    overwrite: bool = False,
    max_pixels: int | None = None,
    report: Callable[[str], None] | None = None,
) -> Summary:
    """``cendetect run``'s image jobs on a Ray cluster (module docstring); the same outputs,
    skips and summary as :func:`cendetect.flow.images.run_images`."""
    ray = _ray()
    t0 = time.perf_counter()
    plan = pending(jobs, opts, output_root, detector.class_names, overwrite)
    with _cluster(options):
        if plan.todo:
            rows = ray.data.from_items([_row(i, job) for i, job in enumerate(plan.todo)])
            for row in _results(rows, detector, opts, output_root, options, max_pixels):
                job = plan.todo[row["i"]]
                if row["error"]:
                    plan.summary.failed.append((job.where, row["error"]))
                    _report(report, f"{job.where}: {row['error']}")
                    continue
                plan.record(job, pickle.loads(row["det"]), pickle.loads(row["written"]))
        plan.finish()
    plan.summary.seconds = time.perf_counter() - t0
    return plan.summary


@contextlib.contextmanager
def _cluster(options: RayOptions) -> Iterator[None]:
    """Ray initialised for the block (started or joined here and shut down after, unless the
    caller had already initialised it), with the Data settings of a cendetect run."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=options.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds; one clear message
            where = options.address or "a local cluster"
            raise RayUnavailable(f"cannot start or join {where}: {exc}") from None
        started = True
    _data_context()
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _report(report: Callable[[str], None] | None, line: str) -> None:
    (report or (lambda m: print(f"cendetect: {m}", file=sys.stderr)))(line)


def _data_context() -> None:
    ctx = _ray().data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # coco.json and the ledger keep input order
    ctx.enable_progress_bars = False


def _results(
    ds: ray.data.Dataset,
    detector: Detector,
    opts: OutputOptions,
    output_root: Path,
    options: RayOptions,
    max_pixels: int | None,
) -> Iterator[dict[str, Any]]:
    """The write stage's rows for a dataset of input rows (:func:`_row`), in input order."""
    ray = _ray()
    io = {"num_cpus": 0, "compute": ray.data.TaskPoolStrategy(size=max(1, options.io_tasks))}
    ds = ds.map(_decode, fn_kwargs={"max_pixels": max_pixels}, **io)
    ds = _detect_stage(ds, detector, options)
    ds = ds.map(_write, fn_kwargs={"opts": opts, "output_root": str(output_root)}, **io)
    yield from ds.iter_rows()


def parse_actors(text: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"1-4"`` -> (1, 4) (an autoscaling range)."""
    lo, _, hi = text.partition("-")
    a, b = int(lo), int(hi or lo)
    if a < 1 or b < a:
        raise ValueError(f"--actors {text}: give N >= 1 or a range LO-HI with 1 <= LO <= HI")
    return a, b


# ---------------------------------------------------------------------------------------------
# A local folder, listed where it is read (not on the driver).


def _walk(
    folder: Path, root: Path, output_root: Path, exts: frozenset[str]
) -> Iterator[tuple[Path, str, Path] | tuple[Path, str, None]]:
    """``(input, name, output)`` for the images under ``folder`` in ``sorted(paths)`` order
    (:func:`cendetect.io.discovery.discover_inputs`' order and rules), one folder's listing in
    memory at a time; a folder that cannot be listed gives ``(folder, reason, None)``."""
    from cendetect.io.discovery import outputs_for_names

    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        yield folder, f"cannot list the folder: {exc.strerror or exc}", None
        return
    files = {
        Path(e.path): Path(e.path).relative_to(root)
        for e in entries
        if e.is_file() and Path(e.name).suffix.lower() in exts
    }
    outputs = outputs_for_names(files, output_root)  # the clash rule needs this folder only
    for e in entries:
        path = Path(e.path)
        if path in files:
            yield path, files[path].as_posix(), outputs[path]
        elif e.is_dir():
            yield from _walk(path, root, output_root, exts)


class _FolderSource:
    """A Ray Data datasource: the images of a local folder tree as rows (:func:`_row`), listed
    by the read task itself, in input order, with the "already done" check made there too, so
    that the driver never holds the list of inputs."""

    def __init__(
        self,
        root: Path,
        output_root: Path,
        opts: OutputOptions,
        overwrite: bool,
        coco_names: frozenset[str] | None,
        block_rows: int = 256,
    ) -> None:
        self.root, self.output_root, self.opts = root, output_root, opts
        self.overwrite, self.coco_names, self.block_rows = overwrite, coco_names, block_rows

    def rows(self) -> Iterator[dict[str, Any]]:
        from cendetect.io.discovery import IMAGE_EXTENSIONS

        exts = frozenset(e.lower() for e in IMAGE_EXTENSIONS)
        for i, (path, name, out) in enumerate(_walk(self.root, self.root, self.output_root, exts)):
            if out is None:  # a folder that could not be listed
                row = _row(i, Job(path, path.name, path))
                yield {**row, "error": name}
                continue
            job = Job(path, name, out)
            done = not self.overwrite and job.done(self.opts)
            if done and self.coco_names is not None and name not in self.coco_names:
                done = False  # its outputs exist but coco.json lacks it: redo
            yield {**_row(i, job), "skip": done}

    def blocks(self) -> Iterator[Any]:
        import pandas as pd

        block: list[dict[str, Any]] = []
        for row in self.rows():
            block.append(row)
            if len(block) >= self.block_rows:
                yield pd.DataFrame(block)
                block = []
        if block:
            yield pd.DataFrame(block)

    def dataset(self) -> ray.data.Dataset:
        ray = _ray()
        from ray.data import Datasource, ReadTask
        from ray.data.block import BlockMetadata

        source = self

        class _Source(Datasource):
            def estimate_inmemory_data_size(self) -> int | None:
                return None

            def get_read_tasks(self, parallelism: int, **_: Any) -> list[ReadTask]:
                meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None)
                return [ReadTask(source.blocks, meta)]

        # no CPU reserved, like the other I/O stages: actors may hold every CPU of the cluster
        return ray.data.read_datasource(_Source(), override_num_blocks=1, num_cpus=0)


def run_folder_ray(
    detector: Detector,
    root: Path,
    opts: OutputOptions,
    output_root: Path,
    options: RayOptions,
    *,
    overwrite: bool = False,
    max_pixels: int | None = None,
    report: Callable[[str], None] | None = None,
) -> Summary:
    """The images of a local folder tree on a Ray cluster, listed by a read task as they are
    processed (the tree layout; outputs, skips and summary as :func:`run_images_ray`)."""
    from cendetect.flow.images import COCO_FILE
    from cendetect.io.coco import CocoWriter, coco_file_names

    t0 = time.perf_counter()
    summary = Summary()
    coco_path = output_root / COCO_FILE
    coco_names = None
    if opts.save_json == "coco":
        coco_names = coco_file_names(coco_path)
    new = CocoWriter(detector.class_names) if opts.save_json == "coco" else None
    done: set[str] = set()
    touched = 0  # inputs not skipped (processed or failed)
    with _cluster(options):
        source = _FolderSource(root, output_root, opts, overwrite, coco_names)
        for row in _results(source.dataset(), detector, opts, output_root, options, max_pixels):
            if row["skip"]:
                summary.skip("already done")
                done.add(row["name"])
                continue
            touched += 1
            if row["error"]:
                summary.failed.append((row["source"], row["error"]))
                _report(report, f"{row['source']}: {row['error']}")
            else:
                if new is not None:
                    new.add(row["name"], pickle.loads(row["det"]))
                summary.processed += 1
    if new is not None and (touched or not coco_path.exists()):
        coco = CocoWriter(detector.class_names, previous=coco_path, keep=done)
        by_image: dict[int, list[dict[str, Any]]] = {}
        for a in new.annotations:
            by_image.setdefault(a["image_id"], []).append(a)
        for im in new.images:  # after the carried-over entries, in input order
            coco.extend(im, by_image.get(im["id"], []))
        coco.write(coco_path)
    summary.seconds = time.perf_counter() - t0
    return summary
